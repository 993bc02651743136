"""The probing report: per probe, each hidden state's real task beside its control task, random encoder and
code length, and the checks a probing claim rests on (``probing.md``).

For each section of :func:`bert_ner_probe.report.rows.group_runs` (one per probe and its trainer settings:
the probing variants never split a section) a table whose rows are the hidden states (``layers``; other
strategies are rows named by their strategy) and whose columns are, over seeds (mean ± sample std):

* dev entity F1 and dev token accuracy of the real task (``control=none``, pretrained encoder);
* dev token accuracy of the control task (``control=word_type``): Hewitt & Liang (2019), "Designing and
  Interpreting Probes with Control Tasks", each word type gets one random tag;
* selectivity = real accuracy − control accuracy (:mod:`bert_ner_probe.report.selectivity`), with
  Welch's interval when both sides have two or more seeds;
* dev F1 and accuracy of the random encoder (``encoder.weights=random``): Zhang & Bowman (2018),
  "Language Modeling Teaches You More than Translation Does", the same architecture, seeded random weights;
* the online and uniform code lengths of the training tags and their ratio, the compression
  (``mdl=true``): Voita & Titov (2020), "Information-Theoretic Probing with Minimum Description Length",
  ``compression = N · log2 K / L_online``.

Each table states three checks with the measured numbers (:class:`Check`): the random encoder scores below
the pretrained one on every row; the control task's accuracy is below the real task's on every row; the
compression is highest where the F1 is (argmax of each, Spearman's rank correlation across rows).
"""

from __future__ import annotations

import math
import statistics
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from bert_ner_probe.report.collect import Job
from bert_ner_probe.report.rows import (PROBING_FILE, RANDOM, Row, Section, format_mean_std, is_control, layers_text,
                                        probe_of, row_sort_key, weights_of)
from bert_ner_probe.report.selectivity import selectivity, selectivity_interval
from bert_ner_probe.report.settings import Settings

MARK = "★"
#: Probes whose runs get a probing table even without a control task, random encoder or code length:
#: the small probes of the probing literature (Liu et al. 2019; Hewitt & Liang 2019).
SIMPLE_PROBES = ("linear", "mlp")
MISSING = "–"
HOLDS, FAILS, UNMEASURED = "holds", "does not hold", "not measured"


def needs_probing(jobs: Sequence[Job]) -> bool:
    """Whether a sweep gets the probing report: a finished run with a control task, a random encoder, a code
    length (``mdl``) or a linear or MLP probe."""
    return any(j.ok and (is_control(j) or weights_of(j) == RANDOM or j.result.mdl
                         or probe_of(j) in SIMPLE_PROBES) for j in jobs)


# --------------------------------------------------------------------------- the model


@dataclass
class ProbingRow:
    """One hidden state (or other strategy) of one probe: the runs of each variant."""

    name: str
    layers: Tuple[int, ...]
    real: List[Job] = field(default_factory=list)  # control=none, pretrained encoder
    control: List[Job] = field(default_factory=list)  # control task, pretrained encoder
    random: List[Job] = field(default_factory=list)  # real task, random encoder
    random_control: List[Job] = field(default_factory=list)  # control task, random encoder

    @property
    def single_layer(self) -> Optional[int]:
        """The hidden state of a one-layer row, else None."""
        return self.layers[0] if len(self.layers) == 1 else None


def f1s(runs: Sequence[Job]) -> List[float]:
    """Dev entity F1 of each run, in percent."""
    return [100.0 * j.result.dev.f1 for j in runs]


def accuracies(runs: Sequence[Job]) -> List[float]:
    """Dev token accuracy of each run that recorded one, in percent."""
    return [100.0 * j.result.dev.accuracy for j in runs if j.result.dev.accuracy is not None]


def mdl_values(runs: Sequence[Job], key: str) -> List[float]:
    """``mdl[key]`` (``online_bits``, ``uniform_bits``, ``compression``) of each run that measured its code length."""
    return [float(j.result.mdl[key]) for j in runs if j.result.mdl]


def kbits(runs: Sequence[Job], key: str) -> List[float]:
    """``mdl[key]`` of each run in kbits."""
    return [v / 1000.0 for v in mdl_values(runs, key)]


def mean(values: Sequence[float]) -> Optional[float]:
    """The mean, or None without values."""
    return statistics.fmean(values) if values else None


def selectivity_cell(real: Sequence[float], control: Sequence[float], level: float) -> Tuple[Optional[float], str]:
    """Hewitt & Liang (2019) selectivity in points and its cell: ``Δ [low, high]`` (Welch, two or more seeds
    each), the point ``Δ`` otherwise, ``–`` when a side is missing."""
    if not real or not control:
        return None, MISSING
    if len(real) >= 2 and len(control) >= 2:
        delta, low, high = selectivity_interval(real, control, level)
        return delta, f"{delta:.1f} [{low:.1f}, {high:.1f}]"
    delta = selectivity(statistics.fmean(real), statistics.fmean(control))
    return delta, f"{delta:.1f}"


@dataclass(frozen=True)
class Check:
    """One claim of a probing study, tested on the table's numbers: ``verdict`` is holds / does not hold /
    not measured, ``detail`` the figures it rests on."""

    name: str
    verdict: str
    detail: str

    def line(self) -> str:
        return f"{self.name}: **{self.verdict}** — {self.detail}"


@dataclass
class ProbingTable:
    """One probe's table: its section, rows, the level of its intervals and its checks."""

    probe: str
    section: Section
    rows: List[ProbingRow]
    level: float
    checks: List[Check] = field(default_factory=list)

    @property
    def title(self) -> str:
        return f"{self.probe} probe · {self.section.title(without=('probe.name',))}"

    def selectivity(self, row: ProbingRow, random: bool = False) -> Tuple[Optional[float], str]:
        real, control = (row.random, row.random_control) if random else (row.real, row.control)
        return selectivity_cell(accuracies(real), accuracies(control), self.level)


def _row_name(row: Row, clash: bool) -> str:
    """``3`` for the one-layer row of hidden state 3 (``3 (last)`` when two strategies read it), else
    ``strategy (layers)``."""
    if len(row.layers) == 1:
        plain = row.strategy in (f"layer_{row.layers[0]}", "custom")
        return str(row.layers[0]) if plain and not clash else f"{row.layers[0]} ({row.strategy})"
    return f"{row.strategy} ({layers_text(row.layers)})"


def probing_rows(section: Section) -> List[ProbingRow]:
    """The section's frozen-feature rows (pretrained, random, control) joined per strategy, in Table 7 order."""
    frozen = [r for r in (*section.rows, *section.controls) if not r.finetune]
    keys: Dict[Tuple[str, Tuple[int, ...], str], Row] = {}
    for row in sorted(frozen, key=row_sort_key):
        keys.setdefault((row.strategy, row.layers, row.combine), row)
    per_layer: Dict[Tuple[int, ...], int] = {}
    for _, layers, _ in keys:
        per_layer[layers] = per_layer.get(layers, 0) + 1
    out = {k: ProbingRow(_row_name(r, per_layer[r.layers] > 1), r.layers) for k, r in keys.items()}
    for row in frozen:
        target = out[row.strategy, row.layers, row.combine]
        control = any(is_control(j) for j in row.runs)
        variant = {(False, False): target.real, (True, False): target.control,
                   (False, True): target.random, (True, True): target.random_control}[control, row.random]
        variant.extend(row.runs)
    return list(out.values())


def probing_tables(sections: Sequence[Section], settings: Settings) -> List[ProbingTable]:
    """A table per section that has frozen-feature runs, with its checks."""
    tables = []
    for section in sections:
        rows = probing_rows(section)
        if not rows:
            continue
        runs = [j for r in rows for j in (*r.real, *r.control, *r.random, *r.random_control)]
        probes = sorted({probe_of(j) for j in runs})
        table = ProbingTable(", ".join(probes), section, rows, settings.level)
        table.checks = [random_below(table), control_below(table), compression_follows_f1(table)]
        tables.append(table)
    return tables


# --------------------------------------------------------------------------- checks


def _below(name: str, rows: Sequence[ProbingRow], low: Callable[[ProbingRow], List[float]],
           high: Callable[[ProbingRow], List[float]], low_name: str, high_name: str, missing: str) -> Check:
    """Whether mean(low) < mean(high) on every row that has both, with each row's two means."""
    held, broken = [], []
    for row in rows:
        a, b = mean(low(row)), mean(high(row))
        if a is None or b is None:
            continue
        (held if a < b else broken).append(f"{row.name} ({low_name} {a:.1f} vs {high_name} {b:.1f})")
    if not held and not broken:
        return Check(name, UNMEASURED, missing)
    n = len(held) + len(broken)
    if not broken:
        return Check(name, HOLDS, f"below on all {n} rows: " + ", ".join(held))
    detail = f"not below on {len(broken)} of {n} rows: " + ", ".join(broken)
    return Check(name, FAILS, detail + ("; below on " + ", ".join(held) if held else ""))


def random_below(table: ProbingTable) -> Check:
    """Zhang & Bowman (2018): the random encoder's dev F1 is below the pretrained encoder's on every row."""
    return _below("random encoder below pretrained (dev F1)", table.rows, lambda r: f1s(r.random),
                  lambda r: f1s(r.real), "random", "pretrained", "no row has both random-encoder and pretrained runs")


def control_below(table: ProbingTable) -> Check:
    """Hewitt & Liang (2019): the control task's dev accuracy is below the real task's on every row."""
    return _below("control task below real task (dev accuracy)", table.rows, lambda r: accuracies(r.control),
                  lambda r: accuracies(r.real), "control", "real", "no row has both control-task and real-task runs")


def _argmax(values: Dict[str, float]) -> List[str]:
    best = max(values.values())
    return [k for k, v in values.items() if v == best]


def spearman(x: Sequence[float], y: Sequence[float]) -> Tuple[float, float]:
    """Spearman's rank correlation ρ and its p-value (scipy), NaN when a side is constant or has under 3 values."""
    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return math.nan, math.nan
    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = stats.spearmanr(x, y)
    return float(result.statistic), float(result.pvalue)


def compression_follows_f1(table: ProbingTable) -> Check:
    """Voita & Titov (2020): the compression is highest at the row where dev F1 is highest (real task,
    pretrained encoder), over the rows that have both; Spearman's ρ between them across those rows."""
    name = "compression highest where F1 is highest"
    both = [r for r in table.rows if mdl_values(r.real, "compression") and f1s(r.real)]
    if len(both) < 2:
        return Check(name, UNMEASURED, f"{len(both)} rows have both a code length (mdl=true) and a real-task F1; "
                                       "needs two")
    comp = {r.name: statistics.fmean(mdl_values(r.real, "compression")) for r in both}
    f1 = {r.name: statistics.fmean(f1s(r.real)) for r in both}
    top_c, top_f = _argmax(comp), _argmax(f1)
    rho, p = spearman(list(comp.values()), list(f1.values()))
    p_text = "p < 0.001" if p < 0.001 else f"p = {p:.2g}"
    corr = (f"Spearman ρ = {rho:.2f} ({p_text}, n = {len(both)})" if not math.isnan(rho) else
            f"Spearman ρ undefined (n = {len(both)}: needs 3 rows and neither side constant)")
    coincide = bool(set(top_c) & set(top_f))
    detail = (f"highest compression at {', '.join(top_c)} ({comp[top_c[0]]:.2f}), highest dev F1 at "
              f"{', '.join(top_f)} ({f1[top_f[0]]:.1f}): they {'coincide' if coincide else 'differ'}; {corr}")
    return Check(name, HOLDS if coincide else FAILS, detail)


# --------------------------------------------------------------------------- Markdown


@dataclass(frozen=True)
class Column:
    """A table column: its header, the values of a row (over seeds), how it is printed and which way is best
    (``+1`` highest, ``-1`` lowest, ``0`` not marked)."""

    header: str
    values: Callable[[ProbingRow], List[float]]
    digits: int = 1
    best: int = 0


COLUMNS = (
    Column("dev F1", lambda r: f1s(r.real), best=1),
    Column("dev acc.", lambda r: accuracies(r.real), best=1),
    Column("control dev acc.", lambda r: accuracies(r.control)),
    # selectivity: its own cell (an interval), its column index is SELECTIVITY_AT
    Column("random-encoder dev F1", lambda r: f1s(r.random)),
    Column("random-encoder dev acc.", lambda r: accuracies(r.random)),
    Column("online code (kbits)", lambda r: kbits(r.real, "online_bits"), best=-1),
    Column("uniform code (kbits)", lambda r: kbits(r.real, "uniform_bits")),
    Column("compression", lambda r: mdl_values(r.real, "compression"), digits=2, best=1),
)
#: Columns shown only when some row has a value: the code length of the baselines.
OPTIONAL_COLUMNS = (
    Column("control compression", lambda r: mdl_values(r.control, "compression"), digits=2),
    Column("random-encoder compression", lambda r: mdl_values(r.random, "compression"), digits=2),
)
SELECTIVITY_AT = 3
SELECTIVITY_HEADER = "selectivity (points)"


def _best(rows: Sequence[ProbingRow], key: Callable[[ProbingRow], Optional[float]], sign: int) -> List[str]:
    """The names of the rows whose value is best (``sign`` +1 highest, -1 lowest), when two or more rows have one."""
    values = {r.name: key(r) for r in rows}
    values = {k: sign * v for k, v in values.items() if v is not None}
    return _argmax(values) if len(values) > 1 and sign else []


def render_probing_table(table: ProbingTable) -> List[str]:
    """One probe's table as Markdown lines (★ marks each column's best row)."""
    columns = list(COLUMNS) + [c for c in OPTIONAL_COLUMNS if any(c.values(r) for r in table.rows)]
    headers = ["hidden state", *(c.header for c in columns), "n seeds (real/control/random)"]
    headers.insert(1 + SELECTIVITY_AT, SELECTIVITY_HEADER)
    best = {c.header: _best(table.rows, lambda r, c=c: mean(c.values(r)), c.best) for c in columns}
    best[SELECTIVITY_HEADER] = _best(table.rows, lambda r: table.selectivity(r)[0], 1)
    lines = ["| " + " | ".join(headers) + " |", "|---|" + "---:|" * (len(headers) - 1)]
    for row in table.rows:
        cells = []
        for c in columns:
            values = c.values(row)
            mark = f" {MARK}" if row.name in best[c.header] else ""
            cells.append(format_mean_std(values, c.digits) + mark if values else MISSING)
        sel = table.selectivity(row)[1] + (f" {MARK}" if row.name in best[SELECTIVITY_HEADER] else "")
        cells.insert(SELECTIVITY_AT, sel)
        counts = "/".join(str(len(x)) for x in (row.real, row.control, row.random))
        lines.append("| " + " | ".join([row.name, *cells, counts]) + " |")
    return lines


def _footnote(table: ProbingTable) -> str:
    return (f"F1 and accuracy in percent, mean ± sample std over seeds (`–`: one seed, or no run). Selectivity = "
            f"real − control dev accuracy (Hewitt & Liang 2019), with Welch's {100 * table.level:g}% interval "
            f"where both have two or more seeds. Code lengths of the training tags (Voita & Titov 2020): online "
            f"(prequential) and uniform, compression = uniform / online; compare them across rows of one probe. "
            f"{MARK}: best row of the column (highest; shortest online code), by the mean, untested.")


def check_lines(table: ProbingTable) -> List[str]:
    """The table's checks as Markdown bullets."""
    return [f"- {c.line()}" for c in table.checks]


def render_probing(tables: Sequence[ProbingTable], root: Path) -> str:
    """``probing.md``: a table per probe, its footnote and its checks."""
    lines = ["# Probing: hidden states, control task, random encoder, code length", "",
             f"Runs under `{root}`. Control task: Hewitt & Liang (2019); random encoder: Zhang & Bowman (2018); "
             "online code length: Voita & Titov (2020)."]
    if not tables:
        lines += ["", "No finished frozen-feature runs."]
    for table in tables:
        lines += ["", f"## {table.title}", "", *render_probing_table(table), "", _footnote(table), "",
                  "Checks:", "", *check_lines(table)]
    return "\n".join(lines) + "\n"


def probing_summary(tables: Sequence[ProbingTable]) -> str:
    """The section ``table.md`` ends with: where the probing tables are and their checks."""
    lines = ["", "## Probing", "",
             f"Per probe: real task, control task, selectivity, random encoder and code length by hidden state in "
             f"[{PROBING_FILE}]({PROBING_FILE}). Its checks:"]
    for table in tables:
        lines += ["", f"{table.title}:", "", *check_lines(table)]
    return "\n".join(lines) + "\n"


def write_probing(tables: Sequence[ProbingTable], root: Path, path: Path) -> Path:
    """Write ``probing.md`` (:func:`render_probing`) to ``path``."""
    path.write_text(render_probing(tables, root), encoding="utf-8")
    return path
