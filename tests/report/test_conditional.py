"""Conditional probing's gain (bert_ner_probe/report/conditional.py, Hewitt et al. 2021) against hand-computed values."""

from __future__ import annotations

import math

import pytest

from bert_ner_probe.report.conditional import f1_gain, information_gain, paired_gain

T_975_2 = 4.302652729749464  # t_{0.975} with 2 degrees of freedom
T_975_1 = 12.706204736174698  # ... with 1


def test_the_gain_is_h_of_the_baseline_minus_h_of_both_paired_by_seed():
    # H(Y | h_0) = 0.50, 0.52, 0.48 and H(Y | h_0, h_3) = 0.30, 0.33, 0.27 bits per word (seeds 1, 2, 3):
    # gains 0.20, 0.19, 0.21: mean 0.20, std 0.01, interval 0.20 ± 4.3027 · 0.01 / √3 = 0.20 ± 0.024841
    gain = information_gain({1: 0.50, 2: 0.52, 3: 0.48}, {1: 0.30, 2: 0.33, 3: 0.27})
    assert (gain.mean, gain.std, gain.pairs) == (pytest.approx(0.20), pytest.approx(0.01), 3)
    half = T_975_2 * 0.01 / math.sqrt(3)
    assert (gain.low, gain.high) == (pytest.approx(0.20 - half), pytest.approx(0.20 + half))
    assert gain.text(3) == "0.200 ± 0.010 [0.175, 0.225]"
    # in F1: 70 − 60, 71 − 62, 73 − 61 = 10, 9, 12
    f1 = f1_gain({1: 60.0, 2: 62.0, 3: 61.0}, {1: 70.0, 2: 71.0, 3: 73.0})
    assert f1.mean == pytest.approx(31 / 3) and f1.std == pytest.approx(math.sqrt(7 / 3))


def test_only_seeds_both_probes_ran_are_paired():
    # seeds 1, 2, 3 against 2, 3, 4: the pairs of seeds 2 and 3, gains 0.02 and 0.06: mean 0.04, std 0.02828,
    # interval 0.04 ± 12.7062 · 0.02828 / √2 = 0.04 ± 0.2541; the unpaired seeds 1 and 4 play no part
    gain = paired_gain({1: 9.0, 2: 0.52, 3: 0.46}, {2: 0.50, 3: 0.40, 4: -9.0})
    assert (gain.mean, gain.pairs) == (pytest.approx(0.04), 2) and gain.std == pytest.approx(0.02 * math.sqrt(2))
    assert gain.high - gain.mean == pytest.approx(T_975_1 * 0.02)
    one = paired_gain({1: 0.5, 2: 0.4}, {2: 0.3})
    assert (one.mean, one.std, one.low, one.pairs) == (pytest.approx(0.1), None, None, 1) and one.text(2) == "0.10 ± –"
    assert paired_gain({1: 0.5}, {2: 0.3}) is None
