"""The probes and the probing controls end to end, on real CoNLL-2003 data and the embedded MiniLM.

One command run extracts the features (``probe=linear`` over hidden state 3, with its online code
length); the runs after it read the same cache in this process (:func:`bert_ner_probe.api.probe`): the
MLP probe, the control task, the BiLSTM; the random encoder gets its own cache entry. The report over
their folder writes the probing table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# 800 training sentences: the online code's first two blocks (0.1 and 0.2%) hold one sentence each.
LIMITS = ["data.limit.train=800", "data.limit.dev=150", "data.limit.test=150", "progress=false", "threads=1"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, conll_dir):
    """``(root, probe_here)``: the first run by the command, then a function running more in this process."""
    root = tmp_path_factory.mktemp("probing")
    common = [*LIMITS, f"data.dir={conll_dir}", f"cache_dir={root / 'cache'}"]
    proc = subprocess.run([sys.executable, "-m", "bert_ner_probe", "probe=linear", "strategy=layer", "strategy.index=3",
                           "mdl=true", "trainer.epochs=2", *common, f"hydra.run.dir={root / 'runs' / 'linear'}"],
                          cwd=root, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "probe=linear" in proc.stdout

    def probe_here(name, *overrides):
        from bert_ner_probe.api import probe

        return probe(["strategy=layer", "strategy.index=3", *overrides, *common], out_dir=root / "runs" / name)

    return root, probe_here


def _result(root, name):
    return json.loads((root / "runs" / name / "results.json").read_text())


def test_the_linear_probe_runs_end_to_end_with_its_code_length(sweep):
    root, _ = sweep
    r = _result(root, "linear")
    assert r["probe"] == "linear" and r["layers"] == [3] and r["strategy"] == "layer_3"
    assert r["control"] == "none" and r["encoder_weights"] == "pretrained"
    assert 0.3 < r["dev"]["f1"] < 1 and 0.8 < r["dev"]["accuracy"] < 1
    assert r["dev_score"] == {"name": "dev_f1", "higher_is_better": True}  # what early stopping watched
    assert r["history"][r["best_epoch"] - 1]["dev_f1"] == r["dev"]["f1"]  # the best epoch's dev predictions, kept
    assert (root / "runs" / "linear" / "predictions" / "dev.conll").is_file()
    mdl = r["mdl"]
    assert mdl["num_labels"] == len(r["labels"]) == 9  # CoNLL-2003's O and B-/I- of PER, ORG, LOC, MISC: K = 9
    assert len(mdl["blocks"]) == 11 and mdl["blocks"][0]["uniform"]
    words = sum(b["words"] for b in mdl["blocks"])
    assert words == r["sizes"]["train"]["words"]  # every training word is sent once
    import math

    k = len(r["labels"])
    assert mdl["uniform_bits"] == pytest.approx(words * math.log2(k))
    assert mdl["online_bits"] == pytest.approx(mdl["blocks"][0]["words"] * math.log2(k)
                                               + sum(b["bits"] for b in mdl["blocks"][1:]))
    assert mdl["compression"] > 1.5  # hidden state 3 makes the tags far cheaper to send than uniform
    # each probe trained on its whole prefix (the sentences of the blocks before), stopped early on the dev split
    assert [p["train_sentences"] for p in mdl["probes"]] == [1, 2, 3, 6, 13, 26, 50, 100, 200, 400]
    assert mdl["stop_set"] == "dev" and all(p["steps"] >= mdl["settings"]["min_steps"] for p in mdl["probes"])
    assert 0 < r["dev"]["cross_entropy_bits"] < math.log2(9)  # its dev cross-entropy, bits per word


def test_the_mlp_probe_reads_the_same_cache(sweep):
    root, probe_here = sweep
    result = probe_here("mlp", "probe=mlp", "trainer.epochs=2")
    assert result.probe == "mlp" and result.cache_hit and result.encoder_passes == 0
    assert result.dev.f1 > 0.3
    assert (root / "runs" / "mlp" / "predictions" / "test.conll").is_file()


def test_the_control_task_trains_on_word_type_tags(sweep):
    root, probe_here = sweep
    result = probe_here("control", "probe=linear", "control=word_type", "trainer.epochs=2")
    assert result.control == "word_type" and result.cache_hit  # the real task's features
    # Early stopping watched dev token accuracy, and the record names it so.
    assert result.dev_score_name == "dev_accuracy" and "dev_f1" not in result.raw["history"][0]
    assert result.best_dev_score == pytest.approx(result.dev.accuracy)
    real = _result(root, "linear")
    assert result.dev.accuracy < real["dev"]["accuracy"]  # a linear probe cannot memorise types as it reads NER
    # The same word type has the same gold control tag wherever it occurs.
    tag_of = {}
    for line in (root / "runs" / "control" / "predictions" / "dev.conll").read_text().splitlines():
        if line:
            word, gold, _ = line.split(" ")
            assert tag_of.setdefault(word.lower(), gold) == gold


def test_the_random_encoder_has_its_own_cache_entry_and_reaches_less(sweep):
    root, probe_here = sweep
    result = probe_here("random", "probe=linear", "encoder.weights=random", "trainer.epochs=2")
    assert result.encoder_weights == "random" and not result.cache_hit
    assert len(list((root / "cache").glob("*/meta.json"))) == 2
    assert result.dev.f1 < _result(root, "linear")["dev"]["f1"]


def test_the_report_writes_the_probing_table(sweep):
    from bert_ner_probe.report.callback import write_report

    root, _ = sweep
    report = write_report(root / "runs")
    text = (root / "runs" / "probing.md").read_text()
    assert report["probing"] == root / "runs" / "probing.md"
    assert "## linear probe" in text and "selectivity" in text and "compression" in text
    assert "random encoder below pretrained (dev F1): **holds**" in text
    assert "control task below real task (dev accuracy): **holds**" in text
