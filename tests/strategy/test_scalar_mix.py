"""ScalarMix (bert_ner_probe/strategy/scalar_mix.py) against hand computation: weights, γ, gradients, float16."""

from __future__ import annotations

import math

import pytest
import torch

from bert_ner_probe.strategy.scalar_mix import ScalarMix


def _mix_with_known_weights() -> ScalarMix:
    mix = ScalarMix(2)
    with torch.no_grad():
        mix.weights.copy_(torch.log(torch.tensor([1.0, 3.0])))  # softmax → [0.25, 0.75]
        mix.gamma.fill_(2.0)
    return mix


# Shape: (words 2, K 2, width 2): word0 h1 [4, 8], h2 [0, 4]; word1 h1 [-4, 0], h2 [8, 12].
LAYERS = torch.tensor([[[4.0, 8.0], [0.0, 4.0]], [[-4.0, 0.0], [8.0, 12.0]]])


# 2 * (0.25 * h1 + 0.75 * h2): word0 2 * ([1, 2] + [0, 3]) = [2, 10]; word1 2 * ([-1, 0] + [6, 9]) = [10, 18].
MIXED = torch.tensor([[2.0, 10.0], [10.0, 18.0]])


def test_scalar_mix_initial_state_is_a_plain_mean():
    mix = ScalarMix(4)
    assert mix.normalized_weights() == pytest.approx([0.25] * 4)
    assert float(mix.gamma.detach()) == 1.0
    x = torch.tensor([[[1.0], [2.0], [3.0], [6.0]]])
    torch.testing.assert_close(mix(x), torch.tensor([[3.0]]))


def test_scalar_mix_forward_against_hand_computation():
    mix = _mix_with_known_weights()
    assert mix.normalized_weights() == pytest.approx([0.25, 0.75])
    torch.testing.assert_close(mix(LAYERS), MIXED)
    # Leading dimensions (batch, time) are carried through.
    torch.testing.assert_close(mix(LAYERS.unsqueeze(0)), MIXED.unsqueeze(0))


def test_scalar_mix_gradients_reach_weights_and_gamma():
    mix = _mix_with_known_weights()
    loss = mix(LAYERS).sum()  # = 2 + 10 + 10 + 18 = 40
    assert float(loss.detach()) == pytest.approx(40.0)
    loss.backward()
    # dL/dγ = L / γ = 20.
    assert float(mix.gamma.grad) == pytest.approx(20.0)
    # With A_k = sum of layer k's entries (A_1 = 8, A_2 = 24) and Σ s_k A_k = 20:
    # dL/dw_j = γ s_j (A_j - 20) → [2 * 0.25 * -12, 2 * 0.75 * 4] = [-6, 6].
    assert mix.weights.grad.tolist() == pytest.approx([-6.0, 6.0])


def test_scalar_mix_rejects_wrong_layer_count():
    with pytest.raises(ValueError, match="expects 2 layers"):
        _mix_with_known_weights()(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError):
        ScalarMix(0)


def test_scalar_mix_in_float16():
    mix = _mix_with_known_weights()
    out = mix(LAYERS.half())
    assert out.dtype == torch.float16
    assert out.float().tolist() == MIXED.tolist()
    assert math.isclose(sum(mix.normalized_weights()), 1.0, rel_tol=1e-6)
