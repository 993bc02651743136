"""The report's intervals, tests, pivots and fine-tuning row over a real tiny sweep on CoNLL-2003.

One real multirun (MiniLM, a CoNLL-2003 subset, 2 strategies x 3 seeds x 2
poolings, plus a strategy that fails) feeds every test; the other folders
are copies of its job folders (one seed, one row, and the fine-tuning row:
a probe run rewritten into the fine-tuning job's results.json shape, the
report's input format).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest
import yaml
from omegaconf import OmegaConf

from bert_ner_probe.multirun import ReportCallback
from bert_ner_probe.report.callback import cli, write_report
from bert_ner_probe.report.collect import load_jobs
from bert_ner_probe.results.run_result import RunResult
from bert_ner_probe.report.rows import Row
from bert_ner_probe.report.significance import SIGNIFICANCE_COLUMNS, t_interval

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


TINY = ["debug=smoke"]


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, conll_dir) -> Path:
    root = tmp_path_factory.mktemp("sig")
    out = root / "sweep"
    proc = subprocess.run(
        [sys.executable, "-m", "bert_ner_probe", "-m", "strategy=embeddings,concat_last_four,layer", "strategy.index=9", "seed=1,2,3",
         "pooling=first,mean", *TINY, f"data.dir={conll_dir}", f"cache_dir={root / 'cache'}",
         f"hydra.sweep.dir={out}"],
        cwd=root, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 1, proc.stderr[-3000:]  # layer 9 does not exist in MiniLM: those jobs fail
    return out


def jobs_where(sweep: Path, **want) -> List[Path]:
    """Finished job folders whose results.json matches ``want``."""
    out = []
    for d in sorted(sweep.iterdir(), key=lambda p: (len(p.name), p.name)):
        if (d / "results.json").is_file():
            r = json.loads((d / "results.json").read_text())
            if all(r[k] == v for k, v in want.items()):
                out.append(d)
    return out


def copy_jobs(dirs: List[Path], dest: Path) -> Path:
    for i, d in enumerate(dirs):
        shutil.copytree(d, dest / str(i))
    return dest


def read_csv(path: Path) -> List[Dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def f1s(dirs: List[Path], split: str) -> List[float]:
    return [100 * json.loads((d / "results.json").read_text())[split]["f1"] for d in dirs]


def md_rows(text: str, heading: str) -> Dict[str, List[str]]:
    """Body rows (label → cells) of the first table after the ``## `` heading containing ``heading``."""
    block = next(p for p in text.split("\n## ")[1:] if heading in p.splitlines()[0])
    return {c[0]: c for c in ([x.strip() for x in ln.strip("|").split("|")] for ln in block.splitlines()
                              if ln.startswith("| ") and not ln.startswith("| strategy"))}


def as_finetune(job: Path, bump: float, train_limit: int = 100, epochs: int = 2) -> None:
    """Rewrite a probe job folder into the fine-tuning job's shape (results.json and .hydra/config.yaml)."""
    r = json.loads((job / "results.json").read_text())
    r.update(strategy="finetune", layers=None, combine=None, mix_weights=None, cache_hit=False, cache_entry=None)
    for split in ("dev", "test"):
        r[split]["f1"] = min(1.0, r[split]["f1"] + bump)
    cfg = r["config"]
    cfg["strategy"].update(name="finetune", layers=None)
    cfg["trainer"].update(name="finetune", lr=5e-5, grad_clip=1.0, epochs=epochs, optimizer="adamw",
                          weight_decay=0.01, warmup_ratio=0.1, schedule="linear", grad_accum=1)
    cfg["probe"]["hidden_size"] = 1
    cfg["finetune"] = {"save": False, "train_limit": train_limit}
    (job / "results.json").write_text(json.dumps(r))
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))


def test_three_seed_sweep_gets_intervals_tests_marks_and_pivots(sweep: Path, tmp_path: Path) -> None:
    report = write_report(sweep, tmp_path / "out")
    assert len(report["failures"]) == 6
    rows = read_csv(report["significance"])
    assert list(rows[0]) == SIGNIFICANCE_COLUMNS
    tables = [r for r in rows if not r["group"].startswith("pivot")]
    # one pair per table (2 strategies), dev and test, for each pooling
    assert sorted((r["group"].split(" · ")[1], r["split"]) for r in tables) == [
        ("pooling first", "dev"), ("pooling first", "test"), ("pooling mean", "dev"), ("pooling mean", "test")]
    for r in tables:
        pooling = r["group"].split(" · ")[1].split()[1]
        a, b = (jobs_where(sweep, strategy=s, pooling=pooling) for s in (r["a"], r["b"]))
        assert len(a) == len(b) == 3 and r["n_seeds"] == "3" and r["test"] == "welch"
        delta = statistics.fmean(f1s(a, r["split"])) - statistics.fmean(f1s(b, r["split"]))
        assert float(r["delta"]) == pytest.approx(delta, abs=1e-4) and delta >= 0
        assert float(r["ci_low"]) <= float(r["delta"]) <= float(r["ci_high"])
        assert 0 <= float(r["p_value"]) <= float(r["p_holm"]) <= 1 and 0 <= float(r["aso_eps_min"]) <= 1
        assert r["significant"] == str(float(r["p_holm"]) < 0.05)
    pivot_rows = [r for r in rows if r["group"].startswith("pivot pooling")]
    assert sorted((r["split"], {r["a"], r["b"]} == {"first", "mean"}) for r in pivot_rows) == [
        ("dev", True), ("dev", True), ("test", True), ("test", True)]

    text = report["table"].read_text()
    first = md_rows(text, "pooling first")
    dirs = jobs_where(sweep, strategy="concat_last_four", pooling="first")
    low, high = t_interval(f1s(dirs, "dev"))
    assert first["concat_last_four"][4] == f"[{low:.1f}, {high:.1f}]"
    best = max(first, key=lambda k: float(first[k][3].split()[0]))
    assert first[best][3].endswith("★")
    assert "Welch's t-test over seeds" in text and "Holm" in text and "alpha = 0.05" in text
    pivot = md_rows(text, "dev F1 by pooling")
    assert set(pivot) == {"embeddings", "concat_last_four"}
    for cells in pivot.values():
        assert sum(c.startswith("**") for c in cells[1:3]) == 1 and "over" in cells[3]
    assert "strategy=layer strategy.index=9" in text.split("## Failed or missing runs")[1]
    assert {p.name for p in report["plots"]} >= {"strategies.png", "significance.png", "pooling.png"}
    assert (tmp_path / "out" / "significance.png").read_bytes().startswith(PNG_MAGIC)


def test_one_seed_table_gets_sentence_bootstrap(sweep: Path, tmp_path: Path) -> None:
    dirs = [*jobs_where(sweep, seed=1, pooling="first"), *jobs_where(sweep, seed=2, pooling="first")[:1]]
    failed = next(d for d in sweep.iterdir() if (d / "error.json").is_file())
    root = copy_jobs([*dirs, failed], tmp_path / "one_seed")
    report = write_report(root)  # the 2-seed row and the failed job must not break it
    text = report["table"].read_text()
    rows = md_rows(text, "pooling first")
    assert rows["embeddings"][4].endswith(" b") and rows["embeddings"][6].endswith(" b")
    pairs = read_csv(report["significance"])
    assert [(p["split"], p["test"], p["n_seeds"]) for p in pairs] == [
        ("dev", "approximate-randomisation", "1"), ("test", "approximate-randomisation", "1")]
    for p in pairs:
        a, b = (jobs_where(root, strategy=s, seed=1) for s in (p["a"], p["b"]))
        assert float(p["delta"]) == pytest.approx(f1s(a, p["split"])[0] - f1s(b, p["split"])[0], abs=1e-4)
        assert 0 < float(p["p_value"]) <= 1
    assert "approximate randomisation" in text and len(report["failures"]) == 1


def test_one_row_and_a_failed_job(sweep: Path, tmp_path: Path) -> None:
    failed = next(d for d in sweep.iterdir() if (d / "error.json").is_file())
    root = copy_jobs([jobs_where(sweep, seed=1, pooling="first")[0], failed], tmp_path / "one_row")
    report = write_report(root)
    assert read_csv(report["significance"]) == []
    assert [p.name for p in report["plots"]] == ["strategies.png"]
    assert "★" not in report["table"].read_text()


def test_finetune_row(sweep: Path, tmp_path: Path) -> None:
    probes = jobs_where(sweep, pooling="first")
    root = copy_jobs([*probes, *jobs_where(sweep, strategy="concat_last_four", pooling="first")], tmp_path / "ft")
    for job in sorted(root.iterdir(), key=lambda p: int(p.name))[len(probes):]:
        as_finetune(job, bump=0.2)
    report = write_report(root)
    text = report["table"].read_text()
    assert text.count("\n## minilm-l6") == 1  # trainer.*, tagger.*, finetune.* do not split the section
    assert "trainer.lr" not in text and "probe.hidden_size" not in text
    body = text.split("\n## minilm-l6")[1]
    assert body.index("### Fine-tuning approach") < body.index("| finetune |") < body.index(
        "### Feature-based approach") < body.index("| embeddings |")
    ft_row = next(ln for ln in body.splitlines() if ln.startswith("| finetune |"))
    assert ft_row.rstrip(" |").endswith("96.4")
    ft_dev = statistics.fmean(f1s(jobs_where(root, strategy="finetune"), "dev"))
    emb = next(ln for ln in body.splitlines() if ln.startswith("| embeddings |"))
    emb_dev = statistics.fmean(f1s(jobs_where(root, strategy="embeddings"), "dev"))
    assert f"| {100 * emb_dev / ft_dev:.1f}% |" in emb
    assert "fine-tuning row: first 100 training sentences, 2 epochs." in text
    assert "Fine-tuning (" in text and "beats the best frozen row" in text and "does not beat" not in text
    pairs = read_csv(report["significance"])
    assert {(p["a"], p["b"]) for p in pairs if p["split"] == "dev"} == {
        ("finetune", "embeddings"), ("finetune", "concat_last_four"), ("concat_last_four", "embeddings")}
    csv_rows = read_csv(report["csv"])
    assert sorted(r["strategy"] for r in csv_rows).count("finetune") == 3
    assert {r["layers"] for r in csv_rows if r["strategy"] == "finetune"} == {""}
    assert "strategies.png" in {p.name for p in report["plots"]}
    # BERT-large's fine-tuning row reads the paper's 96.6.
    job = load_jobs(root)[len(probes)]
    large = type(job)(job.run_dir, job.status, job.overrides, job.config,
                      RunResult.from_dict({**job.result.to_dict(), "encoder_name": "bert-large-cased"}))
    assert Row("finetune", (), "", runs=[large]).paper == 96.6 and Row("finetune", (), "", runs=[job]).paper == 96.4


def test_alpha_from_cli_and_from_the_callback(sweep: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    root = copy_jobs(jobs_where(sweep, pooling="mean"), tmp_path / "alpha")
    cli([str(root), "--alpha", "0.01"])
    assert "alpha = 0.01" in (root / "table.md").read_text()
    cfg = OmegaConf.create({"hydra": {"sweep": {"dir": str(root)}},
                            "report": {"alpha": 0.2, "bootstrap_resamples": 500, "seed": 3}})
    ReportCallback().on_multirun_end(config=cfg)
    assert "alpha = 0.2" in (root / "table.md").read_text()
    with pytest.raises(SystemExit) as exc:
        cli([str(root), "--alpha", "1.5"])
    assert exc.value.code == 2 and "report.alpha" in capsys.readouterr().err


def test_encoder_pivot(sweep: Path, tmp_path: Path) -> None:
    """Two encoders in one folder: a table each, and a pivot with one column per encoder."""
    dirs = jobs_where(sweep, pooling="first", seed=1)
    root = copy_jobs([*dirs, *dirs], tmp_path / "encoders")
    for job in sorted(root.iterdir(), key=lambda p: int(p.name))[len(dirs):]:
        r = json.loads((job / "results.json").read_text())
        r.update(encoder="/models/other-encoder", encoder_name="other")
        r["config"]["encoder"].update(name="other", name_or_path="/models/other-encoder")
        (job / "results.json").write_text(json.dumps(r))
    text = write_report(root)["table"].read_text()
    assert "\n## minilm-l6 (6 layers)" in text and "\n## other (6 layers)" in text
    heading = next(ln for ln in text.splitlines() if ln.startswith("## dev F1 by encoder"))
    assert heading == "## dev F1 by encoder · pooling first · context document"
    pivot = md_rows(text, "dev F1 by encoder")
    assert set(pivot) == {"embeddings", "concat_last_four"}
    assert all("approximate-randomisation" in cells[3] for cells in pivot.values())
