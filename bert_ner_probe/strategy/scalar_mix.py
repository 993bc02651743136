"""A learned, softmax-normalised weighted sum of layers (ELMo; AllenNLP's ScalarMix).

For K layer vectors ``h_1 .. h_K`` of one word::

    mix = γ · Σ_k s_k · h_k,    s = softmax(w_1 .. w_K)

with ``w`` initialised to zeros (a plain mean at the start) and ``γ`` to 1.
"""

from __future__ import annotations

from typing import List

import torch
from torch import nn


class ScalarMix(nn.Module):
    def __init__(self, num_layers: int, initial_gamma: float = 1.0) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError("ScalarMix needs at least one layer")
        self.num_layers = num_layers
        self.weights = nn.Parameter(torch.zeros(num_layers))
        self.gamma = nn.Parameter(torch.tensor(float(initial_gamma)))

    def forward(self, layers: torch.Tensor) -> torch.Tensor:
        """Shape: (..., K, width) → (..., width)."""
        if layers.shape[-2] != self.num_layers:
            raise ValueError(f"ScalarMix expects {self.num_layers} layers on dim -2, got shape {tuple(layers.shape)}")
        s = torch.softmax(self.weights, dim=0).to(layers.dtype)  # Shape: (K,)
        return self.gamma.to(layers.dtype) * torch.einsum("...kd,k->...d", layers, s)

    def normalized_weights(self) -> List[float]:
        """The softmax weights s_k, for reporting."""
        return torch.softmax(self.weights.detach().float(), dim=0).tolist()
