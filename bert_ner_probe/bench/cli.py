"""Benchmark the harness against bare PyTorch loops on this machine.

``python scripts/bench.py --out DIR`` measures, in one run, and writes
``DIR/bench.json`` and ``DIR/bench.md`` (also printed at the end):

1. **Extraction** — harness vs bare encoder loop, words/s (:func:`~bert_ner_probe.bench.measure.bench_extraction`).
2. **Training** — one tagger epoch of the harness's trainer vs the bare
   epoch, words/s, on ``--strategy``'s features
   (:func:`~bert_ner_probe.bench.measure.bench_training`); tagger and trainer
   come from the composed config as a run builds them.
3. **Sweep, cold vs warm** — wall time of
   ``python -m bert_ner_probe -m strategy=<the Table 7 strategies> …`` run twice
   on one fresh cache folder; ``encoder_passes`` summed over every job (the
   warm sweep must report 0) (:func:`~bert_ner_probe.bench.children.bench_sweep`).
4. **Fine-tuning** — one fine-tuning epoch of the harness's trainer vs a bare
   fine-tuning loop, tokens/s, on ``--finetune-limit`` training sentences in
   sentence and in document context, with ``--finetune-experiment``'s
   fine-tuning settings (the main command's windows, stride and attention)
   (:func:`~bert_ner_probe.bench.measure.bench_finetuning`).
5. **Peak RSS** — of one single training run of ``--strategy`` (warm cache),
   read with ``os.wait4`` for that child alone.
6. **Peak RSS of a full-data run** (``--full-rss-epochs N``, off by default:
   minutes on 2 cores) — one run of ``--strategy`` on the whole corpus with
   ``encoder.context=sentence`` on a fresh cache folder: peak RSS, wall time and dev F1.
7. **Scale** (``--scale``, off by default) — extraction words/s of a random
   base-size encoder (``BertConfig()``'s shapes, MiniLM's tokenizer) against the
   bare forward loop; one linear-probe epoch on a 25-state entry against a
   7-state entry of the same width; the peak RSS of a whole ``sum_all`` job of
   MiniLM and of the base-size encoder (:mod:`~bert_ner_probe.bench.scale`).

On CPU every process uses one torch thread unless ``--threads`` says
otherwise (see :data:`~bert_ner_probe.bench.settings.THREADS_NOTE`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional, Sequence

import torch

from bert_ner_probe.api import compose_config
from bert_ner_probe.bench.children import PACKAGE_PARENT, bench_full_rss, bench_peak_rss, bench_sweep, own_peak_rss_mb
from bert_ner_probe.bench.measure import bench_extraction, bench_finetuning, bench_training, training_features
from bert_ner_probe.bench.render import render_markdown
from bert_ner_probe.bench.scale import (BASE_SHAPE, bench_base_extraction, bench_deep_epoch, bench_job_rss,
                                        encoder_folder)
from bert_ner_probe.bench.settings import (DEFAULT_ENCODER, DEFAULT_EVAL_LIMIT, DEFAULT_EXTRACT_LIMIT,
                                          DEFAULT_FINETUNE_EXPERIMENT, DEFAULT_FINETUNE_LIMIT, DEFAULT_LIMIT,
                                          Settings, device_name)
from bert_ner_probe.data.conll import load_corpus
from bert_ner_probe.device import encoder_dtype, resolve_device
from bert_ner_probe.errors import UserError
from bert_ner_probe.features.encoder import load_encoder
from bert_ner_probe.strategy.table7 import TABLE7_ORDER


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """The bench's options (``--help`` lists them with their defaults)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="folder for bench.json and bench.md")
    p.add_argument("--encoder", default=DEFAULT_ENCODER, help="encoder name_or_path")
    default_data = os.environ.get("CONLL2003_DIR") or str(PACKAGE_PARENT.parent / "shared" / "data" / "conll2003")
    p.add_argument("--data-dir", default=default_data, help="CoNLL-2003 folder")
    p.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="train sentences (training, sweep, RSS)")
    p.add_argument("--eval-limit", type=int, default=DEFAULT_EVAL_LIMIT,
                   help="dev and test sentences (sweep, RSS, feature cache)")
    p.add_argument("--extract-limit", type=int, default=DEFAULT_EXTRACT_LIMIT,
                   help="train sentences for the extraction timing")
    p.add_argument("--finetune-limit", type=int, default=DEFAULT_FINETUNE_LIMIT,
                   help="train sentences for the fine-tuning timing (0: skip it)")
    p.add_argument("--finetune-experiment", default=DEFAULT_FINETUNE_EXPERIMENT,
                   help="the experiment whose strategy=finetune settings (windows, stride, attention) are timed")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--dtype", default="auto",
                   help="auto (bfloat16 where the hardware has it, else float32) | float32 | bfloat16")
    p.add_argument("--batch-size", type=int, default=None, help="probe batch size (None: conf/trainer/default.yaml)")
    p.add_argument("--hidden-size", type=int, default=256, help="BiLSTM probe units per direction")
    p.add_argument("--epochs", type=int, default=1, help="probe epochs per timing and per sweep job")
    p.add_argument("--repeats", type=int, default=2, help="timings per side; the best is kept")
    p.add_argument("--strategy", default="concat_last_four", help="features for the training and RSS parts")
    p.add_argument("--sweep-strategies", default=",".join(TABLE7_ORDER), help="comma-separated")
    p.add_argument("--skip-sweep", action="store_true", help="skip the cold/warm sweep")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads here and in every harness run; 0 = torch's default, None: 1 on "
                        "CPU (see THREADS_NOTE in bert_ner_probe/bench/settings.py), torch's default on CUDA")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--full-rss-epochs", type=int, default=0,
                   help="also measure the peak RSS of one full-data run with this many epochs (0: skip)")
    p.add_argument("--scale", action="store_true",
                   help="also measure encoders beyond MiniLM: base-size extraction, a deep entry's probe epoch, "
                        "peak RSS per job (bert_ner_probe/bench/scale.py)")
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


def settings_of(a: argparse.Namespace, device: torch.device, threads: int) -> Settings:
    """The measurements' settings from the parsed options, ``auto`` resolved by the harness's device policy."""
    return Settings(
        encoder=a.encoder, data_dir=str(Path(a.data_dir).resolve()), device=str(device),
        dtype=str(encoder_dtype(a.dtype, device)), limit=a.limit, eval_limit=a.eval_limit,
        extract_limit=a.extract_limit,
        batch_size=int(a.batch_size or compose_config([]).trainer.batch_size),  # conf/trainer/default.yaml
        hidden_size=a.hidden_size, epochs=a.epochs, repeats=a.repeats, strategy=a.strategy,
        sweep_strategies=[x for x in a.sweep_strategies.split(",") if x], skip_sweep=a.skip_sweep,
        seed=a.seed, threads=threads or None, finetune_limit=a.finetune_limit,
        finetune_experiment=a.finetune_experiment)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Run every measurement, write bench.json and bench.md into ``--out``, print the table."""
    t_start = time.perf_counter()
    a = parse_args(argv)
    device = resolve_device(a.device)
    threads = (1 if device.type == "cpu" else 0) if a.threads is None else a.threads
    if threads:
        torch.set_num_threads(threads)
    settings = settings_of(a, device, threads)
    out_dir: Path = a.out.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    logs = out_dir / "logs"
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
        # the training part's config: no early stop within its timed epochs (its dev F1 is a constant)
        cfg = compose_config(settings.overrides(cache_dir) + [f"strategy={settings.strategy}",
                                                              f"trainer.patience={max(1, settings.epochs)}"])
        settings.extract_batch_size = int(cfg.encoder.batch_size)
        settings.extract_max_tokens = int(cfg.encoder.max_tokens)

        t0 = time.perf_counter()
        _log(f"extraction: {settings.extract_limit} sentences, {settings.encoder} on {device} ({settings.dtype})")
        loaded = load_encoder(settings.encoder, str(device), settings.dtype, cfg.encoder.max_length)
        result.update(encoder_layers=loaded.num_layers, encoder_hidden=loaded.hidden_size)
        sentences = [s.words for s in load_corpus(settings.data_dir, cfg.data.scheme,
                                                  {"train": settings.extract_limit})["train"].sentences]
        result.update(bench_extraction(loaded, sentences, settings.extract_batch_size, settings.extract_max_tokens,
                                       int(cfg.encoder.max_pieces_per_word), settings.repeats, work / "extract"))
        shutil.rmtree(work / "extract", ignore_errors=True)
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
        feats = training_features(cfg, device)
        result["train_features_cache_hit"] = feats.cache_hit
        result.update(bench_training(feats, cfg, device, settings.repeats))
        del feats
        part_s["training"] = time.perf_counter() - t0
        save(complete=False)
        _log(f"training: harness {result['train_harness_words_per_s']:.0f} words/s, "
             f"bare {result['train_bare_words_per_s']:.0f} words/s")

        if settings.finetune_limit > 0:
            t0 = time.perf_counter()
            _log(f"fine-tuning: {settings.finetune_limit} sentences, experiment={settings.finetune_experiment}, "
                 "sentence and document context")
            ft_cfg = compose_config([f"experiment={settings.finetune_experiment}", "strategy=finetune",
                                     *settings.overrides(cache_dir, bilstm=False),
                                     f"data.limit.train={settings.finetune_limit}"])
            result.update(bench_finetuning(ft_cfg, device, settings.repeats))
            part_s["finetune"] = time.perf_counter() - t0
            save(complete=False)
            _log(f"fine-tuning: document {result['finetune_document_harness_tokens_per_s']:.0f} tokens/s, sentence "
                 f"{result['finetune_sentence_harness_tokens_per_s']:.0f} tokens/s "
                 f"({result['finetune_document_vs_sentence']:.3f})")

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

        if a.scale:
            save(complete=False)
            t0 = time.perf_counter()
            base = encoder_folder(work / "bert-base-random", **BASE_SHAPE)
            _log(f"scale: extraction at base size, {settings.extract_limit} sentences")
            result.update(bench_base_extraction(settings, sentences, base, work))
            save(complete=False)
            _log(f"scale: base-size extraction harness {result['base_extract_harness_words_per_s']:.0f} words/s, "
                 f"bare {result['base_extract_bare_words_per_s']:.0f} words/s")
            _log("scale: a linear probe's epoch on a 25-state entry and on a 7-state entry")
            result.update(bench_deep_epoch(settings, work))
            save(complete=False)
            _log(f"scale: deep ÷ shallow epoch {result['deep_vs_shallow_epoch']:.3f}")
            _log("scale: peak RSS of a sum_all job, MiniLM and base size")
            result.update(bench_job_rss(settings, base, work, logs))
            part_s["scale"] = time.perf_counter() - t0

    result["bench_peak_rss_mb"] = own_peak_rss_mb()
    save(complete=True)
    md = render_markdown(result)
    (out_dir / "bench.md").write_text(md)
    print(md, flush=True)
    return result


def script(main_fn: Callable[[], Any]) -> None:
    """Run a bench command as a script: a :class:`UserError` is one line on stderr and exit status 2."""
    try:
        main_fn()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
