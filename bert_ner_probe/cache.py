"""On-disk feature cache: every layer of every word, extracted once, memory-mapped.

One entry per key (encoder and its weights, data content and limits,
pooling, context, dtype, window settings), in ``<root>/<slug>-<hash>/``::

    meta.json                  the key, shapes and extraction counters
    <split>.npy                Shape: (words, layers + 1, width), float16
    <split>.offsets.npy        Shape: (sentences + 1,), int64 word offsets

An entry is written into a temporary sibling folder and renamed into place
only when complete, so a killed extraction never leaves an entry a later run
trusts. A file lock per entry makes parallel jobs extract once: the first
takes the lock and builds, the others wait and then read the finished entry.
Each feature file is flushed to disk (``msync``) before its entry is
completed, so jobs on other nodes of a shared filesystem read what was written.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Tuple

import numpy as np
from filelock import FileLock

FORMAT_VERSION = 3  # bump whenever extraction changes what a feature holds
META = "meta.json"


@dataclass
class SplitFeatures:
    """Memory-mapped features of one split."""

    features: np.ndarray  # Shape: (words, layers + 1, width), float16, read-only memmap
    offsets: np.ndarray  # Shape: (sentences + 1,)

    @property
    def num_sentences(self) -> int:
        return len(self.offsets) - 1


@dataclass
class CacheEntry:
    path: Path
    meta: Dict[str, Any]

    def split(self, name: str) -> SplitFeatures:
        return SplitFeatures(
            np.load(self.path / f"{name}.npy", mmap_mode="r"),
            np.load(self.path / f"{name}.offsets.npy"),
        )


def default_root() -> Path:
    """``$BERT_NER_PROBE_CACHE`` or ``~/.cache/bert_ner_probe``."""
    return Path(os.environ.get("BERT_NER_PROBE_CACHE", Path.home() / ".cache" / "bert_ner_probe"))


def entry_name(key: Dict[str, Any]) -> str:
    """``<encoder slug>-<16 hex digits of the key's hash>``."""
    blob = json.dumps({"format": FORMAT_VERSION, **key}, sort_keys=True, default=str)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:16]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(key.get("encoder", "encoder")).split("/")[-1])[-40:]
    return f"{slug}-{digest}"


def _complete(path: Path) -> bool:
    return (path / META).is_file()


def get_or_build(
    root: os.PathLike | str,
    key: Dict[str, Any],
    build: Callable[[Path], Dict[str, Any]],
) -> Tuple[CacheEntry, bool]:
    """Return the entry for ``key``, building it with ``build(tmp_dir)`` if absent.

    ``build`` writes ``<split>.npy`` and ``<split>.offsets.npy`` into the
    folder it is given and returns extra metadata. Returns ``(entry, hit)``
    where ``hit`` is True when no build ran in this call.
    """
    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    name = entry_name(key)
    final = root / name
    if _complete(final):
        return CacheEntry(final, json.loads((final / META).read_text())), True
    with FileLock(str(root / f"{name}.lock")):
        if _complete(final):  # another job built it while we waited
            return CacheEntry(final, json.loads((final / META).read_text())), True
        for stale in root.glob(f".tmp-{name}-*"):  # left by a killed build; we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        if final.exists():  # incomplete, e.g. from an older crash: never trusted
            shutil.rmtree(final)
        tmp = root / f".tmp-{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            extra = build(tmp)
            meta = {"format": FORMAT_VERSION, "key": key, **extra}
            (tmp / META).write_text(json.dumps(meta, indent=2, default=str))
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return CacheEntry(final, meta), False
