"""Sub-word pooling: one vector per word and layer from its sub-token vectors.

For a word whose sub-tokens occupy positions ``f .. l`` of a window, with
hidden states ``h[t]`` (every layer at once):

* ``first``      — ``h[f]`` (the paper's choice)
* ``last``       — ``h[l]``
* ``first_last`` — ``[h[f]; h[l]]`` (concatenated, so twice the width)
* ``mean``       — ``(h[f] + … + h[l]) / (l - f + 1)``
* ``auto``       — ``last`` for a causal encoder (its first sub-token has not
  yet seen the rest of its word; the last one has seen the whole word), else
  ``first`` (:meth:`Pooling.resolved`; runs record what it resolved to).
"""

from __future__ import annotations

import torch

from bert_ner_probe.choice import Choice


class Pooling(Choice):
    """``pooling.method``."""

    first = "first"
    last = "last"
    first_last = "first_last"
    mean = "mean"
    auto = "auto"  # last for a causal encoder, else first

    def resolved(self, causal: bool) -> "Pooling":
        """The method ``auto`` stands for: ``last`` for a causal encoder, else ``first``; any other is itself."""
        if self != Pooling.auto:
            return self
        return Pooling.last if causal else Pooling.first

    @classmethod
    def for_encoder(cls, method: "Pooling | str", causal: bool) -> "Pooling":
        """``pooling.method`` (a name or a member) as a run of a causal or bidirectional encoder uses it."""
        return cls.parse(method, "pooling.method").resolved(causal)


def pooled_width(pooling: Pooling | str, hidden_size: int) -> int:
    """Width of one pooled word vector per layer: ``2 · hidden_size`` for first_last, else ``hidden_size``."""
    pooling = Pooling.parse(pooling, "pooling.method")
    return 2 * hidden_size if pooling == Pooling.first_last else hidden_size


def pool_words(hidden: torch.Tensor, batch: torch.Tensor, first: torch.Tensor, last: torch.Tensor,
               pooling: Pooling | str, check: bool = True) -> torch.Tensor:
    """Pool sub-token states into word vectors.

    Args:
        hidden: Shape: (batch, time, layers, hidden) — all hidden states of a batch.
        batch: Shape: (words,) — window (row of ``hidden``) of each word.
        first: Shape: (words,) — position of each word's first sub-token.
        last: Shape: (words,) — position of each word's last sub-token (>= first).
        check: test ``last >= first`` here (on a GPU that makes the host wait; a
            caller that has checked its host arrays passes False).

    Returns:
        Shape: (words, layers, width) with width = hidden, or 2 * hidden for first_last.
    """
    pooling = Pooling.parse(pooling, "pooling.method")
    if pooling == Pooling.auto:
        raise ValueError("pooling=auto must be resolved for the encoder first (Pooling.resolved)")
    if hidden.dim() != 4:
        raise ValueError(f"hidden must be (batch, time, layers, hidden), got shape {tuple(hidden.shape)}")
    if check and bool((last < first).any()):
        raise ValueError("every word needs last >= first")
    if pooling == Pooling.first:
        return hidden[batch, first]
    if pooling == Pooling.last:
        return hidden[batch, last]
    if pooling == Pooling.first_last:
        return torch.cat([hidden[batch, first], hidden[batch, last]], dim=-1)
    # mean: sum every sub-token into its word's row, then divide by the count.
    b, t, n_layers, h = hidden.shape
    n_words = first.numel()
    counts = last - first + 1  # Shape: (words,)
    owner = torch.repeat_interleave(torch.arange(n_words, device=hidden.device), counts)  # Shape: (pieces,)
    offsets = torch.arange(owner.numel(), device=hidden.device) - torch.repeat_interleave(
        torch.cumsum(counts, 0) - counts, counts)  # Shape: (pieces,)
    rows = (batch[owner] * t + first[owner] + offsets)  # Shape: (pieces,)
    flat = hidden.reshape(b * t, n_layers, h).float()
    out = torch.zeros(n_words, n_layers, h, dtype=torch.float32, device=hidden.device)
    out.index_add_(0, owner, flat[rows])
    return (out / counts.view(-1, 1, 1).float()).to(hidden.dtype)
