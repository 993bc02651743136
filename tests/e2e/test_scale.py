"""Encoders of other sizes and kinds through the command, on real CoNLL-2003 subsets.

A random base-size BERT (``BertConfig()``'s shapes, MiniLM's tokenizer: a folder without weights), tiny
random GPT-2 and Llama-style decoders with tokenizers trained in the tests, ``encoder.layers``, and a cache
folder that cannot hold the entry (a real file-size limit, ``RLIMIT_FSIZE``). Each run is a subprocess, one
thread, no progress bars.
"""

from __future__ import annotations

import csv
import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import pytest
from cli_output import one_error_line

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]
FAST = ["threads=1", "progress=false", "device=cpu", "trainer.epochs=1"]
SMALL_BILSTM = ["probe.hidden_size=16", "probe.num_layers=1"]  # for the runs of the BiLSTM probe


def _limits(train: int, dev: int = 20, test: int = 20) -> List[str]:
    return [f"data.limit.train={train}", f"data.limit.dev={dev}", f"data.limit.test={test}"]


def _run(args: List[str], cwd: Path, file_size_limit: Optional[int] = None,
         timeout: int = 600) -> subprocess.CompletedProcess:
    """``python -m bert_ner_probe ARGS``, under a file-size limit (bytes) when one is given."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return subprocess.run([sys.executable, "-m", "bert_ner_probe", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, preexec_fn=limit if file_size_limit else None)


def _ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def _entries(cache: Path) -> List[Path]:
    return sorted(p for p in cache.iterdir() if p.is_dir()) if cache.is_dir() else []


def _results(sweep: Path) -> Dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(sweep.glob("*/results.json"))}


def test_a_random_base_size_encoder_runs_and_is_named_after_its_folder(tmp_path, conll_dir, encoder_folders):
    """12 layers × 768 (BERT-base's shapes) on 40 training sentences: every layer cached in its own file, the
    run, its report section and results.csv named after the folder, not after the default encoder group."""
    sweep, cache = tmp_path / "sweep", tmp_path / "cache"
    proc = _run(["-m", f"encoder.name_or_path={encoder_folders['base']}", "encoder.weights=random",
                 "encoder.context=sentence", "strategy=sum_all", "probe=linear", f"data.dir={conll_dir}",
                 *_limits(40), *FAST, f"cache_dir={cache}", f"hydra.sweep.dir={sweep}"], tmp_path)
    _ok(proc)
    (r,) = _results(sweep).values()
    assert (r["encoder_name"], r["num_layers"], r["layers"], r["causal"], r["pooling"]) == (
        "bert-base-random", 12, list(range(1, 13)), False, "first")
    assert r["peak_rss_mb"] > 100 and r["peak_rss_scope"] == "job" and "peak RSS" in proc.stdout
    (entry,) = _entries(cache)
    assert sorted(p.name for p in entry.glob("train.h*.npy")) == [f"train.h{h:02d}.npy" for h in range(13)]
    words = r["sizes"]["train"]["words"]
    assert (entry / "train.h07.npy").stat().st_size == 128 + words * 768 * 2  # (words, 768) float16
    table = (sweep / "table.md").read_text()
    assert "## bert-base-random (12 layers) · pooling first · context sentence" in table
    assert "minilm" not in table
    assert "Time and memory per job:" in table and "peak RSS" in table
    with open(sweep / "results.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["encoder_name"] == "bert-base-random" and float(row["peak_rss_mb"]) == r["peak_rss_mb"]


def test_decoders_are_read_as_causal_and_pool_their_last_sub_token(tmp_path, conll_dir, encoder_folders):
    """Tiny GPT-2 and Llama-style decoders (trained BPE tokenizers, no pad token; Llama's puts a BOS first) in
    document context: ``pooling=auto`` is the last sub-token and says so; an explicit ``pooling=first`` still
    works; results.json and the report's section headers say the encoder is causal. The jobs run in one
    process, and each records its own peak RSS."""
    sweep, cache = tmp_path / "sweep", tmp_path / "cache"
    encoders = f"{encoder_folders['gpt2']},{encoder_folders['llama']}"
    proc = _run(["-m", f"encoder.name_or_path={encoders}", "pooling=auto,first", "encoder.weights=random",
                 "encoder.context=document", f"data.dir={conll_dir}", *_limits(60), *FAST, *SMALL_BILSTM,
                 f"cache_dir={cache}", f"hydra.sweep.dir={sweep}"], tmp_path)
    _ok(proc)
    runs = _results(sweep)
    assert len(runs) == 4
    got = sorted((r["encoder_name"], r["config"]["pooling"]["method"], r["pooling"], r["causal"], r["context"])
                 for r in runs.values())
    assert got == [("tiny-gpt2", "auto", "last", True, "document"), ("tiny-gpt2", "first", "first", True, "document"),
                   ("tiny-llama", "auto", "last", True, "document"), ("tiny-llama", "first", "first", True, "document")]
    for r in runs.values():
        assert r["num_layers"] == 2 and r["status"] == "ok" and r["peak_rss_scope"] == "job"
    assert len({r["cache_entry"] for r in runs.values()}) == 4
    meta = json.loads((Path(next(iter(runs.values()))["cache_entry"]) / "meta.json").read_text())
    assert meta["key"]["causal"] is True and meta["causal"] is True
    table = (sweep / "table.md").read_text()
    for name in ("tiny-gpt2", "tiny-llama"):
        assert f"## {name} (2 layers, causal) · pooling last · context document" in table
        assert f"## {name} (2 layers, causal) · pooling first · context document" in table


def test_encoder_layers_caches_some_hidden_states_and_a_strategy_needing_others_is_one_error(tmp_path, conll_dir):
    cache = tmp_path / "cache"
    data = [f"data.dir={conll_dir}", *_limits(30), *FAST, *SMALL_BILSTM, f"cache_dir={cache}"]
    _ok(_run([*data, "strategy=last", "encoder.layers=[0,-1]", f"hydra.run.dir={tmp_path / 'last'}"], tmp_path))
    (entry,) = _entries(cache)
    assert sorted(p.name for p in entry.glob("*.h*.npy")) == [f"{s}.h{h:02d}.npy" for s in ("dev", "test", "train")
                                                             for h in (0, 6)]
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["hidden_states"] == [0, 6] and meta["key"]["hidden_states"] == [0, 6]
    r = json.loads((tmp_path / "last" / "results.json").read_text())
    assert r["layers"] == [6] and r["status"] == "ok"

    proc = _run([*data, "strategy=sum_all", "encoder.layers=[0,-1]", f"hydra.run.dir={tmp_path / 'sum_all'}"],
                tmp_path)
    line = one_error_line(proc)
    assert line == ("error: strategy=sum_all reads hidden states 1–6, but the cache entry of encoder.layers=[0, 6] "
                    "holds 0, 6 only (missing: 1–5): add them to encoder.layers, or drop it to cache all 7")
    assert _entries(cache) == [entry]  # nothing extracted
    # the cache entry of every hidden state is another entry: the key holds encoder.layers
    _ok(_run([*data, "strategy=last", f"hydra.run.dir={tmp_path / 'all'}"], tmp_path))
    assert len(_entries(cache)) == 2


def test_a_file_size_limit_is_one_error_naming_the_folder_and_bytes_and_a_sweep_keeps_its_finished_runs(
        tmp_path, conll_dir):
    """Under ``ulimit -f`` (RLIMIT_FSIZE, 300 KiB: the run's own small files fit, a cache file does not) the
    extraction fails as the cache files are created, before the encoder runs: exit 2, one error line with the
    folder and the entry's bytes, no entry and no temporary folder. In a sweep the job that needed the entry
    fails alone (its error.json); the job whose entry was cached finishes."""
    cache = tmp_path / "cache"
    data = [f"data.dir={conll_dir}", *_limits(60), *FAST, *SMALL_BILSTM, f"cache_dir={cache}"]
    limit = 300 * 1024
    proc = _run([*data, f"hydra.run.dir={tmp_path / 'limited'}"], tmp_path, file_size_limit=limit)
    line = one_error_line(proc)
    assert line.startswith("error: writing cache entry ") and f" into {cache} failed: File too large (EFBIG" in line
    assert f"the file-size limit (ulimit -f) is {limit:,} bytes" in line and " bytes, " in line
    assert not cache.is_dir() or [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == []
    assert not (tmp_path / "limited" / "results.json").exists()

    _ok(_run([*data, "pooling=first", f"hydra.run.dir={tmp_path / 'first'}"], tmp_path))  # no limit: cached
    sweep = tmp_path / "sweep"
    proc = _run(["-m", "pooling=first,mean", *data, f"hydra.sweep.dir={sweep}"], tmp_path, file_size_limit=limit)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    runs = _results(sweep)
    assert list(runs) == ["0"] and runs["0"]["pooling"] == "first" and runs["0"]["cache_hit"] is True
    error = json.loads((sweep / "1" / "error.json").read_text())
    assert error["status"] == "failed" and "File too large" in error["error"] and str(cache) in error["error"]
    assert len(_entries(cache)) == 1 and not list(cache.glob(".tmp-*"))
