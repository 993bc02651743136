"""The ``bert-ner-probe`` command: a Hydra main around :func:`bert_ner_probe.run.run_probe`.

A user error (bad data line, missing file, unknown layer) prints one line
``error: …`` and exits with status 2, without a traceback. In a multirun the
failing job writes ``error.json`` into its folder and the sweep goes on; the
report lists it and the command exits non-zero at the end (see
:mod:`bert_ner_probe.report`). Returns dev F1 so sweepers can maximise it.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from .config import register
from .errors import UserError
from .run import run_probe, summary_line
from .tracking import check_logger, log_job

log = logging.getLogger("bert_ner_probe")
ERROR_FILE = "error.json"


def config_dir() -> str:
    """``conf/`` inside the installed package, or beside it in a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return str(candidate)
    raise RuntimeError(f"no conf/config.yaml next to {here}")


register()


@hydra.main(config_path=config_dir(), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    try:
        check_logger(cfg.logger)  # a tracker asked for but not installed fails before any work
        results = run_probe(cfg, out_dir)
        log_job(cfg, results, out_dir, Path(hc.sweep.dir).resolve() if multirun else None)
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
    print(summary_line(results), flush=True)
    return float(results["dev"]["f1"])


def _record_failure(out_dir: Path, e: BaseException, user: bool) -> None:
    """Keep the sweep going: note the failure in the job folder for the report."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / ERROR_FILE).write_text(json.dumps({
        "status": "failed", "error": f"{type(e).__name__}: {e}",
        "traceback": None if user else traceback.format_exc(),
    }, indent=2))
    log.error("job failed: %s", e)
    print(f"error: {e}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
