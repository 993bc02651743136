"""Feature strategies: which hidden states make a word's vector, and how they are combined.

Hidden state 0 is the embedding output and ``N`` (the encoder's depth) the
last layer; a negative index counts from the top (``-1`` = ``N``,
``-2`` = ``N - 1``). ``layers = None`` means every encoder layer ``1..N``
(the paper's "all 12 layers" for BERT-base). For the chosen layers
``h_1 .. h_K`` of a word, each of width ``d``:

* ``concat``     — ``[h_1; …; h_K]``                       (width ``K · d``)
* ``sum``        — ``h_1 + … + h_K``                       (width ``d``)
* ``mean``       — ``(h_1 + … + h_K) / K``                 (width ``d``)
* ``scalar_mix`` — ``γ · Σ_k softmax(w)_k · h_k``, learned with the tagger
  (:class:`~bert_ner_probe.strategy.scalar_mix.ScalarMix`; width ``d``).

A :class:`Combiner` holds one strategy for one encoder and owns its facts:
the resolved layers, the shape of what is read per word (``(K, d)`` for the
learned mix, which happens inside the tagger, else the combined vector), the
tagger's input width, and the fixed rule applied to a block of rows.
:mod:`bert_ner_probe.strategy.read` reads cached rows through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from bert_ner_probe.choice import Choice
from bert_ner_probe.hidden_states import resolve_indices


class Combine(Choice):
    """``strategy.combine``: the rule that makes one vector of a word's chosen layers (formulas above)."""

    concat = "concat"
    sum = "sum"
    mean = "mean"
    scalar_mix = "scalar_mix"


def resolve_layers(layers: Optional[Sequence[int]], num_layers: int, key: str = "strategy.layers") -> List[int]:
    """Map configured layer indices to hidden-state indices in ``0..num_layers``.

    ``None`` → ``[1, …, num_layers]``; ``-k`` → ``num_layers + 1 - k``
    (:func:`bert_ner_probe.hidden_states.resolve_indices`). Raises :class:`UserError`
    naming ``key`` for an empty list, an out-of-range index or a repeat.
    """
    if layers is None:
        return list(range(1, num_layers + 1))
    return resolve_indices(layers, num_layers, key)


def combine_layers(x: torch.Tensor, combine: Combine | str) -> torch.Tensor:
    """Combine the chosen layers of a block of words with a fixed rule.

    Args:
        x: Shape: (words, K, width).
    Returns:
        Shape: (words, K * width) for concat, else (words, width).
    """
    combine = Combine.parse(combine, "strategy.combine")
    if combine == Combine.concat:
        return x.reshape(x.shape[0], -1)
    if combine == Combine.sum:
        return x.sum(dim=1)
    if combine == Combine.mean:
        return x.mean(dim=1)
    raise ValueError(f"combine_layers handles concat, sum and mean, not {combine!r}")


@dataclass(frozen=True)
class Combiner:
    """One strategy for one encoder: the layers ``h_1 .. h_K`` (indices into 0..N), the rule, one layer's width d."""

    layers: Tuple[int, ...]
    combine: Combine
    width: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "combine", Combine.parse(self.combine, "strategy.combine"))

    @classmethod
    def from_config(cls, strategy_cfg: Any, num_layers: int, width: int) -> "Combiner":
        """``strategy_cfg.layers`` (None = 1..N, negatives from the top) and ``.combine`` for an N-layer encoder."""
        layers = None if strategy_cfg.layers is None else [int(x) for x in strategy_cfg.layers]
        return cls(tuple(resolve_layers(layers, num_layers)), strategy_cfg.combine, int(width))

    @property
    def learned(self) -> bool:
        """Whether the layers are mixed inside the tagger (scalar_mix) rather than by a fixed rule when read."""
        return self.combine == Combine.scalar_mix

    @property
    def output_width(self) -> int:
        """Width of the word vector the tagger's LSTM reads: ``K · d`` for concat, else ``d``."""
        return len(self.layers) * self.width if self.combine == Combine.concat else self.width

    @property
    def row_shape(self) -> Tuple[int, ...]:
        """Shape of one word as read for the tagger: ``(K, d)`` for the learned mix, else ``(output_width,)``."""
        return (len(self.layers), self.width) if self.learned else (self.output_width,)

    @property
    def mix_layers(self) -> Optional[int]:
        """K when the tagger learns the mix (it then holds a ScalarMix of K layers), else None."""
        return len(self.layers) if self.learned else None

    def combine_block(self, block: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
        """A block of cached rows of the chosen layers, combined, float16.

        ``block``: Shape: (c, K, d), the rows of :attr:`layers` in their order. Returns Shape: (c,) +
        :attr:`row_shape`. Sums are taken in float32 and stored in float16.
        """
        if block.shape[1] != len(self.layers):
            raise ValueError(f"a block of {block.shape[1]} hidden states for the {len(self.layers)} layers "
                             f"{list(self.layers)}")
        x = torch.from_numpy(np.ascontiguousarray(block)).to(device)  # Shape: (c, K, d)
        if self.learned:
            return x.to(torch.float16)
        return combine_layers(x.float() if self.combine != Combine.concat else x, self.combine).to(torch.float16)

    def mix_record(self, mix: Any) -> Optional[Dict[str, Any]]:
        """The learned mix for results.json (layers, softmax weights, γ); None for a fixed rule."""
        if not self.learned:
            return None
        return {"layers": list(self.layers), "weights": mix.normalized_weights(), "gamma": float(mix.gamma.detach())}

