"""Sentence-level resampling of entity F1: bootstrap confidence intervals and paired tests.

A run's prediction file (``predictions/{dev,test}.conll``, see
:func:`bert_ner_probe.metrics.score.write_conll`) is reduced once to three count
vectors over its sentences — true positives, predicted and gold entities —
read by :func:`bert_ner_probe.metrics.score.entity_spans` in the mode the run
scored them (``conlleval``: seqeval's ``get_entities``; ``strict``: IOB2 spans). Micro F1
of any weighted set of sentences is then

    F1(w) = 2 (w · tp) / (w · predicted + w · gold)

so ``R`` resamples are one ``(R, S)`` weight matrix times the ``(S, 3)``
counts, never ``R`` calls of seqeval. The sums over sentences equal the
file's own score because seqeval never joins an entity across sentences.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from bert_ner_probe.metrics.score import entity_spans, sentence_starts

# The gold spans of one tag column, keyed by (mode, tags): the gold column is the same in
# every run of a sweep, so it is read once per report.
_GOLD_MEMO: Dict[Tuple[str, Tuple[Tuple[str, ...], ...]], set] = {}


@dataclass(frozen=True)
class SentenceCounts:
    """Per-sentence entity counts of one prediction file. Shape: each ``(S,)`` int64."""

    tp: np.ndarray
    predicted: np.ndarray
    gold: np.ndarray

    @property
    def matrix(self) -> np.ndarray:
        """``[tp, predicted, gold]`` as columns. Shape: (S, 3)."""
        return np.stack([self.tp, self.predicted, self.gold], axis=1).astype(np.float64)

    def f1(self) -> float:
        """Micro F1 of the whole file, in percent."""
        return float(f1_from_sums(self.matrix.sum(axis=0)[None, :])[0])

    def __len__(self) -> int:
        return len(self.tp)


def f1_from_sums(sums: np.ndarray) -> np.ndarray:
    """Micro F1 in percent from summed ``[tp, predicted, gold]`` rows (0 where nothing was found or expected).

    Shape: sums (R, 3) → (R,).
    """
    denom = sums[:, 1] + sums[:, 2]
    return np.where(denom > 0, 200.0 * sums[:, 0] / np.maximum(denom, 1e-300), 0.0)


def read_conll_tags(path: Path) -> Tuple[List[List[str]], List[List[str]]]:
    """Gold and predicted tags per sentence from a ``word gold predicted`` file (blank line between sentences).

    The whole file is split in one C-level call (three fields a line) and cut
    into sentences by their line counts; a file that does not split so is
    read line by line, which names the bad line.
    """
    text = Path(path).read_text(encoding="utf-8")
    blocks = [b for b in (b.strip("\n") for b in text.split("\n\n")) if b.strip()]
    lengths = [b.count("\n") + 1 for b in blocks]
    fields = text.split()
    if len(fields) == 3 * sum(lengths) and all("\n\n" not in b for b in blocks):
        gold_col, pred_col = fields[1::3], fields[2::3]
        ends = np.cumsum(lengths).tolist()
        begins = [0] + ends[:-1]
        return ([gold_col[b:e] for b, e in zip(begins, ends)], [pred_col[b:e] for b, e in zip(begins, ends)])
    gold: List[List[str]] = []
    pred: List[List[str]] = []
    for block in blocks:
        lines = [ln for ln in block.split("\n") if ln.strip()]
        for line in lines:
            if len(line.split()) < 3:
                raise ValueError(f"{path}: expected 'word gold predicted', got {line!r}")
        gold.append([ln.split()[-2] for ln in lines])
        pred.append([ln.split()[-1] for ln in lines])
    return gold, pred


def sentence_counts(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]],
                    mode: str = "conlleval") -> SentenceCounts:
    """Per-sentence true positives, predicted and gold entity counts (spans read by
    :func:`bert_ner_probe.metrics.score.entity_spans` in ``mode``, as the run's own scores read them).

    The gold column is read once (memoised across the runs of a report). A sentence predicted exactly right
    has its gold spans; the others are read with one more call over just those sentences (a span never
    crosses a sentence, so each sentence's spans are its own), and each span is counted in the sentence it
    starts in.
    """
    if len(gold) != len(pred) or any(len(g) != len(p) for g, p in zip(gold, pred)):
        raise ValueError("gold and predicted tag sequences differ in length")
    starts = sentence_starts([len(g) for g in gold])
    key = (mode, tuple(tuple(g) for g in gold))
    gold_spans = _GOLD_MEMO.get(key)
    if gold_spans is None:
        if len(_GOLD_MEMO) > 8:
            _GOLD_MEMO.clear()
        gold_spans = _GOLD_MEMO[key] = entity_spans(gold, mode)
    n = len(gold)
    n_gold = _per_sentence(gold_spans, starts, n)
    wrong = [i for i, (g, p) in enumerate(zip(gold, pred)) if g != p and list(g) != list(p)]
    tp, n_pred = n_gold.copy(), n_gold.copy()
    if wrong:
        sub = [pred[i] for i in wrong]
        sub_spans, sub_starts = entity_spans(sub, mode), sentence_starts([len(t) for t in sub])
        # Back to the offsets of the whole column: sub-sentence k is sentence wrong[k].
        shift = starts[wrong] - sub_starts
        k_of = np.searchsorted(sub_starts, [b for _, b, _ in sub_spans], side="right") - 1
        pred_spans = {(name, b + int(shift[k]), e + int(shift[k])) for (name, b, e), k in zip(sub_spans, k_of)}
        idx = np.asarray(wrong)
        tp[idx] = 0
        n_pred[idx] = 0
        tp += _per_sentence(pred_spans & gold_spans, starts, n)
        n_pred += _per_sentence(pred_spans, starts, n)
    return SentenceCounts(tp, n_pred, n_gold)


def _per_sentence(spans: set, starts: np.ndarray, n: int) -> np.ndarray:
    """How many of ``spans`` start in each sentence. Shape: → (n,) int64."""
    begins = np.fromiter((b for _, b, _ in spans), dtype=np.int64, count=len(spans))
    return np.bincount(np.searchsorted(starts, begins, side="right") - 1, minlength=n).astype(np.int64)


def read_counts(path: Path, mode: str = "conlleval") -> SentenceCounts:
    """:func:`sentence_counts` of one prediction file."""
    return sentence_counts(*read_conll_tags(path), mode=mode)


def resample_weights(n_sentences: int, resamples: int, seed: int) -> np.ndarray:
    """How often each sentence is drawn in each bootstrap resample (with replacement).

    Shape: (resamples, n_sentences), float64; each row sums to ``n_sentences``.
    """
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_sentences, size=(resamples, n_sentences))
    flat = idx + (np.arange(resamples, dtype=np.int64) * n_sentences)[:, None]  # Shape: (R, S)
    counts = np.bincount(flat.ravel(), minlength=resamples * n_sentences)
    return counts.reshape(resamples, n_sentences).astype(np.float64)


class Resampler:
    """The resamples of one set of ``n`` sentences, shared by every row and pair of a table.

    ``weights`` (bootstrap draws per sentence) and ``swap`` (approximate
    randomisation: 1 where a sentence's outputs are exchanged) are drawn once;
    the products with each file's counts are computed once per file, so a
    pair costs O(resamples), not O(resamples x sentences). Sharing the draws
    between pairs (common random numbers) keeps each test valid.
    """

    def __init__(self, n_sentences: int, resamples: int, seed: int) -> None:
        self.n = n_sentences
        self.resamples = resamples
        # Shape: (R, S); float32 is exact for these integer sums (< 2**24).
        self.weights = resample_weights(n_sentences, resamples, seed).astype(np.float32)
        self.swap = np.random.default_rng(seed + 1).integers(0, 2, size=(resamples, n_sentences)).astype(np.float32)
        self._memo: Dict[Tuple[int, str], Tuple[SentenceCounts, np.ndarray]] = {}

    def _product(self, which: str, counts: SentenceCounts) -> np.ndarray:
        """``weights @ counts`` or ``swap @ counts``, memoised per file. Shape: → (R, 3) float64."""
        if len(counts) != self.n:
            raise ValueError(f"prediction files cover different numbers of sentences: {len(counts)}, {self.n}")
        key = (id(counts), which)
        hit = self._memo.get(key)
        if hit is None or hit[0] is not counts:
            matrix = self.weights if which == "boot" else self.swap
            hit = self._memo[key] = (counts, (matrix @ counts.matrix.astype(np.float32)).astype(np.float64))
        return hit[1]

    def f1(self, counts: Sequence[SentenceCounts]) -> np.ndarray:
        """Bootstrap F1 (percent) of each resample, averaged over ``counts``. Shape: → (R,)."""
        return np.mean([f1_from_sums(self._product("boot", c)) for c in counts], axis=0)

    def paired(self, a: SentenceCounts, b: SentenceCounts, level: float = 0.95) -> "PairedResult":
        """See :func:`paired_test`."""
        ma, mb = a.matrix.sum(0), b.matrix.sum(0)  # Shape: (3,)
        delta = float(f1_from_sums(ma[None])[0] - f1_from_sums(mb[None])[0])
        diff = self._product("swap", b) - self._product("swap", a)  # Shape: (R, 3)
        shuffled = f1_from_sums(ma + diff) - f1_from_sums(mb - diff)
        p = (1.0 + float(np.sum(np.abs(shuffled) >= abs(delta) - 1e-9))) / (self.resamples + 1.0)
        boot = f1_from_sums(self._product("boot", a)) - f1_from_sums(self._product("boot", b))
        low, high = percentile_ci(boot, level)
        return PairedResult(delta, low, high, min(1.0, p))


_RESAMPLERS: Dict[Tuple[int, int, int], Resampler] = {}


def resampler(n_sentences: int, resamples: int, seed: int) -> Resampler:
    """The shared :class:`Resampler` of ``n_sentences`` (a few kept; the memo is per report)."""
    key = (n_sentences, resamples, seed)
    if key not in _RESAMPLERS:
        if len(_RESAMPLERS) >= 4:
            _RESAMPLERS.clear()
        _RESAMPLERS[key] = Resampler(n_sentences, resamples, seed)
    return _RESAMPLERS[key]


def clear_memos() -> None:
    """Forget the kept gold spans and resamplers (the report calls this when it is done)."""
    _RESAMPLERS.clear()
    _GOLD_MEMO.clear()


def bootstrap_f1(counts: Sequence[SentenceCounts], resamples: int, seed: int) -> np.ndarray:
    """F1 (percent) on each bootstrap resample of the sentences, averaged over ``counts`` (the seeds of a row).

    All files must cover the same sentences; each resample draws the same
    sentences for every file. Shape: → (resamples,).
    """
    return resampler(_same_length(counts), resamples, seed).f1(counts)


def percentile_ci(samples: np.ndarray, level: float = 0.95) -> Tuple[float, float]:
    """The percentile interval of bootstrap samples."""
    tail = 50.0 * (1.0 - level)
    low, high = np.percentile(samples, [tail, 100.0 - tail])
    return float(low), float(high)


def bootstrap_ci(counts: Sequence[SentenceCounts], resamples: int, seed: int,
                 level: float = 0.95) -> Tuple[float, float]:
    """Percentile bootstrap interval of a row's F1 (mean over its files) over sentences."""
    return percentile_ci(bootstrap_f1(counts, resamples, seed), level)


@dataclass(frozen=True)
class PairedResult:
    """A sentence-level comparison of two prediction files: ``delta = F1(a) - F1(b)`` in points."""

    delta: float
    ci_low: float
    ci_high: float
    p_value: float


def paired_test(a: SentenceCounts, b: SentenceCounts, resamples: int, seed: int,
                level: float = 0.95) -> PairedResult:
    """Approximate randomisation p-value and paired bootstrap interval of ``F1(a) - F1(b)``.

    Approximate randomisation (Noreen 1989; Riezler and Maxwell 2005): under
    the null hypothesis the two systems' outputs are exchangeable per
    sentence, so each resample swaps the counts of a random half of the
    sentences, ``sums_a* = sums_a + m @ (b - a)`` with ``m`` a (R, S) 0/1
    matrix; two-sided ``p = (1 + #{|δ*| ≥ |δ|}) / (R + 1)``. The interval
    resamples the same sentences for both systems (paired bootstrap).
    """
    return resampler(_same_length([a, b]), resamples, seed).paired(a, b, level)


def _same_length(counts: Sequence[SentenceCounts]) -> int:
    sizes = {len(c) for c in counts}
    if len(sizes) != 1:
        raise ValueError(f"prediction files cover different numbers of sentences: {sorted(sizes)}")
    n = sizes.pop()
    if n == 0:
        raise ValueError("prediction file without sentences")
    return n


def counts_of_run(run_dir: Path, split: str, mode: str) -> Optional[SentenceCounts]:
    """The counts of ``run_dir/predictions/{split}.conll``, or None when the file is absent."""
    path = Path(run_dir) / "predictions" / f"{split}.conll"
    return read_counts(path, mode) if path.is_file() else None
