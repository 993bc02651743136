"""Reading a strategy's features from the cache: whole splits or batch by batch, without mapping the file.

Two ways to get a split's combined features (a :class:`~bert_ner_probe.strategy.combiner.Combiner`
says which layers and how):

* :func:`select_features` — the whole split combined once, chunk by chunk,
  into one float16 tensor (on a GPU, where training reads it).
* :class:`CachedSelection` — nothing combined in advance: each batch's rows
  are read from the cache file and combined when the batch is gathered (the
  CPU path). Training then holds no copy of the split at all.

Both read the cache file with plain reads (:func:`read_rows`), not through
its memory map: every page of a mapped file that is touched counts in the
process's resident set, and a word's row holds all its layers, so reading
even one layer through the map touches nearly the whole file.
:func:`check_finite` stops a run whose features hold NaN or Inf.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from bert_ner_probe.data.corpus import Corpus
from bert_ner_probe.errors import UserError
from bert_ner_probe.strategy.combiner import Combiner


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


def select_features(features: np.ndarray, combiner: Combiner, chunk: int = 4096,
                    device: torch.device | str = "cpu") -> torch.Tensor:
    """Read the chosen layers of every word and combine them, one chunk at a time.

    Args:
        features: Shape: (words, layers + 1, width), e.g. a float16 memmap
            (read with :func:`read_rows`, not through the map).
        device: where the output is made, and each chunk combined (a GPU does the sums there).
    Returns:
        float16 tensor on ``device`` — Shape: (words,) + ``combiner.row_shape``.
    """
    n = features.shape[0]
    out = torch.empty((n,) + combiner.row_shape, dtype=torch.float16, device=device)
    for start in range(0, n, chunk):
        out[start:start + chunk] = combiner.combine_block(read_rows(features, start, min(start + chunk, n)), device)
    return out


class CachedSelection:
    """A split's combined features, read from the cache and combined batch by batch; no copy of the split.

    ``x[rows]`` (``rows`` a CPU LongTensor of any shape) reads the distinct
    rows as runs of consecutive words — one ``preadv`` per run, so a batch of
    whole sentences is about one read per sentence — and combines them as
    :func:`select_features` would (the same float16 values). It stands in for
    :func:`select_features`' tensor where training runs on the CPU: the
    process then holds one batch, not the split.
    """

    def __init__(self, features: np.ndarray, combiner: Combiner) -> None:
        self.features, self.combiner = features, combiner
        self.shape = torch.Size((features.shape[0],) + combiner.row_shape)
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

    @property
    def nbytes(self) -> int:
        """What the whole split takes combined (float16): what :meth:`read_all` would hold."""
        return 2 * math.prod(self.shape)

    def read_all(self) -> torch.Tensor:
        """The whole split combined once (:func:`select_features`: the same float16 values, in file order)."""
        return select_features(self.features, self.combiner)

    def __getitem__(self, rows: torch.Tensor) -> torch.Tensor:
        """Combined features of ``rows``: Shape: rows.shape + ``combiner.row_shape``, float16, on the CPU."""
        flat = np.asarray(rows, dtype=np.int64).reshape(-1)
        distinct, inverse = np.unique(flat, return_inverse=True)
        x = self.combiner.combine_block(self._read(distinct))  # Shape: (distinct,) + row_shape
        return x[torch.from_numpy(inverse.reshape(-1))].reshape(tuple(rows.shape) + tuple(self.shape[1:]))


def _nonfinite_rows(block: torch.Tensor) -> Optional[torch.Tensor]:
    """Which rows of ``block`` (Shape: (words, ...)) hold NaN or Inf; None when none does (the common case).

    On the CPU a float16 block is first tested through its bits: a value is NaN or Inf exactly when its
    five exponent bits are all ones (``bits & 0x7C00 == 0x7C00``); one ``max`` over that is much
    faster than ``torch.isfinite`` on float16.
    """
    if block.dtype == torch.float16 and not block.is_cuda:
        bits = block.contiguous().numpy().view(np.uint16)
        if int(np.bitwise_and(bits, np.uint16(0x7C00)).max(initial=0)) != 0x7C00:
            return None
    bad = ~torch.isfinite(block.flatten(1)).all(dim=1)  # Shape: (words,)
    return bad if bool(bad.any()) else None


def check_finite(x: torch.Tensor, offsets: np.ndarray, corpus: Corpus, split: str, entry_path: Path,
                 encoder_dtype: str) -> None:
    """Raise a :class:`UserError` naming the first word when any selected feature is NaN or Inf.

    ``entry_path`` (the cache entry the features were read from) and ``encoder_dtype`` (the dtype they were
    extracted in) are named in the message.

    ``x`` Shape: (words, ...), a tensor or a :class:`CachedSelection`. Read in
    blocks of 8,192 words, so the check needs little memory.
    """
    bad_words, first = 0, None
    for start in range(0, x.shape[0], 8192):
        end = min(start + 8192, x.shape[0])
        bad = _nonfinite_rows(x[start:end] if isinstance(x, torch.Tensor) else x[torch.arange(start, end)])
        if bad is None:
            continue
        if first is None:
            first = start + int(bad.nonzero()[0, 0])
        bad_words += int(bad.sum())
    if first is None:
        return
    sent_idx = int(np.searchsorted(offsets, first, side="right")) - 1
    sentence = corpus[split].sentences[sent_idx]
    line = sentence.line + (first - int(offsets[sent_idx])) if sentence.line else None
    where = f"{corpus[split].source}:{line}" if line else corpus[split].source
    raise UserError(f"{where}: the selected {split} features hold NaN or Inf for {bad_words} word(s) "
                    f"(first: {sentence.words[first - int(offsets[sent_idx])]!r}), read from cache entry "
                    f"{entry_path}; the encoder overflowed in encoder.dtype={encoder_dtype} or the "
                    f"entry is corrupt: try encoder.dtype=float32, or remove it (bert-ner-probe-cache rm "
                    f"{entry_path.name})")
