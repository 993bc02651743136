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
  (:class:`~bert_ner_probe.strategy.scalar_mix.ScalarMix`).

``scalar_mix`` keeps the K chosen layers per word and mixes them inside
the tagger. Two ways to get a split's combined features:

* :func:`select_features` — the whole split combined once, chunk by chunk,
  into one float16 tensor (on a GPU, where training reads it).
* :class:`CachedSelection` — nothing combined in advance: each batch's rows
  are read from the cache file and combined when the batch is gathered (the
  CPU path). Training then holds no copy of the split at all.

Both read the cache file with plain reads (:func:`read_rows`), not through
its memory map: every page of a mapped file that is touched counts in the
process's resident set, and a word's row holds all its layers, so reading
even one layer through the map touches nearly the whole file.
"""

from __future__ import annotations

import math
import os
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from bert_ner_probe.errors import UserError

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


def _file_backed(features: np.ndarray) -> bool:
    """Whether ``features`` is a whole C-ordered ``.npy`` memory map (then :func:`read_rows` reads its file)."""
    if not isinstance(features, np.memmap) or not features.filename or not features.flags.c_contiguous:
        return False
    try:
        return os.path.getsize(features.filename) == features.offset + features.nbytes
    except OSError:
        return False


def read_rows(features: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of ``features`` as a new array: Shape: (stop - start, ...).

    A file-backed memory map is read with ``os.preadv`` from its file, so the
    map's pages never enter this process's resident set (they stay in the
    page cache); any other array is sliced and copied.
    """
    if not _file_backed(features):
        return np.array(features[start:stop])
    out = np.empty((stop - start,) + features.shape[1:], dtype=features.dtype)
    row_bytes = features.dtype.itemsize * math.prod(features.shape[1:])
    fd = os.open(features.filename, os.O_RDONLY)
    try:
        view, done = memoryview(out).cast("B"), 0
        while done < out.nbytes:
            got = os.preadv(fd, [view[done:]], features.offset + start * row_bytes + done)
            if got <= 0:
                raise OSError(f"{features.filename}: short read at row {start}")
            done += got
    finally:
        os.close(fd)
    return out


def _layer_index(layers: Sequence[int]) -> slice | List[int]:
    """A slice when the layers are consecutive (a view, not a gather), else the list."""
    k = len(layers)
    return slice(layers[0], layers[0] + k) if list(layers) == list(range(layers[0], layers[0] + k)) else list(layers)


def _combine_block(block: np.ndarray, sel: slice | List[int], combine: str, device: torch.device | str = "cpu"
                   ) -> torch.Tensor:
    """The chosen layers of a block of rows, combined, float16 — Shape: (c, K, width) for scalar_mix, else (c, width').

    ``block``: Shape: (c, layers + 1, width). Sums are taken in float32 and stored in float16.
    """
    x = torch.from_numpy(np.ascontiguousarray(block[:, sel])).to(device)  # Shape: (c, K, width)
    if combine == "scalar_mix":
        return x.to(torch.float16)
    return combine_layers(x.float() if combine != "concat" else x, combine).to(torch.float16)


def select_features(features: np.ndarray, layers: Sequence[int], combine: str,
                    chunk: int = 4096, device: torch.device | str = "cpu") -> torch.Tensor:
    """Read the chosen layers of every word and combine them, one chunk at a time.

    Args:
        features: Shape: (words, layers + 1, width), e.g. a float16 memmap
            (read with :func:`read_rows`, not through the map).
        device: where the output is made, and each chunk combined (a GPU does the sums there).
    Returns:
        float16 tensor on ``device`` — Shape: (words, K, width) for scalar_mix
        (mixed later by the tagger), else the combined Shape: (words, width').
    Sums are taken in float32 and stored in float16.
    """
    n, _, width = features.shape
    check_combine(combine)
    out = torch.empty(selected_shape(n, len(layers), width, combine), dtype=torch.float16, device=device)
    sel = _layer_index(layers)
    for start in range(0, n, chunk):
        out[start:start + chunk] = _combine_block(read_rows(features, start, min(start + chunk, n)), sel, combine,
                                                  device)
    return out


class CachedSelection:
    """A split's combined features, read from the cache and combined batch by batch; no copy of the split.

    ``x[rows]`` (``rows`` a CPU LongTensor of any shape) reads the distinct
    rows as runs of consecutive words — one ``preadv`` per run, so a batch of
    whole sentences is about one read per sentence — and combines them as
    :func:`select_features` would (the same float16 values). It stands in for
    :func:`select_features`' tensor where training runs on the CPU: the
    process then holds one batch, not the split (concat_last_four of MiniLM:
    0.9 GB in float16 for the three CoNLL-2003 splits).
    """

    def __init__(self, features: np.ndarray, layers: Sequence[int], combine: str) -> None:
        n, _, width = features.shape
        check_combine(combine)
        self.features, self.combine = features, combine
        self.sel = _layer_index(layers)
        self.shape = torch.Size(selected_shape(n, len(layers), width, combine))
        self.fd = os.open(features.filename, os.O_RDONLY) if _file_backed(features) else None
        self.row_bytes = features.dtype.itemsize * math.prod(features.shape[1:])

    dtype = torch.float16
    device = torch.device("cpu")
    is_cuda = False

    def is_pinned(self) -> bool:
        return False

    def __len__(self) -> int:
        return self.shape[0]

    def __del__(self) -> None:
        if getattr(self, "fd", None) is not None:
            os.close(self.fd)
            self.fd = None

    def _read(self, rows: np.ndarray) -> np.ndarray:
        """All layers of sorted distinct ``rows``: Shape: (len(rows), layers + 1, width)."""
        if self.fd is None:
            return np.asarray(self.features[rows])
        out = np.empty((len(rows),) + self.features.shape[1:], dtype=self.features.dtype)
        runs = np.flatnonzero(np.diff(rows) != 1) + 1  # where a new run of consecutive rows starts
        view = memoryview(out).cast("B")
        for a, b in zip(np.concatenate([[0], runs]), np.concatenate([runs, [len(rows)]])):
            lo, hi = int(a) * self.row_bytes, int(b) * self.row_bytes
            offset = self.features.offset + int(rows[a]) * self.row_bytes
            while lo < hi:  # a regular file is read whole, but a short read is allowed
                got = os.preadv(self.fd, [view[lo:hi]], offset)
                if got <= 0:
                    raise OSError(f"{self.features.filename}: short read at row {int(rows[a])}")
                lo, offset = lo + got, offset + got
        return out

    def __getitem__(self, rows: torch.Tensor) -> torch.Tensor:
        """Combined features of ``rows``: Shape: rows.shape + (width',) or + (K, width), float16, on the CPU."""
        flat = np.asarray(rows, dtype=np.int64).reshape(-1)
        distinct, inverse = np.unique(flat, return_inverse=True)
        x = _combine_block(self._read(distinct), self.sel, self.combine)  # Shape: (distinct, ...)
        return x[torch.from_numpy(inverse.reshape(-1))].reshape(tuple(rows.shape) + tuple(self.shape[1:]))
