"""Conditional probing: what a hidden state adds to a probe beyond a baseline hidden state.

Hewitt, Ethayarajh, Liang & Manning (2021), "Conditional probing: measuring
usable information beyond a baseline" (EMNLP). For a probe family V, the
V-entropy of the tags Y given features X is the cross-entropy of the best
probe of the family on held-out data, and the conditional V-information of
hidden state h_L about Y beyond a baseline B (here another hidden state,
by default the embeddings h_0) is::

    I_V(h_L → Y | B) = H_V(Y | B) − H_V(Y | B, h_L)

estimated, as in the paper's code, from the dev cross-entropy in bits per
word, ``H = −(1/N) Σ_words log2 p(gold tag)``, of a probe trained on B alone
and of one trained on ``[B; h_L]`` (``strategy=conditional``: the two
concatenated). Each run records it as ``dev.cross_entropy_bits`` (of the
weights it kept: its best epoch by its own dev score). The same difference in
dev F1, ``F1(B, h_L) − F1(B)``, says what the gain is worth in entities.

Over seeds the two probes are paired by seed (the same seed's batches and
initialisation): the gain is the mean of the per-seed differences, and with
two or more pairs its interval is the paired t interval,
``mean ± t_{(1+level)/2, n−1} · s / √n`` (:func:`paired_gain`).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Mapping, Optional


@dataclass(frozen=True)
class Gain:
    """A gain over seeds: the mean of the per-seed differences, their sample std and the mean's interval (None
    below two pairs), and the number of pairs."""

    mean: float
    std: Optional[float]
    low: Optional[float]
    high: Optional[float]
    pairs: int

    def text(self, digits: int) -> str:
        """``0.120 ± 0.010 [0.095, 0.145]``; one pair: ``0.120 ± –``."""
        if self.low is None:
            return f"{self.mean:.{digits}f} ± –"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def paired_gain(after: Mapping[int, float], before: Mapping[int, float], level: float = 0.95) -> Optional[Gain]:
    """``after − before`` paired by seed (the keys): the mean over the seeds both have, and with two or more their
    sample std and the paired t interval; None when they share no seed."""
    seeds = sorted(set(after) & set(before))
    if not seeds:
        return None
    diffs = [after[s] - before[s] for s in seeds]
    mean = statistics.fmean(diffs)
    if len(diffs) < 2:
        return Gain(mean, None, None, None, 1)
    from bert_ner_probe.report.significance import t_interval

    low, high = t_interval(diffs, level)
    return Gain(mean, statistics.stdev(diffs), low, high, len(diffs))


def information_gain(baseline_bits: Mapping[int, float], joint_bits: Mapping[int, float],
                     level: float = 0.95) -> Optional[Gain]:
    """``I_V(h_L → Y | B) = H_V(Y | B) − H_V(Y | B, h_L)`` in bits per word, per seed: ``baseline_bits[seed]`` is the
    dev cross-entropy of the probe on B, ``joint_bits[seed]`` of the probe on ``[B; h_L]`` (Hewitt et al. 2021)."""
    return paired_gain(baseline_bits, joint_bits, level)


def f1_gain(baseline_f1: Mapping[int, float], joint_f1: Mapping[int, float], level: float = 0.95) -> Optional[Gain]:
    """``F1(B, h_L) − F1(B)`` in points, per seed (the entity-level counterpart of :func:`information_gain`)."""
    return paired_gain(joint_f1, baseline_f1, level)
