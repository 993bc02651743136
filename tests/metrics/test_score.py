"""Entity-level P/R/F1 (bert_ner_probe/metrics/score.py) by hand and against seqeval; the conlleval output file."""

from __future__ import annotations

import numpy as np
import pytest

from bert_ner_probe.errors import UserError
from bert_ner_probe.metrics.score import f1, score, write_conll

pytestmark = pytest.mark.usefixtures("one_thread")


def test_score_by_hand():
    s = score([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "O"]])
    assert s["precision"] == 1.0 and s["recall"] == 0.5
    assert s["f1"] == pytest.approx(2 / 3)
    assert s["support"] == 2
    assert s["per_type"] == {"LOC": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1},
                             "PER": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}}


def test_score_partial_span_and_extra_entity():
    # Gold: PER(0-1), LOC(3-4), ORG(5). Pred: PER(0-1) ✓, LOC(3) ✗ (wrong span), ORG(5) ✓, MISC(6) ✗.
    gold = [["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-LOC", "O", "B-ORG", "B-MISC"]]
    s = score(gold, pred)
    assert s["precision"] == pytest.approx(2 / 4) and s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))  # 4/7


@pytest.mark.parametrize("seed", range(5))
def test_score_equals_seqeval_classification_report(seed):
    """conlleval mode reads the entities once; every number must be the report's (malformed tags included)."""
    from seqeval.metrics import classification_report, f1_score

    rng = np.random.default_rng(seed)
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]
    gold = [[tags[i] for i in rng.integers(0, len(tags), rng.integers(1, 30))] for _ in range(200)]
    pred = [[t if rng.random() < 0.7 else tags[rng.integers(0, len(tags))] for t in g] for g in gold]
    if seed == 0:  # a type only predicted, one only in gold
        gold[0][0], pred[1][0] = "B-ONLYGOLD", "B-ONLYPRED"
    ours = score(gold, pred)
    report = classification_report(gold, pred, output_dict=True, zero_division=0)
    micro = report["micro avg"]
    assert ours["precision"] == pytest.approx(micro["precision"], abs=1e-12)
    assert ours["recall"] == pytest.approx(micro["recall"], abs=1e-12)
    assert ours["f1"] == pytest.approx(micro["f1-score"], abs=1e-12)
    assert ours["support"] == micro["support"]
    assert set(ours["per_type"]) == {k for k in report if not k.endswith(" avg")}
    for name, v in ours["per_type"].items():
        assert v == pytest.approx({"precision": report[name]["precision"], "recall": report[name]["recall"],
                                   "f1": report[name]["f1-score"], "support": report[name]["support"]}, abs=1e-12)
    assert ours["f1"] == pytest.approx(f1(gold, pred), abs=1e-12)
    assert f1(gold, pred) == pytest.approx(f1_score(gold, pred, zero_division=0), abs=1e-12)  # seqeval's own


@pytest.mark.parametrize("seed", range(3))
def test_strict_mode_equals_seqevals_strict_iob2_report(seed):
    """Strict mode reads IOB2 spans with the same reader as conlleval mode (entity_spans): seqeval's own strict
    report, number for number, on tags with malformed I- runs that the two modes read differently."""
    from seqeval.metrics import classification_report, f1_score
    from seqeval.scheme import IOB2

    rng = np.random.default_rng(100 + seed)
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "I-ORG", "B-MISC", "I-MISC"]
    gold = [[tags[i] for i in rng.integers(0, len(tags), rng.integers(1, 25))] for _ in range(150)]
    pred = [[t if rng.random() < 0.7 else tags[rng.integers(0, len(tags))] for t in g] for g in gold]
    ours = score(gold, pred, mode="strict")
    report = classification_report(gold, pred, output_dict=True, zero_division=0, mode="strict", scheme=IOB2)
    micro = report["micro avg"]
    assert (ours["precision"], ours["recall"], ours["f1"], ours["support"]) == (
        micro["precision"], micro["recall"], micro["f1-score"], micro["support"])
    assert ours["per_type"] == {name: {"precision": v["precision"], "recall": v["recall"], "f1": v["f1-score"],
                                       "support": v["support"]} for name, v in report.items() if not name.endswith(" avg")}
    assert f1(gold, pred, "strict") == f1_score(gold, pred, zero_division=0, mode="strict", scheme=IOB2)
    assert f1(gold, pred, "strict") != f1(gold, pred)  # the malformed runs count in conlleval mode alone


def test_score_rejects_bad_input():
    with pytest.raises(UserError, match="eval.mode='exact': expected one of conlleval"):
        score([["O"]], [["O"]], mode="exact")
    with pytest.raises(ValueError, match="differ in length"):
        score([["O", "O"]], [["O"]])
    with pytest.raises(ValueError, match="differ in length"):
        score([["O"], ["O"]], [["O"]])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # seqeval averages over zero entity types
def test_score_without_entities_is_zero():
    assert score([["O", "O"]], [["O", "O"]])["f1"] == 0.0


def test_write_conll_format(tmp_path):
    path = tmp_path / "dev.conll"
    write_conll(path, [["EU", "rejects"], ["Peter"]], [["B-ORG", "O"], ["B-PER"]], [["B-ORG", "O"], ["B-LOC"]])
    assert path.read_text(encoding="utf-8") == "EU B-ORG B-ORG\nrejects O O\n\nPeter B-PER B-LOC\n\n"
