"""The linear probe: one linear layer from a word's frozen features to its label scores.

For a word's features ``x`` (after the strategy's combine rule; Shape: (width,))::

    scores(x) = W · dropout(x) + b          W Shape: (labels, width)
    loss      = cross-entropy(softmax(scores), gold)

trained on every word independently: the probe of Liu et al. (2019,
"Linguistic Knowledge and Transferability of Contextual Representations").
Its capacity is bounded (one affine map per word, no context beyond what the
encoder put into ``x``), so what it reaches measures what the layer makes
linearly available, not what a probe can learn on top. With ``crf=true`` a
linear-chain CRF over each sentence replaces the softmax (the probe then
reads whole sentences).
"""

from __future__ import annotations

import torch
from torch import nn

from bert_ner_probe.probes.base import FeatureProbe, FeatureProbeConfig, ProbeInputs
from bert_ner_probe.probes.registry import register


@register("linear", FeatureProbeConfig)  # no hyperparameters of its own: input_dropout and crf
class LinearProbe(FeatureProbe):
    def __init__(self, input_size: int, num_labels: int, crf: bool = FeatureProbeConfig.crf,
                 mix_layers: int | None = None, input_dropout: float = FeatureProbeConfig.input_dropout) -> None:
        super().__init__(num_labels, mix_layers, input_dropout)
        self.classifier = nn.Linear(input_size, num_labels)
        self.add_crf(crf)

    @classmethod
    def from_config(cls, cfg: FeatureProbeConfig, inputs: ProbeInputs) -> "LinearProbe":
        """Reads ``probe.crf`` and ``probe.input_dropout``."""
        return cls(inputs.width, inputs.num_labels, crf=cfg.crf, mix_layers=inputs.mix_layers,
                   input_dropout=cfg.input_dropout)

    def word_scores(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x).float()  # Shape: (..., width) → (..., labels)
