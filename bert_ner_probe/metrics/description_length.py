"""Online code length of the gold tags: the description length of a probe (MDL probing).

Voita & Titov (2020), "Information-Theoretic Probing with Minimum Description
Length", online (prequential) code. The training sentences, in a seeded order,
are cut at the portions ``t_1 < t_2 < … < t_S = 1`` of the training set
(:data:`PORTIONS`, the paper's 0.1, 0.2, 0.4, …, 50, 100 %) into blocks
``[0, e_1), [e_1, e_2), …, [e_{S-1}, e_S)``. The first block is sent with the
uniform code; each later block ``i + 1`` with the code of a probe trained on
blocks ``0 … i``::

    L_online = n_1 · log2 K  +  Σ_{i=1}^{S-1}  Σ_{words w of block i+1}  −log2 p_θi(y_w | x_w)
    L_uniform = N · log2 K
    compression = L_uniform / L_online

with ``K`` the number of tags, ``n_1`` the words of the first block and ``N``
all training words. Blocks are cut in sentences; code lengths count words
(one tag per word). Everything here is plain Python and numpy: :func:`online_plan`
says what each probe trains on and sends; the probe that gives
``p_θi`` is trained elsewhere (:mod:`bert_ner_probe.training.online_code`);
:func:`nats_to_bits` turns its summed natural-log loss into the bits
:func:`online_code_length` takes.

Each probe trains on its whole prefix (blocks ``0 … i``) and stops early on
a split outside the training set (the run's dev split: see
:mod:`bert_ner_probe.training.online_code`), as Voita & Titov's code does.

Rounding of the cut points (documented choice): ``e_i = ⌊t_i · n + ½⌋``
(half-up), over ``n`` training sentences. Every block must hold a sentence
(the first one is what the first probe trains on); too few sentences for
that is a :class:`~bert_ner_probe.errors.UserError` naming the smallest ``n``
that works.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, NamedTuple, Sequence, Tuple, Union

import numpy as np

from bert_ner_probe.errors import UserError

# The paper's portions of the training set: 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.25, 12.5, 25, 50, 100 %.
PORTIONS: Tuple[float, ...] = (0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.0625, 0.125, 0.25, 0.5, 1.0)
MIN_FIRST_BLOCK = 1  # sentences: what the first probe trains on


def seeded_order(n: int, seed: int) -> np.ndarray:
    """The order in which the ``n`` training sentences are cut into blocks: a numpy permutation from ``seed``.

    Returns sentence indices, Shape: (n,), int64.
    """
    if n < 0:
        raise ValueError(f"seeded_order: n={n} must be at least 0")
    return np.random.default_rng(seed).permutation(n).astype(np.int64)


def _cuts(n: int, portions: Sequence[float]) -> List[int]:
    """``⌊t · n + ½⌋`` per portion, exact for decimal portions (through their shortest decimal text)."""
    from fractions import Fraction

    return [math.floor(Fraction(repr(float(p))) * n + Fraction(1, 2)) for p in portions]


def _problem(n: int, portions: Sequence[float]) -> Union[None, Tuple[int, int]]:
    """None when ``n`` sentences cut into valid blocks, else ``(i, e_i)`` of the first bad cut."""
    ends = _cuts(n, portions)
    if ends[0] < MIN_FIRST_BLOCK:
        return 0, ends[0]
    for i in range(1, len(ends)):
        if ends[i] <= ends[i - 1]:
            return i, ends[i]
    return None


def _pct(p: float) -> str:
    return f"{p * 100:.4g}%"


def min_sentences(portions: Sequence[float] = PORTIONS) -> int:
    """The smallest ``n`` from which every training set of ``n`` or more sentences cuts into valid blocks.

    Past ``(MIN_FIRST_BLOCK + ½) / t_1`` and ``1 / min(t_{i+1} − t_i)`` every cut is valid (half-up
    rounding moves a cut by at most ½), so the search runs down from that bound.
    """
    _check_portions(portions)
    gaps = [b - a for a, b in zip(portions, portions[1:])]
    n = math.ceil(max([(MIN_FIRST_BLOCK + 0.5) / portions[0]] + [1.0 / g for g in gaps])) + 1
    while n > 1 and _problem(n - 1, portions) is None:
        n -= 1
    return n


def _check_portions(portions: Sequence[float]) -> None:
    if not portions or any(not 0.0 < p <= 1.0 for p in portions) or any(
            b <= a for a, b in zip(portions, portions[1:])) or portions[-1] != 1.0:
        raise ValueError(f"portions {tuple(portions)}: must rise strictly within (0, 1] and end at 1.0")


def block_bounds(n_sentences: int, portions: Sequence[float] = PORTIONS) -> List[Tuple[int, int]]:
    """The blocks ``[(0, e_1), (e_1, e_2), …, (e_{S-1}, n)]`` of the online code (Voita & Titov 2020, §3.2).

    Positions are into :func:`seeded_order`; ``e_i = ⌊t_i · n + ½⌋``. Raises a
    :class:`~bert_ner_probe.errors.UserError` when the first block would hold fewer than
    :data:`MIN_FIRST_BLOCK` sentences or two cuts coincide (an empty block).
    """
    _check_portions(portions)
    bad = _problem(n_sentences, portions)
    if bad is not None:
        i, _ = bad
        held = "a sentence" if MIN_FIRST_BLOCK == 1 else f"{MIN_FIRST_BLOCK} sentences"
        what = (f"the first portion {_pct(portions[0])} to hold {held}"
                if i == 0 else f"the portions {_pct(portions[i - 1])} and {_pct(portions[i])} to be different blocks")
        raise UserError(f"mdl=true: training set of {n_sentences} sentences is too small for {what} "
                        f"(needs at least {min_sentences(portions)} sentences)")
    ends = _cuts(n_sentences, portions)
    return list(zip([0] + ends[:-1], ends))


def block_sentences(order: np.ndarray, bounds: Sequence[Tuple[int, int]]) -> List[np.ndarray]:
    """The sentence indices of each block: ``order[start:end]`` per ``(start, end)``."""
    return [order[start:end] for start, end in bounds]


class OnlineStep(NamedTuple):
    """One probe of the online code: the sentences it trains on (every block before ``block``) and the block it sends."""

    train: np.ndarray  # sentence ids of blocks 0 … i, Shape: (n,)
    block: np.ndarray  # block i + 1's sentence ids


def online_plan(n_sentences: int, seed: int, portions: Sequence[float] = PORTIONS
                ) -> Tuple[List[np.ndarray], List[OnlineStep]]:
    """The online code's blocks of ``n_sentences`` training sentences and one :class:`OnlineStep` per block after
    the first (Voita & Titov 2020, §3.2).

    Block ``i + 1`` is sent by a probe trained on blocks ``0 … i``, all of them; the order is
    :func:`seeded_order`, the cuts :func:`block_bounds` (a :class:`~bert_ner_probe.errors.UserError` when the
    set is too small).
    """
    blocks = block_sentences(seeded_order(n_sentences, seed), block_bounds(n_sentences, portions))
    return blocks, [OnlineStep(np.concatenate(blocks[:i]), blocks[i]) for i in range(1, len(blocks))]


def nats_to_bits(nats: Union[float, np.ndarray]) -> Union[float, np.ndarray]:
    """A code length in nats (a summed natural-log loss, ``−Σ ln p``) in bits: ``nats / ln 2``."""
    return nats / math.log(2)


def code_bits(gold_probs: Sequence[float]) -> float:
    """``Σ −log2 p`` over the probabilities a probe gave each word's gold tag: the block's code length in bits."""
    p = np.asarray(gold_probs, dtype=np.float64)  # Shape: (words,)
    if np.any(p <= 0) or np.any(p > 1):
        raise ValueError("code_bits: probabilities must be in (0, 1]")
    return float(-np.log2(p).sum())


def uniform_code_length(num_words: int, num_labels: int) -> float:
    """The uniform code of ``num_words`` tags out of ``K = num_labels``: ``num_words · log2 K`` bits."""
    if num_words < 0 or num_labels < 1:
        raise ValueError(f"uniform_code_length: num_words={num_words} must be ≥ 0 and num_labels={num_labels} ≥ 1")
    return num_words * math.log2(num_labels)


@dataclass(frozen=True)
class BlockCode:
    """One block of the online code: its words and the bits that encode their tags."""

    words: int
    bits: float
    uniform: bool  # the first block, sent with the uniform code


@dataclass(frozen=True)
class MdlResult:
    """The online and uniform code lengths of a training set's tags and their ratio."""

    num_labels: int
    uniform_bits: float  # N · log2 K
    online_bits: float  # n_1 · log2 K + Σ later blocks' bits
    blocks: Tuple[BlockCode, ...]

    @property
    def compression(self) -> float:
        """``uniform_bits / online_bits``: how many times shorter the online code is (NaN for 0 / 0, K = 1)."""
        if self.online_bits == 0:
            return math.nan if self.uniform_bits == 0 else math.inf
        return self.uniform_bits / self.online_bits

    def to_dict(self) -> Dict[str, Any]:
        """Plain values for results.json."""
        return {"num_labels": self.num_labels, "uniform_bits": self.uniform_bits, "online_bits": self.online_bits,
                "compression": self.compression,
                "blocks": [{"words": b.words, "bits": b.bits, "uniform": b.uniform} for b in self.blocks]}


def online_code_length(block_words: Sequence[int], num_labels: int, block_bits: Sequence[float]) -> MdlResult:
    """Voita & Titov (2020) online code: ``L = n_1 · log2 K + Σ_{i ≥ 1} bits_i``, against ``N · log2 K``.

    ``block_words[i]`` is the number of words of block ``i`` (all blocks, the first included);
    ``block_bits[i]`` is ``Σ −log2 p(tag)`` over block ``i + 1``'s words under a probe trained on
    blocks ``0 … i`` (so one fewer than ``block_words``; see :func:`nats_to_bits`, :func:`code_bits`).
    """
    if len(block_words) < 1 or len(block_bits) != len(block_words) - 1:
        raise ValueError(f"online_code_length: {len(block_bits)} block_bits for {len(block_words)} blocks; "
                         "expected one per block after the first")
    if any(w < 1 for w in block_words) or any(b < 0 or not math.isfinite(b) for b in block_bits):
        raise ValueError("online_code_length: every block needs a word and finite, non-negative bits")
    first = uniform_code_length(block_words[0], num_labels)
    blocks = (BlockCode(int(block_words[0]), first, True),) + tuple(
        BlockCode(int(w), float(b), False) for w, b in zip(block_words[1:], block_bits))
    return MdlResult(num_labels, uniform_code_length(sum(block_words), num_labels),
                     first + float(sum(block_bits)), blocks)
