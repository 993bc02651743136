"""Encoders beyond MiniLM: extraction at base size, a probe's epoch on a deep entry, each job's peak RSS.

* :func:`encoder_folder` — an encoder folder without weights: a ``BertConfig`` of the given shapes and
  MiniLM's tokenizer files. With ``encoder.weights=random`` it is a real encoder of that size (BERT-base's
  shapes: ``BertConfig()``), with nothing written but its config.
* :func:`bench_base_extraction` — extraction words/s of a random base-size encoder (12 × 768) against the
  bare forward loop over the same batches (:func:`~bert_ner_probe.bench.measure.bench_extraction`).
* :func:`bench_deep_epoch` — the seconds of one epoch of a one-layer linear probe (``probe=linear
  strategy=layer strategy.index=-1``) on a deep entry (25 hidden states: a random 24-layer × 384 BERT)
  against the same probe on a shallow entry of the same width (7 hidden states: MiniLM), alternating,
  best of ``repeats``. With one file per hidden state the two read the same bytes per epoch.
* :func:`bench_job_rss` — the peak RSS of a whole job (extraction on a fresh cache, then one epoch) of
  MiniLM and of the random base-size encoder, as child processes (``os.wait4``), beside the job's own
  ``peak_rss_mb`` in results.json.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from bert_ner_probe.api import compose_config
from bert_ner_probe.bench.children import single_run
from bert_ner_probe.bench.measure import NO_DEV_PASS, bench_extraction
from bert_ner_probe.bench.settings import DEFAULT_ENCODER, Settings, hydra_value
from bert_ner_probe.features.encoder import load_encoder, resolve_location
from bert_ner_probe.memo import Session
from bert_ner_probe.probes.registry import build
from bert_ner_probe.run import feature_inputs
from bert_ner_probe.training.trainer import Trainer

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")
BASE_SHAPE: Dict[str, int] = {}  # BertConfig()'s own: 12 layers × 768, BERT-base
DEEP_SHAPE = {"hidden_size": 384, "num_hidden_layers": 24, "num_attention_heads": 12, "intermediate_size": 1536}


def encoder_folder(folder: Path, **shape: int) -> Path:
    """``folder`` holding ``BertConfig(**shape)``'s config.json and MiniLM's tokenizer files (no weights)."""
    from transformers import BertConfig

    folder.mkdir(parents=True, exist_ok=True)
    minilm = Path(resolve_location(DEFAULT_ENCODER))
    for name in TOKENIZER_FILES:
        shutil.copy(minilm / name, folder / name)
    BertConfig(**shape).save_pretrained(folder)
    return folder


def _random(settings: Settings, folder: Path, cache: Path, extra: List[str] = (),
            epochs: Optional[int] = None, bilstm: bool = True) -> List[str]:
    """The bench's overrides for a random-weights encoder in ``folder`` with its own cache folder."""
    return [*settings.overrides(cache, epochs=epochs, bilstm=bilstm), hydra_value("encoder.name_or_path", str(folder)),
            "encoder.weights=random", *extra]


def bench_base_extraction(settings: Settings, sentences: List[List[str]], folder: Path, work: Path) -> Dict[str, Any]:
    """Extraction words/s of the random base-size encoder in ``folder``, harness vs bare, as ``base_extract_*``."""
    cfg = compose_config(_random(settings, folder, work / "unused_cache"))
    loaded = load_encoder(str(folder), settings.device, settings.dtype, cfg.encoder.max_length, weights="random")
    out = bench_extraction(loaded, sentences, int(cfg.encoder.batch_size), int(cfg.encoder.max_tokens),
                           int(cfg.encoder.max_pieces_per_word), settings.repeats, work / "base_extract")
    shutil.rmtree(work / "base_extract", ignore_errors=True)
    result = {f"base_{k}": v for k, v in out.items()}
    result.update(base_layers=loaded.num_layers, base_hidden=loaded.hidden_size)
    return result


def _epoch_job(cfg: Any, device: torch.device):
    """What a run builds for ``cfg`` (a linear probe on one hidden state, :func:`~bert_ner_probe.run.feature_inputs`):
    a function that trains one epoch of a fresh probe and returns its seconds, the entry's hidden-state count (all of
    the encoder's) and the probe's input width."""
    inputs = feature_inputs(cfg, device, Session())
    trainer = Trainer.from_config(cfg)

    def epoch() -> float:
        torch.manual_seed(cfg.seed)
        model = build(cfg.probe, inputs.probe_inputs).to(device)
        return trainer.fit(model, inputs.data["train"], inputs.data["dev"], NO_DEV_PASS, device).history[0]["epoch_s"]

    return epoch, inputs.depth + 1, inputs.combiner.width


def bench_deep_epoch(settings: Settings, work: Path) -> Dict[str, Any]:
    """One linear-probe epoch on hidden state N of a 25-state entry against the same on a 7-state entry, width 384."""
    deep = encoder_folder(work / "bert-24x384-random", **DEEP_SHAPE)
    probe = ["probe=linear", "strategy=layer", "strategy.index=-1", "trainer.patience=1",
             "trainer.hold_words_mb=0"]  # every batch read from the cache files: what the entry's depth could slow
    device = torch.device(settings.device)
    jobs = {"deep": _epoch_job(compose_config(_random(settings, deep, work / "deep_cache", probe, epochs=1,
                                                      bilstm=False)), device),
            "shallow": _epoch_job(compose_config([*settings.overrides(work / "shallow_cache", epochs=1, bilstm=False),
                                                  *probe]), device)}
    seconds: Dict[str, List[float]] = {"deep": [], "shallow": []}
    for name in ("deep", "shallow"):  # warm up
        jobs[name][0]()
    for _ in range(settings.repeats):
        for name in ("deep", "shallow"):
            seconds[name].append(jobs[name][0]())
    return {"deep_states": jobs["deep"][1], "shallow_states": jobs["shallow"][1], "deep_width": jobs["deep"][2],
            "deep_epoch_s": seconds["deep"], "shallow_epoch_s": seconds["shallow"],
            "deep_vs_shallow_epoch": min(seconds["deep"]) / min(seconds["shallow"])}


def bench_job_rss(settings: Settings, base: Path, work: Path, logs: Path, strategy: str = "sum_all"
                  ) -> Dict[str, Any]:
    """Peak RSS (MiB) of a whole ``strategy`` job, extraction included, of MiniLM and of the random base-size encoder."""
    out: Dict[str, Any] = {}
    jobs = {"minilm": [*settings.overrides(work / "rss_minilm_cache")],
            "base": _random(settings, base, work / "rss_base_cache")}
    for name, args in jobs.items():
        child, r = single_run(f"rss_{name}", [f"strategy={strategy}", *args], work, logs)
        out.update({f"rss_{name}_child_mb": child.peak_rss_mb, f"rss_{name}_results_mb": r.peak_rss_mb,
                    f"rss_{name}_wall_s": child.wall_s, f"rss_{name}_extract_s": r.timings["extract_s"],
                    f"rss_{name}_train_s": r.timings["train_s"], f"rss_{name}_layers": r.num_layers})
    out["rss_strategy"] = strategy
    return out
