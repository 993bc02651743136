"""One ``.npy`` file of rows, allocated at its full size first and then filled with plain writes.

A cache file of one hidden state of one split is a ``.npy`` array of Shape:
(words, width), float16. :class:`RowFile` writes the ``.npy`` header, then
allocates the whole file on disk (``posix_fallocate``) before any row is
written, so a disk too small or a file-size limit (``ulimit -f``) fails there,
as an ``OSError`` (ENOSPC, EFBIG), before the encoder has run. Rows are then
written with ``pwrite``, never through a memory map: a write through a map
into a file that cannot grow ends the process with SIGBUS instead of an
error, and the written pages of a shared map count in the process's
resident set until they are unmapped.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Tuple

import numpy as np

#: What an ``.npy`` header of a 2-D array takes at most (version 1.0 headers are padded to 64 bytes; 128 is ample).
HEADER_BYTES = 128


def npy_bytes(shape: Tuple[int, ...], dtype: np.dtype | type = np.float16) -> int:
    """The size on disk of a ``.npy`` file of ``shape`` and ``dtype`` (its header counted as :data:`HEADER_BYTES`)."""
    return HEADER_BYTES + int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize


class RowFile:
    """A ``.npy`` file of Shape: ``shape`` (rows, ...) created at its full size; ``f[rows] = values`` writes rows.

    ``rows`` need not be sorted or contiguous: each run of consecutive rows is one ``pwrite``.
    :meth:`close` flushes the file to disk (``fsync``), so another node of a shared filesystem reads it next.
    """

    def __init__(self, path: Path, shape: Tuple[int, ...], dtype: np.dtype | type = np.float16) -> None:
        self.path, self.shape, self.dtype = Path(path), tuple(int(x) for x in shape), np.dtype(dtype)
        self.row_bytes = self.dtype.itemsize * int(np.prod(self.shape[1:], dtype=np.int64))
        with open(self.path, "wb") as fh:
            np.lib.format.write_array_header_1_0(
                fh, {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape})
            self.offset = fh.tell()  # where row 0 starts
        self.nbytes = self.offset + self.shape[0] * self.row_bytes
        self.fd = os.open(self.path, os.O_WRONLY)
        try:
            _allocate(self.fd, self.nbytes)
        except BaseException:
            os.close(self.fd)
            raise

    def __setitem__(self, rows: np.ndarray, values: np.ndarray) -> None:
        """Write ``values[i]`` at row ``rows[i]`` (Shape: (len(rows),) + shape[1:], in the file's dtype)."""
        rows = np.asarray(rows, dtype=np.int64)
        values = np.ascontiguousarray(values, dtype=self.dtype)
        if values.shape != (len(rows),) + self.shape[1:]:
            raise ValueError(f"{self.path}: {values.shape} values for {len(rows)} rows of {self.shape[1:]}")
        view = memoryview(values).cast("B")
        starts = np.concatenate([[0], np.flatnonzero(np.diff(rows) != 1) + 1, [len(rows)]])
        for a, b in zip(starts[:-1], starts[1:]):
            lo, hi = int(a) * self.row_bytes, int(b) * self.row_bytes
            at = self.offset + int(rows[a]) * self.row_bytes
            while lo < hi:
                lo += os.pwrite(self.fd, view[lo:hi], at + lo - int(a) * self.row_bytes)

    def close(self, sync: bool = True) -> None:
        """Flush to disk (``sync``) and close; a write error the disk reports late is raised here."""
        if self.fd is None:
            return
        try:
            if sync:
                os.fsync(self.fd)
        finally:
            os.close(self.fd)
            self.fd = None


def _allocate(fd: int, nbytes: int) -> None:
    """Give the file ``nbytes`` on disk now (``posix_fallocate``); where the filesystem cannot, set its size."""
    try:
        os.posix_fallocate(fd, 0, nbytes)
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise  # ENOSPC, EFBIG, EDQUOT: the caller reports them
        os.ftruncate(fd, nbytes)
