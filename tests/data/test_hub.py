"""Any ``datasets`` token-classification dataset as a corpus (bert_ner_probe/data/hub.py), on real CoNLL-2003
sentences."""

from __future__ import annotations

import warnings

import datasets
import pytest
from hub_datasets import (
    CONLL_LABELS,
    classlabel_dataset,
    conll_sentences,
    six_types,
    string_tag_dataset,
)

from bert_ner_probe.data.conll import load_corpus
from bert_ner_probe.data.hub import (
    NO_DOCUMENTS_NOTE,
    carve_dev,
    find_columns,
    load_hub_splits,
)
from bert_ner_probe.errors import DataFormatError, UserError

SIZES = {"train": 120, "dev": 40, "test": 40}


def _subsequence(part, whole) -> bool:
    """``part`` is ``whole`` with items left out, order kept."""
    it = iter(whole)
    return all(any(x == y for y in it) for x in part)


def _quiet_load(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_hub_splits(str(path), {}, **kw)


def _saved(tmp_path, rows, features=None, splits=("train", "validation", "test")):
    ds = datasets.Dataset.from_dict(rows, features=features)
    path = tmp_path / "bad"
    datasets.DatasetDict({s: ds for s in splits}).save_to_disk(str(path))
    return str(path)


def test_classlabel_valid_split_with_docstart_rows_reads_like_the_conll_files(tmp_path, conll_dir):
    # The same sentences, tags and document numbers as the CoNLL reader gives for the files.
    path = tmp_path / "ds"
    classlabel_dataset(conll_dir, SIZES, docstart_rows=True, doc_column=False).save_to_disk(str(path))
    splits, notes = load_hub_splits(str(path), {})
    assert notes == []
    for ours in ("train", "dev", "test"):
        want = conll_sentences(conll_dir, ours, SIZES[ours])
        got = splits[ours].sentences
        assert [(s.words, s.tags, s.doc) for s in got] == [(s.words, s.tags, s.doc) for s in want]
        assert len(splits[ours].documents()) == len({s.doc for s in want}) > 1
    assert splits["dev"].source == f"{path}[valid]"


def test_document_id_column_gives_the_documents(tmp_path, conll_dir):
    path = tmp_path / "ds"
    classlabel_dataset(conll_dir, SIZES, doc_column=True).save_to_disk(str(path))
    splits, notes = load_hub_splits(str(path), {"train": 50})
    want = conll_sentences(conll_dir, "train", 50)
    assert [s.doc for s in splits["train"].sentences] == [s.doc for s in want]
    assert len(splits["train"].sentences) == 50 and notes == []


def test_string_tags_without_dev_split_carve_a_seeded_dev_with_a_warning(tmp_path, conll_dir):
    path = tmp_path / "ds"
    string_tag_dataset(conll_dir, n_train=200, n_test=40).save_to_disk(str(path))
    with pytest.warns(UserWarning, match="no dev split"):
        splits, notes = load_hub_splits(str(path), {}, dev_fraction=0.25, split_seed=3)
    train, dev = splits["train"].sentences, splits["dev"].sentences
    assert (len(train), len(dev)) == (150, 50)
    source = conll_sentences(conll_dir, "train", 200)
    expected = [(s.words, six_types(s.tags, s.words)) for s in source]
    # Every sentence lands in exactly one part, each part keeps the dataset's order.
    assert sorted((s.words, s.tags) for s in train + dev) == sorted(expected)
    assert _subsequence([(s.words, s.tags) for s in train], expected)
    assert _subsequence([(s.words, s.tags) for s in dev], expected)
    # No document information: each sentence is its own document, and the run is told so.
    assert [s.doc for s in dev] == list(range(50))
    assert any("no dev split" in n for n in notes) and NO_DOCUMENTS_NOTE in notes
    types = {t[2:] for s in train + dev for t in s.tags if t != "O"}
    assert types == {"person", "location", "corporation", "group", "product", "creative-work"}
    # The same seed carves the same dev; another seed another one.
    again, _ = _quiet_load(path, dev_fraction=0.25, split_seed=3)
    other, _ = _quiet_load(path, dev_fraction=0.25, split_seed=4)
    assert [s.words for s in again["dev"].sentences] == [s.words for s in dev]
    assert [s.words for s in other["dev"].sentences] != [s.words for s in dev]


def test_carve_out_keeps_whole_documents(conll_dir):
    sentences = conll_sentences(conll_dir, "train", 300)
    train, dev = carve_dev(sentences, 0.2, seed=1, by_document=True)
    n_docs = len({s.doc for s in sentences})
    assert len({s.doc for s in dev}) == round(0.2 * n_docs)
    assert len(train) + len(dev) == 300
    doc_of = {id(s.words): s.doc for s in sentences}  # the carved sentences share their word lists
    # Sentences of one original document stay together, and in order.
    dev_docs = {doc_of[id(s.words)] for s in dev}
    assert not dev_docs & {doc_of[id(s.words)] for s in train}
    assert [doc_of[id(s.words)] for s in dev] == sorted(doc_of[id(s.words)] for s in dev)
    assert [s.doc for s in dev] == sorted(s.doc for s in dev) and dev[0].doc == 0


def test_parquet_folder_and_named_columns(tmp_path, conll_dir):
    folder = tmp_path / "pq"
    folder.mkdir()
    ds = classlabel_dataset(conll_dir, SIZES, doc_column=False)
    ds = ds.rename_columns({"words": "toks", "labels": "ner_ids"})
    for name, split in ds.items():  # a second list-of-strings column: the words column is ambiguous
        split.add_column("lower", [[w.lower() for w in ws] for ws in split["toks"]]).to_parquet(
            str(folder / f"{name}.parquet"))
    with pytest.raises(UserError, match="cannot tell the tokens column.*data.columns.tokens"):
        load_hub_splits(str(folder), {})
    splits, notes = _quiet_load(folder, columns={"tokens": "toks", "tags": "ner_ids"})
    want = conll_sentences(conll_dir, "dev", SIZES["dev"])
    assert [(s.words, s.tags) for s in splits["dev"].sentences] == [(s.words, s.tags) for s in want]
    assert notes == [NO_DOCUMENTS_NOTE]


@pytest.mark.parametrize("tags, message", [
    (["B-PER", "X-PER"], r"\[train\]: row 1, word 2: expected a tag O, B-TYPE or I-TYPE, found 'X-PER'"),
    (["B-PER"], r"\[train\]: row 1: 2 tokens but 1 tags"),
])
def test_bad_rows_name_split_row_and_word(tmp_path, tags, message):
    path = _saved(tmp_path, {"tokens": [["a", "b"], ["Peter", "Smith"]], "tags": [["O", "O"], tags]})
    with pytest.raises(DataFormatError, match=message):
        load_hub_splits(path, {})


def test_an_iob2_slip_is_repaired_with_a_warning_or_an_error_when_strict(tmp_path, caplog):
    path = _saved(tmp_path, {"tokens": [["a", "b"], ["Peter", "Smith"]], "tags": [["O", "O"], ["O", "I-PER"]]})
    with caplog.at_level("WARNING"):
        splits, _ = load_hub_splits(path, {})
    assert splits["train"].sentences[1].tags == ["O", "B-PER"]
    assert "[train]: row 1, word 2: tag 'I-PER' follows 'O'" in caplog.text and "1 such tag(s) repaired" in caplog.text
    with pytest.raises(DataFormatError, match=r"\[train\]: row 1, word 2: tag 'I-PER' follows 'O', which IOB2 does "
                                              r"not allow"):
        load_hub_splits(path, {}, strict_scheme=True)


def test_iob1_scheme_converts_like_the_conll_reader(tmp_path):
    path = _saved(tmp_path, {"tokens": [["Peter", "Smith", "said"]], "tags": [["I-PER", "I-PER", "O"]]})
    splits, _ = load_hub_splits(path, {}, scheme="iob1")
    assert splits["train"].sentences[0].tags == ["B-PER", "I-PER", "O"]


def test_integer_tags_without_names_and_missing_test_split_are_user_errors(tmp_path):
    rows = {"tokens": [["a"]], "tags": [[0]]}
    with pytest.raises(UserError, match="without names"):
        load_hub_splits(_saved(tmp_path, rows), {})
    path = tmp_path / "notest"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"tokens": [["a"]], "tags": [["O"]]})}).save_to_disk(
        str(path))
    with pytest.raises(UserError, match="no test split"):
        load_hub_splits(str(path), {})


def test_columns_are_detected_by_name_then_by_type():
    f = datasets.Features({"id": datasets.Value("string"), "sentence_words": datasets.List(datasets.Value("string")),
                           "entity": datasets.List(datasets.ClassLabel(names=CONLL_LABELS)),
                           "doc_id": datasets.Value("int64")})
    assert find_columns(f, "x") == ("sentence_words", "entity", "doc_id")
    with pytest.raises(UserError, match="data.columns.tags='nope' is not a column"):
        find_columns(f, "x", tags="nope")


def test_corpus_labels_and_unknown_dev_tag_check_are_the_conll_ones(tmp_path):
    rows = {"tokens": [["Peter"], ["Paris"]], "tags": [["B-PER"], ["B-LOC"]]}
    ds = datasets.Dataset.from_dict(rows)
    train = ds.select([0])
    path = tmp_path / "d"
    datasets.DatasetDict({"train": train, "dev": ds, "test": train}).save_to_disk(str(path))
    corpus = load_corpus(None, hub_id=str(path))  # a dev tag training lacks: kept, scored as a miss
    assert corpus.labels == ["B-PER", "O"] or "B-LOC" not in corpus.labels
    assert corpus.unseen_labels == {"dev": {"B-LOC": 1}}
    with pytest.raises(DataFormatError, match=r"d\[dev\]: tag 'B-LOC' in the dev split never occurs in the training"):
        load_corpus(None, hub_id=str(path), strict_labels=True)
