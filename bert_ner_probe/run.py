"""One probing run: data → features (cache) → strategy → tagger → metrics → results.json.

:func:`run_probe` takes a composed config and an output folder and writes
``results.json`` and ``predictions/{dev,test}.conll`` there.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from bert_ner_probe import __version__
from bert_ner_probe.features.cache import CacheEntry
from bert_ner_probe.training.concurrency import worker_threads, workers
from bert_ner_probe.config import check_values
from bert_ner_probe.data.conll import Corpus, load_corpus
from bert_ner_probe.device import resolve_device, training_precision
from bert_ner_probe.features.encoder import num_layers
from bert_ner_probe.errors import UserError
from bert_ner_probe.features.store import get_features
from bert_ner_probe.tagger.finetune_tagger import FINETUNE
from bert_ner_probe.data.hub import hub_options
from bert_ner_probe.metrics.score import GoldEntities, score, write_conll
from bert_ner_probe.strategy.combiner import CachedSelection, resolve_layers, select_features, selected_shape
from bert_ner_probe.tagger.bilstm_tagger import BiLSTMTagger
from bert_ner_probe.training.train import TaggingData, feature_home, predict, train

RESULTS = "results.json"


def _tags_to_ids(corpus: Corpus, split: str) -> List[int]:
    """Label indices; a dev/test tag training lacks (``corpus.unseen_labels``) gets -100, which no loss reads."""
    index = {t: i for i, t in enumerate(corpus.labels)}
    return [index.get(t, -100) for s in corpus[split].sentences for t in s.tags]


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary sibling, then rename it over ``path``: a reader sees all of it or nothing."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:  # an interrupt or a full disk: leave no partial file
        tmp.unlink(missing_ok=True)
        raise


def _nonfinite_rows(block: torch.Tensor) -> Optional[torch.Tensor]:
    """Which rows of ``block`` (Shape: (words, ...)) hold NaN or Inf; None when none does (the common case).

    On the CPU a float16 block is first tested through its bits: a value is NaN or Inf exactly when its
    five exponent bits are all ones (``bits & 0x7C00 == 0x7C00``); one ``max`` over that is much
    faster than ``torch.isfinite`` on float16.
    """
    if block.dtype == torch.float16 and not block.is_cuda:
        bits = block.contiguous().numpy().view(np.uint16)
        if int(np.bitwise_and(bits, np.uint16(0x7C00)).max(initial=0)) != 0x7C00:
            return None
    bad = ~torch.isfinite(block.flatten(1)).all(dim=1)  # Shape: (words,)
    return bad if bool(bad.any()) else None


def check_finite(x: torch.Tensor, offsets: np.ndarray, corpus: Corpus, split: str, entry: CacheEntry) -> None:
    """Raise a :class:`UserError` naming the first word when any selected feature is NaN or Inf.

    ``x`` Shape: (words, ...), a tensor or a :class:`~bert_ner_probe.strategy.combiner.CachedSelection`. Read in
    blocks of 8,192 words, so the check needs little memory.
    """
    bad_words, first = 0, None
    for start in range(0, x.shape[0], 8192):
        end = min(start + 8192, x.shape[0])
        bad = _nonfinite_rows(x[start:end] if isinstance(x, torch.Tensor) else x[torch.arange(start, end)])
        if bad is None:
            continue
        if first is None:
            first = start + int(bad.nonzero()[0, 0])
        bad_words += int(bad.sum())
    if first is None:
        return
    sent_idx = int(np.searchsorted(offsets, first, side="right")) - 1
    sentence = corpus[split].sentences[sent_idx]
    line = sentence.line + (first - int(offsets[sent_idx])) if sentence.line else None
    where = f"{corpus[split].source}:{line}" if line else corpus[split].source
    raise UserError(f"{where}: the selected {split} features hold NaN or Inf for {bad_words} word(s) "
                    f"(first: {sentence.words[first - int(offsets[sent_idx])]!r}), read from cache entry "
                    f"{entry.path}; the encoder overflowed in encoder.dtype={entry.meta['key']['dtype']} or the "
                    f"entry is corrupt: try encoder.dtype=float32, or remove it (bert-ner-probe-cache rm "
                    f"{entry.path.name})")


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


def release_heap() -> None:
    """Give the C heap's free memory back to the system (glibc's ``malloc_trim``; elsewhere a no-op).

    An extraction frees hundreds of MB of batch buffers of many sizes; glibc
    keeps such memory in its heap, where it would count in the RSS of the
    rest of the run (the README gives the measured effect).
    """
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def tagging_data(entry: CacheEntry, corpus: Corpus, layers: Sequence[int], combine: str,
                 device: torch.device, wanted: str) -> Tuple[Dict[str, TaggingData], bool]:
    """Each split's combined features and tags; ``(data, reused)``.

    On the CPU the features are a :class:`~bert_ner_probe.strategy.combiner.CachedSelection`
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
        if split not in kept:
            check_finite(x, feats.offsets, corpus, split, entry)  # new features: checked before training reads them
        data[split] = TaggingData.build(x, feats.offsets, _tags_to_ids(corpus, split), device)
    _last_selection.update(key=key, x={split: d.x for split, d in data.items()})
    return data, reused


def corpus_of(cfg: DictConfig) -> Corpus:
    """The run's corpus as ``cfg.data`` describes it (a CoNLL folder, or a ``datasets`` id or folder)."""
    return load_corpus(cfg.data.dir, cfg.data.scheme, OmegaConf.to_container(cfg.data.limit), cfg.data.hub_id,
                       hub_options(cfg.data), strict_labels=cfg.data.strict_labels,
                       strict_scheme=cfg.data.strict_scheme)


def run_probe(cfg: DictConfig, out_dir: Path) -> Dict[str, Any]:
    """Run one configuration end to end; return the results dict (also written to ``results.json``)."""
    out_dir = Path(out_dir)
    t_start = time.perf_counter()
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    elif workers() > 1:  # one of several jobs at once (trainer.concurrent): a share of the cores each
        torch.set_num_threads(worker_threads())
    check_values(cfg)
    if cfg.strategy.name == FINETUNE:  # the encoder itself trained: no feature cache, no BiLSTM
        from bert_ner_probe.training.finetune import run_finetune

        try:
            return run_finetune(cfg, out_dir, t_start)
        finally:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()  # the next job's free-memory checks see the room
    device = resolve_device(cfg.device)
    precision = training_precision(cfg.trainer.precision, device)  # before any work: bf16 is refused on CUDA
    depth = num_layers(cfg.encoder.name_or_path)
    layers = resolve_layers(None if cfg.strategy.layers is None else list(cfg.strategy.layers), depth)
    corpus = corpus_of(cfg)

    wanted = _wanted(cfg, layers, device)
    forget_features(unless=wanted)  # before a possible extraction, which needs the memory
    entry, hit = get_features(cfg.encoder, cfg.pooling.method, corpus, cfg.device, cfg.cache_dir, cfg.progress,
                              rebuild=cfg.cache.rebuild)
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

    dev_gold = GoldEntities([s.tags for s in corpus["dev"].sentences], cfg.eval.mode)  # read once, scored every epoch
    trained = train(
        model, data["train"], data["dev"],
        dev_f1=lambda p: dev_gold.f1(tags_of(p)),
        device=device, epochs=cfg.trainer.epochs, batch_size=cfg.trainer.batch_size, lr=cfg.trainer.lr,
        patience=cfg.trainer.patience, seed=cfg.seed, grad_clip=cfg.trainer.grad_clip,
        eval_batch_size=cfg.trainer.eval_batch_size, eval_max_words=cfg.trainer.eval_max_words,
        progress=cfg.progress, bucket_pool=cfg.trainer.bucket_pool,
        precision=precision, optimizer=cfg.trainer.optimizer, weight_decay=cfg.trainer.weight_decay,
        schedule=cfg.trainer.schedule, warmup_ratio=cfg.trainer.warmup_ratio, grad_accum=cfg.trainer.grad_accum,
    )

    t_eval = time.perf_counter()
    metrics = {split: score_and_write(cfg, corpus, split, tags_of(predict(
        model, data[split], device, cfg.trainer.eval_batch_size, precision, cfg.trainer.eval_max_words)), out_dir)
        for split in ("dev", "test")}
    eval_s = time.perf_counter() - t_eval

    results = results_record(
        cfg, corpus, depth=depth, strategy=cfg.strategy.name, layers=layers, combine=combine, metrics=metrics,
        trained=trained, device=device, encoder_dtype=entry.meta["key"]["dtype"], precision=precision,
        cache_hit=hit, cache_entry=str(entry.path),
        encoder_passes=0 if hit else int(entry.meta["encoder_passes"]),
        features_reused=reused,  # combined features kept from the previous job of this process
        mix_weights=({"layers": layers, "weights": model.mix.normalized_weights(),
                      "gamma": float(model.mix.gamma.detach())} if model.mix is not None else None),
        timings={
            "extract_s": 0.0 if hit else float(entry.meta["extract_s"]),
            "select_s": select_s,  # reading and combining the strategy's layers (and the copy to the device)
            "train_s": trained.train_s,
            "eval_s": eval_s,
            "total_s": time.perf_counter() - t_start,
        })
    write_results(out_dir, results)
    return results


def score_and_write(cfg: DictConfig, corpus: Corpus, split: str, pred: List[List[str]], out_dir: Path
                    ) -> Dict[str, Any]:
    """seqeval scores of one split's predicted tags; ``predictions/<split>.conll`` (word gold predicted) too."""
    gold = [s.tags for s in corpus[split].sentences]
    if cfg.write_predictions:
        (out_dir / "predictions").mkdir(parents=True, exist_ok=True)
        write_conll(out_dir / "predictions" / f"{split}.conll", [s.words for s in corpus[split].sentences], gold, pred)
    return score(gold, pred, cfg.eval.mode)


def results_record(cfg: DictConfig, corpus: Corpus, *, depth: int, strategy: str, layers: Optional[List[int]],
                   combine: Optional[str], metrics: Dict[str, Any], trained: Any, device: torch.device,
                   encoder_dtype: str, precision: str, cache_hit: bool, cache_entry: Optional[str],
                   encoder_passes: int, features_reused: bool, mix_weights: Optional[Dict[str, Any]],
                   timings: Dict[str, float], **extra: Any) -> Dict[str, Any]:
    """The one record of a run (probe or fine-tuning) that ``results.json`` holds and every reader reads.

    ``trained`` is a :class:`~bert_ner_probe.training.train.TrainResult` (best epoch, epochs run, history);
    ``extra`` keys are appended (fields of one kind of run only).
    """
    return {
        "status": "ok",
        "encoder": cfg.encoder.name_or_path,
        "encoder_name": cfg.encoder.name,
        "num_layers": depth,
        "strategy": strategy,
        "layers": layers,
        "combine": combine,
        "pooling": cfg.pooling.method,
        "context": cfg.encoder.context,
        "seed": int(cfg.seed),
        "labels": corpus.labels,  # what the tagger predicts: the training tags
        "unseen_labels": corpus.unseen_labels,  # {split: {tag: count}}: gold tags training lacks, scored as misses
        "dev": metrics["dev"],
        "test": metrics["test"],
        "best_epoch": trained.best_epoch,
        "epochs_run": trained.epochs_run,
        "history": trained.history,
        "cache_hit": cache_hit,
        "cache_entry": cache_entry,
        "encoder_passes": encoder_passes,
        "features_reused": features_reused,
        "mix_weights": mix_weights,
        "timings": timings,
        "data_notes": corpus.notes,  # e.g. a dev split carved out of train, no document boundaries
        "sizes": {s: {"sentences": len(corpus[s].sentences), "words": corpus[s].num_words}
                  for s in ("train", "dev", "test")},
        "device": str(device),
        "encoder_dtype": encoder_dtype,  # encoder.dtype resolved (auto → bfloat16 or float32)
        "precision": precision,  # trainer.precision resolved
        **extra,
        "versions": {"bert_ner_probe": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "config": recorded_config(cfg),
    }


def write_results(out_dir: Path, results: Dict[str, Any]) -> Path:
    """``results.json`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / RESULTS, json.dumps(results, indent=2))
    return out_dir / RESULTS


def recorded_config(cfg: DictConfig) -> Dict[str, Any]:
    """The resolved config as results.json keeps it; ``resume`` says how a job was launched, not what it computed."""
    config = OmegaConf.to_container(cfg, resolve=True)
    config.pop("resume", None)
    return config


def summary_line(r: Dict[str, Any]) -> str:
    """One line for stdout."""
    return (f"{r['strategy']} (layers {r['layers']}, {r['combine']}, pooling={r['pooling']}, "
            f"context={r['context']}, seed={r['seed']}): dev F1 {100 * r['dev']['f1']:.2f}  "
            f"test F1 {100 * r['test']['f1']:.2f}  best epoch {r['best_epoch']}/{r['epochs_run']}  "
            f"cache {'hit' if r['cache_hit'] else 'miss'}  "
            f"extract {r['timings']['extract_s']:.0f}s train {r['timings']['train_s']:.0f}s")
