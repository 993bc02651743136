"""``datasets`` datasets built from the real CoNLL-2003 files, for the hub-data, API and tracking tests.

Nothing is downloaded or committed: the first sentences of each split are
read with :func:`bert_ner_probe.data.conll.read_conll` and turned into a
``datasets.DatasetDict`` in one of the layouts other datasets use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import datasets

from bert_ner_probe.data.conll import read_conll
from bert_ner_probe.data.corpus import Sentence

CONLL_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
#: CoNLL's four types spread over six, WNUT-17 style (deterministic per entity, so IOB2 stays valid).
SIX_TYPES = {"PER": ("person", "person"), "LOC": ("location", "location"),
             "ORG": ("corporation", "group"), "MISC": ("product", "creative-work")}


def conll_sentences(conll_dir: Path, split: str, n: int) -> List[Sentence]:
    """The first ``n`` sentences of ``<split>.txt`` (documents numbered as the CoNLL reader numbers them)."""
    sentences, _ = read_conll(conll_dir / f"{split}.txt")
    return sentences[:n]


def six_types(tags: List[str], words: List[str]) -> List[str]:
    """Retype each entity: ORG and MISC split in two by the parity of the entity's first word's length."""
    out, current = [], ""
    for tag, word in zip(tags, words):
        if tag.startswith("B-"):
            current = SIX_TYPES[tag[2:]][len(word) % 2]
            out.append("B-" + current)
        elif tag.startswith("I-"):
            out.append("I-" + current)
        else:
            out.append("O")
    return out


def string_tag_dataset(conll_dir: Path, n_train: int = 300, n_test: int = 80) -> datasets.DatasetDict:
    """``tokens`` + string ``tags`` of six types, train and test only (no dev), no document information."""
    def build(sentences: List[Sentence]) -> datasets.Dataset:
        return datasets.Dataset.from_dict({"tokens": [s.words for s in sentences],
                                           "tags": [six_types(s.tags, s.words) for s in sentences]})
    return datasets.DatasetDict({"train": build(conll_sentences(conll_dir, "train", n_train)),
                                 "test": build(conll_sentences(conll_dir, "test", n_test))})


def classlabel_dataset(conll_dir: Path, sizes: Dict[str, int], docstart_rows: bool = False,
                       doc_column: bool = True) -> datasets.DatasetDict:
    """``words`` + ClassLabel ``labels`` with ``train``/``valid``/``test`` splits.

    With ``doc_column`` a ``doc_id`` column holds each sentence's document;
    with ``docstart_rows`` a ``-DOCSTART-`` row (tag O) opens each document,
    as in ``eriktks/conll2003``.
    """
    features = datasets.Features({"words": datasets.List(datasets.Value("string")),
                                  "labels": datasets.List(datasets.ClassLabel(names=CONLL_LABELS)),
                                  "doc_id": datasets.Value("int64")})
    out = {}
    for ours, theirs in (("train", "train"), ("dev", "valid"), ("test", "test")):
        rows = {"words": [], "labels": [], "doc_id": []}
        last = None
        for s in conll_sentences(conll_dir, ours, sizes[ours]):
            if docstart_rows and s.doc != last:
                rows["words"].append(["-DOCSTART-"])
                rows["labels"].append([0])
                rows["doc_id"].append(s.doc)
            last = s.doc
            rows["words"].append(s.words)
            rows["labels"].append([CONLL_LABELS.index(t) for t in s.tags])
            rows["doc_id"].append(s.doc)
        ds = datasets.Dataset.from_dict(rows, features=features)
        out[theirs] = ds if doc_column else ds.remove_columns("doc_id")
    return datasets.DatasetDict(out)
