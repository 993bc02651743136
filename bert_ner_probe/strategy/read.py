"""Reading a strategy's features from the cache: whole splits or batch by batch, without mapping the files.

Two ways to get a split's combined features (a :class:`~bert_ner_probe.strategy.combiner.Combiner`
says which layers and how); both take the cache's files of the combiner's
hidden states, one Shape: (words, width) array per hidden state, in the
combiner's order, and read nothing else, so a job that uses ``k`` of an
entry's ``L`` hidden states reads ``k/L`` of its bytes:

* :func:`select_features` — the whole split combined once, chunk by chunk,
  into one float16 tensor (on a GPU, where training reads it).
* :class:`CachedSelection` — nothing combined in advance: each batch's rows
  are read from the cache files and combined when the batch is gathered (the
  CPU path). Training then holds no copy of the split at all.

Both read the cache files with plain reads (:func:`read_rows`), not through
their memory maps: every page of a mapped file that is touched counts in the
process's resident set. Both combine at most :data:`COMBINE_ELEMENTS` values
(rows × hidden states × width) at once, so the float32 copy a sum takes is
bounded whatever the number of hidden states; each row's arithmetic is the
same however the rows are cut.
:func:`check_finite` stops a run whose features hold NaN or Inf
(:class:`NonFiniteFeatures`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import List, Optional, Sequence

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


#: Values (rows × hidden states × width) read and combined at once: 4 Mi, so 8 MiB of float16 and 16 MiB of
#: float32 for a sum, however many hidden states a strategy reads.
COMBINE_ELEMENTS = 1 << 22


def rows_at_once(combiner: Combiner, limit: int = COMBINE_ELEMENTS) -> int:
    """How many rows are combined at once: ``limit`` values of the combiner's ``K`` hidden states of width ``d``."""
    return max(1, limit // (len(combiner.layers) * combiner.width))


def _stacked(blocks: Sequence[np.ndarray]) -> np.ndarray:
    """One block per hidden state (Shape: (c, width) each) as Shape: (c, K, width), C-ordered."""
    return np.stack(blocks, axis=1)


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


def select_features(states: Sequence[np.ndarray], combiner: Combiner, chunk: int = 4096,
                    device: torch.device | str = "cpu") -> torch.Tensor:
    """Read the chosen hidden states of every word and combine them, one chunk at a time.

    Args:
        states: the combiner's hidden states, in its order: Shape: (words, width) each, e.g. float16
            memmaps of the cache (read with :func:`read_rows`, not through the maps).
        device: where the output is made, and each chunk combined (a GPU does the sums there).
    Returns:
        float16 tensor on ``device`` — Shape: (words,) + ``combiner.row_shape``.
    """
    n = _words(states, combiner)
    out = torch.empty((n,) + combiner.row_shape, dtype=torch.float16, device=device)
    chunk = min(chunk, rows_at_once(combiner))
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        out[start:stop] = combiner.combine_block(_stacked([read_rows(f, start, stop) for f in states]), device)
    return out


def _words(states: Sequence[np.ndarray], combiner: Combiner) -> int:
    """The words of a split's hidden-state arrays, checked to be one per combiner layer and of one length."""
    if len(states) != len(combiner.layers) or len({f.shape[0] for f in states}) != 1:
        raise ValueError(f"{len(states)} hidden-state arrays of {sorted({f.shape[0] for f in states})} words for "
                         f"the {len(combiner.layers)} layers {list(combiner.layers)}")
    return int(states[0].shape[0])


class CachedSelection:
    """A split's combined features, read from the cache and combined batch by batch; no copy of the split.

    ``x[rows]`` (``rows`` a CPU LongTensor of any shape) reads the distinct
    rows of each of the combiner's hidden-state files as runs of consecutive
    words — one ``preadv`` per run and file, so a batch of whole sentences is
    about one read per sentence and hidden state — and combines them as
    :func:`select_features` would (the same float16 values). It stands in for
    :func:`select_features`' tensor where training runs on the CPU: the
    process then holds one batch, not the split.
    """

    def __init__(self, states: Sequence[np.ndarray], combiner: Combiner) -> None:
        self.states, self.combiner = list(states), combiner
        self.shape = torch.Size((_words(self.states, combiner),) + combiner.row_shape)
        self.fds: List[Optional[int]] = [os.open(f.filename, os.O_RDONLY) if _file_backed(f) else None
                                         for f in self.states]

    dtype = torch.float16
    device = torch.device("cpu")
    is_cuda = False

    def is_pinned(self) -> bool:
        return False

    def __len__(self) -> int:
        return self.shape[0]

    def __del__(self) -> None:
        for fd in getattr(self, "fds", []):
            if fd is not None:
                os.close(fd)
        self.fds = []

    def _read(self, k: int, rows: np.ndarray) -> np.ndarray:
        """Hidden state ``k`` (of the combiner's) of sorted distinct ``rows``: Shape: (len(rows), width)."""
        features, fd = self.states[k], self.fds[k]
        if fd is None:
            return np.asarray(features[rows])
        row_bytes = features.dtype.itemsize * math.prod(features.shape[1:])
        out = np.empty((len(rows),) + features.shape[1:], dtype=features.dtype)
        runs = np.flatnonzero(np.diff(rows) != 1) + 1  # where a new run of consecutive rows starts
        view = memoryview(out).cast("B")
        for a, b in zip(np.concatenate([[0], runs]), np.concatenate([runs, [len(rows)]])):
            lo, hi = int(a) * row_bytes, int(b) * row_bytes
            offset = features.offset + int(rows[a]) * row_bytes
            while lo < hi:  # a regular file is read whole, but a short read is allowed
                got = os.preadv(fd, [view[lo:hi]], offset)
                if got <= 0:
                    raise OSError(f"{features.filename}: short read at row {int(rows[a])}")
                lo, offset = lo + got, offset + got
        return out

    @property
    def nbytes(self) -> int:
        """What the whole split takes combined (float16): what :meth:`read_all` would hold."""
        return 2 * math.prod(self.shape)

    def read_all(self) -> torch.Tensor:
        """The whole split combined once (:func:`select_features`: the same float16 values, in file order)."""
        return select_features(self.states, self.combiner)

    def __getitem__(self, rows: torch.Tensor) -> torch.Tensor:
        """Combined features of ``rows``: Shape: rows.shape + ``combiner.row_shape``, float16, on the CPU."""
        flat = np.asarray(rows, dtype=np.int64).reshape(-1)
        distinct, inverse = np.unique(flat, return_inverse=True)
        step = rows_at_once(self.combiner)
        parts = [self.combiner.combine_block(_stacked([self._read(k, part) for k in range(len(self.states))]))
                 for part in (distinct[start:start + step] for start in range(0, len(distinct), step))]
        if len(parts) != 1:  # a batch is one part (no copy); a whole split several; no rows none
            parts = [torch.cat(parts) if parts else torch.empty((0,) + tuple(self.shape[1:]), dtype=torch.float16)]
        x = parts[0]  # Shape: (distinct,) + row_shape
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


class NonFiniteFeatures(UserError):
    """Selected features that hold NaN or Inf (:func:`check_finite`): an overflow in the encoder, unless the
    cache entry they were read from turns out damaged (the caller checks it)."""

    def __init__(self, message: str, split: str) -> None:
        super().__init__(message)
        self.split = split


def check_finite(x: torch.Tensor, offsets: np.ndarray, corpus: Corpus, split: str, entry_path: Path,
                 encoder_dtype: str) -> None:
    """Raise :class:`NonFiniteFeatures` naming the first word when any selected feature is NaN or Inf.

    Its message blames the encoder; the caller that catches it checks the entry's files in full and reports a
    damaged entry as such instead (:class:`bert_ner_probe.training.tagging_data.FeatureReuse`).

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
    raise NonFiniteFeatures(
        f"{where}: the selected {split} features hold NaN or Inf for {bad_words} word(s) "
        f"(first: {sentence.words[first - int(offsets[sent_idx])]!r}), read from cache entry {entry_path}: "
        f"the encoder overflowed in encoder.dtype={encoder_dtype}; try encoder.dtype=float32", split)
