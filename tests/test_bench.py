"""scripts/bench.py end to end on CPU with tiny limits: real data, real MiniLM, real harness runs."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH = REPO_ROOT / "scripts" / "bench.py"

POSITIVE_KEYS = (
    "extract_ratio", "extract_harness_words_per_s", "extract_bare_words_per_s",
    "train_ratio", "train_harness_words_per_s", "train_bare_words_per_s",
    "train_bare_packed_words_per_s", "train_bare_padded_words_per_s",
    "cold_sweep_s", "warm_sweep_s", "peak_rss_mb", "total_s",
)


def test_bench_tiny_cpu(tmp_path: Path, conll_dir: Path) -> None:
    out = tmp_path / "bench"
    cmd = [sys.executable, str(BENCH), "--out", str(out), "--data-dir", str(conll_dir), "--device", "cpu",
           "--limit", "120", "--eval-limit", "30", "--extract-limit", "120", "--epochs", "1", "--repeats", "1",
           "--hidden-size", "16", "--sweep-strategies", "last,sum_all", "--threads", "1",
           "--work-dir", str(tmp_path / "work")]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    result = json.loads((out / "bench.json").read_text())
    assert result["complete"] is True
    for key in POSITIVE_KEYS:
        value = result[key]
        assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, (key, value)
    assert result["cold_sweep_encoder_passes"] > 0  # the cold sweep extracted once ...
    assert result["warm_sweep_encoder_passes"] == 0  # ... and the warm one never ran the encoder
    assert result["warm_sweep_cache_hits"] == result["warm_sweep_jobs"] == 2
    assert result["rss_run_cache_hit"] is True and result["train_features_cache_hit"] is True
    # The bare extraction loop saw the same sentences in as many batches as the harness.
    assert result["extract_bare_passes"] == result["extract_harness_passes"]
    assert result["extract_bare_pieces"] == result["extract_harness_pieces"]  # the same plan, to the token
    assert result["extract_sentences"] == 120 and result["extract_words"] > 0
    assert result["settings"]["batch_size"] == 32  # conf/trainer/default.yaml
    # The bare figure is the faster of its two forms, and it ran at the harness's precision.
    assert result["train_bare_words_per_s"] == max(result["train_bare_packed_words_per_s"],
                                                   result["train_bare_padded_words_per_s"])
    assert result["train_precision"] in ("fp32", "bf16")
    assert result["torch_version"] and result["device_name"]

    md = (out / "bench.md").read_text()
    assert "extraction, words/s" in md and "| cold |" in md and "| warm |" in md
    assert md.strip() in proc.stdout
