"""The online code length of a run's training tags: fresh probes trained on growing prefixes (MDL probing).

Voita & Titov (2020), "Information-Theoretic Probing with Minimum Description
Length", §3.2. The training sentences, in a seeded order, are cut into blocks
at the paper's portions (:func:`~bert_ner_probe.metrics.description_length.block_bounds`).
For each block after the first, a fresh probe — the run's own probe, built
anew with the run's seed, on the run's features — is trained on every block
before it and sends the block's tags with its code::

    bits(block i+1) = Σ_{w ∈ block i+1} −log2 p_θi(y_w | x_w)          θi trained on blocks 0 … i
    L_online = n_1 · log2 K + Σ_i bits(block i+1)                        compression = N · log2 K / L_online

(:func:`~bert_ner_probe.metrics.description_length.online_code_length`). As in
the paper, each probe stops early on a held-out tenth of its own prefix
(:func:`~bert_ner_probe.metrics.description_length.early_stop_split`); the
stopping score is the held-out code length per word itself (shorter is better). A
probe's bits are its mean loss per word times the block's words, over ln 2
(:meth:`bert_ner_probe.training.trainer.Trainer.code_length`): cross-entropy,
or a CRF's sentence-level negative log-likelihood. The blocks are read from
the run's cached features; no encoder pass is made.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

import numpy as np
import torch

from bert_ner_probe.metrics.description_length import (MdlResult, block_bounds, block_sentences, early_stop_split,
                                                       online_code_length, seeded_order)
from bert_ner_probe.probes.base import Model
from bert_ner_probe.training.tagging_data import TaggingData, WordData
from bert_ner_probe.training.trainer import Trainer

log = logging.getLogger(__name__)


def online_code(trainer: Trainer, new_model: Callable[[], Model], train: TaggingData | WordData, num_labels: int, seed: int,
                device: torch.device) -> MdlResult:
    """The online code length of ``train``'s tags (see the module docstring).

    ``new_model`` builds a fresh, untrained probe on ``device`` (the caller seeds it); ``seed``
    orders the sentences and picks each prefix's held-out tenth.
    """
    order = seeded_order(train.num_sentences, seed)
    blocks = block_sentences(order, block_bounds(train.num_sentences))
    words = [train.sentence_words(b) for b in blocks]
    bits = []
    t0 = time.perf_counter()
    for i in range(1, len(blocks)):
        prefix = np.concatenate(blocks[:i])
        fit_ids, held_ids = early_stop_split(prefix, seed + i)
        fit, held = train.subset(fit_ids), train.subset(held_ids)
        model = new_model()
        trainer.fit(model, fit, held, None, device,
                    dev_score=lambda m: -trainer.code_length(m, held, device) / held.num_words)
        bits.append(trainer.code_length(model, train.subset(blocks[i]), device))
        log.info("online code: block %d/%d (%d words) sent in %.0f bits by a probe trained on %d sentences",
                 i + 1, len(blocks), words[i], bits[-1], len(fit_ids))
    result = online_code_length(words, num_labels, bits)
    log.info("online code: %.1f kbits against %.1f kbits uniform (compression %.2f), %.0f s",
             result.online_bits / 1000, result.uniform_bits / 1000, result.compression, time.perf_counter() - t0)
    return result
