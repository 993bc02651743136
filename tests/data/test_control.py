"""Word-type control task (Hewitt & Liang 2019): one seeded tag per type, from the training tag distribution."""

from __future__ import annotations

import numpy as np
import pytest

from bert_ner_probe.data.conll import load_corpus
from bert_ner_probe.data.corpus import SPLITS
from bert_ner_probe.data.control import Control, control_corpus, control_tags, tag_counts, word_type
from bert_ner_probe.errors import UserError

TRAIN = [(["Paris", "is", "in", "France"], ["B-LOC", "O", "O", "B-LOC"]),
         (["paris", "Hilton", "is", "here"], ["B-PER", "I-PER", "O", "O"])]
DEV = [["Paris", "was", "here"]]
TEST = [["PARIS", "is", "near", "paris"]]


def _words(*splits):
    return [words for split in splits for words in split]


def test_tag_counts_are_the_training_word_counts_in_label_order():
    tags, counts = tag_counts(TRAIN)
    # 8 words: O ×4, B-LOC ×2, B-PER ×1, I-PER ×1; O first, then by type, B- before I-
    assert tags == ["O", "B-LOC", "B-PER", "I-PER"] and counts.tolist() == [4, 2, 1, 1]


def test_same_type_same_tag_in_every_split_and_uncased_types_merge():
    mapping = control_tags(TRAIN, _words([w for w, _ in TRAIN], DEV, TEST), seed=0, lowercase=True)
    # lower-cased: Paris, paris and PARIS are one type with one tag
    assert "Paris" not in mapping and "PARIS" not in mapping
    assert set(mapping) == {"paris", "is", "in", "france", "hilton", "here", "was", "near"}
    assert set(mapping.values()) <= {"O", "B-LOC", "B-PER", "I-PER"}
    cased = control_tags(TRAIN, _words([w for w, _ in TRAIN], DEV, TEST), seed=0, lowercase=False)
    assert {"Paris", "paris", "PARIS"} <= set(cased)  # cased: three types
    assert word_type("Paris", True) == word_type("paris", True) != word_type("Paris", False)


def test_the_draw_does_not_depend_on_split_order_or_other_types():
    a = control_tags(TRAIN, _words([w for w, _ in TRAIN], DEV, TEST), seed=3, lowercase=True)
    b = control_tags(TRAIN, _words(TEST, DEV, [w for w, _ in TRAIN]), seed=3, lowercase=True)
    c = control_tags(TRAIN, _words(TEST), seed=3, lowercase=True)  # fewer types: each keeps its tag
    assert a == b
    assert all(a[v] == t for v, t in c.items())


def test_no_training_tags_is_a_user_error():
    with pytest.raises(UserError, match=r"^control=word_type: the training split has no tagged words"):
        control_tags([], _words(DEV), seed=0, lowercase=True)


@pytest.fixture(scope="module")
def conll(conll_dir):
    return load_corpus(str(conll_dir))


@pytest.fixture(scope="module")
def controlled(conll):
    return control_corpus(conll, seed=0, lowercase=True)


def test_control_corpus_keeps_words_and_gives_each_type_one_tag(conll, controlled):
    assert controlled.labels == conll.labels and controlled.unseen_labels == {}
    assert controlled.fingerprint() == conll.fingerprint()  # same words: the feature cache is shared
    seen = {}
    changed = 0
    for name in SPLITS:
        assert len(controlled[name].sentences) == len(conll[name].sentences)
        for real, ctrl in zip(conll[name].sentences, controlled[name].sentences):
            assert ctrl.words == real.words and (ctrl.doc, ctrl.line) == (real.doc, real.line)
            for w, t, r in zip(ctrl.words, ctrl.tags, real.tags):
                assert seen.setdefault(w.lower(), t) == t  # one tag per type, across all three splits
                assert t in conll.labels
                changed += t != r
    assert changed > 0.1 * sum(conll[s].num_words for s in SPLITS)  # not the real tags
    assert conll["train"].sentences[0].tags[0] == "B-ORG"  # the real corpus is left as it was
    assert [s.tags for s in control_corpus(conll, seed=0, lowercase=True)["dev"].sentences] == \
           [s.tags for s in controlled["dev"].sentences]  # the same seed reproduces it


def test_type_tags_follow_the_training_distribution(conll):
    """Each type's tag is an independent draw from p (the training words' tag frequencies), so the number of
    types per tag is multinomial(n_types, p). Pearson's chi-square against n_types · p (8 degrees of freedom
    for CoNLL's 9 tags) must not reject at 0.1 %; the same statistic against a uniform draw over the 9 tags
    rejects by far, so the check can tell a wrong distribution. The seed is fixed: the outcome is too.
    """
    from scipy import stats

    tags, counts = tag_counts((s.words, s.tags) for s in conll["train"].sentences)
    p = counts / counts.sum()
    mapping = control_tags(((s.words, s.tags) for s in conll["train"].sentences),
                           (s.words for name in SPLITS for s in conll[name].sentences), seed=0, lowercase=True)
    observed = np.array([sum(t == tag for t in mapping.values()) for tag in tags])
    n = len(mapping)
    assert n > 20000 and len(tags) == 9
    assert stats.chisquare(observed, n * p).pvalue > 1e-3
    assert stats.chisquare(observed, np.full(9, n / 9)).pvalue < 1e-100
    # and per tag within 4 binomial standard deviations √(n p (1 − p)) of n p
    assert (np.abs(observed - n * p) < 4 * np.sqrt(n * p * (1 - p))).all()


def test_the_seed_changes_the_assignment(conll):
    train = [(s.words, s.tags) for s in conll["train"].sentences]
    words = [s.words for s in conll["dev"].sentences]
    a, b = control_tags(train, words, 0, True), control_tags(train, words, 1, True)
    assert control_tags(train, words, 0, True) == a
    differ = sum(a[v] != b[v] for v in a) / len(a)
    # two independent draws differ with probability 1 − Σ p_t² ≈ 0.3 for CoNLL's tag frequencies
    p = tag_counts(train)[1] / sum(len(w) for w, _ in train)
    assert differ == pytest.approx(1 - (p ** 2).sum(), abs=0.03)


def test_control_choice():
    assert Control.parse("word_type", "control") == Control.word_type
    with pytest.raises(UserError, match=r"^control='words': expected one of none \| word_type$"):
        Control.parse("words", "control")
