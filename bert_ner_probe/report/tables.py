"""The report's statistics per table and ``table.md``: intervals, marks, pivots, the fine-tuning row.

:func:`analyse` turns each section of :func:`bert_ner_probe.report.rows.group_runs`
into :class:`bert_ner_probe.report.significance.Sample` rows, gives each row its
interval, compares every pair (Holm per table and split) and builds the
pivot tables of sweeps that vary pooling, context or the encoder;
:func:`render_table` writes them as Markdown and :func:`write_significance_csv`
as ``significance.csv``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from bert_ner_probe.report.collect import Job
from bert_ner_probe.report.rows import (CSV_FILE, PAPER_LABEL, PROBING_FILE, Row, Section, control_of,
                                        format_mean_std, layers_text, one_line, row_sort_key, runs_loader)
from bert_ner_probe.report.settings import Settings
from bert_ner_probe.report.significance import (NO_TEST, SEED_TEST, SIGNIFICANCE_COLUMNS, SPLITS, Pair, Sample, adjust,
                           all_pairs, compare, find_pair, not_worse_than_best, row_interval)
from bert_ner_probe.results.run_result import flatten
from bert_ner_probe.strategy.table7 import PAPER_FINETUNE_DEV_F1

MARK = "★"
PIVOT_SETTINGS = ("encoder", "pooling", "context")


def sample_of(row: Row, label: Optional[str] = None) -> Sample:
    return Sample(label or row.label, [j.result.seed for j in row.runs],
                  {"dev": row.dev, "test": row.test}, runs_loader(row.runs))


@dataclass
class TableStats:
    """One section's statistics."""

    section: Section
    samples: List[Sample]
    pairs: List[Pair]
    intervals: Dict[Tuple[str, str], Tuple[Optional[float], Optional[float], str]]
    marks: Dict[str, Dict[str, bool]]


@dataclass
class Pivot:
    """One row per strategy, one column per value of ``setting``; ``leads[label]`` tests best vs runner-up."""

    setting: str
    title: str
    split: str
    columns: List[str]
    cells: Dict[str, Dict[str, Sample]] = field(default_factory=dict)
    leads: Dict[str, Pair] = field(default_factory=dict)


def analyse(sections: Sequence[Section], settings: Settings) -> Tuple[List[TableStats], List[Pivot]]:
    """Intervals, pairwise tests and marks of every section, then the pivots."""
    stats = []
    for section in sections:
        samples = [sample_of(r) for r in section.rows]
        pairs = all_pairs(section.title(), samples, settings)
        intervals = {(s.label, split): row_interval(s, split, settings) for s in samples for split in SPLITS}
        marks = {split: not_worse_than_best(samples, pairs, split) for split in SPLITS}
        stats.append(TableStats(section, samples, pairs, intervals, marks))
    return stats, pivots(stats, settings)


def pivots(stats: Sequence[TableStats], settings: Settings) -> List[Pivot]:
    """For each setting in :data:`PIVOT_SETTINGS` that varies between otherwise equal sections: a pivot per split."""
    out: List[Pivot] = []
    for setting in PIVOT_SETTINGS:
        groups: Dict[Tuple, List[TableStats]] = {}
        for t in (t for t in stats if t.section.rows):  # a section of control-task runs alone has no row to pivot
            groups.setdefault(tuple(kv for kv in t.section.key if kv[0] != setting), []).append(t)
        for members in groups.values():
            if len(members) < 2:
                continue
            def column(t: TableStats) -> str:
                return t.section.encoder_name if setting == "encoder" else dict(t.section.key)[setting]
            columns = [column(t) for t in members]
            rows = sorted({r.label: r for t in members for r in t.section.rows}.values(), key=row_sort_key)
            for split in SPLITS:
                pivot = Pivot(setting, _shared_title(members[0].section, setting), split, columns)
                for row in rows:
                    pivot.cells[row.label] = {column(t): s for t in members for s in t.samples
                                              if s.label == row.label}
                family = []
                for label, cells in pivot.cells.items():
                    ranked = sorted(cells.items(), key=lambda kv: -kv[1].mean(split))
                    if len(ranked) < 2:
                        continue
                    (ca, sa), (cb, sb) = ranked[0], ranked[1]
                    a = Sample(ca, sa.seeds, sa.scores, sa.loader, sa.loaded)
                    b = Sample(cb, sb.seeds, sb.scores, sb.loader, sb.loaded)
                    pair = compare(a, b, split, settings, f"pivot {setting} · {pivot.title} · {label}")
                    pivot.leads[label] = pair
                    family.append(pair)
                adjust(family, settings.alpha)
                out.append(pivot)
    return out


def _shared_title(section: Section, setting: str) -> str:
    """What the sections of a pivot share: the title without the varied setting."""
    if setting != "encoder":
        return section.title(without=(setting,))
    parts = [f"pooling {section.pooling}", f"context {section.context}"]
    return " · ".join(parts + [f"{k}={v}" for k, v in section.extras.items()])


def write_significance_csv(stats: Sequence[TableStats], pivots_: Sequence[Pivot], path: Path) -> Path:
    """``significance.csv``: every pair of every table, then each pivot row's lead."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=SIGNIFICANCE_COLUMNS)
        writer.writeheader()
        for t in stats:
            for pair in t.pairs:
                writer.writerow(pair.row())
        for pivot in pivots_:
            for pair in pivot.leads.values():
                writer.writerow(pair.row())
    return path


# --------------------------------------------------------------------------- Markdown


def _ci_text(interval: Tuple[Optional[float], Optional[float], str]) -> str:
    low, high, how = interval
    return "–" if low is None else f"[{low:.1f}, {high:.1f}]{'' if how == 't' else ' b'}"


def _p_text(pair: Pair) -> str:
    return "no test" if pair.test == NO_TEST else f"p_holm = {pair.p_holm:.3g}"


def _header(finetune_share: bool) -> List[str]:
    cols = ["strategy", "layers", "combine", "dev F1", "dev 95% CI", "test F1", "test 95% CI", "n seeds"]
    return cols + (["share of fine-tuning dev F1"] if finetune_share else []) + [PAPER_LABEL]


def _table(rows: Sequence[Row], t: TableStats, share_of: Optional[float]) -> List[str]:
    header = _header(share_of is not None)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * (len(header) - 3)) + "|"]
    for row in rows:
        cells = [row.label, layers_text(row.layers), row.combine]
        for split, values in (("dev", row.dev), ("test", row.test)):
            mark = f" {MARK}" if t.marks[split].get(row.label) and len(t.samples) > 1 else ""
            cells += [format_mean_std(values) + mark, _ci_text(t.intervals[(row.label, split)])]
        cells.append(str(len(row.runs)))
        if share_of is not None:
            cells.append(f"{100.0 * sum(row.dev) / len(row.dev) / share_of:.1f}%")
        cells.append("" if row.paper is None else f"{row.paper:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _train_sentences(run: Job, finetune: bool) -> Optional[int]:
    """The training sentences a run trained on: the fine-tuning record's own count, else the corpus's."""
    r = run.result
    if finetune and (r.finetune or {}).get("train_sentences") is not None:
        return int(r.finetune["train_sentences"])
    return r.train_sentences


def _unlike_training_sets(ft: Row, frozen: Sequence[Row]) -> Optional[str]:
    """Why the fine-tuning row's F1 is not comparable with the frozen rows' (None when it is).

    A "share of fine-tuning dev F1" compares two ways of using an encoder; it means that only when both
    trained on the same training sentences (a fine-tuning row on a subset, ``finetune.train_limit``,
    reads lower for want of data, not for its method).
    """
    ft_n = {_train_sentences(j, True) for j in ft.runs}
    frozen_n = {_train_sentences(j, False) for r in frozen for j in r.runs}
    if not frozen or ft_n == frozen_n:
        return None
    return (f"No share of fine-tuning dev F1: the fine-tuning row trained on "
            f"{' / '.join(f'{n:,}' for n in sorted(x for x in ft_n if x is not None)) or 'unknown'} training "
            f"sentences, the frozen rows on {' / '.join(f'{n:,}' for n in sorted(x for x in frozen_n if x is not None))}"
            f" (finetune.train_limit), so its dev F1 is not comparable with theirs.")


def _finetune_notes(t: TableStats, ft: Row, frozen: Sequence[Row]) -> List[str]:
    """The fine-tuning footnote (its training subset or epochs) and whether it beats the best frozen row."""
    notes = []
    cfg = flatten(ft.runs[0].config)
    limit, epochs = cfg.get("finetune.train_limit"), cfg.get("finetune.epochs", cfg.get("trainer.epochs"))
    probe_epochs = {flatten(j.config).get("trainer.epochs") for r in frozen for j in r.runs}
    if limit is not None or (probe_epochs and probe_epochs != {epochs}):
        limit = limit if limit is not None else cfg.get("data.limit.train")
        subset = "all training sentences" if limit is None else f"first {limit} training sentences"
        notes.append(f"fine-tuning row: {subset}, {epochs} epochs.")
    if frozen:
        best = max(frozen, key=lambda r: sum(r.dev) / len(r.dev))
        ft_mean, best_mean = sum(ft.dev) / len(ft.dev), sum(best.dev) / len(best.dev)
        pair = find_pair(t.pairs, "dev", ft.label, best.label)
        verdict = "beats" if ft_mean > best_mean else "does not beat"
        sig = ("not tested" if pair is None or pair.test == NO_TEST else
               f"{'significant' if pair.significant else 'not significant'}, {pair.test}, {_p_text(pair)}")
        notes.append(f"Fine-tuning ({ft_mean:.1f} dev F1) {verdict} the best frozen row, {best.label} "
                     f"({best_mean:.1f}): {ft_mean - best_mean:+.1f} points ({sig}).")
    return notes


def _footnote(t: TableStats, settings: Settings) -> str:
    tests = {p.test for p in t.pairs}
    how = ("Welch's t-test over seeds, ASO eps_min in significance.csv" if tests == {SEED_TEST} else
           "Welch's t-test over seeds where both rows have 3 or more, else approximate randomisation over the "
           "sentences of one seed's predictions")
    return (f"{MARK}: best row of the split, or not significantly worse than it ({how}, Holm–Bonferroni over "
            f"the table's pairs, alpha = {settings.alpha:g}); CIs are t intervals over seeds, `b` a bootstrap "
            f"over sentences ({settings.bootstrap_resamples} resamples).")


def _span(values: Sequence[float], unit: str) -> str:
    """``12–15 s`` (or ``12 s`` when they agree)."""
    low, high = min(values), max(values)
    return f"{low:,.0f} {unit}" if round(low) == round(high) else f"{low:,.0f}–{high:,.0f} {unit}"


def _resources_note(section: Section) -> Optional[str]:
    """Each job's time and peak memory, as a range over the section's runs (per job: results.csv)."""
    runs = [j.result for r in section.rows for j in r.runs if j.result is not None]
    seconds = [float(r.timings["total_s"]) for r in runs if r.timings.get("total_s") is not None]
    peaks = [float(r.peak_rss_mb) for r in runs if r.peak_rss_mb is not None]
    if not seconds:
        return None
    memory = f", peak RSS {_span(peaks, 'MiB')}" if peaks else ""
    return (f"Time and memory per job: {_span(seconds, 's')}{memory} (each job's `total_s` and `peak_rss_mb` "
            f"are in {CSV_FILE}).")


def _controls_note(section: Section) -> str:
    """Where a section's control-task runs are, and why no strategy table shows them."""
    runs = [j for r in section.controls for j in r.runs]
    controls = ", ".join(sorted({f"control={control_of(j)}" for j in runs}))
    return (f"{len(runs)} control-task runs ({controls}; Hewitt & Liang 2019) are left out of this table: their "
            f"entity F1 is not a measure. Their token accuracy and the selectivity are in [{PROBING_FILE}]"
            f"({PROBING_FILE}).")


def _pivot_lines(p: Pivot) -> List[str]:
    lines = ["", f"## {p.split} F1 by {p.setting} · {p.title}", "",
             "| strategy | " + " | ".join(p.columns) + " | lead of the best |",
             "|---|" + "---:|" * (len(p.columns) + 1)]
    for label, cells in p.cells.items():
        best = max(cells, key=lambda c: cells[c].mean(p.split)) if cells else None
        row = [label]
        for col in p.columns:
            s = cells.get(col)
            text = "" if s is None else format_mean_std(s.scores[p.split])
            row.append(f"**{text}**" if col == best and len(cells) > 1 else text)
        lead = p.leads.get(label)
        row.append("" if lead is None else
                   f"{lead.delta:+.1f} over {lead.b}, {'significant' if lead.significant else 'not significant'} "
                   f"({lead.test}, {_p_text(lead)})")
        lines.append("| " + " | ".join(row) + " |")
    return lines


def render_table(stats: Sequence[TableStats], pivots_: Sequence[Pivot], jobs: Sequence[Job], root: Path,
                 settings: Settings) -> str:
    """``table.md``: one Table 7 per section (fine-tuning first), pivots, then failed or missing runs."""
    n_ok = sum(j.ok for j in jobs)
    failures = [j for j in jobs if not j.ok]
    lines = [
        "# Feature-based NER probing (Devlin et al. 2019, Table 7)",
        "",
        f"Runs under `{root}`: {n_ok} finished, {len(failures)} failed or missing. "
        f"F1 in percent, mean ± sample std over seeds (`–` with one seed), {100 * settings.level:g}% CIs.",
        "",
        f"The paper's numbers are CoNLL-2003 dev F1 of BERT-base (cased) features with a two-layer "
        f"768-d BiLSTM; fine-tuning BERT-base gives {PAPER_FINETUNE_DEV_F1} dev F1. With a smaller or "
        "different encoder compare the ordering of the strategies, not the absolute values.",
    ]
    if not stats:
        lines += ["", "No finished runs."]
    for t in stats:
        section = t.section
        lines += ["", f"## {section.title()}", ""]
        if section.controls:
            lines += [_controls_note(section)] + ([""] if section.rows else [])
        if not section.rows:
            continue
        ft = next((r for r in section.rows if r.finetune), None)
        frozen = [r for r in section.rows if not r.finetune]
        if ft is not None:
            lines += ["### Fine-tuning approach", ""] + _table([ft], t, None)
            lines += ["", "### Feature-based approach", ""]
        unlike = _unlike_training_sets(ft, frozen) if ft is not None else None
        share = sum(ft.dev) / len(ft.dev) if ft is not None and unlike is None else None
        lines += _table(frozen, t, share)
        if unlike is not None:
            lines += ["", unlike]
        if len(t.samples) > 1:
            lines += ["", _footnote(t, settings)]
        if ft is not None:
            lines += [""] + _finetune_notes(t, ft, frozen)
        resources = _resources_note(section)
        if resources is not None:
            lines += ["", resources]
    for p in pivots_:
        lines += _pivot_lines(p)
    lines += ["", "## Failed or missing runs", ""]
    if not failures:
        lines.append("none")
    for job in failures:
        overrides = " ".join(job.overrides) if job.overrides else "(no overrides)"
        lines.append(f"- `{job.run_dir}` — **{job.status}** — overrides: `{overrides}` — "
                     f"{one_line(job.error or '')}")
    return "\n".join(lines) + "\n"

