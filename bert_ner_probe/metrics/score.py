"""Entity-level precision, recall and F1 with seqeval.

``mode="conlleval"`` (the default) scores like the conlleval Perl script
(seqeval's default mode); ``mode="strict"`` only counts entities whose IOB2
spans are well formed (seqeval's strict mode with the IOB2 scheme).
F1 and friends are fractions in [0, 1].
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from omegaconf import DictConfig

from seqeval.metrics import classification_report, f1_score
from seqeval.metrics.sequence_labeling import get_entities
from seqeval.scheme import IOB2

from bert_ner_probe.metrics.accuracy import token_accuracy
from bert_ner_probe.choice import Choice
from bert_ner_probe.data.corpus import Corpus


class EvalMode(Choice):
    """``eval.mode``: how entities are read from tags."""

    conlleval = "conlleval"  # as conlleval and seqeval's default: an I- after O or another type starts an entity
    strict = "strict"  # IOB2 spans only (seqeval's mode="strict", scheme=IOB2)


def _mode_kwargs(mode: EvalMode | str) -> Dict[str, Any]:
    mode = EvalMode.parse(mode, "eval.mode")
    return {"mode": "strict", "scheme": IOB2} if mode == EvalMode.strict else {}


def score(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]],
          mode: EvalMode | str = EvalMode.conlleval) -> Dict[str, Any]:
    """Micro P/R/F1 over entities and the same per entity type (with support).

    The same numbers as seqeval's ``classification_report``. In conlleval
    mode the entities are read once with seqeval's ``get_entities`` (the
    report reads them ten times over, a cost paid at every dev evaluation); then, per
    type and summed (micro), ``P = tp / predicted``, ``R = tp / true``,
    ``F1 = 2PR / (P + R)``, each 0 where its denominator is 0.
    """
    gold_entities = GoldEntities(gold, mode)
    found = gold_entities.found(pred)
    if found is None:
        return _strict_score(gold, pred, gold_entities.kwargs)
    true = gold_entities.spans
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


def _strict_score(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], kwargs: Dict[str, Any]
                  ) -> Dict[str, Any]:
    """:func:`score` through seqeval's ``classification_report`` (strict mode)."""
    report = classification_report([list(g) for g in gold], [list(p) for p in pred], output_dict=True,
                                   zero_division=0, **kwargs)
    micro = report.get("micro avg", {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0})
    per_type = {
        name: {"precision": float(v["precision"]), "recall": float(v["recall"]), "f1": float(v["f1-score"]),
               "support": int(v["support"])}
        for name, v in report.items() if not name.endswith(" avg")
    }
    return {"precision": float(micro["precision"]), "recall": float(micro["recall"]),
            "f1": float(micro["f1-score"]), "support": int(micro["support"]), "per_type": per_type}


def f1(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], mode: EvalMode | str = EvalMode.conlleval) -> float:
    """Micro entity F1 only (:class:`GoldEntities` for repeated scoring against the same gold)."""
    return GoldEntities(gold, mode).f1(pred)


class GoldEntities:
    """The gold entities of one split, read once; :meth:`f1` scores a prediction against them.

    Made once per run and used every epoch: in conlleval mode the gold spans
    are not read again, and micro ``F1 = 2 tp / (predicted + true)`` over
    ``(type, start, end)`` spans from seqeval's ``get_entities``, the same
    value as seqeval's ``f1_score``. Strict mode calls ``f1_score``.
    """

    def __init__(self, gold: Sequence[Sequence[str]], mode: EvalMode | str = EvalMode.conlleval) -> None:
        self.kwargs = _mode_kwargs(mode)
        self.gold = [list(g) for g in gold]
        self.spans = None if self.kwargs else set(get_entities(self.gold))

    def found(self, pred: Sequence[Sequence[str]]) -> Optional[set]:
        """The predicted ``(type, start, end)`` spans (None in strict mode); checks the lengths."""
        if len(pred) != len(self.gold) or any(len(g) != len(p) for g, p in zip(self.gold, pred)):
            raise ValueError("gold and predicted tag sequences differ in length")
        return None if self.spans is None else set(get_entities([list(p) for p in pred]))

    def f1(self, pred: Sequence[Sequence[str]]) -> float:
        found = self.found(pred)
        if found is None:
            return float(f1_score(self.gold, [list(p) for p in pred], zero_division=0, **self.kwargs))
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
