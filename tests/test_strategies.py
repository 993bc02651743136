"""Layer selection and combination (concat/sum/mean/scalar_mix) against hand-computed arrays."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from bert_ner_probe.errors import UserError
from bert_ner_probe.strategy.scalar_mix import ScalarMix
from bert_ner_probe.strategy.combiner import Combiner, combine_layers, resolve_layers
from bert_ner_probe.strategy.read import CachedSelection, read_rows
from bert_ner_probe.strategy.read import select_features as _select_features


def select_features(features, layers, combine, **kw):
    """The split's combined features for hidden states ``layers`` under ``combine``."""
    return _select_features(features, Combiner(tuple(layers), combine, features.shape[-1]), **kw)


def cached_selection(features, layers, combine):
    return CachedSelection(features, Combiner(tuple(layers), combine, features.shape[-1]))

# ---------------------------------------------------------------- resolve_layers


def test_none_means_every_encoder_layer():
    assert resolve_layers(None, 6) == [1, 2, 3, 4, 5, 6]
    assert resolve_layers(None, 12) == list(range(1, 13))


def test_negative_indices_count_from_the_top():
    assert resolve_layers([-1], 6) == [6]
    assert resolve_layers([-2], 6) == [5]
    assert resolve_layers([-4, -3, -2, -1], 12) == [9, 10, 11, 12]
    assert resolve_layers([-7], 6) == [0]  # the embeddings
    assert resolve_layers([0, 6], 6) == [0, 6]


def test_order_is_kept():
    assert resolve_layers([3, 1, -1], 6) == [3, 1, 6]


@pytest.mark.parametrize("bad", [7, -8, 100])
def test_out_of_range_names_the_valid_range(bad):
    with pytest.raises(UserError) as e:
        resolve_layers([bad], 6)
    msg = str(e.value)
    assert str(bad) in msg
    assert "0..6" in msg and "-1..-7" in msg


def test_repeats_are_rejected():
    with pytest.raises(UserError, match="twice"):
        resolve_layers([-1, 6], 6)  # both are layer 6
    with pytest.raises(UserError, match="twice"):
        resolve_layers([2, 2], 6)


def test_empty_list_is_rejected():
    with pytest.raises(UserError, match="empty"):
        resolve_layers([], 6)


# ---------------------------------------------------------------- select_features

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


@pytest.mark.parametrize("layers,combine,expected", CASES)
@pytest.mark.parametrize("chunk", [1, 2, 16384])
def test_select_features_matches_hand_values(layers, combine, expected, chunk):
    out = select_features(FEATURES, layers, combine, chunk=chunk)
    assert out.dtype == torch.float16
    assert out.tolist() == expected


def test_select_features_reads_a_memmap(tmp_path):
    mm = np.lib.format.open_memmap(tmp_path / "train.npy", mode="w+", dtype=np.float16, shape=FEATURES.shape)
    mm[:] = FEATURES
    mm.flush()
    del mm
    features = np.load(tmp_path / "train.npy", mmap_mode="r")
    assert isinstance(features, np.memmap)
    assert select_features(features, [1, 3], "sum", chunk=2).tolist() == [[10, 12], [6, 2], [8, 2]]
    assert select_features(features, [2, 3], "concat", chunk=2).tolist() == [[5, 6, 7, 8], [1, 1, 4, 2], [0, 0, 2, 5]]


def test_sums_are_taken_in_float32():
    # 60000 + 60000 overflows float16 (max 65504); in float32 the mean and the sum with a
    # cancelling third layer are back in range: 60000 exactly (a multiple of float16's step 32).
    feats = np.array([[[60000, 1], [60000, 3], [-60000, 2]]], dtype=np.float16)
    assert select_features(feats, [0, 1], "mean").tolist() == [[60000, 2]]
    assert select_features(feats, [0, 1, 2], "sum").tolist() == [[60000, 6]]


def test_bad_combine_is_a_user_error():
    with pytest.raises(UserError, match="strategy.combine='max': expected one of concat \\| sum \\| mean \\| scalar_mix"):
        Combiner((1,), "max", 4)
    with pytest.raises(UserError, match="strategy.combine='max'"):
        combine_layers(torch.zeros(2, 1, 4), "max")
    with pytest.raises(UserError):
        select_features(FEATURES, [1], "max")


@pytest.mark.parametrize("combine, width, row_shape, mix_layers",
                         [("concat", 3072, (3072,), None), ("sum", 768, (768,), None), ("mean", 768, (768,), None),
                          ("scalar_mix", 768, (4, 768), 4)])
def test_a_combiner_owns_its_widths(combine, width, row_shape, mix_layers):
    from omegaconf import OmegaConf

    from bert_ner_probe.tagger.bilstm_tagger import BiLSTMTagger

    c = Combiner.from_config(OmegaConf.create({"layers": [-4, -3, -2, -1], "combine": combine}), 12, 768)
    assert c.layers == (9, 10, 11, 12)
    assert (c.output_width, c.row_shape, c.mix_layers) == (width, row_shape, mix_layers)
    block = np.ones((2, 13, 768), dtype=np.float16)
    assert tuple(c.combine_block(block).shape) == (2,) + row_shape
    tagger = BiLSTMTagger.from_config(OmegaConf.create({"hidden_size": 8, "num_layers": 1, "dropout": 0.0,
                                                        "crf": False, "input_dropout": 0.0, "impl": "padded"}),
                                      c, num_labels=5)
    assert tagger.lstm.input_size == width and (tagger.mix is None) == (mix_layers is None)
    scores = tagger.emissions(c.combine_block(block).float().unsqueeze(0), torch.tensor([2]))  # one sentence
    assert scores.shape == (1, 2, 5)
    record = c.mix_record(tagger.mix)
    assert (record is None) == (mix_layers is None)
    if record is not None:
        assert record["layers"] == [9, 10, 11, 12] and record["weights"] == [0.25] * 4 and record["gamma"] == 1.0


# ---------------------------------------------------------------- ScalarMix


def _mix_with_known_weights() -> ScalarMix:
    mix = ScalarMix(2)
    with torch.no_grad():
        mix.weights.copy_(torch.log(torch.tensor([1.0, 3.0])))  # softmax → [0.25, 0.75]
        mix.gamma.fill_(2.0)
    return mix


# Shape: (words 2, K 2, width 2): word0 h1 [4, 8], h2 [0, 4]; word1 h1 [-4, 0], h2 [8, 12].
LAYERS = torch.tensor([[[4.0, 8.0], [0.0, 4.0]], [[-4.0, 0.0], [8.0, 12.0]]])
# 2 * (0.25 * h1 + 0.75 * h2): word0 2 * ([1, 2] + [0, 3]) = [2, 10]; word1 2 * ([-1, 0] + [6, 9]) = [10, 18].
MIXED = torch.tensor([[2.0, 10.0], [10.0, 18.0]])


def test_scalar_mix_initial_state_is_a_plain_mean():
    mix = ScalarMix(4)
    assert mix.normalized_weights() == pytest.approx([0.25] * 4)
    assert float(mix.gamma.detach()) == 1.0
    x = torch.tensor([[[1.0], [2.0], [3.0], [6.0]]])
    torch.testing.assert_close(mix(x), torch.tensor([[3.0]]))


def test_scalar_mix_forward_against_hand_computation():
    mix = _mix_with_known_weights()
    assert mix.normalized_weights() == pytest.approx([0.25, 0.75])
    torch.testing.assert_close(mix(LAYERS), MIXED)
    # Leading dimensions (batch, time) are carried through.
    torch.testing.assert_close(mix(LAYERS.unsqueeze(0)), MIXED.unsqueeze(0))


def test_scalar_mix_gradients_reach_weights_and_gamma():
    mix = _mix_with_known_weights()
    loss = mix(LAYERS).sum()  # = 2 + 10 + 10 + 18 = 40
    assert float(loss.detach()) == pytest.approx(40.0)
    loss.backward()
    # dL/dγ = L / γ = 20.
    assert float(mix.gamma.grad) == pytest.approx(20.0)
    # With A_k = sum of layer k's entries (A_1 = 8, A_2 = 24) and Σ s_k A_k = 20:
    # dL/dw_j = γ s_j (A_j - 20) → [2 * 0.25 * -12, 2 * 0.75 * 4] = [-6, 6].
    assert mix.weights.grad.tolist() == pytest.approx([-6.0, 6.0])


def test_scalar_mix_rejects_wrong_layer_count():
    with pytest.raises(ValueError, match="expects 2 layers"):
        _mix_with_known_weights()(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError):
        ScalarMix(0)


def test_scalar_mix_in_float16():
    mix = _mix_with_known_weights()
    out = mix(LAYERS.half())
    assert out.dtype == torch.float16
    assert out.float().tolist() == MIXED.tolist()
    assert math.isclose(sum(mix.normalized_weights()), 1.0, rel_tol=1e-6)


# ---------------------------------------------------------------- reading without the memory map


def _saved(tmp_path, array: np.ndarray) -> np.ndarray:
    """``array`` written as a .npy file and opened as the cache opens it (a read-only memory map)."""
    np.save(tmp_path / "split.npy", array)
    return np.load(tmp_path / "split.npy", mmap_mode="r")


@pytest.mark.parametrize("start,stop", [(0, 3), (1, 3), (2, 3), (0, 1)])
def test_read_rows_reads_the_file_behind_a_memmap(tmp_path, start, stop):
    features = _saved(tmp_path, FEATURES)
    got = read_rows(features, start, stop)
    assert not isinstance(got, np.memmap)
    assert np.array_equal(got, FEATURES[start:stop])


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
    assert lazy.shape == whole.shape and (lazy.fd is not None) == on_file
    for rows in (torch.tensor([[5, 6, 7, 0], [30, 31, 0, 0]]), torch.tensor([49, 48, 2, 3, 4, 3, 10]),
                 torch.arange(50)):
        got = lazy[rows]
        assert got.dtype == torch.float16 and got.shape == tuple(rows.shape) + tuple(whole.shape[1:])
        assert torch.equal(got, whole[rows])


def _rss_file_mb() -> float:
    """This process's resident pages of mapped files, in MiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no RssFile line")


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads /proc/self/status (Linux)")
def test_reading_a_split_does_not_map_the_cache_file(tmp_path):
    # 64 MiB of features: combining one layer, or a batch of rows, must not bring the file's
    # pages into this process's resident set (they count in its RSS once touched through the map)
    features = _saved(tmp_path, np.ones((8192, 8, 512), dtype=np.float16))
    before = _rss_file_mb()
    assert select_features(features, [7], "concat").shape == (8192, 512)
    assert cached_selection(features, [4, 5, 6, 7], "concat")[torch.arange(0, 8192, 3)].shape == (2731, 2048)
    assert _rss_file_mb() - before < 16
    np.array(features[:, 7])  # through the map: the whole file is touched (a row is 8 KiB)
    assert _rss_file_mb() - before > 48
