"""Sentence-level resampling of entity F1: bootstrap confidence intervals and paired tests.

A run's prediction file (``predictions/{dev,test}.conll``, see
:func:`bert_ner_probe.metrics.write_conll`) is reduced once to three count
vectors over its sentences — true positives, predicted and gold entities —
read with seqeval in the mode :func:`bert_ner_probe.metrics.score` used
(``conlleval``: seqeval's ``get_entities``; ``strict``: IOB2 spans). Micro F1
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
from seqeval.metrics.sequence_labeling import get_entities

# The gold spans per sentence of one tag column, keyed by (mode, tags): the gold column is
# the same in every run of a sweep, so it is read once per report.
_GOLD_MEMO: Dict[Tuple[str, Tuple[Tuple[str, ...], ...]], List[set]] = {}


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
    """Gold and predicted tags per sentence from a ``word gold predicted`` file (blank line between sentences)."""
    gold: List[List[str]] = []
    pred: List[List[str]] = []
    g: List[str] = []
    p: List[str] = []
    for line in Path(path).read_text(encoding="utf-8").split("\n"):
        if not line.strip():
            if g:
                gold.append(g)
                pred.append(p)
                g, p = [], []
            continue
        parts = line.split()
        if len(parts) < 3:
            raise ValueError(f"{path}: expected 'word gold predicted', got {line!r}")
        g.append(parts[-2])
        p.append(parts[-1])
    if g:
        gold.append(g)
        pred.append(p)
    return gold, pred


def _spans_per_sentence(tags: Sequence[Sequence[str]], mode: str) -> List[set]:
    """The ``(type, start, end)`` entity spans of each sentence, offsets within the sentence."""
    if mode == "strict":
        from seqeval.scheme import IOB2, Entities

        entities = Entities([list(t) for t in tags], IOB2, suffix=False).entities
        return [{(e.tag, e.start, e.end) for e in sent} for sent in entities]
    # One get_entities call over the whole column, as seqeval scores it (an "O" after each
    # sentence), then each span goes back to its sentence by its start offset.
    flat: List[str] = []
    starts = np.empty(len(tags), dtype=np.int64)
    for i, sent in enumerate(tags):
        starts[i] = len(flat)
        flat.extend(sent)
        flat.append("O")
    out: List[set] = [set() for _ in tags]
    for name, begin, end in get_entities(flat):
        i = int(np.searchsorted(starts, begin, side="right")) - 1
        out[i].add((name, begin - int(starts[i]), end - int(starts[i])))
    return out


def sentence_counts(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]],
                    mode: str = "conlleval") -> SentenceCounts:
    """Per-sentence true positives, predicted and gold entity counts (seqeval spans in ``mode``)."""
    if len(gold) != len(pred) or any(len(g) != len(p) for g, p in zip(gold, pred)):
        raise ValueError("gold and predicted tag sequences differ in length")
    key = (mode, tuple(tuple(g) for g in gold))
    gold_spans = _GOLD_MEMO.get(key)
    if gold_spans is None:
        if len(_GOLD_MEMO) > 8:
            _GOLD_MEMO.clear()
        gold_spans = _GOLD_MEMO[key] = _spans_per_sentence(gold, mode)
    pred_spans = _spans_per_sentence(pred, mode)
    tp = np.fromiter((len(g & p) for g, p in zip(gold_spans, pred_spans)), dtype=np.int64, count=len(gold))
    n_pred = np.fromiter((len(p) for p in pred_spans), dtype=np.int64, count=len(gold))
    n_gold = np.fromiter((len(g) for g in gold_spans), dtype=np.int64, count=len(gold))
    return SentenceCounts(tp, n_pred, n_gold)


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


def bootstrap_f1(counts: Sequence[SentenceCounts], resamples: int, seed: int) -> np.ndarray:
    """F1 (percent) on each bootstrap resample of the sentences, averaged over ``counts`` (the seeds of a row).

    All files must cover the same sentences; each resample draws the same
    sentences for every file. Shape: → (resamples,).
    """
    n = _same_length(counts)
    weights = resample_weights(n, resamples, seed)  # Shape: (R, S)
    return np.mean([f1_from_sums(weights @ c.matrix) for c in counts], axis=0)


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
    n = _same_length([a, b])
    ma, mb = a.matrix, b.matrix  # Shape: (S, 3)
    delta = float(f1_from_sums(ma.sum(0)[None])[0] - f1_from_sums(mb.sum(0)[None])[0])
    rng = np.random.default_rng(seed)
    swap = rng.integers(0, 2, size=(resamples, n)).astype(np.float64)  # Shape: (R, S)
    diff = swap @ (mb - ma)  # Shape: (R, 3)
    sa, sb = ma.sum(0) + diff, mb.sum(0) - diff
    shuffled = f1_from_sums(sa) - f1_from_sums(sb)
    p = (1.0 + float(np.sum(np.abs(shuffled) >= abs(delta) - 1e-9))) / (resamples + 1.0)
    weights = resample_weights(n, resamples, seed + 1)
    boot = f1_from_sums(weights @ ma) - f1_from_sums(weights @ mb)
    low, high = percentile_ci(boot, level)
    return PairedResult(delta, low, high, min(1.0, p))


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
