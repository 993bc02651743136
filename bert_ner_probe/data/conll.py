"""CoNLL-2003 style corpora: splits → documents → sentences (words, tags).

Reads column files (``word POS chunk NER`` or ``word NER``; the tag is the
last column), keeps ``-DOCSTART-`` document boundaries, converts IOB1 input to
IOB2, and checks every line: a malformed one raises
:class:`~bert_ner_probe.errors.DataFormatError` naming the file and line.

Valid but messy input runs with one warning line per file and kind, naming
the first file:line (``data.strict_*`` turn them into errors):

* a line of only invisible characters (U+FEFF, U+200B, U+00A0, …) is a blank line;
* an IOB2 ``I-X`` after ``O`` or after another type is repaired the way
  conlleval reads it: it opens a new entity, so it becomes ``B-X``
  (``data.strict_scheme=true`` makes it an error);
* a dev or test tag that training lacks stays in the gold tags; the tagger
  cannot predict it, so its entities score as misses
  (``data.strict_labels=true`` makes it an error).

With no local directory the corpus comes from the Hugging Face hub
(``eriktks/conll2003``) through :mod:`datasets`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import unicodedata
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

from bert_ner_probe.data.corpus import DOCSTART, Corpus, Sentence, Split, label_list, limited
from bert_ner_probe.data.scheme import TAG_RE, Scheme, iob1_to_iob2, repair_iob2
from bert_ner_probe.errors import DataFormatError, UserError
from bert_ner_probe.stamped_memo import StampedMemo

# File names accepted in ``data.dir``, per split, in order of preference.
SPLIT_FILES: Dict[str, Tuple[str, ...]] = {
    "train": ("train.txt", "eng.train"),
    "dev": ("dev.txt", "valid.txt", "eng.testa"),
    "test": ("test.txt", "eng.testb"),
}
HUB_DATASET = "eriktks/conll2003"
log = logging.getLogger(__name__)


def is_invisible(line: str) -> bool:
    """True for a line of only white space and format characters (U+FEFF, U+200B, U+00A0, …): a blank line."""
    return all(ch.isspace() or unicodedata.category(ch) in ("Cf", "Zs", "Zl", "Zp", "Cc") for ch in line)


def read_conll(path: os.PathLike | str, scheme: Scheme | str = Scheme.iob2,
               strict_scheme: bool = False) -> Tuple[List[Sentence], str]:
    """Read one CoNLL column file; log its warnings (see the module docstring).

    Returns the sentences (tags in IOB2) and the sha256 of the file's bytes.
    Raises :class:`DataFormatError` for a missing or empty file, a line whose
    column count differs from the file's first line, an empty token, a tag
    that is not ``O``/``B-X``/``I-X``, or (with ``strict_scheme``) an invalid
    IOB2 transition.
    """
    sentences, digest, warnings = _parse_conll(path, scheme, strict_scheme)
    for w in warnings:
        log.warning(w)
    return sentences, digest


def _parse_conll(path: os.PathLike | str, scheme: Scheme | str,
                 strict_scheme: bool) -> Tuple[List[Sentence], str, List[str]]:
    """:func:`read_conll` without logging: ``(sentences, sha256, warning lines)``."""
    scheme = Scheme.parse(scheme, "data.scheme")
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
    invisible: List[Tuple[int, str]] = []  # (line, text) of lines of only invisible characters

    def flush() -> None:
        nonlocal words, tags, seen_doc_content
        if words:
            sentences.append(Sentence(words, tags, doc, start))
            seen_doc_content = True
        words, tags = [], []

    for lineno, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not "!" <= line[:1] <= "~" and is_invisible(line):  # (most lines start with printable ASCII)
            if line.strip(" \t\f\v"):  # more than ASCII white space: worth a warning
                invisible.append((lineno, line))
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
        if not TAG_RE.match(tag):
            raise DataFormatError(p, lineno, f"expected a tag O, B-TYPE or I-TYPE in the last column, found {tag!r}")
        if not words:
            start = lineno
        words.append(cols[0])
        tags.append(tag)
    flush()

    if not sentences:
        raise DataFormatError(p, None, "no sentences: the file is empty")
    warnings: List[str] = []
    if invisible:
        line, text = invisible[0]
        warnings.append(f"{p}:{line}: a line of only invisible characters ({text!r}) is read as a blank line "
                        f"({len(invisible)} such line(s) in this file)")
    if scheme == Scheme.iob1:
        for s in sentences:
            s.tags = iob1_to_iob2(s.tags)
    else:
        warnings += repair_iob2(str(p), sentences, strict_scheme)
    return sentences, digest, warnings


def _read_conll_once(path: Path, scheme: Scheme | str, strict_scheme: bool = False,
                     memo: Optional[StampedMemo] = None) -> Tuple[List[Sentence], str]:
    """:func:`read_conll`, or with a ``memo`` its earlier result while the file's inode, size, mtime and ctime
    are unchanged (the sentences are never modified after reading).

    The file's warnings are logged on every call, so each job's log has them.
    """
    st = path.stat()
    key, stamp = (str(path.resolve()), str(scheme), strict_scheme), (st.st_ino, st.st_size, st.st_mtime_ns,
                                                                     st.st_ctime_ns)
    parse = lambda: _parse_conll(path, scheme, strict_scheme)  # noqa: E731
    sentences, digest, warnings = parse() if memo is None else memo.get(key, stamp, parse)
    for w in warnings:
        log.warning(w)
    return sentences, digest


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


def _unseen_labels(split: Split, labels: Iterable[str], strict: bool) -> Dict[str, int]:
    """The tags of ``split`` that ``labels`` (training) lacks, with their counts; log one warning line.

    With ``strict`` the first one is a :class:`DataFormatError`. Such tags stay in the gold tags; the
    tagger cannot predict them, so seqeval scores their entities as misses (as every peer tool does).
    """
    known = set(labels)
    counts: Dict[str, int] = {}
    first: Optional[Tuple[Optional[int], str]] = None
    for s in split.sentences:
        for k, tag in enumerate(s.tags):
            if tag in known:
                continue
            where = s.line + k if s.line else None
            if first is None:
                first = (where, tag)
                if strict:
                    raise DataFormatError(
                        split.source, where,
                        f"tag {tag!r} in the {split.name} split never occurs in the training data "
                        f"(train labels: {', '.join(sorted(known))}; data.strict_labels=false runs and "
                        "scores such entities as misses)")
            counts[tag] = counts.get(tag, 0) + 1
    if first is not None:
        where = f"{split.source}:{first[0]}" if first[0] is not None else split.source
        listed = ", ".join(f"{t} x{n}" for t, n in sorted(counts.items()))
        log.warning(f"{where}: tag {first[1]!r} in the {split.name} split never occurs in the training data; "
                    f"{sum(counts.values())} such tag(s) ({listed}) stay in the gold tags, the tagger cannot "
                    "predict them and they score as misses (data.strict_labels=true makes this an error)")
    return counts


def load_corpus(
    directory: Optional[str],
    scheme: Scheme | str = Scheme.iob2,
    limits: Optional[Dict[str, Optional[int]]] = None,
    hub_id: str = HUB_DATASET,
    hub_options: Optional[Dict[str, Any]] = None,
    strict_labels: bool = False,
    strict_scheme: bool = False,
    memo: Optional[StampedMemo] = None,
) -> Corpus:
    """Load the three splits from ``directory`` (or the hub when it is None).

    ``limits`` maps a split to the number of leading sentences to keep
    (None keeps all). Labels come from train; a dev/test tag that train never
    had is a warning and lands in ``Corpus.unseen_labels`` (an error with
    ``strict_labels``). ``strict_scheme`` makes an invalid IOB2 transition an
    error instead of a repair. ``hub_options`` go to :func:`.hub.load_hub_splits`
    (``columns``, ``dev_fraction``, ``split_seed``). ``memo`` (a
    :class:`~bert_ner_probe.memo.Session`'s ``files``) keeps parsed files for the next call.
    """
    limits = dict(limits or {})
    splits: Dict[str, Split] = {}
    notes: List[str] = []
    if directory:
        for name, path in find_split_files(directory).items():
            sentences, digest = _read_conll_once(path, scheme, strict_scheme, memo)
            splits[name] = Split(name, limited(sentences, limits.get(name)), str(path), digest)
    else:
        splits, notes = _load_hub(hub_id, limits, scheme, {**(hub_options or {}), "strict_scheme": strict_scheme})
    labels = label_list(splits["train"].sentences)
    unseen = {name: _unseen_labels(splits[name], labels, strict_labels) for name in ("dev", "test")}
    return Corpus(splits, labels, notes=notes,
                  unseen_labels={name: counts for name, counts in unseen.items() if counts})


def _load_hub(hub_id: str, limits: Dict[str, Optional[int]], scheme: Scheme | str = Scheme.iob2,
              options: Optional[Dict[str, Any]] = None) -> Tuple[Dict[str, Split], List[str]]:
    """Load a ``datasets`` token-classification dataset (hub id or local folder): see :mod:`.hub`."""
    help_text = (
        "point data.dir (or the CONLL2003_DIR environment variable) at a folder with "
        "train.txt/dev.txt/test.txt or eng.train/eng.testa/eng.testb"
    )
    try:
        import datasets  # noqa: F401, PLC0415 - optional at run time
    except ImportError:  # pragma: no cover - datasets is a dependency
        raise UserError(f"no data.dir given and the 'datasets' package is missing; {help_text}") from None
    from bert_ner_probe.data.hub import DatasetLoadError, load_hub_splits  # noqa: PLC0415 - imports datasets

    try:
        return load_hub_splits(hub_id, limits, scheme, **(options or {}))
    except DatasetLoadError as e:
        raise UserError(f"no data.dir given and {e}; {help_text}") from None
