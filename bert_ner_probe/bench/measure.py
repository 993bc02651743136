"""Extraction and training timings: the harness against the bare loops of :mod:`~bert_ner_probe.bench.bare`.

* :func:`bench_extraction` — words/s of :func:`~bert_ner_probe.features.extract.extract_split`
  (``context=sentence``, ``pooling=first``, into an in-memory array, end to
  end: tokenisation, windows, batching, forward, pooling, writing) against
  :func:`~bert_ner_probe.bench.bare.bare_forward` over the same plan, in the same dtype.
  ``extract_ratio`` = harness ÷ bare.
* :func:`bench_training` — words/s of one epoch of the harness's trainer (its
  own ``history[*]["train_words_per_s"]``: the epoch loop, not the dev
  evaluation), probe and trainer built from the composed config exactly as a
  run builds them, against the bare epoch over the same features in the same
  batches, at the same autocast precision; the faster bare form is the bare
  figure. ``train_ratio`` = harness ÷ bare.
* :func:`bench_finetuning` — encoder positions (tokens) trained per second
  in one fine-tuning epoch of the harness's trainer (``strategy=finetune`` as
  the main command configures it: its windows, stride, attention and
  precision) against :func:`~bert_ner_probe.bench.bare.bare_finetune_epoch`
  over the same windows in the same batches, in sentence and in document
  context. ``finetune_<context>_ratio`` = harness ÷ bare;
  ``finetune_document_vs_sentence`` = the harness's document-context tokens/s
  ÷ its sentence-context tokens/s.

Harness and bare timings alternate; each side is warmed up once and the best
of ``repeats`` is kept, since the machine may be shared and noisy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from bert_ner_probe.bench.bare import (BareSpec, bare_batches, bare_epoch_times, bare_finetune_batches,
                                       bare_finetune_epoch, bare_forward, bare_inputs, timed, warm_up_epochs,
                                       warm_up_forward)
from bert_ner_probe.data.load import corpus_of
from bert_ner_probe.device import keep_gradients_on_heap
from bert_ner_probe.features.encoder import LoadedEncoder, attention_of
from bert_ner_probe.features.extract import extract_split
from bert_ner_probe.features.pooling import Pooling
from bert_ner_probe.features.row_file import RowFile
from bert_ner_probe.features.store import get_features
from bert_ner_probe.strategy.combiner import Combiner
from bert_ner_probe.strategy.read import select_features
from bert_ner_probe.probes.base import ProbeInputs
from bert_ner_probe.probes.registry import build
from bert_ner_probe.run import trainable_encoder
from bert_ner_probe.training.tagging_data import FeatureReuse, TaggingData
from bert_ner_probe.training.trainer import DevScore, Trainer
from bert_ner_probe.training.window_data import WindowData


# --------------------------------------------------------------------------- extraction


def bench_extraction(loaded: LoadedEncoder, sentences: List[List[str]], batch_size: int,
                     max_tokens: int, max_pieces_per_word: int, repeats: int, folder: Path) -> Dict[str, Any]:
    """Harness extraction vs a bare forward loop over the same sentences, in words/s.

    The harness side is :func:`extract_split` (context=sentence,
    pooling=first) into the cache's files (one
    :class:`~bert_ner_probe.features.row_file.RowFile` per hidden state in
    ``folder``, created before each timing), timed end to end. The bare side
    gets its token ids, padding, batches and device copies for free and times
    ``model(..., output_hidden_states=True)`` alone.
    """
    device = loaded.device
    n_words = sum(len(s) for s in sentences)
    folder.mkdir(parents=True, exist_ok=True)

    def harness(sents: List[List[str]]) -> Dict[str, Any]:
        words = sum(map(len, sents))
        out = {h: RowFile(folder / f"bench.h{h:02d}.npy", (words, loaded.hidden_size))
               for h in range(loaded.num_layers + 1)}
        try:
            return extract_split(loaded, sents, list(range(len(sents))), out, "first", "sentence",
                                 batch_size=batch_size, max_tokens=max_tokens,
                                 max_pieces_per_word=max_pieces_per_word, progress=False)
        finally:
            for f in out.values():
                f.close(sync=False)

    # Bare: the harness's own plan (same windows and batches), padded and copied to the device in advance.
    batches = bare_inputs(loaded, sentences, list(range(len(sentences))), "sentence", batch_size, max_tokens,
                          max_pieces_per_word)

    # Warm up once each, on short and long inputs alike.
    step = max(1, len(sentences) // (2 * batch_size))
    timed(lambda: harness(sentences[::step]), device)
    warm_up_forward(loaded, batches)

    harness_s: List[float] = []
    bare_s: List[float] = []
    stats: Dict[str, Any] = {}
    for _ in range(repeats):
        seconds, stats = timed(lambda: harness(sentences), device)
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
        "extract_hooked": bool(stats["hooked"]),
    }


# --------------------------------------------------------------------------- training


@dataclass
class TrainingFeatures:
    """The training part's inputs: the harness's as a run builds them, and the same split combined at once."""

    harness: Dict[str, TaggingData]  # per split, as a run gets them (on the CPU, read from the cache batch by batch)
    x: torch.Tensor  # Shape: (words,) + combiner.row_shape: the train split combined at once (bare loops)
    combiner: Combiner
    num_labels: int
    cache_hit: bool


def training_features(cfg: DictConfig, device: torch.device) -> TrainingFeatures:
    """``cfg.strategy``'s features through the harness's corpus, feature cache and tagging data.

    The cache entry is a hit when the sweep ran first (the key is the same).
    """
    corpus = corpus_of(cfg)
    entry, hit = get_features(cfg.encoder, cfg.pooling.method, corpus, str(device), cfg.cache_dir, progress=False)
    combiner = Combiner.from_config(cfg.strategy, int(entry.meta["num_layers"]), int(entry.meta["width"]))
    wanted = FeatureReuse.wanted(entry.key.as_dict(), cfg.cache_dir, combiner.layers, combiner.combine, device)
    harness, _ = FeatureReuse().tagging_data(entry, corpus, combiner, device, wanted)
    train = entry.split("train")
    x = select_features([train.state(h) for h in combiner.layers], combiner)
    return TrainingFeatures(harness, x, combiner, len(corpus.labels), hit)


def _first(data: TaggingData, x: torch.Tensor, n: int, device: torch.device) -> TaggingData:
    """The first ``n`` sentences of ``data``, features from ``x`` (the warm-up set)."""
    n = min(n, data.num_sentences)
    end = int(data.offsets[n])
    return TaggingData.build(x[:end], data.offsets[: n + 1], data.tags[:end].cpu(), device)


#: The harness's dev score: none (its figure is the epoch loop alone, so no dev pass is made).
NO_DEV_PASS = DevScore("none", of_model=lambda _model: 0.0)


def _fit(trainer: Trainer, model, train, dev, device: torch.device, epochs=None):
    """``trainer.fit`` as the command runs it: on a CPU the gradients stay on glibc's heap (this is a command's
    own process, as a run's under ``bert-ner-probe``)."""
    if device.type == "cpu":
        keep_gradients_on_heap(model)
    return trainer.fit(model, train, dev, NO_DEV_PASS, device, epochs)


def bench_training(feats: TrainingFeatures, cfg: DictConfig, device: torch.device, repeats: int) -> Dict[str, Any]:
    """Harness probe epochs vs bare-loop epochs on the same features and batches, in words/s.

    ``cfg`` is the composed harness config of the training part (its
    ``trainer.epochs`` epochs per timing; a patience of at least as many).
    The probe and trainer are built from it by
    :func:`bert_ner_probe.probes.registry.build` and :meth:`Trainer.from_config`, as
    a run builds them; the harness number is the trainer's own
    ``train_words_per_s`` (the epoch loop; dev evaluation runs outside it).
    The harness trains on the run's tagging data, the bare loops on
    ``feats.x`` padded in advance.
    """
    trainer = Trainer.from_config(cfg)
    precision = str(trainer.precision_on(device))
    train_data = feats.harness["train"]
    data = TaggingData.build(feats.x, train_data.offsets, train_data.tags.cpu(), device)

    def harness(on: TaggingData) -> List[Dict[str, float]]:
        torch.manual_seed(cfg.seed)
        model = build(cfg.probe, ProbeInputs(feats.num_labels, feats.combiner.output_width,
                                             feats.combiner.mix_layers)).to(device)
        # no dev pass: the harness figure is the epoch loop alone
        return _fit(trainer, model, on, feats.harness["dev"], device).history

    shape = BareSpec(feats.combiner.output_width, cfg.probe.hidden_size, feats.num_labels,
                      feats.combiner.mix_layers, trainer.config.lr)
    settings = trainer.config
    prepared, words = bare_batches(data, settings.batch_size, trainer.seed, device, settings.bucket_pool)
    harness(_first(train_data, feats.x, 4 * trainer.config.batch_size, device))
    warm_up_epochs(shape, prepared, precision, device, trainer.seed)
    harness_epochs: List[Dict[str, float]] = []
    bare_s: Dict[str, List[float]] = {"packed": [], "padded": []}
    for _ in range(repeats):
        harness_epochs.extend(harness(train_data))
        for form in bare_s:
            bare_s[form].extend(bare_epoch_times(shape, prepared, trainer.config.epochs, form == "packed", precision,
                                                 device, trainer.seed))
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


# --------------------------------------------------------------------------- fine-tuning


def bench_finetuning(cfg: DictConfig, device: torch.device, repeats: int) -> Dict[str, Any]:
    """Harness fine-tuning epochs vs bare fine-tuning epochs on the same windows and batches, in tokens/s.

    ``cfg`` is a composed ``strategy=finetune`` config (its data limits, ``finetune.*`` windows and
    attention, ``trainer.*`` batches and precision). Both sides start each timing from the same
    pretrained weights and run the same encoder module (with the dropout the fine-tuned model gives it);
    each side is warmed up on the epoch's first batches.
    """
    corpus = corpus_of(cfg)
    loaded = trainable_encoder(cfg)  # as a run loads it
    initial = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    trainer = Trainer.from_config(cfg).with_settings(epochs=1, patience=1)
    precision = str(trainer.precision_on(device, fine_tunes_encoder=True))
    num_labels = len(corpus.labels)

    def harness(data: WindowData, batches: List[np.ndarray]) -> float:
        loaded.model.load_state_dict(initial)
        torch.manual_seed(cfg.seed)
        model = build(cfg.probe, ProbeInputs(num_labels, encoder=loaded.model, pooling=Pooling.for_encoder(cfg.pooling.method, loaded.causal))
                      ).to(device)
        return _fit(trainer, model, data, data, device, [batches]).history[0]["epoch_s"]

    def bare(prepared: list) -> float:
        loaded.model.load_state_dict(initial)
        torch.manual_seed(cfg.seed)
        encoder = loaded.model.requires_grad_(True)
        head = torch.nn.Linear(loaded.hidden_size, num_labels).to(device)
        optim = torch.optim.AdamW(list(encoder.parameters()) + list(head.parameters()), lr=trainer.config.lr,
                                  fused=device.type in ("cpu", "cuda"))
        return timed(lambda: bare_finetune_epoch(encoder, head, optim, prepared, precision, device), device)[0]

    out: Dict[str, Any] = {"finetune_sentences": len(corpus["train"].sentences),
                           "finetune_precision": precision, "finetune_max_length": loaded.max_length,
                           "finetune_stride": cfg.finetune.stride}
    for context in ("sentence", "document"):
        data = WindowData.from_config(OmegaConf.merge(cfg, {"encoder": {"context": context}}), loaded, corpus,
                                      "train")
        (batches,) = trainer.plan(data)
        prepared = bare_finetune_batches(data, batches, device)
        harness(data, batches[:4])  # warm-up
        bare(prepared[:4])
        harness_s: List[float] = []
        bare_s: List[float] = []
        for _ in range(repeats):
            harness_s.append(harness(data, batches))
            bare_s.append(bare(prepared))
        padded = sum(int(b[0].numel()) for b in prepared)
        key = f"finetune_{context}"
        out.update({
            f"{key}_windows": len(data.plan.windows), f"{key}_batches": len(batches),
            f"{key}_tokens": data.tokens, f"{key}_padded_tokens": padded, f"{key}_words": data.num_words,
            f"{key}_harness_s": harness_s, f"{key}_bare_s": bare_s,
            f"{key}_harness_tokens_per_s": data.tokens / min(harness_s),
            f"{key}_bare_tokens_per_s": data.tokens / min(bare_s),
            f"{key}_harness_words_per_s": data.num_words / min(harness_s),
            f"{key}_ratio": min(bare_s) / min(harness_s),
        })
    out["finetune_attention"] = attention_of(loaded.model)  # as the fine-tuned model set it (both sides ran it)
    out["finetune_document_vs_sentence"] = (out["finetune_document_harness_tokens_per_s"]
                                            / out["finetune_sentence_harness_tokens_per_s"])
    return out
