"""CoNLL column files (bert_ner_probe/data/conll.py): formats, documents, every malformed input, limits, labels, the real corpus."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bert_ner_probe.data.conll import load_corpus, read_conll
from bert_ner_probe.data.corpus import label_list
from bert_ner_probe.errors import DataFormatError, UserError


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _error(exc_info) -> str:
    return str(exc_info.value)


def test_four_column_corpus(small_corpus_dir):
    corpus = load_corpus(str(small_corpus_dir))
    train = corpus["train"]
    # Lines: 1 -DOCSTART-, 3-6 sentence 1, 8-9 sentence 2, 11 -DOCSTART-, 13-14, 16-19, 21-22.
    assert [s.line for s in train.sentences] == [3, 8, 13, 16, 21]
    assert [s.doc for s in train.sentences] == [0, 0, 1, 1, 1]
    assert train.documents() == [[0, 1], [2, 3, 4]]
    assert train.sentences[0].words == ["EU", "rejects", "German", "call"]
    assert train.sentences[0].tags == ["B-ORG", "O", "B-MISC", "O"]
    assert train.sentences[3].tags == ["O", "B-ORG", "I-ORG", "O"]
    assert train.num_words == 4 + 2 + 2 + 4 + 2
    assert len(corpus["dev"].sentences) == 2 and len(corpus["test"].sentences) == 1
    assert train.source == str(small_corpus_dir / "train.txt")
    # Labels come from train: O first, then by type, B- before I-.
    assert corpus.labels == ["O", "B-LOC", "I-LOC", "B-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]


def test_two_column_file_without_docstart(tmp_path):
    p = _write(tmp_path / "x.txt", "John B-PER\nSmith I-PER\nran O\n\n\n\nParis B-LOC\n")
    sentences, digest = read_conll(p)
    assert [(s.words, s.tags, s.doc, s.line) for s in sentences] == [
        (["John", "Smith", "ran"], ["B-PER", "I-PER", "O"], 0, 1),
        (["Paris"], ["B-LOC"], 0, 7),
    ]
    assert len(digest) == 64


def test_docstart_boundaries_give_document_ids(tmp_path):
    text = ("-DOCSTART- O\n\n-DOCSTART- O\n\n"  # an empty document is not counted
            "a O\n\nb O\n\n"
            "-DOCSTART- O\n\nc O\n"
            "-DOCSTART- O\n"  # no blank line before it: it still ends the sentence
            "d O\ne O\n")
    sentences, _ = read_conll(_write(tmp_path / "x.txt", text))
    assert [(s.words, s.doc) for s in sentences] == [(["a"], 0), (["b"], 0), (["c"], 1), (["d", "e"], 2)]
    assert [s.line for s in sentences] == [5, 7, 11, 13]


def test_crlf_tabs_and_trailing_spaces_are_accepted(tmp_path):
    p = _write(tmp_path / "x.txt", "John\tNNP\tB-PER \r\nSmith\tNNP\tI-PER\r\n\r\nok\tJJ\tO\r\n")
    sentences, _ = read_conll(p)
    assert [(s.words, s.tags) for s in sentences] == [(["John", "Smith"], ["B-PER", "I-PER"]), (["ok"], ["O"])]


def test_utf8_byte_order_mark_is_not_part_of_the_first_token(tmp_path):
    # Files saved by some Windows editors start with a UTF-8 BOM; "-DOCSTART-" must still be a boundary.
    text = "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nsays VBZ B-VP O\n"
    plain, _ = read_conll(_write(tmp_path / "plain.txt", text))
    p = tmp_path / "bom.txt"
    p.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    with_bom, _ = read_conll(p)
    assert [(s.words, s.tags, s.doc, s.line) for s in with_bom] == [(s.words, s.tags, s.doc, s.line) for s in plain]
    assert [s.words for s in with_bom] == [["EU", "says"]]


def test_iob1_file_is_converted(tmp_path):
    p = _write(tmp_path / "x.txt", "U.N. NNP I-NP I-ORG\nofficial NN I-NP O\nEkeus NNP I-NP I-PER\n"
                                   "heads VBZ I-VP O\nfor IN I-PP O\nBaghdad NNP I-NP I-LOC\n")
    (s,), _ = read_conll(p, scheme="iob1")
    assert s.tags == ["B-ORG", "O", "B-PER", "O", "O", "B-LOC"]


def test_strict_scheme_rejects_i_after_o_naming_file_and_line(tmp_path):
    p = _write(tmp_path / "iob1.txt", "a O\n\nEU B-ORG\nsays O\nU.N. I-ORG\n")
    with pytest.raises(DataFormatError) as e:
        read_conll(p, strict_scheme=True)
    assert _error(e).startswith(f"{p}:5: ")
    assert "'I-ORG' follows 'O'" in _error(e) and "data.scheme=iob1" in _error(e)
    assert e.value.line == 5 and e.value.path == str(p)


def test_strict_scheme_rejects_i_of_another_type(tmp_path):
    p = _write(tmp_path / "x.txt", "John B-PER\nSmith I-LOC\n")
    with pytest.raises(DataFormatError, match=r"x\.txt:2: tag 'I-LOC' follows 'B-PER'"):
        read_conll(p, strict_scheme=True)


def test_invalid_iob2_transitions_are_repaired_as_conlleval_reads_them_with_one_warning(tmp_path, caplog):
    from seqeval.metrics.sequence_labeling import get_entities

    raw = ["John B-person", "Smith I-person", "Hamlet I-creative-work", "by O", "U.N. I-corporation", "", "x O",
           "Paris I-location", "London I-location"]
    p = _write(tmp_path / "wnut.txt", "\n".join(raw) + "\n")
    raw_tags = [[ln.split()[1] for ln in raw[:5]], [ln.split()[1] for ln in raw[6:]]]
    with caplog.at_level("WARNING", logger="bert_ner_probe.data.conll"):
        sentences, _ = read_conll(p)
    assert [s.tags for s in sentences] == [["B-person", "I-person", "B-creative-work", "O", "B-corporation"],
                                           ["O", "B-location", "I-location"]]
    # The repaired tags hold exactly the entities conlleval (seqeval's default mode) reads from the raw ones.
    assert get_entities([s.tags for s in sentences]) == get_entities(raw_tags)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"{p}:3: tag 'I-creative-work' follows 'I-person'")
    assert "3 such tag(s)" in warnings[0] and "data.strict_scheme=true" in warnings[0]


def test_bad_scheme_value(tmp_path):
    p = _write(tmp_path / "x.txt", "John B-PER\n")
    with pytest.raises(UserError, match=r"data.scheme=.bio.: expected one of iob1 \| iob2"):
        read_conll(p, scheme="bio")


@pytest.mark.parametrize(
    "text,line,fragment",
    [
        ("EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\ncall NN O\n", 4, "expected 4 columns"),
        ("EU B-ORG\nrejects VBZ O\n", 2, "expected 2 columns"),
        ("EU\n", 1, "expected at least 2 columns"),
        ("EU NNP B-NP B-ORG\n\n\n NN I-NP O\n", 4, "empty token"),
        ("EU NNP B-NP B-ORG\n\tNN I-NP O\n", 2, "empty token"),
        ("-DOCSTART- O\n\nEU B-ORG\nsays O\nx PER\n", 5, "expected a tag O, B-TYPE or I-TYPE"),
        ("EU B_ORG\n", 1, "found 'B_ORG'"),
        ("EU B-\n", 1, "found 'B-'"),
        ("EU o\n", 1, "found 'o'"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, text, line, fragment):
    p = _write(tmp_path / "bad.txt", text)
    with pytest.raises(DataFormatError) as e:
        read_conll(p)
    assert _error(e).startswith(f"{p}:{line}: "), _error(e)
    assert fragment in _error(e)
    assert e.value.line == line


def test_invalid_utf8_names_the_line(tmp_path):
    p = tmp_path / "latin1.txt"
    p.write_bytes("a O\nb O\n\ncaf\u00e9 O\n".encode("latin-1"))
    with pytest.raises(DataFormatError, match=r"latin1\.txt:4: not valid UTF-8"):
        read_conll(p)


@pytest.mark.parametrize("text", ["", "\n\n  \n", "-DOCSTART- -X- -X- O\n\n"])
def test_empty_file(tmp_path, text):
    p = _write(tmp_path / "empty.txt", text)
    with pytest.raises(DataFormatError) as e:
        read_conll(p)
    assert _error(e) == f"{p}: no sentences: the file is empty"


def test_missing_file(tmp_path):
    with pytest.raises(DataFormatError, match=r"nope\.txt: file not found"):
        read_conll(tmp_path / "nope.txt")


def test_missing_split_file(tmp_path, conll):
    d = conll.write(tmp_path / "c")
    (d / "dev.txt").unlink()
    with pytest.raises(DataFormatError) as e:
        load_corpus(str(d))
    msg = _error(e)
    assert str(d / "dev.txt") in msg
    assert "missing dev split" in msg and "dev.txt, valid.txt, eng.testa" in msg


def test_data_dir_that_is_not_a_directory(tmp_path):
    with pytest.raises(UserError, match="is not a directory"):
        load_corpus(str(tmp_path / "absent"))


def test_dev_tag_never_seen_in_train_is_an_error_with_strict_labels(tmp_path, conll):
    dev = "-DOCSTART- O\n\nLeicestershire B-ORG\nwon O\n\nSmith B-PER\nat O\nOld B-FAC\nTrafford I-FAC\n"
    d = conll.write(tmp_path / "c", dev=dev)
    with pytest.raises(DataFormatError) as e:
        load_corpus(str(d), strict_labels=True)
    assert _error(e).startswith(f"{d / 'dev.txt'}:8: tag 'B-FAC' in the dev split never occurs in the training data")


def test_dev_tag_never_seen_in_train_is_kept_with_one_warning(tmp_path, conll, caplog):
    dev = "-DOCSTART- O\n\nLeicestershire B-ORG\nwon O\n\nSmith B-PER\nat O\nOld B-FAC\nTrafford I-FAC\n"
    d = conll.write(tmp_path / "c", dev=dev)
    with caplog.at_level("WARNING", logger="bert_ner_probe.data.conll"):
        corpus = load_corpus(str(d))
    assert corpus.unseen_labels == {"dev": {"B-FAC": 1, "I-FAC": 1}}
    assert "B-FAC" not in corpus.labels  # the tagger never predicts it ...
    assert corpus["dev"].sentences[1].tags == ["B-PER", "O", "B-FAC", "I-FAC"]  # ... gold keeps it
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and warnings[0].startswith(f"{d / 'dev.txt'}:8: tag 'B-FAC' in the dev split")
    assert "2 such tag(s) (B-FAC x1, I-FAC x1)" in warnings[0]


def test_test_tag_never_seen_in_train(tmp_path, conll):
    d = conll.write(tmp_path / "c", test="Japan B-LOC\n\nlost O\nto B-GPE\n")
    with pytest.raises(DataFormatError, match=r"test\.txt:4: tag 'B-GPE' in the test split"):
        load_corpus(str(d), strict_labels=True)
    assert load_corpus(str(d)).unseen_labels == {"test": {"B-GPE": 1}}


def test_eng_file_names_are_accepted(tmp_path, conll):
    d = conll.write(tmp_path / "c", names={"train": "eng.train", "dev": "eng.testa", "test": "eng.testb"})
    corpus = load_corpus(str(d))
    assert corpus["train"].source.endswith("eng.train")
    assert corpus["dev"].source.endswith("eng.testa")
    assert corpus["test"].source.endswith("eng.testb")
    assert len(corpus["train"].sentences) == 5


def test_valid_txt_is_the_dev_split_and_train_txt_is_preferred(tmp_path, conll):
    d = conll.write(tmp_path / "c", names={"dev": "valid.txt"})
    assert not (d / "dev.txt").exists()
    (d / "eng.train").write_text("only B-PER\n")
    corpus = load_corpus(str(d))
    assert corpus["dev"].source.endswith("valid.txt")
    assert corpus["train"].source.endswith("train.txt") and len(corpus["train"].sentences) == 5


def test_limits_keep_the_first_sentences(small_corpus_dir):
    full = load_corpus(str(small_corpus_dir))
    limited = load_corpus(str(small_corpus_dir), limits={"train": 3, "dev": 1, "test": None})
    assert [s.words for s in limited["train"].sentences] == [["EU", "rejects", "German", "call"],
                                                             ["Peter", "Blackburn"], ["BRUSSELS", "1996-08-22"]]
    assert [s.words for s in limited["dev"].sentences] == [["Leicestershire", "won"]]
    assert len(limited["test"].sentences) == 1
    # Labels come from the kept train sentences only.
    assert limited.labels == ["O", "B-LOC", "B-MISC", "B-ORG", "B-PER", "I-PER"]
    assert limited.fingerprint() != full.fingerprint()
    assert load_corpus(str(small_corpus_dir)).fingerprint() == full.fingerprint()
    with pytest.raises(UserError, match="positive"):
        load_corpus(str(small_corpus_dir), limits={"train": 0})


def test_limit_that_drops_a_label_dev_needs(small_corpus_dir):
    # The first train sentence has no PER entity; dev's line 6 is "Smith B-PER".
    with pytest.raises(DataFormatError, match=r"dev\.txt:6: tag 'B-PER' in the dev split"):
        load_corpus(str(small_corpus_dir), limits={"train": 1}, strict_labels=True)
    assert load_corpus(str(small_corpus_dir), limits={"train": 1}).unseen_labels["dev"] == {"B-PER": 1}


@pytest.mark.parametrize("invisible", ["\ufeff", "\u200b", "\u00a0", " \u2060\t", "\u3000"])
def test_a_line_of_invisible_characters_is_a_blank_line_with_a_warning(tmp_path, caplog, invisible):
    p = _write(tmp_path / "x.txt", f"EU B-ORG\nsays O\n{invisible}\nJohn B-PER\n\n{invisible}\n")
    with caplog.at_level("WARNING", logger="bert_ner_probe.data.conll"):
        sentences, _ = read_conll(p)
    assert [s.words for s in sentences] == [["EU", "says"], ["John"]]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and warnings[0].startswith(f"{p}:3: a line of only invisible characters")
    assert "2 such line(s)" in warnings[0]


def test_fingerprint_follows_content(tmp_path, conll):
    a = load_corpus(str(conll.write(tmp_path / "a")))
    b = load_corpus(str(conll.write(tmp_path / "b")))
    c = load_corpus(str(conll.write(tmp_path / "c", test="Japan B-LOC\nwon O\n")))
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != c.fingerprint()


def test_a_file_is_parsed_once_while_unchanged_and_again_after_an_edit(tmp_path, conll):
    from bert_ner_probe.stamped_memo import StampedMemo

    folder = conll.write(tmp_path / "a")
    memo = StampedMemo()
    first = load_corpus(str(folder), memo=memo)
    again = load_corpus(str(folder), memo=memo)
    assert again["train"].sentences[0] is first["train"].sentences[0]  # parsed once
    assert load_corpus(str(folder))["train"].sentences[0] is not first["train"].sentences[0]  # no memo: no state
    dev = folder / "dev.txt"
    st = dev.stat()
    dev.write_text(dev.read_text(encoding="utf-8").replace("B-ORG", "B-PER", 1), encoding="utf-8")
    os.utime(dev, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # a later modification time
    edited = load_corpus(str(folder), memo=memo)
    assert edited["dev"].fingerprint != first["dev"].fingerprint
    assert [s.tags for s in edited["dev"].sentences] != [s.tags for s in first["dev"].sentences]
    assert edited["train"].sentences[0] is first["train"].sentences[0]  # train unchanged: not parsed again


def test_label_order():
    from bert_ner_probe.data.corpus import Sentence

    sents = [Sentence(["x"] * 7, ["I-PER", "B-ORG", "O", "B-PER", "I-MISC", "B-LOC", "I-ORG"], 0, 1)]
    assert label_list(sents) == ["O", "B-LOC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]


def test_real_conll2003(conll_dir):
    corpus = load_corpus(str(conll_dir))
    assert [len(corpus[s].sentences) for s in ("train", "dev", "test")] == [14041, 3250, 3453]
    assert [corpus[s].num_words for s in ("train", "dev", "test")] == [203621, 51362, 46435]
    assert corpus.labels == ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    assert [len(corpus[s].documents()) for s in ("train", "dev", "test")] == [946, 216, 231]
    assert corpus["train"].sentences[0].words == ["EU", "rejects", "German", "call", "to", "boycott", "British",
                                                   "lamb", "."]
