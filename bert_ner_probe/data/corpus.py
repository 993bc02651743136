"""The corpus types every reader builds and every later step reads: splits → documents → sentences.

:class:`Corpus` (train, dev and test :class:`Split` objects and the label
set), :class:`Sentence`, the split names and :data:`IGNORE_INDEX`, the label
id of a word no loss or metric reads. The readers (:mod:`.conll` for CoNLL
column files, :mod:`.hub` for ``datasets``) import this module; it imports
nothing of the package but its errors.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple

from bert_ner_probe.errors import UserError

SPLITS: Tuple[str, ...] = ("train", "dev", "test")
DOCSTART = "-DOCSTART-"  # a document boundary row, in CoNLL files and in hub datasets alike
#: The label id of a word no loss reads: padding, and a dev/test tag training lacks (PyTorch's ``ignore_index``).
IGNORE_INDEX = -100


@dataclass
class Sentence:
    """One sentence: its words, their IOB2 tags, its document and source line."""

    words: List[str]
    tags: List[str]
    doc: int  # index of the document within its split
    line: int  # 1-based line of the first word in the source file (0 for the hub)


@dataclass
class Split:
    """The sentences of one split, in file order, plus where they came from."""

    name: str
    sentences: List[Sentence]
    source: str  # file path or hub id, for messages
    fingerprint: str  # sha256 of the content the sentences were read from

    @property
    def num_words(self) -> int:
        return sum(len(s.words) for s in self.sentences)

    def documents(self) -> List[List[int]]:
        """Sentence indices grouped by document, in order."""
        docs: Dict[int, List[int]] = {}
        for i, s in enumerate(self.sentences):
            docs.setdefault(s.doc, []).append(i)
        return list(docs.values())


@dataclass
class Corpus:
    """Train, dev and test splits and the label set the tagger predicts (taken from train)."""

    splits: Dict[str, Split]
    labels: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)  # how the data was read, for results.json (hub datasets)
    # Per dev/test split, each tag that training lacks and how often it occurs there: kept in the
    # gold tags and scored, but outside ``labels``, so the tagger never predicts it.
    unseen_labels: Dict[str, Dict[str, int]] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Split:
        return self.splits[name]

    def label_ids(self, split: str) -> List[int]:
        """Every word's label index in ``labels``, in order; a tag training lacks gets
        :data:`IGNORE_INDEX`, which no loss reads."""
        index = {t: i for i, t in enumerate(self.labels)}
        return [index.get(t, IGNORE_INDEX) for s in self.splits[split].sentences for t in s.tags]

    def fingerprint(self) -> str:
        """One hash over every split's content and size (limits included)."""
        h = hashlib.sha256()
        for name in SPLITS:
            sp = self.splits[name]
            h.update(f"{name}:{sp.fingerprint}:{len(sp.sentences)};".encode())
        return h.hexdigest()


def limited(sentences: List[Sentence], limit: Optional[int]) -> List[Sentence]:
    """The first ``limit`` sentences (all when ``limit`` is None): ``data.limit.<split>``."""
    if limit is None:
        return sentences
    if limit < 1:
        raise UserError(f"data.limit values must be positive or null, got {limit}")
    return sentences[:limit]


def label_list(sentences: Iterable[Sentence]) -> List[str]:
    """Labels sorted with ``O`` first, then by entity type, ``B-`` before ``I-``."""
    tags = {t for s in sentences for t in s.tags}
    return sorted(tags, key=lambda t: (t != "O", t[2:], t[:1]))
