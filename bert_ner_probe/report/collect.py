"""Job folders of a run or multirun: find them, read each as a finished, failed or missing :class:`Job`,
and write them as ``results.csv``.

A job folder is any folder holding ``.hydra/config.yaml``, ``results.json``
or ``error.json``; a finished job's ``results.json`` is read as a
:class:`~bert_ner_probe.results.run_result.RunResult`, and one that is not a
finished run's (:func:`~bert_ner_probe.results.run_result.check_complete`)
makes a failed job, never an exception.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import yaml

from bert_ner_probe.errors import UserError
from bert_ner_probe.results.run_result import ERROR_FILE, RESULTS_FILE, FailedRun, RunResult, flatten

HYDRA_CONFIG = Path(".hydra") / "config.yaml"
HYDRA_OVERRIDES = Path(".hydra") / "overrides.yaml"


@dataclass(frozen=True)
class Job:
    """One job folder: a finished run (``ok``), a ``failed`` one or a ``missing`` one.

    ``run_dir`` is relative to the searched folder (``"."`` for the folder itself);
    ``config`` is the run's resolved config (from ``results.json``, else from
    ``.hydra/config.yaml``, else empty); ``result`` the finished run's record.
    """

    run_dir: str
    status: str
    overrides: List[str]
    config: Dict[str, Any]
    result: Optional[RunResult] = None
    error: Optional[str] = None
    path: Optional[Path] = None  # the job folder itself (its prediction files are read from there)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def natural_key(text: str) -> List[Union[int, str]]:
    """Sort ``2`` before ``10``: digit runs compare as numbers."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _is_job_dir(path: Path) -> bool:
    return (path / HYDRA_CONFIG).is_file() or (path / RESULTS_FILE).is_file() or (path / ERROR_FILE).is_file()


def find_job_dirs(root: Path) -> List[Path]:
    """Every job folder at or below ``root``, in natural order; hidden folders and predictions skipped."""
    found = []
    for dirpath, dirnames, _ in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "predictions"]
        if _is_job_dir(Path(dirpath)):
            found.append(Path(dirpath))
    return sorted(found, key=lambda p: natural_key(p.relative_to(root).as_posix()))


def _read_overrides(job_dir: Path) -> List[str]:
    path = job_dir / HYDRA_OVERRIDES
    if not path.is_file():
        return []
    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return []
    return [str(o) for o in loaded] if isinstance(loaded, list) else []


def _read_hydra_config(job_dir: Path) -> Dict[str, Any]:
    """The job's ``.hydra/config.yaml``, resolved where possible (interpolations kept as text otherwise)."""
    path = job_dir / HYDRA_CONFIG
    if not path.is_file():
        return {}
    from omegaconf import OmegaConf

    try:
        cfg = OmegaConf.load(path)
    except Exception:  # a half-written or hand-edited file: describe the job without it
        return {}
    try:
        container = OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # e.g. ${hydra:...} outside a Hydra app
        container = OmegaConf.to_container(cfg, resolve=False)
    return container if isinstance(container, dict) else {}


def load_job(job_dir: Path, root: Path) -> Job:
    """Read one job folder; a ``results.json`` that is not a finished run's makes it a failed job, never an
    exception."""
    rel = job_dir.relative_to(root).as_posix()
    overrides = _read_overrides(job_dir)
    results_path, error_path = job_dir / RESULTS_FILE, job_dir / ERROR_FILE
    if results_path.is_file():
        try:
            result = RunResult.load(results_path)
        except FailedRun as e:
            return Job(rel, "failed", overrides, _read_hydra_config(job_dir), error=str(e), path=job_dir)
        except (OSError, ValueError, TypeError, KeyError) as e:
            return Job(rel, "failed", overrides, _read_hydra_config(job_dir),
                       error=f"unreadable {RESULTS_FILE}: {e}", path=job_dir)
        return Job(rel, "ok", overrides, result.config or _read_hydra_config(job_dir), result, path=job_dir)
    config = _read_hydra_config(job_dir)
    if error_path.is_file():
        try:
            err = json.loads(error_path.read_text())
            message = str(err.get("error") or "unknown error") if isinstance(err, dict) else str(err)
        except (OSError, ValueError) as e:
            message = f"unreadable {ERROR_FILE}: {e}"
        return Job(rel, "failed", overrides, config, error=message, path=job_dir)
    return Job(rel, "missing", overrides, config,
               error=f"no {RESULTS_FILE} or {ERROR_FILE}: the job was killed, is still running or never ran",
               path=job_dir)


def load_jobs(root: Union[str, Path]) -> List[Job]:
    """Every job below ``root``; raise :class:`UserError` when there is none."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root} is not a folder")
    dirs = find_job_dirs(root)
    if not dirs:
        raise UserError(
            f"no runs under {root}: expected a run or multirun folder whose jobs hold "
            f"{RESULTS_FILE}, {ERROR_FILE} or {HYDRA_CONFIG.as_posix()}"
        )
    return [load_job(d, root) for d in dirs]


def cell_text(value: Any) -> str:
    """A config or result value as one cell: JSON for lists/dicts, empty for None."""
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


_SUMMARY_COLUMNS = ["encoder", "encoder_name", "causal", "num_layers", "strategy", "layers", "combine",
                    "pooling", "context", "seed", "probe", "control", "encoder_weights"]
_METRIC_COLUMNS = ["dev_f1", "dev_precision", "dev_recall", "dev_support", "dev_accuracy", "dev_cross_entropy_bits",
                   "test_f1", "test_precision", "test_recall", "test_support", "test_accuracy",
                   "mdl_online_bits", "mdl_uniform_bits", "mdl_compression",
                   "best_epoch", "epochs_run", "cache_hit", "encoder_passes",
                   "extract_s", "train_s", "eval_s", "total_s", "peak_rss_mb", "device_resolved",
                   "encoder_dtype_resolved", "precision_resolved", "features_reused",
                   "mix_weights", "mix_gamma"]


# --------------------------------------------------------------------------- results.csv


def _job_columns(job: Job) -> Dict[str, Any]:
    """The summary and metric cells of one job (metrics only for a successful run)."""
    r = job.result
    if r is None:  # describe a failed job from its config
        flat = flatten(job.config)
        return {"encoder": flat.get("encoder.name_or_path"), "encoder_name": flat.get("encoder.name"),
                "strategy": flat.get("strategy.name"), "layers": cell_text(flat.get("strategy.layers")),
                "combine": flat.get("strategy.combine"), "pooling": flat.get("pooling.method"),
                "context": flat.get("encoder.context"), "seed": flat.get("seed"), "probe": flat.get("probe.name"),
                "control": flat.get("control"), "encoder_weights": flat.get("encoder.weights")}
    row: Dict[str, Any] = {k: getattr(r, k) for k in _SUMMARY_COLUMNS}
    row["layers"] = cell_text(r.layers)
    for split, scores in (("dev", r.dev), ("test", r.test)):
        for metric in ("f1", "precision", "recall", "support", "accuracy"):
            row[f"{split}_{metric}"] = getattr(scores, metric)
        if split == "dev":  # a probe's dev cross-entropy, bits per word (H_V of conditional probing)
            row["dev_cross_entropy_bits"] = scores.cross_entropy_bits
        for entity, per in scores.per_type.items():
            row[f"{split}_f1_{entity}"] = per.f1
    mdl = r.mdl or {}  # Voita & Titov (2020) online code length, when the run measured it (mdl=true)
    for key in ("online_bits", "uniform_bits", "compression"):
        row[f"mdl_{key}"] = mdl.get(key)
    for key in ("best_epoch", "epochs_run", "cache_hit", "encoder_passes"):
        row[key] = getattr(r, key)
    row.update(r.timings)
    row["peak_rss_mb"] = r.peak_rss_mb  # the job's peak resident set size, beside its time
    row["device_resolved"] = r.device
    row["encoder_dtype_resolved"] = r.encoder_dtype
    row["precision_resolved"] = r.precision
    row["features_reused"] = r.features_reused
    if r.mix_weights:
        row["mix_weights"] = cell_text(r.mix_weights.get("weights"))
        row["mix_gamma"] = r.mix_weights.get("gamma")
    return row


def write_csv(jobs: Sequence[Job], path: Path) -> Path:
    """One row per job: ``run_dir, status, error, overrides``, summary, metrics, then flattened config."""
    rows = []
    for job in jobs:
        row = {"run_dir": job.run_dir, "status": job.status, "error": job.error or "",
               "overrides": " ".join(job.overrides)}
        row.update(_job_columns(job))
        rows.append((row, flatten(job.config)))
    fixed = ["run_dir", "status", "error", "overrides", *_SUMMARY_COLUMNS, *_METRIC_COLUMNS]
    per_type = sorted({k for row, _ in rows for k in row if k not in fixed})
    config_keys = sorted({k for _, cfg in rows for k in cfg} - set(fixed) - set(per_type))
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fixed + per_type + config_keys, restval="")
        writer.writeheader()
        for row, cfg in rows:
            cells = {k: cell_text(v) for k, v in row.items()}
            cells.update({k: cell_text(v) for k, v in cfg.items() if k not in cells})
            writer.writerow(cells)
    return path
