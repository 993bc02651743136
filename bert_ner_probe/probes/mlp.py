"""The MLP probe: one hidden layer between a word's frozen features and its label scores.

For a word's features ``x`` (Shape: (width,))::

    h         = ReLU(W₁ · dropout_in(x) + b₁)          W₁ Shape: (hidden, width)
    scores(x) = W₂ · dropout(h) + b₂                   W₂ Shape: (labels, hidden)

trained with cross-entropy on every word independently, as the MLP probes of
Hewitt & Liang (2019, "Designing and Interpreting Probes with Control
Tasks"), whose capacity is set by ``hidden`` (``probe.hidden_size``). Beside
the linear probe it shows how much a layer's information is there but not
linearly; beside the BiLSTM, how much a probe with context adds. With
``crf=true`` a linear-chain CRF over each sentence replaces the softmax.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bert_ner_probe.errors import check_at_least, check_fraction
from bert_ner_probe.probes.base import FeatureProbe, FeatureProbeConfig, ProbeInputs
from bert_ner_probe.probes.dropout import Dropout
from bert_ner_probe.probes.registry import register


@dataclass
class MLPConfig(FeatureProbeConfig):
    """``probe=mlp``: one hidden ReLU layer."""

    hidden_size: int = 256  # the hidden layer's width
    dropout: float = 0.2  # after the hidden layer

    def check(self) -> None:
        super().check()
        check_at_least("probe.hidden_size", self.hidden_size)
        check_fraction("probe.dropout", self.dropout)


@register("mlp", MLPConfig)
class MLPProbe(FeatureProbe):
    def __init__(self, input_size: int, num_labels: int, hidden_size: int = MLPConfig.hidden_size,
                 dropout: float = MLPConfig.dropout, crf: bool = MLPConfig.crf, mix_layers: int | None = None,
                 input_dropout: float = MLPConfig.input_dropout) -> None:
        super().__init__(num_labels, mix_layers, input_dropout)
        self.hidden = nn.Linear(input_size, hidden_size)
        self.dropout = Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)
        self.add_crf(crf)

    @classmethod
    def from_config(cls, cfg: MLPConfig, inputs: ProbeInputs) -> "MLPProbe":
        """Reads ``probe.hidden_size`` (the hidden layer's width), ``dropout``, ``input_dropout`` and ``crf``."""
        return cls(inputs.width, inputs.num_labels, hidden_size=cfg.hidden_size, dropout=cfg.dropout,
                   crf=cfg.crf, mix_layers=inputs.mix_layers, input_dropout=cfg.input_dropout)

    def word_scores(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.hidden(x))  # Shape: (..., hidden)
        return self.classifier(self.dropout(h)).float()  # Shape: (..., labels)
