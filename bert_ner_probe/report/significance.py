"""Which differences between rows are real: confidence intervals and pairwise tests.

A *sample* is one row of a table (a strategy, or a cell of a pivot): its
F1 per seed for each split, and — read only when needed — the per-sentence
counts of its prediction files (:mod:`bert_ner_probe.report.bootstrap`).

* Interval of a row: with ``min_seeds`` (3) or more seeds the t interval of
  the mean over seeds, ``mean ± t(n-1) · s / √n``; otherwise the percentile
  bootstrap over the sentences of its prediction files.
* A pair of rows that both have ``min_seeds`` seeds is compared over seeds:
  Welch's t-test (p-value and interval of the difference of means) and
  Almost Stochastic Order (Dror et al. 2019; del Barrio et al. 2018) —
  ``eps_min`` of "a is better than b", vectorised here with the procedure
  and defaults of ``deepsig.aso`` (whose per-pair loop is too slow for a report). Otherwise
  the same seed's predictions of both rows are compared over sentences
  (approximate randomisation p-value, paired bootstrap interval).
* p-values of the pairs of one table and split are Holm–Bonferroni adjusted;
  a pair is ``significant`` when ``p_holm < alpha``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from bert_ner_probe.report.bootstrap import SentenceCounts, bootstrap_ci, paired_test
from bert_ner_probe.report.settings import Settings

SPLITS = ("dev", "test")
SIGNIFICANCE_COLUMNS = ["group", "split", "a", "b", "delta", "ci_low", "ci_high", "p_value", "p_holm",
                        "aso_eps_min", "n_seeds", "test", "significant"]
SEED_TEST = "welch"
SENTENCE_TEST = "approximate-randomisation"
NO_TEST = "none"


@dataclass
class Sample:
    """One row to compare: F1 (percent) per seed for each split, prediction counts on demand.

    ``loader(split)`` returns ``{seed: SentenceCounts}`` for the runs whose
    prediction file exists; it is called at most once per split.
    """

    label: str
    seeds: List[int]
    scores: Dict[str, List[float]]
    loader: Callable[[str], Dict[int, SentenceCounts]]
    loaded: Dict[str, Dict[int, SentenceCounts]] = field(default_factory=dict, repr=False)  # loader's results so far

    def counts(self, split: str) -> Dict[int, SentenceCounts]:
        if split not in self.loaded:
            self.loaded[split] = self.loader(split)
        return self.loaded[split]

    def mean(self, split: str) -> float:
        return float(np.mean(self.scores[split]))


# --------------------------------------------------------------------------- over seeds


def t_interval(values: Sequence[float], level: float = 0.95) -> Tuple[float, float]:
    """``mean ± t_{(1+level)/2, n-1} · s / √n`` (needs two or more values)."""
    from scipy import stats

    x = np.asarray(values, dtype=np.float64)
    half = stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean() - half), float(x.mean() + half)


def welch(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Tuple[float, float, float, float]:
    """Welch's t-test of ``mean(a) - mean(b)``: ``(delta, ci_low, ci_high, p_value)`` (p NaN without variance)."""
    from scipy import stats

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    delta = float(x.mean() - y.mean())
    if x.var(ddof=1) + y.var(ddof=1) == 0:
        return delta, delta, delta, float("nan")
    res = stats.ttest_ind(x, y, equal_var=False)
    ci = res.confidence_interval(level)
    return delta, float(ci.low), float(ci.high), float(res.pvalue)


def _quantiles(sorted_scores: np.ndarray, t: np.ndarray) -> np.ndarray:
    """deepsig's empirical quantile function ``F⁻¹(t) = x_(⌈n t⌉)``. Shape: (..., n), (T,) → (..., T)."""
    n = sorted_scores.shape[-1]
    index = np.clip(np.ceil(n * t).astype(np.int64) - 1, 0, n - 1)
    return sorted_scores[..., index]


def _violation_ratio(f: np.ndarray, g: np.ndarray, dt: float) -> np.ndarray:
    """ε_W: the share of the squared Wasserstein distance where ``G⁻¹ > F⁻¹`` (b above a).

    Shape: (..., T) quantiles → (...,); 0.5 where the distributions coincide.
    """
    diff = g - f
    total = np.sum(diff ** 2 * dt, axis=-1)
    violation = np.sum(np.where(f >= g, 0.0, diff)[..., 1:] ** 2 * dt, axis=-1)
    return np.where(total == 0, 0.5, violation / np.where(total == 0, 1.0, total))


def aso_eps_min(a: Sequence[float], b: Sequence[float], confidence_level: float = 0.95, num_comparisons: int = 1,
                resamples: int = 1000, seed: int = 0, dt: float = 0.005) -> float:
    """Almost Stochastic Order: the smallest ε for which "a is stochastically better than b" holds.

    Same procedure as ``deepsig.aso(a, b, ...)``: ε_W of the empirical
    quantile functions; ``resamples`` draws of both score sets from them;
    ``σ̂ = std(√(nm/(n+m)) (ε_W* - ε_W))``; ``eps_min = clip(ε_W - σ̂ Φ⁻¹(1-c) / √(nm/(n+m)), 0, 1)``
    with ``c`` raised to ``c + (1-c)/num_comparisons`` (Bonferroni). Below 0.5
    a is better; deepsig suggests 0.2 as a threshold.
    """
    from scipy.stats import norm

    x, y = np.sort(np.asarray(a, dtype=np.float64)), np.sort(np.asarray(b, dtype=np.float64))
    if num_comparisons > 1:
        confidence_level += (1 - confidence_level) / num_comparisons
    t = np.arange(dt, 1, dt)
    ratio = float(_violation_ratio(_quantiles(x, t), _quantiles(y, t), dt))
    rng = np.random.default_rng(seed)
    # Shape: (R, n) and (R, m): resampled scores through the quantile functions, sorted again.
    xs = np.sort(_quantiles_at(x, rng.uniform(0, 1, (resamples, len(x)))), axis=1)
    ys = np.sort(_quantiles_at(y, rng.uniform(0, 1, (resamples, len(y)))), axis=1)
    samples = _violation_ratio(_quantiles(xs, t), _quantiles(ys, t), dt)  # Shape: (R,)
    const = math.sqrt(len(x) * len(y) / (len(x) + len(y)))
    sigma = float(np.std(const * (samples - ratio)))
    return float(np.clip(ratio - sigma * norm.ppf(1 - confidence_level) / const, 0.0, 1.0))


def _quantiles_at(sorted_scores: np.ndarray, u: np.ndarray) -> np.ndarray:
    """``F⁻¹(u)`` elementwise for a matrix of probabilities. Shape: (n,), (R, k) → (R, k)."""
    n = len(sorted_scores)
    return sorted_scores[np.clip(np.ceil(n * u).astype(np.int64) - 1, 0, n - 1)]


def holm(p_values: Sequence[float]) -> List[float]:
    """Holm–Bonferroni adjusted p-values: ``p_(i) · (m - i + 1)``, made monotone, capped at 1; NaN stays NaN."""
    p = np.asarray(p_values, dtype=np.float64)
    valid = np.flatnonzero(~np.isnan(p))
    out = np.full(len(p), np.nan)
    m = len(valid)
    running = 0.0
    for rank, i in enumerate(valid[np.argsort(p[valid], kind="stable")]):
        running = max(running, min(1.0, p[i] * (m - rank)))
        out[i] = running
    return out.tolist()


# --------------------------------------------------------------------------- rows and pairs


def row_interval(sample: Sample, split: str, settings: Settings) -> Tuple[Optional[float], Optional[float], str]:
    """A row's 95% (``1 - alpha``) interval: ``(low, high, how)``, ``how`` ``"t"``, ``"bootstrap"`` or ``""``."""
    values = sample.scores[split]
    if len(values) >= settings.min_seeds:
        low, high = t_interval(values, settings.level)
        return low, high, "t"
    counts = list(sample.counts(split).values())
    if counts:
        low, high = bootstrap_ci(counts, settings.bootstrap_resamples, settings.seed, settings.level)
        return low, high, "bootstrap"
    return None, None, ""


@dataclass
class Pair:
    """One compared pair of one split; ``a`` is the row with the higher mean F1, ``delta >= 0``."""

    group: str
    split: str
    a: str
    b: str
    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    aso_eps_min: Optional[float]
    n_seeds: int
    test: str
    p_holm: float = float("nan")
    significant: bool = False

    def row(self) -> Dict[str, str]:
        """The ``significance.csv`` cells."""
        def num(v: Optional[float]) -> str:
            return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.6g}"

        return {"group": self.group, "split": self.split, "a": self.a, "b": self.b, "delta": num(self.delta),
                "ci_low": num(self.ci_low), "ci_high": num(self.ci_high), "p_value": num(self.p_value),
                "p_holm": num(self.p_holm), "aso_eps_min": num(self.aso_eps_min), "n_seeds": str(self.n_seeds),
                "test": self.test, "significant": str(self.significant)}


def compare(a: Sample, b: Sample, split: str, settings: Settings, group: str = "",
            num_comparisons: int = 1) -> Pair:
    """Test one pair (over seeds when both have ``min_seeds``, else over one seed's sentences)."""
    if a.mean(split) < b.mean(split):
        a, b = b, a
    xa, xb = a.scores[split], b.scores[split]
    n = min(len(xa), len(xb))
    if n >= settings.min_seeds:
        delta, low, high, p = welch(xa, xb, settings.level)
        eps = aso_eps_min(xa, xb, settings.level, num_comparisons, settings.bootstrap_resamples, settings.seed)
        return Pair(group, split, a.label, b.label, delta, low, high, p, eps, n, SEED_TEST)
    ca, cb = a.counts(split), b.counts(split)
    common = sorted(set(ca) & set(cb))
    delta = a.mean(split) - b.mean(split)
    if not common or len(ca[common[0]]) != len(cb[common[0]]):
        return Pair(group, split, a.label, b.label, delta, float("nan"), float("nan"), float("nan"), None, 1,
                    NO_TEST)
    res = paired_test(ca[common[0]], cb[common[0]], settings.bootstrap_resamples, settings.seed, settings.level)
    return Pair(group, split, a.label, b.label, res.delta, res.ci_low, res.ci_high, res.p_value, None, 1,
                SENTENCE_TEST)


def adjust(pairs: List[Pair], alpha: float) -> List[Pair]:
    """Holm-adjust the p-values of ``pairs`` (one family) in place and set ``significant``."""
    for pair, p in zip(pairs, holm([x.p_value for x in pairs])):
        pair.p_holm = p
        pair.significant = bool(not math.isnan(p) and p < alpha)
    return pairs


def all_pairs(group: str, samples: Sequence[Sample], settings: Settings, splits: Sequence[str] = SPLITS) -> List[Pair]:
    """Every pair of ``samples`` for each split, Holm-adjusted per split (the family is one table's split)."""
    out: List[Pair] = []
    m = len(samples) * (len(samples) - 1) // 2
    for split in splits:
        family = [compare(x, y, split, settings, group, num_comparisons=m) for x, y in combinations(samples, 2)]
        out += adjust(family, settings.alpha)
    return out


def best_label(samples: Sequence[Sample], split: str) -> Optional[str]:
    """The row with the highest mean F1 on ``split`` (the first one on a tie)."""
    return max(samples, key=lambda s: s.mean(split)).label if samples else None


def not_worse_than_best(samples: Sequence[Sample], pairs: Sequence[Pair], split: str) -> Dict[str, bool]:
    """For each row: is it the best, or not significantly worse than the best (by a test that ran)?"""
    best = best_label(samples, split)
    marks: Dict[str, bool] = {}
    for s in samples:
        if s.label == best:
            marks[s.label] = True
            continue
        pair = next((p for p in pairs if p.split == split and {p.a, p.b} == {best, s.label}), None)
        marks[s.label] = pair is not None and pair.test != NO_TEST and not pair.significant
    return marks


def find_pair(pairs: Sequence[Pair], split: str, x: str, y: str) -> Optional[Pair]:
    return next((p for p in pairs if p.split == split and {p.a, p.b} == {x, y}), None)
