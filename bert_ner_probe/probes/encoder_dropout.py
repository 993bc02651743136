"""The probes' dropout inside a Hugging Face encoder that trains (the fine-tuned encoder, on a CPU).

:func:`use_rand_dropout` replaces every ``nn.Dropout`` module of the encoder by
:class:`~bert_ner_probe.probes.dropout.Dropout` (the same distribution, its
mask drawn with half the random draws: :mod:`bert_ner_probe.probes.dropout`),
and gives an encoder with eager attention :func:`eager_attention`: eager
attention whose probabilities are dropped the same way, registered with
transformers' ``AttentionInterface`` (and eager's mask with
``AttentionMaskInterface``) as ``eager_rand_dropout``. Fine-tuning BERT drops
every attention probability of every layer, which makes these masks a large
part of a training step on a CPU (bench.md).

:func:`eager_attention` also casts the additive mask to the scores' format: under
bf16 autocast transformers' float32 mask would promote the whole attention map
to float32 (the same map, twice the bytes to move, and casts back for the next
matrix product). Evaluation (``p = 0`` or not training) computes what eager
attention computed before, in the scores' format.
"""

from __future__ import annotations

import torch
from torch import nn

from bert_ner_probe.features.encoder import Attention, attention_of
from bert_ner_probe.probes import dropout as probe_dropout

EAGER_RAND_DROPOUT = "eager_rand_dropout"


def eager_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                    attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                    **kwargs: object) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' eager attention, ``softmax(q kᵀ · scaling + mask) v``, with the probes'
    :func:`~bert_ner_probe.probes.dropout.dropout` on the probabilities and the mask in the scores' format
    (bf16 under bf16 autocast: no float32 attention map).

    Shapes: query (batch, heads, time, head_dim), key and value (batch, heads, source, head_dim), attention_mask
    broadcastable to (batch, heads, time, source); returns the output (batch, time, heads, head_dim) and the
    probabilities (batch, heads, time, source), as transformers' attention functions do.
    """
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling  # Shape: (batch, heads, time, source)
    if attention_mask is not None:
        if attention_mask.dtype != scores.dtype:  # a float32 mask's −3.4e38 would round to −inf in bf16
            attention_mask = attention_mask.clamp(min=torch.finfo(scores.dtype).min).to(scores.dtype)
        scores = scores + attention_mask  # Shape: (batch, heads, time, source)
    probs = probe_dropout.dropout(nn.functional.softmax(scores, dim=-1), dropout, module.training)
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
    """Replace ``encoder``'s dropout (modules, and eager attention's) by the probes' dropout, in place; returns the
    modules replaced. An encoder with another attention implementation (SDPA) keeps that one
    (:func:`~bert_ner_probe.features.encoder.attention_of` says which runs)."""
    replaced = 0
    for parent in list(encoder.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                setattr(parent, name, probe_dropout.Dropout(child.p).train(child.training))
                replaced += 1
    if attention_of(encoder) == str(Attention.eager) and hasattr(encoder, "set_attn_implementation") and _register():
        encoder.set_attn_implementation(EAGER_RAND_DROPOUT)  # results.json records what the model then runs
    return replaced
