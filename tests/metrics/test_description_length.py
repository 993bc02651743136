"""Online code length (Voita & Titov 2020): uniform code, online code, block cuts, early-stopping split."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bert_ner_probe.errors import UserError
from bert_ner_probe.metrics import description_length as dl


def test_portions_are_the_papers():
    # 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.25, 12.5, 25, 50, 100 %
    assert [round(p * 100, 4) for p in dl.PORTIONS] == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.25, 12.5, 25, 50, 100]


def test_uniform_code_length_is_n_log2_k():
    assert dl.uniform_code_length(10, 9) == 10 * math.log2(9)  # 31.699... bits
    assert dl.uniform_code_length(4, 4) == 8.0  # 4 words, 2 bits each
    assert dl.uniform_code_length(7, 1) == 0.0  # one tag: nothing to send


def test_code_bits_and_nats_to_bits():
    # p(gold) = 1/2, 1/2, 1/4 → 1 + 1 + 2 = 4 bits
    assert dl.code_bits([0.5, 0.5, 0.25]) == pytest.approx(4.0, abs=1e-12)
    # the same block as a summed cross-entropy in nats: ln 2 + ln 2 + ln 4 = 4 ln 2 nats → 4 bits
    assert dl.nats_to_bits(4 * math.log(2)) == pytest.approx(4.0, abs=1e-12)
    assert dl.nats_to_bits(np.array([math.log(2), math.log(8)])) == pytest.approx([1.0, 3.0])
    with pytest.raises(ValueError):
        dl.code_bits([0.5, 0.0])


def test_online_code_of_a_planted_three_block_example():
    # K = 4 tags, three blocks of 4, 3 and 1 words (N = 8).
    # block 1: sent uniformly, 4 words × log2 4 = 8 bits
    # block 2: probe on block 1 gives p(gold) = 1/2, 1/2, 1/4 → 1 + 1 + 2 = 4 bits
    # block 3: probe on blocks 1-2 gives p(gold) = 1/8 → 3 bits
    # online = 8 + 4 + 3 = 15 bits; uniform = 8 × 2 = 16 bits; compression = 16 / 15
    bits = [dl.code_bits([0.5, 0.5, 0.25]), dl.code_bits([0.125])]
    res = dl.online_code_length([4, 3, 1], 4, bits)
    assert res.uniform_bits == 16.0
    assert res.online_bits == pytest.approx(15.0, abs=1e-12)
    assert res.compression == pytest.approx(16 / 15, abs=1e-12)
    assert [(b.words, b.uniform) for b in res.blocks] == [(4, True), (3, False), (1, False)]
    assert [b.bits for b in res.blocks] == pytest.approx([8.0, 4.0, 3.0])
    d = res.to_dict()
    assert d["compression"] == pytest.approx(16 / 15) and len(d["blocks"]) == 3


def test_online_code_needs_one_bits_value_per_later_block():
    with pytest.raises(ValueError, match="one per block after the first"):
        dl.online_code_length([4, 3, 1], 4, [4.0])
    with pytest.raises(ValueError):
        dl.online_code_length([4, 0], 4, [1.0])


def test_block_bounds_for_small_n():
    # portions 25 %, 50 %, 100 % of 6 sentences: ⌊1.5 + ½⌋ = 2, ⌊3 + ½⌋ = 3, 6
    assert dl.block_bounds(6, (0.25, 0.5, 1.0)) == [(0, 2), (2, 3), (3, 6)]
    # of 7: ⌊1.75 + ½⌋ = 2, ⌊3.5 + ½⌋ = 4 (half-up), 7
    assert dl.block_bounds(7, (0.25, 0.5, 1.0)) == [(0, 2), (2, 4), (4, 7)]
    # of 10: ⌊2.5 + ½⌋ = 3, 5, 10
    assert dl.block_bounds(10, (0.25, 0.5, 1.0)) == [(0, 3), (3, 5), (5, 10)]


def test_block_bounds_of_conll_train_with_the_papers_portions():
    # 14041 sentences: 14.04→14, 28.08→28, 56.16→56, 112.3→112, 224.66→225, 449.3→449, 877.56→878,
    # 1755.1→1755, 3510.25→3510, 7020.5→7021 (half-up), 14041
    ends = [e for _, e in dl.block_bounds(14041)]
    assert ends == [14, 28, 56, 112, 225, 449, 878, 1755, 3510, 7021, 14041]


def test_too_little_data_is_one_user_error_naming_the_minimum():
    # 25 % of 1 sentence is ⌊0.25 + ½⌋ = 0: an empty first block; 2 sentences cut at ⌊0.5 + ½⌋ = 1 and ⌊1 + ½⌋ = 1,
    # an empty second block; 3 is the first n that cuts (1, 2, 3), and every larger n does
    with pytest.raises(UserError, match=r"^mdl=true: training set of 1 sentences is too small for the first "
                                        r"portion 25% to hold a sentence \(needs at least 3 sentences\)$"):
        dl.block_bounds(1, (0.25, 0.5, 1.0))
    with pytest.raises(UserError, match=r"portions 25% and 50% to be different blocks \(needs at least 3"):
        dl.block_bounds(2, (0.25, 0.5, 1.0))
    assert dl.block_bounds(3, (0.25, 0.5, 1.0)) == [(0, 1), (1, 2), (2, 3)]
    # the paper's portions: 0.1 % of 499 is ⌊0.499 + ½⌋ = 0; of 749, 0.1 % and 0.2 % are ⌊1.249⌋ = ⌊1.998⌋ = 1,
    # of 750 they are ⌊1.25⌋ = 1 and ⌊2.0⌋ = 2; then every gap is at least one
    with pytest.raises(UserError, match=r"first portion 0.1% to hold a sentence .*needs at least 750 sentences"):
        dl.block_bounds(499)
    with pytest.raises(UserError, match=r"portions 0.1% and 0.2% to be different blocks .*needs at least 750"):
        dl.block_bounds(749)
    assert len(dl.block_bounds(750)) == 11
    assert dl.min_sentences() == 750


def test_each_probe_trains_on_its_whole_prefix_and_sends_the_next_block():
    blocks, steps = dl.online_plan(10, seed=3, portions=(0.25, 0.5, 1.0))
    order = dl.seeded_order(10, 3)
    assert [b.tolist() for b in blocks] == [order[:3].tolist(), order[3:5].tolist(), order[5:].tolist()]
    assert [s.train.tolist() for s in steps] == [order[:3].tolist(), order[:5].tolist()]  # no sentence held out
    assert [s.block.tolist() for s in steps] == [order[3:5].tolist(), order[5:].tolist()]


def test_coinciding_cuts_are_an_error():
    # 0.4 and 0.5 of 4 sentences: ⌊1.6 + ½⌋ = 2 and ⌊2 + ½⌋ = 2, an empty second block
    with pytest.raises(UserError, match=r"portions 40% and 50% to be different blocks"):
        dl.block_bounds(4, (0.4, 0.5, 1.0))


def test_seeded_order_is_a_permutation_fixed_by_its_seed():
    a, b, c = dl.seeded_order(50, 3), dl.seeded_order(50, 3), dl.seeded_order(50, 4)
    assert sorted(a.tolist()) == list(range(50))
    assert (a == b).all() and not (a == c).all()
    blocks = dl.block_sentences(a, dl.block_bounds(10, (0.25, 0.5, 1.0)))
    assert [len(x) for x in blocks] == [3, 2, 5]
