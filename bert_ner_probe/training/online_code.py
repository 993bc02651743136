"""The training half of the online code (MDL probing): a fresh probe per block, trained on every block before it.

Voita & Titov (2020), "Information-Theoretic Probing with Minimum Description
Length", §3.2. The blocks and what each probe trains on come from
:func:`bert_ner_probe.metrics.description_length.online_plan`; for each block
after the first, a fresh probe — the run's own probe, built anew with the
run's seed, on the run's features — is trained on its whole prefix and sends
the block's tags with its code::

    bits(block i+1) = Σ_{w ∈ block i+1} −log2 p_θi(y_w | x_w)          θi trained on blocks 0 … i

which :func:`bert_ner_probe.metrics.description_length.online_code_length`
sums into the online code length. A probe's bits are its mean loss per word
times the block's words, over ln 2
(:meth:`bert_ner_probe.training.trainer.Trainer.code_length`): cross-entropy,
or a CRF's sentence-level negative log-likelihood. The blocks are read from
the run's cached features; no encoder pass is made.

**Each probe is trained to convergence** (``online_code.*``,
:class:`OnlineCodeConfig`), as the paper's code trains its probes: on all of
its prefix, early-stopping on the code length of a *stopping set* outside
the training set — the run's dev split, so the stopping set never holds the
block being coded, nor any training sentence. Training goes in *rounds*: a
round is as many passes over the prefix as make at least ``round_steps``
optimiser steps (the first probe's prefix of 0.1 % of CoNLL-2003, about 200
words, is one batch, so its round is ``round_steps`` passes; the last
probe's, half the training set, is one pass). After each round the stopping
set's code length per word is measured (``neg_code_length``, higher is
better); the best round's weights are kept, and training stops after
``patience`` rounds without a code shorter by more than ``min_delta`` bits a
word (the paper's code: 0.001 nats) once ``min_steps`` optimiser steps are
done, or after ``rounds`` rounds. A budget fixed in epochs instead would
give the first probe a handful of steps and lengthen the code with
under-training; bench.md has the code lengths under twice this budget.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, List, Sequence, Tuple

import numpy as np
import torch
from omegaconf import OmegaConf

from bert_ner_probe.errors import check_at_least
from bert_ner_probe.probes.base import Model
from bert_ner_probe.training.tagging_data import TaggingData, WordData
from bert_ner_probe.training.trainer import DevScore, Trainer

log = logging.getLogger(__name__)

NEG_CODE_LENGTH = "neg_code_length"
STOP_SET = "dev"  # what each probe stops early on: the run's dev split (never a training sentence)


@dataclass
class OnlineCodeConfig:
    """``online_code.*``: how each probe of the online code (``mdl=true``) is trained (see the module docstring)."""

    rounds: int = 40  # at most this many rounds (a stopping-set evaluation after each)
    round_steps: int = 50  # a round: as many passes over the prefix as make at least this many optimiser steps
    patience: int = 3  # rounds without a shorter stopping-set code before stopping (the best round's weights kept)
    min_steps: int = 400  # no probe stops before this many optimiser steps
    # a round is better only if its stopping-set code per word is shorter by more than this (bits): the paper's code
    # counts a dev-loss improvement of more than 0.001 nats a word, 0.00144 bits
    min_delta: float = 0.00144

    @classmethod
    def from_config(cls, cfg: Any) -> "OnlineCodeConfig":
        """A run's ``online_code`` keys (its composed config) as this dataclass."""
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), cfg.online_code))

    def check(self) -> None:
        """One :class:`~bert_ner_probe.errors.UserError` for a value out of range, before any work."""
        for key in ("rounds", "round_steps", "patience"):
            check_at_least(f"online_code.{key}", getattr(self, key), 1)
        for key in ("min_steps", "min_delta"):
            check_at_least(f"online_code.{key}", getattr(self, key), 0)


@dataclass(frozen=True)
class ProbeFit:
    """How one probe of the online code was trained and what it sent (one per block after the first)."""

    train_sentences: int
    train_words: int
    steps: int  # optimiser steps taken
    rounds: int  # rounds run
    best_round: int  # the round whose weights sent the block
    stop_bits_per_word: float  # the stopping set's code length per word at the best round
    bits: float  # the block's code length under the kept weights


Data = TaggingData | WordData


def stopping_code_length(trainer: Trainer, stop: Data, device: torch.device) -> DevScore:
    """The online code's stopping score: minus ``stop``'s code length per word, in bits (higher is better)."""
    return DevScore(NEG_CODE_LENGTH, of_model=lambda m: -trainer.code_length(m, stop, device) / stop.num_words)


def plan_rounds(trainer: Trainer, data: Data, settings: OnlineCodeConfig, rng: np.random.Generator
                ) -> List[List[np.ndarray]]:
    """``settings.rounds`` rounds of training batches over ``data``, each ``k`` whole passes (each pass drawn as the
    trainer draws an epoch), ``k`` the fewest that make ``settings.round_steps`` optimiser steps or more."""
    batch_size, pool = trainer.config.batch_size, trainer.config.bucket_pool
    first = data.plan_epoch(batch_size, rng, pool)
    passes = max(1, math.ceil(settings.round_steps / max(1, len(first))))
    rounds: List[List[np.ndarray]] = []
    for r in range(settings.rounds):
        batches = first if r == 0 else data.plan_epoch(batch_size, rng, pool)
        for _ in range(passes - 1):
            batches = batches + data.plan_epoch(batch_size, rng, pool)
        rounds.append(list(batches))
    return rounds


def online_bits(trainer: Trainer, new_model: Callable[[], Model], train: Data, stop: Data,
                steps: Sequence[Tuple[np.ndarray, np.ndarray]], settings: OnlineCodeConfig, seed: int,
                device: torch.device) -> List[ProbeFit]:
    """Train a fresh probe per step on its prefix of ``train``, stopping early on ``stop``, and code its block; one
    :class:`ProbeFit` per step. ``steps`` are ``(prefix, block)`` sentence ids of ``train``
    (:class:`~bert_ner_probe.metrics.description_length.OnlineStep`: blocks ``0 … i``, block ``i + 1``).

    ``new_model`` builds a fresh, untrained probe on ``device`` (the caller seeds it); block ``i``'s batches are
    drawn from ``(seed, i)``.
    """
    probe_trainer = trainer.with_settings(epochs=settings.rounds, patience=settings.patience,
                                          min_steps=settings.min_steps, min_delta=settings.min_delta)
    score = stopping_code_length(trainer, stop, device)
    fits = []
    for i, (prefix_ids, block) in enumerate(steps, start=2):
        prefix = train.subset(prefix_ids)
        model = new_model()
        rounds = plan_rounds(probe_trainer, prefix, settings, np.random.default_rng([seed, i]))
        fit = probe_trainer.fit(model, prefix, stop, score, device, rounds)
        bits = trainer.code_length(model, train.subset(block), device)
        fits.append(ProbeFit(prefix.num_sentences, prefix.num_words, fit.steps, fit.epochs_run, fit.best_epoch,
                             -fit.best_dev_score, bits))
        log.info("online code: block %d/%d (%d words) sent in %.0f bits by a probe trained on %d sentences "
                 "(%d steps, best of %d rounds: %d)", i, len(steps) + 1, train.sentence_words(block), bits,
                 len(prefix_ids), fit.steps, fit.epochs_run, fit.best_epoch)
    return fits


def fits_record(fits: Sequence[ProbeFit], settings: OnlineCodeConfig) -> Dict[str, Any]:
    """What ``results.json``'s ``mdl`` adds about the probes: each one's training, the settings, the stopping set."""
    return {"probes": [asdict(f) for f in fits], "settings": asdict(settings), "stop_set": STOP_SET}
