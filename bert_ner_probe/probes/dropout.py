"""Inverted dropout with a uniform-random mask, for speed on the CPU.

For drop probability ``p`` and ``u ~ U[0, 1)`` drawn per element::

    dropout(x) = x · [u ≥ p] / (1 − p)     (training)
    dropout(x) = x                         (evaluation, or p = 0)

This is what ``F.dropout`` computes; on the CPU its Bernoulli sampler is
slower than ``torch.rand`` and a comparison, by enough to show in a training
step of the BiLSTM probe (measured figures: bench.md). Elsewhere
``F.dropout``'s fused kernel is used.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _check(p: float) -> None:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Drop elements of ``x`` with probability ``p`` and scale the rest by ``1 / (1 - p)``."""
    _check(p)
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, True)
    keep = torch.rand(x.shape, device=x.device) >= p  # Shape: like x
    return x * keep / (1.0 - p)


class Dropout(nn.Module):
    """Module form of :func:`dropout`."""

    def __init__(self, p: float) -> None:
        super().__init__()
        _check(p)
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
