"""The padded BiLSTM path (bert_ner_probe.probes/bilstm.py) against torch's packed LSTM, values and gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from bert_ner_probe.probes.lstm_kernel import bidirectional_lstm, reverse_index

pytestmark = pytest.mark.usefixtures("one_thread")


def _packed(lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    out, _ = lstm(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
    return pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]


def test_reverse_index_by_hand():
    idx = reverse_index(torch.tensor([3, 1, 4]), 4)
    assert idx.tolist() == [[2, 1, 0, 3], [0, 1, 2, 3], [3, 2, 1, 0]]
    # Its own inverse: reversing twice gives the identity.
    assert torch.equal(idx.gather(1, idx), torch.arange(4).expand(3, 4))


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
