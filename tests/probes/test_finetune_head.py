"""The fine-tuned encoder's head and CRF chains by hand, over a tiny random BertModel."""

from __future__ import annotations

import torch

def _tiny_bert(tokenizer, seed: int = 0):
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    return BertModel(config)


def test_chains_group_words_by_window_row():
    from bert_ner_probe.probes.crf import chains

    scores = torch.arange(10, dtype=torch.float32).view(5, 2)  # words 0..4, 2 labels
    rows = torch.tensor([0, 0, 0, 2, 2])  # window 1 reads no word
    padded, mask, index = chains(scores, rows)
    assert mask.tolist() == [[True, True, True], [True, True, False]]
    assert index.tolist() == [[0, 1, 2], [3, 4, 0]]
    assert padded.tolist() == [[[0, 1], [2, 3], [4, 5]], [[6, 7], [8, 9], [0, 0]]]


def test_head_scores_are_the_linear_layer_over_the_pooled_last_layer(minilm_tokenizer):
    from bert_ner_probe.probes.finetune import FineTunedEncoder

    model = FineTunedEncoder(_tiny_bert(minilm_tokenizer), num_labels=3, pooling="first_last", dropout=0.0).eval()
    ids = torch.tensor([[101, 2000, 2001, 2002, 102]])
    mask = torch.ones_like(ids)
    pos = torch.tensor([[0, 0], [1, 2], [2, 3]])  # word 0: piece 1..2, word 1: piece 2..3
    with torch.no_grad():
        scores = model.word_scores(ids, mask, pos)
        h = model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state[0]  # Shape: (time, hidden)
        expected = torch.stack([torch.cat([h[1], h[2]]), torch.cat([h[2], h[3]])]) @ model.classifier.weight.T \
            + model.classifier.bias
    assert scores.shape == (2, 3)
    torch.testing.assert_close(scores, expected)


def test_the_head_runs_in_float32_under_bf16_autocast(minilm_tokenizer):
    """The encoder computes in bf16, the classifier over its pooled output in float32 (a bf16 head would round
    the scores to 8 mantissa bits and miss the float32 product by far more than the tolerance)."""
    from bert_ner_probe.probes.finetune import FineTunedEncoder

    model = FineTunedEncoder(_tiny_bert(minilm_tokenizer), num_labels=3, dropout=0.0).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, 10.0)  # large scores: bf16 rounding is visible
    ids = torch.tensor([[101, 2000, 2001, 2002, 102]])
    mask = torch.ones_like(ids)
    pos = torch.tensor([[0, 0], [1, 2], [1, 3]])  # words start at pieces 1 and 2
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        scores = model.word_scores(ids, mask, pos)
        h = model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state[0]  # Shape: (time, hidden)
        in_bf16 = model.classifier(h[[1, 2]])
    expected = h[[1, 2]].float() @ model.classifier.weight.T + model.classifier.bias
    assert scores.dtype == torch.float32
    torch.testing.assert_close(scores, expected)
    assert in_bf16.dtype == torch.bfloat16 and not torch.allclose(in_bf16.float(), expected, rtol=1.3e-6, atol=1e-5)


def test_crf_loss_is_the_sum_of_each_chains_nll_per_word(minilm_tokenizer):
    from bert_ner_probe.probes.finetune import FineTunedEncoder

    model = FineTunedEncoder(_tiny_bert(minilm_tokenizer), num_labels=3, dropout=0.0, crf=True)
    torch.manual_seed(3)
    scores = torch.randn(5, 3)
    tags = torch.tensor([0, 1, 2, 2, 0])
    rows = torch.tensor([0, 0, 1, 1, 1])
    nll = -(model.crf(scores[None, :2], tags[None, :2]) + model.crf(scores[None, 2:], tags[None, 2:]))
    torch.testing.assert_close(model.crf.chain_loss(scores, tags, rows), nll / 5)
    best = model.crf.chain_decode(scores, rows)
    assert best[:2].tolist() == model.crf.decode(scores[None, :2])[0]
    assert best[2:].tolist() == model.crf.decode(scores[None, 2:])[0]
