"""The optimiser and schedule (bert_ner_probe/training/optim.py): linear warm-up and decay, no decay on biases and LayerNorm."""

from __future__ import annotations

import pytest
import torch


def test_linear_schedule_and_decay_groups():
    from bert_ner_probe.training.optim import build_optimizer, build_schedule

    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.LayerNorm(3))
    optim = build_optimizer(model, "adamw", 1.0, 0.01, torch.device("cpu"))
    decayed, kept = optim.param_groups
    assert (decayed["weight_decay"], kept["weight_decay"]) == (0.01, 0.0)
    assert [p.shape for p in decayed["params"]] == [(3, 2)]  # biases and LayerNorm weights are not decayed
    schedule = build_schedule(optim, "linear", total_steps=10, warmup_ratio=0.2)
    rates = []
    for _ in range(10):
        rates.append(optim.param_groups[0]["lr"])
        optim.step()
        schedule.step()
    assert rates == pytest.approx([0.0, 0.5, 1.0, 7 / 8, 6 / 8, 5 / 8, 4 / 8, 3 / 8, 2 / 8, 1 / 8])
    assert optim.param_groups[0]["lr"] == 0.0
