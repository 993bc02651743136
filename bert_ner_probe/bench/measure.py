"""Extraction and training timings: the harness against the bare loops of :mod:`~bert_ner_probe.bench.bare`.

* :func:`bench_extraction` — words/s of :func:`~bert_ner_probe.features.extract.extract_split`
  (``context=sentence``, ``pooling=first``, into an in-memory array, end to
  end: tokenisation, windows, batching, forward, pooling, writing) against
  :func:`~bert_ner_probe.bench.bare.bare_forward` over the same plan, in the same dtype.
  ``extract_ratio`` = harness ÷ bare.
* :func:`bench_training` — words/s of one epoch of the harness's trainer (its
  own ``history[*]["train_words_per_s"]``: the epoch loop, not the dev
  evaluation), tagger and trainer built from the composed config exactly as a
  run builds them, against the bare epoch over the same features in the same
  batches, at the same autocast precision; the faster bare form is the bare
  figure. ``train_ratio`` = harness ÷ bare.

Harness and bare timings alternate; each side is warmed up once and the best
of ``repeats`` is kept, since the machine may be shared and noisy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Sequence

import numpy as np
import torch
from omegaconf import DictConfig

from bert_ner_probe.bench.bare import (BareShape, bare_batches, bare_epoch_times, bare_forward, bare_inputs, timed,
                                       warm_up_epochs, warm_up_forward)
from bert_ner_probe.data.conll import Corpus
from bert_ner_probe.device import training_precision
from bert_ner_probe.features.encoder import LoadedEncoder
from bert_ner_probe.features.extract import extract_split
from bert_ner_probe.features.store import get_features
from bert_ner_probe.run import corpus_of
from bert_ner_probe.strategy.combiner import CachedSelection, resolve_layers, select_features
from bert_ner_probe.tagger.bilstm_tagger import BiLSTMTagger
from bert_ner_probe.training.train import TaggingData, train


# --------------------------------------------------------------------------- extraction


def bench_extraction(loaded: LoadedEncoder, sentences: List[List[str]], batch_size: int,
                     max_tokens: int, max_pieces_per_word: int, repeats: int) -> Dict[str, Any]:
    """Harness extraction vs a bare forward loop over the same sentences, in words/s.

    The harness side is :func:`extract_split` (context=sentence,
    pooling=first) into a preallocated float16 numpy array, timed end to end.
    The bare side gets its token ids, padding, batches and device copies for
    free and times ``model(...)`` alone.
    """
    device = loaded.device
    n_words = sum(len(s) for s in sentences)
    out = np.empty((n_words, loaded.num_layers + 1, loaded.hidden_size), dtype=np.float16)

    def harness(sents: List[List[str]], rows: np.ndarray) -> Dict[str, Any]:
        return extract_split(loaded, sents, list(range(len(sents))), rows, "first", "sentence",
                             batch_size=batch_size, max_tokens=max_tokens,
                             max_pieces_per_word=max_pieces_per_word, progress=False)

    # Bare: the harness's own plan (same windows and batches), padded and copied to the device in advance.
    batches = bare_inputs(loaded, sentences, list(range(len(sentences))), "sentence", batch_size, max_tokens,
                          max_pieces_per_word)

    # Warm up once each, on short and long inputs alike.
    step = max(1, len(sentences) // (2 * batch_size))
    warm = sentences[::step]
    timed(lambda: harness(warm, np.empty((sum(map(len, warm)),) + out.shape[1:], np.float16)), device)
    warm_up_forward(loaded, batches)

    harness_s: List[float] = []
    bare_s: List[float] = []
    stats: Dict[str, Any] = {}
    for _ in range(repeats):
        seconds, stats = timed(lambda: harness(sentences, out), device)
        harness_s.append(seconds)
        bare_s.append(timed(lambda: bare_forward(loaded, batches), device)[0])
    harness_wps = n_words / min(harness_s)
    bare_wps = n_words / min(bare_s)
    return {
        "extract_sentences": len(sentences),
        "extract_words": n_words,
        "extract_harness_s": harness_s,
        "extract_bare_s": bare_s,
        "extract_harness_words_per_s": harness_wps,
        "extract_bare_words_per_s": bare_wps,
        "extract_ratio": harness_wps / bare_wps,
        "extract_harness_passes": int(stats["encoder_passes"]),
        "extract_bare_passes": len(batches),
        "extract_harness_pieces": int(stats["pieces"]),
        "extract_bare_pieces": int(sum(int(mask.sum()) for _, mask in batches)),
    }


# --------------------------------------------------------------------------- training


def tag_ids(corpus: Corpus, split: str = "train") -> List[int]:
    """The label index of every word of ``split``, in order."""
    index = {t: i for i, t in enumerate(corpus.labels)}
    return [index[t] for s in corpus[split].sentences for t in s.tags]


@dataclass
class TrainingFeatures:
    """The training part's inputs, as a run builds them from the cache."""

    x: torch.Tensor  # Shape: (words, width') or (words, K, width): the split combined at once (bare loops)
    source: torch.Tensor | CachedSelection  # what the harness trains on (on the CPU: read batch by batch)
    offsets: np.ndarray  # Shape: (sentences + 1,)
    tags: List[int]
    num_labels: int
    num_layers: int  # the encoder's depth
    width: int  # one layer's vector of a word
    cache_hit: bool


def training_features(cfg: DictConfig, device: torch.device) -> TrainingFeatures:
    """The train split's features of ``cfg.strategy``, through the harness's corpus and feature cache.

    The cache entry is a hit when the sweep ran first (the key is the same).
    """
    corpus = corpus_of(cfg)
    entry, hit = get_features(cfg.encoder, cfg.pooling.method, corpus, str(device), cfg.cache_dir, progress=False)
    feats = entry.split("train")
    num_layers = int(entry.meta["num_layers"])
    layers = resolve_layers(None if cfg.strategy.layers is None else list(cfg.strategy.layers), num_layers)
    x = select_features(feats.features, layers, cfg.strategy.combine)
    # what the harness trains on: on the CPU each batch read from the cache (as run.tagging_data does)
    source = CachedSelection(feats.features, layers, cfg.strategy.combine) if device.type == "cpu" else x
    return TrainingFeatures(x, source, np.asarray(feats.offsets), tag_ids(corpus), len(corpus.labels), num_layers,
                            int(entry.meta["width"]), hit)


def _harness_trainer(cfg: DictConfig, feats: TrainingFeatures, device: torch.device):
    """The tagger factory, the fit function and the precision of the harness side.

    TODO(from_config): replace with Combiner/BiLSTMTagger/ProbeTrainer.from_config once on main.
    """
    precision = str(training_precision(cfg.trainer.precision, device))
    layers = resolve_layers(None if cfg.strategy.layers is None else list(cfg.strategy.layers), feats.num_layers)
    mix = len(layers) if cfg.strategy.combine == "scalar_mix" else None
    width = int(feats.x.shape[-1])

    def model() -> BiLSTMTagger:
        return BiLSTMTagger(width, feats.num_labels, hidden_size=cfg.tagger.hidden_size,
                            num_layers=cfg.tagger.num_layers, dropout=cfg.tagger.dropout,
                            input_dropout=cfg.tagger.input_dropout, crf=cfg.tagger.crf, mix_layers=mix,
                            impl=cfg.tagger.impl)

    def fit(m, train_data, dev):
        return train(m, train_data, dev, dev_f1=lambda _pred: 0.0, device=device, epochs=cfg.trainer.epochs,
                     batch_size=cfg.trainer.batch_size, lr=cfg.trainer.lr, patience=cfg.trainer.patience,
                     seed=cfg.seed, grad_clip=cfg.trainer.grad_clip, eval_batch_size=cfg.trainer.eval_batch_size,
                     eval_max_words=cfg.trainer.eval_max_words, progress=False,
                     bucket_pool=cfg.trainer.bucket_pool, precision=precision)

    return model, fit, precision, BareShape(width, cfg.tagger.hidden_size, feats.num_labels, mix, cfg.trainer.lr)


def _first(feats: TrainingFeatures, n: int, device: torch.device) -> TaggingData:
    """The first ``n`` training sentences (the harness's dev set and warm-up set)."""
    n = min(n, len(feats.offsets) - 1)
    end = int(feats.offsets[n])
    return TaggingData.build(feats.x[:end], feats.offsets[: n + 1], feats.tags[:end], device)


def bench_training(feats: TrainingFeatures, cfg: DictConfig, device: torch.device, repeats: int) -> Dict[str, Any]:
    """Harness tagger epochs vs bare-loop epochs on the same features and batches, in words/s.

    ``cfg`` is the composed harness config of the training part (its
    ``trainer.epochs`` epochs per timing; a patience of at least as many).
    The harness number is the trainer's own ``train_words_per_s`` (the epoch
    loop; dev evaluation runs outside it, here on 64 training sentences). The
    harness trains on ``feats.source``, the bare loops on ``feats.x`` padded in advance.
    """
    new_model, fit, precision, shape = _harness_trainer(cfg, feats, device)
    data = TaggingData.build(feats.x, feats.offsets, feats.tags, device)
    harness_data = TaggingData.build(feats.source, feats.offsets, feats.tags, device)
    dev = _first(feats, 64, device)

    def harness(train_data: TaggingData) -> List[Dict[str, float]]:
        torch.manual_seed(cfg.seed)
        return fit(new_model().to(device), train_data, dev).history

    prepared, words = bare_batches(data, cfg.trainer.batch_size, cfg.seed, device, cfg.trainer.bucket_pool)
    harness(_first(feats, 4 * cfg.trainer.batch_size, device))
    warm_up_epochs(shape, prepared, precision, device, cfg.seed)
    harness_epochs: List[Dict[str, float]] = []
    bare_s: Dict[str, List[float]] = {"packed": [], "padded": []}
    for _ in range(repeats):
        harness_epochs.extend(harness(harness_data))
        for form in bare_s:
            bare_s[form].extend(bare_epoch_times(shape, prepared, int(cfg.trainer.epochs), form == "packed",
                                                 precision, device, cfg.seed))
    harness_wps = max(h["train_words_per_s"] for h in harness_epochs)
    bare_form_wps = {form: words / min(times) for form, times in bare_s.items()}
    bare_wps = max(bare_form_wps.values())
    return {
        "train_sentences": data.num_sentences,
        "train_words": words,
        "train_width": shape.width,
        "train_mix_layers": shape.mix_layers,  # layers the tagger mixes (scalar_mix strategies), else None
        "train_batches": len(prepared),
        "train_precision": precision,
        "train_harness_epoch_s": [h["epoch_s"] for h in harness_epochs],
        "train_bare_packed_epoch_s": bare_s["packed"],
        "train_bare_padded_epoch_s": bare_s["padded"],
        "train_harness_words_per_s": harness_wps,
        "train_bare_packed_words_per_s": bare_form_wps["packed"],
        "train_bare_padded_words_per_s": bare_form_wps["padded"],
        "train_bare_words_per_s": bare_wps,
        "train_ratio": harness_wps / bare_wps,
    }
