"""Dropout drawn by torch.rand (bert_ner_probe/probes/rand_dropout.py): the formula, its distribution, and the
encoder it is put into (a tiny random BertModel)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from bert_ner_probe.features.encoder import attention_of
from bert_ner_probe.probes.rand_dropout import EAGER_RAND_DROPOUT, RandDropout, rand_dropout, use_rand_dropout


def _tiny_bert(attention: str, seed: int = 0):
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, attn_implementation=attention)
    return BertModel(config)


def test_the_mask_is_u_at_least_p_and_the_kept_values_are_scaled():
    x = torch.tensor([1.0, -2.0, 3.0, 4.0, 5.0])
    torch.manual_seed(7)
    u = torch.rand(5)
    torch.manual_seed(7)
    y = rand_dropout(x, 0.5)
    expected = torch.where(u >= 0.5, x * 2.0, torch.zeros(()))  # y_i = x_i · [u_i ≥ p] / (1 − p)
    torch.testing.assert_close(y, expected, rtol=0, atol=0)


def test_the_keep_rate_is_one_minus_p_and_the_mean_is_kept():
    torch.manual_seed(0)
    x = torch.ones(1_000_000)
    y = rand_dropout(x, 0.1)
    kept = float((y != 0).float().mean())
    assert abs(kept - 0.9) < 5 * (0.9 * 0.1 / 1e6) ** 0.5  # five standard errors of a Bernoulli(0.9) mean
    assert abs(float(y.mean()) - 1.0) < 0.005
    assert torch.all((y == 0) | torch.isclose(y, torch.tensor(1 / 0.9)))


def test_no_dropout_when_evaluating_or_at_zero_and_bad_probabilities_are_refused():
    x = torch.randn(3, 4)
    assert rand_dropout(x, 0.3, training=False) is x and rand_dropout(x, 0.0) is x
    module = RandDropout(0.3).eval()
    assert module(x) is x and "p=0.3" in repr(module)
    for p in (1.0, -0.1):
        with pytest.raises(ValueError, match="must be in"):
            rand_dropout(x, p)
        with pytest.raises(ValueError, match="must be in"):
            RandDropout(p)


def test_an_eager_encoder_gets_it_everywhere_and_evaluates_as_before():
    model = _tiny_bert("eager").eval()
    before = copy.deepcopy(model)
    n_dropout = sum(type(m) is nn.Dropout for m in model.modules())
    assert use_rand_dropout(model) == n_dropout > 0
    assert not any(type(m) is nn.Dropout for m in model.modules())
    assert not any(m.training for m in model.modules())  # the replacements evaluate as the model does
    assert attention_of(model) == EAGER_RAND_DROPOUT
    ids = torch.tensor([[2, 5, 7, 9, 3], [2, 6, 3, 0, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids, attention_mask=mask).last_hidden_state,
                                   before(input_ids=ids, attention_mask=mask).last_hidden_state)


def test_training_the_attention_probabilities_are_dropped_by_the_same_rule():
    """One layer's attention by hand: softmax(q kᵀ / √d + mask), then the rand mask, then times v."""
    from bert_ner_probe.probes.rand_dropout import eager_attention

    module = nn.Module().train()
    torch.manual_seed(1)
    q, k, v = torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4)
    mask = torch.tensor([0.0, 0.0, -1e9]).view(1, 1, 1, 3)
    torch.manual_seed(5)
    out, probs = eager_attention(module, q, k, v, mask, dropout=0.25)
    torch.manual_seed(5)
    keep = torch.rand(1, 2, 3, 3) >= 0.25
    expected_probs = torch.softmax(q @ k.transpose(2, 3) / 2.0 + mask, dim=-1) * keep / 0.75
    torch.testing.assert_close(probs, expected_probs)
    torch.testing.assert_close(out, (expected_probs @ v).transpose(1, 2))


def test_an_sdpa_encoder_keeps_its_attention():
    model = _tiny_bert("sdpa")
    use_rand_dropout(model)
    assert attention_of(model) == "sdpa" and not any(type(m) is nn.Dropout for m in model.modules())
