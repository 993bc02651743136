"""The ``bert-ner-probe`` command: a Hydra main around :func:`bert_ner_probe.run.run_probe`.

A user error (bad data line, missing file, unknown layer, a config value the
schema rejects) prints one line ``error: …`` and exits with status 2, without
a traceback. In a multirun the
failing job writes ``error.json`` into its folder and the sweep goes on; the
report lists it and the command exits non-zero at the end (see
:mod:`bert_ner_probe.multirun`). Returns dev F1 so sweepers can maximise it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Any, Dict, List, Optional

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from bert_ner_probe.config import check_renamed, config_dir, config_error, register
from bert_ner_probe.errors import UserError
from bert_ner_probe.results.record import recorded_config, summary_line, write_atomic
from bert_ner_probe.results.run_result import ERROR_FILE, RESULTS_FILE as RESULTS, RunResult
from bert_ner_probe.run import run_probe
from bert_ner_probe.memo import Session
from bert_ner_probe.tracking import check_logger, log_job

log = logging.getLogger("bert_ner_probe")


register()


class Interrupted(BaseException):
    """Raised in the running job by SIGINT/SIGTERM; a BaseException, so no ``except Exception`` swallows it."""

    def __init__(self, signame: str) -> None:
        super().__init__(f"interrupted by {signame}")
        self.signame = signame


# The signal that interrupted this process (None until one arrives) and whether a job is running.
_signal_state: Dict[str, Any] = {"signal": None, "in_job": False, "started": False}


def _on_signal(signum: int, frame: Any) -> None:
    """First signal: stop the running job (or mark the sweep interrupted between jobs). Second: abort now."""
    name = signal.Signals(signum).name
    if _signal_state["signal"] is not None:
        raise KeyboardInterrupt(f"second {name}")
    _signal_state["signal"] = name
    if _signal_state["in_job"]:
        raise Interrupted(name)


def _install_signal_handlers() -> None:
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(sig) is not _on_signal:
                signal.signal(sig, _on_signal)


def finished_results(out_dir: Path, cfg: DictConfig) -> Optional[RunResult]:
    """The job's ``results.json`` when it is a finished run's (as
    :func:`~bert_ner_probe.results.run_result.check_complete` judges it) of this very config."""
    try:
        result = RunResult.load(out_dir / RESULTS)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return result if result.config == recorded_config(cfg) else None


# What the jobs of a sweep that run in this process one after another share: parsed data files,
# encoder hashes, the last combined features (the seeds of one strategy read the same layers).
_SESSION = Session(tune_malloc=True)  # this process is the command's own


def command_line_overrides(argv: List[str]) -> List[str]:
    """The ``key=value`` overrides of a command line, as Hydra's own argument parser reads them."""
    from hydra._internal.utils import get_args_parser  # noqa: PLC0415 - the parser hydra.main uses

    known, unknown = get_args_parser().parse_known_args(argv)
    return [*known.overrides, *(u for u in unknown if not u.startswith("-"))]


def main() -> None:
    """The console entry: Hydra's main; a config that fails to compose is one ``error: …`` line and exit 2, and so
    is a renamed key (answered with its new name, :data:`bert_ner_probe.config.RENAMED`)."""
    os.environ["HYDRA_FULL_ERROR"] = "1"  # composition errors reach this function instead of Hydra's report
    try:
        check_renamed(command_line_overrides(sys.argv[1:]))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    try:
        hydra_main()
    except Exception as e:
        error = None if _signal_state["started"] else config_error(e)
        if error is None:
            raise
        print(f"error: {error}", file=sys.stderr, flush=True)
        sys.exit(2)


@hydra.main(config_path=config_dir(), config_name="config", version_base="1.3")
def hydra_main(cfg: DictConfig) -> float:
    """One job: ``run_probe`` on the composed config; returns dev F1 (what sweepers maximise)."""
    _signal_state["started"] = True
    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    _install_signal_handlers()
    if multirun:
        if cfg.resume:
            done = finished_results(out_dir, cfg)
            if done is not None:
                print(f"resume: {out_dir} already has its {RESULTS}, skipped", flush=True)
                return float(done.dev.f1)
        (out_dir / ERROR_FILE).unlink(missing_ok=True)  # from an earlier, interrupted or failed try
        if _signal_state["signal"] is not None:  # the sweep was interrupted before this job started
            _record_interrupt(out_dir, hc.sweep.dir, f"not run: the sweep was interrupted by {_signal_state['signal']}")
            return float("nan")
    try:
        check_logger(cfg.logger)  # a tracker asked for but not installed fails before any work
        _signal_state["in_job"] = True
        try:
            result = run_probe(cfg, out_dir, _SESSION)
        finally:
            _signal_state["in_job"] = False
        log_job(cfg, result.to_dict(), out_dir, Path(hc.sweep.dir).resolve() if multirun else None)
    except Interrupted as e:
        if multirun:
            _record_interrupt(out_dir, hc.sweep.dir, f"{e} before the job finished")
            return float("nan")
        print(f"error: {e}; {out_dir} holds no {RESULTS}", file=sys.stderr, flush=True)
        sys.exit(128 + signal.Signals[e.signame].value)
    except UserError as e:
        if multirun:
            _record_failure(out_dir, e, user=True)
            return float("nan")
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except Exception as e:
        if multirun:
            _record_failure(out_dir, e, user=False)
            return float("nan")
        raise
    print(summary_line(result), flush=True)
    return float(result.dev.f1)


def _record_interrupt(out_dir: Path, sweep_dir: str, why: str) -> None:
    """Note an unfinished job for the report, with how to finish it."""
    if (out_dir / RESULTS).is_file():  # it finished just before the signal
        return
    message = (f"{why}; run the same command with resume=true hydra.sweep.dir={sweep_dir} "
               "to finish the unfinished jobs")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / ERROR_FILE, json.dumps({"status": "interrupted", "error": message,
                                                   "traceback": None}, indent=2))
    log.error("job interrupted: %s", why)
    print(f"interrupted: {out_dir}: {why}", file=sys.stderr, flush=True)


def _record_failure(out_dir: Path, e: BaseException, user: bool) -> None:
    """Keep the sweep going: note the failure in the job folder for the report."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / ERROR_FILE, json.dumps({
        "status": "failed", "error": f"{type(e).__name__}: {e}",
        "traceback": None if user else traceback.format_exc(),
    }, indent=2))
    log.error("job failed: %s", e)
    print(f"error: {e}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
