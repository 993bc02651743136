"""The run's corpus from its config: a CoNLL folder, or a ``datasets`` id or folder."""

from __future__ import annotations

from typing import Optional

from omegaconf import DictConfig, OmegaConf

from bert_ner_probe.data.conll import load_corpus
from bert_ner_probe.data.corpus import Corpus
from bert_ner_probe.data.hub import hub_options
from bert_ner_probe.stamped_memo import StampedMemo


def corpus_of(cfg: DictConfig, memo: Optional[StampedMemo] = None) -> Corpus:
    """The run's corpus as ``cfg.data`` describes it; ``memo`` keeps parsed files (:mod:`bert_ner_probe.memo`)."""
    return load_corpus(cfg.data.dir, cfg.data.scheme, OmegaConf.to_container(cfg.data.limit), cfg.data.hub_id,
                       hub_options(cfg.data), strict_labels=cfg.data.strict_labels,
                       strict_scheme=cfg.data.strict_scheme, memo=memo)
