"""Experiment tracking: each finished job, and each finished sweep, recorded in MLflow or TensorBoard.

Nothing here runs inside training. A job is logged after
:func:`~bert_ner_probe.run.run_probe` returns, from its results dict (whose
``history`` holds each epoch's train loss and dev score); a sweep is logged by
:class:`~bert_ner_probe.multirun.ReportCallback` after its report is written.
``logger=none`` (the default) logs nothing.

MLflow (``logger=mlflow``, extra ``[track]``), through ``MlflowClient`` so
no global MLflow state is touched; ``logger.tracking_uri`` is any tracking
URI (null = MLflow's own default: ``MLFLOW_TRACKING_URI`` or its local store).

* one run per job: the flattened config as params; ``epoch_train_loss`` and
  the dev score early stopping watched (``epoch_dev_f1``; ``epoch_dev_accuracy``
  for a control task) at step = epoch; the final dev/test P/R/F1 (micro and per
  type, named as the columns of ``results.csv``), best epoch and timings as
  metrics; ``results.json`` and ``predictions/`` as artifacts; in a sweep the
  tag ``bert_ner_probe.sweep_dir``;
* one parent run per sweep: ``table.md``, ``results.csv``, the PNGs (and
  ``significance.csv`` / ``optimization_results.yaml`` when present) as
  artifacts, the run counts as metrics; every job run of the sweep (same tag)
  gets ``mlflow.parentRunId``, so the UI shows them nested under it.

TensorBoard (``logger=tensorboard``): per job, the epoch curves and final
metrics as scalars and the config as text, in ``<run folder>/tensorboard``
(or ``logger.log_dir/<run name>``); per sweep, ``table.md`` as text and the
PNGs as images in ``<sweep folder>/tensorboard``. ``tensorboard --logdir
<sweep folder>`` shows them all.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from bert_ner_probe.choice import Choice
from bert_ner_probe.errors import UserError
from bert_ner_probe.results.run_result import ERROR_FILE, RESULTS_FILE, RunResult, flatten


class Tracker(Choice):
    """``logger.name``: where jobs and sweeps are logged besides their folders."""

    none = "none"
    mlflow = "mlflow"
    tensorboard = "tensorboard"

_PACKAGES = {"mlflow": ("mlflow", "pip install 'bert_ner_probe[track]' (or pip install mlflow)"),
             "tensorboard": ("torch.utils.tensorboard",
                             "pip install 'bert_ner_probe[track]' (or pip install tensorboard)")}
SWEEP_TAG = "bert_ner_probe.sweep_dir"
KIND_TAG = "bert_ner_probe.kind"  # job | sweep
PARENT_TAG = "mlflow.parentRunId"
#: Files of a sweep folder logged with its parent run, when present.
SWEEP_FILES = ("table.md", "results.csv", "significance.csv", "optimization_results.yaml")


def check_logger(logger_cfg: Any) -> None:
    """Fail before any work when ``logger.name`` is unknown or its package is not installed (one UserError)."""
    name = _name(logger_cfg)
    if name == Tracker.none:
        return
    module, how = _PACKAGES[name]
    try:
        __import__(module)
    except ImportError:
        raise UserError(f"logger={name} needs the {name} package, which is not installed: {how}") from None


def _name(logger_cfg: Any) -> Tracker:
    return Tracker.parse("none" if logger_cfg is None else logger_cfg.get("name") or "none", "logger")


def job_metrics(results: Mapping[str, Any]) -> Dict[str, float]:
    """Final numbers of one run, named as ``results.csv``'s columns (dev_f1, dev_f1_PER, train_s, …)."""
    out: Dict[str, float] = {}
    for split in ("dev", "test"):
        scores = results[split]
        for metric in ("f1", "precision", "recall", "support"):
            if scores.get(metric) is not None:
                out[f"{split}_{metric}"] = float(scores[metric])
        for entity, per in (scores.get("per_type") or {}).items():
            for metric in ("f1", "precision", "recall"):
                out[f"{split}_{metric}_{_key(entity)}"] = float(per[metric])
    for key in ("best_epoch", "epochs_run", "encoder_passes"):
        if results.get(key) is not None:
            out[key] = float(results[key])
    out.update({k: float(v) for k, v in (results.get("timings") or {}).items() if v is not None})
    return out


def epoch_metrics(results: Mapping[str, Any]) -> List[Dict[str, float]]:
    """``[{"step": epoch, "epoch_train_loss": …, "epoch_<dev score>": …}, …]`` from the run's history; the dev score
    is named as early stopping named it (``epoch_dev_f1``; ``epoch_dev_accuracy`` for a control task)."""
    run = RunResult.from_dict(results)
    return [{"step": e.epoch, "epoch_train_loss": e.train_loss, f"epoch_{run.dev_score_name}": e.dev_score}
            for e in run.history]


def _key(text: str) -> str:
    """A metric/param name MLflow and TensorBoard accept: letters, digits, ``_ - . /`` and spaces."""
    return re.sub(r"[^\w\-./ ]", "_", str(text))


def _params(results: Mapping[str, Any]) -> Dict[str, str]:
    return {_key(k): ("null" if v is None else json.dumps(v) if isinstance(v, (list, dict)) else str(v))
            for k, v in flatten(dict(results.get("config") or {})).items()}


def _run_name(results: Mapping[str, Any]) -> str:
    return f"{results['strategy']} seed={results['seed']}"


# --------------------------------------------------------------------------- entry points


def log_job(cfg: Any, results: Mapping[str, Any], out_dir: Path, sweep_dir: Optional[Path] = None) -> Optional[str]:
    """Record one finished job with the tracker ``cfg.logger`` names; return the MLflow run id (else None)."""
    name = _name(cfg.get("logger"))
    check_logger(cfg.get("logger"))
    if name == Tracker.mlflow:
        return _mlflow_job(cfg.logger, results, Path(out_dir), sweep_dir)
    if name == Tracker.tensorboard:
        _tensorboard_job(cfg.logger, results, Path(out_dir))
    return None


def log_sweep(cfg: Any, sweep_dir: Path, report: Mapping[str, Any]) -> Optional[str]:
    """Record a finished sweep (its report already written); return the MLflow parent run id (else None)."""
    name = _name(cfg.get("logger"))
    check_logger(cfg.get("logger"))
    sweep_dir = Path(sweep_dir).resolve()
    if name == Tracker.mlflow:
        return _mlflow_sweep(cfg.logger, sweep_dir, report)
    if name == Tracker.tensorboard:
        _tensorboard_sweep(sweep_dir, report)
    return None


# --------------------------------------------------------------------------- MLflow


def _client(logger_cfg: Any):
    """``(MlflowClient, experiment id)``; the experiment is created on first use."""
    from mlflow.tracking import MlflowClient  # noqa: PLC0415 - optional extra

    client = MlflowClient(tracking_uri=logger_cfg.get("tracking_uri"))
    name = str(logger_cfg.get("experiment") or "bert_ner_probe")
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return client, exp.experiment_id
    try:
        return client, client.create_experiment(name, artifact_location=logger_cfg.get("artifact_location"))
    except Exception:  # another job of the sweep created it in the meantime
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return client, exp.experiment_id


def _log_batches(client, run_id: str, params: Mapping[str, str], metrics: List[Any]) -> None:
    """MLflow takes at most 100 params and 1000 metrics per call."""
    from mlflow.entities import Param  # noqa: PLC0415

    items = [Param(k, v) for k, v in params.items()]
    for i in range(0, len(items), 100):
        client.log_batch(run_id, params=items[i:i + 100])
    for i in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[i:i + 1000])


def _mlflow_job(logger_cfg: Any, results: Mapping[str, Any], out_dir: Path, sweep_dir: Optional[Path]) -> str:
    from mlflow.entities import Metric  # noqa: PLC0415

    client, exp_id = _client(logger_cfg)
    tags = {KIND_TAG: "job", "bert_ner_probe.run_dir": str(out_dir.resolve())}
    if sweep_dir is not None:
        tags[SWEEP_TAG] = str(Path(sweep_dir).resolve())
    run = client.create_run(exp_id, run_name=_run_name(results), tags=tags)
    run_id = run.info.run_id
    try:
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for h in epoch_metrics(results)
                   for step in [h["step"]] for k, v in h.items() if k != "step"]
        metrics += [Metric(_key(k), v, now, 0) for k, v in job_metrics(results).items()]
        _log_batches(client, run_id, _params(results), metrics)
        for name in (RESULTS_FILE, ERROR_FILE):
            if (out_dir / name).is_file():
                client.log_artifact(run_id, str(out_dir / name))
        if (out_dir / "predictions").is_dir():
            client.log_artifacts(run_id, str(out_dir / "predictions"), "predictions")
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _mlflow_sweep(logger_cfg: Any, sweep_dir: Path, report: Mapping[str, Any]) -> str:
    from mlflow.entities import Metric  # noqa: PLC0415

    client, exp_id = _client(logger_cfg)
    run = client.create_run(exp_id, run_name=f"sweep {sweep_dir.parent.name}/{sweep_dir.name}",
                            tags={KIND_TAG: "sweep", SWEEP_TAG: str(sweep_dir)})
    run_id = run.info.run_id
    try:
        now = int(time.time() * 1000)
        failures = len(report.get("failures") or [])
        _log_batches(client, run_id, {"sweep_dir": str(sweep_dir)},
                     [Metric("runs", float(report.get("runs", 0)), now, 0),
                      Metric("failures", float(failures), now, 0)])
        for path in _sweep_files(sweep_dir, report):
            client.log_artifact(run_id, str(path))
        children = client.search_runs(
            [exp_id], filter_string=f"tags.`{SWEEP_TAG}` = {_quote(str(sweep_dir))} and tags.`{KIND_TAG}` = 'job'",
            max_results=50000)
        for child in children:
            client.set_tag(child.info.run_id, PARENT_TAG, run_id)
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id


def _sweep_files(sweep_dir: Path, report: Mapping[str, Any]) -> List[Path]:
    """The report's files (table, CSV, plots) and the other sweep-level files that exist."""
    paths = [Path(p) for p in report.get("written") or []]
    paths += [sweep_dir / name for name in SWEEP_FILES]
    seen, out = set(), []
    for p in paths:
        if p.is_file() and p.resolve() not in seen:
            seen.add(p.resolve())
            out.append(p)
    return out


# --------------------------------------------------------------------------- TensorBoard


def _tensorboard_job(logger_cfg: Any, results: Mapping[str, Any], out_dir: Path) -> Path:
    from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415

    base = logger_cfg.get("log_dir")
    log_dir = Path(base) / f"{out_dir.parent.name}_{out_dir.name}" if base else out_dir / "tensorboard"
    with SummaryWriter(str(log_dir)) as writer:
        for h in epoch_metrics(results):
            for k, v in h.items():
                if k != "step":
                    writer.add_scalar(k, v, h["step"])
        for k, v in job_metrics(results).items():
            writer.add_scalar(f"final/{_key(k)}", v, 0)
        writer.add_text("config", "\n".join(f"    {k} = {v}" for k, v in _params(results).items()))
        writer.add_text("run", _run_name(results))
    return log_dir


def _tensorboard_sweep(sweep_dir: Path, report: Mapping[str, Any]) -> Path:
    import numpy as np  # noqa: PLC0415
    from matplotlib.image import imread  # noqa: PLC0415
    from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415

    log_dir = sweep_dir / "tensorboard"
    with SummaryWriter(str(log_dir)) as writer:
        for path in _sweep_files(sweep_dir, report):
            if path.suffix == ".png":
                image = np.asarray(imread(path))  # Shape: (height, width, channels), floats in [0, 1]
                writer.add_image(path.stem, image[..., :3], 0, dataformats="HWC")
            elif path.suffix == ".md":
                writer.add_text(path.stem, path.read_text(encoding="utf-8"))
    return log_dir
