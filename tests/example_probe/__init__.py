"""An example probe from outside the package, with a hyperparameter of its own: a low-rank linear probe.

For a word's features ``x`` (Shape: (width,))::

    scores(x) = U · (V · dropout(x)) + b          V Shape: (rank, width), U Shape: (labels, rank)

a linear map of rank at most ``probe.rank``: the rank bounds the probe's capacity, as in the
structural probe of Hewitt & Manning (2019). Everything it adds is here and in ``probe/low_rank.yaml``:
its schema (:class:`LowRankConfig`, registered with the model) and its yaml, found on the config search
path: ``bert-ner-probe 'hydra.searchpath=[pkg://example_probe]' probe=low_rank probe.rank=4`` (importing
this package, which Hydra does for that search path, registers both).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bert_ner_probe.errors import check_at_least
from bert_ner_probe.probes.base import FeatureProbe, FeatureProbeConfig, ProbeInputs
from bert_ner_probe.probes.registry import register


@dataclass
class LowRankConfig(FeatureProbeConfig):
    rank: int = 8  # the rank of the linear map from features to label scores

    def check(self) -> None:
        super().check()
        check_at_least("probe.rank", self.rank)


@register("example_probe", LowRankConfig)
class LowRankProbe(FeatureProbe):
    def __init__(self, input_size: int, num_labels: int, rank: int, crf: bool = False, mix_layers: int | None = None,
                 input_dropout: float = 0.0) -> None:
        super().__init__(num_labels, mix_layers, input_dropout)
        self.down = nn.Linear(input_size, rank, bias=False)
        self.up = nn.Linear(rank, num_labels)
        self.add_crf(crf)

    @classmethod
    def from_config(cls, cfg: LowRankConfig, inputs: ProbeInputs) -> "LowRankProbe":
        return cls(inputs.width, inputs.num_labels, cfg.rank, crf=cfg.crf, mix_layers=inputs.mix_layers,
                   input_dropout=cfg.input_dropout)

    def word_scores(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x)).float()  # Shape: (..., width) → (..., rank) → (..., labels)
