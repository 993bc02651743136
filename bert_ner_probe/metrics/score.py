"""Entity-level precision, recall and F1 with seqeval.

``mode="conlleval"`` (the default) scores like the conlleval Perl script
(seqeval's default mode); ``mode="strict"`` only counts entities whose IOB2
spans are well formed (seqeval's strict mode with the IOB2 scheme).
F1 and friends are fractions in [0, 1].

:func:`entity_spans` is the one reader of entities from tags (the run's
scores, early stopping's dev F1 and the report's sentence statistics all use
it); every score is then counted over its ``(type, first, last)`` spans.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Sequence, Set, Tuple

import numpy as np
from omegaconf import DictConfig

from bert_ner_probe.metrics.accuracy import token_accuracy
from bert_ner_probe.choice import Choice
from bert_ner_probe.data.corpus import Corpus

Span = Tuple[str, int, int]  # (entity type, first word, last word), offsets as in entity_spans


class EvalMode(Choice):
    """``eval.mode``: how entities are read from tags."""

    conlleval = "conlleval"  # as conlleval and seqeval's default: an I- after O or another type starts an entity
    strict = "strict"  # IOB2 spans only (seqeval's mode="strict", scheme=IOB2)


def sentence_starts(lengths: Sequence[int]) -> np.ndarray:
    """Where each sentence starts when the sentences are laid end to end with one ``"O"`` after each, as seqeval
    reads a list of sentences: ``start_i = Σ_{j<i} (len_j + 1)``. Shape: (sentences,) int64."""
    lengths = np.asarray(lengths, dtype=np.int64)
    return np.concatenate([[0], np.cumsum(lengths + 1)[:-1]]).astype(np.int64) if len(lengths) else lengths


def entity_spans(sentences: Sequence[Sequence[str]], mode: EvalMode | str = EvalMode.conlleval) -> Set[Span]:
    """The entities of tagged sentences as seqeval reads them: ``(type, first, last)`` spans, offsets into the
    sentences laid end to end with an ``"O"`` after each (:func:`sentence_starts`), so no span crosses a sentence.

    ``conlleval``: seqeval's ``get_entities`` (an ``I-X`` after ``O`` or another type starts an entity);
    ``strict``: seqeval's IOB2 ``Entities`` of each sentence (well-formed spans only). seqeval is imported here:
    its metrics package imports scikit-learn, which a report over seeds never needs.
    """
    mode = EvalMode.parse(mode, "eval.mode")
    if mode == EvalMode.strict:
        from seqeval.scheme import IOB2, Entities  # noqa: PLC0415

        starts = sentence_starts([len(t) for t in sentences])
        per_sentence = Entities([list(t) for t in sentences], IOB2, suffix=False).entities
        return {(e.tag, int(starts[i]) + e.start, int(starts[i]) + e.end - 1)
                for i, found in enumerate(per_sentence) for e in found}
    from seqeval.metrics.sequence_labeling import get_entities  # noqa: PLC0415

    return set(get_entities([list(t) for t in sentences]))


def score(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]],
          mode: EvalMode | str = EvalMode.conlleval) -> Dict[str, Any]:
    """Micro P/R/F1 over entities and the same per entity type (with support).

    The same numbers as seqeval's ``classification_report`` in the same mode. The entities are read once
    (:func:`entity_spans`; the report reads them ten times over, a cost paid at every dev evaluation); then,
    per type and summed (micro), ``P = tp / predicted``, ``R = tp / true``, ``F1 = 2PR / (P + R)``, each 0
    where its denominator is 0.
    """
    gold_entities = GoldEntities(gold, mode)
    true, found = gold_entities.spans, gold_entities.found(pred)
    hit = true & found

    def by_type(spans: set) -> Counter:
        return Counter(name for name, _, _ in spans)

    t, p, h = by_type(true), by_type(found), by_type(hit)
    per_type = {name: {**_prf(h[name], p[name], t[name]), "support": t[name]} for name in sorted(t | p)}
    return {**_prf(len(hit), len(found), len(true)), "support": len(true), "per_type": per_type}


def _prf(tp: int, predicted: int, true: int) -> Dict[str, float]:
    precision = tp / predicted if predicted else 0.0
    recall = tp / true if true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def f1(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], mode: EvalMode | str = EvalMode.conlleval) -> float:
    """Micro entity F1 only (:class:`GoldEntities` for repeated scoring against the same gold)."""
    return GoldEntities(gold, mode).f1(pred)


class GoldEntities:
    """The gold entities of one split, read once; :meth:`f1` scores a prediction against them.

    Made once per run and used every epoch: the gold spans are not read
    again, and micro ``F1 = 2 tp / (predicted + true)`` over the
    :func:`entity_spans`, the same value as seqeval's ``f1_score``.
    """

    def __init__(self, gold: Sequence[Sequence[str]], mode: EvalMode | str = EvalMode.conlleval) -> None:
        self.mode = EvalMode.parse(mode, "eval.mode")
        self.gold = [list(g) for g in gold]
        self.spans = entity_spans(self.gold, self.mode)

    def found(self, pred: Sequence[Sequence[str]]) -> Set[Span]:
        """The predicted spans; checks the lengths."""
        if len(pred) != len(self.gold) or any(len(g) != len(p) for g, p in zip(self.gold, pred)):
            raise ValueError("gold and predicted tag sequences differ in length")
        return entity_spans(pred, self.mode)

    def f1(self, pred: Sequence[Sequence[str]]) -> float:
        found = self.found(pred)
        return _prf(len(found & self.spans), len(found), len(self.spans))["f1"]


def write_conll(path, words: List[List[str]], gold: List[List[str]], pred: List[List[str]]) -> None:
    """conlleval's input: ``word gold predicted`` per line, a blank line after each sentence."""
    with open(path, "w", encoding="utf-8") as fh:
        for ws, gs, ps in zip(words, gold, pred):
            for w, g, p in zip(ws, gs, ps):
                fh.write(f"{w} {g} {p}\n")
            fh.write("\n")


def score_and_write(cfg: DictConfig, corpus: Corpus, split: str, pred: List[List[str]], out_dir: Path
                    ) -> Dict[str, Any]:
    """seqeval scores and token accuracy of one split's predicted tags; ``predictions/<split>.conll`` (word gold
    predicted) too."""
    gold = [s.tags for s in corpus[split].sentences]
    if cfg.write_predictions:
        (out_dir / "predictions").mkdir(parents=True, exist_ok=True)
        write_conll(out_dir / "predictions" / f"{split}.conll", [s.words for s in corpus[split].sentences], gold, pred)
    return {**score(gold, pred, cfg.eval.mode), "accuracy": token_accuracy(gold, pred)}
