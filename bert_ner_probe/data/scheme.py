"""Tagging schemes: IOB1 input read as IOB2, and invalid IOB2 transitions repaired as conlleval reads them.

In IOB2 every entity starts with ``B-X`` and continues with ``I-X``; in IOB1
an ``I-X`` may start one (``B-X`` only separates two adjacent entities of
one type). :func:`iob1_to_iob2` rewrites each ``I-X`` that follows ``O`` or
another type as ``B-X``. The same rewrite is how conlleval (and seqeval's
default mode) reads an invalid IOB2 file, so :func:`repair_iob2` uses it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, List, Sequence, Tuple

from bert_ner_probe.choice import Choice
from bert_ner_probe.errors import DataFormatError

if TYPE_CHECKING:
    from bert_ner_probe.data.corpus import Sentence

TAG_RE = re.compile(r"^(O|[BI]-\S+)$")  # a tag of either scheme


class Scheme(Choice):
    """``data.scheme``: the scheme the data files are written in (the tagger always sees IOB2)."""

    iob1 = "iob1"
    iob2 = "iob2"


def iob1_to_iob2(tags: Sequence[str]) -> List[str]:
    """Convert IOB1 tags (``I-`` may start an entity) to IOB2 (``B-`` always does)."""
    out: List[str] = []
    prev = "O"
    for tag in tags:
        if tag.startswith("I-") and (prev == "O" or prev[2:] != tag[2:]):
            tag = "B-" + tag[2:]
        out.append(tag)
        prev = tag
    return out


def iob2_violations(tags: Sequence[str]) -> List[Tuple[int, str, str]]:
    """``(index, tag, previous tag)`` of each ``I-X`` after ``O`` or after another type: where IOB1 reading changes it."""
    return [(k, tag, tags[k - 1] if k else "O")
            for k, (tag, read) in enumerate(zip(tags, iob1_to_iob2(tags))) if tag != read]


def repair_iob2(path: str, sentences: List["Sentence"], strict: bool) -> List[str]:
    """Repair invalid IOB2 transitions of a file's sentences in place as conlleval reads them (``I-X`` → ``B-X``).

    Returns the warning (one line, or none); with ``strict`` the first one is a :class:`DataFormatError`.
    """
    count, first = 0, None
    for s in sentences:
        bad = iob2_violations(s.tags)
        if not bad:
            continue
        if first is None:
            k, tag, prev = bad[0]
            first = (s.line + k, tag, prev)
            if strict:
                raise DataFormatError(path, first[0], f"tag {tag!r} follows {prev!r}, which IOB2 does not allow; "
                                      "if this file is IOB1 set data.scheme=iob1 (or data.strict_scheme=false "
                                      "to read it as conlleval does)")
        count += len(bad)
        s.tags = iob1_to_iob2(s.tags)
    if first is None:
        return []
    line, tag, prev = first
    return [f"{path}:{line}: tag {tag!r} follows {prev!r}, which IOB2 does not allow; read as the start of a "
            f"new entity (B-{tag[2:]}) as conlleval does, {count} such tag(s) repaired in this file "
            "(data.strict_scheme=true makes this an error)"]
