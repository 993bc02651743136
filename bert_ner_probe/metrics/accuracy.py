"""Token accuracy: the share of words whose predicted tag is the gold tag.

The score of a control task (Hewitt & Liang 2019, :mod:`bert_ner_probe.data.control`),
whose tags form no entities, and of the real task it is compared with::

    accuracy = #{words w : pred(w) = gold(w)} / #{words}
"""

from __future__ import annotations

from typing import Sequence


def token_accuracy(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> float:
    """``#{pred = gold} / #{words}`` over sentences of tags (a fraction in [0, 1]).

    Raises ValueError when the sentences or their lengths differ, or there is no word.
    """
    if len(gold) != len(pred) or any(len(g) != len(p) for g, p in zip(gold, pred)):
        raise ValueError("token_accuracy: gold and predicted tag sequences differ in length")
    words = sum(len(g) for g in gold)
    if words == 0:
        raise ValueError("token_accuracy: no words to score")
    return sum(g == p for gs, ps in zip(gold, pred) for g, p in zip(gs, ps)) / words
