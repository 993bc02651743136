"""The MLP probe (Hewitt & Liang 2019): one hidden ReLU layer, checked by hand."""

from __future__ import annotations

import torch
from omegaconf import OmegaConf

from bert_ner_probe.probes.base import ProbeInputs
from bert_ner_probe.probes.batch import WordsBatch
from bert_ner_probe.probes.mlp import MLPProbe
from bert_ner_probe.probes.registry import build


def test_hidden_layer_and_scores_by_hand():
    probe = MLPProbe(2, 2, hidden_size=2, dropout=0.0).eval()
    with torch.no_grad():  # h = ReLU([x1 − x2, x2 − x1]); scores = [h1, 2·h2 + 1]
        probe.hidden.weight.copy_(torch.tensor([[1.0, -1.0], [-1.0, 1.0]]))
        probe.hidden.bias.zero_()
        probe.classifier.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
        probe.classifier.bias.copy_(torch.tensor([0.0, 1.0]))
    x = torch.tensor([[3.0, 1.0], [1.0, 3.0], [1.0, 1.0]])  # h = (2, 0), (0, 2), (0, 0)
    assert probe.word_scores(x).tolist() == [[2.0, 1.0], [0.0, 5.0], [0.0, 1.0]]
    assert probe.decode(WordsBatch(x, torch.zeros(3, dtype=torch.long), torch.arange(3))).tolist() == [0, 1, 1]


def test_built_by_name_with_its_width_and_dropout():
    cfg = OmegaConf.create({"name": "mlp", "hidden_size": 7, "dropout": 0.25, "crf": False, "input_dropout": 0.0})
    probe = build(cfg, ProbeInputs(num_labels=3, width=5))
    assert isinstance(probe, MLPProbe)
    assert (probe.hidden.in_features, probe.hidden.out_features, probe.classifier.out_features) == (5, 7, 3)
    assert probe.dropout.p == 0.25 and probe.mix is None and probe.crf is None
