"""Early stopping on a dev score with the best epoch's weights put back.

After each epoch :meth:`EarlyStopping.update` keeps a copy of the weights
when the dev score improved (rose, or fell for a score where lower is
better) by more than ``min_delta``, and says stop once ``patience`` epochs
have passed without such an improvement; :meth:`EarlyStopping.restore` loads
the best copy. ``min_delta = 0`` counts any improvement (the trainer's
default); the online code's probes stop as Voita & Titov's code does, on
improvements of their stopping-set loss larger than a threshold
(:mod:`bert_ner_probe.training.online_code`).
"""

from __future__ import annotations

import math
from typing import Dict, Optional

import torch
from torch import nn


class EarlyStopping:
    def __init__(self, patience: int, higher_is_better: bool = True, min_delta: float = 0.0) -> None:
        if patience < 1:
            raise ValueError(f"patience must be at least 1, got {patience}")
        if min_delta < 0:
            raise ValueError(f"min_delta must be at least 0, got {min_delta}")
        self.patience = patience
        self.higher_is_better = higher_is_better
        self.min_delta = min_delta
        self.best_score = -math.inf if higher_is_better else math.inf  # any first score is better
        self.best_epoch = 0
        self._state: Optional[Dict[str, torch.Tensor]] = None

    def better(self, score: float) -> bool:
        """Whether ``score`` beats the best so far by more than ``min_delta`` (ties do not: the earlier epoch stays
        best)."""
        if self.higher_is_better:
            return score > self.best_score + self.min_delta
        return score < self.best_score - self.min_delta

    def update(self, model: nn.Module, epoch: int, score: float) -> bool:
        """Record epoch ``epoch`` (1-based) with dev score ``score``; True when training should stop."""
        if self.better(score):
            self.best_score, self.best_epoch = score, epoch
            self._state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            return False
        return epoch - self.best_epoch >= self.patience

    def restore(self, model: nn.Module) -> None:
        """Put the best epoch's weights back (nothing to do before the first update)."""
        if self._state is not None:
            model.load_state_dict(self._state)
