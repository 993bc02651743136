"""The training half of the online code (MDL probing): a fresh probe per block, trained on the blocks before it.

Voita & Titov (2020), "Information-Theoretic Probing with Minimum Description
Length", §3.2. The blocks and what each probe trains on come from
:func:`bert_ner_probe.metrics.description_length.online_plan`; for each block
after the first, a fresh probe — the run's own probe, built anew with the
run's seed, on the run's features — is trained on its prefix and sends the
block's tags with its code::

    bits(block i+1) = Σ_{w ∈ block i+1} −log2 p_θi(y_w | x_w)          θi trained on blocks 0 … i

which :func:`bert_ner_probe.metrics.description_length.online_code_length`
sums into the online code length. As in the paper, each probe stops early on
a held-out tenth of its own prefix; the stopping score is the held-out code
length per word, negated (``neg_code_length``: higher is better). A probe's
bits are its mean loss per word times the block's words, over ln 2
(:meth:`bert_ner_probe.training.trainer.Trainer.code_length`): cross-entropy,
or a CRF's sentence-level negative log-likelihood. The blocks are read from
the run's cached features; no encoder pass is made.
"""

from __future__ import annotations

import logging
from typing import Callable, List, Sequence, Tuple

import numpy as np
import torch

from bert_ner_probe.probes.base import Model
from bert_ner_probe.training.tagging_data import TaggingData, WordData
from bert_ner_probe.training.trainer import DevScore, Trainer

log = logging.getLogger(__name__)

NEG_CODE_LENGTH = "neg_code_length"


def held_out_code_length(trainer: Trainer, held_out: TaggingData | WordData, device: torch.device) -> DevScore:
    """The online code's stopping score: minus the held-out code length per word, in bits (higher is better)."""
    return DevScore(NEG_CODE_LENGTH, of_model=lambda m: -trainer.code_length(m, held_out, device) / held_out.num_words)


def online_bits(trainer: Trainer, new_model: Callable[[], Model], train: TaggingData | WordData,
                steps: Sequence[Tuple[np.ndarray, np.ndarray, np.ndarray]], device: torch.device) -> List[float]:
    """The bits of each block after the first: ``steps`` are ``(train_ids, held_out_ids, block_ids)`` of sentences
    of ``train`` (:class:`~bert_ner_probe.metrics.description_length.OnlineStep`).

    ``new_model`` builds a fresh, untrained probe on ``device`` (the caller seeds it).
    """
    bits = []
    for i, (fit_ids, held_ids, block) in enumerate(steps, start=2):
        fit, held = train.subset(fit_ids), train.subset(held_ids)
        model = new_model()
        trainer.fit(model, fit, held, held_out_code_length(trainer, held, device), device)
        bits.append(trainer.code_length(model, train.subset(block), device))
        log.info("online code: block %d/%d (%d words) sent in %.0f bits by a probe trained on %d sentences",
                 i, len(steps) + 1, train.sentence_words(block), bits[-1], len(fit_ids))
    return bits
