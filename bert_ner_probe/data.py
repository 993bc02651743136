"""CoNLL-2003 style corpora: splits → documents → sentences (words, tags).

Reads column files (``word POS chunk NER`` or ``word NER``; the tag is the
last column), keeps ``-DOCSTART-`` document boundaries, converts IOB1 input to
IOB2, and checks every line: a malformed one raises
:class:`~bert_ner_probe.errors.DataFormatError` naming the file and line.
With no local directory the corpus comes from the Hugging Face hub
(``eriktks/conll2003``) through :mod:`datasets`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from .errors import DataFormatError, UserError

SPLITS: Tuple[str, ...] = ("train", "dev", "test")
DOCSTART = "-DOCSTART-"
# File names accepted in ``data.dir``, per split, in order of preference.
SPLIT_FILES: Dict[str, Tuple[str, ...]] = {
    "train": ("train.txt", "eng.train"),
    "dev": ("dev.txt", "valid.txt", "eng.testa"),
    "test": ("test.txt", "eng.testb"),
}
HUB_DATASET = "eriktks/conll2003"
_TAG_RE = re.compile(r"^(O|[BI]-\S+)$")


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
    """Train, dev and test splits and the label set (taken from train)."""

    splits: Dict[str, Split]
    labels: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)  # how the data was read, for results.json (hub datasets)

    def __getitem__(self, name: str) -> Split:
        return self.splits[name]

    def fingerprint(self) -> str:
        """One hash over every split's content and size (limits included)."""
        h = hashlib.sha256()
        for name in SPLITS:
            sp = self.splits[name]
            h.update(f"{name}:{sp.fingerprint}:{len(sp.sentences)};".encode())
        return h.hexdigest()


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


def _check_iob2(path: str, sentence: Sentence) -> None:
    prev = "O"
    for k, tag in enumerate(sentence.tags):
        if tag.startswith("I-") and (prev == "O" or prev[2:] != tag[2:]):
            raise DataFormatError(
                path,
                sentence.line + k,
                f"tag {tag!r} follows {prev!r}, which IOB2 does not allow; "
                "if this file is IOB1 set data.scheme=iob1",
            )
        prev = tag


def read_conll(path: os.PathLike | str, scheme: str = "iob2") -> Tuple[List[Sentence], str]:
    """Read one CoNLL column file.

    Returns the sentences (tags in IOB2) and the sha256 of the file's bytes.
    Raises :class:`DataFormatError` for a missing or empty file, a line whose
    column count differs from the file's first line, an empty token, or a tag
    that is not ``O``/``B-X``/``I-X``.
    """
    if scheme not in ("iob1", "iob2"):
        raise UserError(f"data.scheme must be iob1 or iob2, got {scheme!r}")
    p = Path(path)
    if not p.is_file():
        raise DataFormatError(p, None, "file not found")
    raw = p.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    try:
        body = raw[3:] if raw.startswith(b"\xef\xbb\xbf") else raw  # a UTF-8 byte-order mark is no token
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        line = body[: e.start].count(b"\n") + 1
        raise DataFormatError(p, line, "not valid UTF-8") from None

    sentences: List[Sentence] = []
    words: List[str] = []
    tags: List[str] = []
    start = 0
    doc = 0
    seen_doc_content = False
    ncols: Optional[int] = None

    def flush() -> None:
        nonlocal words, tags, seen_doc_content
        if words:
            sentences.append(Sentence(words, tags, doc, start))
            seen_doc_content = True
        words, tags = [], []

    for lineno, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            flush()
            continue
        if line[0] in " \t":
            raise DataFormatError(p, lineno, f"empty token (the line starts with whitespace): {line!r}")
        cols = line.split()
        if cols[0] == DOCSTART:
            flush()
            if seen_doc_content:
                doc += 1
                seen_doc_content = False
            continue
        if ncols is None:
            if len(cols) < 2:
                raise DataFormatError(
                    p, lineno, f"expected at least 2 columns (word ... tag), found {len(cols)}: {line!r}"
                )
            ncols = len(cols)
        if len(cols) != ncols:
            raise DataFormatError(
                p, lineno, f"expected {ncols} columns like the file's first line, found {len(cols)}: {line!r}"
            )
        tag = cols[-1]
        if not _TAG_RE.match(tag):
            raise DataFormatError(p, lineno, f"expected a tag O, B-TYPE or I-TYPE in the last column, found {tag!r}")
        if not words:
            start = lineno
        words.append(cols[0])
        tags.append(tag)
    flush()

    if not sentences:
        raise DataFormatError(p, None, "no sentences: the file is empty")
    for s in sentences:
        if scheme == "iob1":
            s.tags = iob1_to_iob2(s.tags)
        else:
            _check_iob2(str(p), s)
    return sentences, digest


# Files read by this process: {(path, scheme): ((inode, size, mtime, ctime), (sentences, digest))}. The jobs of
# a sweep run one after another in one process and read the same three files; the sentences are
# never modified after reading, so each file is parsed once while it is unchanged.
_read_files: Dict[Tuple[str, str], Tuple[Tuple[int, int], Tuple[List[Sentence], str]]] = {}


def _read_conll_once(path: Path, scheme: str) -> Tuple[List[Sentence], str]:
    """:func:`read_conll`, or its earlier result while the file's inode, size, mtime and ctime are unchanged."""
    st = path.stat()
    key, stamp = (str(path.resolve()), scheme), (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    seen = _read_files.get(key)
    if seen is not None and seen[0] == stamp:
        return seen[1]
    result = read_conll(path, scheme)
    _read_files[key] = (stamp, result)
    return result


def find_split_files(directory: os.PathLike | str) -> Dict[str, Path]:
    """Locate train/dev/test files (``train.txt``… or ``eng.train``…) in a folder."""
    d = Path(directory).expanduser()
    if not d.is_dir():
        raise UserError(f"data.dir {str(d)!r} is not a directory")
    found: Dict[str, Path] = {}
    for split, names in SPLIT_FILES.items():
        for name in names:
            if (d / name).is_file():
                found[split] = d / name
                break
        else:
            raise DataFormatError(
                d / names[0], None, f"missing {split} split: expected one of {', '.join(names)} in {d}"
            )
    return found


def _limited(sentences: List[Sentence], limit: Optional[int]) -> List[Sentence]:
    if limit is None:
        return sentences
    if limit < 1:
        raise UserError(f"data.limit values must be positive or null, got {limit}")
    return sentences[:limit]


def _check_labels(split: Split, labels: Iterable[str]) -> None:
    known = set(labels)
    for s in split.sentences:
        for k, tag in enumerate(s.tags):
            if tag not in known:
                raise DataFormatError(
                    split.source,
                    s.line + k if s.line else None,
                    f"tag {tag!r} in the {split.name} split never occurs in the training data "
                    f"(train labels: {', '.join(sorted(known))})",
                )


def label_list(sentences: Iterable[Sentence]) -> List[str]:
    """Labels sorted with ``O`` first, then by entity type, ``B-`` before ``I-``."""
    tags = {t for s in sentences for t in s.tags}
    return sorted(tags, key=lambda t: (t != "O", t[2:], t[:1]))


def load_corpus(
    directory: Optional[str],
    scheme: str = "iob2",
    limits: Optional[Dict[str, Optional[int]]] = None,
    hub_id: str = HUB_DATASET,
    hub_options: Optional[Dict[str, Any]] = None,
) -> Corpus:
    """Load the three splits from ``directory`` (or the hub when it is None).

    ``limits`` maps a split to the number of leading sentences to keep
    (None keeps all). Labels come from train; a dev/test tag that train never
    had is an error. ``hub_options`` go to :func:`.hub_data.load_hub_splits`
    (``columns``, ``dev_fraction``, ``split_seed``).
    """
    limits = dict(limits or {})
    splits: Dict[str, Split] = {}
    notes: List[str] = []
    if directory:
        for name, path in find_split_files(directory).items():
            sentences, digest = _read_conll_once(path, scheme)
            splits[name] = Split(name, _limited(sentences, limits.get(name)), str(path), digest)
    else:
        splits, notes = _load_hub(hub_id, limits, scheme, hub_options)
    labels = label_list(splits["train"].sentences)
    for name in ("dev", "test"):
        _check_labels(splits[name], labels)
    return Corpus(splits, labels, notes)


def _load_hub(hub_id: str, limits: Dict[str, Optional[int]], scheme: str = "iob2",
              options: Optional[Dict[str, Any]] = None) -> Tuple[Dict[str, Split], List[str]]:
    """Load a ``datasets`` token-classification dataset (hub id or local folder): see :mod:`.hub_data`."""
    help_text = (
        "point data.dir (or the CONLL2003_DIR environment variable) at a folder with "
        "train.txt/dev.txt/test.txt or eng.train/eng.testa/eng.testb"
    )
    try:
        import datasets  # noqa: F401, PLC0415 - optional at run time
    except ImportError:  # pragma: no cover - datasets is a dependency
        raise UserError(f"no data.dir given and the 'datasets' package is missing; {help_text}") from None
    from .hub_data import DatasetLoadError, load_hub_splits  # noqa: PLC0415 - hub_data imports this module

    try:
        return load_hub_splits(hub_id, limits, scheme, **(options or {}))
    except DatasetLoadError as e:
        raise UserError(f"no data.dir given and {e}; {help_text}") from None
