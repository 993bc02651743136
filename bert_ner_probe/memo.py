"""Explicit reuse between the runs of one process: a file-stamped memo and the session that holds them.

The jobs of a sweep run one after another in one process (Hydra's basic or
joblib launcher) and read the same data files, hash the same encoder folder
and, seed after seed, the same combined features. Nothing of that is kept in
module globals: a :class:`Session` holds it and is handed to
:func:`bert_ner_probe.run.run_probe` by its caller (the CLI keeps one per
process; the Python API and tests start fresh unless they pass one).

A :class:`StampedMemo` entry is valid while the *stamp* of the files it was
computed from is unchanged (names, inodes, sizes, mtimes and ctimes), so an
edited file is read again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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


def _feature_reuse() -> Any:
    from bert_ner_probe.training.tagging_data import FeatureReuse  # noqa: PLC0415 - torch-heavy, imported on use

    return FeatureReuse()


@dataclass
class Session:
    """What the runs of one process share: parsed data files, encoder hashes, the last combined features."""

    files: StampedMemo = field(default_factory=StampedMemo)  # data.conll: parsed CoNLL files
    fingerprints: StampedMemo = field(default_factory=StampedMemo)  # features.encoder: hashed model folders
    features: Any = field(default_factory=_feature_reuse)  # training.tagging_data.FeatureReuse
