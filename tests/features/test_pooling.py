"""pool_words: every pooling against hand-computed values on a small explicit tensor."""

from __future__ import annotations

import pytest
import torch

from bert_ner_probe.errors import UserError
from bert_ner_probe.features.pooling import Pooling, pool_words, pooled_width

# hidden[b, t, l, h] = 30*b + 6*t + 3*l + h  (batch 2, time 5, layers 2, hidden 3), i.e.
#   b=0: t=0 [[0,1,2],[3,4,5]]      t=1 [[6,7,8],[9,10,11]]    t=2 [[12,13,14],[15,16,17]]
#        t=3 [[18,19,20],[21,22,23]] t=4 [[24,25,26],[27,28,29]]
#   b=1: t=0 [[30,31,32],[33,34,35]] t=1 [[36,37,38],[39,40,41]] t=2 [[42,43,44],[45,46,47]]
#        t=3 [[48,49,50],[51,52,53]] t=4 [[54,55,56],[57,58,59]]
HIDDEN = torch.arange(60, dtype=torch.float32).reshape(2, 5, 2, 3)


# Four words, deliberately not in (batch, position) order:
#   A: window 0, pieces 1..3 (3 sub-tokens)    B: window 1, piece 0 (1 sub-token)
#   C: window 1, pieces 3..4 (2 sub-tokens)    D: window 0, piece 4 (1 sub-token)
BATCH = torch.tensor([0, 1, 1, 0])


FIRST = torch.tensor([1, 0, 3, 4])


LAST = torch.tensor([3, 0, 4, 4])


EXPECTED = {
    "first": [
        [[6, 7, 8], [9, 10, 11]],
        [[30, 31, 32], [33, 34, 35]],
        [[48, 49, 50], [51, 52, 53]],
        [[24, 25, 26], [27, 28, 29]],
    ],
    "last": [
        [[18, 19, 20], [21, 22, 23]],
        [[30, 31, 32], [33, 34, 35]],
        [[54, 55, 56], [57, 58, 59]],
        [[24, 25, 26], [27, 28, 29]],
    ],
    "first_last": [
        [[6, 7, 8, 18, 19, 20], [9, 10, 11, 21, 22, 23]],
        [[30, 31, 32, 30, 31, 32], [33, 34, 35, 33, 34, 35]],
        [[48, 49, 50, 54, 55, 56], [51, 52, 53, 57, 58, 59]],
        [[24, 25, 26, 24, 25, 26], [27, 28, 29, 27, 28, 29]],
    ],
    # A = (t1 + t2 + t3) / 3, C = (t3 + t4) / 2 of window 1.
    "mean": [
        [[12, 13, 14], [15, 16, 17]],
        [[30, 31, 32], [33, 34, 35]],
        [[51, 52, 53], [54, 55, 56]],
        [[24, 25, 26], [27, 28, 29]],
    ],
}


@pytest.mark.parametrize("pooling", [p for p in Pooling if p != Pooling.auto])
def test_pool_words_matches_hand_values(pooling):
    out = pool_words(HIDDEN, BATCH, FIRST, LAST, pooling)
    expected = torch.tensor(EXPECTED[pooling], dtype=torch.float32)
    assert out.shape == expected.shape == (4, 2, pooled_width(pooling, 3))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_auto_is_last_for_a_causal_encoder_and_first_else_and_must_be_resolved_before_pooling():
    assert Pooling.auto.resolved(causal=True) == Pooling.last
    assert Pooling.auto.resolved(causal=False) == Pooling.first
    assert all(p.resolved(causal) == p for p in Pooling if p != Pooling.auto for causal in (True, False))
    assert pooled_width("auto", 384) == 384
    with pytest.raises(ValueError, match="resolved"):
        pool_words(HIDDEN, BATCH, FIRST, LAST, "auto")


def test_mean_with_fractional_values_in_float16():
    # One window, one layer, hidden 2: t0 [1, 2], t1 [2, 5], t2 [4, 9].
    hidden = torch.tensor([[[[1.0, 2.0]], [[2.0, 5.0]], [[4.0, 9.0]]]], dtype=torch.float16)
    out = pool_words(hidden, torch.tensor([0, 0, 0]), torch.tensor([0, 0, 2]), torch.tensor([1, 2, 2]), "mean")
    assert out.dtype == torch.float16
    expected = torch.tensor([[[1.5, 3.5]], [[7 / 3, 16 / 3]], [[4.0, 9.0]]])
    torch.testing.assert_close(out.float(), expected, rtol=1e-3, atol=1e-3)


def test_pooled_width():
    assert pooled_width("first", 384) == 384
    assert pooled_width("last", 384) == 384
    assert pooled_width("mean", 384) == 384
    assert pooled_width("first_last", 384) == 768
    with pytest.raises(UserError, match=r"pooling.method='max': expected one of first \| last \| first_last \| mean"):
        pooled_width("max", 384)


def test_unknown_pooling_is_rejected():
    with pytest.raises(UserError, match="pooling.method='max': expected one of"):
        pool_words(HIDDEN, BATCH, FIRST, LAST, "max")


def test_last_before_first_is_rejected():
    with pytest.raises(ValueError, match="last >= first"):
        pool_words(HIDDEN, torch.tensor([0, 1]), torch.tensor([2, 0]), torch.tensor([1, 0]), "mean")


def test_hidden_must_be_four_dimensional():
    with pytest.raises(ValueError, match=r"\(batch, time, layers, hidden\)"):
        pool_words(HIDDEN[:, :, 0], BATCH, FIRST, LAST, "first")
