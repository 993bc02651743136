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
* what the hidden state adds beyond a baseline hidden state (``strategy=conditional`` runs, [h_b; h_L]):
  Hewitt, Ethayarajh, Liang & Manning (2021), "Conditional probing", the gain
  ``I_V(h_L → Y | h_b) = H_V(Y | h_b) − H_V(Y | h_b, h_L)`` in bits per word and in dev F1 points, paired by
  seed (:mod:`bert_ner_probe.report.conditional`);
* the online and uniform code lengths of the training tags and their ratio, the compression
  (``mdl=true``): Voita & Titov (2020), "Information-Theoretic Probing with Minimum Description Length",
  ``compression = N · log2 K / L_online``, with its t interval over seeds; the control task's and the random
  encoder's code lengths beside them when they were measured.

Each table states four checks with the measured numbers (:class:`Check`): the random encoder scores below
the pretrained one on every row; the control task's accuracy is below the real task's on every row; the
compression is highest where the F1 is (argmax of each, Spearman's rank correlation across rows); the control
task's online code is longer than the real task's on every row. It then names its best hidden state and the
shallowest one not significantly worse (:func:`depth_line`: the report's pairwise tests over the one-layer rows),
and probing.md ends with those of every table side by side (encoders of different depth by relative depth).
"""

from __future__ import annotations

import math
import statistics
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from bert_ner_probe.metrics.description_length import min_sentences
from bert_ner_probe.report.collect import Job
from bert_ner_probe.report.conditional import Gain, f1_gain, information_gain
from bert_ner_probe.report.rows import (PROBING_FILE, RANDOM, Row, Section, conditional_of, format_mean_std,
                                        is_control, layers_text, probe_of, row_sort_key, runs_loader, weights_of)
from bert_ner_probe.report.selectivity import selectivity, selectivity_interval
from bert_ner_probe.report.settings import Settings
from bert_ner_probe.report.significance import (NO_TEST, Pair, Sample, all_pairs, best_label, find_pair,
                                                not_worse_than_best, t_interval)

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
    # real task, pretrained encoder, [h_b; h_L] (strategy=conditional) for this row's hidden state L, by baseline b
    conditional: Dict[int, List[Job]] = field(default_factory=dict)

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


def by_seed(runs: Sequence[Job], value: Callable[[Job], Optional[float]]) -> Dict[int, float]:
    """``value`` of each run that has one, by seed (a later run of a seed replaces an earlier one)."""
    return {j.result.seed: v for j in runs if (v := value(j)) is not None}


def dev_bits(job: Job) -> Optional[float]:
    """The run's dev cross-entropy in bits per word (None in results.json files older than it)."""
    return job.result.dev.cross_entropy_bits


def dev_f1(job: Job) -> float:
    return 100.0 * job.result.dev.f1


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
    """One probe's table: its section, rows, the level of its intervals, its checks and its depth statement."""

    probe: str
    section: Section
    rows: List[ProbingRow]
    level: float
    checks: List[Check] = field(default_factory=list)
    depth: Optional["Depth"] = None

    @property
    def title(self) -> str:
        return f"{self.probe} probe · {self.section.title(without=('probe.name',))}"

    @property
    def num_layers(self) -> Optional[int]:
        return self.section.num_layers

    @property
    def random_only(self) -> bool:
        """No pretrained real-task run, only a random encoder's (an encoder probed with random weights)."""
        return not any(r.real for r in self.rows) and any(r.random for r in self.rows)

    def main(self, row: ProbingRow) -> List[Job]:
        """The row's runs of the encoder as probed: the real task on the pretrained encoder, or on the random one
        when the table has no pretrained run (:attr:`random_only`)."""
        return row.random if self.random_only else row.real

    def selectivity(self, row: ProbingRow, random: bool = False) -> Tuple[Optional[float], str]:
        real, control = (row.random, row.random_control) if random else (row.real, row.control)
        return selectivity_cell(accuracies(real), accuracies(control), self.level)

    @property
    def baselines(self) -> List[int]:
        """The baseline hidden states of the table's conditional runs."""
        return sorted({b for r in self.rows for b in r.conditional})

    def baseline_row(self, b: int) -> Optional[ProbingRow]:
        return next((r for r in self.rows if r.single_layer == b), None)

    def gains(self, row: ProbingRow, b: int) -> Tuple[Optional[Gain], Optional[Gain]]:
        """Hewitt et al. (2021): ``I_V(h_L → Y | h_b)`` in bits per word and the dev F1 gain of [h_b; h_L] over h_b,
        paired by seed (:mod:`bert_ner_probe.report.conditional`); None where a side is missing."""
        base, joint = self.baseline_row(b), row.conditional.get(b, [])
        if base is None or not joint or not base.real:
            return None, None
        return (information_gain(by_seed(base.real, dev_bits), by_seed(joint, dev_bits), self.level),
                f1_gain(by_seed(base.real, dev_f1), by_seed(joint, dev_f1), self.level))


def _row_name(row: Row, clash: bool) -> str:
    """``3`` for the one-layer row of hidden state 3 (``3 (last)`` when two strategies read it), else
    ``strategy (layers)``."""
    if len(row.layers) == 1:
        plain = row.strategy in (f"layer_{row.layers[0]}", "custom")
        return str(row.layers[0]) if plain and not clash else f"{row.layers[0]} ({row.strategy})"
    return f"{row.strategy} ({layers_text(row.layers)})"


def _conditional_row(row: Row) -> bool:
    """A row of conditional-probing runs of the real task on the pretrained encoder: joined to its hidden state's."""
    return not row.random and bool(row.runs) and all(conditional_of(j) is not None and not is_control(j)
                                                     for j in row.runs)


def probing_rows(section: Section) -> List[ProbingRow]:
    """The section's frozen-feature rows (pretrained, random, control) joined per strategy, in Table 7 order; the
    conditional runs [h_b; h_L] of the real task join hidden state L's row (one made for them if it has none)."""
    frozen = [r for r in (*section.rows, *section.controls) if not r.finetune]
    conditional = [r for r in frozen if _conditional_row(r)]
    frozen = [r for r in frozen if not _conditional_row(r)]
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
    rows = list(out.values())
    for row in conditional:
        for job in row.runs:
            b, layer = conditional_of(job)
            target = next((r for r in rows if r.single_layer == layer), None)
            if target is None:  # before the first deeper one-layer row, else after the last one
                target = ProbingRow(str(layer), (layer,))
                singles = [i for i, r in enumerate(rows) if r.single_layer is not None]
                deeper = [i for i in singles if rows[i].single_layer > layer]
                rows.insert(deeper[0] if deeper else (singles[-1] + 1 if singles else len(rows)), target)
            target.conditional.setdefault(b, []).append(job)
    return rows


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
        table.checks = [random_below(table), control_below(table), compression_follows_f1(table),
                        control_code_longer(table)]
        table.depth = best_depth(table, settings)
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


def control_code_longer(table: ProbingTable) -> Check:
    """Voita & Titov (2020): the control task's online code (kbits) is longer than the real task's on every row —
    the real tags are cheaper to send from the layer than tags that only memorising word types can give."""
    return _below("control task's code longer than the real task's (online code, kbits)", table.rows,
                  lambda r: kbits(r.real, "online_bits"), lambda r: kbits(r.control, "online_bits"), "real",
                  "control", "no row has both a real-task and a control-task code length (mdl=true)")


# --------------------------------------------------------------------------- depth


@dataclass(frozen=True)
class Depth:
    """A table's best hidden state by mean dev F1 and the shallowest one not significantly worse than it."""

    best: int
    best_f1: float
    shallowest: int
    shallowest_f1: float
    pair: Optional[Pair]  # the test of the shallowest against the best (None when they are the same)
    rows: int  # one-layer rows compared
    random: bool  # the encoder's weights were random (a table of random-encoder runs alone)
    first: int  # the shallowest hidden state compared

    def relative(self, layer: int, num_layers: Optional[int]) -> str:
        return f" ({layer / num_layers:.2f} of the depth)" if num_layers else ""


def best_depth(table: ProbingTable, settings: Settings) -> Optional[Depth]:
    """The best one-layer row by mean dev F1 and the shallowest not significantly worse than it, by the report's
    pairwise tests over the table's one-layer rows of the encoder as probed (:meth:`ProbingTable.main`): Welch's
    t-test over seeds where both rows have ``min_seeds``, else approximate randomisation over one seed's
    sentences; Holm–Bonferroni over those rows' pairs (:func:`~bert_ner_probe.report.significance.all_pairs`)."""
    rows = [r for r in table.rows if r.single_layer is not None and table.main(r)]
    if not rows:
        return None
    samples = [Sample(str(r.single_layer), [j.result.seed for j in table.main(r)],
                      {"dev": f1s(table.main(r)), "test": [100.0 * j.result.test.f1 for j in table.main(r)]},
                      runs_loader(table.main(r))) for r in rows]
    pairs = all_pairs(table.title, samples, settings, splits=("dev",)) if len(samples) > 1 else []
    marks = not_worse_than_best(samples, pairs, "dev")
    best = int(best_label(samples, "dev"))
    shallowest = min(int(label) for label, ok in marks.items() if ok)
    means = {int(s.label): s.mean("dev") for s in samples}
    pair = find_pair(pairs, "dev", str(best), str(shallowest)) if shallowest != best else None
    return Depth(best, means[best], shallowest, means[shallowest], pair, len(samples), table.random_only, min(means))


def depth_line(table: ProbingTable) -> str:
    """``Best hidden state: 3 (73.8 dev F1); the shallowest not significantly worse: 2 (70.4; …)``."""
    d = table.depth
    if d is None:
        return "Best hidden state: not measured (no one-layer row with dev F1)."
    n = table.num_layers
    weights = " (random weights)" if d.random else ""
    head = f"Best hidden state{weights}: {d.best}{d.relative(d.best, n)}, {d.best_f1:.1f} dev F1"
    if d.shallowest == d.best:
        tail = ("the only one-layer row" if d.rows == 1 else "the shallowest compared" if d.best == d.first
                else "every shallower one is significantly worse")
        return f"{head}; {tail}."
    p = d.pair
    test = "no test" if p is None or p.test == NO_TEST else f"{p.test}, p_holm = {p.p_holm:.3g}"
    return (f"{head}; the shallowest not significantly worse: {d.shallowest}{d.relative(d.shallowest, n)}, "
            f"{d.shallowest_f1:.1f} ({test}; Holm over the {d.rows} one-layer rows' pairs).")


# --------------------------------------------------------------------------- Markdown


Cell = Tuple[Optional[float], str]  # a cell's value (what ★ compares; None: no value) and its text


@dataclass(frozen=True)
class Column:
    """A table column: its header, a row's cell, which way is best (``+1`` highest, ``-1`` lowest, ``0`` not
    marked) and whether it is shown only when some row has a value."""

    header: str
    cell: Callable[[ProbingTable, ProbingRow], Cell]
    best: int = 0
    optional: bool = False


def mean_std_cell(values: Callable[[ProbingRow], List[float]], digits: int = 1) -> Callable[..., Cell]:
    """Mean ± sample std over seeds."""
    def cell(table: ProbingTable, row: ProbingRow) -> Cell:
        v = values(row)
        return (mean(v), format_mean_std(v, digits)) if v else (None, MISSING)
    return cell


def interval_cell(values: Callable[[ProbingRow], List[float]], digits: int = 1) -> Callable[..., Cell]:
    """Mean ± sample std over seeds and, with two or more, the t interval of the mean (``[low, high]``)."""
    def cell(table: ProbingTable, row: ProbingRow) -> Cell:
        v = values(row)
        if not v:
            return None, MISSING
        text = format_mean_std(v, digits)
        if len(v) >= 2:
            low, high = t_interval(v, table.level)
            text += f" [{low:.{digits}f}, {high:.{digits}f}]"
        return mean(v), text
    return cell


def gain_cell(b: int, bits: bool) -> Callable[..., Cell]:
    """The conditional gain over h_b of a row (:meth:`ProbingTable.gains`): in bits per word or in F1 points."""
    def cell(table: ProbingTable, row: ProbingRow) -> Cell:
        gain = table.gains(row, b)[0 if bits else 1]
        return (None, MISSING) if gain is None else (gain.mean, gain.text(3 if bits else 1))
    return cell


def selectivity_column(table: ProbingTable, row: ProbingRow) -> Cell:
    return table.selectivity(row)


SELECTIVITY_HEADER = "selectivity (points)"
COLUMNS = (
    Column("dev F1", mean_std_cell(lambda r: f1s(r.real)), best=1),
    Column("dev acc.", mean_std_cell(lambda r: accuracies(r.real)), best=1),
    Column("control dev acc.", mean_std_cell(lambda r: accuracies(r.control))),
    Column(SELECTIVITY_HEADER, selectivity_column, best=1),
    # the conditional gains go here (:func:`gain_columns`)
    Column("random-encoder dev F1", mean_std_cell(lambda r: f1s(r.random))),
    Column("random-encoder dev acc.", mean_std_cell(lambda r: accuracies(r.random))),
    Column("online code (kbits)", mean_std_cell(lambda r: kbits(r.real, "online_bits")), best=-1),
    Column("uniform code (kbits)", mean_std_cell(lambda r: kbits(r.real, "uniform_bits"))),
    Column("compression", interval_cell(lambda r: mdl_values(r.real, "compression"), 2), best=1),
    # shown when some row has one: the code length of the baselines
    Column("control online code (kbits)", mean_std_cell(lambda r: kbits(r.control, "online_bits")), optional=True),
    Column("control compression", interval_cell(lambda r: mdl_values(r.control, "compression"), 2), optional=True),
    Column("random-encoder compression", interval_cell(lambda r: mdl_values(r.random, "compression"), 2),
           optional=True),
)
GAINS_AT = 4  # the conditional gain columns' place in COLUMNS


def gain_columns(table: ProbingTable) -> List[Column]:
    """Per baseline hidden state of the table's conditional runs: the gain over it in bits per word and in F1."""
    return [Column(f"gain over h_{b} ({unit})", gain_cell(b, bits), best=1)
            for b in table.baselines for bits, unit in ((True, "bits/word"), (False, "dev F1"))]


def table_columns(table: ProbingTable) -> List[Column]:
    """The columns the table shows: the fixed ones, its gain columns, the optional ones some row has a value of."""
    fixed = [c for c in COLUMNS if not c.optional or any(c.cell(table, r)[0] is not None for r in table.rows)]
    at = fixed.index(COLUMNS[GAINS_AT])
    return fixed[:at] + gain_columns(table) + fixed[at:]


def _best(rows: Sequence[ProbingRow], key: Callable[[ProbingRow], Optional[float]], sign: int) -> List[str]:
    """The names of the rows whose value is best (``sign`` +1 highest, -1 lowest), when two or more rows have one."""
    values = {r.name: key(r) for r in rows}
    values = {k: sign * v for k, v in values.items() if v is not None}
    return _argmax(values) if len(values) > 1 and sign else []


def render_probing_table(table: ProbingTable) -> List[str]:
    """One probe's table as Markdown lines (★ marks each column's best row)."""
    columns = table_columns(table)
    conditional = bool(table.baselines)
    headers = ["hidden state", *(c.header for c in columns),
               "n seeds (real/control/random/conditional)" if conditional else "n seeds (real/control/random)"]
    best = {c.header: _best(table.rows, lambda r, c=c: c.cell(table, r)[0], c.best) for c in columns}
    lines = ["| " + " | ".join(headers) + " |", "|---|" + "---:|" * (len(headers) - 1)]
    for row in table.rows:
        cells = [c.cell(table, row)[1] + (f" {MARK}" if row.name in best[c.header] else "") for c in columns]
        counts = [row.real, row.control, row.random] + ([[j for js in row.conditional.values() for j in js]]
                                                          if conditional else [])
        lines.append("| " + " | ".join([row.name, *cells, "/".join(str(len(x)) for x in counts)]) + " |")
    return lines


def _footnote(table: ProbingTable) -> str:
    level = f"{100 * table.level:g}%"
    gains = (f" Gain over h_b (Hewitt et al. 2021): I_V(h_L → Y | h_b) = H_V(Y | h_b) − H_V(Y | h_b, h_L), the dev "
             f"cross-entropy (bits per word) of the probe on h_b less that of the probe on [h_b; h_L], and the same "
             f"difference in dev F1, mean ± std of the differences paired by seed with their paired t {level} "
             f"interval." if table.baselines else "")
    return (f"F1 and accuracy in percent, mean ± sample std over seeds (`–`: one seed, or no run). Selectivity = "
            f"real − control dev accuracy (Hewitt & Liang 2019), with Welch's {level} interval "
            f"where both have two or more seeds.{gains} Code lengths of the training tags (Voita & Titov 2020): "
            f"online (prequential) and uniform, compression = uniform / online with its t {level} interval over "
            f"seeds; compare them across rows of one probe. "
            f"{MARK}: best row of the column (highest; shortest online code), by the mean, untested.")


def mdl_note(table: ProbingTable) -> Optional[str]:
    """One line when no run of the table measured its code length because its training set is too small for it."""
    runs = [j for r in table.rows for j in (*r.real, *r.control, *r.random)]
    if not runs or any(j.result.mdl for j in runs):
        return None
    sizes = sorted({j.result.train_sentences for j in runs} - {None})
    if not sizes or sizes[-1] >= min_sentences():
        return None
    return (f"Code length: not measured — the online code needs {min_sentences():,} training sentences and these "
            f"runs trained on {' / '.join(f'{n:,}' for n in sizes)} (so debug=smoke turns mdl off).")


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
        note = mdl_note(table)
        lines += ["", f"## {table.title}", "", *render_probing_table(table), "", _footnote(table), "",
                  *([note, ""] if note else []), "Checks:", "", *check_lines(table), "", depth_line(table)]
    if len([t for t in tables if t.depth is not None]) > 1:
        lines += ["", *depth_summary(tables)]
    return "\n".join(lines) + "\n"


def depth_summary(tables: Sequence[ProbingTable]) -> List[str]:
    """Every table's best hidden state and the shallowest not significantly worse, side by side (by relative depth
    too: hidden state / number of layers, for encoders of different depth)."""
    lines = ["## Depth side by side", "",
             "| probe · encoder | layers | best hidden state (of the depth) | dev F1 | shallowest not significantly "
             "worse (of the depth) | dev F1 |", "|---|---:|---:|---:|---:|---:|"]
    for t in tables:
        d = t.depth
        if d is None:
            continue
        n = t.num_layers
        rel = (lambda h: f"{h} ({h / n:.2f})") if n else str
        name = t.title + (" (random weights)" if d.random else "")
        lines.append(f"| {name} | {n if n is not None else MISSING} | {rel(d.best)} | {d.best_f1:.1f} | "
                     f"{rel(d.shallowest)} | {d.shallowest_f1:.1f} |")
    return lines


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
