"""End to end on real CoNLL-2003 data with the embedded MiniLM encoder.

The first run goes through the command (a real process: its exit status, its
stdout); the runs that read its cache go through :func:`bert_ner_probe.api.probe`,
the same ``run_probe`` on the same composed config, in this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from run_if import run_if

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


LIMITS = ["data.limit.train=500", "data.limit.dev=150", "data.limit.test=150"]


def _run(args, cwd: Path, env_extra=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "bert_ner_probe", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def _words(path: Path, limit: int) -> int:
    """Words in the first ``limit`` sentences of a CoNLL file (counted independently of data.py)."""
    words, sentences, in_sentence = 0, 0, False
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("-DOCSTART-"):
            if in_sentence:
                sentences += 1
                in_sentence = False
                if sentences == limit:
                    break
            continue
        words += 1
        in_sentence = True
    return words


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, conll_dir):
    root = tmp_path_factory.mktemp("e2e")
    out = root / "run1"
    proc = _run(["strategy=concat_last_four", *LIMITS, "trainer.epochs=2", "trainer.lr=0.005", "probe.hidden_size=128",
                 f"data.dir={conll_dir}", f"cache_dir={root / 'cache'}", f"hydra.run.dir={out}", "progress=false"],
                cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, out, proc


def test_run_writes_results_and_predictions(first_run, conll_dir):
    root, out, proc = first_run
    r = json.loads((out / "results.json").read_text())
    for key in ("encoder", "strategy", "layers", "combine", "pooling", "context", "seed", "dev", "test",
                "best_epoch", "epochs_run", "timings", "cache_hit", "mix_weights"):
        assert key in r, key
    assert r["strategy"] == "concat_last_four" and r["layers"] == [3, 4, 5, 6] and r["combine"] == "concat"
    assert r["cache_hit"] is False and r["encoder_passes"] > 0 and r["timings"]["extract_s"] > 0
    # "auto" is recorded as what it resolved to on this machine.
    from bert_ner_probe.device import encoder_dtype, training_precision

    assert r["encoder_dtype"] == encoder_dtype("auto", "cpu") in ("float32", "bfloat16")
    assert r["precision"] == training_precision("auto", torch.device("cpu")) in ("fp32", "bf16")
    for split in ("dev", "test"):
        m = r[split]
        assert 0.0 <= m["precision"] <= 1 and 0 <= m["recall"] <= 1 and 0 <= m["f1"] <= 1
        assert set(m["per_type"]) <= {"PER", "LOC", "ORG", "MISC"} and m["per_type"]
    # 500 training sentences, 2 epochs at lr 0.005: far above chance (0), far below the full-data figure (~0.88).
    assert r["dev"]["f1"] > 0.3, r["dev"]["f1"]
    assert 1 <= r["best_epoch"] <= r["epochs_run"] <= 2
    assert "dev F1" in proc.stdout
    # conlleval format: one line per word, a blank line after each sentence; no word dropped.
    for split, name in (("dev", "dev.txt"), ("test", "test.txt")):
        lines = (out / "predictions" / f"{split}.conll").read_text().split("\n")
        word_lines = [ln for ln in lines if ln]
        assert len(word_lines) == _words(conll_dir / name, 150)
        assert all(len(ln.split(" ")) == 3 for ln in word_lines)
        assert lines.count("") - 1 == 150  # a blank line ends every sentence (+ the final newline)


@pytest.fixture
def probe_here(first_run, conll_dir):
    """``api.probe`` on the first run's data and cache, in this process."""
    from bert_ner_probe.api import probe

    root, _, _ = first_run

    def run(name, *overrides):
        return probe([*overrides, *LIMITS, f"data.dir={conll_dir}", f"cache_dir={root / 'cache'}", "progress=false",
                      "threads=1"], out_dir=root / name)

    return run


def test_second_strategy_reuses_the_cache(first_run, probe_here):
    root, _, _ = first_run
    probe_here("run2", "strategy=last", "trainer.epochs=1", "probe.hidden_size=32")
    r = json.loads((root / "run2" / "results.json").read_text())
    assert r["cache_hit"] is True and r["encoder_passes"] == 0 and r["timings"]["extract_s"] == 0.0
    assert r["layers"] == [6]
    assert len(list((root / "cache").glob("*/meta.json"))) == 1


def test_scalar_mix_with_crf_reports_mix_weights(first_run, probe_here):
    root, _, _ = first_run
    out = root / "run3"
    probe_here("run3", "strategy=scalar_mix_all", "probe.crf=true", "trainer.epochs=1", "probe.hidden_size=32",
               "write_predictions=false")
    r = json.loads((out / "results.json").read_text())
    mix = r["mix_weights"]
    assert mix["layers"] == [1, 2, 3, 4, 5, 6] and len(mix["weights"]) == 6
    assert abs(sum(mix["weights"]) - 1) < 1e-5 and r["cache_hit"] is True
    assert not (out / "predictions").exists()


def test_unknown_layer_fails_cleanly(first_run, probe_here):
    """A user error (the command prints it as one line, exit 2: tests/e2e/test_cli_errors.py)."""
    from bert_ner_probe.errors import UserError

    root, _, _ = first_run
    with pytest.raises(UserError, match=r"hidden states 0\.\.6"):
        probe_here("bad", "strategy=layer", "strategy.index=9")
    assert not (root / "bad" / "results.json").exists()


def test_no_data_dir_offline_says_how_to_point_at_local_files(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CONLL2003_DIR"}
    env["HF_DATASETS_OFFLINE"] = "1"
    proc = subprocess.run([sys.executable, "-m", "bert_ner_probe", f"cache_dir={tmp_path / 'cache'}",
                           f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, env={**env, "HF_HUB_OFFLINE": "1"},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "CONLL2003_DIR" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").glob("*/meta.json"))


@run_if(cuda=True)
@pytest.mark.parametrize("strategy", ["concat_last_four", "scalar_mix_all", "finetune"])
def test_a_smoke_run_on_the_gpu(tmp_path, conll_dir, strategy):
    """The GPU route of a whole run: features and tagger on CUDA (or the encoder trained there), every word scored."""
    from bert_ner_probe.api import probe
    from bert_ner_probe.device import native_bf16

    r = probe(["debug=smoke", f"strategy={strategy}", "device=cuda", f"data.dir={conll_dir}",
               f"cache_dir={tmp_path / 'cache'}"], out_dir=tmp_path / "run")
    assert r.device.startswith("cuda")
    finetune = strategy == "finetune"
    assert r.precision == ("fp32" if not finetune else "bf16" if native_bf16(torch.device("cuda")) else "fp16")
    assert 0.0 <= r.dev.f1 <= 1.0 and 0.0 <= r.test.f1 <= 1.0
    lines = [ln for ln in (tmp_path / "run" / "predictions" / "dev.conll").read_text().split("\n") if ln]
    assert len(lines) == _words(conll_dir / "dev.txt", 80)
