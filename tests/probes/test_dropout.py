"""The probes' dropout (bert_ner_probe/probes/dropout.py): the mask by hand from the random draws, its
distribution, rescaling and gradients, identity in evaluation, refused probabilities."""

from __future__ import annotations

import sys

import pytest
import torch

from bert_ner_probe.probes.dropout import MASK_BITS, Dropout, dropout, keep_mask

pytestmark = pytest.mark.usefixtures("one_thread")


def _u_by_hand(n: int, seed: int) -> torch.Tensor:
    """The n uniform 15-bit numbers of the docstring, from the seed's int32 draws: each draw's low 16-bit half
    and its high half (memory order), 15 bits of each."""
    torch.manual_seed(seed)
    u = []
    for w in torch.empty((n + 1) // 2, dtype=torch.int32).random_().tolist():
        assert 0 <= w < 2 ** 31
        halves = (w & 0xFFFF, w >> 16) if sys.byteorder == "little" else (w >> 16, w & 0xFFFF)
        u += [h & 0x7FFF for h in halves]
    return torch.tensor(u[:n])


def test_the_mask_is_u_at_least_p_in_steps_of_2_to_the_minus_15():
    x = torch.tensor([1.0, -2.0, 3.0, 4.0, 5.0, 6.0, -7.0])  # odd: the last draw's second half goes unused
    u = _u_by_hand(7, seed=7)
    torch.manual_seed(7)
    y = dropout(x, 0.5, training=True)
    expected = torch.where(u >= 16384, x * 2.0, torch.zeros(()))  # y_i = x_i · [u_i ≥ 0.5 · 2¹⁵] / (1 − 0.5)
    torch.testing.assert_close(y, expected, rtol=0, atol=0)
    torch.manual_seed(7)
    assert torch.equal(keep_mask((7,), 0.1), u >= 3277)  # round(0.1 · 32768) = 3277


def test_the_keep_rate_is_one_minus_p_in_both_halves_of_a_draw():
    torch.manual_seed(0)
    keep = keep_mask((1000, 1000), 0.1)
    rate = 1 - round(0.1 * 2 ** MASK_BITS) / 2 ** MASK_BITS  # 0.899994
    se = (rate * (1 - rate) / 5e5) ** 0.5
    flat = keep.flatten().float()
    for half in (flat[0::2], flat[1::2]):  # low and high halves of the draws: the same distribution
        assert abs(float(half.mean()) - rate) < 5 * se
    torch.manual_seed(0)
    u = _u_by_hand(1_000_000, seed=0).float()
    assert u.min() == 0 and u.max() == 2 ** MASK_BITS - 1 and abs(float(u.mean()) / (2 ** MASK_BITS - 1) - 0.5) < 1e-3


def test_dropout_keeps_or_zeroes_and_rescales():
    x = torch.full((200, 500), 3.0, requires_grad=True)
    torch.manual_seed(0)
    y = dropout(x, 0.25, training=True)
    kept = y != 0
    assert torch.all(y[kept] == 4.0)  # 3 / (1 - 0.25)
    assert abs(1 - kept.float().mean().item() - 0.25) < 0.01  # 100,000 draws: about 0.003 standard error
    y.sum().backward()
    assert torch.equal(x.grad, kept.float() * 4 / 3)
    xb = torch.full((1000,), 3.0, dtype=torch.bfloat16)
    assert dropout(xb, 0.25, training=True).dtype == torch.bfloat16


def test_dropout_is_the_identity_in_evaluation_and_at_zero():
    x = torch.randn(4, 5)
    assert dropout(x, 0.5, training=False) is x
    assert dropout(x, 0.0, training=True) is x
    module = Dropout(0.5).eval()
    assert module(x) is x and "p=0.5" in repr(module)
    for p in (-0.1, 1.0):
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            dropout(x, p, training=True)
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            Dropout(p)
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            keep_mask((3,), p)
