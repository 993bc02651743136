"""Batches of windows (encoder passes) and of sentences (training), bounded and covering everything once."""

from __future__ import annotations

import numpy as np
import pytest

from bert_ner_probe.features.batching import batches_by_length, bucketed_batches

pytestmark = pytest.mark.usefixtures("one_thread")


def test_bucketed_batches_cover_each_sentence_once_and_are_deterministic():
    lengths = np.random.default_rng(0).integers(1, 40, size=1003)
    a = bucketed_batches(lengths, 16, np.random.default_rng(42), pool_factor=5)
    b = bucketed_batches(lengths, 16, np.random.default_rng(42), pool_factor=5)
    c = bucketed_batches(lengths, 16, np.random.default_rng(43), pool_factor=5)
    assert sorted(np.concatenate(a).tolist()) == list(range(1003))
    assert all(1 <= len(x) <= 16 for x in a)
    assert [x.tolist() for x in a] == [x.tolist() for x in b]
    assert [x.tolist() for x in a] != [x.tolist() for x in c]


def test_bucketed_batches_group_similar_lengths():
    lengths = np.random.default_rng(1).integers(1, 60, size=640)
    batches = bucketed_batches(lengths, 32, np.random.default_rng(0), pool_factor=1000)  # one pool
    spans = sorted((lengths[x].min(), lengths[x].max()) for x in batches)
    for (_, hi), (lo, _) in zip(spans, spans[1:]):  # sorted inside the pool: ranges do not overlap
        assert hi <= lo
    padded = sum(len(x) * lengths[x].max() for x in batches)
    assert padded < 1.1 * lengths.sum()


@pytest.mark.parametrize("max_batch,max_tokens", [(4, 1000), (64, 300), (3, 50), (1000, 10**6)])
def test_batches_by_length_respects_limits(max_batch, max_tokens):
    lengths = np.random.default_rng(0).integers(3, 120, size=257)
    batches = batches_by_length(lengths, max_batch, max_tokens)
    assert sorted(np.concatenate(batches).tolist()) == list(range(257))
    prev_max = 0
    for b in batches:
        assert 1 <= len(b) <= max_batch
        assert len(b) == 1 or len(b) * lengths[b].max() <= max_tokens
        assert lengths[b].min() >= prev_max  # sorted by length: batches do not interleave
        prev_max = lengths[b].max()
    if max_tokens == 10**6:
        assert len(batches) == 1


def test_a_window_longer_than_max_tokens_gets_its_own_batch():
    batches = batches_by_length(np.array([5, 500, 6]), 8, 100)
    assert [b.tolist() for b in batches] == [[0, 2], [1]]
