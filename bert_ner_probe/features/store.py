"""The feature step: cached hidden states for a corpus, extracted at most once.

The cache key holds everything that changes the features — the encoder
(location and a hash of its files), the data (content hash and sentence
counts after limits), pooling, context, dtype and window settings — and
nothing that does not (strategy, seed, tagger, trainer), so every strategy
and restart reuses one extraction.

Random weights (``encoder.weights=random``, :class:`~.encoder.Weights`) add
``weights`` and ``weights_seed`` to the key; ``encoder.layers`` (a subset of
the hidden states to cache) adds ``hidden_states``, and a causal encoder
(:func:`~.encoder.is_causal`: its own window rule) adds ``causal``. A key
without them is the same as before they existed, so older entries stay valid.
The pooling in the key is resolved (``auto`` → ``first`` or ``last``).

Before extraction the entry's size is known from the corpus, the encoder's
config and the hidden states kept (:func:`~.cache.entry_bytes`); the build
creates every file of the entry at its full size before the encoder runs.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from bert_ner_probe.features import encoder as enc
from bert_ner_probe.device import encoder_dtype, release_host_memory
from bert_ner_probe.errors import UserError
from bert_ner_probe.hidden_states import resolve_indices, states_text
from bert_ner_probe.stamped_memo import StampedMemo
from bert_ner_probe.features.cache import (CacheEntry, CacheKey, default_root, disk_free, entry_bytes, get_or_build,
                                          offsets_file, state_file)
from bert_ner_probe.data.corpus import SPLITS, Corpus
from bert_ner_probe.features.extract import extract_split
from bert_ner_probe.features.pooling import Pooling, pooled_width
from bert_ner_probe.features.row_file import RowFile
from bert_ner_probe.features.windows import Context


def weights_of(encoder_cfg: Any) -> Tuple[enc.Weights, int]:
    """``(encoder.weights, encoder.weights_seed)``; a config without them is pretrained (seed 0)."""
    return (enc.Weights.parse(getattr(encoder_cfg, "weights", None) or enc.Weights.pretrained, "encoder.weights"),
            int(getattr(encoder_cfg, "weights_seed", None) or 0))


def cached_states(encoder_cfg: Any, num_layers: int) -> Optional[List[int]]:
    """``encoder.layers`` resolved to hidden-state indices, ascending (negatives from the top); None = all 0..N."""
    layers = getattr(encoder_cfg, "layers", None)
    if layers is None:
        return None
    states = sorted(resolve_indices([int(x) for x in layers], num_layers, "encoder.layers"))
    return None if states == list(range(num_layers + 1)) else states


def held_states(key: Dict[str, Any], num_layers: int) -> List[int]:
    """The hidden states an entry of ``key`` holds."""
    states = CacheKey.of(key).hidden_states
    return list(range(num_layers + 1)) if states is None else list(states)


def check_held(key: Dict[str, Any], num_layers: int, needed: Sequence[int], who: str) -> None:
    """One :class:`UserError` when ``who`` (e.g. ``strategy=sum_all``) needs hidden states the entry of ``key``
    does not hold (``encoder.layers``); checked before any extraction."""
    held = held_states(key, num_layers)
    missing = sorted(set(needed) - set(held))
    if missing:
        raise UserError(f"{who} reads hidden states {states_text(sorted(needed))}, but the cache entry of "
                        f"encoder.layers={[int(x) for x in held]} holds {states_text(held)} only "
                        f"(missing: {states_text(missing)}): add them to encoder.layers, or drop it to cache all "
                        f"{num_layers + 1}")


def cache_key(encoder_cfg: Any, pooling: str, corpus: Corpus, device: str,
              memo: Optional[StampedMemo] = None) -> Dict[str, Any]:
    """The :class:`~.cache.CacheKey` of this encoder, data and pooling, in its stored form (:meth:`~.cache.CacheKey.as_dict`).

    ``pooling`` may be ``auto`` (resolved for the encoder here).
    """
    location, config = enc.load_config(encoder_cfg.name_or_path)
    weights, weights_seed = weights_of(encoder_cfg)
    random = weights == enc.Weights.random  # pretrained keys carry neither field: their entries stay valid
    causal = enc.causal_of(encoder_cfg)
    return CacheKey(
        encoder=encoder_cfg.name_or_path,
        encoder_hash=enc.fingerprint(location, memo),
        data=corpus.fingerprint(),
        sentences={s: len(corpus[s].sentences) for s in SPLITS},
        pooling=Pooling.for_encoder(pooling, causal).value,
        context=Context.parse(encoder_cfg.context, "encoder.context").value,
        dtype=str(encoder_dtype(encoder_cfg.dtype, device)),
        max_length=encoder_cfg.max_length,
        max_pieces_per_word=encoder_cfg.max_pieces_per_word,
        weights=weights.value if random else None,
        weights_seed=weights_seed if random else None,
        hidden_states=cached_states(encoder_cfg, int(config.num_hidden_layers)),
        causal=True if causal else None,
    ).as_dict()


def get_features(encoder_cfg: Any, pooling: str, corpus: Corpus, device: str,
                 cache_dir: str | None = None, progress: bool = True,
                 splits: Sequence[str] = SPLITS, rebuild: bool = True,
                 fingerprints: Optional[StampedMemo] = None,
                 key: Optional[Dict[str, Any]] = None,
                 free_bytes: Callable[[Path], int] = disk_free) -> Tuple[CacheEntry, bool]:
    """The cache entry for this encoder, data and pooling; extract every split (of ``splits``) if it is missing.

    Returns ``(entry, hit)``; ``entry.meta["extract_s"]`` is the extraction time
    of the run that built it. A damaged entry is rebuilt, or with ``rebuild=False``
    is a :class:`~.cache.CacheError` (see :func:`~.cache.get_or_build`).
    ``fingerprints`` keeps the encoder folder's hash for the next call (see :mod:`bert_ner_probe.memo`);
    ``key`` is :func:`cache_key` of these same arguments when the caller has built it already.
    ``free_bytes(folder)``: the bytes free there, checked against the entry's size before a build
    (a :class:`~.cache.CacheSpaceError` when they are fewer).
    """
    typed = CacheKey.of(key if key is not None else cache_key(encoder_cfg, pooling, corpus, device, fingerprints))
    causal = bool(typed.causal)
    if key is not None and (typed.pooling, typed.context) != (
            Pooling.for_encoder(pooling, causal).value,
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
    config = enc.load_config(encoder_cfg.name_or_path)[1]
    depth = int(config.num_hidden_layers)
    states = held_states(key, depth)
    width = pooled_width(typed.pooling, int(config.hidden_size))
    words = {split: corpus[split].num_words for split in splits}
    size = entry_bytes(words, {split: len(corpus[split].sentences) for split in splits}, len(states), width)

    def build(folder: Path) -> Dict[str, Any]:
        files: Dict[str, Dict[int, RowFile]] = {split: {} for split in splits}
        try:
            # Every file at its full size first: a disk too small or a file-size limit fails before the encoder runs.
            for split in splits:
                for h in states:
                    files[split][h] = RowFile(folder / state_file(split, h), (words[split], width))
            t0 = time.perf_counter()
            loaded = enc.load_encoder(encoder_cfg.name_or_path, device, typed.dtype, encoder_cfg.max_length,
                                      weights, weights_seed, causal=causal,
                                      device_map=getattr(encoder_cfg, "device_map", None))
            load_s = time.perf_counter() - t0
            if (loaded.num_layers, pooled_width(typed.pooling, loaded.hidden_size)) != (depth, width):
                raise RuntimeError(f"encoder {encoder_cfg.name_or_path}: loaded {loaded.num_layers} layers of "
                                   f"{loaded.hidden_size}, its config says {depth} of {config.hidden_size}")
            stats = {}
            for split in splits:
                sp = corpus[split]
                stats[split] = extract_split(
                    loaded, [s.words for s in sp.sentences], [s.doc for s in sp.sentences], files[split],
                    typed.pooling, encoder_cfg.context, batch_size=encoder_cfg.batch_size,
                    max_tokens=encoder_cfg.max_tokens, max_pieces_per_word=encoder_cfg.max_pieces_per_word,
                    desc=f"extract {split}", progress=progress)
                for f in files[split].values():
                    f.close()  # on disk before the entry is complete: jobs on other nodes may read it next
                lengths = [len(s.words) for s in sp.sentences]
                np.save(folder / offsets_file(split), np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))
        finally:
            for per_split in files.values():
                for f in per_split.values():
                    f.close(sync=False)
        return {
            "data_sources": {split: corpus[split].source for split in SPLITS},  # for bert-ner-probe-cache list
            "num_layers": loaded.num_layers,
            "hidden_states": states,
            "hidden_size": loaded.hidden_size,
            "width": width,
            "causal": loaded.causal,
            "max_length": loaded.max_length,
            "extract": stats,
            "encoder_passes": sum(s["encoder_passes"] for s in stats.values()),
            "load_s": load_s,  # loading the encoder
            "extract_s": time.perf_counter() - t0,
        }

    entry, hit = get_or_build(cache_dir or default_root(), key, build, rebuild=rebuild, size=size,
                              free_bytes=free_bytes)
    if not hit:
        release_host_memory()  # the encoder's and extraction's freed buffers, before training allocates
    return entry, hit
