"""Hidden-state indices of an encoder of depth ``N``: ``0`` = the embeddings, ``N`` = the last layer.

A negative index counts from the top: ``-1`` = ``N``, ``-(N + 1)`` = ``0``. Both the
feature cache (``encoder.layers``: which hidden states an entry holds) and the
strategies (``strategy.layers``: which hidden states a probe reads) name hidden states
this way; :func:`resolve_indices` is the one rule, with the config key for its messages.
"""

from __future__ import annotations

from typing import List, Sequence

from bert_ner_probe.errors import UserError


def resolve_indices(indices: Sequence[int], num_layers: int, key: str) -> List[int]:
    """``indices`` as hidden-state indices in ``0..num_layers`` (``-k`` → ``num_layers + 1 - k``), in their order.

    Raises :class:`UserError` naming ``key`` for an empty list, an index out of range or a repeat.
    """
    if len(indices) == 0:
        raise UserError(f"{key} is empty: name at least one layer (0 = embeddings)")
    out = []
    for index in indices:
        if not -(num_layers + 1) <= index <= num_layers:
            raise UserError(
                f"{key} has {index}, but this encoder has hidden states 0..{num_layers} "
                f"(0 = embeddings, {num_layers} = last; negative counts from the top, -1..-{num_layers + 1})"
            )
        out.append(index if index >= 0 else num_layers + 1 + index)
    if len(set(out)) != len(out):
        raise UserError(f"{key} {list(indices)} names a layer twice (as {out})")
    return out


def states_text(states: Sequence[int]) -> str:
    """``[0, 1, 2, 3]`` → ``0–3``; ``[0, 4, 8, 12]`` → ``0, 4, 8, 12`` (for messages and listings)."""
    states = list(states)
    if len(states) > 2 and states == list(range(states[0], states[0] + len(states))):
        return f"{states[0]}–{states[-1]}"
    return ", ".join(str(s) for s in states)
