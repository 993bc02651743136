"""Collect every run under a folder and write tables and plots.

``bert-ner-probe-report DIR [--out OUT]`` (or :func:`write_report`) searches
``DIR`` recursively for job folders — any folder holding
``.hydra/config.yaml``, ``results.json`` or ``error.json`` — and writes into
``OUT`` (default ``DIR``):

* ``results.csv``       one row per job folder: status, run-level metrics and
  every flattened config field (``tagger.hidden_size``, …);
* ``table.md``          Table 7 of Devlin et al. (2019): dev/test F1 mean ± std
  over seeds per strategy, beside the paper's BERT-base dev F1, then every
  failed or missing run;
* ``strategies.png``    dev F1 per strategy, paper values as markers;
* ``layers.png``        dev F1 by hidden-state index for single-layer runs;
* ``mix_weights.png``   learned scalar-mix weights by layer;
* ``pooling.png``       dev F1 per strategy and sub-token pooling.

A plot is written only when the runs it needs exist. Runs are grouped into
sections that differ in encoder, pooling, context or any other config field
that changes the result (``tagger.crf``, ``trainer.lr``, …), so numbers from
different setups never share a mean; within a section a row is one strategy
(name, resolved layers, combine) and its runs are the seeds.

:class:`ReportCallback` runs the report at the end of a Hydra multirun
(``conf/config.yaml`` registers it) and exits non-zero when a job failed —
after the report is written.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from .errors import UserError

RESULTS_FILE = "results.json"
ERROR_FILE = "error.json"  # written by bert_ner_probe.main for a failed multirun job
HYDRA_CONFIG = Path(".hydra") / "config.yaml"
HYDRA_OVERRIDES = Path(".hydra") / "overrides.yaml"

CSV_FILE = "results.csv"
TABLE_FILE = "table.md"
STRATEGIES_PLOT = "strategies.png"
LAYERS_PLOT = "layers.png"
MIX_WEIGHTS_PLOT = "mix_weights.png"
POOLING_PLOT = "pooling.png"

#: Devlin et al. (2019), Table 7: feature-based NER with BERT-base (cased), CoNLL-2003 dev F1.
PAPER_DEV_F1: Dict[str, float] = {
    "embeddings": 91.0,
    "second_to_last": 95.6,
    "last": 94.9,
    "sum_last_four": 95.9,
    "concat_last_four": 96.1,
    "sum_all": 95.5,
}
#: The paper's fine-tuned BERT-base dev F1 on the same task.
PAPER_FINETUNE_DEV_F1 = 96.4
TABLE7_ORDER: Tuple[str, ...] = tuple(PAPER_DEV_F1)
PAPER_LABEL = "paper dev F1 (BERT-base)"

#: Config fields that never start a new section: the seed is what a row averages over,
#: the strategy is the row itself, and the rest change speed or bookkeeping, not the model.
_NOT_SECTION_FIELDS = frozenset({
    "seed", "device", "cache_dir", "threads", "progress", "write_predictions",
    "encoder.name", "encoder.name_or_path", "encoder.context", "pooling.method",
    "encoder.batch_size", "encoder.max_tokens", "trainer.eval_batch_size", "trainer.eval_max_words",
    "logger.name", "logger.tracking_uri", "logger.experiment", "logger.artifact_location", "logger.log_dir",
})

_SUMMARY_COLUMNS = ["encoder", "encoder_name", "num_layers", "strategy", "layers", "combine",
                    "pooling", "context", "seed"]
_METRIC_COLUMNS = ["dev_f1", "dev_precision", "dev_recall", "dev_support",
                   "test_f1", "test_precision", "test_recall", "test_support",
                   "best_epoch", "epochs_run", "cache_hit", "encoder_passes",
                   "extract_s", "train_s", "eval_s", "total_s", "device_resolved",
                   "encoder_dtype_resolved", "precision_resolved", "features_reused",
                   "mix_weights", "mix_gamma"]


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class Job:
    """One job folder: a finished run (``ok``), a ``failed`` one or a ``missing`` one.

    ``run_dir`` is relative to the searched folder (``"."`` for the folder itself);
    ``config`` is the run's resolved config (from ``results.json``, else from
    ``.hydra/config.yaml``, else empty).
    """

    run_dir: str
    status: str
    overrides: List[str]
    config: Dict[str, Any]
    results: Optional[Dict[str, Any]] = None
    error: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _natural_key(text: str) -> List[Union[int, str]]:
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
    return sorted(found, key=lambda p: _natural_key(p.relative_to(root).as_posix()))


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


def _check_results(results: Any) -> Dict[str, Any]:
    """The fields the report reads; raise ``ValueError`` naming the first one missing."""
    if not isinstance(results, dict):
        raise ValueError("not a JSON object")
    for key in ("strategy", "layers", "combine", "pooling", "context", "encoder", "seed"):
        if key not in results:
            raise ValueError(f"no {key!r}")
    for split in ("dev", "test"):
        if not isinstance(results.get(split), dict) or "f1" not in results[split]:
            raise ValueError(f"no {split}.f1")
    return results


def load_job(job_dir: Path, root: Path) -> Job:
    """Read one job folder; an unreadable ``results.json`` makes it a failed job, never an exception."""
    rel = job_dir.relative_to(root).as_posix()
    overrides = _read_overrides(job_dir)
    results_path, error_path = job_dir / RESULTS_FILE, job_dir / ERROR_FILE
    if results_path.is_file():
        try:
            results = _check_results(json.loads(results_path.read_text()))
        except (OSError, ValueError) as e:
            return Job(rel, "failed", overrides, _read_hydra_config(job_dir),
                       error=f"unreadable {RESULTS_FILE}: {e}")
        if results.get("status", "ok") == "ok":
            return Job(rel, "ok", overrides, results.get("config") or _read_hydra_config(job_dir), results)
        return Job(rel, "failed", overrides, results.get("config") or _read_hydra_config(job_dir),
                   error=str(results.get("error") or f"status {results.get('status')!r} in {RESULTS_FILE}"))
    config = _read_hydra_config(job_dir)
    if error_path.is_file():
        try:
            err = json.loads(error_path.read_text())
            message = str(err.get("error") or "unknown error") if isinstance(err, dict) else str(err)
        except (OSError, ValueError) as e:
            message = f"unreadable {ERROR_FILE}: {e}"
        return Job(rel, "failed", overrides, config, error=message)
    return Job(rel, "missing", overrides, config,
               error=f"no {RESULTS_FILE} or {ERROR_FILE}: the job was killed, is still running or never ran")


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


# --------------------------------------------------------------------------- grouping


def flatten(tree: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    """``{"tagger": {"crf": False}}`` → ``{"tagger.crf": False}``; lists stay values."""
    out: Dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _text(value: Any) -> str:
    """A config or result value as one cell: JSON for lists/dicts, empty for None."""
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def _layers_text(layers: Sequence[int]) -> str:
    """``[9, 10, 11, 12]`` → ``9–12``; ``[0, 3, 6]`` → ``0, 3, 6``."""
    layers = list(layers)
    if len(layers) > 2 and layers == list(range(layers[0], layers[0] + len(layers))):
        return f"{layers[0]}–{layers[-1]}"
    return ", ".join(str(x) for x in layers)


@dataclass
class Row:
    """One strategy in one section; its runs are the seeds."""

    strategy: str
    layers: Tuple[int, ...]
    combine: str
    label: str = ""
    runs: List[Job] = field(default_factory=list)

    @property
    def dev(self) -> List[float]:
        """Dev F1 of each run, in percent."""
        return [100.0 * float(j.results["dev"]["f1"]) for j in self.runs]

    @property
    def test(self) -> List[float]:
        """Test F1 of each run, in percent."""
        return [100.0 * float(j.results["test"]["f1"]) for j in self.runs]

    @property
    def paper(self) -> Optional[float]:
        return PAPER_DEV_F1.get(self.strategy)


@dataclass
class Section:
    """Runs that share encoder, pooling, context and every other result-changing config field."""

    key: Tuple[Tuple[str, str], ...]
    encoder_name: str
    num_layers: Optional[int]
    extras: Dict[str, str]
    rows: List[Row] = field(default_factory=list)

    @property
    def pooling(self) -> str:
        return dict(self.key)["pooling"]

    @property
    def context(self) -> str:
        return dict(self.key)["context"]

    def title(self, without: Sequence[str] = ()) -> str:
        """``minilm-l6 (6 layers) · pooling first · context document · tagger.crf=True``."""
        depth = f" ({self.num_layers} layers)" if self.num_layers is not None else ""
        parts = [f"{self.encoder_name}{depth}"]
        parts += [f"{name} {getattr(self, name)}" for name in ("pooling", "context") if name not in without]
        parts += [f"{k}={v}" for k, v in self.extras.items() if k not in without]
        return " · ".join(parts)


def _section_fields(runs: Sequence[Job]) -> List[str]:
    """Config fields (other than seed, strategy and bookkeeping) whose value differs between runs."""
    flat = [{k: _text(v) for k, v in flatten(j.config).items()} for j in runs]
    keys = sorted({k for f in flat for k in f})
    return [k for k in keys
            if k not in _NOT_SECTION_FIELDS and not k.startswith("strategy.")
            and len({f.get(k) for f in flat}) > 1]


def _row_sort_key(row: Row) -> Tuple[Any, ...]:
    """Table 7 order; then other multi-layer strategies by name (``scalar_mix_all`` …);
    then single layers (``layer_3``, ``custom`` with one layer) by index; then multi-layer ``custom``."""
    if row.strategy in TABLE7_ORDER:
        return 0, TABLE7_ORDER.index(row.strategy), (), row.layers, row.combine
    if len(row.layers) == 1:
        return 2, row.layers[0], _natural_key(row.strategy), row.layers, row.combine
    if row.strategy != "custom":
        return 1, 0, _natural_key(row.strategy), row.layers, row.combine
    return 3, 0, (), row.layers, row.combine


def _label_rows(rows: Sequence[Row]) -> None:
    """Name each row: the strategy, ``layer k`` for a one-layer custom run, layers appended when a name repeats."""
    counts: Dict[str, int] = {}
    for row in rows:
        counts[row.strategy] = counts.get(row.strategy, 0) + 1
    for row in rows:
        if row.strategy == "custom" and len(row.layers) == 1:
            row.label = f"layer {row.layers[0]}"
        elif row.strategy == "custom" or counts[row.strategy] > 1:
            row.label = f"{row.strategy} [{_layers_text(row.layers)}] {row.combine}"
        else:
            row.label = row.strategy


def group_runs(jobs: Sequence[Job]) -> List[Section]:
    """Sections (in order of first appearance) of Table-7-ordered rows of successful runs."""
    runs = [j for j in jobs if j.ok]
    varying = _section_fields(runs)
    sections: Dict[Tuple[Tuple[str, str], ...], Section] = {}
    for job in runs:
        r = job.results
        flat = flatten(job.config)
        extras = {k: _text(flat.get(k)) for k in varying}
        key = (("encoder", str(r["encoder"])), ("pooling", str(r["pooling"])), ("context", str(r["context"])),
               *extras.items())
        section = sections.get(key)
        if section is None:
            section = sections[key] = Section(key, str(r.get("encoder_name") or r["encoder"]),
                                              r.get("num_layers"), extras)
        layers, combine = tuple(int(x) for x in r["layers"]), str(r["combine"])
        row = next((x for x in section.rows if (x.strategy, x.layers, x.combine) == (r["strategy"], layers, combine)),
                   None)
        if row is None:
            row = Row(str(r["strategy"]), layers, combine)
            section.rows.append(row)
        row.runs.append(job)
    for section in sections.values():
        section.rows.sort(key=_row_sort_key)
        _label_rows(section.rows)
    return list(sections.values())


def mean_std(values: Sequence[float]) -> Tuple[float, Optional[float]]:
    """Mean and sample standard deviation (``None`` for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def format_mean_std(values: Sequence[float]) -> str:
    """``[80.0, 90.0]`` → ``85.0 ± 7.1``; one value → ``85.0 ± –``."""
    mean, std = mean_std(values)
    return f"{mean:.1f} ± {'–' if std is None else f'{std:.1f}'}"


# --------------------------------------------------------------------------- results.csv


def _job_columns(job: Job) -> Dict[str, Any]:
    """The summary and metric cells of one job (metrics only for a successful run)."""
    r = job.results
    if r is None:  # describe a failed job from its config
        flat = flatten(job.config)
        return {"encoder": flat.get("encoder.name_or_path"), "encoder_name": flat.get("encoder.name"),
                "strategy": flat.get("strategy.name"), "layers": _text(flat.get("strategy.layers")),
                "combine": flat.get("strategy.combine"), "pooling": flat.get("pooling.method"),
                "context": flat.get("encoder.context"), "seed": flat.get("seed")}
    row: Dict[str, Any] = {k: r.get(k) for k in _SUMMARY_COLUMNS}
    row["layers"] = _text(r["layers"])
    for split in ("dev", "test"):
        for metric in ("f1", "precision", "recall", "support"):
            row[f"{split}_{metric}"] = r[split].get(metric)
        for entity, scores in (r[split].get("per_type") or {}).items():
            row[f"{split}_f1_{entity}"] = scores.get("f1")
    for key in ("best_epoch", "epochs_run", "cache_hit", "encoder_passes"):
        row[key] = r.get(key)
    row.update({k: v for k, v in (r.get("timings") or {}).items()})
    row["device_resolved"] = r.get("device")
    row["encoder_dtype_resolved"] = r.get("encoder_dtype")
    row["precision_resolved"] = r.get("precision")
    row["features_reused"] = r.get("features_reused")
    mix = r.get("mix_weights")
    if mix:
        row["mix_weights"] = _text(mix.get("weights"))
        row["mix_gamma"] = mix.get("gamma")
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
            cells = {k: _text(v) for k, v in row.items()}
            cells.update({k: _text(v) for k, v in cfg.items() if k not in cells})
            writer.writerow(cells)
    return path


# --------------------------------------------------------------------------- table.md


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def render_table(sections: Sequence[Section], jobs: Sequence[Job], root: Path) -> str:
    """``table.md``: one Table 7 per section, the paper note, then failed or missing runs."""
    n_ok = sum(j.ok for j in jobs)
    failures = [j for j in jobs if not j.ok]
    lines = [
        "# Feature-based NER probing (Devlin et al. 2019, Table 7)",
        "",
        f"Runs under `{root}`: {n_ok} finished, {len(failures)} failed or missing. "
        "F1 in percent, mean ± sample std over seeds (`–` with one seed).",
        "",
        f"The paper's numbers are CoNLL-2003 dev F1 of BERT-base (cased) features with a two-layer "
        f"768-d BiLSTM; fine-tuning BERT-base gives {PAPER_FINETUNE_DEV_F1} dev F1. With a smaller or "
        "different encoder compare the ordering of the strategies, not the absolute values.",
    ]
    if not sections:
        lines += ["", "No finished runs."]
    header = ["strategy", "layers", "combine", "dev F1", "test F1", "n seeds", PAPER_LABEL]
    for section in sections:
        lines += ["", f"## {section.title()}", "",
                  "| " + " | ".join(header) + " |",
                  "|" + "|".join(["---"] * 3 + ["---:"] * 4) + "|"]
        for row in section.rows:
            paper = "" if row.paper is None else f"{row.paper:.1f}"
            cells = [row.label, _layers_text(row.layers), row.combine, format_mean_std(row.dev),
                     format_mean_std(row.test), str(len(row.runs)), paper]
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Failed or missing runs", ""]
    if not failures:
        lines.append("none")
    for job in failures:
        overrides = " ".join(job.overrides) if job.overrides else "(no overrides)"
        lines.append(f"- `{job.run_dir}` — **{job.status}** — overrides: `{overrides}` — "
                     f"{_one_line(job.error or '')}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- plots

Stats = Dict[str, Tuple[float, float]]  # category → (mean, std) in percent


def _figure(width: float, height: float):
    """A matplotlib Figure on the Agg canvas (no pyplot, no global backend change)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _stats(values: Sequence[float]) -> Tuple[float, float]:
    mean, std = mean_std(values)
    return mean, 0.0 if std is None else std


def _bar_panels(path: Path, panels: Sequence[Tuple[str, List[str], Dict[str, Stats]]], paper: bool) -> Path:
    """Grouped bars of dev F1 (mean ± std), one panel per ``(title, categories, {series: stats})``.

    With ``paper`` the paper's dev F1 is drawn as a marker on each Table 7 strategy.
    """
    width = max(6.0, 1.0 + 0.9 * max(len(cats) for _, cats, _ in panels))
    fig = _figure(width, 3.6 * len(panels))
    for i, (title, cats, series) in enumerate(panels):
        ax = fig.add_subplot(len(panels), 1, i + 1)
        n = len(series)
        bar_w = 0.8 / n
        values: List[float] = []
        for k, (name, stats) in enumerate(series.items()):
            xs = [j + (k - (n - 1) / 2) * bar_w for j, c in enumerate(cats) if c in stats]
            means = [stats[c][0] for c in cats if c in stats]
            stds = [stats[c][1] for c in cats if c in stats]
            ax.bar(xs, means, bar_w, yerr=stds, capsize=3, label=name)
            values += [m - s for m, s in zip(means, stds)]
        if paper:
            marks = [(j, PAPER_DEV_F1[c]) for j, c in enumerate(cats) if c in PAPER_DEV_F1]
            if marks:
                ax.scatter([j for j, _ in marks], [v for _, v in marks], marker="D", color="black",
                           zorder=3, label=PAPER_LABEL)
                values += [v for _, v in marks]
        ax.set_ylim(max(0.0, math.floor(min(values)) - 5), 100)
        ax.set_xticks(range(len(cats)))
        ax.set_xticklabels(cats, rotation=25, ha="right")
        ax.set_ylabel("dev F1 (%)")
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        if n > 1 or paper:
            ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.savefig(path, dpi=100)
    return path


def plot_strategies(sections: Sequence[Section], path: Path) -> Path:
    """Dev F1 per strategy in Table 7 order, one panel per section, paper values as markers."""
    panels = [(s.title(), [r.label for r in s.rows], {"this probe": {r.label: _stats(r.dev) for r in s.rows}})
              for s in sections]
    return _bar_panels(path, panels, paper=True)


def plot_pooling(sections: Sequence[Section], path: Path) -> Path:
    """Dev F1 per strategy with one bar per pooling method, one panel per otherwise-equal setup."""
    groups: Dict[Tuple[Tuple[str, str], ...], List[Section]] = {}
    for s in sections:
        groups.setdefault(tuple(kv for kv in s.key if kv[0] != "pooling"), []).append(s)
    panels = []
    for members in groups.values():
        cats: List[str] = []
        for row in sorted((r for s in members for r in s.rows), key=_row_sort_key):
            if row.label not in cats:
                cats.append(row.label)
        series = {f"pooling {s.pooling}": {r.label: _stats(r.dev) for r in s.rows} for s in members}
        panels.append((members[0].title(without=("pooling",)), cats, series))
    return _bar_panels(path, panels, paper=False)


def _single_layer_stats(section: Section) -> Dict[int, List[float]]:
    """Dev F1 runs by hidden-state index, over every one-layer row (whatever its strategy name)."""
    by_layer: Dict[int, List[float]] = {}
    for row in section.rows:
        if len(row.layers) == 1:
            by_layer.setdefault(row.layers[0], []).extend(row.dev)
    return by_layer


def plot_layers(sections: Sequence[Section], path: Path) -> Path:
    """Dev F1 (mean ± std) by hidden-state index; scalar_mix_all's mean as a dashed line."""
    fig = _figure(7.0, 4.5)
    ax = fig.add_subplot(1, 1, 1)
    colors = [f"C{i}" for i in range(10)]
    ticks: set = set()
    for i, section in enumerate(sections):
        by_layer = _single_layer_stats(section)
        if not by_layer:
            continue
        color = colors[i % len(colors)]
        xs = sorted(by_layer)
        stats = [_stats(by_layer[x]) for x in xs]
        label = section.title() if len(sections) > 1 else "single layer"
        ax.errorbar(xs, [m for m, _ in stats], yerr=[s for _, s in stats], marker="o", capsize=3,
                    color=color, label=label)
        mix = [v for row in section.rows if row.strategy == "scalar_mix_all" for v in row.dev]
        if mix:
            ax.axhline(statistics.fmean(mix), linestyle="--", color=color,
                       label=f"scalar_mix_all ({section.title()})" if len(sections) > 1 else "scalar_mix_all")
        ticks.update(xs)
    ax.set_xticks(sorted(ticks))
    return _finish_by_layer(fig, ax, "dev F1 (%)", "Dev F1 of single-layer features", path)


def plot_mix_weights(sections: Sequence[Section], path: Path) -> Path:
    """Learned scalar-mix weights (softmax-normalised, mean over seeds) by hidden-state index."""
    fig = _figure(7.0, 4.5)
    ax = fig.add_subplot(1, 1, 1)
    for section in sections:
        for row in section.rows:
            mixes = [j.results["mix_weights"] for j in row.runs if j.results.get("mix_weights")]
            if not mixes:
                continue
            layers = list(mixes[0]["layers"])
            weights = [statistics.fmean(m["weights"][k] for m in mixes) for k in range(len(layers))]
            label = row.label if len(sections) == 1 else f"{row.label} · {section.title()}"
            ax.plot(layers, weights, marker="o", label=f"{label} (n={len(mixes)})")
    return _finish_by_layer(fig, ax, "softmax weight", "Learned scalar-mix weights", path)


def _finish_by_layer(fig, ax, ylabel: str, title: str, path: Path) -> Path:
    """Axes, legend and file of a plot over hidden-state indices."""
    ax.set_xlabel("hidden state (0 = embeddings)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.legend(fontsize=8, loc="outside lower center")
    fig.savefig(path, dpi=100)
    return path


def write_plots(sections: Sequence[Section], out_dir: Path) -> List[Path]:
    """Every plot whose runs exist (see the module docstring)."""
    if not sections:
        return []
    written = [plot_strategies(sections, out_dir / STRATEGIES_PLOT)]
    layers = {x for s in sections for x in _single_layer_stats(s)}
    if len(layers) >= 2:
        written.append(plot_layers(sections, out_dir / LAYERS_PLOT))
    if any(j.results.get("mix_weights") for s in sections for r in s.rows for j in r.runs):
        written.append(plot_mix_weights(sections, out_dir / MIX_WEIGHTS_PLOT))
    if len({s.pooling for s in sections}) > 1:
        written.append(plot_pooling(sections, out_dir / POOLING_PLOT))
    return written


# --------------------------------------------------------------------------- entry points


def write_report(run_dir: Union[str, Path], out_dir: Union[str, Path, None] = None) -> Dict[str, Any]:
    """Collect the runs under ``run_dir`` and write the CSV, table and plots into ``out_dir`` (default ``run_dir``).

    Returns ``{"csv", "table": Path, "plots": [Path], "written": [Path], "runs": int,
    "failures": [Job]}`` — ``runs`` counts finished runs, ``failures`` the failed or
    missing jobs. Raises :class:`UserError` when ``run_dir`` holds no job folder.
    """
    root = Path(run_dir)
    jobs = load_jobs(root)
    out = Path(out_dir) if out_dir is not None else root
    out.mkdir(parents=True, exist_ok=True)
    sections = group_runs(jobs)
    csv_path = write_csv(jobs, out / CSV_FILE)
    table_path = out / TABLE_FILE
    table_path.write_text(render_table(sections, jobs, root), encoding="utf-8")
    plots = write_plots(sections, out)
    return {"csv": csv_path, "table": table_path, "plots": plots, "written": [csv_path, table_path, *plots],
            "runs": sum(j.ok for j in jobs), "failures": [j for j in jobs if not j.ok]}


def _print_summary(report: Dict[str, Any]) -> None:
    """Where the table is; each failed or missing job on stderr."""
    failures: List[Job] = report["failures"]
    print(f"report: {report['table']} ({report['runs']} runs, {len(failures)} failed or missing)", flush=True)
    for job in failures:
        print(f"{job.status}: {job.run_dir} [{' '.join(job.overrides)}]: {_one_line(job.error or '')}",
              file=sys.stderr, flush=True)


def cli(argv: Optional[Iterable[str]] = None) -> None:
    """``bert-ner-probe-report DIR [--out OUT]``; a user error prints ``error: …`` and exits 2."""
    parser = argparse.ArgumentParser(
        prog="bert-ner-probe-report",
        description="Collect the bert-ner-probe runs under DIR into results.csv, table.md and plots.",
    )
    parser.add_argument("run_dir", metavar="DIR", help="a run or multirun folder (searched recursively)")
    parser.add_argument("--out", default=None, help="where to write the report (default: DIR)")
    args = parser.parse_args(None if argv is None else list(argv))
    try:
        report = write_report(args.run_dir, args.out)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    _print_summary(report)


class ReportCallback(Callback):
    """Write the report into the sweep folder when a multirun ends; exit 1 if a job failed or is missing."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            report = write_report(Path(str(config.hydra.sweep.dir)))
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        _print_summary(report)
        from .tracking import log_sweep  # noqa: PLC0415 - the tracker's parent run holds the report

        log_sweep(config, Path(str(config.hydra.sweep.dir)), report)
        if report["failures"]:
            sys.exit(1)


if __name__ == "__main__":
    cli()
