"""Collect every run under a folder and write tables and plots.

``bert-ner-probe-report DIR [--out OUT] [--alpha A]`` (or :func:`write_report`) searches
``DIR`` recursively for job folders — any folder holding
``.hydra/config.yaml``, ``results.json`` or ``error.json`` — and writes into
``OUT`` (default ``DIR``):

* ``results.csv``       one row per job folder: status, run-level metrics and
  every flattened config field (``tagger.hidden_size``, …);
* ``table.md``          Table 7 of Devlin et al. (2019): dev/test F1 mean ± std
  over seeds per strategy with 95% CIs, rows not significantly worse than the
  best marked, beside the paper's BERT-base dev F1; a fine-tuning row first
  under its own heading; pivot tables of sweeps over pooling, context or
  encoder; then every failed or missing run (:mod:`bert_ner_probe.report.tables`);
* ``significance.csv``  every compared pair of every table (and each pivot
  row's lead): difference, its CI, p, Holm-adjusted p, ASO eps_min, test
  (:mod:`bert_ner_probe.report.significance`, :mod:`bert_ner_probe.report.bootstrap`);
* ``significance.png``  pairwise heat map of Holm-adjusted p per table;
* ``strategies.png``    dev F1 per strategy, paper values as markers, the
  fine-tuning level as a line;
* ``layers.png``        dev F1 by hidden-state index for single-layer runs;
* ``mix_weights.png``   learned scalar-mix weights by layer;
* ``pooling.png``       dev F1 per strategy and sub-token pooling.

A plot is written only when the runs it needs exist. Runs are grouped into
sections that differ in encoder, pooling, context or any other config field
that changes the result (``tagger.crf``, ``trainer.lr``, …), so numbers from
different setups never share a mean; within a section a row is one strategy
(name, resolved layers, combine) and its runs are the seeds. A fine-tuning
run (``strategy: finetune``) joins every section of its encoder, data, pooling
and context: its own ``trainer.*``, ``tagger.*`` and ``finetune.*`` never split it off.

:class:`ReportCallback` runs the report at the end of a Hydra multirun
(``conf/config.yaml`` registers it) and exits non-zero when a job failed —
after the report is written.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from bert_ner_probe.errors import UserError
from bert_ner_probe.strategy import FINETUNE
from bert_ner_probe.report.collect import Job, _natural_key, _text, flatten, load_jobs, write_csv

if TYPE_CHECKING:
    from bert_ner_probe.report.significance import Settings

CSV_FILE = "results.csv"
SIGNIFICANCE_FILE = "significance.csv"
SIGNIFICANCE_PLOT = "significance.png"
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
#: The paper's fine-tuned BERT-large dev F1 (Table 3).
PAPER_FINETUNE_LARGE_DEV_F1 = 96.6
_FINETUNE_ONLY_PREFIX = "finetune."
_FINETUNE_OWN_PREFIXES = ("trainer.", "tagger.", "finetune.")
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



# --------------------------------------------------------------------------- grouping


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
    def finetune(self) -> bool:
        return self.strategy == FINETUNE

    @property
    def paper(self) -> Optional[float]:
        """The paper's dev F1 of this strategy (fine-tuning: BERT-large's for a large encoder, else BERT-base's)."""
        if self.finetune:
            r = self.runs[0].results if self.runs else {}
            large = str(r.get("encoder_name")) == "bert-large-cased" or "bert-large" in str(r.get("encoder"))
            return PAPER_FINETUNE_LARGE_DEV_F1 if large else PAPER_FINETUNE_DEV_F1
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


def is_finetune(job: Job) -> bool:
    """A fine-tuning run (``strategy == "finetune"``) rather than a frozen-feature probe."""
    return job.results is not None and job.results.get("strategy") == FINETUNE


def _counts_for_section(key: str, finetune: bool) -> bool:
    """Whether config field ``key`` of a run can start a section.

    ``finetune.*`` never does; ``trainer.*`` and ``tagger.*`` of a fine-tuning
    run are its own training recipe, so they neither split it from the probe
    rows nor count as differences between the probe rows.
    """
    if key.startswith(_FINETUNE_ONLY_PREFIX):
        return False
    return not (finetune and key.startswith(_FINETUNE_OWN_PREFIXES))


def _section_fields(runs: Sequence[Job]) -> List[str]:
    """Config fields (other than seed, strategy and bookkeeping) whose value differs between runs."""
    flat = [(is_finetune(j), {k: _text(v) for k, v in flatten(j.config).items()}) for j in runs]
    keys = sorted({k for _, f in flat for k in f})
    return [k for k in keys
            if k not in _NOT_SECTION_FIELDS and not k.startswith("strategy.")
            and len({f.get(k) for ft, f in flat if _counts_for_section(k, ft)}) > 1]


def _row_sort_key(row: Row) -> Tuple[Any, ...]:
    """Table 7 order; then other multi-layer strategies by name (``scalar_mix_all`` …);
    then single layers (``layer_3``, ``custom`` with one layer) by index; then multi-layer ``custom``."""
    if row.finetune:
        return -1, 0, (), row.layers, row.combine
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
        if row.finetune and counts[row.strategy] == 1:
            row.label = row.strategy
        elif row.strategy == "custom" and len(row.layers) == 1:
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

    def key_of(job: Job, finetune: bool) -> Tuple[Tuple[str, str], ...]:
        r, flat = job.results, flatten(job.config)
        extras = [(k, _text(flat.get(k))) for k in varying if _counts_for_section(k, finetune)]
        return (("encoder", str(r["encoder"])), ("pooling", str(r["pooling"])), ("context", str(r["context"])),
                *extras)

    def add(section: Section, job: Job) -> None:
        r = job.results
        layers, combine = tuple(int(x) for x in r["layers"] or ()), _text(r["combine"])
        row = next((x for x in section.rows if (x.strategy, x.layers, x.combine) == (r["strategy"], layers, combine)),
                   None)
        if row is None:
            row = Row(str(r["strategy"]), layers, combine)
            section.rows.append(row)
        row.runs.append(job)

    def new_section(job: Job, key: Tuple[Tuple[str, str], ...]) -> Section:
        r = job.results
        sections[key] = Section(key, str(r.get("encoder_name") or r["encoder"]), r.get("num_layers"), dict(key[3:]))
        return sections[key]

    for job in (j for j in runs if not is_finetune(j)):
        key = key_of(job, False)
        add(sections.get(key) or new_section(job, key), job)
    # A fine-tuning run joins every section of the same encoder, data, pooling and context
    # (whatever the probes' trainer or tagger), as the paper's Table 7 puts both approaches together.
    for job in (j for j in runs if is_finetune(j)):
        key = key_of(job, True)
        homes = [s for k, s in sections.items()
                 if tuple(kv for kv in k if _counts_for_section(kv[0], True)) == key]
        for section in homes or [sections.get(key) or new_section(job, key)]:
            add(section, job)
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


# --------------------------------------------------------------------------- table.md


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


# --------------------------------------------------------------------------- entry points


def write_report(run_dir: Union[str, Path], out_dir: Union[str, Path, None] = None,
                 settings: Optional["Settings"] = None) -> Dict[str, Any]:
    """Collect the runs under ``run_dir`` and write the CSVs, table and plots into ``out_dir`` (default ``run_dir``).

    ``settings`` (``report.*``: alpha, bootstrap resamples, seed) default to
    :class:`bert_ner_probe.report.significance.Settings`. Returns ``{"csv",
    "significance", "table": Path, "plots": [Path], "written": [Path], "runs":
    int, "failures": [Job]}`` — ``runs`` counts finished runs, ``failures`` the
    failed or missing jobs. Raises :class:`UserError` when ``run_dir`` holds no job folder.
    """
    from bert_ner_probe.report.bootstrap import clear_memos
    from bert_ner_probe.report.plots import write_plots
    from bert_ner_probe.report.significance import Settings
    from bert_ner_probe.report.tables import analyse, render_table, write_significance_csv

    settings = settings or Settings()
    root = Path(run_dir)
    jobs = load_jobs(root)
    out = Path(out_dir) if out_dir is not None else root
    out.mkdir(parents=True, exist_ok=True)
    sections = group_runs(jobs)
    csv_path = write_csv(jobs, out / CSV_FILE)
    stats, pivots = analyse(sections, settings)
    sig_path = write_significance_csv(stats, pivots, out / SIGNIFICANCE_FILE)
    table_path = out / TABLE_FILE
    table_path.write_text(render_table(stats, pivots, jobs, root, settings), encoding="utf-8")
    plots = write_plots(sections, out, stats)
    clear_memos()
    return {"csv": csv_path, "significance": sig_path, "table": table_path, "plots": plots,
            "written": [csv_path, sig_path, table_path, *plots],
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
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level (report.alpha, default 0.05)")
    parser.add_argument("--resamples", type=int, default=1000,
                        help="bootstrap / randomisation resamples over sentences (report.bootstrap_resamples)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the resampling (report.seed)")
    args = parser.parse_args(None if argv is None else list(argv))
    try:
        report = write_report(args.run_dir, args.out, settings_from(args.alpha, args.resamples, args.seed))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    _print_summary(report)


def settings_from(alpha: float = 0.05, bootstrap_resamples: int = 1000, seed: int = 0) -> "Settings":
    """Checked report settings; a bad value is a :class:`UserError`."""
    from bert_ner_probe.report.significance import Settings

    if not 0.0 < alpha < 1.0:
        raise UserError(f"report.alpha={alpha}: must be in (0, 1)")
    if bootstrap_resamples < 100:
        raise UserError(f"report.bootstrap_resamples={bootstrap_resamples}: must be at least 100")
    return Settings(alpha=float(alpha), bootstrap_resamples=int(bootstrap_resamples), seed=int(seed))


class ReportCallback(Callback):
    """Write the report into the sweep folder when a multirun ends; exit 1 if a job failed or is missing."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            rc = config.get("report") or {}
            settings = settings_from(float(rc.get("alpha", 0.05)), int(rc.get("bootstrap_resamples", 1000)),
                                     int(rc.get("seed", 0)))
            report = write_report(Path(str(config.hydra.sweep.dir)), settings=settings)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        _print_summary(report)
        from bert_ner_probe.tracking import log_sweep  # noqa: PLC0415 - the tracker's parent run holds the report

        log_sweep(config, Path(str(config.hydra.sweep.dir)), report)
        if report["failures"]:
            sys.exit(1)


if __name__ == "__main__":
    cli()
