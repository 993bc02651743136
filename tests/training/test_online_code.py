"""The online code's probes (training/online_code.py, over the plan of metrics/description_length.py) and the
trainer's code length."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Dict, List

import numpy as np
import pytest
import torch

from bert_ner_probe.probes.linear import LinearProbe
from bert_ner_probe.run import online_code
from bert_ner_probe.training.online_code import OnlineCodeConfig, plan_rounds
from bert_ner_probe.training.tagging_data import TaggingData, WordData
from bert_ner_probe.training.trainer import Trainer
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
    trainer = trainer_of(lr=0.05, words_per_batch=64)
    settings = OnlineCodeConfig(rounds=4, round_steps=10, patience=2, min_steps=0)
    stop_good, stop_noise = WordData(_data(100, True, seed=5), 64), WordData(_data(100, False, seed=5), 64)
    good = online_code(trainer, _fresh, WordData(_data(800, True), 64), stop_good, 3, 1, settings, CPU)
    noise = online_code(trainer, _fresh, WordData(_data(800, False), 64), stop_noise, 3, 1, settings, CPU)
    for r in (good, noise):
        blocks = r["blocks"]
        assert len(blocks) == 11 and blocks[0]["uniform"] and sum(b["words"] for b in blocks) == 2400
        assert r["uniform_bits"] == pytest.approx(2400 * math.log2(3))
        assert r["online_bits"] == pytest.approx(blocks[0]["bits"] + sum(b["bits"] for b in blocks[1:]))
        assert [p["bits"] for p in r["probes"]] == [b["bits"] for b in blocks[1:]]
        assert r["stop_set"] == "dev" and r["settings"] == asdict(settings)
    assert good["compression"] > 5 > 1.2 > noise["compression"] > 0.8  # noise: about the uniform code, never much less


def test_rounds_hold_whole_passes_of_at_least_round_steps():
    """A prefix of 3 words a batch-worth: each round is ⌈10 / 1⌉ = 10 passes; 300 words in batches of 64: 5 batches a
    pass, a round ⌈10 / 5⌉ = 2 passes. Every pass covers every word once."""
    trainer = trainer_of(words_per_batch=64)
    settings = OnlineCodeConfig(rounds=3, round_steps=10)
    small = WordData(_data(1, True), 64)
    rounds = plan_rounds(trainer, small, settings, np.random.default_rng(0))
    assert len(rounds) == 3 and all(len(r) == 10 for r in rounds)
    big = WordData(_data(100, True), 64)
    rounds = plan_rounds(trainer, big, settings, np.random.default_rng(0))
    assert [len(r) for r in rounds] == [10, 10, 10] and [len(b) for b in rounds[0]] == [64, 64, 64, 64, 44] * 2
    assert sorted(np.concatenate(rounds[1][:5]).tolist()) == list(range(300))


# --------------------------------------------------------------------------- the online code's wiring, recorded


@dataclass(frozen=True)
class RecordingTrainer(Trainer):
    """The real Trainer, recording what each ``fit`` and ``code_length`` call got (its copies made by
    ``with_settings`` share the record)."""

    calls: list = field(default_factory=list, compare=False)

    def fit(self, model, train, dev, dev_score, device, epochs=None):
        self.calls.append(("fit", model, {k: v.detach().clone() for k, v in model.state_dict().items()}, train, dev))
        return super().fit(model, train, dev, dev_score, device, epochs)

    def code_length(self, model, data, device):
        self.calls.append(("code", model, data))
        return super().code_length(model, data, device)


def _rows(data) -> List[bytes]:
    """Every word's feature row of a split (WordData or TaggingData), as bytes: what identifies it."""
    x = data.data.x if isinstance(data, WordData) else data.x
    return [r.tobytes() for r in np.asarray(x[torch.arange(x.shape[0])])]


def test_each_block_is_coded_by_a_fresh_probe_trained_on_the_blocks_before_it(tmp_path, conll_dir, tiny_bert_folder):
    """The recording trainer watches a real run's online code (run.train_and_record over real CoNLL-2003 features
    of a tiny random BERT): probe i trains on blocks 0 … i (every sentence of them, none other), starts from the
    fresh initialisation, codes block i + 1 alone, and stops early on the dev split, which holds no sentence of
    the block it codes (nor of the training set)."""
    import time

    from bert_ner_probe.api import compose_config
    from bert_ner_probe.memo import Session
    from bert_ner_probe.metrics.description_length import online_plan
    from bert_ner_probe.probes.registry import build
    from bert_ner_probe.run import feature_inputs, train_and_record

    cfg = compose_config(["probe=linear", "strategy=layer", "strategy.index=2", "mdl=true", "seed=4",
                          f"encoder.name_or_path={tiny_bert_folder}", "encoder.name=tiny-bert",
                          "data.limit.train=760", "data.limit.dev=40", "data.limit.test=20", f"data.dir={conll_dir}",
                          f"cache_dir={tmp_path / 'cache'}", "progress=false", "threads=1", "trainer.epochs=1",
                          "trainer.precision=fp32", "online_code.rounds=2", "online_code.round_steps=2",
                          "online_code.patience=1", "online_code.min_steps=0"])
    inputs = feature_inputs(cfg, CPU, Session())
    recorder = RecordingTrainer(Trainer.from_config(cfg).config, seed=4)
    result = train_and_record(cfg, tmp_path / "run", inputs, recorder, CPU, "fp32", time.perf_counter())

    train, dev = inputs.data["train"], inputs.data["dev"]
    sentence_of: Dict[bytes, set] = {}
    for row, s in zip(_rows(train), np.repeat(np.arange(train.num_sentences), train.data.lengths)):
        sentence_of.setdefault(row, set()).add(int(s))
    dev_rows = set(_rows(dev))
    torch.manual_seed(cfg.seed)
    fresh = build(cfg.probe, inputs.probe_inputs).state_dict()
    blocks, _ = online_plan(train.num_sentences, cfg.seed)
    assert len(blocks) == 11 and len(result.mdl["probes"]) == 10

    fits = [i for i, c in enumerate(recorder.calls) if c[0] == "fit"][1:]  # the first fit is the run's own probe
    assert len(fits) == 10
    ends = fits[1:] + [len(recorder.calls)]
    models = set()
    for k, (start, end) in enumerate(zip(fits, ends)):
        _, model, state, fit_data, stop = recorder.calls[start]
        prefix = {int(s) for b in blocks[:k + 1] for s in b}
        block = {int(s) for s in blocks[k + 1]}
        trained_on = [sentence_of.get(r, set()) for r in _rows(fit_data)]
        # trains on blocks 0 … k: every row is one of theirs, and every one of their words is there
        assert all(ids & prefix for ids in trained_on), f"probe {k + 1} trains on a sentence after its prefix"
        assert len(trained_on) == sum(int(train.data.lengths[s]) for s in prefix)
        # a fresh initialisation: the run's seed's, in a model no earlier block trained
        assert id(model) not in models and all(torch.equal(state[n], fresh[n]) for n in fresh)
        models.add(id(model))
        # stops early on the dev split: none of its rows is a training row, so none is the coded block's
        assert set(_rows(stop)) == dev_rows and not dev_rows & set(sentence_of)
        # codes its own block alone, once, with the model it trained
        coded = [c for c in recorder.calls[start + 1:end] if c[0] == "code" and c[2] is not stop]
        assert len(coded) == 1 and coded[0][1] is model
        coded_rows = _rows(coded[0][2])
        assert all(sentence_of.get(r, set()) & block for r in coded_rows)
        assert len(coded_rows) == sum(int(train.data.lengths[s]) for s in block)
