"""The BiLSTM probe: shapes, padding that never leaks, packed and padded impls that agree."""

from __future__ import annotations

import pytest
import torch
from run_if import DEVICES

from bert_ner_probe.errors import UserError
from bert_ner_probe.metrics.score import score
from bert_ner_probe.probes.batch import PaddedBatch
from bert_ner_probe.probes.bilstm import BiLSTMProbe
from bert_ner_probe.probes.lstm_kernel import bidirectional_lstm

pytestmark = pytest.mark.usefixtures("one_thread")


def _loss(model, x, lengths, tags):
    return model.loss(PaddedBatch.of(x, lengths, tags))


def _predict(model, x, lengths):
    """Best label per word of each sentence."""
    best = model.decode(PaddedBatch.of(x, lengths))
    return [best[i, : int(n)].tolist() for i, n in enumerate(lengths)]


def _tagger(seed=0, **kw) -> BiLSTMProbe:
    torch.manual_seed(seed)
    args = dict(input_size=8, num_labels=5, hidden_size=12, num_layers=2, dropout=0.3)
    args.update(kw)
    return BiLSTMProbe(**args)


@pytest.mark.parametrize("mix", [None, 2])
def test_tagger_impls_give_the_same_emissions_and_loss(mix):
    torch.manual_seed(0)
    packed = BiLSTMProbe(6, 4, hidden_size=5, num_layers=2, dropout=0.3, mix_layers=mix, impl="packed").eval()
    padded = BiLSTMProbe(6, 4, hidden_size=5, num_layers=2, dropout=0.3, mix_layers=mix, impl="padded").eval()
    padded.load_state_dict(packed.state_dict())  # same parameters, same state dict keys
    lengths = torch.tensor([3, 5, 1])
    x = torch.randn((3, 5, mix, 6) if mix else (3, 5, 6))
    torch.testing.assert_close(padded.emissions(x, lengths), packed.emissions(x, lengths), rtol=1e-5, atol=1e-6)
    tags = torch.full((3, 5), -100, dtype=torch.long)
    for i, n in enumerate(lengths.tolist()):
        tags[i, :n] = torch.arange(n) % 4
    torch.testing.assert_close(_loss(padded, x, lengths, tags), _loss(packed, x, lengths, tags))
    assert _predict(padded, x, lengths) == _predict(packed, x, lengths)
    with pytest.raises(UserError, match="probe.impl='cudnn': expected one of auto"):
        BiLSTMProbe(6, 4, impl="cudnn")


def test_auto_impl_runs_the_padded_path_on_the_cpu(monkeypatch):
    import bert_ner_probe.probes.bilstm as tagger_module

    calls = []

    def counting(lstm, x, lengths):
        calls.append(x.shape)
        return bidirectional_lstm(lstm, x, lengths)

    monkeypatch.setattr(tagger_module, "bidirectional_lstm", counting)
    x, lengths = torch.randn(2, 4, 6), torch.tensor([4, 2])
    BiLSTMProbe(6, 3, hidden_size=5, impl="auto").eval().emissions(x, lengths)
    assert calls == [(2, 4, 6)]
    BiLSTMProbe(6, 3, hidden_size=5, impl="packed").eval().emissions(x, lengths)
    assert len(calls) == 1  # packed does not go through it


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
    loss = _loss(model, x, lengths, tags)
    assert loss.dim() == 0 and torch.isfinite(loss) and float(loss.detach()) > 0
    loss.backward()
    assert model.lstm.weight_ih_l0.grad is not None
    if mix:
        assert model.scalar_mix.weights.grad is not None and model.scalar_mix.gamma.grad is not None
    else:
        assert model.mix is None
    assert (model.crf is not None) == crf
    pred = _predict(model, x, lengths)
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
    assert _predict(model, batch, lengths)[0] == _predict(model, short, torch.tensor([4]))[0]
    # The loss of the batch ignores padding as well: equal to the word-weighted mean of the two alone.
    tags_short, tags_long = torch.tensor([[1, 2, 0, 3]]), torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2, 3]])
    tags = torch.full((2, 9), -100, dtype=torch.long)
    tags[0, :4], tags[1] = tags_short[0], tags_long[0]
    l_batch = _loss(model, batch, lengths, tags)
    l_short = _loss(model, short, torch.tensor([4]), tags_short)
    l_long = _loss(model, long, torch.tensor([9]), tags_long)
    torch.testing.assert_close(l_batch, (4 * l_short + 9 * l_long) / 13, rtol=1e-5, atol=1e-5)


def test_emissions_at_padded_positions_are_zero():
    """``BiLSTMProbe.emissions`` documents "padded positions hold zeros"."""
    model = _tagger().eval()
    scores = model.emissions(torch.randn(2, 6, 8), torch.tensor([6, 2]))
    assert torch.count_nonzero(scores[1, 2:]) == 0


def test_strict_and_conlleval_differ_on_an_entity_starting_with_i():
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    pred = [["I-PER", "I-PER", "O", "B-LOC"]]
    # conlleval reads I-PER I-PER as one PER entity: both entities match.
    assert score(gold, pred, "conlleval")["f1"] == 1.0
    # strict IOB2 does not accept an entity that starts with I-: only LOC matches (P = 1, R = 1/2).
    strict = score(gold, pred, "strict")
    assert strict["precision"] == 1.0 and strict["recall"] == 0.5
    assert strict["f1"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("crf, mix", [(False, None), (True, 2)])
def test_the_auto_impl_on_each_device_gives_the_cpu_packed_taggers_outputs(device, crf, mix):
    """auto = padded (oneDNN) on the CPU, packed (cuDNN) on CUDA; both give torch's packed CPU LSTM's values."""
    torch.manual_seed(0)
    ref = BiLSTMProbe(6, 4, hidden_size=5, num_layers=2, dropout=0.3, crf=crf, mix_layers=mix, impl="packed").eval()
    auto = BiLSTMProbe(6, 4, hidden_size=5, num_layers=2, dropout=0.3, crf=crf, mix_layers=mix).eval()
    auto.load_state_dict(ref.state_dict())
    auto.to(device)
    lengths = torch.tensor([3, 5, 1])
    x = torch.randn((3, 5, mix, 6) if mix else (3, 5, 6))
    tags = torch.full((3, 5), -100, dtype=torch.long)
    for i, n in enumerate(lengths.tolist()):
        tags[i, :n] = torch.arange(n) % 4
    with torch.no_grad():
        got = auto.emissions(x.to(device), lengths).cpu()
        loss = _loss(auto, x.to(device), lengths, tags.to(device)).cpu()
        torch.testing.assert_close(got, ref.emissions(x, lengths), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(loss, _loss(ref, x, lengths, tags), rtol=1e-4, atol=1e-5)
    assert _predict(auto, x.to(device), lengths) == _predict(ref, x, lengths)
