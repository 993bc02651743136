"""The report's statistics on planted data: intervals, tests, Holm, ASO, calibration."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
from scipy import stats
from seqeval.metrics.sequence_labeling import get_entities

from bert_ner_probe.metrics.score import score, write_conll
from bert_ner_probe.report.bootstrap import (
    SentenceCounts,
    bootstrap_ci,
    paired_test,
    read_conll_tags,
    read_counts,
    sentence_counts,
)
from bert_ner_probe.report.settings import Settings
from bert_ner_probe.report.significance import (
    NO_TEST,
    SEED_TEST,
    SENTENCE_TEST,
    Sample,
    all_pairs,
    aso_eps_min,
    holm,
    not_worse_than_best,
    row_interval,
    t_interval,
    welch,
)


def planted_counts(rng: np.random.Generator, n: int, recall: float, spurious: float) -> SentenceCounts:
    """Per-sentence counts of a system that finds each gold entity with prob ``recall`` and adds false ones."""
    gold = rng.poisson(1.7, n)
    tp = rng.binomial(gold, recall)
    return SentenceCounts(tp, tp + rng.poisson(spurious, n), gold)


def seed_sample(label: str, dev: List[float], test: List[float] | None = None,
                counts: Dict[str, Dict[int, SentenceCounts]] | None = None) -> Sample:
    return Sample(label, list(range(1, len(dev) + 1)), {"dev": dev, "test": test or dev},
                  lambda split: (counts or {}).get(split, {}))


def test_clearly_different_strategies_are_flagged_over_seeds() -> None:
    good = seed_sample("good", [91.2, 91.5, 91.0, 91.4])
    bad = seed_sample("bad", [89.1, 88.7, 89.3, 88.9])
    same = seed_sample("same", [91.3, 91.1, 91.4, 91.0])
    pairs = all_pairs("t", [bad, good, same], Settings())
    assert len(pairs) == 6 and {p.split for p in pairs} == {"dev", "test"}
    by = {(p.split, p.a, p.b): p for p in pairs}
    clear = by[("dev", "good", "bad")]
    assert clear.test == SEED_TEST and clear.significant and clear.delta == pytest.approx(2.275)
    assert clear.ci_low > 0 and clear.aso_eps_min < 0.2 and clear.p_holm >= clear.p_value
    assert not by[("dev", "good", "same")].significant
    assert not_worse_than_best([bad, good, same], pairs, "dev") == {"bad": False, "good": True, "same": True}


def test_false_positive_rate_close_to_alpha_over_seeds() -> None:
    rng = np.random.default_rng(7)
    p = np.array([welch(rng.normal(90, 0.5, 5), rng.normal(90, 0.5, 5))[3] for _ in range(2000)])
    assert 0.035 <= np.mean(p < 0.05) <= 0.065
    # The interval of a mean covers the true value at about its level.
    covered = [lo <= 90 <= hi for lo, hi in (t_interval(rng.normal(90, 1, 3)) for _ in range(2000))]
    assert 0.93 <= np.mean(covered) <= 0.97


def test_false_positive_rate_close_to_alpha_over_sentences() -> None:
    rng = np.random.default_rng(11)
    p = np.array([paired_test(planted_counts(rng, 200, 0.8, 0.3), planted_counts(rng, 200, 0.8, 0.3),
                              resamples=500, seed=i).p_value for i in range(600)])
    assert 0.025 <= np.mean(p < 0.05) <= 0.08
    better = paired_test(planted_counts(rng, 500, 0.9, 0.2), planted_counts(rng, 500, 0.6, 0.5), 1000, 0)
    assert better.p_value < 0.01 and better.ci_low > 0


def test_sentence_bootstrap_ci_agrees_with_scipy() -> None:
    counts = planted_counts(np.random.default_rng(3), 400, 0.85, 0.3)
    low, high = bootstrap_ci([counts], resamples=4000, seed=1)

    def f1(tp, pred, gold, axis=-1):
        return 200.0 * tp.sum(axis) / (pred.sum(axis) + gold.sum(axis))

    ref = stats.bootstrap((counts.tp, counts.predicted, counts.gold), f1, paired=True, vectorized=True,
                          n_resamples=4000, method="percentile", random_state=2).confidence_interval
    assert low == pytest.approx(ref.low, abs=0.3) and high == pytest.approx(ref.high, abs=0.3)
    assert low < counts.f1() < high


@pytest.mark.parametrize("n, shift, seed", [(5, 1.0, 3), (4, -0.8, 5)])
def test_aso_agrees_with_deepsig(n: int, shift: float, seed: int) -> None:
    from deepsig import aso

    rng = np.random.default_rng(seed)
    a, b = rng.normal(shift, 1, n), rng.normal(0, 1, n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = aso(a, b, seed=1, show_progress=False, num_bootstrap_iterations=400)  # deepsig loops: ~3 s per 1000
    assert aso_eps_min(a, b, seed=1) == pytest.approx(ref, abs=0.05)


def test_aso_under_the_bonferroni_adjustment_agrees_with_deepsig() -> None:
    """Three comparisons: the confidence level rises to 0.95 + 0.05 / 3 in both (deepsig's rule), so eps_min
    rises from 0.71 (one comparison) to 0.77; the report's pairs of a three-row table are adjusted so."""
    from deepsig import aso

    rng = np.random.default_rng(2)
    a, b = rng.normal(0.4, 1, 8), rng.normal(0, 1, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = aso(a, b, seed=1, show_progress=False, num_bootstrap_iterations=400, num_comparisons=3)
    ours = aso_eps_min(a, b, num_comparisons=3, seed=1)
    assert ours == pytest.approx(ref, abs=0.02)
    assert aso_eps_min(a, b, num_comparisons=1, seed=1) < ref - 0.04  # without the adjustment: far from deepsig's
    settings = Settings()
    samples = [Sample(label, [1, 2, 3, 4, 5, 6, 7, 8], {"dev": list(x), "test": list(x)}, lambda split: {})
               for label, x in (("a", a), ("b", b), ("c", b - 1.0))]
    pair = next(p for p in all_pairs("t", samples, settings) if p.split == "dev" and {p.a, p.b} == {"a", "b"})
    assert pair.aso_eps_min == pytest.approx(aso_eps_min(a, b, settings.level, 3, settings.bootstrap_resamples,
                                                         settings.seed))


def test_holm() -> None:
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    out = holm([0.2, float("nan"), 0.01])
    assert out[0] == pytest.approx(0.2) and np.isnan(out[1]) and out[2] == pytest.approx(0.02)


def test_t_interval_known_case() -> None:
    low, high = t_interval([1.0, 2.0, 3.0])
    assert (low, high) == pytest.approx((2 - 4.302653 / 3 ** 0.5, 2 + 4.302653 / 3 ** 0.5))


def test_sentence_counts_match_metrics_score(conll_dir: Path, tmp_path: Path) -> None:
    """Per-sentence counts sum to the same F1 as metrics.score, in both modes, through a written file."""
    from bert_ner_probe.data.conll import load_corpus

    corpus = load_corpus(str(conll_dir), "iob2", {"train": 300, "dev": 600, "test": 1})
    sents = corpus["dev"].sentences
    gold = [list(s.tags) for s in sents]
    rng = np.random.default_rng(0)
    labels = sorted({t for g in gold for t in g})
    pred = [[t if rng.random() < 0.85 else labels[rng.integers(len(labels))] for t in g] for g in gold]
    write_conll(tmp_path / "dev.conll", [list(s.words) for s in sents], gold, pred)
    assert read_conll_tags(tmp_path / "dev.conll") == (gold, pred)
    for mode in ("conlleval", "strict"):
        counts = read_counts(tmp_path / "dev.conll", mode)
        assert len(counts) == len(gold)
        assert counts.f1() == pytest.approx(100 * score(gold, pred, mode)["f1"], abs=1e-9)
        assert int(counts.gold.sum()) == score(gold, pred, mode)["support"]
        if mode == "conlleval":  # and sentence by sentence, as seqeval reads one sentence alone
            for i in range(200):
                g, p = set(get_entities(gold[i])), set(get_entities(pred[i]))
                assert (counts.tp[i], counts.predicted[i], counts.gold[i]) == (len(g & p), len(p), len(g))
    with pytest.raises(ValueError):
        sentence_counts(gold, pred[:-1])


def test_one_seed_rows_get_sentence_intervals_and_tests() -> None:
    rng = np.random.default_rng(5)
    a = {s: {1: planted_counts(rng, 300, 0.9, 0.2)} for s in ("dev", "test")}
    b = {s: {1: planted_counts(rng, 300, 0.6, 0.6)} for s in ("dev", "test")}
    sa = seed_sample("a", [a["dev"][1].f1()], [a["test"][1].f1()], a)
    sb = seed_sample("b", [b["dev"][1].f1()], [b["test"][1].f1()], b)
    low, high, how = row_interval(sa, "dev", Settings())
    assert how == "bootstrap" and low < sa.mean("dev") < high
    pairs = all_pairs("t", [sb, sa], Settings())
    assert [(p.split, p.a, p.test, p.significant) for p in pairs] == [
        ("dev", "a", SENTENCE_TEST, True), ("test", "a", SENTENCE_TEST, True)]
    assert pairs[0].delta == pytest.approx(sa.mean("dev") - sb.mean("dev"))
    # Without prediction files there is nothing to resample: no interval, no test.
    bare = [seed_sample("x", [80.0]), seed_sample("y", [70.0])]
    assert row_interval(bare[0], "dev", Settings())[2] == ""
    assert {p.test for p in all_pairs("t", bare, Settings())} == {NO_TEST}
