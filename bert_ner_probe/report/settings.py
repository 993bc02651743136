"""The report's statistics settings (``report.*``) and their defaults: one owner for both.

``conf/config.yaml``'s ``report`` block, :class:`bert_ner_probe.config.ReportConfig`,
``bert-ner-probe-report --alpha/--resamples/--seed`` and
:class:`~bert_ner_probe.multirun.ReportCallback` take their defaults from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from bert_ner_probe.errors import UserError

#: Significance level of the pairwise tests (p Holm-adjusted per table); intervals are at ``1 - ALPHA``.
ALPHA = 0.05
#: Bootstrap / approximate-randomisation resamples over sentences.
BOOTSTRAP_RESAMPLES = 1000
#: Seed of those resamples.
SEED = 0
#: Seeds a row needs for seed-level statistics (the t interval, Welch's test, ASO).
MIN_SEEDS = 3


@dataclass(frozen=True)
class Settings:
    """``report.*``: significance level, sentence resamples, RNG seed, seeds needed for seed-level statistics."""

    alpha: float = ALPHA
    bootstrap_resamples: int = BOOTSTRAP_RESAMPLES
    seed: int = SEED
    min_seeds: int = MIN_SEEDS

    @property
    def level(self) -> float:
        return 1.0 - self.alpha


def settings_from(alpha: float = ALPHA, bootstrap_resamples: int = BOOTSTRAP_RESAMPLES, seed: int = SEED) -> Settings:
    """Checked report settings; a bad value is a :class:`UserError`."""
    if not 0.0 < alpha < 1.0:
        raise UserError(f"report.alpha={alpha}: must be in (0, 1)")
    if bootstrap_resamples < 100:
        raise UserError(f"report.bootstrap_resamples={bootstrap_resamples}: must be at least 100")
    return Settings(alpha=float(alpha), bootstrap_resamples=int(bootstrap_resamples), seed=int(seed))
