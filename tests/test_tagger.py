"""The BiLSTM probe, batching, training with early stopping, and entity-level metrics."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from bert_ner_probe.errors import UserError

from bert_ner_probe.metrics.score import f1, score, write_conll
from bert_ner_probe.tagger.bilstm_tagger import BiLSTMTagger
from bert_ner_probe.features.batching import bucketed_batches
from bert_ner_probe.training.tagging_data import TaggingData
from bert_ner_probe.training.train import predict, train
from run_if import run_if

pytestmark = pytest.mark.usefixtures("one_thread")

CPU = torch.device("cpu")

# ---------------------------------------------------------------- BiLSTMTagger


def _tagger(seed=0, **kw) -> BiLSTMTagger:
    torch.manual_seed(seed)
    args = dict(input_size=8, num_labels=5, hidden_size=12, num_layers=2, dropout=0.3)
    args.update(kw)
    return BiLSTMTagger(**args)


@pytest.mark.parametrize("crf", [False, True])
@pytest.mark.parametrize("mix", [None, 3])
def test_output_shapes(crf, mix):
    model = _tagger(crf=crf, mix_layers=mix).eval()
    lengths = torch.tensor([4, 7, 1])
    shape = (3, 7, 3, 8) if mix else (3, 7, 8)
    x = torch.randn(shape)
    assert model.emissions(x, lengths).shape == (3, 7, 5)
    tags = torch.full((3, 7), -100, dtype=torch.long)
    for i, n in enumerate(lengths.tolist()):
        tags[i, :n] = torch.arange(n) % 5
    model.train()
    loss = model.loss(x, lengths, tags)
    assert loss.dim() == 0 and torch.isfinite(loss) and float(loss.detach()) > 0
    loss.backward()
    assert model.lstm.weight_ih_l0.grad is not None
    if mix:
        assert model.mix.weights.grad is not None and model.mix.gamma.grad is not None
    else:
        assert model.mix is None
    assert (model.crf is not None) == crf
    pred = model.predict(x, lengths)
    assert [len(p) for p in pred] == [4, 7, 1]
    assert all(0 <= t < 5 for p in pred for t in p)


@pytest.mark.parametrize("crf", [False, True])
@pytest.mark.parametrize("mix", [None, 2])
def test_padding_does_not_change_real_positions(crf, mix):
    model = _tagger(seed=1, crf=crf, mix_layers=mix).eval()
    g = torch.Generator().manual_seed(0)
    extra = (mix,) if mix else ()
    short = torch.randn((1, 4) + extra + (8,), generator=g)
    long = torch.randn((1, 9) + extra + (8,), generator=g)
    batch = torch.randn((2, 9) + extra + (8,), generator=g) * 100  # garbage at padded positions
    batch[0, :4] = short[0]
    batch[1] = long[0]
    lengths = torch.tensor([4, 9])
    alone = model.emissions(short, torch.tensor([4]))
    together = model.emissions(batch, lengths)
    torch.testing.assert_close(together[0, :4], alone[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(together[1], model.emissions(long, torch.tensor([9]))[0], rtol=1e-5, atol=1e-5)
    assert model.predict(batch, lengths)[0] == model.predict(short, torch.tensor([4]))[0]
    # The loss of the batch ignores padding as well: equal to the word-weighted mean of the two alone.
    tags_short, tags_long = torch.tensor([[1, 2, 0, 3]]), torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2, 3]])
    tags = torch.full((2, 9), -100, dtype=torch.long)
    tags[0, :4], tags[1] = tags_short[0], tags_long[0]
    l_batch = model.loss(batch, lengths, tags)
    l_short = model.loss(short, torch.tensor([4]), tags_short)
    l_long = model.loss(long, torch.tensor([9]), tags_long)
    torch.testing.assert_close(l_batch, (4 * l_short + 9 * l_long) / 13, rtol=1e-5, atol=1e-5)


def test_emissions_at_padded_positions_are_zero():
    """``BiLSTMTagger.emissions`` documents "padded positions hold zeros"."""
    model = _tagger().eval()
    scores = model.emissions(torch.randn(2, 6, 8), torch.tensor([6, 2]))
    assert torch.count_nonzero(scores[1, 2:]) == 0


# ---------------------------------------------------------------- TaggingData and batching

FEATS = torch.tensor([[1, 1], [2, 2], [3, 3], [4, 4], [5, 5], [6, 6]], dtype=torch.float16)
OFFSETS = np.array([0, 2, 5, 6])  # sentences: words 0-1, 2-4, 5
TAGS = [1, 2, 0, 0, 3, 4]


def test_tagging_data_batch_pads_features_and_tags():
    data = TaggingData.build(FEATS, OFFSETS, TAGS, CPU)
    assert data.num_sentences == 3 and data.lengths.tolist() == [2, 3, 1]
    x, lens, tags = data.batch(np.array([2, 0, 1]), CPU)
    assert x.dtype == torch.float32 and x.shape == (3, 3, 2)
    # Padded positions hold zeros (never a real word's features).
    assert x.tolist() == [[[6, 6], [0, 0], [0, 0]],
                          [[1, 1], [2, 2], [0, 0]],
                          [[3, 3], [4, 4], [5, 5]]]
    assert lens.tolist() == [1, 2, 3] and lens.device.type == "cpu"
    assert tags.tolist() == [[4, -100, -100], [1, 2, -100], [0, 0, 3]]


def test_tagging_data_with_layers_dimension():
    feats = torch.arange(6 * 2 * 3, dtype=torch.float16).reshape(6, 2, 3)
    data = TaggingData.build(feats, OFFSETS, TAGS, CPU)
    x, _, _ = data.batch(np.array([0, 2]), CPU)
    assert x.shape == (2, 2, 2, 3)
    assert x[1, 0].tolist() == feats[5].float().tolist() and x[1, 1].abs().sum() == 0


@pytest.mark.parametrize("mix", [None, 3])
def test_packed_batches_give_the_padded_route_s_loss_and_labels(mix):
    """TaggingData.packed + packed_loss/packed_scores == batch + loss/decode (eval mode: no dropout)."""
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
    x, lens, padded_tags = data.batch(ids, CPU)
    with torch.no_grad():
        assert torch.allclose(model.packed_loss(seq, packed_tags), model.loss(x, lens, padded_tags), atol=1e-6)
        by_row = dict(zip(rows.tolist(), model.packed_scores(seq).argmax(-1).tolist()))
    padded_pred = model.predict(x, lens)
    assert [[by_row[r] for r in range(offsets[i], offsets[i + 1])] for i in ids] == padded_pred
    # predict() takes the packed route for this tagger, the padded one for a padded tagger: same labels.
    padded_model = _tagger(seed=2, mix_layers=mix, impl="padded").eval()
    assert predict(model, data, CPU, batch_size=4) == predict(padded_model, data, CPU, batch_size=4)


def test_tagging_data_rejects_mismatched_sizes():
    with pytest.raises(ValueError, match="must agree"):
        TaggingData.build(FEATS[:5], OFFSETS, TAGS, CPU)
    with pytest.raises(ValueError, match="must agree"):
        TaggingData.build(FEATS, OFFSETS, TAGS[:5], CPU)


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


# ---------------------------------------------------------------- training

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def _synthetic_split(n_sentences: int, seed: int, k_layers: int = 0):
    """Random IOB2 tag sequences; each word's features are its label's one-hot plus noise."""
    rng = np.random.default_rng(seed)
    tag_ids, offsets = [], [0]
    for _ in range(n_sentences):
        n = int(rng.integers(2, 10))
        sent, prev = [], 0
        for _ in range(n):
            choice = int(rng.integers(0, 5))
            if choice in (2, 4) and prev not in (choice - 1, choice):  # keep IOB2 valid
                choice -= 1
            sent.append(choice)
            prev = choice
        tag_ids += sent
        offsets.append(offsets[-1] + n)
    onehot = np.eye(5)[tag_ids]
    noise = rng.normal(0, 0.3, size=(len(tag_ids), 3))
    feats = np.concatenate([onehot + rng.normal(0, 0.1, size=onehot.shape), noise], axis=1)  # (words, 8)
    if k_layers:  # layer 0 is pure noise, the last layer carries the label
        layers = [rng.normal(0, 1, size=feats.shape) for _ in range(k_layers - 1)] + [feats]
        feats = np.stack(layers, axis=1)
    return torch.tensor(feats, dtype=torch.float16), np.asarray(offsets), tag_ids


def _gold(offsets, tag_ids):
    return [[LABELS[t] for t in tag_ids[offsets[i]:offsets[i + 1]]] for i in range(len(offsets) - 1)]


def _fit(seed: int, crf: bool = False, k_layers: int = 0, epochs: int = 8, patience: int = 3,
         precision: str = "fp32", impl: str = "auto", dropout: float = 0.1, **trainer):
    tr_x, tr_off, tr_tags = _synthetic_split(240, seed=10, k_layers=k_layers)
    dv_x, dv_off, dv_tags = _synthetic_split(60, seed=11, k_layers=k_layers)
    train_data = TaggingData.build(tr_x, tr_off, tr_tags, CPU)
    dev_data = TaggingData.build(dv_x, dv_off, dv_tags, CPU)
    gold = _gold(dv_off, dv_tags)
    torch.manual_seed(seed)
    model = BiLSTMTagger(8, len(LABELS), hidden_size=16, num_layers=1, dropout=dropout, crf=crf,
                         mix_layers=k_layers or None, impl=impl)
    snapshots = []

    def dev_f1(pred_ids):
        snapshots.append(copy.deepcopy(model.state_dict()))  # the weights that produced this score
        return score(gold, [[LABELS[i] for i in p] for p in pred_ids])["f1"]

    result = train(model, train_data, dev_data, dev_f1, CPU, epochs=epochs, batch_size=16, lr=1e-2,
                   patience=patience, seed=seed, progress=False, precision=precision, **trainer)
    return model, result, snapshots, dev_data, gold


def _same_state(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_train_learns_and_restores_the_best_epoch():
    model, result, snapshots, dev_data, gold = _fit(seed=3)
    f1s = [h["dev_f1"] for h in result.history]
    assert len(f1s) == result.epochs_run == len(snapshots)
    assert result.best_dev_f1 == max(f1s) >= 0.95
    assert result.best_epoch == 1 + f1s.index(max(f1s))  # the first epoch reaching the best score
    # Training went on past the best epoch (a later epoch cannot beat F1 = 1.0, or stopped improving)…
    assert result.epochs_run > result.best_epoch
    assert result.epochs_run <= result.best_epoch + 3  # …and stopped after `patience` epochs
    # …and the best epoch's weights were put back, not the last epoch's.
    assert _same_state(model.state_dict(), snapshots[result.best_epoch - 1])
    assert not _same_state(model.state_dict(), snapshots[-1])
    pred = predict(model, dev_data, CPU)
    assert f1(gold, [[LABELS[i] for i in p] for p in pred]) == result.best_dev_f1
    assert all(h["train_loss"] > 0 and h["epoch_s"] > 0 for h in result.history)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_predict_does_not_depend_on_how_sentences_are_batched():
    model, _, _, dev_data, _ = _fit(seed=3, epochs=2)
    one_batch = predict(model, dev_data, CPU, batch_size=10**6, max_words=10**9)
    assert len(one_batch) == dev_data.num_sentences
    assert [len(p) for p in one_batch] == list(dev_data.lengths)
    assert predict(model, dev_data, CPU, batch_size=7, max_words=30) == one_batch  # many small batches


def test_same_seed_gives_identical_results():
    runs = [_fit(seed=5, crf=True, k_layers=2, epochs=6, patience=6) for _ in range(2)]
    (m1, r1, *_), (m2, r2, *_) = runs
    strip = [{k: v for k, v in h.items() if k in ("epoch", "train_loss", "dev_f1")} for h in r1.history]
    assert strip == [{k: v for k, v in h.items() if k in ("epoch", "train_loss", "dev_f1")} for h in r2.history]
    assert r1.best_epoch == r2.best_epoch and r1.best_dev_f1 == r2.best_dev_f1 >= 0.9
    assert _same_state(m1.state_dict(), m2.state_dict())
    # The scalar mix learned to prefer the layer that carries the label.
    w = m1.mix.normalized_weights()
    assert w[1] > w[0]


@pytest.mark.parametrize("k_layers", [0, 2])
def test_training_on_packed_batches_learns(k_layers):
    """impl=packed (a GPU's route: batches gathered straight into packed order) learns like the padded one."""
    model, result, _, dev_data, gold = _fit(seed=3, epochs=6, k_layers=k_layers, impl="packed")
    assert result.best_dev_f1 >= 0.95
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    pred = predict(model, dev_data, CPU)
    assert f1(gold, [[LABELS[i] for i in p] for p in pred]) == result.best_dev_f1


@pytest.mark.parametrize("crf", [False, True])
def test_gradient_accumulation_takes_the_same_steps(crf):
    """Without dropout, K micro-batches per batch give the weights of whole batches (one step per batch)."""
    whole, *_ = _fit(seed=3, crf=crf, epochs=2, patience=2, dropout=0.0)
    parts, *_ = _fit(seed=3, crf=crf, epochs=2, patience=2, dropout=0.0, grad_accum=3)
    for k, v in whole.state_dict().items():
        torch.testing.assert_close(parts.state_dict()[k], v, rtol=1e-4, atol=1e-5)


def test_adamw_with_warm_up_and_linear_decay_learns():
    model, result, *_ = _fit(seed=3, epochs=4, patience=4, optimizer="adamw", weight_decay=0.01,
                             schedule="linear", warmup_ratio=0.1)
    assert result.best_dev_f1 >= 0.6 and result.history[-1]["train_loss"] < result.history[0]["train_loss"]


@run_if(bf16_cpu=True)
def test_bf16_training_learns_too():
    model, result, _, dev_data, gold = _fit(seed=3, epochs=4, precision="bf16")
    assert result.best_dev_f1 >= 0.95
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast: weights stay float32
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


# ---------------------------------------------------------------- metrics


def test_score_by_hand():
    s = score([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "O"]])
    assert s["precision"] == 1.0 and s["recall"] == 0.5
    assert s["f1"] == pytest.approx(2 / 3)
    assert s["support"] == 2
    assert s["per_type"] == {"LOC": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1},
                             "PER": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}}


def test_score_partial_span_and_extra_entity():
    # Gold: PER(0-1), LOC(3-4), ORG(5). Pred: PER(0-1) ✓, LOC(3) ✗ (wrong span), ORG(5) ✓, MISC(6) ✗.
    gold = [["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-LOC", "O", "B-ORG", "B-MISC"]]
    s = score(gold, pred)
    assert s["precision"] == pytest.approx(2 / 4) and s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))  # 4/7


def test_strict_and_conlleval_differ_on_an_entity_starting_with_i():
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    pred = [["I-PER", "I-PER", "O", "B-LOC"]]
    # conlleval reads I-PER I-PER as one PER entity: both entities match.
    assert score(gold, pred, "conlleval")["f1"] == 1.0
    # strict IOB2 does not accept an entity that starts with I-: only LOC matches (P = 1, R = 1/2).
    strict = score(gold, pred, "strict")
    assert strict["precision"] == 1.0 and strict["recall"] == 0.5
    assert strict["f1"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("seed", range(5))
def test_score_equals_seqeval_classification_report(seed):
    """conlleval mode reads the entities once; every number must be the report's (malformed tags included)."""
    from seqeval.metrics import classification_report, f1_score

    rng = np.random.default_rng(seed)
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]
    gold = [[tags[i] for i in rng.integers(0, len(tags), rng.integers(1, 30))] for _ in range(200)]
    pred = [[t if rng.random() < 0.7 else tags[rng.integers(0, len(tags))] for t in g] for g in gold]
    if seed == 0:  # a type only predicted, one only in gold
        gold[0][0], pred[1][0] = "B-ONLYGOLD", "B-ONLYPRED"
    ours = score(gold, pred)
    report = classification_report(gold, pred, output_dict=True, zero_division=0)
    micro = report["micro avg"]
    assert ours["precision"] == pytest.approx(micro["precision"], abs=1e-12)
    assert ours["recall"] == pytest.approx(micro["recall"], abs=1e-12)
    assert ours["f1"] == pytest.approx(micro["f1-score"], abs=1e-12)
    assert ours["support"] == micro["support"]
    assert set(ours["per_type"]) == {k for k in report if not k.endswith(" avg")}
    for name, v in ours["per_type"].items():
        assert v == pytest.approx({"precision": report[name]["precision"], "recall": report[name]["recall"],
                                   "f1": report[name]["f1-score"], "support": report[name]["support"]}, abs=1e-12)
    assert ours["f1"] == pytest.approx(f1(gold, pred), abs=1e-12)
    assert f1(gold, pred) == pytest.approx(f1_score(gold, pred, zero_division=0), abs=1e-12)  # seqeval's own


def test_score_rejects_bad_input():
    with pytest.raises(UserError, match="eval.mode='exact': expected one of conlleval"):
        score([["O"]], [["O"]], mode="exact")
    with pytest.raises(ValueError, match="differ in length"):
        score([["O", "O"]], [["O"]])
    with pytest.raises(ValueError, match="differ in length"):
        score([["O"], ["O"]], [["O"]])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # seqeval averages over zero entity types
def test_score_without_entities_is_zero():
    assert score([["O", "O"]], [["O", "O"]])["f1"] == 0.0


def test_write_conll_format(tmp_path):
    path = tmp_path / "dev.conll"
    write_conll(path, [["EU", "rejects"], ["Peter"]], [["B-ORG", "O"], ["B-PER"]], [["B-ORG", "O"], ["B-LOC"]])
    assert path.read_text(encoding="utf-8") == "EU B-ORG B-ORG\nrejects O O\n\nPeter B-PER B-LOC\n\n"
