"""Collect every run under a folder and write tables and plots.

``bert-ner-probe-report DIR [--out OUT] [--alpha A]`` (or :func:`write_report`) searches
``DIR`` recursively for job folders — any folder holding
``.hydra/config.yaml``, ``results.json`` or ``error.json`` — and writes into
``OUT`` (default ``DIR``):

* ``results.csv``       one row per job folder: status, run-level metrics and
  every flattened config field (``probe.hidden_size``, …);
* ``table.md``          Table 7 of Devlin et al. (2019): dev/test F1 mean ± std
  over seeds per strategy with 95% CIs, rows not significantly worse than the
  best marked, beside the paper's BERT-base dev F1; a fine-tuning row first
  under its own heading; pivot tables of sweeps over pooling, context or
  encoder; then every failed or missing run (:mod:`bert_ner_probe.report.tables`);
* ``significance.csv``  every compared pair of every table (and each pivot
  row's lead): difference, its CI, p, Holm-adjusted p, ASO eps_min, test
  (:mod:`bert_ner_probe.report.significance`, :mod:`bert_ner_probe.report.bootstrap`);
* ``significance.png``  pairwise heat map of Holm-adjusted p per table;
* ``strategies.png``    dev F1 per strategy with ``table.md``'s confidence
  intervals, paper values as markers, the fine-tuning level as a line;
* ``layers.png``        dev F1 by hidden-state index for single-layer runs;
* ``mix_weights.png``   learned scalar-mix weights by layer;
* ``pooling.png``       dev F1 per strategy and sub-token pooling;
* ``probing.md``        when a run has a control task, a random encoder, a code length (``mdl``) or a
  linear or MLP probe: per probe and encoder, by hidden state, real and control-task accuracy,
  selectivity, the conditional gain over a baseline hidden state, random-encoder F1, online code
  lengths and compression, with the checks they support and the best hidden state
  (:mod:`bert_ner_probe.report.probing`), summarised at the end of ``table.md``; then ``layers.png``
  is dev F1, selectivity and the gain by hidden state per probe (by relative depth when encoders of
  different depth are side by side), and ``mdl.png`` the compression.

A plot is written only when the runs it needs exist. Runs are grouped into
sections of rows by :func:`bert_ner_probe.report.rows.group_runs`: a section
per setup (encoder, pooling, context and every other result-changing config
field), a row per strategy, its runs the seeds.

:class:`bert_ner_probe.multirun.ReportCallback` runs it at the end of a Hydra
multirun (``conf/config.yaml`` registers it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Union

from bert_ner_probe.errors import UserError
from bert_ner_probe.report.collect import Job, load_jobs, write_csv
from bert_ner_probe.report.rows import CSV_FILE, PROBING_FILE, SIGNIFICANCE_FILE, TABLE_FILE, group_runs, one_line
from bert_ner_probe.report.settings import ALPHA, BOOTSTRAP_RESAMPLES, SEED, Settings, settings_from


# --------------------------------------------------------------------------- entry points


def write_report(run_dir: Union[str, Path], out_dir: Union[str, Path, None] = None,
                 settings: Optional[Settings] = None) -> Dict[str, Any]:
    """Collect the runs under ``run_dir`` and write the CSVs, table and plots into ``out_dir`` (default ``run_dir``).

    ``settings`` (``report.*``: alpha, bootstrap resamples, seed) default to
    :class:`bert_ner_probe.report.settings.Settings`. Returns ``{"csv",
    "significance", "table": Path, "probing": Path or None, "checks": [str], "plots": [Path], "written":
    [Path], "runs": int, "failures": [Job]}`` — ``runs`` counts finished runs, ``failures`` the
    failed or missing jobs, ``checks`` the probing checks (``probe title: check``). Raises
    :class:`UserError` when ``run_dir`` holds no job folder.
    """
    from bert_ner_probe.report.bootstrap import clear_memos
    from bert_ner_probe.report.plots import write_plots
    from bert_ner_probe.report.probing import needs_probing, probing_summary, probing_tables, write_probing
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
    probing = probing_tables(sections, settings) if needs_probing(jobs) else []
    probing_path = write_probing(probing, root, out / PROBING_FILE) if probing else None
    table_path = out / TABLE_FILE
    table_path.write_text(render_table(stats, pivots, jobs, root, settings)
                          + (probing_summary(probing) if probing else ""), encoding="utf-8")
    plots = write_plots(sections, out, stats, probing)
    clear_memos()
    return {"csv": csv_path, "significance": sig_path, "table": table_path, "probing": probing_path,
            "checks": [f"{t.title}: {c.line()}" for t in probing for c in t.checks], "plots": plots,
            "written": [csv_path, sig_path, table_path, *([probing_path] if probing_path else []), *plots],
            "runs": sum(j.ok for j in jobs), "failures": [j for j in jobs if not j.ok]}


def print_summary(report: Dict[str, Any]) -> None:
    """Where the table is (and the probing tables, with their checks); each failed or missing job on stderr."""
    failures: List[Job] = report["failures"]
    print(f"report: {report['table']} ({report['runs']} runs, {len(failures)} failed or missing)", flush=True)
    if report.get("probing") is not None:
        print(f"probing: {report['probing']}", flush=True)
        for check in report.get("checks", []):
            print(f"  {check.replace('**', '')}", flush=True)
    for job in failures:
        print(f"{job.status}: {job.run_dir} [{' '.join(job.overrides)}]: {one_line(job.error or '')}",
              file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    """The arguments of ``bert-ner-probe-report``."""
    parser = argparse.ArgumentParser(
        prog="bert-ner-probe-report",
        description="Collect the bert-ner-probe runs under DIR into results.csv, table.md and plots.",
    )
    parser.add_argument("run_dir", metavar="DIR", help="a run or multirun folder (searched recursively)")
    parser.add_argument("--out", default=None, help="where to write the report (default: DIR)")
    parser.add_argument("--alpha", type=float, default=ALPHA,
                        help=f"significance level (report.alpha, default {ALPHA})")
    parser.add_argument("--resamples", type=int, default=BOOTSTRAP_RESAMPLES,
                        help="bootstrap / randomisation resamples over sentences (report.bootstrap_resamples)")
    parser.add_argument("--seed", type=int, default=SEED, help="seed of the resampling (report.seed)")
    return parser


def cli(argv: Optional[Iterable[str]] = None) -> None:
    """``bert-ner-probe-report DIR [--out OUT]``; a user error prints ``error: …`` and exits 2."""
    args = build_parser().parse_args(None if argv is None else list(argv))
    try:
        report = write_report(args.run_dir, args.out, settings_from(args.alpha, args.resamples, args.seed))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print_summary(report)


if __name__ == "__main__":
    cli()
