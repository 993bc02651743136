"""Optimiser and learning-rate schedule from the trainer settings.

* ``optimizer``: ``adam`` (the probe's default) or ``adamw`` (decoupled
  weight decay, Loshchilov & Hutter 2019, the usual choice for fine-tuning).
  With ``weight_decay > 0``, biases and LayerNorm weights are not decayed,
  as in BERT's own fine-tuning code.
* ``schedule``: ``constant``, or ``linear``: the rate rises linearly from 0
  over the first ``warmup_ratio × total_steps`` optimiser steps, then falls
  linearly to 0 at ``total_steps`` (``transformers``'
  ``get_linear_schedule_with_warmup``; ``constant`` warms up the same way)::

      lr(t) = lr · t / w                          for t < w
      lr(t) = lr · max(0, (T − t) / (T − w))       otherwise
"""

from __future__ import annotations

import math
from typing import Iterable, List, Tuple

import torch
from torch import nn

from bert_ner_probe.choice import Choice


class OptimizerName(Choice):
    adam = "adam"
    adamw = "adamw"


class ScheduleName(Choice):
    constant = "constant"
    linear = "linear"


def _no_decay(name: str, param: nn.Parameter) -> bool:
    """Biases, LayerNorm weights and other 1-d parameters (scales, mix weights) are not decayed."""
    return param.ndim < 2 or name.endswith(".bias") or "LayerNorm" in name or "layer_norm" in name


def parameter_groups(named: Iterable[Tuple[str, nn.Parameter]], weight_decay: float) -> List[dict]:
    """Trainable parameters in two groups: decayed (``weight_decay``) and not (see :func:`_no_decay`)."""
    decay, keep = [], []
    for name, p in named:
        if p.requires_grad:
            (keep if _no_decay(name, p) else decay).append(p)
    return [g for g in ({"params": decay, "weight_decay": weight_decay},
                        {"params": keep, "weight_decay": 0.0}) if g["params"]]


def build_optimizer(model: nn.Module, name: OptimizerName | str, lr: float, weight_decay: float,
                    device: torch.device) -> torch.optim.Optimizer:
    """Adam or AdamW over ``model``'s trainable parameters; fused (one kernel per step) on CPU and CUDA."""
    name = OptimizerName.parse(name, "trainer.optimizer")
    groups = parameter_groups(model.named_parameters(), weight_decay)
    cls = torch.optim.AdamW if name == OptimizerName.adamw else torch.optim.Adam
    return cls(groups, lr=lr, fused=device.type in ("cpu", "cuda"))


def build_schedule(optimizer: torch.optim.Optimizer, name: ScheduleName | str, total_steps: int,
                   warmup_ratio: float) -> torch.optim.lr_scheduler.LambdaLR:
    """``transformers``' schedule with ``ceil(warmup_ratio × total_steps)`` warm-up steps; ``step()`` after each step."""
    from transformers import get_constant_schedule_with_warmup, get_linear_schedule_with_warmup

    warmup = math.ceil(warmup_ratio * total_steps)
    if ScheduleName.parse(name, "trainer.schedule") == ScheduleName.linear:
        return get_linear_schedule_with_warmup(optimizer, warmup, max(total_steps, 1))
    return get_constant_schedule_with_warmup(optimizer, warmup)
