"""Experiment tracking (bert_ner_probe/tracking.py): a real MLflow sqlite store and real TensorBoard event files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from bert_ner_probe.errors import UserError
from bert_ner_probe.report.callback import write_report
from bert_ner_probe.tracking import check_logger, job_metrics, log_job, log_sweep

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def mlflow_run(tmp_path_factory, conll_dir):
    """The run from issue 14, ``logger=mlflow`` into a sqlite store in a temp folder, through the API.

    ``api.probe`` tracks as the command's job does (the same ``log_job``); MLFLOW_TRACKING_URI is
    unset so the store comes from ``logger.tracking_uri`` alone, and the run starts in the temp
    folder, where MLflow puts a sqlite store's artifacts (``./mlruns``).
    """
    from bert_ner_probe.api import probe

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.chdir(root)
        probe(["logger=mlflow", f"logger.tracking_uri={uri}", "strategy=last", "data.limit.train=200",
               "trainer.epochs=2", "data.limit.dev=100", "data.limit.test=100", "probe.hidden_size=32",
               "trainer.lr=0.01", "threads=1", "progress=false", f"data.dir={conll_dir}",
               f"cache_dir={root / 'cache'}"], out_dir=root / "run")
    return root, uri, json.loads((root / "run" / "results.json").read_text())


def test_mlflow_run_holds_params_epoch_curves_metrics_and_artifacts(mlflow_run):
    from mlflow.tracking import MlflowClient

    root, uri, results = mlflow_run
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("bert_ner_probe")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "last seed=1"
    params = run.data.params
    assert params["strategy.name"] == "last" and params["data.limit.train"] == "200"
    assert params["trainer.epochs"] == "2" and params["logger.name"] == "mlflow"
    curve = client.get_metric_history(run.info.run_id, "epoch_dev_f1")
    assert [(m.step, m.value) for m in sorted(curve, key=lambda m: m.step)] == [
        (h["epoch"], h["dev_f1"]) for h in results["history"]]
    loss = client.get_metric_history(run.info.run_id, "epoch_train_loss")
    assert sorted(m.step for m in loss) == [1, 2]
    metrics = run.data.metrics
    assert metrics["dev_f1"] == pytest.approx(results["dev"]["f1"])
    assert metrics["test_f1_PER"] == pytest.approx(results["test"]["per_type"]["PER"]["f1"])
    assert metrics["train_s"] == pytest.approx(results["timings"]["train_s"])
    top = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"results.json", "predictions"} <= top
    preds = {a.path for a in client.list_artifacts(run.info.run_id, "predictions")}
    assert preds == {"predictions/dev.conll", "predictions/test.conll"}
    local = client.download_artifacts(run.info.run_id, "results.json", str(root / "dl"))
    assert json.loads(Path(local).read_text())["dev"] == results["dev"]


def test_job_metrics_are_named_like_results_csv(mlflow_run):
    _, _, results = mlflow_run
    report = write_report(mlflow_run[0] / "run")
    header = report["csv"].read_text().splitlines()[0].split(",")
    names = set(job_metrics(results))
    assert {"dev_f1", "test_recall", "dev_f1_LOC", "best_epoch", "extract_s"} <= names
    assert {n for n in names if n.startswith(("dev_f1", "test_f1")) or n.endswith("_s")} <= set(header)


def test_tensorboard_job_and_sweep(mlflow_run, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root, _, results = mlflow_run
    cfg = OmegaConf.create({"logger": {"name": "tensorboard", "log_dir": str(tmp_path / "tb")}})
    log_job(cfg, results, root / "run")
    (events,) = (tmp_path / "tb").iterdir()
    acc = EventAccumulator(str(events)).Reload()
    curve = [(e.step, e.value) for e in acc.Scalars("epoch_dev_f1")]
    assert curve == [(h["epoch"], pytest.approx(h["dev_f1"])) for h in results["history"]]
    assert acc.Scalars("final/dev_f1")[0].value == pytest.approx(results["dev"]["f1"])

    report = write_report(root / "run", tmp_path / "report")
    log_sweep(cfg, tmp_path / "report", report)
    acc = EventAccumulator(str(tmp_path / "report" / "tensorboard"), size_guidance={"images": 0}).Reload()
    assert "strategies" in acc.Tags()["images"]


def test_a_tracker_that_is_not_installed_is_one_user_error(monkeypatch):
    check_logger(OmegaConf.create({"name": "none"}))
    with pytest.raises(UserError, match=r"logger='wandb': expected one of none \| mlflow \| tensorboard"):
        check_logger(OmegaConf.create({"name": "wandb"}))
    monkeypatch.setitem(sys.modules, "mlflow", None)  # what Python does for a package that is not there
    with pytest.raises(UserError, match=r"logger=mlflow needs the mlflow package.*pip install"):
        check_logger(OmegaConf.create({"name": "mlflow"}))
