"""The feature step: cached hidden states for a corpus, extracted at most once.

The cache key holds everything that changes the features — the encoder
(location and a hash of its files), the data (content hash and sentence
counts after limits), pooling, context, dtype and window settings — and
nothing that does not (strategy, seed, tagger, trainer), so every strategy
and restart reuses one extraction.

Random weights (``encoder.weights=random``, :class:`~.encoder.Weights`) add
``weights`` and ``weights_seed`` to the key; the pretrained key has neither,
so it is the same as before they existed and older entries stay valid.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from bert_ner_probe.features import encoder as enc
from bert_ner_probe.device import encoder_dtype, release_host_memory
from bert_ner_probe.stamped_memo import StampedMemo
from bert_ner_probe.features.cache import CacheEntry, CacheKey, default_root, get_or_build
from bert_ner_probe.data.corpus import SPLITS, Corpus
from bert_ner_probe.features.extract import extract_split
from bert_ner_probe.features.pooling import Pooling, pooled_width
from bert_ner_probe.features.windows import Context


def weights_of(encoder_cfg: Any) -> Tuple[enc.Weights, int]:
    """``(encoder.weights, encoder.weights_seed)``; a config without them is pretrained (seed 0)."""
    return (enc.Weights.parse(getattr(encoder_cfg, "weights", None) or enc.Weights.pretrained, "encoder.weights"),
            int(getattr(encoder_cfg, "weights_seed", None) or 0))


def cache_key(encoder_cfg: Any, pooling: str, corpus: Corpus, device: str,
              memo: Optional[StampedMemo] = None) -> Dict[str, Any]:
    """The :class:`~.cache.CacheKey` of this encoder, data and pooling, in its stored form (:meth:`~.cache.CacheKey.as_dict`)."""
    location = enc.resolve_location(encoder_cfg.name_or_path)
    weights, weights_seed = weights_of(encoder_cfg)
    random = weights == enc.Weights.random  # pretrained keys carry neither field: their entries stay valid
    return CacheKey(
        encoder=encoder_cfg.name_or_path,
        encoder_hash=enc.fingerprint(location, memo),
        data=corpus.fingerprint(),
        sentences={s: len(corpus[s].sentences) for s in SPLITS},
        pooling=Pooling.parse(pooling, "pooling.method").value,
        context=Context.parse(encoder_cfg.context, "encoder.context").value,
        dtype=str(encoder_dtype(encoder_cfg.dtype, device)),
        max_length=encoder_cfg.max_length,
        max_pieces_per_word=encoder_cfg.max_pieces_per_word,
        weights=weights.value if random else None,
        weights_seed=weights_seed if random else None,
    ).as_dict()


def get_features(encoder_cfg: Any, pooling: str, corpus: Corpus, device: str,
                 cache_dir: str | None = None, progress: bool = True,
                 splits: Sequence[str] = SPLITS, rebuild: bool = True,
                 fingerprints: Optional[StampedMemo] = None,
                 key: Optional[Dict[str, Any]] = None) -> Tuple[CacheEntry, bool]:
    """The cache entry for this encoder, data and pooling; extract every split (of ``splits``) if it is missing.

    Returns ``(entry, hit)``; ``entry.meta["extract_s"]`` is the extraction time
    of the run that built it. A damaged entry is rebuilt, or with ``rebuild=False``
    is a :class:`~.cache.CacheError` (see :func:`~.cache.get_or_build`).
    ``fingerprints`` keeps the encoder folder's hash for the next call (see :mod:`bert_ner_probe.memo`);
    ``key`` is :func:`cache_key` of these same arguments when the caller has built it already.
    """
    typed = CacheKey.of(key if key is not None else cache_key(encoder_cfg, pooling, corpus, device, fingerprints))
    if key is not None and (typed.pooling, typed.context) != (Pooling.parse(pooling, "pooling.method").value,
                                                              Context.parse(encoder_cfg.context, "encoder.context").value):
        raise ValueError(f"get_features: key {typed.pooling}/{typed.context} is not for pooling={pooling}, "
                         f"context={encoder_cfg.context}")
    weights, weights_seed = weights_of(encoder_cfg)
    if (typed.weights or enc.Weights.pretrained.value, typed.weights_seed or 0) != (
            weights.value, weights_seed if weights == enc.Weights.random else 0):
        raise ValueError(f"get_features: key of weights={typed.weights or 'pretrained'} is not for "
                         f"encoder.weights={weights}, encoder.weights_seed={weights_seed}")
    if tuple(splits) != SPLITS:
        typed = replace(typed, splits=list(splits))  # an entry of some splits never stands in for a full one
    key = typed.as_dict()

    def build(folder: Path) -> Dict[str, Any]:
        t0 = time.perf_counter()
        loaded = enc.load_encoder(encoder_cfg.name_or_path, device, typed.dtype, encoder_cfg.max_length,
                                  weights, weights_seed)
        load_s = time.perf_counter() - t0
        width = pooled_width(pooling, loaded.hidden_size)
        stats = {}
        for split in splits:
            sp = corpus[split]
            sentences = [s.words for s in sp.sentences]
            offsets = np.concatenate([[0], np.cumsum([len(s) for s in sentences])]).astype(np.int64)
            out = np.lib.format.open_memmap(folder / f"{split}.npy", mode="w+", dtype=np.float16,
                                            shape=(int(offsets[-1]), loaded.num_layers + 1, width))
            stats[split] = extract_split(
                loaded, sentences, [s.doc for s in sp.sentences], out, pooling, encoder_cfg.context,
                batch_size=encoder_cfg.batch_size, max_tokens=encoder_cfg.max_tokens,
                max_pieces_per_word=encoder_cfg.max_pieces_per_word, desc=f"extract {split}", progress=progress)
            out.flush()  # on disk before the entry is complete: jobs on other nodes may read it next
            del out
            np.save(folder / f"{split}.offsets.npy", offsets)
        return {
            "data_sources": {split: corpus[split].source for split in SPLITS},  # for bert-ner-probe-cache list
            "num_layers": loaded.num_layers,
            "hidden_size": loaded.hidden_size,
            "width": width,
            "max_length": loaded.max_length,
            "extract": stats,
            "encoder_passes": sum(s["encoder_passes"] for s in stats.values()),
            "load_s": load_s,  # loading the encoder
            "extract_s": time.perf_counter() - t0,
        }

    entry, hit = get_or_build(cache_dir or default_root(), key, build, rebuild=rebuild)
    if not hit:
        release_host_memory()  # the encoder's and extraction's freed buffers, before training allocates
    return entry, hit
