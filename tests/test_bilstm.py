"""The padded BiLSTM path against the packed one, the fast dropout, and the training precision."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from bert_ner_probe.tagger.bilstm import bidirectional_lstm, reverse_index
from bert_ner_probe.tagger.dropout import Dropout, dropout
from bert_ner_probe.device import autocast, native_bf16, training_precision
from bert_ner_probe.errors import UserError
from bert_ner_probe.tagger.bilstm_tagger import BiLSTMTagger
from run_if import run_if

pytestmark = pytest.mark.usefixtures("one_thread")

CPU = torch.device("cpu")


def test_reverse_index_by_hand():
    idx = reverse_index(torch.tensor([3, 1, 4]), 4)
    assert idx.tolist() == [[2, 1, 0, 3], [0, 1, 2, 3], [3, 2, 1, 0]]
    # Its own inverse: reversing twice gives the identity.
    assert torch.equal(idx.gather(1, idx), torch.arange(4).expand(3, 4))


def _packed(lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    out, _ = lstm(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
    return pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]


@pytest.mark.parametrize("num_layers, bias", [(1, True), (2, True), (3, False)])
def test_padded_path_equals_packed_lstm(num_layers, bias):
    torch.manual_seed(0)
    lstm = nn.LSTM(5, 7, num_layers=num_layers, bias=bias, bidirectional=True, batch_first=True).eval()
    lengths = torch.tensor([6, 1, 4, 6, 2])
    x = torch.randn(5, 6, 5)
    x[torch.arange(6)[None, :] >= lengths[:, None]] = 100.0  # loud padding: must not leak into real positions
    valid = torch.arange(6)[None, :] < lengths[:, None]
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    a, b = _packed(lstm, x1, lengths), bidirectional_lstm(lstm, x2, lengths)
    assert b.shape == (5, 6, 14)
    torch.testing.assert_close(b[valid], a[valid], rtol=1e-5, atol=1e-6)
    # Gradients through the real positions agree too, for the inputs and every weight.
    w = torch.randn(int(valid.sum()), 14)
    params = list(lstm.parameters())
    grads_a = torch.autograd.grad((a[valid] * w).sum(), [x1] + params)
    grads_b = torch.autograd.grad((b[valid] * w).sum(), [x2] + params)
    torch.testing.assert_close(grads_b[0][valid], grads_a[0][valid], rtol=1e-5, atol=1e-6)
    assert torch.all(grads_b[0][~valid] == 0)  # padding gets no gradient
    for ga, gb in zip(grads_a[1:], grads_b[1:]):
        torch.testing.assert_close(gb, ga, rtol=1e-4, atol=1e-5)


def test_padded_path_applies_dropout_between_layers_only_in_training():
    torch.manual_seed(0)
    lstm = nn.LSTM(4, 3, num_layers=2, dropout=0.5, bidirectional=True, batch_first=True)
    x, lengths = torch.randn(2, 5, 4), torch.tensor([5, 3])
    lstm.eval()
    assert torch.equal(bidirectional_lstm(lstm, x, lengths), bidirectional_lstm(lstm, x, lengths))
    lstm.train()
    torch.manual_seed(1)
    first = bidirectional_lstm(lstm, x, lengths)
    torch.manual_seed(2)
    assert not torch.allclose(first, bidirectional_lstm(lstm, x, lengths))
    # One layer: nothing lies between layers, so training draws no dropout mask at all.
    single = nn.LSTM(4, 3, num_layers=1, bidirectional=True, batch_first=True)
    single.dropout = 0.5  # nn.LSTM warns when a one-layer LSTM is given dropout; set it afterwards
    single.train()
    trained = bidirectional_lstm(single, x, lengths)
    single.eval()
    assert torch.equal(trained, bidirectional_lstm(single, x, lengths))


def test_padded_path_rejects_what_it_cannot_run():
    with pytest.raises(ValueError, match="bidirectional"):
        bidirectional_lstm(nn.LSTM(4, 3, batch_first=True), torch.randn(2, 5, 4), torch.tensor([5, 3]))
    lstm = nn.LSTM(4, 3, bidirectional=True, batch_first=True)
    with pytest.raises(ValueError, match="Shape"):
        bidirectional_lstm(lstm, torch.randn(2, 5, 4), torch.tensor([5, 3, 1]))


@pytest.mark.parametrize("mix", [None, 2])
def test_tagger_impls_give_the_same_emissions_and_loss(mix):
    torch.manual_seed(0)
    packed = BiLSTMTagger(6, 4, hidden_size=5, num_layers=2, dropout=0.3, mix_layers=mix, impl="packed").eval()
    padded = BiLSTMTagger(6, 4, hidden_size=5, num_layers=2, dropout=0.3, mix_layers=mix, impl="padded").eval()
    padded.load_state_dict(packed.state_dict())  # same parameters, same state dict keys
    lengths = torch.tensor([3, 5, 1])
    x = torch.randn((3, 5, mix, 6) if mix else (3, 5, 6))
    torch.testing.assert_close(padded.emissions(x, lengths), packed.emissions(x, lengths), rtol=1e-5, atol=1e-6)
    tags = torch.full((3, 5), -100, dtype=torch.long)
    for i, n in enumerate(lengths.tolist()):
        tags[i, :n] = torch.arange(n) % 4
    torch.testing.assert_close(padded.loss(x, lengths, tags), packed.loss(x, lengths, tags))
    assert padded.predict(x, lengths) == packed.predict(x, lengths)
    with pytest.raises(UserError, match="tagger.impl='cudnn': expected one of auto"):
        BiLSTMTagger(6, 4, impl="cudnn")


def test_auto_impl_runs_the_padded_path_on_the_cpu(monkeypatch):
    import bert_ner_probe.tagger.bilstm_tagger as tagger_module

    calls = []

    def counting(lstm, x, lengths):
        calls.append(x.shape)
        return bidirectional_lstm(lstm, x, lengths)

    monkeypatch.setattr(tagger_module, "bidirectional_lstm", counting)
    x, lengths = torch.randn(2, 4, 6), torch.tensor([4, 2])
    BiLSTMTagger(6, 3, hidden_size=5, impl="auto").eval().emissions(x, lengths)
    assert calls == [(2, 4, 6)]
    BiLSTMTagger(6, 3, hidden_size=5, impl="packed").eval().emissions(x, lengths)
    assert len(calls) == 1  # packed does not go through it


# ---------------------------------------------------------------- dropout


def test_dropout_keeps_or_zeroes_and_rescales():
    x = torch.full((200, 500), 3.0, requires_grad=True)
    torch.manual_seed(0)
    y = dropout(x, 0.25, training=True)
    kept = y != 0
    assert torch.all(y[kept] == 4.0)  # 3 / (1 - 0.25)
    assert abs(1 - kept.float().mean().item() - 0.25) < 0.01  # 100,000 draws: about 0.003 standard error
    y.sum().backward()
    assert torch.equal(x.grad, kept.float() * 4 / 3)


def test_dropout_is_the_identity_in_evaluation_and_at_zero():
    x = torch.randn(4, 5)
    assert dropout(x, 0.5, training=False) is x
    assert dropout(x, 0.0, training=True) is x
    module = Dropout(0.5).eval()
    assert module(x) is x and "p=0.5" in repr(module)
    for p in (-0.1, 1.0):
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            dropout(x, p, training=True)
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            Dropout(p)


# ---------------------------------------------------------------- precision


def test_training_precision_of_the_probe(monkeypatch):
    import bert_ner_probe.device as dev

    assert training_precision("fp32", CPU) == "fp32"
    assert training_precision("auto", CPU) == ("bf16" if native_bf16(CPU) else "fp32")
    monkeypatch.setattr(dev, "native_bf16", lambda device: True)  # a CPU with AMX or AVX512-BF16
    assert training_precision("bf16", CPU) == "bf16" and training_precision("auto", CPU) == "bf16"
    monkeypatch.setattr(dev, "native_bf16", lambda device: False)  # an older CPU: no bf16 LSTM in oneDNN
    assert training_precision("auto", CPU) == "fp32"
    with pytest.raises(UserError, match="bf16 needs a CPU with bf16 units"):
        training_precision("bf16", CPU)
    monkeypatch.undo()
    with pytest.raises(UserError, match="fp16 is for fine-tuning"):
        training_precision("fp16", CPU)
    with pytest.raises(UserError, match="float16"):  # autocast would run cuDNN's LSTM in float16
        training_precision("bf16", torch.device("cuda"))


@run_if(bf16_cpu=True)
@pytest.mark.parametrize("crf, mix", [(False, None), (True, None), (False, 3), (True, 3)])
def test_bf16_autocast_forward_gives_float32_emissions_close_to_fp32(crf, mix):
    torch.manual_seed(0)
    model = BiLSTMTagger(6, 4, hidden_size=8, num_layers=2, dropout=0.0, crf=crf, mix_layers=mix).eval()
    x, lengths = torch.randn((3, 5, mix, 6) if mix else (3, 5, 6)), torch.tensor([5, 2, 4])
    ref = model.emissions(x, lengths)
    with autocast(CPU, "bf16"):
        low = model.emissions(x, lengths)
    assert low.dtype == torch.float32
    assert not torch.equal(low, ref)  # it did run in bf16 ...
    torch.testing.assert_close(low, ref, rtol=0.05, atol=0.02)  # ... to bf16's precision (8 bits)
    with autocast(CPU, "fp32"):
        assert torch.equal(model.emissions(x, lengths), ref)
    # Loss, gradients and decoding run under bf16 too, with float32 gradients.
    tags = torch.full((3, 5), -100, dtype=torch.long)
    for i, n in enumerate(lengths.tolist()):
        tags[i, :n] = torch.arange(n) % 4
    model.train()
    with autocast(CPU, "bf16"):
        loss = model.loss(x, lengths, tags)
        pred = model.predict(x, lengths)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in model.parameters())
    assert [len(p) for p in pred] == [5, 2, 4]
