"""Token accuracy and selectivity (Hewitt & Liang 2019) on hand-computed values."""

from __future__ import annotations

import math

import pytest

from bert_ner_probe.metrics.accuracy import token_accuracy
from bert_ner_probe.report.selectivity import selectivity, selectivity_interval


def test_token_accuracy_counts_words_not_sentences():
    gold = [["B-PER", "I-PER", "O"], ["O"]]
    pred = [["B-PER", "O", "O"], ["B-LOC"]]
    assert token_accuracy(gold, pred) == 2 / 4  # B-PER and the first sentence's O right
    assert token_accuracy(gold, gold) == 1.0
    with pytest.raises(ValueError, match="differ in length"):
        token_accuracy(gold, [["B-PER", "O", "O"], []])
    with pytest.raises(ValueError, match="no words"):
        token_accuracy([[]], [[]])


def test_selectivity_is_real_minus_control():
    assert selectivity(0.97, 0.71) == pytest.approx(0.26)


def test_selectivity_interval_is_welchs():
    # real 0.90, 0.92, 0.94 and control 0.60, 0.62, 0.64: Δ = 0.30; s² = 0.0004 each, so
    # SE = √(2 · 0.0004 / 3) = 0.0163299; Welch ν = (2v/3)² / (2 (v/3)² / 2) = 4; t_{0.975, 4} = 2.776445
    # half-width = 2.776445 · 0.0163299 = 0.045339
    delta, low, high = selectivity_interval([0.90, 0.92, 0.94], [0.60, 0.62, 0.64])
    half = 2.776445105 * math.sqrt(2 * 0.0004 / 3)
    assert delta == pytest.approx(0.30)
    assert (low, high) == pytest.approx((0.30 - half, 0.30 + half), abs=1e-6)
    with pytest.raises(ValueError, match="two or more seeds"):
        selectivity_interval([0.9], [0.6, 0.7])
