"""The linear probe (Liu et al. 2019): scores, loss and labels against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from bert_ner_probe.probes.base import ProbeInputs
from bert_ner_probe.probes.batch import Layout, PaddedBatch, WordsBatch
from bert_ner_probe.probes.linear import LinearProbe
from bert_ner_probe.probes.registry import build


def _probe(**kw) -> LinearProbe:
    probe = LinearProbe(2, 3, **kw).eval()
    with torch.no_grad():  # W = [[1, 0], [0, 1], [1, 1]], b = [0, 0, -1]
        probe.classifier.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        probe.classifier.bias.copy_(torch.tensor([0.0, 0.0, -1.0]))
    return probe


def test_scores_loss_and_labels_by_hand():
    probe = _probe()
    x = torch.tensor([[2.0, 0.0], [0.0, 1.0]])  # word 1: scores (2, 0, 1); word 2: (0, 1, 0)
    batch = WordsBatch(x, torch.tensor([0, 2]), torch.tensor([4, 7]))
    assert probe.layout(torch.device("cpu")) == Layout.words
    assert probe.word_scores(x).tolist() == [[2.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    # cross-entropy: word 1, gold 0: log(e² + 1 + e) − 2; word 2, gold 2: log(1 + e + 1) − 0; the mean
    expected = (math.log(math.e ** 2 + 1 + math.e) - 2 + math.log(2 + math.e)) / 2
    assert float(probe.loss(batch)) == pytest.approx(expected, rel=1e-6)
    assert probe.decode(batch).tolist() == [0, 1]
    flat = torch.full((9,), -1)
    batch.put(flat, probe.decode(batch))
    assert flat[4] == 0 and flat[7] == 1


def test_a_crf_makes_it_read_sentences():
    probe = _probe(crf=True)
    assert probe.layout(torch.device("cpu")) == Layout.padded
    x = torch.tensor([[[2.0, 0.0], [0.0, 1.0]], [[0.0, 3.0], [0.0, 0.0]]])  # two sentences, the second of one word
    batch = PaddedBatch.of(x, torch.tensor([2, 1]), torch.tensor([[0, 2], [1, -100]]))
    scores = probe.padded_scores(batch)
    assert scores[0].tolist() == [[2.0, 0.0, 1.0], [0.0, 1.0, 0.0]] and scores[1, 1].abs().sum() == 0
    expected = -probe.crf(scores[:1], torch.tensor([[0, 2]]), reduction="sum") \
        - probe.crf(scores[1:, :1], torch.tensor([[1]]), reduction="sum")
    torch.testing.assert_close(probe.loss(batch), expected / 3)  # per word
    best = probe.decode(batch)
    assert best[0].tolist() == probe.crf.decode(scores[:1])[0] and best[1, 0] == probe.crf.decode(scores[1:, :1])[0][0]


def test_the_crf_loss_by_hand():
    """Two labels, W = I, b = 0; start s = (0.5, 0), end u = (0, 0.5), transitions A[from, to] = [[0.2, −0.3],
    [0, 0.1]]. Sentence 1: x = (1, 0), (0, 2), so emissions (1, 0), (0, 2), gold (0, 1); its four paths score
    s[y1] + e1[y1] + A[y1, y2] + e2[y2] + u[y2]: (0,0) 0.5+1+0.2+0+0 = 1.7, (0,1) 0.5+1−0.3+2+0.5 = 3.7,
    (1,0) 0+0+0+0+0 = 0, (1,1) 0+0+0.1+2+0.5 = 2.6. Sentence 2: x = (0, 3), gold (1): (0) 0.5+0+0 = 0.5,
    (1) 0+3+0.5 = 3.5. Loss = the two negative log-likelihoods, log Σ exp − gold, over the 3 words."""
    probe = LinearProbe(2, 2, crf=True).eval()
    with torch.no_grad():
        probe.classifier.weight.copy_(torch.eye(2))
        probe.classifier.bias.zero_()
        probe.crf.start_transitions.copy_(torch.tensor([0.5, 0.0]))
        probe.crf.end_transitions.copy_(torch.tensor([0.0, 0.5]))
        probe.crf.transitions.copy_(torch.tensor([[0.2, -0.3], [0.0, 0.1]]))
    x = torch.tensor([[[1.0, 0.0], [0.0, 2.0]], [[0.0, 3.0], [0.0, 0.0]]])
    batch = PaddedBatch.of(x, torch.tensor([2, 1]), torch.tensor([[0, 1], [1, -100]]))
    nll_1 = math.log(math.exp(1.7) + math.exp(3.7) + math.exp(0.0) + math.exp(2.6)) - 3.7
    nll_2 = math.log(math.exp(0.5) + math.exp(3.5)) - 3.5
    assert float(probe.loss(batch)) == pytest.approx((nll_1 + nll_2) / 3, rel=1e-6)
    assert probe.decode(batch)[0].tolist() == [0, 1] and probe.decode(batch)[1, 0] == 1  # the best paths


def test_built_by_name_over_a_scalar_mix():
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"name": "linear", "crf": False, "input_dropout": 0.0})
    probe = build(cfg, ProbeInputs(num_labels=4, width=5, mix_layers=3))
    assert isinstance(probe, LinearProbe) and probe.classifier.in_features == 5 and probe.mix is not None
    x = torch.randn(6, 3, 5)  # 6 words, 3 layers each
    out = probe.word_scores(probe.features(x))
    assert out.shape == (6, 4)
    probe.loss(WordsBatch(x, torch.zeros(6, dtype=torch.long), torch.arange(6))).backward()
    assert probe.mix.weights.grad is not None  # the mix learns with the probe


def test_keys_the_linear_probe_does_not_have_are_refused_not_ignored():
    """Its schema is input_dropout and crf: a hidden-layer key is one error, another probe's schema too."""
    from omegaconf import OmegaConf

    from bert_ner_probe.errors import UserError
    from bert_ner_probe.probes.bilstm import BiLSTMConfig

    with pytest.raises(UserError, match=r"probe.hidden_size: Key 'hidden_size' not in 'FeatureProbeConfig'"):
        build(OmegaConf.create({"name": "linear", "hidden_size": 99}), ProbeInputs(num_labels=4, width=5))
    bilstm_keys = OmegaConf.structured(BiLSTMConfig(name="bilstm"))
    bilstm_keys.name = "linear"  # probe.name=linear over probe=bilstm's keys
    with pytest.raises(UserError, match=r"probe.name=linear: its keys are FeatureProbeConfig's, but these are "
                                        r"BiLSTMConfig's; choose the probe and its keys together with probe="):
        build(bilstm_keys, ProbeInputs(num_labels=4, width=5))
