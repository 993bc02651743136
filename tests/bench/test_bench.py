"""scripts/bench.py end to end on CPU with tiny limits: real data, real MiniLM, real harness runs."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest
import torch

from bert_ner_probe.api import compose_config
from bert_ner_probe.data.conll import load_corpus
from bert_ner_probe.device import training_precision
from bert_ner_probe.features.encoder import num_layers

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]


BENCH = REPO_ROOT / "scripts" / "bench.py"


POSITIVE_KEYS = (
    "extract_ratio", "extract_harness_words_per_s", "extract_bare_words_per_s",
    "train_ratio", "train_harness_words_per_s", "train_bare_words_per_s",
    "train_bare_packed_words_per_s", "train_bare_padded_words_per_s",
    "cold_sweep_s", "warm_sweep_s", "peak_rss_mb", "total_s",
    "finetune_sentence_ratio", "finetune_document_ratio", "finetune_document_vs_sentence",
    "finetune_sentence_harness_tokens_per_s", "finetune_document_bare_tokens_per_s",
)


TINY = ["--device", "cpu", "--epochs", "1", "--repeats", "1", "--hidden-size", "16", "--threads", "1"]


def run_bench(args: List[str], out: Path, conll_dir: Path) -> tuple[Dict[str, Any], str]:
    """Run scripts/bench.py as a user would (with this checkout's package); bench.json and stdout."""
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run([sys.executable, str(BENCH), "--out", str(out), "--data-dir", str(conll_dir), *args],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((out / "bench.json").read_text()), proc.stdout


def test_bench_tiny_cpu(tmp_path: Path, conll_dir: Path) -> None:
    out = tmp_path / "bench"
    result, stdout = run_bench(["--limit", "120", "--eval-limit", "30", "--extract-limit", "120", *TINY,
                                "--finetune-limit", "40",
                                "--sweep-strategies", "last,sum_all", "--work-dir", str(tmp_path / "work")],
                               out, conll_dir)
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
    # ... and they are the first 120 training sentences, every word of them
    first = load_corpus(conll_dir, "iob2", {"train": 120})["train"].sentences
    assert result["extract_words"] == sum(len(s.words) for s in first)
    # the tagger batch size comes from the config when --batch-size is not given
    assert result["settings"]["batch_size"] == compose_config([]).trainer.batch_size
    # The bare figure is the faster of its two forms, and both sides ran at the harness's resolved precision.
    assert result["train_bare_words_per_s"] == max(result["train_bare_packed_words_per_s"],
                                                   result["train_bare_padded_words_per_s"])
    assert result["train_precision"] == str(training_precision("auto", torch.device("cpu")))
    assert result["train_mix_layers"] is None  # concat_last_four: no mix
    assert "torch threads 1" in result["device_name"]  # --threads 1 applied in the bench process
    # Fine-tuning: the main command's windows (table7_cpu), every word of the first 40 sentences in both contexts
    main = compose_config(["experiment=table7_cpu", "strategy=finetune"]).finetune
    assert (result["finetune_max_length"], result["finetune_stride"]) == (main.max_length, main.stride)
    assert result["finetune_attention"] == "eager_rand_dropout" and result["finetune_sentence_windows"] == 40
    assert result["finetune_sentence_words"] == result["finetune_document_words"] == sum(
        len(s.words) for s in first[:40])
    assert result["finetune_document_windows"] < 40  # documents are read through fewer, longer windows
    assert result["finetune_document_vs_sentence"] == pytest.approx(
        result["finetune_document_harness_tokens_per_s"] / result["finetune_sentence_harness_tokens_per_s"])

    md = (out / "bench.md").read_text()
    assert "extraction, words/s" in md and "| cold |" in md and "| warm |" in md
    assert "fine-tuning, tokens/s per epoch, document context" in md and "Fine-tuning in document context" in md
    assert md.strip() in stdout


def test_bench_scalar_mix_all_and_scale(tmp_path: Path, conll_dir: Path) -> None:
    """The scalar-mix strategy: the tagger (harness and bare) mixes every encoder layer, and the bench completes;
    with --scale, the base-size extraction, the deep entry's probe epoch and each job's peak RSS."""
    result, stdout = run_bench(["--strategy", "scalar_mix_all", "--limit", "100", "--eval-limit", "30",
                                "--extract-limit", "60", "--skip-sweep", "--finetune-limit", "0", "--scale", *TINY],
                               tmp_path / "bench", conll_dir)
    assert result["complete"] is True and result["settings"]["strategy"] == "scalar_mix_all"
    assert math.isfinite(result["train_ratio"]) and result["train_ratio"] > 0
    assert result["train_mix_layers"] == num_layers(result["settings"]["encoder"]) == result["encoder_layers"]
    assert result["train_width"] == result["encoder_hidden"]  # the mix's output: one layer's width
    assert result["cold_sweep_s"] is None and result["peak_rss_mb"] > 0
    assert "finetune_document_ratio" not in result  # --finetune-limit 0 skips the part
    # --scale: a random encoder of BERT-base's shapes against its bare loop on the same 60 sentences' batches
    assert (result["base_layers"], result["base_hidden"]) == (12, 768) and result["base_extract_hooked"] is True
    assert result["base_extract_words"] == result["extract_words"]
    assert result["base_extract_bare_passes"] == result["base_extract_harness_passes"]
    assert (result["deep_states"], result["shallow_states"], result["deep_width"]) == (25, 7, 384)
    for key in ("base_extract_ratio", "deep_vs_shallow_epoch", "rss_minilm_child_mb", "rss_base_child_mb",
                "rss_minilm_results_mb", "rss_base_results_mb"):
        assert math.isfinite(result[key]) and result[key] > 0, key
    assert (result["rss_minilm_layers"], result["rss_base_layers"]) == (6, 12)
    assert "base size (12 layers × 768" in stdout and "25 against 7 hidden states" in stdout
