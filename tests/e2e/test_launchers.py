"""The configured launchers and sweepers, run for real: submitit's local executor (the SLURM code path
without sbatch) and a 2-trial optuna study, the latter tracked in MLflow with a parent run per sweep."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


TINY = ["debug=smoke", "write_predictions=false"]


def _multirun(args, cwd: Path, conll_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CONLL2003_DIR": str(conll_dir), "MLFLOW_TRACKING_URI": ""}
    return subprocess.run([sys.executable, "-m", "bert_ner_probe", "-m", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """One feature cache for both sweeps (same data and encoder): the encoder runs once in this module."""
    return tmp_path_factory.mktemp("cache")


def _rows(sweep: Path):
    with open(sweep / "results.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_submitit_local_sweep(tmp_path, conll_dir, cache):
    sweep = tmp_path / "sweep"
    proc = _multirun(["hydra/launcher=submitit_local", "strategy=last,sum_all", "probe.hidden_size=16", *TINY,
                      f"cache_dir={cache}", f"hydra.sweep.dir={sweep}"], tmp_path, conll_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/results.json"))]
    assert sorted(r["strategy"] for r in results) == ["last", "sum_all"]
    assert sum(not r["cache_hit"] for r in results) <= 1  # the cache lock works across submitit's processes
    assert list(sweep.glob(".submitit/*")), "the jobs did not go through submitit"
    assert sorted(r["status"] for r in _rows(sweep)) == ["ok", "ok"]
    assert "| last " in (sweep / "table.md").read_text() and (sweep / "strategies.png").is_file()


def test_optuna_study_with_mlflow_parent_run(tmp_path, conll_dir, cache):
    from mlflow.tracking import MlflowClient

    sweep, uri = tmp_path / "sweep", f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = _multirun(["hydra/sweeper=optuna_search", "hydra.sweeper.n_trials=2", "strategy=last",
                      "probe.hidden_size=choice(16,32)", *TINY, "logger=mlflow", f"logger.tracking_uri={uri}",
                      f"cache_dir={cache}", f"hydra.sweep.dir={sweep}"], tmp_path, conll_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/results.json"))]
    assert len(results) == 2
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(max(r["dev"]["f1"] for r in results))
    assert set(best["best_params"]) == {"trainer.lr", "probe.hidden_size", "probe.dropout"}
    assert len(_rows(sweep)) == 2 and (sweep / "table.md").is_file()

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("bert_ner_probe")
    runs = client.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("bert_ner_probe.kind") == "sweep"]
    jobs = [r for r in runs if r.data.tags.get("bert_ner_probe.kind") == "job"]
    assert len(jobs) == 2
    assert {r.data.tags.get("mlflow.parentRunId") for r in jobs} == {parent.info.run_id}
    assert {r.data.tags["bert_ner_probe.sweep_dir"] for r in runs} == {str(sweep.resolve())}
    assert sorted(r.data.metrics["dev_f1"] for r in jobs) == pytest.approx(sorted(r["dev"]["f1"] for r in results))
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"table.md", "results.csv", "strategies.png", "optimization_results.yaml"} <= artifacts
    assert parent.data.metrics["runs"] == 2 and parent.data.metrics["failures"] == 0
