"""Grouping sentences (or encoder windows) into batches of similar length.

* :func:`batches_by_length` — for inference: sorted by length, cut so that a
  batch holds at most ``max_batch`` items and ``max_tokens`` padded positions
  (``len(batch) × longest``), which bounds the memory of a batch of long items.
* :func:`bucketed_batches` — for training: shuffled, then sorted by length
  within pools of ``pool_factor`` batches, and the batches shuffled; see
  :mod:`bert_ner_probe.training.tagging_data` for why the pools are small.
"""

from __future__ import annotations

from typing import List

import numpy as np


def batches_by_length(lengths: np.ndarray, max_batch: int, max_tokens: int) -> List[np.ndarray]:
    """Group indices sorted by length so each batch has ≤ max_batch items and ≤ max_tokens padded tokens."""
    order = np.argsort(lengths, kind="stable")
    out: List[np.ndarray] = []
    cur: List[int] = []
    for i in order:
        longest = max(lengths[i], lengths[cur[-1]] if cur else 0)  # sorted: the newest is the longest
        if cur and (len(cur) >= max_batch or longest * (len(cur) + 1) > max_tokens):
            out.append(np.asarray(cur))
            cur = []
        cur.append(int(i))
    if cur:
        out.append(np.asarray(cur))
    return out


def bucketed_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator,
                     pool_factor: int = 5) -> List[np.ndarray]:
    """Shuffled batches of sentences of similar length (see the module docstring and :mod:`bert_ner_probe.training.tagging_data`)."""
    order = rng.permutation(len(lengths))
    pool = batch_size * pool_factor
    batches: List[np.ndarray] = []
    for start in range(0, len(order), pool):
        chunk = order[start:start + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]
