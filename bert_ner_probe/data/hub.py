"""Any token-classification dataset of the ``datasets`` library as train/dev/test splits.

``data.hub_id`` is a hub id (:func:`datasets.load_dataset`), a folder written
by ``save_to_disk`` (:func:`datasets.load_from_disk`) or a folder of
parquet/json/csv files (``load_dataset(<folder>)``, split names taken from the
file names). Whatever the layout, the result is the same
:class:`~bert_ner_probe.data.corpus.Sentence` / :class:`~bert_ner_probe.data.corpus.Split`
objects the CoNLL reader builds, checked the same way:

* columns: the words and tags columns are found by name (``tokens``,
  ``words``… / ``ner_tags``, ``tags``…) or by type (the one list-of-ClassLabel
  column), or named with ``data.columns.tokens`` / ``data.columns.tags``;
* tags: ClassLabel ids become their names; string tags are taken as they are;
  either way every tag must be ``O``, ``B-X`` or ``I-X`` and IOB2 (IOB1 is
  converted with ``data.scheme=iob1``), as in a CoNLL file;
* splits: ``validation``, ``dev``, ``valid``… all map to dev; with no dev
  split a seeded ``data.dev_fraction`` of train (whole documents where there
  are documents) becomes dev, with a warning;
* documents: ``-DOCSTART-`` rows (as in ``eriktks/conll2003``) or a
  document-id column (``data.columns.document`` or a column named
  ``document_id``, ``doc_id``…) start documents; without either every
  sentence is its own document, so document context is sentence context —
  said in a note that ends up in ``results.json`` (``data_notes``).
"""

from __future__ import annotations

import hashlib
import json
import random
import logging
import warnings
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from bert_ner_probe.data.corpus import DOCSTART, SPLITS, Sentence, Split, limited
from bert_ner_probe.data.scheme import TAG_RE, Scheme, iob1_to_iob2, iob2_violations
from bert_ner_probe.errors import DataFormatError, UserError

#: Dataset split names accepted for each of our splits, in order of preference.
SPLIT_NAMES: Dict[str, Tuple[str, ...]] = {
    "train": ("train", "training"),
    "dev": ("validation", "dev", "valid", "val", "development", "eval"),
    "test": ("test", "testing"),
}
TOKEN_COLUMNS = ("tokens", "words", "token", "word", "sentence")
TAG_COLUMNS = ("ner_tags", "tags", "ner", "labels", "ner_labels", "label", "tag")
DOCUMENT_COLUMNS = ("document_id", "doc_id", "document", "doc", "docid")
NO_DOCUMENTS_NOTE = ("no document boundaries in the dataset (no -DOCSTART- rows or document-id column): "
                     "every sentence is its own document, so encoder.context=document is sentence context")

_DATA_FILES = (".parquet", ".json", ".jsonl", ".csv", ".arrow")

log = logging.getLogger(__name__)


class DatasetLoadError(UserError):
    """The dataset could not be opened at all (network, cache, path): the message says how to use local files."""


def _short(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def open_dataset(source: str):
    """The ``DatasetDict`` (or ``Dataset``) behind ``source``: a saved folder, a folder of data files, or a hub id."""
    import datasets  # noqa: PLC0415 - heavy; imported where the hub path is taken

    path = Path(source).expanduser()
    if path.is_dir():
        if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
            try:
                return datasets.load_from_disk(str(path))
            except Exception as e:  # a damaged save
                raise DatasetLoadError(f"{path}: load_from_disk failed ({_short(e)})") from None
        if not any(p.suffix in _DATA_FILES for p in path.rglob("*") if p.is_file()):
            raise DatasetLoadError(f"{path}: neither a save_to_disk folder (dataset_dict.json) nor a folder of "
                            f"{'/'.join(s[1:] for s in _DATA_FILES)} files")
    try:
        return datasets.load_dataset(str(path) if path.is_dir() else source)
    except Exception as e:  # network, cache, hub or file-format failure
        raise DatasetLoadError(f"loading {source!r} through datasets failed ({_short(e)})") from None


def _inner(feature: Any) -> Any:
    """The element feature of a list feature (``List``/``Sequence``/``LargeList``), else None."""
    return getattr(feature, "feature", None) if type(feature).__name__ in ("List", "Sequence", "LargeList") else None


def _is_string_list(feature: Any) -> bool:
    inner = _inner(feature)
    return inner is not None and getattr(inner, "dtype", None) in ("string", "large_string")


def _is_tag_list(feature: Any) -> bool:
    inner = _inner(feature)
    return inner is not None and (type(inner).__name__ == "ClassLabel"
                                  or getattr(inner, "dtype", None) in ("string", "large_string"))


def find_columns(features: Mapping[str, Any], source: str, tokens: Optional[str] = None,
                 tags: Optional[str] = None, document: Optional[str] = None) -> Tuple[str, str, Optional[str]]:
    """``(tokens, tags, document or None)`` column names: the ones given, else detected by name, then by type."""
    names = list(features)
    hint = (f"columns of {source}: {', '.join(f'{n} ({features[n]})' for n in names)}; "
            "name them with data.columns.tokens=... data.columns.tags=...")
    for given, what in ((tokens, "tokens"), (tags, "tags"), (document, "document")):
        if given is not None and given not in features:
            raise UserError(f"data.columns.{what}={given!r} is not a column; {hint}")
    if tokens is None:
        tokens = next((n for n in TOKEN_COLUMNS if n in features and _is_string_list(features[n])), None)
        if tokens is None:
            found = [n for n in names if _is_string_list(features[n]) and n != tags]
            tokens = found[0] if len(found) == 1 else None
    if tags is None:
        tags = next((n for n in TAG_COLUMNS if n in features and _inner(features[n]) is not None and n != tokens),
                    None)  # an integer list here gets tag_names()'s message
        if tags is None:
            found = [n for n in names if type(_inner(features[n])).__name__ == "ClassLabel"]
            tags = found[0] if len(found) == 1 else None
    if tokens is None or tags is None:
        raise UserError(f"cannot tell the {'tokens' if tokens is None else 'tags'} column; {hint}")
    if not _is_string_list(features[tokens]):
        raise UserError(f"column {tokens!r} of {source} is {features[tokens]}, not a list of strings; {hint}")
    if not _is_tag_list(features[tags]) and _inner(features[tags]) is None:
        raise UserError(f"column {tags!r} of {source} is {features[tags]}, not a list of tags; {hint}")
    if document is None:
        document = next((n for n in DOCUMENT_COLUMNS if n in features and _inner(features[n]) is None), None)
    return tokens, tags, document


def tag_names(feature: Any, column: str, source: str) -> Optional[List[str]]:
    """ClassLabel names of a tags column; None when the tags are strings; an error for unnamed integer ids."""
    inner = _inner(feature)
    if type(inner).__name__ == "ClassLabel":
        return list(inner.names)
    if getattr(inner, "dtype", None) in ("string", "large_string"):
        return None
    raise UserError(f"column {column!r} of {source} holds {inner} tags without names (no ClassLabel): "
                    "cast it to ClassLabel(names=[...]) or to strings (O, B-X, I-X) before saving")


def _split_map(available: Sequence[str], source: str) -> Dict[str, Optional[str]]:
    """Our split → the dataset's split name (dev may be None: carved out of train)."""
    out: Dict[str, Optional[str]] = {}
    for ours, names in SPLIT_NAMES.items():
        out[ours] = next((n for n in names if n in available), None)
        if out[ours] is None and ours != "dev":
            raise UserError(f"{source} has no {ours} split (splits: {', '.join(available)}; "
                            f"accepted names: {', '.join(names)})")
    return out


def read_split(rows: Any, tokens: str, tags: str, document: Optional[str], names: Optional[List[str]],
               scheme: Scheme | str, where: str, strict_scheme: bool = False) -> Tuple[List[Sentence], bool]:
    """Sentences of one dataset split, tags as IOB2 strings; ``(sentences, has_documents)``.

    ``where`` names the split in messages (``<source>[<split>]``); rows are
    numbered from 0 as in the dataset. The checks are the CoNLL reader's: a
    tag that is not ``O``/``B-X``/``I-X``, an empty token, or words and tags
    of different lengths is an error; an invalid IOB2 transition is repaired
    with one warning (an error with ``strict_scheme``).
    """
    scheme = Scheme.parse(scheme, "data.scheme")
    columns = [tokens, tags] + ([document] if document else [])
    sentences: List[Sentence] = []
    doc, content, docstart = 0, False, False
    last_id: Any = object()
    repaired: List[Tuple[int, int, str, str, int]] = []  # row, word, tag, previous tag, tags repaired in the row
    for row, ex in enumerate(rows.select_columns(columns)):
        words = [str(w) for w in ex[tokens]]
        if document is not None and ex[document] != last_id:
            if content:
                doc += 1
                content = False
            last_id = ex[document]
        if words and words[0] == DOCSTART:
            docstart = True
            if content:
                doc += 1
                content = False
            continue
        if not words:
            if ex[tags]:
                raise DataFormatError(where, None, f"row {row}: no tokens but {len(ex[tags])} tags")
            continue  # an empty row is a blank line: no word is dropped
        raw = list(ex[tags])
        if len(raw) != len(words):
            raise DataFormatError(where, None, f"row {row}: {len(words)} tokens but {len(raw)} tags")
        if names is not None:
            bad = [t for t in raw if not isinstance(t, int) or not 0 <= t < len(names)]
            if bad:
                raise DataFormatError(where, None, f"row {row}: tag id {bad[0]!r} outside the ClassLabel's "
                                                   f"{len(names)} names")
            raw = [names[t] for t in raw]
        for k, (w, t) in enumerate(zip(words, raw)):
            if not w.strip():
                raise DataFormatError(where, None, f"row {row}, word {k + 1}: empty token {w!r}")
            if not isinstance(t, str) or not TAG_RE.match(t):
                raise DataFormatError(where, None, f"row {row}, word {k + 1}: expected a tag O, B-TYPE or "
                                                   f"I-TYPE, found {t!r}")
        sentence = Sentence(words, iob1_to_iob2(raw) if scheme == Scheme.iob1 else raw, doc, 0)  # no file line
        bad = iob2_violations(sentence.tags) if scheme == Scheme.iob2 else []
        if bad:  # repaired as conlleval reads it (I-X opens a new entity), as the CoNLL reader does
            k, tag, prev = bad[0]
            if strict_scheme:
                raise DataFormatError(where, None, f"row {row}, word {k + 1}: tag {tag!r} follows {prev!r}, "
                                                   "which IOB2 does not allow (data.strict_scheme=false repairs it)")
            repaired.append((row, k + 1, tag, prev, len(bad)))
            sentence.tags = iob1_to_iob2(sentence.tags)
        sentences.append(sentence)
        content = True
    if repaired:
        row, word, tag, prev, _ = repaired[0]
        log.warning("%s: row %d, word %d: tag %r follows %r, which IOB2 does not allow; read as the start of a new "
                    "entity (B-%s) as conlleval does, %d such tag(s) repaired in this split "
                    "(data.strict_scheme=true makes this an error)", where, row, word, tag, prev, tag[2:],
                    sum(r[-1] for r in repaired))
    has_documents = docstart or document is not None
    if not has_documents:  # no boundaries: each sentence is its own document
        for i, s in enumerate(sentences):
            s.doc = i
    return sentences, has_documents


def carve_dev(train: List[Sentence], fraction: float, seed: int,
              by_document: bool) -> Tuple[List[Sentence], List[Sentence]]:
    """Split train into ``(train, dev)``: a seeded ``fraction`` of its documents (or sentences) becomes dev.

    Order is kept within each part and documents are renumbered from 0, so
    both are valid splits; at least one unit goes to each side.
    """
    if not 0.0 < fraction < 1.0:
        raise UserError(f"data.dev_fraction={fraction}: must be in (0, 1)")
    units: Dict[int, List[Sentence]] = {}
    for i, s in enumerate(train):
        units.setdefault(s.doc if by_document else i, []).append(s)
    keys = list(units)
    if len(keys) < 2:
        raise UserError(f"no dev split, and train has {len(keys)} {'document' if by_document else 'sentence'}: "
                        "too few to carve a dev split out of it")
    n_dev = min(len(keys) - 1, max(1, round(fraction * len(keys))))
    dev_keys = set(random.Random(seed).sample(keys, n_dev))

    def renumber(chosen: List[int]) -> List[Sentence]:
        return [Sentence(s.words, s.tags, d, s.line) for d, k in enumerate(chosen) for s in units[k]]

    return renumber([k for k in keys if k not in dev_keys]), renumber([k for k in keys if k in dev_keys])


def _digest(sentences: List[Sentence], extra: str = "") -> str:
    """sha256 of the words, tags and document of every sentence (what features and labels depend on)."""
    blob = json.dumps([extra, [[s.words, s.tags, s.doc] for s in sentences]])
    return hashlib.sha256(blob.encode()).hexdigest()


def load_hub_splits(source: str, limits: Mapping[str, Optional[int]], scheme: Scheme | str = Scheme.iob2,
                    columns: Optional[Mapping[str, Optional[str]]] = None, dev_fraction: float = 0.1,
                    split_seed: int = 1, strict_scheme: bool = False) -> Tuple[Dict[str, Split], List[str]]:
    """Train, dev and test :class:`Split` objects from a ``datasets`` dataset, and notes for ``results.json``.

    ``limits`` keeps the first N sentences per split (after any dev carve-out).
    """
    import datasets  # noqa: PLC0415

    columns = dict(columns or {})
    ds = open_dataset(source)
    if isinstance(ds, datasets.Dataset):  # one saved Dataset: it is the training data
        ds = datasets.DatasetDict({"train": ds})
    if not isinstance(ds, datasets.DatasetDict):
        raise UserError(f"{source}: expected a dataset with splits, got {type(ds).__name__}")
    mapping = _split_map(list(ds), source)
    features = ds[mapping["train"]].features
    tok, tag, doc = find_columns(features, source, columns.get("tokens"), columns.get("tags"),
                                 columns.get("document"))
    names = tag_names(features[tag], tag, source)
    read: Dict[str, List[Sentence]] = {}
    documents = True
    for ours, theirs in mapping.items():
        if theirs is None:
            continue
        where = f"{source}[{theirs}]"
        if tok not in ds[theirs].features or tag not in ds[theirs].features:
            raise UserError(f"{where} lacks column {tok!r} or {tag!r} (columns: {', '.join(ds[theirs].features)})")
        if tag_names(ds[theirs].features[tag], tag, where) != names:
            raise UserError(f"{where}: the tags column's ClassLabel names differ from the train split's")
        sentences, has_docs = read_split(ds[theirs], tok, tag, doc, names, scheme, where, strict_scheme)
        if not sentences:
            raise DataFormatError(where, None, "no sentences: the split is empty")
        read[ours] = sentences
        documents = documents and has_docs
    notes: List[str] = []
    sources = {ours: f"{source}[{theirs}]" for ours, theirs in mapping.items() if theirs is not None}
    if mapping["dev"] is None:
        message = (f"{source} has no dev split (splits: {', '.join(ds)}): {dev_fraction:.0%} of train's "
                   f"{'documents' if documents else 'sentences'} (seed {split_seed}) are the dev split")
        warnings.warn(message, stacklevel=2)
        notes.append(message)
        read["train"], read["dev"] = carve_dev(read["train"], dev_fraction, split_seed, documents)
        sources["dev"] = f"{source}[{mapping['train']} carve-out]"
        sources["train"] = f"{source}[{mapping['train']} minus carve-out]"
    if not documents:
        notes.append(NO_DOCUMENTS_NOTE)
    out: Dict[str, Split] = {}
    for name in SPLITS:
        out[name] = Split(name, limited(read[name], limits.get(name)), sources[name], _digest(read[name]))
    return out, notes


def hub_options(data_cfg: Any) -> Dict[str, Any]:
    """The ``data`` config keys :func:`load_hub_splits` takes (absent keys keep its defaults)."""
    out: Dict[str, Any] = {}
    if data_cfg.get("columns") is not None:
        out["columns"] = {k: data_cfg.columns.get(k) for k in ("tokens", "tags", "document")}
    for key in ("dev_fraction", "split_seed"):
        if data_cfg.get(key) is not None:
            out[key] = data_cfg.get(key)
    return out
