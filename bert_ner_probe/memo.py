"""Explicit reuse between the runs of one process: the session that holds their file-stamped memos.

The jobs of a sweep run one after another in one process (Hydra's basic or
joblib launcher) and read the same data files, hash the same encoder folder
and, seed after seed, the same combined features. Nothing of that is kept in
module globals: a :class:`Session` holds it and is handed to
:func:`bert_ner_probe.run.run_probe` by its caller (the CLI keeps one per
process, and lets the run tune glibc's malloc for it; the Python API and tests
start fresh unless they pass one).

The memo itself, :class:`~bert_ner_probe.stamped_memo.StampedMemo`, lives
low in the package (the data and feature steps use it); this module wires the
session, above the training step it reaches into.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bert_ner_probe.stamped_memo import StampedMemo


def _feature_reuse() -> Any:
    from bert_ner_probe.training.tagging_data import FeatureReuse  # noqa: PLC0415 - torch-heavy, imported on use

    return FeatureReuse()


@dataclass
class Session:
    """What the runs of one process share: parsed data files, encoder hashes, the last combined features."""

    files: StampedMemo = field(default_factory=StampedMemo)  # data.conll: parsed CoNLL files
    fingerprints: StampedMemo = field(default_factory=StampedMemo)  # features.encoder: hashed model folders
    features: Any = field(default_factory=_feature_reuse)  # training.tagging_data.FeatureReuse
    # The process is the command's own (the CLI sets it): glibc's malloc thresholds may be raised for the rest of
    # the process so that gradients stay on its heap (device.keep_on_heap). A Python caller's process is its own.
    tune_malloc: bool = False
