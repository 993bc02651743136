"""Selectivity of a probe: how much more it gets right on the real task than on a control task.

Hewitt & Liang (2019), "Designing and Interpreting Probes with Control Tasks"::

    selectivity = accuracy(real task) − accuracy(control task)

Over seeds, the interval is Welch's for the difference of means,
``Δ ± t_{(1+level)/2, ν} · √(s_r²/n_r + s_c²/n_c)`` with Welch–Satterthwaite ``ν``
(:func:`bert_ner_probe.report.significance.welch`): real and control runs are
independent probes.
"""

from __future__ import annotations

from typing import Sequence, Tuple


def selectivity(real_accuracy: float, control_accuracy: float) -> float:
    """Hewitt & Liang (2019): ``real − control`` token accuracy (same units as the inputs)."""
    return real_accuracy - control_accuracy


def selectivity_interval(real: Sequence[float], control: Sequence[float],
                         level: float = 0.95) -> Tuple[float, float, float]:
    """``(selectivity, low, high)`` over seeds: mean(real) − mean(control) and its Welch t interval.

    Needs two or more accuracies on each side (ValueError otherwise); without any variance the
    interval is the point itself.
    """
    if len(real) < 2 or len(control) < 2:
        raise ValueError(f"selectivity_interval: needs two or more seeds each, got {len(real)} real and "
                         f"{len(control)} control accuracies")
    from bert_ner_probe.report.significance import welch

    delta, low, high, _ = welch(real, control, level)
    return delta, low, high
