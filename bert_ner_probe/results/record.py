"""The record of one run: built once (probe or fine-tuning), written atomically, read as a RunResult.

:func:`results_record` builds the ``results.json`` dict of a finished run and
returns it as the one :class:`~bert_ner_probe.results.run_result.RunResult`
type every reader uses (the CLI, the API, the report, the scripts);
:meth:`RunResult.save` writes it with :func:`write_atomic`.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from omegaconf import DictConfig, OmegaConf

from bert_ner_probe.data.corpus import Corpus
from bert_ner_probe.results.run_result import RESULTS_FILE, RunResult
from bert_ner_probe.version import __version__


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary sibling, then rename it over ``path``: a reader sees all of it or nothing."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:  # an interrupt or a full disk: leave no partial file
        tmp.unlink(missing_ok=True)
        raise


def results_record(cfg: DictConfig, corpus: Corpus, *, depth: int, strategy: str, layers: Optional[List[int]],
                   combine: Optional[str], metrics: Dict[str, Any], trained: Any, device: torch.device,
                   encoder_dtype: str, precision: str, cache_hit: bool, cache_entry: Optional[str],
                   encoder_passes: int, features_reused: bool, mix_weights: Optional[Dict[str, Any]],
                   timings: Dict[str, float], encoder_name: str, pooling: str, causal: bool,
                   peak_rss_mb: Optional[float] = None, peak_rss_scope: Optional[str] = None,
                   **extra: Any) -> RunResult:
    """The one record of a run (probe or fine-tuning) that ``results.json`` holds and every reader reads.

    ``trained`` is a :class:`~bert_ner_probe.training.trainer.TrainResult` (best epoch, epochs run, history);
    ``probe`` is the model that was trained (``probe.name``); ``encoder_name`` names the encoder loaded
    (:func:`bert_ner_probe.config.encoder_name`), ``pooling`` is ``pooling.method`` resolved for it,
    ``causal`` whether it reads leftwards only; ``peak_rss_mb`` is the job's peak resident set size
    (``peak_rss_scope``: ``job``, or ``process`` where it could not be reset when the job started);
    ``extra`` keys are appended (fields of one kind of run only).
    """
    return RunResult.from_dict({
        "status": "ok",
        "encoder": cfg.encoder.name_or_path,
        "encoder_name": encoder_name,
        "causal": bool(causal),
        "num_layers": depth,
        "strategy": strategy,
        "probe": cfg.probe.name,
        "control": str(cfg.get("control", "none")),  # word_type: the control task's tags (Hewitt & Liang 2019)
        "encoder_weights": str(cfg.encoder.get("weights", "pretrained")),  # random: the random-encoder baseline
        "layers": layers,
        "combine": combine,
        "pooling": str(pooling),
        "context": cfg.encoder.context,
        "seed": int(cfg.seed),
        "labels": corpus.labels,  # what the tagger predicts: the training tags
        "unseen_labels": corpus.unseen_labels,  # {split: {tag: count}}: gold tags training lacks, scored as misses
        "dev": metrics["dev"],
        "test": metrics["test"],
        "best_epoch": trained.best_epoch,
        "epochs_run": trained.epochs_run,
        "history": trained.history,
        "dev_score": trained.dev_score.record(),  # what early stopping watched: its name (the history's key)
        "cache_hit": cache_hit,
        "cache_entry": cache_entry,
        "encoder_passes": encoder_passes,
        "features_reused": features_reused,
        "mix_weights": mix_weights,
        "timings": timings,
        "peak_rss_mb": peak_rss_mb,
        "peak_rss_scope": peak_rss_scope,
        "data_notes": corpus.notes,  # e.g. a dev split carved out of train, no document boundaries
        "sizes": {s: {"sentences": len(corpus[s].sentences), "words": corpus[s].num_words}
                  for s in ("train", "dev", "test")},
        "device": str(device),
        "encoder_dtype": encoder_dtype,  # encoder.dtype resolved (auto → bfloat16 or float32)
        "precision": precision,  # trainer.precision resolved
        **extra,
        "versions": {"bert_ner_probe": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "config": recorded_config(cfg),
    })


def write_results(out_dir: Path, result: RunResult) -> Path:
    """``results.json`` in ``out_dir``, written atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / RESULTS_FILE, json.dumps(result.to_dict(), indent=2))
    return out_dir / RESULTS_FILE


def recorded_config(cfg: DictConfig) -> Dict[str, Any]:
    """The resolved config as results.json keeps it; ``resume`` says how a job was launched, not what it computed."""
    config = OmegaConf.to_container(cfg, resolve=True)
    config.pop("resume", None)
    return config


def summary_line(result: RunResult) -> str:
    """One line for stdout."""
    r = result
    return (f"{r.strategy} (layers {r.layers}, {r.combine}, probe={r.probe}, pooling={r.pooling}, "
            f"context={r.context}, seed={r.seed}): dev F1 {100 * r.dev.f1:.2f}  "
            f"test F1 {100 * r.test.f1:.2f}  best epoch {r.best_epoch}/{r.epochs_run}  "
            f"cache {'hit' if r.cache_hit else 'miss'}  "
            f"extract {r.timings['extract_s']:.0f}s train {r.timings['train_s']:.0f}s"
            + ("" if r.peak_rss_mb is None else f"  peak RSS {r.peak_rss_mb:.0f} MiB"))
