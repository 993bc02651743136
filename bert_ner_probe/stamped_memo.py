"""A file-stamped memo: a value computed from files, kept while the files' stamp is unchanged.

A :class:`StampedMemo` entry is valid while the *stamp* of the files it was
computed from is unchanged (names, inodes, sizes, mtimes and ctimes), so an
edited file is read again. The data readers and the encoder's fingerprint
keep their results in one; :class:`bert_ner_probe.memo.Session` holds those
of a process. This module imports nothing of the package, so every step may use it.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Hashable, Tuple, TypeVar

T = TypeVar("T")


class StampedMemo:
    """``key → (stamp, value)``; :meth:`get` recomputes when the stamp differs. At most ``max_entries`` kept."""

    def __init__(self, max_entries: int = 16) -> None:
        self.max_entries = max_entries
        self._entries: Dict[Hashable, Tuple[Hashable, Any]] = {}

    def get(self, key: Hashable, stamp: Hashable, compute: Callable[[], T]) -> T:
        seen = self._entries.get(key)
        if seen is not None and seen[0] == stamp:
            return seen[1]
        value = compute()
        if key not in self._entries and len(self._entries) >= self.max_entries:
            self._entries.pop(next(iter(self._entries)))  # the oldest entry
        self._entries[key] = (stamp, value)
        return value

    def __len__(self) -> int:
        return len(self._entries)
