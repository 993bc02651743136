"""Early stopping (bert_ner_probe/training/early_stopping.py): best epoch, patience and the minimum improvement."""

from __future__ import annotations

import pytest
import torch

from bert_ner_probe.training.early_stopping import EarlyStopping


def _run(stopper: EarlyStopping, scores):
    """Feed ``scores`` epoch by epoch (a one-weight model holding its epoch); the epoch it stops at, or None."""
    model = torch.nn.Linear(1, 1, bias=False)
    for epoch, score in enumerate(scores, start=1):
        with torch.no_grad():
            model.weight.fill_(epoch)
        if stopper.update(model, epoch, score):
            stopper.restore(model)
            return epoch, int(model.weight.item())
    stopper.restore(model)
    return None, int(model.weight.item())


def test_patience_counts_epochs_without_a_better_score_and_restores_the_best():
    # higher is better: 0.5, 0.7 (best), 0.69, 0.7 (a tie is not better) → patience 2 stops at epoch 4
    stopper = EarlyStopping(2)
    assert _run(stopper, [0.5, 0.7, 0.69, 0.7, 0.9]) == (4, 2) and stopper.best_score == 0.7


def test_min_delta_counts_only_improvements_larger_than_it():
    # a code length (lower is better) in bits: 0.300, 0.2995 (better by 0.0005 < 0.001: not better), 0.2985
    # (0.0015 below the best, 0.300: better) → best epoch 3; then 0.2980, 0.2979 (under 0.001 below 0.2985)
    stopper = EarlyStopping(2, higher_is_better=False, min_delta=0.001)
    assert _run(stopper, [0.300, 0.2995, 0.2985, 0.2980, 0.2979, 0.1]) == (5, 3)
    assert stopper.best_score == pytest.approx(0.2985)
    # without it, every smaller value is better: no stop in these six epochs, the last one kept
    assert _run(EarlyStopping(2, higher_is_better=False), [0.300, 0.2995, 0.2985, 0.2980, 0.2979, 0.1]) == (None, 6)
    with pytest.raises(ValueError, match="min_delta"):
        EarlyStopping(2, min_delta=-0.1)
