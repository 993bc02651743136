"""Dropout with its keep mask drawn by ``torch.rand``, for the encoder that trains on a CPU.

Dropout (Srivastava et al., 2014) as ``nn.Dropout`` computes it::

    y_i = x_i · m_i / (1 − p),    m_i ~ Bernoulli(1 − p)

here with ``m_i = [u_i ≥ p]``, ``u_i ~ U[0, 1)`` (float32, steps of 2⁻²⁴): the
same distribution, drawn another way. On a CPU ``nn.Dropout`` draws its mask
with ``bernoulli_``, which is markedly slower than ``torch.rand`` over the
same elements, and fine-tuning BERT draws a mask for every attention
probability and every hidden state of every layer (bench.md has the step's
profile). Off the CPU :func:`rand_dropout` is ``nn.functional.dropout``
(CUDA fuses mask and scaling in one kernel).

:func:`use_rand_dropout` puts it into a Hugging Face encoder: every
``nn.Dropout`` module becomes a :class:`RandDropout`, and an encoder with eager
attention gets :func:`eager_attention`, eager attention whose probabilities
are dropped the same way, registered with transformers' ``AttentionInterface``
(and eager's mask with ``AttentionMaskInterface``) as ``eager_rand_dropout``.
Evaluation (``p = 0`` or not training) computes exactly what it computed before.
"""

from __future__ import annotations

import torch
from torch import nn

from bert_ner_probe.features.encoder import Attention, attention_of

EAGER_RAND_DROPOUT = "eager_rand_dropout"


def _checked(p: float) -> float:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability {p}: must be in [0, 1)")
    return float(p)


def rand_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """``x`` with each element zeroed with probability ``p`` and the rest scaled by 1 / (1 − p). Shape: as ``x``."""
    _checked(p)
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return nn.functional.dropout(x, p, training=True)
    keep = torch.rand(x.shape, dtype=torch.float32, device=x.device) >= p  # Shape: as x; P(keep) = 1 − p
    return x * keep.to(x.dtype) * (1.0 / (1.0 - p))


class RandDropout(nn.Module):
    """``nn.Dropout(p)`` drawing its mask with :func:`rand_dropout`."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = _checked(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rand_dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def eager_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                    attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                    **kwargs: object) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' eager attention, ``softmax(q kᵀ · scaling + mask) v``, with :func:`rand_dropout` on the
    probabilities.

    Shapes: query (batch, heads, time, head_dim), key and value (batch, heads, source, head_dim), attention_mask
    broadcastable to (batch, heads, time, source); returns the output (batch, time, heads, head_dim) and the
    probabilities (batch, heads, time, source), as transformers' attention functions do.
    """
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling  # Shape: (batch, heads, time, source)
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = rand_dropout(nn.functional.softmax(scores, dim=-1), dropout, module.training)
    out = torch.matmul(probs, value).transpose(1, 2).contiguous()  # Shape: (batch, time, heads, head_dim)
    return out, probs


def _register() -> bool:
    """Register :func:`eager_attention` under ``eager_rand_dropout``, with eager attention's additive float mask
    (transformers gives an implementation it does not know SDPA's boolean mask); False with a transformers
    older than these interfaces (its attention then keeps ``nn.functional.dropout``)."""
    try:
        from transformers import AttentionInterface, AttentionMaskInterface
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
    except ImportError:
        return False
    AttentionInterface.register(EAGER_RAND_DROPOUT, eager_attention)
    AttentionMaskInterface.register(EAGER_RAND_DROPOUT, ALL_MASK_ATTENTION_FUNCTIONS["eager"])
    return True


def use_rand_dropout(encoder: nn.Module) -> int:
    """Replace ``encoder``'s dropout (modules, and eager attention's) by :func:`rand_dropout`, in place; returns the
    modules replaced. An encoder with another attention implementation (SDPA) keeps that one
    (:func:`~bert_ner_probe.features.encoder.attention_of` says which runs)."""
    replaced = 0
    for parent in list(encoder.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                setattr(parent, name, RandDropout(child.p).train(child.training))
                replaced += 1
    if attention_of(encoder) == str(Attention.eager) and hasattr(encoder, "set_attn_implementation") and _register():
        encoder.set_attn_implementation(EAGER_RAND_DROPOUT)  # results.json records what the model then runs
    return replaced
