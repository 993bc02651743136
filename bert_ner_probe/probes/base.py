"""What every trained model is to the trainer, and the frozen-feature probe's common parts.

:class:`Model` is the one interface :class:`bert_ner_probe.training.trainer.Trainer`
fits, probes and the fine-tuned encoder alike: the batch layout it reads
(:mod:`bert_ner_probe.probes.batch`), the mean loss per word of a batch, and
the best label of every word of a batch. A model is built from the run's
``probe`` config and a :class:`ProbeInputs` by :meth:`Model.from_config`
and registered by name (:mod:`bert_ner_probe.probes.registry`).

:class:`FeatureProbe` is the part every probe over cached features shares:
an optional learned scalar mix of the combined layers
(:class:`~bert_ner_probe.strategy.scalar_mix.ScalarMix`, for the
``scalar_mix`` rule), dropout on the features, and an optional linear-chain
CRF over each sentence (any probe that scores every word can put one on top:
its emissions are the probe's word scores). A word-wise probe (linear, MLP)
writes :meth:`FeatureProbe.word_scores` alone; it then reads words without
sentences (the cheapest layout) unless a CRF needs sentences.

A model's hyperparameters (``probe.*``) are a dataclass of its own module,
:class:`ProbeConfig` or a subclass, registered with the model
(:func:`bert_ner_probe.probes.registry.register`): their types and defaults
live there alone, and the config is checked against them when it is composed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Optional, Type

import torch
from omegaconf import MISSING
from torch import nn

from bert_ner_probe.data.corpus import IGNORE_INDEX
from bert_ner_probe.errors import check_fraction
from bert_ner_probe.probes.batch import Batch, Layout, PaddedBatch, PackedBatch, WordsBatch
from bert_ner_probe.probes.crf import ChainCRF
from bert_ner_probe.probes.dropout import Dropout
from bert_ner_probe.strategy.scalar_mix import ScalarMix


@dataclass
class ProbeConfig:
    """``probe.*`` that every model reads; a model with hyperparameters of its own extends it in its module."""

    name: str = MISSING  # the registered model (its schema entry sets it: registry.register)
    crf: bool = False  # a linear-chain CRF over each sentence instead of the softmax

    def check(self) -> None:
        """The ranges the types cannot express, before any work: one :class:`~bert_ner_probe.errors.UserError`."""


@dataclass
class FeatureProbeConfig(ProbeConfig):
    """``probe.*`` of a probe over cached features (:class:`FeatureProbe`)."""

    input_dropout: float = 0.0  # on the frozen features

    def check(self) -> None:
        super().check()
        check_fraction("probe.input_dropout", self.input_dropout)


@dataclass(frozen=True)
class ProbeInputs:
    """What a model is built over, besides its own config.

    ``width``: a word's feature width after the combine rule (for ``scalar_mix``
    the width of one layer); ``mix_layers``: K layers to mix (``scalar_mix``),
    else None; ``encoder``: the Hugging Face model a fine-tuned model trains
    (None for probes over cached features); ``pooling``: sub-word pooling.
    """

    num_labels: int
    width: int = 0
    mix_layers: Optional[int] = None
    encoder: Any = None
    pooling: str = "first"


class Model(nn.Module):
    """A model the trainer fits (see the module docstring)."""

    #: True for a model that trains the encoder itself (fine-tuning): it reads encoder windows, not cached features.
    fine_tunes_encoder: ClassVar[bool] = False
    #: Its ``probe.*`` schema (set by :func:`~bert_ner_probe.probes.registry.register`).
    config_type: ClassVar[Type[ProbeConfig]] = ProbeConfig

    @classmethod
    def from_config(cls, cfg: Any, inputs: ProbeInputs) -> "Model":
        """The model of ``cfg`` (the run's ``probe`` config, a :attr:`config_type`) over ``inputs``."""
        raise NotImplementedError

    def layout(self, device: torch.device) -> Layout:
        """The layout of the batches this model reads on ``device``."""
        raise NotImplementedError

    def loss(self, batch: Batch) -> torch.Tensor:
        """Mean loss per word of ``batch`` (cross-entropy, or a CRF's negative log-likelihood per word)."""
        raise NotImplementedError

    def decode(self, batch: Batch) -> torch.Tensor:
        """The best label of every word of ``batch``, in the batch's own shape (:meth:`Batch.put` places them)."""
        raise NotImplementedError

    @property
    def mix(self) -> Optional[ScalarMix]:
        """The learned scalar mix of layers, if the model has one (reported in results.json)."""
        return None


class FeatureProbe(Model):
    """A probe over cached word features: scalar mix → input dropout → scores → softmax or CRF."""

    def __init__(self, num_labels: int, mix_layers: Optional[int] = None, input_dropout: float = 0.0) -> None:
        """``mix_layers=K``: inputs have Shape: (..., K, width) and a ScalarMix makes them (..., width).

        A subclass builds its own layers, then calls :meth:`add_crf` last (so that the CRF's
        random initialisation comes after theirs).
        """
        super().__init__()
        self.num_labels = num_labels
        self.scalar_mix = ScalarMix(mix_layers) if mix_layers else None
        self.input_dropout = Dropout(input_dropout)
        self.crf: Optional[ChainCRF] = None

    def add_crf(self, crf: bool) -> None:
        """With ``crf=True``, a linear-chain CRF over each sentence replaces the softmax."""
        self.crf = ChainCRF(self.num_labels) if crf else None

    @property
    def mix(self) -> Optional[ScalarMix]:
        return self.scalar_mix

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Mixed (when there is a mix) and dropped-out features: Shape: (..., width)."""
        if self.scalar_mix is not None:
            x = self.scalar_mix(x)
        return self.input_dropout(x)

    def word_scores(self, x: torch.Tensor) -> torch.Tensor:
        """Label scores of each word from its features alone: Shape: (..., width) → (..., labels), float32.

        A word-wise probe implements this; a sequence probe overrides :meth:`padded_scores` instead.
        """
        raise NotImplementedError

    def padded_scores(self, batch: PaddedBatch) -> torch.Tensor:
        """Label scores of a padded batch, Shape: (batch, time, labels), float32, zero at padding."""
        scores = self.word_scores(self.features(batch.x))
        return scores * batch.valid.to(scores.device).unsqueeze(-1)

    def layout(self, device: torch.device) -> Layout:
        return Layout.padded if self.crf is not None else Layout.words

    def loss(self, batch: Batch) -> torch.Tensor:
        if isinstance(batch, PaddedBatch):
            scores = self.padded_scores(batch)
            if self.crf is not None:
                return self.crf.padded_loss(scores, batch.tags)
            return nn.functional.cross_entropy(scores.reshape(-1, scores.shape[-1]), batch.tags.reshape(-1),
                                               ignore_index=IGNORE_INDEX)
        return nn.functional.cross_entropy(self.flat_scores(batch), batch.tags)

    def flat_scores(self, batch: Batch) -> torch.Tensor:
        """Scores of a words (or packed) batch: Shape: (words, labels), float32."""
        if isinstance(batch, WordsBatch):
            return self.word_scores(self.features(batch.x))
        if isinstance(batch, PackedBatch):
            return self.word_scores(self.features(batch.seq.data))
        raise TypeError(f"{type(self).__name__} cannot read a {type(batch).__name__}")

    @torch.no_grad()
    def decode(self, batch: Batch) -> torch.Tensor:
        if isinstance(batch, PaddedBatch):
            scores = self.padded_scores(batch)  # Shape: (batch, time, labels)
            return scores.argmax(-1) if self.crf is None else self.crf.padded_decode(scores, batch.lengths)
        return self.flat_scores(batch).argmax(-1)  # Shape: (words,)
