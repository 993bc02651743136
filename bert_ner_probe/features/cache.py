"""On-disk feature cache: every cached hidden state of every word, extracted once, one file per hidden state.

One entry per key (encoder and its weights, data content and limits,
pooling, context, dtype, window settings, the hidden states kept), in
``<root>/<slug>-<hash>/``::

    meta.json                  the key, the hidden states held, shapes and extraction counters
    <split>.h<NN>.npy          hidden state NN of every word: Shape: (words, width), float16
    <split>.offsets.npy        Shape: (sentences + 1,), int64 word offsets

Each hidden state is its own file, so a job that reads ``k`` of an entry's
``L`` hidden states reads ``k/L`` of its bytes (:meth:`SplitFeatures.state`).
An entry holds every hidden state ``0..N`` of the encoder, or the ones
``encoder.layers`` names (part of the key). Entries of the older layout
(:data:`LAYOUT` 1: one ``<split>.npy`` of Shape: (words, N + 1, width)) are
rebuilt in this one with one warning line naming them.

An entry is written into a temporary sibling folder and renamed into place
only when complete, so a killed extraction never leaves an entry a later run
trusts. A file lock per entry makes parallel jobs extract once: the first
takes the lock and builds, the others wait and then read the finished entry.
Each feature file is flushed to disk (``fsync``) before its entry is
completed, so jobs on other nodes of a shared filesystem read what was written.

Before a build the entry's size (:func:`entry_bytes`) is checked against the
cache filesystem's free space; a build that fails on a full disk or a
file-size limit (ENOSPC, EFBIG, EDQUOT) leaves no entry. Either is one
:class:`CacheSpaceError` line naming the folder and the bytes.

Nothing damaged is trusted: ``meta.json`` records each file's byte size, a
checksum over sampled blocks (:func:`file_record`, cheap enough for every
open) and a CRC-32 of the whole file (for ``bert-ner-probe-cache verify
--full``). Opening an entry checks sizes and sampled checksums; a damaged or
incomplete entry is rebuilt under the lock with one warning line, or, with
``rebuild=False``, is a :class:`CacheError` naming it. Each open touches
``last_used`` in the entry, which ``bert-ner-probe-cache`` lists and prunes by.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import resource
import shutil
import time
import uuid
import zlib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import numpy as np
from filelock import FileLock

from bert_ner_probe.errors import UserError
from bert_ner_probe.features.row_file import npy_bytes
from bert_ner_probe.hidden_states import states_text

FORMAT_VERSION = 3  # bump whenever extraction changes what a feature holds (it names the entry)
LAYOUT = 2  # the files of an entry: 2 = one file per hidden state (meta.json's "layout"; 1 = one file per split)
META = "meta.json"
LAST_USED = "last_used"  # touched at every open; its mtime is the entry's last use
SAMPLE_BLOCKS = 64  # blocks read per file by the sampled checksum ...
SAMPLE_BLOCK_BYTES = 1 << 14  # ... of 16 KiB each: at most 1 MiB per file and open
_CHUNK = 1 << 24
log = logging.getLogger(__name__)


class CacheError(UserError):
    """A damaged cache entry that may not be rebuilt (``cache.rebuild=false``)."""


class CacheDamaged(CacheError):
    """An entry that passed its checks at open but whose files a whole-file check finds damaged."""

    def __init__(self, path: Path, why: str, found: str) -> None:
        self.path, self.why = Path(path), why
        super().__init__(f"cache entry {self.path} is damaged: {why} ({found}; the sampled checksums at open "
                         f"missed it); remove it (bert-ner-probe-cache rm {self.path.name}; "
                         "bert-ner-probe-cache verify --full checks every entry) or set cache.rebuild=true "
                         "to rebuild it")


class CacheSpaceError(UserError):
    """An entry that does not fit: too little free space before its build, or a write that failed in it."""


def state_file(split: str, state: int) -> str:
    """The file of hidden state ``state`` of ``split``: ``<split>.h<NN>.npy``."""
    return f"{split}.h{state:02d}.npy"


def offsets_file(split: str) -> str:
    return f"{split}.offsets.npy"


@dataclass
class SplitFeatures:
    """The features of one split: one memory-mappable file per hidden state, and the sentence offsets."""

    path: Path  # the entry's folder
    name: str  # the split
    states: Tuple[int, ...]  # the hidden states the entry holds, ascending
    offsets: np.ndarray  # Shape: (sentences + 1,)

    @property
    def num_sentences(self) -> int:
        return len(self.offsets) - 1

    @property
    def num_words(self) -> int:
        return int(self.offsets[-1])

    def file(self, state: int) -> Path:
        """The file of hidden state ``state`` (a :class:`UserError` naming what the entry holds if it is not there)."""
        if state not in self.states:
            raise UserError(f"cache entry {self.path} holds hidden states {states_text(self.states)}, not {state} "
                            "(encoder.layers chose them)")
        return self.path / state_file(self.name, state)

    def state(self, state: int) -> np.ndarray:
        """Hidden state ``state`` of every word: Shape: (words, width), float16, a read-only memory map."""
        return np.load(self.file(state), mmap_mode="r")

    def stack(self, start: int = 0, stop: Optional[int] = None) -> np.ndarray:
        """Words ``start:stop`` with every hidden state the entry holds, in memory: Shape: (words, states, width)."""
        return np.stack([np.asarray(self.state(h)[start:stop]) for h in self.states], axis=1)


@dataclass(frozen=True)
class CacheKey:
    """What an entry's features depend on, and nothing else: an entry is one key (``meta.json``'s ``"key"``).

    Built by :func:`bert_ner_probe.features.store.cache_key`; :meth:`as_dict` is
    the stored (and hashed) form, :meth:`of` reads it back. The strategy, seed,
    tagger and trainer are not in it, so every strategy and restart reuses one
    extraction; :data:`CONFIG_FIELDS` and :data:`SPEED_ONLY_FIELDS` say which
    config fields change the features and which change only the extraction's speed.
    """

    encoder: str  # encoder.name_or_path
    encoder_hash: str  # hash of the encoder's files
    data: str  # the corpus content hash (limits included)
    sentences: Dict[str, int]  # sentences per split, after limits
    pooling: str
    context: str
    dtype: str  # the encoder's resolved dtype, e.g. "bfloat16"
    max_length: Optional[int]
    max_pieces_per_word: int
    splits: Optional[List[str]] = None  # only for an entry of some splits, which never stands in for a full one
    weights: Optional[str] = None  # "random" for a random-weights encoder (the baseline); None = pretrained
    weights_seed: Optional[int] = None  # the random weights' seed; None = pretrained
    hidden_states: Optional[List[int]] = None  # the hidden states kept (encoder.layers), ascending; None = all 0..N
    causal: Optional[bool] = None  # True for a causal encoder (its own window rule); None = bidirectional

    #: The config field behind each key field that is configured (the others are computed).
    CONFIG_FIELDS = {"encoder": "encoder.name_or_path", "pooling": "pooling.method", "context": "encoder.context",
                     "dtype": "encoder.dtype", "max_length": "encoder.max_length",
                     "max_pieces_per_word": "encoder.max_pieces_per_word", "weights": "encoder.weights",
                     "weights_seed": "encoder.weights_seed", "hidden_states": "encoder.layers",
                     "causal": "encoder.causal"}
    #: Extraction settings outside the key: they change how fast features are extracted, never a feature.
    SPEED_ONLY_FIELDS = ("encoder.batch_size", "encoder.max_tokens", "encoder.device_map")
    #: Key fields that say which features an entry stores, not what any of them holds.
    STORAGE_ONLY_FIELDS = ("encoder.layers",)

    def as_dict(self) -> Dict[str, Any]:
        """The stored form (the optional fields only when set, so the key and name of a full entry of a
        bidirectional encoder's pretrained weights are the same as before those fields existed)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        for optional in ("splits", "weights", "weights_seed", "hidden_states", "causal"):
            if out[optional] is None:
                del out[optional]
        return out

    @classmethod
    def of(cls, key: Dict[str, Any]) -> "CacheKey":
        """The typed key of a stored one (``meta["key"]``, or :meth:`as_dict`'s output)."""
        return cls(**key)


@dataclass
class CacheEntry:
    path: Path
    meta: Dict[str, Any]

    @property
    def key(self) -> CacheKey:
        """The entry's key, typed."""
        return CacheKey.of(self.meta["key"])

    @property
    def hidden_states(self) -> Tuple[int, ...]:
        """The hidden states the entry holds, ascending."""
        return tuple(int(h) for h in self.meta["hidden_states"])

    def split(self, name: str) -> SplitFeatures:
        return SplitFeatures(self.path, name, self.hidden_states, np.load(self.path / offsets_file(name)))


def entry_bytes(words: Dict[str, int], sentences: Dict[str, int], states: int, width: int) -> int:
    """The size of an entry's files: per split, ``states`` files of Shape: (words, width) float16 and the offsets."""
    return sum(states * npy_bytes((words[split], width)) + npy_bytes((sentences[split] + 1,), np.int64)
               for split in words)


def disk_free(path: Path) -> int:
    """Bytes free for this user on the filesystem of ``path``."""
    return shutil.disk_usage(path).free


def human_size(n: float) -> str:
    """``1536`` → ``1.5 K``, binary units."""
    for unit in ("B", "K", "M", "G", "T"):
        if n < 1024 or unit == "T":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def default_root() -> Path:
    """``$BERT_NER_PROBE_CACHE`` or ``~/.cache/bert_ner_probe``."""
    return Path(os.environ.get("BERT_NER_PROBE_CACHE", Path.home() / ".cache" / "bert_ner_probe"))


def entry_name(key: Dict[str, Any]) -> str:
    """``<encoder slug>-<16 hex digits of the key's hash>``."""
    blob = json.dumps({"format": FORMAT_VERSION, **key}, sort_keys=True, default=str)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:16]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(key.get("encoder", "encoder")).split("/")[-1])[-40:]
    return f"{slug}-{digest}"


def sampled_digest(path: Path, size: int) -> str:
    """sha256 over the file's size and :data:`SAMPLE_BLOCKS` evenly spaced blocks (the whole file when small).

    The blocks start at ``round(i * (size - block) / (blocks - 1))`` for ``i = 0 … blocks - 1``, so the
    first and last bytes (the ``.npy`` header and the tail a cut-off copy loses) are always read.
    """
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as fh:
        if size <= SAMPLE_BLOCKS * SAMPLE_BLOCK_BYTES:
            h.update(fh.read())
        else:
            step = (size - SAMPLE_BLOCK_BYTES) / (SAMPLE_BLOCKS - 1)
            for i in range(SAMPLE_BLOCKS):
                fh.seek(round(i * step))
                h.update(fh.read(SAMPLE_BLOCK_BYTES))
    return h.hexdigest()


def full_crc32(path: Path) -> int:
    """CRC-32 of the whole file, for a full verify."""
    crc = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            crc = zlib.crc32(chunk, crc)
    return crc


def file_record(path: Path) -> Dict[str, Any]:
    """What ``meta.json`` keeps of one file: ``{"bytes", "sampled_sha256", "crc32"}``."""
    size = path.stat().st_size
    return {"bytes": size, "sampled_sha256": sampled_digest(path, size), "crc32": full_crc32(path)}


def check_entry(path: Path, full: bool = False, only: Optional[Iterable[str]] = None) -> Optional[str]:
    """Why the entry folder ``path`` cannot be trusted, or None when it is intact.

    Checks that ``meta.json`` reads and records its files, then each file's size and
    sampled checksum (and with ``full`` its whole-file CRC-32); ``only``: these files alone.
    """
    if not (path / META).is_file():
        return f"no {META}: the entry is incomplete"
    try:
        meta = json.loads((path / META).read_text())
        files = meta["files"]
        if not isinstance(files, dict) or not files:
            raise KeyError("files")
    except (OSError, ValueError, KeyError, TypeError):
        return f"{META} is unreadable or records no file sizes and checksums (an older or damaged entry)"
    wanted = None if only is None else set(only)
    for name, rec in files.items():
        if wanted is not None and name not in wanted:
            continue
        p = path / name
        try:
            size = p.stat().st_size
        except OSError:
            return f"{name} is missing"
        if size != rec.get("bytes"):
            return f"{name} holds {size} bytes, {META} records {rec.get('bytes')} (truncated or overwritten)"
        if sampled_digest(p, size) != rec.get("sampled_sha256"):
            return f"{name} differs from its checksum in {META} (overwritten)"
        if full and full_crc32(p) != rec.get("crc32"):
            return f"{name} differs from its whole-file CRC-32 in {META} (overwritten)"
    return None


def _touch(path: Path) -> None:
    """Record a use of the entry (a read-only cache just does not record it)."""
    try:
        (path / LAST_USED).touch()
    except OSError:
        pass


def old_layout(meta: Optional[Dict[str, Any]]) -> bool:
    """Whether an entry's ``meta.json`` is of the older layout (one file of every hidden state per split)."""
    return meta is not None and meta.get("layout") != LAYOUT


OLD_LAYOUT = ("it is of the older layout, one file of every hidden state per split (the layout now is one file "
              "per hidden state, so that a job reads only the hidden states it uses)")


def _open_checked(final: Path) -> Tuple[Optional[CacheEntry], Optional[str]]:
    """``(entry, None)`` for an intact entry, ``(None, why)`` for a damaged or old one, ``(None, None)`` if absent."""
    if not final.exists():
        return None, None
    why = check_entry(final)
    if why is not None:
        return None, why
    meta = json.loads((final / META).read_text())
    if old_layout(meta):
        return None, OLD_LAYOUT
    _touch(final)
    return CacheEntry(final, meta), None


def _damaged(final: Path, why: str) -> CacheError:
    what = "cannot be read" if why == OLD_LAYOUT else "is damaged"
    return CacheError(f"cache entry {final} {what}: {why}; remove it (bert-ner-probe-cache rm {final.name}) "
                      "or set cache.rebuild=true to rebuild it")


def _check_space(root: Path, name: str, size: int, free_bytes: Callable[[Path], int]) -> None:
    """A :class:`CacheSpaceError` when ``root``'s filesystem has less than ``size`` bytes free."""
    free = int(free_bytes(root))
    if free < size:
        raise CacheSpaceError(
            f"cache entry {name} needs {size:,} bytes ({human_size(size)}), but {root} has {free:,} bytes "
            f"({human_size(free)}) free: free some space (bert-ner-probe-cache prune --max-size SIZE), point "
            "cache_dir at a larger disk, or cache fewer hidden states (encoder.layers)")


_SPACE_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


def _write_failed(root: Path, name: str, size: Optional[int], e: OSError) -> CacheSpaceError:
    """A write of the entry that failed for want of room, as one line naming the folder and the bytes."""
    needed = "" if size is None else f" ({size:,} bytes, {human_size(size)})"
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    hint = (f"the file-size limit (ulimit -f) is {limit:,} bytes; raise it or" if e.errno == errno.EFBIG
            and limit != resource.RLIM_INFINITY else "free some space,")
    return CacheSpaceError(
        f"writing cache entry {name}{needed} into {root} failed: {os.strerror(e.errno)} "
        f"({errno.errorcode.get(e.errno, e.errno)}{f', {Path(e.filename).name}' if e.filename else ''}); "
        f"no entry was left: {hint} point cache_dir at a larger disk, or cache fewer hidden states "
        "(encoder.layers)")


def get_or_build(
    root: os.PathLike | str,
    key: Dict[str, Any],
    build: Callable[[Path], Dict[str, Any]],
    rebuild: bool = True,
    size: Optional[int] = None,
    free_bytes: Callable[[Path], int] = disk_free,
) -> Tuple[CacheEntry, bool]:
    """Return the entry for ``key``, building it with ``build(tmp_dir)`` if absent, damaged or of the old layout.

    ``build`` writes ``<split>.h<NN>.npy`` and ``<split>.offsets.npy`` into the
    folder it is given and returns extra metadata (``hidden_states`` among it).
    Returns ``(entry, hit)`` where ``hit`` is True when no build ran in this
    call. A damaged or old entry (see :func:`check_entry`) is rebuilt with one
    warning, or raises :class:`CacheError` when ``rebuild`` is False. ``size``:
    the entry's bytes (:func:`entry_bytes`), checked against ``free_bytes(root)``
    before a build starts; a build that fails for want of room leaves nothing.
    Both are a :class:`CacheSpaceError`.
    """
    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    name = entry_name(key)
    final = root / name
    entry, why = _open_checked(final)
    if entry is not None:
        return entry, True
    if why is not None and not rebuild:
        raise _damaged(final, why)
    with FileLock(str(root / f"{name}.lock")):
        entry, why = _open_checked(final)
        if entry is not None:  # another job built it while we waited
            return entry, True
        if why is not None:
            if not rebuild:
                raise _damaged(final, why)
            if why == OLD_LAYOUT:
                log.warning("cache entry %s is of the older one-file layout: rebuilding it with one file per "
                            "hidden state", final)
            else:
                log.warning("cache entry %s is damaged (%s): rebuilding it", final, why)
        for stale in root.glob(f".tmp-{name}-*"):  # left by a killed build; we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        if final.exists():  # damaged, incomplete or old: never trusted
            shutil.rmtree(final)
        if size is not None:
            _check_space(root, name, size, free_bytes)
        tmp = root / f".tmp-{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            tmp.mkdir()
            extra = build(tmp)
            files = {p.name: file_record(p) for p in sorted(tmp.iterdir()) if p.is_file()}
            meta = {"format": FORMAT_VERSION, "layout": LAYOUT, "key": key, **extra, "created": time.time(),
                    "files": files}
            (tmp / META).write_text(json.dumps(meta, indent=2, default=str))
            (tmp / LAST_USED).touch()
            os.replace(tmp, final)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            if e.errno in _SPACE_ERRNOS:
                raise _write_failed(root, name, size, e) from None
            raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return CacheEntry(final, meta), False


# --------------------------------------------------------------------------- listing and removal


@dataclass
class EntryInfo:
    """One folder of the cache as ``bert-ner-probe-cache`` shows it."""

    name: str
    path: Path
    meta: Optional[Dict[str, Any]]  # None when meta.json is missing or unreadable
    bytes: int
    last_used: float  # seconds since the epoch: last_used's mtime, else meta.json's, else the folder's


def _folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def list_entries(root: os.PathLike | str) -> List[EntryInfo]:
    """Every entry folder under ``root`` (temporary build folders and locks skipped), least recently used first."""
    root = Path(root).expanduser()
    if not root.is_dir():
        return []
    out = []
    for path in root.iterdir():
        if not path.is_dir() or path.name.startswith("."):
            continue
        try:
            meta = json.loads((path / META).read_text())
        except (OSError, ValueError):
            meta = None
        stamps = [p for p in (path / LAST_USED, path / META, path) if p.exists()]
        out.append(EntryInfo(path.name, path, meta, _folder_bytes(path), stamps[0].stat().st_mtime))
    return sorted(out, key=lambda e: (e.last_used, e.name))


def remove_entry(root: os.PathLike | str, name: str) -> int:
    """Delete one entry folder under its lock (waiting for a build of it to end); return the bytes freed.

    Raises :class:`UserError` when ``name`` is no entry of ``root``.
    """
    root = Path(root).expanduser()
    path = root / name
    if "/" in name or name.startswith(".") or not path.is_dir():
        raise UserError(f"{path}: no such cache entry (see bert-ner-probe-cache list)")
    with FileLock(str(root / f"{name}.lock")):
        freed = _folder_bytes(path)
        shutil.rmtree(path)
    return freed
