"""TaggingData (bert_ner_probe/training/tagging_data.py): padded and packed batches of features and tags."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bert_ner_probe.data.corpus import IGNORE_INDEX
from bert_ner_probe.probes.batch import Layout, PackedBatch, WordsBatch
from bert_ner_probe.probes.bilstm import BiLSTMProbe
from bert_ner_probe.training.tagging_data import TaggingData
from bert_ner_probe.training.trainer import sentences_of
from training.test_train import trainer_of

pytestmark = pytest.mark.usefixtures("one_thread")


CPU = torch.device("cpu")


def predict(model, data, device, batch_size):
    return sentences_of(trainer_of(eval_batch_size=batch_size).predict(model, data, device), data.lengths)


def _tagger(seed=0, **kw) -> BiLSTMProbe:
    torch.manual_seed(seed)
    args = dict(input_size=8, num_labels=5, hidden_size=12, num_layers=2, dropout=0.3)
    args.update(kw)
    return BiLSTMProbe(**args)


FEATS = torch.tensor([[1, 1], [2, 2], [3, 3], [4, 4], [5, 5], [6, 6]], dtype=torch.float16)


OFFSETS = np.array([0, 2, 5, 6])  # sentences: words 0-1, 2-4, 5


TAGS = [1, 2, 0, 0, 3, 4]


def test_tagging_data_batch_pads_features_and_tags():
    data = TaggingData.build(FEATS, OFFSETS, TAGS, CPU)
    assert data.num_sentences == 3 and data.lengths.tolist() == [2, 3, 1]
    x, lens, tags = data.padded(np.array([2, 0, 1]), CPU)
    assert x.dtype == torch.float32 and x.shape == (3, 3, 2)
    # Padded positions hold zeros (never a real word's features).
    assert x.tolist() == [[[6, 6], [0, 0], [0, 0]],
                          [[1, 1], [2, 2], [0, 0]],
                          [[3, 3], [4, 4], [5, 5]]]
    assert lens.tolist() == [1, 2, 3] and lens.device.type == "cpu"
    assert tags.tolist() == [[4, IGNORE_INDEX, IGNORE_INDEX], [1, 2, IGNORE_INDEX], [0, 0, 3]]


def test_tagging_data_with_layers_dimension():
    feats = torch.arange(6 * 2 * 3, dtype=torch.float16).reshape(6, 2, 3)
    data = TaggingData.build(feats, OFFSETS, TAGS, CPU)
    x, _, _ = data.padded(np.array([0, 2]), CPU)
    assert x.shape == (2, 2, 2, 3)
    assert x[1, 0].tolist() == feats[5].float().tolist() and x[1, 1].abs().sum() == 0


@pytest.mark.parametrize("mix", [None, 3])
def test_packed_batches_give_the_padded_route_s_loss_and_labels(mix):
    """Packed batches give the padded batches' loss and labels (eval mode: no dropout)."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 12, size=9)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    n = int(offsets[-1])
    shape = (n, 3, 8) if mix else (n, 8)
    feats = torch.from_numpy(rng.normal(size=shape)).to(torch.float16)
    tags = rng.integers(0, 5, size=n).tolist()
    data = TaggingData.build(feats, offsets, tags, CPU)
    model = _tagger(seed=2, mix_layers=mix, impl="packed").eval()
    ids = np.array([4, 0, 7, 2, 8, 1])
    seq, packed_tags, rows = data.packed(ids, CPU)
    assert seq.data.shape[0] == packed_tags.shape[0] == rows.shape[0] == int(lengths[ids].sum())
    assert sorted(rows.tolist()) == sorted(r for i in ids for r in range(offsets[i], offsets[i + 1]))
    assert packed_tags.tolist() == [tags[r] for r in rows.tolist()]
    assert seq.batch_sizes.tolist() == [int((lengths[ids] > t).sum()) for t in range(int(lengths[ids].max()))]
    padded = data.batch(ids, Layout.padded, CPU)
    assert padded.lengths.tolist() == sorted(lengths[ids].tolist(), reverse=True)  # longest first
    with torch.no_grad():
        packed = PackedBatch(seq, packed_tags, rows)
        assert torch.allclose(model.loss(packed), model.loss(padded), atol=1e-6)
        by_row = dict(zip(rows.tolist(), model.decode(packed).tolist()))
        flat = torch.full((n + 1,), -1)
        padded.put(flat, model.decode(padded))
    assert all(flat[r] == by_row[r] for r in rows.tolist())
    # predict() takes the packed route for this tagger, the padded one for a padded tagger: same labels.
    padded_model = _tagger(seed=2, mix_layers=mix, impl="padded").eval()
    assert predict(model, data, CPU, batch_size=4) == predict(padded_model, data, CPU, batch_size=4)


def test_words_batches_and_subsets_keep_every_word_and_its_row():
    data = TaggingData.build(FEATS, OFFSETS, TAGS, CPU)
    words = data.batch(np.array([2, 0]), Layout.words, CPU)
    assert isinstance(words, WordsBatch) and words.num_words == 3
    assert words.rows.tolist() == [5, 0, 1] and words.tags.tolist() == [4, 1, 2]
    assert words.x.tolist() == [[6, 6], [1, 1], [2, 2]] and words.x.dtype == torch.float32
    flat = torch.full((7,), -1)
    words.put(flat, torch.tensor([9, 8, 7]))
    assert flat.tolist() == [8, 7, -1, -1, -1, 9, -1]
    sub = data.subset(np.array([1, 2]))
    assert sub.lengths.tolist() == [3, 1] and sub.tags.tolist() == [0, 0, 3, 4]
    assert sub.x.tolist() == [[3, 3], [4, 4], [5, 5], [6, 6]]
    assert data.words_in(np.array([0, 1])) == 5
    assert [b.tolist() for b in data.eval_batches(2, 100)] == [[2, 0], [1]]  # by length


def test_tagging_data_rejects_mismatched_sizes():
    with pytest.raises(ValueError, match="must agree"):
        TaggingData.build(FEATS[:5], OFFSETS, TAGS, CPU)
    with pytest.raises(ValueError, match="must agree"):
        TaggingData.build(FEATS, OFFSETS, TAGS[:5], CPU)


def test_word_batches_read_the_same_values_held_in_memory_or_from_the_cache(tmp_path):
    """A word-wise probe's split held in memory (under trainer.hold_words_mb) or read batch by batch from the cache
    file trains to the same losses: the same float16 values either way; over the limit it is not held."""
    from bert_ner_probe.probes.linear import LinearProbe
    from bert_ner_probe.strategy.combiner import Combiner
    from bert_ner_probe.strategy.read import CachedSelection
    from bert_ner_probe.training.tagging_data import for_layout
    from bert_ner_probe.training.trainer import DevScore

    rng = np.random.default_rng(3)
    states = []
    for h in (0, 2):  # the cache's layout: one file per hidden state, Shape: (words, width)
        np.save(tmp_path / f"split.h{h:02d}.npy", rng.normal(size=(300, 4)).astype(np.float16))
        states.append(np.load(tmp_path / f"split.h{h:02d}.npy", mmap_mode="r"))
    offsets = np.arange(0, 301, 3)
    tags = rng.integers(0, 3, size=300).tolist()
    combiner = Combiner((0, 2), "concat", 4)
    cached = TaggingData(CachedSelection(states, combiner), offsets, torch.as_tensor(tags))
    nbytes = 300 * 8 * 2  # float16, 8 values a word
    held, streamed = (for_layout(cached, Layout.words, 16, hold) for hold in (nbytes, nbytes - 1))
    assert isinstance(held.data.x, torch.Tensor) and isinstance(streamed.data.x, CachedSelection)
    assert for_layout(cached, Layout.padded, 16, nbytes) is cached  # sentence batches read runs: never held
    histories = []
    for data in (held, streamed):
        torch.manual_seed(0)
        model = LinearProbe(8, 3)
        fit = trainer_of(epochs=3, words_per_batch=16).fit(model, data, data, DevScore("x", of_model=lambda m: 0.0),
                                                           CPU)
        histories.append([h["train_loss"] for h in fit.history])
    assert histories[0] == histories[1]
    # an evaluation run of consecutive words held in memory is sliced: the same batch as a gather
    run, scattered = held.batch(np.arange(40, 90), Layout.words, CPU), held.data.words_at(np.arange(40, 90), CPU)
    assert torch.equal(run.x, scattered.x) and torch.equal(run.tags, scattered.tags)
    assert torch.equal(run.rows, scattered.rows)
    assert [len(b) for b in held.eval_batches(256, 8192)] == [300]  # runs of at most min(max_words, EVAL_RUN)
