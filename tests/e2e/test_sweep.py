"""Multiruns end to end on real CoNLL-2003 subsets: the report, failures, and a parallel-safe cache."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


TINY = ["debug=smoke", "write_predictions=false"]


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _multirun(args, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "bert_ner_probe", "-m", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)


def _results(sweep: Path):
    return [json.loads(p.read_text()) for p in sorted(sweep.glob("*/results.json"))]


def test_sweep_with_a_failing_job_reports_everything(tmp_path, conll_dir):
    sweep = tmp_path / "sweep"
    proc = _multirun(["strategy=last,sum_all,layer", "strategy.index=9", "seed=1,2", *TINY, f"data.dir={conll_dir}",
                      f"cache_dir={tmp_path / 'cache'}", f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    # layer 9 does not exist in the 6-layer MiniLM: those two jobs fail, the sweep goes on,
    # the report is written, and the command exits non-zero.
    assert proc.returncode != 0, proc.stdout[-2000:]
    results = _results(sweep)
    assert sorted((r["strategy"], r["seed"]) for r in results) == [
        ("last", 1), ("last", 2), ("sum_all", 1), ("sum_all", 2)]
    assert sum(not r["cache_hit"] for r in results) == 1
    assert len(list(sweep.glob("*/error.json"))) == 2
    # Jobs run strategy by strategy, seeds inside: seed 2 reuses seed 1's combined features ...
    assert {(r["strategy"], r["seed"]): r["features_reused"] for r in results} == {
        ("last", 1): False, ("last", 2): True, ("sum_all", 1): False, ("sum_all", 2): True}
    # ... and gets exactly what a run that shares nothing gets (api.probe: a fresh Session, no reuse).
    from bert_ner_probe.api import probe

    single = tmp_path / "single"
    probe(["strategy=sum_all", "seed=2", *TINY, f"data.dir={conll_dir}", f"cache_dir={tmp_path / 'cache'}"],
          out_dir=single)
    alone = json.loads((single / "results.json").read_text())
    swept = next(r for r in results if (r["strategy"], r["seed"]) == ("sum_all", 2))
    assert alone["features_reused"] is False
    assert [h["train_loss"] for h in alone["history"]] == [h["train_loss"] for h in swept["history"]]
    assert alone["dev"] == swept["dev"] and alone["test"] == swept["test"]

    with open(sweep / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6
    assert sorted(r["status"] for r in rows) == ["failed"] * 2 + ["ok"] * 4
    ok_f1 = sorted(float(r["dev_f1"]) for r in rows if r["status"] == "ok")
    assert ok_f1 == sorted(r["dev"]["f1"] for r in results)
    # What "auto" resolved to is in the table too, per run.
    ok_rows = [r for r in rows if r["status"] == "ok"]
    assert {r["encoder_dtype_resolved"] for r in ok_rows} == {results[0]["encoder_dtype"]}
    assert {r["precision_resolved"] for r in ok_rows} == {results[0]["precision"]}
    assert sorted(r["features_reused"] for r in ok_rows) == ["False", "False", "True", "True"]

    table = (sweep / "table.md").read_text()
    lines = [ln for ln in table.splitlines() if ln.startswith("| last ") or ln.startswith("| sum_all ")]
    assert [ln.split("|")[1].strip() for ln in lines] == ["last", "sum_all"]  # Table 7 order
    for ln in lines:
        assert "| 2 |" in ln.replace("  ", " ")  # two seeds per row
    assert "94.9" in table and "95.5" in table  # the paper's column
    assert table.count("strategy=layer strategy.index=9") >= 2 and "0..6" in table  # failures listed with their error

    png = (sweep / "strategies.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 5000


def test_parallel_jobs_extract_once(tmp_path, conll_dir):
    sweep = tmp_path / "sweep"
    # Two jobs in two joblib worker processes at once: one extracts, the other waits on the cache's lock.
    proc = _multirun(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "strategy=last,sum_all",
                      *TINY, f"data.dir={conll_dir}", f"cache_dir={tmp_path / 'cache'}",
                      f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = _results(sweep)
    assert len(results) == 2
    assert sorted(r["cache_hit"] for r in results) == [False, True]
    assert sum(r["encoder_passes"] for r in results) > 0
    assert len(list((tmp_path / "cache").glob("*/meta.json"))) == 1
    assert not list((tmp_path / "cache").glob(".tmp-*"))


def test_kept_features_are_dropped_before_a_job_that_wants_others():
    import torch

    from bert_ner_probe.training.tagging_data import FeatureReuse

    reuse = FeatureReuse()
    x = {"train": torch.zeros(2, 3)}
    reuse.key, reuse.x = ("wanted-a", "/cache/entry-a"), x
    reuse.forget(unless="wanted-a")  # the next job wants the same: kept for reuse
    assert reuse.x is x and reuse.key == ("wanted-a", "/cache/entry-a")
    reuse.forget(unless="wanted-b")  # another strategy, encoder or data: dropped now
    assert reuse.key is None and reuse.x == {}
    reuse.forget(unless="wanted-b")  # nothing kept: nothing to do
    assert FeatureReuse().key is None  # a new object keeps nothing: no state shared between objects
