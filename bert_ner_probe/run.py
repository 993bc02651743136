"""One probing run: data → features (cache) → strategy → tagger → metrics → results.json.

:func:`run_probe` takes a composed config and an output folder and writes
``results.json`` and ``predictions/{dev,test}.conll`` there.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import math
import platform
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import torch
from omegaconf import DictConfig, OmegaConf

from . import __version__
from .cache import CacheEntry
from .concurrency import worker_threads, workers
from .config import check_values
from .data import Corpus, load_corpus
from .encoder import num_layers, resolve_device
from .features import get_features
from .metrics import GoldEntities, score, write_conll
from .strategies import CachedSelection, resolve_layers, select_features, selected_shape
from .tagger import BiLSTMTagger
from .train import TaggingData, feature_home, predict, resolve_precision, train

RESULTS = "results.json"


def _tags_to_ids(corpus: Corpus, split: str) -> List[int]:
    index = {t: i for i, t in enumerate(corpus.labels)}
    return [index[t] for s in corpus[split].sentences for t in s.tags]


# The last job's combined features, kept for the next job of this process: the seeds of one
# strategy in a sweep run one after another and read the same layers, so the cache is read and
# combined (and copied to the GPU) once per strategy, not once per seed. One entry at most:
# {"key": (wanted, cache entry path), "x": {split: tensor}}.
_last_selection: Dict[str, Any] = {}


def _wanted(cfg: DictConfig, layers: Sequence[int], device: torch.device) -> str:
    """What a job's combined features are made of, known before the cache is looked up."""
    parts = [OmegaConf.to_container(cfg.encoder, resolve=True), OmegaConf.to_container(cfg.data, resolve=True),
             cfg.pooling.method, cfg.cache_dir, list(layers), cfg.strategy.combine, str(device)]
    return json.dumps(parts, sort_keys=True, default=str)


def forget_features(unless: str | None = None) -> None:
    """Drop the kept features unless they are the ``unless`` ones (then they stay for reuse)."""
    key = _last_selection.get("key")
    if key is None or key[0] == unless:
        return
    on_gpu = any(x.is_cuda for x in _last_selection["x"].values())
    _last_selection.clear()
    if on_gpu:
        torch.cuda.empty_cache()  # so that the next job's free-memory check sees the room


def bound_heap() -> None:
    """Have glibc map every allocation of 4 MiB or more on its own (``mallopt(M_MMAP_THRESHOLD)``; elsewhere a no-op).

    By default glibc raises that threshold to as much as 32 MiB after large
    frees, and the encoder's batch buffers of many sizes are then carved from a
    heap that does not shrink: a full CoNLL-2003 extraction in float32 grew the
    RSS by 0.4 GB more than with the threshold fixed (and was no slower).
    """
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt(-3, 4 * 2**20)  # -3: M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def release_heap() -> None:
    """Give the C heap's free memory back to the system (glibc's ``malloc_trim``; elsewhere a no-op).

    An extraction frees hundreds of MB of batch buffers of many sizes; glibc
    keeps such memory in its heap, where it counted in the RSS of the rest
    of the run (about 0.5 GB after a full CoNLL-2003 extraction).
    """
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def tagging_data(entry: CacheEntry, corpus: Corpus, layers: Sequence[int], combine: str,
                 device: torch.device, wanted: str) -> Tuple[Dict[str, TaggingData], bool]:
    """Each split's combined features and tags; ``(data, reused)``.

    On the CPU the features are a :class:`~bert_ner_probe.strategies.CachedSelection`
    (each batch read from the cache file and combined when it is gathered); on
    a GPU they are combined once, on the GPU when they fit there. They are
    reused from the previous call when ``wanted`` (see :func:`_wanted`) and
    the cache entry match; tags are always rebuilt.
    """
    key = (wanted, str(entry.path))
    reused = _last_selection.get("key") == key
    if not reused:
        forget_features()
    kept = _last_selection.get("x", {}) if reused else {}
    data: Dict[str, TaggingData] = {}
    for split in ("train", "dev", "test"):
        feats = entry.split(split)
        x = kept.get(split)
        if x is None and device.type == "cpu":  # read from the cache batch by batch: no copy of the split
            x = CachedSelection(feats.features, layers, combine)
        elif x is None:  # combined where training reads it: on the GPU when it fits there
            n, _, width = feats.features.shape
            nbytes = 2 * math.prod(selected_shape(n, len(layers), width, combine))  # float16
            home = feature_home(nbytes, device)
            x = select_features(feats.features, layers, combine, device=home)
        data[split] = TaggingData.build(x, feats.offsets, _tags_to_ids(corpus, split), device)
    _last_selection.update(key=key, x={split: d.x for split, d in data.items()})
    return data, reused


def run_probe(cfg: DictConfig, out_dir: Path) -> Dict[str, Any]:
    """Run one configuration end to end; return the results dict (also written to ``results.json``)."""
    out_dir = Path(out_dir)
    t_start = time.perf_counter()
    bound_heap()
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    elif workers() > 1:  # one of several jobs at once (trainer.concurrent): a share of the cores each
        torch.set_num_threads(worker_threads())
    check_values(cfg)
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.trainer.precision, device)  # before any work: bf16 is refused on CUDA
    depth = num_layers(cfg.encoder.name_or_path)
    layers = resolve_layers(None if cfg.strategy.layers is None else list(cfg.strategy.layers), depth)
    corpus = load_corpus(cfg.data.dir, cfg.data.scheme, OmegaConf.to_container(cfg.data.limit), cfg.data.hub_id)

    wanted = _wanted(cfg, layers, device)
    forget_features(unless=wanted)  # before a possible extraction, which needs the memory
    entry, hit = get_features(cfg.encoder, cfg.pooling.method, corpus, cfg.device, cfg.cache_dir, cfg.progress)
    if not hit:
        release_heap()  # the encoder's and extraction's freed buffers, before training allocates
    if int(entry.meta["num_layers"]) != depth:
        raise RuntimeError(f"cache entry {entry.path} has {entry.meta['num_layers']} layers, the encoder {depth}")
    combine = cfg.strategy.combine

    t_select = time.perf_counter()
    data, reused = tagging_data(entry, corpus, layers, combine, device, wanted)
    select_s = time.perf_counter() - t_select
    width = int(entry.meta["width"])

    torch.manual_seed(cfg.seed)
    model = BiLSTMTagger(
        input_size=width if combine == "scalar_mix" else data["train"].x.shape[-1],
        num_labels=len(corpus.labels),
        hidden_size=cfg.tagger.hidden_size,
        num_layers=cfg.tagger.num_layers,
        dropout=cfg.tagger.dropout,
        input_dropout=cfg.tagger.input_dropout,
        crf=cfg.tagger.crf,
        mix_layers=len(layers) if combine == "scalar_mix" else None,
        impl=cfg.tagger.impl,
    ).to(device)

    labels = corpus.labels

    def tags_of(pred_ids: List[List[int]]) -> List[List[str]]:
        return [[labels[i] for i in p] for p in pred_ids]

    gold = {s: [sent.tags for sent in corpus[s].sentences] for s in ("dev", "test")}
    dev_gold = GoldEntities(gold["dev"], cfg.eval.mode)  # read once, scored every epoch
    trained = train(
        model, data["train"], data["dev"],
        dev_f1=lambda p: dev_gold.f1(tags_of(p)),
        device=device, epochs=cfg.trainer.epochs, batch_size=cfg.trainer.batch_size, lr=cfg.trainer.lr,
        patience=cfg.trainer.patience, seed=cfg.seed, grad_clip=cfg.trainer.grad_clip,
        eval_batch_size=cfg.trainer.eval_batch_size, eval_max_words=cfg.trainer.eval_max_words,
        progress=cfg.progress, bucket_pool=cfg.trainer.bucket_pool,
        precision=precision,
    )

    t_eval = time.perf_counter()
    metrics: Dict[str, Any] = {}
    for split in ("dev", "test"):
        pred = tags_of(predict(model, data[split], device, cfg.trainer.eval_batch_size, precision,
                                cfg.trainer.eval_max_words))
        metrics[split] = score(gold[split], pred, cfg.eval.mode)
        if cfg.write_predictions:
            (out_dir / "predictions").mkdir(parents=True, exist_ok=True)
            write_conll(out_dir / "predictions" / f"{split}.conll",
                        [s.words for s in corpus[split].sentences], gold[split], pred)
    eval_s = time.perf_counter() - t_eval

    results = {
        "status": "ok",
        "encoder": cfg.encoder.name_or_path,
        "encoder_name": cfg.encoder.name,
        "num_layers": depth,
        "strategy": cfg.strategy.name,
        "layers": layers,
        "combine": combine,
        "pooling": cfg.pooling.method,
        "context": cfg.encoder.context,
        "seed": int(cfg.seed),
        "labels": labels,
        "dev": metrics["dev"],
        "test": metrics["test"],
        "best_epoch": trained.best_epoch,
        "epochs_run": trained.epochs_run,
        "history": trained.history,
        "cache_hit": hit,
        "cache_entry": str(entry.path),
        "encoder_passes": 0 if hit else int(entry.meta["encoder_passes"]),
        "features_reused": reused,  # combined features kept from the previous job of this process
        "mix_weights": ({"layers": layers, "weights": model.mix.normalized_weights(),
                         "gamma": float(model.mix.gamma.detach())} if model.mix is not None else None),
        "timings": {
            "extract_s": 0.0 if hit else float(entry.meta["extract_s"]),
            "select_s": select_s,  # reading and combining the strategy's layers (and the copy to the device)
            "train_s": trained.train_s,
            "eval_s": eval_s,
            "total_s": time.perf_counter() - t_start,
        },
        "sizes": {s: {"sentences": len(corpus[s].sentences), "words": corpus[s].num_words}
                  for s in ("train", "dev", "test")},
        "device": str(device),
        "encoder_dtype": entry.meta["key"]["dtype"],  # encoder.dtype resolved (auto → bfloat16 or float32)
        "precision": precision,  # trainer.precision resolved
        "versions": {"bert_ner_probe": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / RESULTS).write_text(json.dumps(results, indent=2))
    return results


def summary_line(r: Dict[str, Any]) -> str:
    """One line for stdout."""
    return (f"{r['strategy']} (layers {r['layers']}, {r['combine']}, pooling={r['pooling']}, "
            f"context={r['context']}, seed={r['seed']}): dev F1 {100 * r['dev']['f1']:.2f}  "
            f"test F1 {100 * r['test']['f1']:.2f}  best epoch {r['best_epoch']}/{r['epochs_run']}  "
            f"cache {'hit' if r['cache_hit'] else 'miss'}  "
            f"extract {r['timings']['extract_s']:.0f}s train {r['timings']['train_s']:.0f}s")
