"""What runs when a Hydra multirun ends: the report, the tracker's sweep run, the exit status.

:class:`ReportCallback` (registered in ``conf/config.yaml``) writes the
report into the sweep folder (:func:`bert_ner_probe.report.callback.write_report`),
logs it to the tracker (:func:`bert_ner_probe.tracking.log_sweep`) and exits
non-zero when a job failed — after the report is written. It sits above
both, with the other wiring modules: the report knows nothing of the tracker.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from bert_ner_probe.errors import UserError
from bert_ner_probe.report.callback import print_summary, write_report
from bert_ner_probe.report.settings import ALPHA, BOOTSTRAP_RESAMPLES, SEED, settings_from


class ReportCallback(Callback):
    """Write the report into the sweep folder when a multirun ends; exit 1 if a job failed or is missing."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            rc = config.get("report") or {}
            settings = settings_from(float(rc.get("alpha", ALPHA)),
                                     int(rc.get("bootstrap_resamples", BOOTSTRAP_RESAMPLES)), int(rc.get("seed", SEED)))
            report = write_report(Path(str(config.hydra.sweep.dir)), settings=settings)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        print_summary(report)
        from bert_ner_probe.tracking import log_sweep  # noqa: PLC0415 - the tracker's parent run holds the report

        log_sweep(config, Path(str(config.hydra.sweep.dir)), report)
        if report["failures"]:
            sys.exit(1)
