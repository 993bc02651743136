"""``experiment=probing debug=smoke`` end to end, on real CoNLL-2003 and a tiny BERT of 2 layers (3 hidden states):
the grids sweeper's union of grids, every job finished, the report's conditional gains and depth, and the one line
that says why there is no code length (the online code needs more training sentences than a smoke run has)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_the_probing_experiment_finishes_at_smoke_size(tmp_path, conll_dir, tiny_bert_folder):
    sweep = tmp_path / "sweep"
    # one seed and one job at a time keep it short (the launcher of two workers has its own test)
    proc = subprocess.run([sys.executable, "-m", "bert_ner_probe", "experiment=probing", "debug=smoke", "seed=1",
                           "trainer.concurrent=1", f"encoder.name_or_path={tiny_bert_folder}", "encoder.name=tiny-bert",
                           f"data.dir={conll_dir}", f"cache_dir={tmp_path / 'cache'}", f"hydra.sweep.dir={sweep}"],
                          cwd=tmp_path, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert "grids sweeper: 22 jobs (linear 9, bilstm 9, linear_conditional 2, bilstm_conditional 2)" in log
    results = [json.loads(p.read_text()) for p in sweep.glob("*/results.json")]
    assert len(results) == 22 and not list(sweep.glob("*/error.json"))
    assert not any(r.get("mdl") for r in results)  # debug=smoke turns the online code off
    conditional = [r for r in results if r["strategy"].startswith("conditional_")]
    assert sorted((r["probe"], r["layers"]) for r in conditional) == [
        ("bilstm", [0, 1]), ("bilstm", [0, 2]), ("linear", [0, 1]), ("linear", [0, 2])]
    assert all(r["dev"]["cross_entropy_bits"] > 0 for r in results)
    text = (sweep / "probing.md").read_text()
    assert text.count("gain over h_0 (bits/word)") == 2  # the linear and the BiLSTM table
    assert text.count("Code length: not measured — the online code needs 750 training sentences and these runs "
                      "trained on 200") == 2
    assert text.count("Best hidden state: ") == 2 and "## Depth side by side" in text
    assert (sweep / "layers.png").is_file() and "0 failed or missing" in (sweep / "table.md").read_text()
