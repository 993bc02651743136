"""Inverted dropout with a cheaper random mask, for speed on the CPU.

Dropout (Srivastava et al., 2014) as ``nn.Dropout`` computes it, for drop
probability ``p``::

    dropout(x)_i = x_i · m_i / (1 − p),   m_i ~ Bernoulli(1 − p)   (training)
    dropout(x)   = x                                            (evaluation, or p = 0)

here with ``m_i = [u_i ≥ k]``, ``u_i`` uniform on the integers ``[0, 2¹⁵)`` and
``k = round(p · 2¹⁵)``: the same distribution with ``p`` rounded to a multiple
of 2⁻¹⁵ (0.5 stays 0.5; 0.1 becomes 0.100006).

Why not ``F.dropout``: on the CPU it draws its mask with ``bernoulli_``, and
even ``torch.rand`` spends one draw of torch's (sequential) Mersenne Twister
per element, which shows in a training step of the BiLSTM probe and more in
fine-tuning BERT, which drops every attention probability and every hidden
state of every layer (the steps' profiles: bench.md). :func:`keep_mask` takes
two ``u_i`` from each 31-bit draw of ``random_()`` on int32 (its low and high
16-bit halves, the top bit of each dropped): half the draws. Off the CPU
``F.dropout``'s fused kernel is used.

The probes use :class:`Dropout`; the fine-tuned encoder gets it in place of
its own (:mod:`bert_ner_probe.probes.encoder_dropout`).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

MASK_BITS = 15  # the resolution of u_i: two of them per 31-bit draw


def _checked(p: float) -> float:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    return float(p)


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """Bernoulli(1 − p) draws as ``[u ≥ round(p · 2¹⁵)]``, ``u`` uniform on ``[0, 2¹⁵)``, two per 31-bit draw.

    ``random_()`` fills int32 uniformly on ``[0, 2³¹)``; viewed as int16 each element is two halves, the
    low one uniform on 16 bits, the high one on 15; ``& 0x7FFF`` keeps 15 bits of both (in either byte order).
    Shape: ``shape``, bool.
    """
    return _keep(shape, _checked(p), device)


def _keep(shape: torch.Size | tuple[int, ...], p: float, device: torch.device | str) -> torch.Tensor:
    """:func:`keep_mask` for a ``p`` already checked (a training step checks it once)."""
    threshold = round(p * 2 ** MASK_BITS)
    n = math.prod(shape)
    words = torch.empty((n + 1) // 2, dtype=torch.int32, device=device).random_()  # Shape: (⌈n/2⌉,)
    u = words.view(torch.int16)[:n].bitwise_and(2 ** MASK_BITS - 1)  # Shape: (n,), uniform on [0, 2¹⁵)
    return (u >= threshold).view(shape)


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Zero each element of ``x`` with probability ``p`` and scale the rest by ``1 / (1 − p)``. Shape: as ``x``."""
    _checked(p)
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, True)
    return x * _keep(x.shape, p, x.device) / (1.0 - p)


class Dropout(nn.Module):
    """Module form of :func:`dropout` (``nn.Dropout(p)``'s interface)."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = _checked(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
