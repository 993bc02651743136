"""The command on a saved ``datasets`` dataset (string tags, no dev split), end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hub_datasets import (
    string_tag_dataset,
)

from bert_ner_probe.data.hub import (
    NO_DOCUMENTS_NOTE,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.mark.e2e
def test_cli_runs_a_saved_string_tag_dataset_without_dev_split(tmp_path, conll_dir):
    path = tmp_path / "wnut_like"
    string_tag_dataset(conll_dir, n_train=250, n_test=60).save_to_disk(str(path))
    run = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "bert_ner_probe", "data.dir=null", f"data.hub_id={path}",
                           "strategy=last", "trainer.epochs=1", "probe.hidden_size=32", "threads=1", "progress=false",
                           f"cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={run}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads((run / "results.json").read_text())
    assert r["sizes"]["dev"]["sentences"] == 25 and r["sizes"]["train"]["sentences"] == 225
    assert r["sizes"]["test"]["sentences"] == 60
    assert len(r["labels"]) == 13  # O + B/I of six types
    assert any("no dev split" in n for n in r["data_notes"]) and NO_DOCUMENTS_NOTE in r["data_notes"]
    assert "no dev split" in proc.stderr  # the warning reaches the user
    pred = (run / "predictions" / "test.conll").read_text().split("\n\n")
    assert len([b for b in pred if b.strip()]) == 60
