"""The online code's probes (training/online_code.py, over the plan of metrics/description_length.py) and the
trainer's code length."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bert_ner_probe.probes.linear import LinearProbe
from bert_ner_probe.run import online_code
from bert_ner_probe.training.tagging_data import TaggingData, WordData
from training.test_train import trainer_of

pytestmark = pytest.mark.usefixtures("one_thread")
CPU = torch.device("cpu")


def _data(n_sentences: int, informative: bool, seed: int = 0) -> TaggingData:
    """Sentences of 3 words; tags 0..2; features: the tag's one-hot (informative) or noise."""
    rng = np.random.default_rng(seed)
    tags = rng.integers(0, 3, size=3 * n_sentences)
    x = np.eye(3)[tags] * 4 if informative else rng.normal(size=(len(tags), 3))
    return TaggingData.build(torch.tensor(x, dtype=torch.float16), np.arange(0, 3 * n_sentences + 1, 3),
                             tags.tolist(), CPU)


def test_code_length_is_the_summed_minus_log2_probability_by_hand():
    probe = LinearProbe(3, 3).eval()
    with torch.no_grad():  # scores = x: word (1, 0, 0) → p = (e, 1, 1) / (e + 2)
        probe.classifier.weight.copy_(torch.eye(3))
        probe.classifier.bias.zero_()
    x = torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [0, 0, 1.0]], dtype=torch.float16)
    data = WordData(TaggingData.build(x, np.array([0, 2, 3]), [0, 1, 2], CPU), 256)
    e = math.e
    # gold 0 with p = e/(e+2); gold 1 with p = 1/(e+2); gold 2 with p = e/(e+2)
    expected = -2 * math.log2(e / (e + 2)) - math.log2(1 / (e + 2))
    assert trainer_of().code_length(probe, data, CPU) == pytest.approx(expected, rel=1e-6)


def test_word_batches_cover_every_word_once_per_epoch_and_evaluate_in_order():
    data = WordData(_data(10, True), words_per_batch=4)
    batches = data.plan_epoch(32, np.random.default_rng(0), 5)  # sentences and pools do not apply
    assert [len(b) for b in batches] == [4] * 7 + [2]
    assert sorted(np.concatenate(batches).tolist()) == list(range(30))
    assert [b.tolist() for b in data.eval_batches(256, 12)] == [list(range(12)), list(range(12, 24)),
                                                                list(range(24, 30))]
    sub = data.subset(np.array([4, 1]))
    assert sub.num_words == 6 and sub.sentence_words(np.array([0])) == 3


def _fresh():
    torch.manual_seed(0)
    return LinearProbe(3, 3)


def test_online_code_sends_informative_tags_in_far_fewer_bits_than_noise():
    """The online code as a run measures it (run.online_code: the plan of metrics/description_length.py, a fresh
    probe per block from training/online_code.py, the sum)."""
    trainer = trainer_of(epochs=4, patience=2, lr=0.05, words_per_batch=64)
    good = online_code(trainer, _fresh, WordData(_data(1600, True), 64), 3, seed=1, device=CPU)
    noise = online_code(trainer, _fresh, WordData(_data(1600, False), 64), 3, seed=1, device=CPU)
    for r in (good, noise):
        blocks = r["blocks"]
        assert len(blocks) == 11 and blocks[0]["uniform"] and sum(b["words"] for b in blocks) == 4800
        assert r["uniform_bits"] == pytest.approx(4800 * math.log2(3))
        assert r["online_bits"] == pytest.approx(blocks[0]["bits"] + sum(b["bits"] for b in blocks[1:]))
    assert good["compression"] > 5 > 1.2 > noise["compression"] > 0.8  # noise: about the uniform code, never much less
