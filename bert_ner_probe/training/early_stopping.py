"""Early stopping on dev F1 with the best epoch's weights put back.

After each epoch :meth:`EarlyStopping.update` keeps a copy of the weights
when dev F1 improved, and says stop once ``patience`` epochs have passed
without a better one; :meth:`EarlyStopping.restore` loads the best copy.
"""

from __future__ import annotations

import math
from typing import Dict, Optional

import torch
from torch import nn


class EarlyStopping:
    def __init__(self, patience: int) -> None:
        if patience < 1:
            raise ValueError(f"patience must be at least 1, got {patience}")
        self.patience = patience
        self.best_f1 = -math.inf  # any score is better (the online code's stopping score is negative)
        self.best_epoch = 0
        self._state: Optional[Dict[str, torch.Tensor]] = None

    def update(self, model: nn.Module, epoch: int, f1: float) -> bool:
        """Record epoch ``epoch`` (1-based) with dev F1 ``f1``; True when training should stop."""
        if f1 > self.best_f1:
            self.best_f1, self.best_epoch = f1, epoch
            self._state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            return False
        return epoch - self.best_epoch >= self.patience

    def restore(self, model: nn.Module) -> None:
        """Put the best epoch's weights back (nothing to do before the first update)."""
        if self._state is not None:
            model.load_state_dict(self._state)
