"""IOB1 → IOB2 (bert_ner_probe/data/scheme.py) by hand; the repair of IOB2 slips is tested through the readers."""

from __future__ import annotations

from bert_ner_probe.data.scheme import iob1_to_iob2


def test_iob1_to_iob2_by_hand():
    assert iob1_to_iob2(["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-LOC", "I-ORG", "O", "B-MISC"]) == [
        "B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "B-ORG", "O", "B-MISC"]
    assert iob1_to_iob2([]) == []
    assert iob1_to_iob2(["B-PER", "I-PER"]) == ["B-PER", "I-PER"]  # IOB2 input is unchanged
