"""Reading a strategy's rows from the cache (bert_ner_probe/strategy/read.py) against hand-computed arrays; the NaN/Inf check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bert_ner_probe.features.row_file import RowFile
from bert_ner_probe.strategy.combiner import Combiner
from bert_ner_probe.strategy.read import CachedSelection, read_rows, rows_at_once
from bert_ner_probe.strategy.read import select_features as _select_features


def _states(features, layers):
    """Hidden states ``layers`` of ``features``: an array of Shape: (words, hidden states, width), or a list of
    one array (or cache file) per hidden state, as the cache holds them."""
    if isinstance(features, list):
        return [features[h] for h in layers]
    return [np.ascontiguousarray(features[:, h]) for h in layers]


def select_features(features, layers, combine, **kw):
    """The split's combined features for hidden states ``layers`` under ``combine``."""
    states = _states(features, layers)
    return _select_features(states, Combiner(tuple(layers), combine, states[0].shape[-1]), **kw)


def cached_selection(features, layers, combine):
    states = _states(features, layers)
    return CachedSelection(states, Combiner(tuple(layers), combine, states[0].shape[-1]))


# Shape: (words 3, hidden states 4 (N = 3 layers + embeddings), width 2), float16.
FEATURES = np.array(
    [
        [[1, 2], [3, 4], [5, 6], [7, 8]],
        [[0, 1], [2, 0], [1, 1], [4, 2]],
        [[-1, 2], [6, -3], [0, 0], [2, 5]],
    ],
    dtype=np.float16,
)


CASES = [
    # layers, combine, expected (written out by hand)
    ([1, 3], "concat", [[3, 4, 7, 8], [2, 0, 4, 2], [6, -3, 2, 5]]),
    ([3, 1], "concat", [[7, 8, 3, 4], [4, 2, 2, 0], [2, 5, 6, -3]]),
    ([1, 3], "sum", [[10, 12], [6, 2], [8, 2]]),
    ([1, 3], "mean", [[5, 6], [3, 1], [4, 1]]),
    ([1, 2, 3], "sum", [[15, 18], [7, 3], [8, 2]]),
    ([1, 2], "mean", [[4, 5], [1.5, 0.5], [3, -1.5]]),
    ([0, 2], "concat", [[1, 2, 5, 6], [0, 1, 1, 1], [-1, 2, 0, 0]]),
    ([0], "concat", [[1, 2], [0, 1], [-1, 2]]),
    ([0], "sum", [[1, 2], [0, 1], [-1, 2]]),
    ([1, 3], "scalar_mix", [[[3, 4], [7, 8]], [[2, 0], [4, 2]], [[6, -3], [2, 5]]]),
    ([0, 1, 2, 3], "scalar_mix",
     [[[1, 2], [3, 4], [5, 6], [7, 8]], [[0, 1], [2, 0], [1, 1], [4, 2]], [[-1, 2], [6, -3], [0, 0], [2, 5]]]),
]


def _saved(tmp_path, array: np.ndarray) -> list:
    """Each hidden state of ``array`` (Shape: (words, hidden states, width)) written as the cache writes it (a
    :class:`RowFile`), and opened as the cache opens it (a read-only memory map): one per hidden state."""
    out = []
    for h in range(array.shape[1]):
        f = RowFile(tmp_path / f"split.h{h:02d}.npy", (array.shape[0], array.shape[2]))
        f[np.arange(array.shape[0])] = array[:, h]
        f.close()
        out.append(np.load(f.path, mmap_mode="r"))
    return out


def _rss_file_mb() -> float:
    """This process's resident pages of mapped files, in MiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no RssFile line")


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_nonfinite_rows_finds_nan_and_both_infinities_and_nothing_else(dtype):
    import torch

    from bert_ner_probe.strategy.read import _nonfinite_rows

    x = torch.full((40, 3, 8), 65504.0, dtype=getattr(torch, dtype))  # the largest finite float16
    x[1::2] *= -1
    assert _nonfinite_rows(x) is None and _nonfinite_rows(x[:0]) is None
    for row, value in ((3, float("nan")), (17, float("inf")), (38, -float("inf"))):
        x[row, 2, 5] = value
    assert _nonfinite_rows(x).nonzero().ravel().tolist() == [3, 17, 38]


@pytest.mark.parametrize("layers,combine,expected", CASES)
@pytest.mark.parametrize("chunk", [1, 2, 16384])
def test_select_features_matches_hand_values(layers, combine, expected, chunk):
    out = select_features(FEATURES, layers, combine, chunk=chunk)
    assert out.dtype == torch.float16
    assert out.tolist() == expected


def test_select_features_reads_a_memmap(tmp_path):
    features = _saved(tmp_path, FEATURES)
    assert all(isinstance(f, np.memmap) for f in features)
    assert select_features(features, [1, 3], "sum", chunk=2).tolist() == [[10, 12], [6, 2], [8, 2]]
    assert select_features(features, [2, 3], "concat", chunk=2).tolist() == [[5, 6, 7, 8], [1, 1, 4, 2], [0, 0, 2, 5]]


def test_sums_are_taken_in_float32():
    # 60000 + 60000 overflows float16 (max 65504); in float32 the mean and the sum with a
    # cancelling third layer are back in range: 60000 exactly (a multiple of float16's step 32).
    feats = np.array([[[60000, 1], [60000, 3], [-60000, 2]]], dtype=np.float16)
    assert select_features(feats, [0, 1], "mean").tolist() == [[60000, 2]]
    assert select_features(feats, [0, 1, 2], "sum").tolist() == [[60000, 6]]


@pytest.mark.parametrize("start,stop", [(0, 3), (1, 3), (2, 3), (0, 1)])
def test_read_rows_reads_the_file_behind_a_memmap(tmp_path, start, stop):
    features = _saved(tmp_path, FEATURES)
    for h in range(FEATURES.shape[1]):
        got = read_rows(features[h], start, stop)
        assert not isinstance(got, np.memmap)
        assert np.array_equal(got, FEATURES[start:stop, h])


@pytest.mark.parametrize("layers", [[3], [1, 2, 3], [0, 2], [2, 0, 3]])
@pytest.mark.parametrize("combine", ["concat", "sum", "mean", "scalar_mix"])
@pytest.mark.parametrize("on_file", [True, False])
def test_cached_selection_equals_select_features(tmp_path, layers, combine, on_file):
    # random rows in several runs, repeats, padding's row 0, any shape: as the trainer gathers them
    rng = np.random.default_rng(0)
    array = rng.normal(size=(50, 4, 3)).astype(np.float16)
    features = _saved(tmp_path, array) if on_file else array
    whole = select_features(features, layers, combine, chunk=7)
    lazy = cached_selection(features, layers, combine)
    assert lazy.shape == whole.shape and all((fd is not None) == on_file for fd in lazy.fds)
    for rows in (torch.tensor([[5, 6, 7, 0], [30, 31, 0, 0]]), torch.tensor([49, 48, 2, 3, 4, 3, 10]),
                 torch.arange(50)):
        got = lazy[rows]
        assert got.dtype == torch.float16 and got.shape == tuple(rows.shape) + tuple(whole.shape[1:])
        assert torch.equal(got, whole[rows])


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads /proc/self/status (Linux)")
def test_reading_a_split_does_not_map_the_cache_file(tmp_path):
    # 64 MiB of features: combining one layer, or a batch of rows, must not bring the files'
    # pages into this process's resident set (they count in its RSS once touched through the map)
    features = _saved(tmp_path, np.ones((8192, 8, 512), dtype=np.float16))
    before = _rss_file_mb()
    assert select_features(features, [7], "concat").shape == (8192, 512)
    assert cached_selection(features, [4, 5, 6, 7], "concat")[torch.arange(0, 8192, 3)].shape == (2731, 2048)
    assert _rss_file_mb() - before < 4
    for h in range(8):
        np.array(features[h])  # through the maps: every file is touched (8 MiB each)
    assert _rss_file_mb() - before > 48


def _bytes_read() -> int:
    """Bytes this process has read through read-like system calls (``rchar`` of /proc/self/io)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar line")


@pytest.mark.skipif(not Path("/proc/self/io").is_file(), reason="reads /proc/self/io (Linux)")
@pytest.mark.parametrize("layers", [[3], [0, 6], [1, 2, 3, 4, 5, 6], [0, 1, 2, 3, 4, 5, 6]])
def test_an_epoch_over_k_of_l_hidden_states_reads_k_of_l_of_the_bytes(tmp_path, layers):
    # 7 hidden states (MiniLM's depth) of 6,000 words × 384: 4.4 MiB a file. An epoch of shuffled
    # batches, as a word-wise probe reads them, and a pass in order, as the NaN check does.
    words, width, states = 6000, 384, 7
    array = np.random.default_rng(1).normal(size=(words, states, width)).astype(np.float16)
    files = _saved(tmp_path, array)
    file_bytes = words * width * 2
    x = cached_selection(files, layers, "sum")
    before = _bytes_read()
    for batch in torch.randperm(words, generator=torch.Generator().manual_seed(0)).split(256):
        x[batch]
    epoch = _bytes_read() - before
    before = _bytes_read()
    whole = select_features(files, layers, "sum", chunk=4096)
    in_order = _bytes_read() - before
    assert len(layers) * file_bytes <= epoch <= 1.01 * len(layers) * file_bytes
    assert len(layers) * file_bytes <= in_order <= 1.01 * len(layers) * file_bytes
    assert torch.equal(x[torch.arange(words)], whole)


@pytest.mark.parametrize("combine", ["sum", "mean", "concat", "scalar_mix"])
def test_combining_rows_a_few_at_a_time_gives_the_bits_of_combining_them_at_once(tmp_path, combine):
    # 25 hidden states (a 24-layer encoder's), random values: every row's arithmetic is the same however the
    # rows are cut, so reading a deep entry in bounded pieces changes no feature
    array = np.random.default_rng(2).normal(scale=30, size=(3000, 25, 64)).astype(np.float16)
    layers = list(range(1, 25))
    combiner = Combiner(tuple(layers), combine, 64)
    at_once = combiner.combine_block(np.ascontiguousarray(array[:, layers]))
    files = _saved(tmp_path, array)
    assert torch.equal(select_features(files, layers, combine, chunk=7), at_once)
    lazy = cached_selection(files, layers, combine)
    assert rows_at_once(combiner) < 3000  # read and combined in two pieces
    assert torch.equal(lazy[torch.arange(3000)], at_once)
    assert torch.equal(lazy[torch.tensor([2999, 5, 6, 7, 0])], at_once[[2999, 5, 6, 7, 0]])
