"""The probes' dropout in a fine-tuned encoder (bert_ner_probe/probes/encoder_dropout.py): every dropout
module and eager attention's, in a tiny random BertModel; attention by hand, in float32 and under bf16 autocast."""

from __future__ import annotations

import copy

import torch
from torch import nn

from bert_ner_probe.features.encoder import attention_of
from bert_ner_probe.probes.dropout import Dropout, keep_mask
from bert_ner_probe.probes.encoder_dropout import EAGER_RAND_DROPOUT, eager_attention, use_rand_dropout


def _tiny_bert(attention: str, seed: int = 0):
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, attn_implementation=attention)
    return BertModel(config)


def test_an_eager_encoder_gets_it_everywhere_and_evaluates_as_before():
    model = _tiny_bert("eager").eval()
    before = copy.deepcopy(model)
    n_dropout = sum(type(m) is nn.Dropout for m in model.modules())
    assert use_rand_dropout(model) == n_dropout > 0
    assert not any(type(m) is nn.Dropout for m in model.modules())
    assert sum(type(m) is Dropout for m in model.modules()) == n_dropout
    assert not any(m.training for m in model.modules())  # the replacements evaluate as the model does
    assert attention_of(model) == EAGER_RAND_DROPOUT
    ids = torch.tensor([[2, 5, 7, 9, 3], [2, 6, 3, 0, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids, attention_mask=mask).last_hidden_state,
                                   before(input_ids=ids, attention_mask=mask).last_hidden_state)


def test_training_the_attention_probabilities_are_dropped_by_the_same_rule():
    """One layer's attention by hand: softmax(q kᵀ / √d + mask), then the probes' mask, then times v."""
    module = nn.Module().train()
    torch.manual_seed(1)
    q, k, v = torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4)
    mask = torch.tensor([0.0, 0.0, -1e9]).view(1, 1, 1, 3)
    torch.manual_seed(5)
    out, probs = eager_attention(module, q, k, v, mask, dropout=0.25)
    torch.manual_seed(5)
    keep = keep_mask((1, 2, 3, 3), 0.25)
    expected_probs = torch.softmax(q @ k.transpose(2, 3) / 2.0 + mask, dim=-1) * keep / 0.75
    torch.testing.assert_close(probs, expected_probs)
    torch.testing.assert_close(out, (expected_probs @ v).transpose(1, 2))


def test_an_sdpa_encoder_keeps_its_attention():
    model = _tiny_bert("sdpa")
    use_rand_dropout(model)
    assert attention_of(model) == "sdpa" and not any(type(m) is nn.Dropout for m in model.modules())


def test_under_bf16_autocast_the_attention_map_stays_bf16_and_masked_keys_get_nothing():
    """transformers' float32 mask holds −3.4e38, which is −inf in bf16; cast as it is, a masked score is still
    finite, and the map is not promoted to float32."""
    module = nn.Module().eval()
    torch.manual_seed(2)
    q, k, v = torch.randn(2, 2, 4, 8), torch.randn(2, 2, 4, 8), torch.randn(2, 2, 4, 8)
    mask = torch.zeros(2, 1, 4, 4)
    mask[1, ..., 3] = torch.finfo(torch.float32).min  # the second window's last key is padding
    mask[0, :, 2, :] = torch.finfo(torch.float32).min  # a query that sees no key: uniform, not NaN, as in float32
    out32, probs32 = eager_attention(module, q, k, v, mask)
    with torch.autocast("cpu", torch.bfloat16):
        out16, probs16 = eager_attention(module, q.bfloat16(), k.bfloat16(), v.bfloat16(), mask)
    assert probs16.dtype == out16.dtype == torch.bfloat16 and torch.isfinite(out16).all()
    assert torch.all(probs16[1, ..., 3] == 0) and torch.all(probs32[1, ..., 3] == 0)
    assert torch.all(probs16[0, :, 2] == 0.25) and torch.all(probs32[0, :, 2] == 0.25)
    torch.testing.assert_close(probs16.float(), probs32, atol=0.02, rtol=0.02)
    torch.testing.assert_close(out16.float(), out32, atol=0.05, rtol=0.05)
