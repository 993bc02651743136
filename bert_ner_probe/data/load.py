"""The run's corpus from its config: a CoNLL folder, or a ``datasets`` id or folder."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from bert_ner_probe.data.conll import Corpus, load_corpus
from bert_ner_probe.data.hub import hub_options


def corpus_of(cfg: DictConfig) -> Corpus:
    """The run's corpus as ``cfg.data`` describes it (a CoNLL folder, or a ``datasets`` id or folder)."""
    return load_corpus(cfg.data.dir, cfg.data.scheme, OmegaConf.to_container(cfg.data.limit), cfg.data.hub_id,
                       hub_options(cfg.data), strict_labels=cfg.data.strict_labels,
                       strict_scheme=cfg.data.strict_scheme)
