"""Harness runs as child processes: the cold/warm sweep, the peak RSS of one run, of a full-data run.

Each child is ``python -m bert_ner_probe ARGS`` with this very package on its
``PYTHONPATH``; its peak resident set size is read with ``os.wait4`` on that
child alone, and its results through :class:`~bert_ner_probe.results.run_result.RunResult`.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Sequence

from bert_ner_probe.bench.settings import Settings, hydra_value
from bert_ner_probe.device import maxrss_mb
from bert_ner_probe.results.run_result import RESULTS_FILE, RunResult

PACKAGE_PARENT = Path(__file__).resolve().parents[2]  # the folder holding this bert_ner_probe


def own_peak_rss_mb() -> float:
    """Peak RSS of this process, MiB."""
    return maxrss_mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


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
    """Run ``python -m bert_ner_probe ARGS``; time it and read its own peak RSS.

    The peak comes from ``os.wait4`` on that child alone (``RUSAGE_CHILDREN``
    would keep the maximum over every child this process ever had), called by
    a small launcher process (see ``_LAUNCHER``).
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    stats_file = log.with_suffix(".rusage.json")
    cmd = [sys.executable, "-m", "bert_ner_probe", *args]
    path = os.pathsep.join(p for p in (str(PACKAGE_PARENT), os.environ.get("PYTHONPATH")) if p)
    with open(log, "w") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        subprocess.run([sys.executable, "-c", _LAUNCHER, str(stats_file), *cmd], cwd=log.parent,
                       env={**os.environ, "PYTHONPATH": path}, stdout=fh, stderr=subprocess.STDOUT, check=False)
    stats = json.loads(stats_file.read_text())
    return ChildRun(int(stats["returncode"]), float(stats["wall_s"]), maxrss_mb(stats["maxrss"]), log)


def run_results(root: Path) -> List[RunResult]:
    """Every run's results below ``root`` (a run folder or a sweep folder), in path order."""
    return [RunResult.load(p) for p in sorted(Path(root).rglob(RESULTS_FILE))]


def sweep_once(label: str, settings: Settings, cache_dir: Path, work: Path, logs: Path) -> Dict[str, Any]:
    """One multirun over the sweep strategies; wall time, jobs and encoder passes summed over its results."""
    sweep_dir = work / f"sweep_{label}"
    args = ["-m", "strategy=" + ",".join(settings.sweep_strategies), *settings.overrides(cache_dir),
            hydra_value("hydra.sweep.dir", str(sweep_dir))]
    child = run_harness(args, logs / f"sweep_{label}.log")
    results = run_results(sweep_dir)
    if len(results) != len(settings.sweep_strategies):
        raise RuntimeError(f"{label} sweep: {len(results)} of {len(settings.sweep_strategies)} jobs wrote "
                           f"results.json (exit {child.returncode}); log {child.log}:\n{child.tail()}")
    return {
        f"{label}_sweep_s": child.wall_s,
        f"{label}_sweep_encoder_passes": sum(int(r.encoder_passes) for r in results),
        f"{label}_sweep_cache_hits": sum(bool(r.cache_hit) for r in results),
        f"{label}_sweep_jobs": len(results),
        f"{label}_sweep_extract_s": sum(r.timings["extract_s"] for r in results),
        f"{label}_sweep_train_s": sum(r.timings["train_s"] for r in results),
        f"{label}_sweep_exit_code": child.returncode,
        f"{label}_sweep_peak_rss_mb": child.peak_rss_mb,
    }


def bench_sweep(settings: Settings, cache_dir: Path, work: Path, logs: Path) -> Dict[str, Any]:
    """The same sweep twice on one cache folder: cold (empty cache), then warm."""
    out = sweep_once("cold", settings, cache_dir, work, logs)
    out.update(sweep_once("warm", settings, cache_dir, work, logs))
    return out


def single_run(name: str, args: Sequence[str], work: Path, logs: Path) -> tuple[ChildRun, RunResult]:
    """One harness run into ``work/name``; its child record and results (a failure raises, with the log's tail)."""
    run_dir = work / name
    child = run_harness([*args, hydra_value("hydra.run.dir", str(run_dir))], logs / f"{name}.log")
    results = run_results(run_dir)
    if child.returncode != 0 or not results:
        raise RuntimeError(f"{name} failed (exit {child.returncode}); log {child.log}:\n{child.tail()}")
    return child, results[0]


def bench_peak_rss(settings: Settings, cache_dir: Path, work: Path, logs: Path) -> Dict[str, Any]:
    """Peak RSS (MiB) and wall time of one single training run of ``settings.strategy``."""
    child, r = single_run("rss_run", [f"strategy={settings.strategy}", *settings.overrides(cache_dir)], work, logs)
    return {
        "peak_rss_mb": child.peak_rss_mb,
        "rss_run_s": child.wall_s,
        "rss_run_cache_hit": bool(r.cache_hit),
        "rss_run_train_s": r.timings["train_s"],
    }


def bench_full_rss(settings: Settings, epochs: int, work: Path, logs: Path) -> Dict[str, Any]:
    """Peak RSS (MiB), wall time and dev F1 of one run on the full data, extraction included (a fresh cache)."""
    args = [f"strategy={settings.strategy}", *settings.overrides(work / "full_cache", limited=False, epochs=epochs),
            "encoder.context=sentence"]
    child, r = single_run("full_rss_run", args, work, logs)
    return {
        "full_peak_rss_mb": child.peak_rss_mb,
        "full_run_s": child.wall_s,
        "full_epochs": epochs,
        "full_train_words": int(r.sizes["train"]["words"]),
        "full_dev_f1": r.dev.f1,
        "full_extract_s": r.timings["extract_s"],
        "full_train_s": r.timings["train_s"],
    }
