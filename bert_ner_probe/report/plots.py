"""The report's plots: strategies, layers, scalar-mix weights, pooling, the significance heat map, and the
probing plots (dev F1, selectivity and the conditional gain by hidden state per probe, compression by hidden
state; by relative depth when encoders of different depth are side by side).

Each function draws onto a matplotlib ``Figure`` on the Agg canvas (no
pyplot, no global backend change) and writes one PNG; :func:`write_plots`
writes those whose runs exist. Imported by the report only when it writes
plots, so ``bert_ner_probe.report.callback`` stays cheap to import.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, Tuple

from bert_ner_probe.report.rows import (LAYERS_PLOT, MDL_PLOT, MIX_WEIGHTS_PLOT, PAPER_LABEL, POOLING_PLOT,
                                        SIGNIFICANCE_PLOT, STRATEGIES_PLOT, Section, mean_std, row_sort_key)
from bert_ner_probe.strategy.table7 import PAPER_DEV_F1

if TYPE_CHECKING:
    from bert_ner_probe.report.probing import ProbingRow, ProbingTable
    from bert_ner_probe.report.tables import TableStats


Stats = Dict[str, Tuple[float, float, float]]  # category → (mean, error below, error above) in percent


def _figure(width: float, height: float):
    """A matplotlib Figure on the Agg canvas (no pyplot, no global backend change)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _stats(values: Sequence[float]) -> Tuple[float, float, float]:
    """Mean ± sample std (0 for one value)."""
    mean, std = mean_std(values)
    return mean, 0.0 if std is None else std, 0.0 if std is None else std


def _interval_stats(values: Sequence[float], interval: Tuple[Optional[float], Optional[float], str]
                    ) -> Tuple[float, float, float]:
    """The mean and the row's confidence interval as table.md gives it (none: no bar)."""
    mean = statistics.fmean(values)
    low, high, _ = interval
    return (mean, 0.0, 0.0) if low is None else (mean, max(0.0, mean - low), max(0.0, high - mean))


def _bar_panels(path: Path, panels: Sequence[Tuple[str, List[str], Dict[str, Stats]]], paper: bool,
                lines: Optional[Sequence[Optional[Tuple[str, float]]]] = None) -> Path:
    """Grouped bars of dev F1 (mean with its error bars), one panel per ``(title, categories, {series: stats})``.

    With ``paper`` the paper's dev F1 is drawn as a marker on each Table 7
    strategy; ``lines[i]`` = ``(label, value)`` is a horizontal reference line on panel ``i``.
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
            below, above = [stats[c][1] for c in cats if c in stats], [stats[c][2] for c in cats if c in stats]
            ax.bar(xs, means, bar_w, yerr=[below, above], capsize=3, label=name)
            values += [m - b for m, b in zip(means, below)]
        if paper:
            marks = [(j, PAPER_DEV_F1[c]) for j, c in enumerate(cats) if c in PAPER_DEV_F1]
            if marks:
                ax.scatter([j for j, _ in marks], [v for _, v in marks], marker="D", color="black",
                           zorder=3, label=PAPER_LABEL)
                values += [v for _, v in marks]
        line = lines[i] if lines else None
        if line is not None:
            ax.axhline(line[1], linestyle="--", color="C3", label=line[0])
            values.append(line[1])
        ax.set_ylim(max(0.0, math.floor(min(values)) - 5), 100)
        ax.set_xticks(range(len(cats)))
        ax.set_xticklabels(cats, rotation=25, ha="right")
        ax.set_ylabel("dev F1 (%)")
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        if n > 1 or paper or line is not None:
            ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.savefig(path, dpi=100)
    return path


def strategy_panels(sections: Sequence[Section], stats: Sequence["TableStats"] = ()
                    ) -> Tuple[List[Tuple[str, List[str], Dict[str, Stats]]], List[Optional[Tuple[str, float]]]]:
    """What :func:`plot_strategies` draws: a panel per section (its frozen rows' dev F1, with error bars from each
    row's confidence interval as ``table.md`` gives it — ``stats``: t over seeds, else a bootstrap over
    sentences — or mean ± std for a section without them) and its fine-tuning level, if any."""
    intervals = {id(t.section): t.intervals for t in stats}
    panels, lines = [], []
    for s in sections:
        frozen = [r for r in s.rows if not r.finetune]
        ci = intervals.get(id(s))
        bars = {r.label: _interval_stats(r.dev, ci[(r.label, "dev")]) if ci else _stats(r.dev) for r in frozen}
        panels.append((s.title(), [r.label for r in frozen], {"this probe (CI of table.md)" if ci else "this probe": bars}))
        ft = [v for r in s.rows if r.finetune for v in r.dev]
        lines.append((f"fine-tuning ({statistics.fmean(ft):.1f})", statistics.fmean(ft)) if ft else None)
    return panels, lines


def plot_strategies(sections: Sequence[Section], path: Path, stats: Sequence["TableStats"] = ()) -> Path:
    """Dev F1 per strategy in Table 7 order, one panel per section, paper values as markers, each row's confidence
    interval as error bars (:func:`strategy_panels`)."""
    panels, lines = strategy_panels(sections, stats)
    return _bar_panels(path, panels, paper=True, lines=lines)


def plot_pooling(sections: Sequence[Section], path: Path) -> Path:
    """Dev F1 per strategy with one bar per pooling method, one panel per otherwise-equal setup."""
    groups: Dict[Tuple[Tuple[str, str], ...], List[Section]] = {}
    for s in sections:
        groups.setdefault(tuple(kv for kv in s.key if kv[0] != "pooling"), []).append(s)
    panels = []
    for members in groups.values():
        cats: List[str] = []
        for row in sorted((r for s in members for r in s.rows), key=row_sort_key):
            if row.label not in cats:
                cats.append(row.label)
        series = {f"pooling {s.pooling}": {r.label: _stats(r.dev) for r in s.rows} for s in members}
        panels.append((members[0].title(without=("pooling",)), cats, series))
    return _bar_panels(path, panels, paper=False)


def _single_layer_stats(section: Section) -> Dict[int, List[float]]:
    """Dev F1 runs by hidden-state index, over every one-layer row (whatever its strategy name) of a pretrained
    encoder (a random encoder's rows are :func:`plot_probing_layers`' baseline)."""
    by_layer: Dict[int, List[float]] = {}
    for row in section.rows:
        if len(row.layers) == 1 and not row.random:
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
        ax.errorbar(xs, [m for m, _, _ in stats], yerr=[s for _, s, _ in stats], marker="o", capsize=3,
                    color=color, label=label)
        mix = [v for row in section.rows if row.strategy == "scalar_mix_all" for v in row.dev]
        if mix:
            ax.axhline(statistics.fmean(mix), linestyle="--", color=color,
                       label=f"scalar_mix_all ({section.title()})" if len(sections) > 1 else "scalar_mix_all")
        ticks.update(xs)
    ax.set_xticks(sorted(ticks))
    return _finish_by_layer(fig, ax, "dev F1 (%)", "Dev F1 of single-layer features", path)


def relative_depth(tables: Sequence["ProbingTable"]) -> bool:
    """Whether the tables' encoders differ in depth: their curves are then drawn by relative depth (hidden state /
    number of layers), so that encoders of 6 and 12 layers share one axis."""
    return len({t.num_layers for t in tables if t.num_layers}) > 1


def _x(table: "ProbingTable", layer: int, relative: bool) -> float:
    return layer / table.num_layers if relative and table.num_layers else layer


def _probing_curve(ax, table: "ProbingTable", value: Callable[["ProbingRow"], Optional[float]], color: str,
                   label: str, dashed: bool = False, relative: bool = False, marker: str = "o",
                   linestyle: Optional[str] = None) -> List[float]:
    """One probe's line over its one-layer rows that have a value (x: the hidden state, or its relative depth);
    returns the x positions drawn. ``dashed``: a baseline's line (dashed, lighter); ``linestyle`` names another."""
    points = sorted((_x(table, r.single_layer, relative), v) for r in table.rows
                    if r.single_layer is not None and (v := value(r)) is not None)
    if points:
        ax.plot([x for x, _ in points], [y for _, y in points], marker=marker, color=color, label=label,
                linestyle=linestyle or ("--" if dashed else "-"), alpha=0.7 if dashed else 1.0)
    return [x for x, _ in points]


def _table_label(table: "ProbingTable", tables: Sequence["ProbingTable"]) -> str:
    """The probe's name, or the whole title when two tables share a probe."""
    label = table.probe if sum(t.probe == table.probe for t in tables) == 1 else table.title
    return label + (" (random weights)" if table.random_only else "")


def _layer_axis(ax, ticks: set, relative: bool) -> None:
    if relative:
        ax.set_xlim(-0.05, 1.05)
    else:
        ax.set_xticks(sorted(ticks))


def plot_probing_layers(tables: Sequence["ProbingTable"], path: Path) -> Path:
    """Panels by hidden state (by relative depth when the encoders' depths differ), a line per table: dev F1 (mean
    over seeds) with the random encoder's as a dashed line; selectivity (Hewitt & Liang 2019, real − control dev
    accuracy), the random encoder's dashed; and, where there are conditional runs, the gain over the baseline
    hidden state in bits per word (Hewitt et al. 2021, I_V(h_L → Y | h_b)) with its interval over seeds."""
    from bert_ner_probe.report.probing import f1s, mean

    relative = relative_depth(tables)
    conditional = any(t.baselines for t in tables)
    n = 3 if conditional else 2
    fig = _figure(7.0, 3.75 * n)
    panels = [fig.add_subplot(n, 1, i + 1) for i in range(n)]
    ticks: set = set()
    selective = False  # whether any table has a selectivity point (control-task runs beside real-task ones)
    for i, table in enumerate(tables):
        color, label = f"C{i % 10}", _table_label(table, tables)
        ticks.update(_probing_curve(panels[0], table, lambda r: mean(f1s(table.main(r))), color, label,
                                    relative=relative))
        if not table.random_only:
            ticks.update(_probing_curve(panels[0], table, lambda r: mean(f1s(r.random)), color,
                                        f"{label} (random encoder)", dashed=True, relative=relative))
        drawn = _probing_curve(panels[1], table, lambda r: table.selectivity(r)[0], color, label, relative=relative)
        drawn += _probing_curve(panels[1], table, lambda r: table.selectivity(r, random=True)[0], color,
                                f"{label} (random encoder)", dashed=True, relative=relative)
        ticks.update(drawn)
        selective = selective or bool(drawn)
        for k, b in enumerate(table.baselines if conditional else ()):
            gains = {r.single_layer: g for r in table.rows if r.single_layer is not None
                     and (g := table.gains(r, b)[0]) is not None}
            if b not in gains and table.baseline_row(b) is not None and gains:
                gains[b] = None  # the baseline itself: no gain by definition, drawn at 0
            xs = sorted(gains)
            ys = [0.0 if gains[x] is None else gains[x].mean for x in xs]
            low = [0.0 if gains[x] is None or gains[x].low is None else ys[j] - gains[x].low for j, x in enumerate(xs)]
            high = [0.0 if gains[x] is None or gains[x].high is None else gains[x].high - ys[j]
                    for j, x in enumerate(xs)]
            pos = [_x(table, x, relative) for x in xs]
            panels[2].errorbar(pos, ys, yerr=[low, high], marker="o", capsize=3, color=color,
                               linestyle=["-", ":", "-."][k % 3], label=f"{label}, over h_{b}")
            ticks.update(pos)
    titles = [("dev F1 (%)", "Dev F1 by hidden state"),
              ("selectivity (points)", "Selectivity: real − control-task dev accuracy"),
              ("gain (bits per word)", "Conditional gain over the baseline: H(Y | h_b) − H(Y | h_b, h_L), dev")]
    for ax, (ylabel, title) in zip(panels, titles):
        _layer_axis(ax, ticks, relative)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    if not selective:
        panels[1].text(0.5, 0.5, "no control-task runs beside the real task's", transform=panels[1].transAxes,
                       ha="center", va="center", color="grey")
    if conditional:
        panels[2].axhline(0.0, color="grey", linewidth=0.8)
        panels[2].legend(fontsize=7)
    panels[-1].set_xlabel(_DEPTH_LABEL if relative else _INDEX_LABEL)
    handles, labels = panels[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="outside lower center")
    fig.savefig(path, dpi=100)
    return path


_INDEX_LABEL = "hidden state (0 = embeddings)"
_DEPTH_LABEL = "relative depth (hidden state / number of layers; 0 = embeddings)"


def plot_mdl(tables: Sequence["ProbingTable"], path: Path) -> Path:
    """Compression (uniform / online code length, Voita & Titov 2020; mean over seeds) by hidden state (by relative
    depth when the encoders' depths differ), a line per table, the random encoder's dashed, the control task's
    dotted."""
    from bert_ner_probe.report.probing import mdl_values, mean

    relative = relative_depth(tables)
    fig = _figure(7.0, 4.5)
    ax = fig.add_subplot(1, 1, 1)
    ticks: set = set()
    for i, table in enumerate(tables):
        color, label = f"C{i % 10}", _table_label(table, tables)
        ticks.update(_probing_curve(ax, table, lambda r: mean(mdl_values(table.main(r), "compression")), color,
                                    label, relative=relative))
        if not table.random_only:
            ticks.update(_probing_curve(ax, table, lambda r: mean(mdl_values(r.random, "compression")), color,
                                        f"{label} (random encoder)", dashed=True, relative=relative))
        ticks.update(_probing_curve(ax, table, lambda r: mean(mdl_values(r.control, "compression")), color,
                                    f"{label} (control task)", relative=relative, marker="s", linestyle=":"))
    _layer_axis(ax, ticks, relative)
    return _finish_by_layer(fig, ax, "compression (uniform / online bits)", "Online code compression", path,
                            xlabel=_DEPTH_LABEL if relative else _INDEX_LABEL)


def plot_mix_weights(sections: Sequence[Section], path: Path) -> Path:
    """Learned scalar-mix weights (softmax-normalised, mean over seeds) by hidden-state index."""
    fig = _figure(7.0, 4.5)
    ax = fig.add_subplot(1, 1, 1)
    for section in sections:
        for row in section.rows:
            mixes = [j.result.mix_weights for j in row.runs if j.result.mix_weights]
            if not mixes:
                continue
            layers = list(mixes[0]["layers"])
            weights = [statistics.fmean(m["weights"][k] for m in mixes) for k in range(len(layers))]
            label = row.label if len(sections) == 1 else f"{row.label} · {section.title()}"
            ax.plot(layers, weights, marker="o", label=f"{label} (n={len(mixes)})")
    return _finish_by_layer(fig, ax, "softmax weight", "Learned scalar-mix weights", path)


def _finish_by_layer(fig, ax, ylabel: str, title: str, path: Path, xlabel: str = "hidden state (0 = embeddings)"
                     ) -> Path:
    """Axes, legend and file of a plot over hidden-state indices."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.legend(fontsize=8, loc="outside lower center")
    fig.savefig(path, dpi=100)
    return path


ANNOTATE_UP_TO = 12  # rows of a heat map whose cells get their difference written in (text is slow to draw)


def plot_significance(stats: Sequence["TableStats"], path: Path) -> Path:
    """Pairwise heat map per table and split: colour = Holm-adjusted p (log scale), text = row − column F1."""
    import numpy as np
    from matplotlib.colors import LogNorm

    from bert_ner_probe.report.significance import SPLITS

    tables = [t for t in stats if len(t.samples) > 1]
    k = max(len(t.samples) for t in tables)
    cell = 1.1 if k <= ANNOTATE_UP_TO else 0.3  # inches per cell: large tables get a compact map
    fig = _figure(max(8.0, 2.5 + cell * k * len(SPLITS)), (1.5 + 0.8 * cell * k) * len(tables))
    image = None
    for i, t in enumerate(tables):
        labels = [s.label for s in t.samples]
        for j, split in enumerate(SPLITS):
            ax = fig.add_subplot(len(tables), len(SPLITS), i * len(SPLITS) + j + 1)
            p = np.full((len(labels), len(labels)), np.nan)  # Shape: (k, k)
            for pair in (x for x in t.pairs if x.split == split):
                a, b = labels.index(pair.a), labels.index(pair.b)
                p[a, b] = p[b, a] = max(pair.p_holm, 1e-4) if not np.isnan(pair.p_holm) else np.nan
                for (r, c), sign in (((a, b), 1), ((b, a), -1)) if len(labels) <= ANNOTATE_UP_TO else ():
                    mark = "*" if pair.significant else ""
                    dark = not np.isnan(p[a, b]) and p[a, b] < 0.01
                    ax.text(c, r, f"{sign * pair.delta:+.1f}{mark}", ha="center", va="center", fontsize=7,
                            color="white" if dark else "black")
            image = ax.imshow(p, cmap="viridis", norm=LogNorm(vmin=1e-4, vmax=1.0))
            ax.set_xticks(range(len(labels)))
            ax.set_xticklabels(labels, rotation=35, ha="right", fontsize=7)
            ax.set_yticks(range(len(labels)))
            ax.set_yticklabels(labels if j == 0 else [], fontsize=7)
            ax.set_title(f"{split} · {t.section.title()}", fontsize=8)
    if image is not None:
        fig.colorbar(image, ax=fig.axes, shrink=0.8, label="p (Holm)")
        if k <= ANNOTATE_UP_TO:
            fig.suptitle("row − column F1 (points); * significant after Holm", fontsize=9)
    fig.savefig(path, dpi=100)
    return path


def _probing_layers(tables: Sequence["ProbingTable"]) -> set:
    """The hidden states with a dev F1 to draw (a real-task or random-encoder run of a one-layer row)."""
    return {r.single_layer for t in tables for r in t.rows if r.single_layer is not None and (r.real or r.random)}


def write_plots(sections: Sequence[Section], out_dir: Path, stats: Sequence["TableStats"] = (),
                probing: Sequence["ProbingTable"] = ()) -> List[Path]:
    """Every plot whose runs exist (see the module docstring); the heat map when a table has two rows.

    With probing tables (:mod:`bert_ner_probe.report.probing`) ``layers.png`` is the probing one
    (:func:`plot_probing_layers`) and ``mdl.png`` is written when a one-layer row has a code length.
    """
    written = []
    if len(_probing_layers(probing)) >= 2:
        written.append(plot_probing_layers(probing, out_dir / LAYERS_PLOT))
    if any(r.single_layer is not None and j.result.mdl for t in probing for r in t.rows
           for j in (*r.real, *r.random, *r.control)):
        written.append(plot_mdl(probing, out_dir / MDL_PLOT))
    sections = [s for s in sections if s.rows]  # a section of control-task runs alone has no strategy to plot
    if not sections:
        return written
    written.insert(0, plot_strategies(sections, out_dir / STRATEGIES_PLOT, stats))
    if any(len(t.samples) > 1 for t in stats):
        written.append(plot_significance(stats, out_dir / SIGNIFICANCE_PLOT))
    layers = {x for s in sections for x in _single_layer_stats(s)}
    if len(layers) >= 2 and LAYERS_PLOT not in {p.name for p in written}:
        written.append(plot_layers(sections, out_dir / LAYERS_PLOT))
    if any(j.result.mix_weights for s in sections for r in s.rows for j in r.runs):
        written.append(plot_mix_weights(sections, out_dir / MIX_WEIGHTS_PLOT))
    if len({s.pooling for s in sections}) > 1:
        written.append(plot_pooling(sections, out_dir / POOLING_PLOT))
    return written


