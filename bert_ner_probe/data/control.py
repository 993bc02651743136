"""Control task: each word type gets one fixed random tag (the probe can only memorise it).

Hewitt & Liang (2019), "Designing and Interpreting Probes with Control Tasks".
A control task keeps the words of every sentence and replaces each word's tag
with the tag of its *type*, drawn once for the type from the empirical tag
distribution of the training words::

    C(v) ~ Categorical(p),   p_t = #{training words tagged t} / #{training words}
    control tag of word w = C(type(w))

A probe that does well on it memorises word types, not what the encoder
knows; *selectivity* = real-task accuracy − control-task accuracy
(:mod:`bert_ner_probe.metrics.selectivity`). Control tags do not form entities,
so both tasks are scored by token accuracy (:mod:`bert_ner_probe.metrics.accuracy`).

The type of a word is the word as the tokenizer sees it: lower-cased for an
uncased encoder (``lowercase``, see :func:`bert_ner_probe.features.encoder.lowercases`),
so ``Paris`` and ``paris`` share a tag there. (Accents are kept: an uncased BERT
also strips them, which would merge a few more types; each still gets one tag.)

The draw for a type depends only on the seed and the type: ``r = ⌊h · T / 2⁶⁴⌋``
with ``h`` the first 8 bytes of ``blake2b(seed, type)`` and ``T`` the number of
training words, and the type's tag is the first ``t`` whose cumulative count
exceeds ``r``. So the same type gets the same tag in every split, in whatever
order the splits come, whichever other types exist; types seen only in dev or
test are drawn from the same distribution.
"""

from __future__ import annotations

import hashlib
from typing import Dict, Iterable, List, Sequence, Tuple

import numpy as np

from bert_ner_probe.choice import Choice
from bert_ner_probe.data.corpus import SPLITS, Corpus, Sentence, Split, label_list
from bert_ner_probe.errors import UserError


class Control(Choice):
    """``control``: the real tags, or the word-type control task of Hewitt & Liang (2019)."""

    none = "none"
    word_type = "word_type"


def word_type(word: str, lowercase: bool) -> str:
    """The word's type as the tokenizer sees it: lower-cased when ``lowercase``."""
    return word.lower() if lowercase else word


def tag_counts(train_words_tags: Iterable[Tuple[Sequence[str], Sequence[str]]]) -> Tuple[List[str], np.ndarray]:
    """``(tags, counts)``: each training tag (``O`` first, as :func:`~.corpus.label_list`) and its word count.

    Raises a :class:`~bert_ner_probe.errors.UserError` when there is no tagged training word.
    """
    counts: Dict[str, int] = {}
    for words, tags in train_words_tags:
        if len(words) != len(tags):
            raise ValueError(f"control: a training sentence of {len(words)} words has {len(tags)} tags")
        for t in tags:
            counts[t] = counts.get(t, 0) + 1
    if not counts:
        raise UserError("control=word_type: the training split has no tagged words "
                        "(expected training tags to draw the control tags from)")
    tags = label_list([Sentence(list(counts), list(counts), 0, 0)])  # the corpus label order: O, then by type
    return tags, np.array([counts[t] for t in tags], dtype=np.int64)  # Shape: (K,)


def _uniform_int(seed: int, key: str, total: int) -> int:
    """An integer in ``[0, total)`` from ``blake2b(seed, key)``: ``⌊h · total / 2⁶⁴⌋``."""
    h = int.from_bytes(hashlib.blake2b(f"{seed}\x00{key}".encode("utf-8"), digest_size=8).digest(), "big")
    return (h * total) >> 64


def control_tags(train_words_tags: Iterable[Tuple[Sequence[str], Sequence[str]]],
                 all_splits_words: Iterable[Sequence[str]], seed: int, lowercase: bool) -> Dict[str, str]:
    """Hewitt & Liang (2019): word type → control tag, ``C(v) ~ Categorical(p_train)``, one draw per type.

    ``train_words_tags`` are the training sentences as ``(words, tags)`` (they give ``p``);
    ``all_splits_words`` the sentences of every split (train, dev, test) whose types need a tag.
    The draw is a hash of ``(seed, type)`` (module docstring): independent of split order.
    """
    tags, counts = tag_counts(train_words_tags)
    cumulative = np.cumsum(counts)  # Shape: (K,)
    total = int(cumulative[-1])
    types = sorted({word_type(w, lowercase) for words in all_splits_words for w in words})
    draws = np.array([_uniform_int(seed, v, total) for v in types], dtype=np.int64)  # Shape: (types,)
    index = np.searchsorted(cumulative, draws, side="right")  # Shape: (types,)
    return {v: tags[i] for v, i in zip(types, index.tolist())}


def control_corpus(corpus: Corpus, seed: int, lowercase: bool) -> Corpus:
    """The corpus with every tag replaced by its word type's control tag (:func:`control_tags`).

    Words, documents, sources and split fingerprints stay as they are (the encoder's features do not
    depend on the tags, so the feature cache is shared with the real task); the label list is the
    training tags (``corpus.labels``), every control tag among them. Control tags need not form valid
    IOB2 spans: score them by token accuracy, not seqeval.
    """
    train = corpus["train"].sentences
    mapping = control_tags(((s.words, s.tags) for s in train),
                           (s.words for name in SPLITS for s in corpus[name].sentences), seed, lowercase)
    splits = {}
    for name in SPLITS:
        sp = corpus[name]
        sentences = [Sentence(list(s.words), [mapping[word_type(w, lowercase)] for w in s.words], s.doc, s.line)
                     for s in sp.sentences]
        splits[name] = Split(sp.name, sentences, sp.source, sp.fingerprint)
    note = f"control task: word_type (Hewitt & Liang 2019), seed {seed}, {'lower-cased' if lowercase else 'cased'} types"
    return Corpus(splits, list(corpus.labels), notes=list(corpus.notes) + [note], unseen_labels={})
