"""The report over synthetic run folders: results.json written by the code that writes it for a run
(:func:`~bert_ner_probe.results.record.results_record` and :func:`~bert_ner_probe.results.record.write_results`,
with the real composed config), made-up scores: this tests the report, not training."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import matplotlib.image
import pytest
import torch
import yaml
from omegaconf import OmegaConf

from bert_ner_probe.data.corpus import SPLITS, Corpus, Sentence, Split
from bert_ner_probe.multirun import ReportCallback
from bert_ner_probe.report.callback import cli, write_report
from bert_ner_probe.report.rows import format_mean_std
from bert_ner_probe.results.record import results_record, write_results
from bert_ner_probe.training.trainer import DevScore, TrainResult, close_epoch

NUM_LAYERS = 6
LABELS = ["O", "B-PER", "I-PER"]


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DEV_F1 = DevScore("dev_f1", of_labels=lambda ids: 0.0)  # what a run's early stopping watches (the name is recorded)


def split_scores(f1: float) -> Dict[str, Any]:
    """A split's scores as :func:`bert_ner_probe.metrics.score.score` returns them."""
    per_type = {t: {"precision": f1, "recall": f1, "f1": f1, "support": 100} for t in ("LOC", "MISC", "ORG", "PER")}
    return {"precision": f1, "recall": f1, "f1": f1, "support": 400, "per_type": per_type}


def tiny_corpus() -> Corpus:
    """Ten ten-word sentences per split (the record keeps their sizes and the label set)."""
    sentences = [Sentence([f"w{k}" for k in range(10)], ["B-PER", "I-PER"] + ["O"] * 8, 0, 1 + 11 * i)
                 for i in range(10)]
    return Corpus({s: Split(s, sentences, f"{s}.txt", "0" * 64) for s in SPLITS}, LABELS)


def trained(dev: float, best_epoch: int = 3, epochs: int = 6) -> TrainResult:
    """What training returns, its history written by the trainer's own :func:`close_epoch`."""
    history: List[Dict[str, float]] = []
    for epoch in range(1, epochs + 1):
        close_epoch(history, epoch, epochs, torch.tensor(50.0 / epoch), 100, time.perf_counter() - 1.0,
                    torch.device("cpu"), DEV_F1.name, lambda: dev if epoch == best_epoch else dev - 0.01)
    return TrainResult(best_epoch, epochs, DEV_F1, dev, history, 12.5)


def write_hydra(job: Path, config: Dict[str, Any], overrides: List[str]) -> None:
    (job / ".hydra").mkdir(parents=True, exist_ok=True)
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (job / ".hydra" / "hydra.yaml").write_text("hydra:\n  mode: MULTIRUN\n")


class Runs:
    """Job folders over the real composed config (the ``runs`` fixture)."""

    def __init__(self, base) -> None:
        self.base = base  # the composed config (DictConfig), never changed

    def config(self, strategy: str, layers: Optional[List[int]], combine: str, pooling: str, seed: int,
               context: str = "document", crf: bool = False):
        """A job's config: the composed one with this job's strategy, pooling, context, CRF and seed."""
        cfg = self.base.copy()
        cfg.strategy.name, cfg.strategy.layers, cfg.strategy.combine = strategy, layers, combine
        cfg.pooling.method, cfg.encoder.context = pooling, context
        cfg.probe.crf, cfg.seed = crf, seed
        return cfg

    def config_dict(self, *args: Any, **kwargs: Any) -> Dict[str, Any]:
        """:meth:`config` resolved, as Hydra writes it into ``.hydra/config.yaml``."""
        return OmegaConf.to_container(self.config(*args, **kwargs), resolve=True, enum_to_str=True)

    def make(self, job: Path, strategy: str, layers: List[int], combine: str, seed: int, dev: float, test: float,
             pooling: str = "first", config_layers: Any = "same", crf: bool = False,
             mix: Optional[List[float]] = None) -> Path:
        """One finished job folder with .hydra/ and its results.json."""
        cfg = self.config(strategy, layers if config_layers == "same" else config_layers, combine, pooling, seed,
                          crf=crf)
        write_hydra(job, OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
                    [f"strategy={strategy}", f"pooling={pooling}", f"seed={seed}"])
        result = results_record(
            cfg, tiny_corpus(), depth=NUM_LAYERS, strategy=strategy, layers=layers, combine=combine,
            metrics={"dev": split_scores(dev), "test": split_scores(test)}, trained=trained(dev),
            device=torch.device("cpu"), encoder_dtype="float32", precision="fp32", cache_hit=seed > 1,
            cache_entry="/cache/abc", encoder_passes=0 if seed > 1 else 120, features_reused=False,
            mix_weights={"layers": layers, "weights": mix, "gamma": 1.2} if mix else None,
            timings={"extract_s": 0.0, "select_s": 0.1, "train_s": 12.5, "eval_s": 1.5, "total_s": 15.0},
            encoder_name="minilm-l6", pooling=pooling, causal=False, peak_rss_mb=900.0 + seed, peak_rss_scope="job")
        write_results(job, result)
        return job


@pytest.fixture
def runs(compose) -> Runs:
    return Runs(compose(["data.dir=/data/conll2003"]))


@pytest.fixture
def sweep(tmp_path: Path, runs: Runs) -> Path:
    """A multirun folder: Table 7 strategies × seeds, single layers, scalar mix, two poolings, a failure, a gap."""
    root = tmp_path / "multirun" / "2024-01-01" / "12-00-00"
    specs = [
        ("last", [6], "concat", 1, 0.80, 0.70, "first", None),
        ("last", [6], "concat", 2, 0.90, 0.74, "first", None),
        ("concat_last_four", [3, 4, 5, 6], "concat", 1, 0.85, 0.80, "first", None),
        ("concat_last_four", [3, 4, 5, 6], "concat", 2, 0.87, 0.82, "first", None),
        ("embeddings", [0], "concat", 1, 0.60, 0.55, "first", None),
        ("custom", [3], "concat", 1, 0.82, 0.78, "first", None),
        ("custom", [3], "concat", 2, 0.84, 0.78, "first", None),
        ("custom", [1], "concat", 1, 0.70, 0.66, "first", None),
        ("custom", [0, 3, 6], "mean", 1, 0.81, 0.76, "first", None),
        ("scalar_mix_all", [1, 2, 3, 4, 5, 6], "scalar_mix", 1, 0.88, 0.83, "first",
         [0.1, 0.1, 0.2, 0.3, 0.2, 0.1]),
        ("scalar_mix_all", [1, 2, 3, 4, 5, 6], "scalar_mix", 2, 0.86, 0.81, "first",
         [0.1, 0.2, 0.2, 0.2, 0.2, 0.1]),
        ("last", [6], "concat", 1, 0.75, 0.70, "mean", None),
        ("last", [6], "concat", 2, 0.75, 0.72, "mean", None),
        ("concat_last_four", [3, 4, 5, 6], "concat", 1, 0.83, 0.79, "mean", None),
    ]
    for num, (strategy, layers, combine, seed, dev, test, pooling, mix) in enumerate(specs):
        runs.make(root / str(num), strategy, layers, combine, seed, dev, test, pooling=pooling, mix=mix)
    failed = root / str(len(specs))
    write_hydra(failed, runs.config_dict("custom", [99], "concat", "first", 1),
                ["strategy=custom", "strategy.layers=[99]", "seed=1"])
    (failed / "error.json").write_text(json.dumps({
        "status": "failed", "traceback": None,
        "error": "UserError: strategy.layers has 99, but this encoder has hidden states 0..6"}))
    missing = root / str(len(specs) + 1)
    write_hydra(missing, runs.config_dict("sum_all", None, "sum", "first", 2), ["strategy=sum_all", "seed=2"])
    (root / "multirun.yaml").write_text("hydra: {}\n")
    return root


def table_rows(text: str) -> List[List[str]]:
    """The body rows of every Markdown table in ``text``, as cells."""
    rows = []
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("| strategy"):
            rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def section(text: str, heading_part: str) -> str:
    """The text of the first ``## `` section whose heading contains ``heading_part``."""
    parts = text.split("\n## ")
    return next(p for p in parts[1:] if heading_part in p.splitlines()[0])


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100 and image.shape[2] in (3, 4)


def test_format_mean_std() -> None:
    assert format_mean_std([80.0, 90.0]) == "85.0 ± 7.1"
    assert format_mean_std([75.0, 75.0]) == "75.0 ± 0.0"
    assert format_mean_std([60.0]) == "60.0 ± –"


def test_report_files_and_return_value(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    report = write_report(sweep, out)
    names = {p.name for p in report["written"]}
    assert names == {"results.csv", "significance.csv", "table.md", "strategies.png", "layers.png",
                     "mix_weights.png", "pooling.png", "significance.png"}
    assert all(p.parent == out and p.is_file() for p in report["written"])
    assert report["runs"] == 14
    assert [(f.run_dir, f.status) for f in report["failures"]] == [("14", "failed"), ("15", "missing")]
    for png in report["plots"]:
        assert_png(png)


def test_csv(sweep: Path) -> None:
    write_report(sweep)
    with open(sweep / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 16  # 14 finished + 1 failed + 1 missing
    for column in ("run_dir", "status", "error", "overrides", "strategy", "layers", "pooling", "seed",
                   "dev_f1", "dev_precision", "dev_recall", "test_f1", "best_epoch", "epochs_run", "cache_hit",
                   "extract_s", "train_s", "eval_s", "total_s", "dev_f1_PER",
                   "probe.hidden_size", "trainer.lr", "encoder.context", "data.limit.train", "device"):
        assert column in rows[0], column
    by_dir = {r["run_dir"]: r for r in rows}
    assert [r["run_dir"] for r in rows] == [str(i) for i in range(16)]  # natural order: 2 before 10
    ok = by_dir["2"]
    assert ok["status"] == "ok" and ok["strategy"] == "concat_last_four" and ok["layers"] == "[3, 4, 5, 6]"
    assert float(ok["dev_f1"]) == pytest.approx(0.85) and ok["probe.hidden_size"] == "768"
    assert ok["device"] == "auto" and ok["device_resolved"] == "cpu"
    failed = by_dir["14"]
    assert failed["status"] == "failed" and "hidden states 0..6" in failed["error"]
    assert failed["dev_f1"] == "" and failed["test_f1"] == "" and failed["best_epoch"] == ""
    assert failed["strategy"] == "custom" and failed["overrides"] == "strategy=custom strategy.layers=[99] seed=1"
    assert by_dir["15"]["status"] == "missing" and by_dir["15"]["dev_f1"] == ""


def test_table(sweep: Path) -> None:
    text = (Path(write_report(sweep)["table"])).read_text()
    assert "96.4" in text and "BERT-base" in text and "ordering" in text
    first = section(text, "pooling first")
    assert "minilm-l6 (6 layers)" in first.splitlines()[0]
    rows = table_rows(first)
    assert [r[0] for r in rows] == ["embeddings", "last", "concat_last_four", "scalar_mix_all", "layer 1", "layer 3",
                                "custom [0, 3, 6] mean"]
    cells = {r[0]: r for r in rows}
    # strategy | layers | combine | dev F1 | dev CI | test F1 | test CI | n seeds | paper dev F1
    # (two seeds and no prediction files: no interval and no test, so only the best row is marked)
    assert cells["last"][1:] == ["6", "concat", "85.0 ± 7.1", "–", "72.0 ± 2.8", "–", "2", "94.9"]
    assert cells["concat_last_four"][1:] == ["3–6", "concat", "86.0 ± 1.4", "–", "81.0 ± 1.4", "–", "2", "96.1"]
    assert cells["embeddings"][3:] == ["60.0 ± –", "–", "55.0 ± –", "–", "1", "91.0"]
    assert cells["scalar_mix_all"][1:3] == ["1–6", "scalar_mix"] and cells["scalar_mix_all"][8] == ""
    assert cells["scalar_mix_all"][3] == "87.0 ± 1.4 ★" and cells["scalar_mix_all"][5] == "82.0 ± 1.4 ★"
    assert cells["layer 3"][3:] == ["83.0 ± 1.4", "–", "78.0 ± 0.0", "–", "2", ""]
    assert cells["custom [0, 3, 6] mean"][1:3] == ["0, 3, 6", "mean"]
    mean_rows = table_rows(section(text, "pooling mean"))
    assert [r[0] for r in mean_rows] == ["last", "concat_last_four"]
    assert mean_rows[0][3] == "75.0 ± 0.0"
    assert "| paper dev F1 (BERT-base) |" in text


def test_table_lists_failed_and_missing_runs(sweep: Path) -> None:
    text = write_report(sweep)["table"].read_text()
    failures = section(text, "Failed or missing runs")
    lines = [line for line in failures.splitlines() if line.startswith("- ")]
    assert len(lines) == 2
    assert "`14`" in lines[0] and "failed" in lines[0] and "strategy.layers=[99]" in lines[0]
    assert "hidden states 0..6" in lines[0]
    assert "`15`" in lines[1] and "missing" in lines[1] and "strategy=sum_all seed=2" in lines[1]


def test_no_failures_and_only_needed_plots(tmp_path: Path, runs: Runs) -> None:
    root = tmp_path / "sweep"
    runs.make(root / "0", "concat_last_four", [3, 4, 5, 6], "concat", 1, 0.85, 0.8)
    runs.make(root / "1", "sum_all", [1, 2, 3, 4, 5, 6], "sum", 1, 0.84, 0.8)
    report = write_report(root)
    assert report["failures"] == []
    assert [p.name for p in report["plots"]] == ["strategies.png", "significance.png"]
    text = report["table"].read_text()
    assert section(text, "Failed or missing runs").split("\n", 2)[2].strip() == "none"
    rows = table_rows(text)
    assert [(r[0], r[8]) for r in rows] == [("concat_last_four", "96.1"), ("sum_all", "95.5")]


def test_single_layer_strategies_sort_by_layer(tmp_path: Path, runs: Runs) -> None:
    root = tmp_path / "sweep"
    for num, layer in enumerate([10, 2, 0]):
        runs.make(root / str(num), f"layer_{layer}", [layer], "concat", 1, 0.8, 0.7)
    runs.make(root / "3", "custom", [5], "concat", 1, 0.8, 0.7)
    runs.make(root / "4", "scalar_mix_last_four", [9, 10, 11, 12], "scalar_mix", 1, 0.8, 0.7, mix=[0.25] * 4)
    runs.make(root / "5", "sum_all", list(range(1, 13)), "sum", 1, 0.8, 0.7)
    report = write_report(root)
    assert [r[0] for r in table_rows(report["table"].read_text())] == [
        "sum_all", "scalar_mix_last_four", "layer_0", "layer_2", "layer 5", "layer_10"]
    assert {p.name for p in report["plots"]} == {"strategies.png", "layers.png", "mix_weights.png",
                                                 "significance.png"}


def test_other_config_differences_get_their_own_section(tmp_path: Path, runs: Runs) -> None:
    root = tmp_path / "sweep"
    runs.make(root / "0", "last", [6], "concat", 1, 0.80, 0.7, crf=False)
    runs.make(root / "1", "last", [6], "concat", 1, 0.90, 0.7, crf=True)
    text = write_report(root)["table"].read_text()
    assert "probe.crf=False" in text and "probe.crf=True" in text
    assert [r[3] for r in table_rows(text)] == ["80.0 ± –", "90.0 ± –"]  # one row per table: no mark


def test_single_run_folder(tmp_path: Path, runs: Runs) -> None:
    run = runs.make(tmp_path / "outputs" / "run", "embeddings", [0], "concat", 1, 0.6, 0.5)
    report = write_report(run, tmp_path / "out")
    assert report["runs"] == 1
    with open(report["csv"], newline="") as fh:
        assert [r["run_dir"] for r in csv.DictReader(fh)] == ["."]


def test_only_failures_still_writes_table(tmp_path: Path, runs: Runs) -> None:
    job = tmp_path / "sweep" / "0"
    write_hydra(job, runs.config_dict("last", [-1], "concat", "first", 1), ["seed=1"])
    report = write_report(tmp_path / "sweep")
    assert report["plots"] == [] and len(report["failures"]) == 1
    assert "No finished runs." in report["table"].read_text()


def test_cli(sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cli([str(sweep), "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert str(tmp_path / "out" / "table.md") in captured.out
    assert "failed: 14" in captured.err and "missing: 15" in captured.err


@pytest.mark.parametrize("name", ["empty", "does-not-exist"])
def test_cli_user_error_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture, name: str) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(SystemExit) as exc:
        cli([str(tmp_path / name)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err


def test_cli_process_exit_code_and_cheap_import(tmp_path: Path) -> None:
    code = ("import sys, bert_ner_probe.report.callback as r; "
            "assert 'matplotlib' not in sys.modules and 'torch' not in sys.modules; r.cli()")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: no runs under") and "Traceback" not in proc.stderr


def test_callback_exits_nonzero_after_writing_report(sweep: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep), "subdir": "${hydra.job.num}"}}})
    with pytest.raises(SystemExit) as exc:
        ReportCallback().on_multirun_end(config=cfg)
    assert exc.value.code == 1
    assert (sweep / "table.md").is_file() and (sweep / "results.csv").is_file()
    captured = capsys.readouterr()
    assert str(sweep / "table.md") in captured.out and "failed: 14" in captured.err


def test_callback_passes_when_all_runs_finished(tmp_path: Path, runs: Runs) -> None:
    root = tmp_path / "sweep"
    runs.make(root / "0", "last", [6], "concat", 1, 0.8, 0.7)
    cfg = OmegaConf.create({"hydra": {"sweep": {"dir": str(root)}}})
    ReportCallback().on_multirun_end(config=cfg)
    assert (root / "table.md").is_file()


def test_the_six_frozen_rows_come_in_table_7s_order_beside_the_papers_figures(tmp_path: Path, runs: Runs) -> None:
    """Runs written in any order; the table lists them as Devlin et al. (2019, Table 7) do, each with its dev F1."""
    paper = [("embeddings", [0], "concat", "91.0"), ("second_to_last", [5], "concat", "95.6"),
             ("last", [6], "concat", "94.9"), ("sum_last_four", [3, 4, 5, 6], "sum", "95.9"),
             ("concat_last_four", [3, 4, 5, 6], "concat", "96.1"), ("sum_all", [1, 2, 3, 4, 5, 6], "sum", "95.5")]
    root = tmp_path / "sweep"
    for num, (strategy, layers, combine, _) in enumerate(reversed(paper)):
        runs.make(root / str(num), strategy, layers, combine, 1, 0.8 + num / 100, 0.7)
    rows = table_rows(Path(write_report(root)["table"]).read_text())
    assert [(r[0], r[-1]) for r in rows] == [(name, figure) for name, _, _, figure in paper]


def _finetune_job(runs: Runs, job: Path, seed: int, dev: float, train_limit: Optional[int]) -> Path:
    """A fine-tuning job folder written through results_record, trained on ``train_limit`` of the 10 sentences."""
    cfg = runs.config("finetune", None, "concat", "first", seed)
    cfg.probe.name, cfg.finetune.train_limit = "finetune", train_limit
    write_hydra(job, OmegaConf.to_container(cfg, resolve=True, enum_to_str=True), ["strategy=finetune", f"seed={seed}"])
    write_results(job, results_record(
        cfg, tiny_corpus(), depth=NUM_LAYERS, strategy="finetune", layers=None, combine=None,
        metrics={"dev": split_scores(dev), "test": split_scores(dev)}, trained=trained(dev),
        device=torch.device("cpu"), encoder_dtype="float32", precision="fp32", cache_hit=False, cache_entry=None,
        encoder_passes=40, features_reused=False, mix_weights=None,
        timings={"extract_s": 0.0, "select_s": 0.0, "train_s": 30.0, "eval_s": 2.0, "total_s": 33.0},
        encoder_name="minilm-l6", pooling="first", causal=False,
        finetune={"train_sentences": train_limit or 10, "train_words": 10 * (train_limit or 10),
                  "train_windows": 2, "words_per_batch": 320.0, "saved": None}))
    return job


@pytest.mark.parametrize("train_limit", [None, 4])
def test_the_share_of_fine_tuning_needs_the_same_training_sentences(tmp_path: Path, runs: Runs, train_limit):
    """On the same 10 training sentences the frozen rows get a share of the fine-tuning row's dev F1 (0.80 of
    0.90 = 88.9%); on a subset of 4 the column is left out and the table says why."""
    root = tmp_path / "sweep"
    runs.make(root / "0", "last", [6], "concat", 1, 0.80, 0.70)
    _finetune_job(runs, root / "1", 1, 0.90, train_limit)
    text = write_report(root)["table"].read_text()
    if train_limit is None:
        assert "| share of fine-tuning dev F1 |" in text and "88.9%" in text and "not comparable" not in text
    else:
        assert "| share of fine-tuning dev F1 |" not in text and "88.9%" not in text
        assert ("No share of fine-tuning dev F1: the fine-tuning row trained on 4 training sentences, the frozen "
                "rows on 10 (finetune.train_limit), so its dev F1 is not comparable with theirs.") in text
    assert "Fine-tuning (90.0 dev F1) beats the best frozen row, last (80.0): +10.0 points" in text


def test_results_written_before_the_dev_score_was_named_are_still_read(runs: Runs, tmp_path: Path) -> None:
    """An older results.json (no ``dev_score``; each epoch's dev score under ``dev_f1``, which for a control-task run
    held token accuracy) is read by RunResult, the report and load_results as today's is."""
    from bert_ner_probe.api import load_results
    from bert_ner_probe.results.run_result import RunResult

    old, new = tmp_path / "old" / "0", tmp_path / "new" / "0"
    for job in (old, new):
        runs.make(job, "last", [6], "concat", 1, 0.8, 0.7)
    stored = json.loads((old / "results.json").read_text())
    del stored["dev_score"]
    (old / "results.json").write_text(json.dumps(stored))
    scores = [(e.epoch, e.train_loss, e.dev_score) for e in RunResult.load(new).history]
    assert [(e.epoch, e.train_loss, e.dev_score) for e in RunResult.load(old).history] == scores
    assert RunResult.load(old).dev_score_name == "dev_f1" and RunResult.load(old).best_dev_score == 0.8
    stored["control"] = "word_type"  # a control run of those days: its history's dev_f1 was dev accuracy
    (old / "results.json").write_text(json.dumps(stored))
    read = RunResult.load(old)
    assert read.dev_score_name == "dev_accuracy" and [e.dev_score for e in read.history] == [
        h["dev_f1"] for h in stored["history"]]
    report = write_report(old.parent)
    assert report["runs"] == 1 and not report["failures"]
    assert load_results(old.parent).loc[0, "control"] == "word_type"


def test_the_strategies_plot_draws_the_intervals_of_the_table(runs: Runs, tmp_path: Path) -> None:
    """strategies.png's error bars are each row's dev CI as table.md prints it (a t interval over three seeds)."""
    from bert_ner_probe.report.collect import load_jobs
    from bert_ner_probe.report.plots import strategy_panels
    from bert_ner_probe.report.rows import group_runs
    from bert_ner_probe.report.settings import Settings
    from bert_ner_probe.report.tables import analyse

    root = tmp_path / "sweep"
    for num, (strategy, layers, seed, dev) in enumerate([("last", [6], 1, 0.80), ("last", [6], 2, 0.84),
                                                         ("last", [6], 3, 0.83), ("embeddings", [0], 1, 0.70),
                                                         ("embeddings", [0], 2, 0.74), ("embeddings", [0], 3, 0.71)]):
        runs.make(root / str(num), strategy, layers, "concat", seed, dev, dev - 0.05)
    sections = group_runs(load_jobs(root))
    stats, _ = analyse(sections, Settings())
    (panel,), _ = strategy_panels(sections, stats)
    table = write_report(root)["table"].read_text()
    _, labels, series = panel
    (bars,) = series.values()
    assert labels == ["embeddings", "last"]
    for label in labels:
        mean, below, above = bars[label]
        low, high, how = stats[0].intervals[(label, "dev")]
        assert how == "t" and below > 0 and above > 0
        assert (mean - below, mean + above) == pytest.approx((low, high))
        assert f"[{low:.1f}, {high:.1f}]" in table
