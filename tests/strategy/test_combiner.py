"""Layer resolution and the Combiner's facts (bert_ner_probe/strategy/combiner.py) against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bert_ner_probe.errors import UserError
from bert_ner_probe.strategy.combiner import Combiner, combine_layers, resolve_layers
from bert_ner_probe.strategy.read import select_features as _select_features


def select_features(features, layers, combine, **kw):
    """The split's combined features for hidden states ``layers`` under ``combine``."""
    return _select_features(features, Combiner(tuple(layers), combine, features.shape[-1]), **kw)


# Shape: (words 3, hidden states 4 (N = 3 layers + embeddings), width 2), float16.
FEATURES = np.array(
    [
        [[1, 2], [3, 4], [5, 6], [7, 8]],
        [[0, 1], [2, 0], [1, 1], [4, 2]],
        [[-1, 2], [6, -3], [0, 0], [2, 5]],
    ],
    dtype=np.float16,
)


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

    from bert_ner_probe.probes.base import ProbeInputs
    from bert_ner_probe.probes.bilstm import BiLSTMProbe

    c = Combiner.from_config(OmegaConf.create({"layers": [-4, -3, -2, -1], "combine": combine}), 12, 768)
    assert c.layers == (9, 10, 11, 12)
    assert (c.output_width, c.row_shape, c.mix_layers) == (width, row_shape, mix_layers)
    block = np.ones((2, 4, 768), dtype=np.float16)  # the rows of its four layers
    assert tuple(c.combine_block(block).shape) == (2,) + row_shape
    tagger = BiLSTMProbe.from_config(OmegaConf.create({"hidden_size": 8, "num_layers": 1, "dropout": 0.0,
                                                       "crf": False, "input_dropout": 0.0, "impl": "padded"}),
                                     ProbeInputs(5, c.output_width, c.mix_layers))
    assert tagger.lstm.input_size == width and (tagger.mix is None) == (mix_layers is None)
    scores = tagger.emissions(c.combine_block(block).float().unsqueeze(0), torch.tensor([2]))  # one sentence
    assert scores.shape == (1, 2, 5)
    record = c.mix_record(tagger.mix)
    assert (record is None) == (mix_layers is None)
    if record is not None:
        assert record["layers"] == [9, 10, 11, 12] and record["weights"] == [0.25] * 4 and record["gamma"] == 1.0
