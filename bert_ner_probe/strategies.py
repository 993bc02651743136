"""Feature strategies: which hidden states to take and how to combine them.

Hidden state 0 is the embedding output and ``N`` (the encoder's depth) the
last layer; a negative index counts from the top (``-1`` = ``N``,
``-2`` = ``N - 1``). ``layers = None`` means every encoder layer ``1..N``
(the paper's "all 12 layers" for BERT-base). For the chosen layers
``h_1 .. h_K`` of a word:

* ``concat``     — ``[h_1; …; h_K]`` (width ``K * d``)
* ``sum``        — ``h_1 + … + h_K``
* ``mean``       — ``(h_1 + … + h_K) / K``
* ``scalar_mix`` — ``γ · Σ_k softmax(w)_k · h_k``, learned with the tagger
  (:class:`~bert_ner_probe.scalar_mix.ScalarMix`).

The fixed combinations are computed once per split, chunk by chunk from the
memory-mapped cache; ``scalar_mix`` keeps the K chosen layers per word and
mixes them inside the tagger.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from .errors import UserError

COMBINES = ("concat", "sum", "mean", "scalar_mix")


def resolve_layers(layers: Optional[Sequence[int]], num_layers: int) -> List[int]:
    """Map configured layer indices to hidden-state indices in ``0..num_layers``.

    ``None`` → ``[1, …, num_layers]``; ``-k`` → ``num_layers + 1 - k``.
    Raises :class:`UserError` for an empty list, an out-of-range index or a repeat.
    """
    if layers is None:
        return list(range(1, num_layers + 1))
    if len(layers) == 0:
        raise UserError("strategy.layers is empty: name at least one layer (0 = embeddings)")
    out = []
    for layer in layers:
        if not -(num_layers + 1) <= layer <= num_layers:
            raise UserError(
                f"strategy.layers has {layer}, but this encoder has hidden states 0..{num_layers} "
                f"(0 = embeddings, {num_layers} = last; negative counts from the top, -1..-{num_layers + 1})"
            )
        out.append(layer if layer >= 0 else num_layers + 1 + layer)
    if len(set(out)) != len(out):
        raise UserError(f"strategy.layers {list(layers)} names a layer twice (as {out})")
    return out


def check_combine(combine: str) -> None:
    if combine not in COMBINES:
        raise UserError(f"strategy.combine must be one of {', '.join(COMBINES)}, got {combine!r}")


def output_width(combine: str, n_layers: int, width: int) -> int:
    """Width of the combined word vector."""
    check_combine(combine)
    return n_layers * width if combine == "concat" else width


def combine_layers(x: torch.Tensor, combine: str) -> torch.Tensor:
    """Combine the chosen layers of a block of words with a fixed rule.

    Args:
        x: Shape: (words, K, width).
    Returns:
        Shape: (words, K * width) for concat, else (words, width).
    """
    if combine == "concat":
        return x.reshape(x.shape[0], -1)
    if combine == "sum":
        return x.sum(dim=1)
    if combine == "mean":
        return x.mean(dim=1)
    raise ValueError(f"combine_layers handles concat, sum and mean, not {combine!r}")


def selected_shape(num_words: int, n_layers: int, width: int, combine: str) -> Tuple[int, ...]:
    """Shape of :func:`select_features`' output: (words, K, width) for scalar_mix, else (words, width')."""
    if combine == "scalar_mix":
        return (num_words, n_layers, width)
    return (num_words, output_width(combine, n_layers, width))


def select_features(features: np.ndarray, layers: Sequence[int], combine: str,
                    chunk: int = 16384, device: torch.device | str = "cpu") -> torch.Tensor:
    """Read the chosen layers of every word and combine them, one chunk at a time.

    Args:
        features: Shape: (words, layers + 1, width), e.g. a float16 memmap.
        device: where the output is made, and each chunk combined (a GPU does the sums there).
    Returns:
        float16 tensor on ``device`` — Shape: (words, K, width) for scalar_mix
        (mixed later by the tagger), else the combined Shape: (words, width').
    Sums are taken in float32 and stored in float16.
    """
    n, _, width = features.shape
    k = len(layers)
    check_combine(combine)
    out = torch.empty(selected_shape(n, k, width, combine), dtype=torch.float16, device=device)
    contiguous = list(layers) == list(range(layers[0], layers[0] + k))
    sel = slice(layers[0], layers[0] + k) if contiguous else list(layers)
    for start in range(0, n, chunk):
        block = torch.from_numpy(np.array(features[start:start + chunk, sel])).to(device)  # Shape: (c, K, width)
        if combine == "scalar_mix":
            out[start:start + chunk] = block
        else:
            out[start:start + chunk] = combine_layers(block.float(), combine).to(torch.float16)
    return out
