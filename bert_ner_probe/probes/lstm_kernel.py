"""A stacked bidirectional LSTM over padded batches, exact for every sentence length.

``nn.LSTM`` run on a padded batch is wrong for the backward direction: it
reads a short sentence's padding before its last word. Packing
(``pack_padded_sequence``) fixes that, and cuDNN runs packed batches well,
but on the CPU the packed path steps through time one shrinking batch at a
time with many small operations, and cannot use oneDNN's fused LSTM kernel.

:func:`bidirectional_lstm` runs each layer and direction as a one-layer,
one-direction LSTM over the padded batch instead. For a sentence of length
``n`` and positions ``t < n``::

    fwd_t = LSTM_fwd(x_0 .. x_t)                          (padding comes after x_{n-1}: never read)
    rev   = x reversed within each sentence: rev_t = x_{n-1-t}, padding left in place
    bwd_t = LSTM_bwd(rev_0 .. rev_{n-1-t})                = LSTM_bwd(x_{n-1} .. x_t)
    h_t   = [fwd_t ; bwd_t]

so the valid positions equal the packed bidirectional LSTM's, with the same
parameters (those of the given ``nn.LSTM``; its state dict is unchanged).
Between layers, dropout with ``lstm.dropout`` as ``nn.LSTM`` does
(:func:`bert_ner_probe.probes.dropout.dropout`). The point is speed on the
CPU: each call is one fused oneDNN LSTM over the whole padded batch, so a
forward and backward pass of the BiLSTM probe takes less time on this path than
packed, most of all under bf16 autocast on a CPU with bf16 matrix units
(measured figures: bench.md).
"""

from __future__ import annotations

import torch
from torch import nn

from bert_ner_probe.probes.dropout import dropout

_PARAMS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def reverse_index(lengths: torch.Tensor, time: int) -> torch.Tensor:
    """Index that reverses each row within its length and leaves padding in place.

    Args:
        lengths: Shape: (batch,), every value in ``1..time``.
    Returns:
        Shape: (batch, time): ``n - 1 - t`` for ``t < n``, else ``t``. It is its own inverse.
    """
    t = torch.arange(time, device=lengths.device)[None, :]  # Shape: (1, time)
    n = lengths[:, None]  # Shape: (batch, 1)
    return torch.where(t < n, n - 1 - t, t)


def _gather_time(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``out[b, t] = x[b, index[b, t]]`` — Shape: (batch, time, d) → (batch, time, d)."""
    return x.gather(1, index[:, :, None].expand(-1, -1, x.shape[-1]))


def bidirectional_lstm(lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Run a bidirectional, batch-first ``nn.LSTM``'s weights over a padded batch.

    Args:
        lstm: ``nn.LSTM(..., bidirectional=True, batch_first=True)`` without projections.
        x: Shape: (batch, time, input).
        lengths: Shape: (batch,) — words per sentence, each ``1..time``.
    Returns:
        Shape: (batch, time, 2 * hidden); positions past a sentence's length hold no meaning.
    """
    if not (lstm.bidirectional and lstm.batch_first) or lstm.proj_size:
        raise ValueError("bidirectional_lstm needs nn.LSTM(bidirectional=True, batch_first=True, proj_size=0)")
    if x.dim() != 3 or lengths.shape != (x.shape[0],):
        raise ValueError(f"expected x of Shape: (batch, time, input) and lengths (batch,), got "
                         f"{tuple(x.shape)} and {tuple(lengths.shape)}")
    lengths = lengths.to(x.device)
    back = reverse_index(lengths, x.shape[1])  # Shape: (batch, time)
    zeros = x.new_zeros(1, x.shape[0], lstm.hidden_size)  # Shape: (1, batch, hidden)
    h = x
    for layer in range(lstm.num_layers):
        if layer:
            h = dropout(h, lstm.dropout, lstm.training)
        outs = []
        for suffix, reverse in ((f"_l{layer}", False), (f"_l{layer}_reverse", True)):
            params = [getattr(lstm, p + suffix) for p in (_PARAMS if lstm.bias else _PARAMS[:2])]
            inp = _gather_time(h, back) if reverse else h
            out, _, _ = torch.lstm(inp, (zeros, zeros), params, lstm.bias, 1, 0.0, lstm.training, False, True)
            outs.append(_gather_time(out, back) if reverse else out)  # Shape: (batch, time, hidden)
        h = torch.cat(outs, dim=-1)  # Shape: (batch, time, 2 * hidden)
    return h
