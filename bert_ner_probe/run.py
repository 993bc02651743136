"""One run: data → inputs (cached features, or encoder windows) → model → trainer → metrics → results.json.

:func:`run_probe` takes a composed config and an output folder, writes
``results.json`` and ``predictions/{dev,test}.conll`` there and returns the
:class:`~bert_ner_probe.results.run_result.RunResult`. Every run takes the
same path: the model named by ``probe.name`` (:mod:`bert_ner_probe.probes.registry`)
is fitted by the one :class:`~bert_ner_probe.training.trainer.Trainer` on
the split's batch source; a probe reads the feature cache through the
strategy's :class:`~bert_ner_probe.strategy.combiner.Combiner`, the
fine-tuned encoder (``strategy=finetune``, which picks ``probe=finetune``)
reads encoder windows and never touches the cache. Each step is built from
the config by its own package; this module only wires them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Type

import numpy as np
import torch
from omegaconf import DictConfig

from bert_ner_probe.config import check_values, encoder_name
from bert_ner_probe.data.control import Control, control_corpus
from bert_ner_probe.data.corpus import Corpus
from bert_ner_probe.data.load import corpus_of
from bert_ner_probe.device import keep_gradients_on_heap, peak_rss, release_host_memory, reset_peak_rss, resolve_device
from bert_ner_probe.errors import UserError
from bert_ner_probe.features.cache import CacheDamaged, remove_entry
from bert_ner_probe.features.encoder import (LoadedEncoder, attention_of, check_device_map, load_encoder,
                                             load_tokenizer, lowercases, num_layers)
from bert_ner_probe.features.pooling import Pooling
from bert_ner_probe.features.store import cache_key, check_held, get_features
from bert_ner_probe.memo import Session
from bert_ner_probe.metrics.accuracy import token_accuracy
from bert_ner_probe.metrics.description_length import block_bounds, online_code_length, online_plan
from bert_ner_probe.metrics.score import GoldEntities, score_and_write
from bert_ner_probe.probes.base import Model, ProbeInputs
from bert_ner_probe.probes.registry import build, model_class
from bert_ner_probe.results.record import results_record, write_results
from bert_ner_probe.results.run_result import RunResult
from bert_ner_probe.strategy import FINETUNE
from bert_ner_probe.strategy.combiner import Combiner, resolve_layers
from bert_ner_probe.training.concurrency import worker_threads, workers
from bert_ner_probe.training.tagging_data import FeatureReuse, for_layout
from bert_ner_probe.training.online_code import OnlineCodeConfig, fits_record, online_bits
from bert_ner_probe.training.trainer import BatchSource, DevScore, Trainer, TrainResult, sentences_of
from bert_ner_probe.training.window_data import WindowData

log = logging.getLogger(__name__)

MODEL_DIR = "model"  # finetune.save=true: the fine-tuned encoder (Hugging Face folder) and its head


@dataclass
class RunInputs:
    """What a run trains on and what its record says about where that came from."""

    corpus: Corpus
    data: Dict[str, BatchSource]
    model: Model
    depth: int
    record: Dict[str, Any]  # results_record's fields that differ between probes and fine-tuning
    timings: Dict[str, float] = field(default_factory=dict)
    combiner: Optional[Combiner] = None
    probe_inputs: Optional[ProbeInputs] = None  # what the model was built over (the online code builds more)
    loaded: Any = None  # the fine-tuned run's LoadedEncoder (its tokenizer is saved with the model)


def run_probe(cfg: DictConfig, out_dir: Path, session: Optional[Session] = None) -> RunResult:
    """Run one configuration end to end; return its result (also written to ``results.json``).

    ``session`` is what this run shares with the runs before and after it in
    this process: parsed data files, encoder hashes and the last combined
    features (:mod:`bert_ner_probe.memo`); None = a fresh one, nothing shared.
    """
    out_dir = Path(out_dir)
    session = session if session is not None else Session()
    release_host_memory()  # the previous job's freed memory, back to the system before this one grows
    own_peak = reset_peak_rss()  # this job's peak RSS, not the process's (the jobs of a sweep share one)
    t_start = time.perf_counter()
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    elif workers() > 1:  # one of several jobs at once (trainer.concurrent): a share of the cores each
        torch.set_num_threads(worker_threads())
    check_values(cfg)
    model_type = model_class(cfg.probe.name)
    check_probe(cfg, model_type)
    device = resolve_device(cfg.device)
    check_device_map(cfg.encoder.get("device_map"), device, cfg.encoder.get("weights", "pretrained"))
    trainer = Trainer.from_config(cfg)
    precision = trainer.precision_on(device, model_type.fine_tunes_encoder)  # before any work: refused formats
    try:
        inputs = (encoder_inputs if model_type.fine_tunes_encoder else feature_inputs)(cfg, device, session)
        if session.tune_malloc and device.type == "cpu":  # the command's own process: gradients stay on the heap
            keep_gradients_on_heap(inputs.model)
        return train_and_record(cfg, out_dir, inputs, trainer, device, str(precision), t_start, own_peak)
    finally:
        if model_type.fine_tunes_encoder and torch.cuda.is_available():
            torch.cuda.empty_cache()  # the next job's free-memory checks see the room


def check_probe(cfg: DictConfig, model_type: Type[Model]) -> None:
    """``strategy=finetune`` and a model that trains the encoder go together; one UserError otherwise."""
    finetune = cfg.strategy.name == FINETUNE
    if model_type.fine_tunes_encoder and not finetune:
        raise UserError(f"probe={cfg.probe.name} trains the encoder itself, so it has no layer strategy: "
                        f"use strategy=finetune (not strategy={cfg.strategy.name})")
    if finetune and not model_type.fine_tunes_encoder:
        raise UserError(f"strategy=finetune trains the encoder, but probe={cfg.probe.name} reads frozen features: "
                        "drop the probe override (strategy=finetune picks probe=finetune)")
    if model_type.fine_tunes_encoder and (cfg.control != Control.none or cfg.mdl):
        raise UserError("control=word_type and mdl=true measure a probe over frozen features; strategy=finetune "
                        "trains the encoder itself")
    if finetune and cfg.trainer.name != "finetune":
        log.warning("strategy=finetune with trainer=%s (lr %g): the fine-tuning recipe is trainer=finetune",
                    cfg.trainer.name, cfg.trainer.lr)


def feature_inputs(cfg: DictConfig, device: torch.device, session: Session) -> RunInputs:
    """A probe over cached features: the corpus, the strategy's combined features per split, the probe."""
    reuse = session.features
    depth = num_layers(cfg.encoder.name_or_path)
    layers = resolve_layers(None if cfg.strategy.layers is None else list(cfg.strategy.layers), depth)
    corpus = corpus_of(cfg, session.files)
    if cfg.control == Control.word_type:  # each word type's one random tag; features are the real task's
        corpus = control_corpus(corpus, int(cfg.seed), lowercases(load_tokenizer(cfg.encoder.name_or_path)))
    if cfg.mdl:
        block_bounds(len(corpus["train"].sentences))  # too little data for the online code: one error, before any work

    key = cache_key(cfg.encoder, cfg.pooling.method, corpus, cfg.device, session.fingerprints)
    check_held(key, depth, layers, f"strategy={cfg.strategy.name}")  # encoder.layers kept them? before any work
    wanted = FeatureReuse.wanted(key, cfg.cache_dir, layers, cfg.strategy.combine, device)
    reuse.forget(unless=wanted)  # before a possible extraction, which needs the memory

    def features() -> tuple:
        entry, hit = get_features(cfg.encoder, cfg.pooling.method, corpus, cfg.device, cfg.cache_dir, cfg.progress,
                                  rebuild=cfg.cache.rebuild, key=key)
        if int(entry.meta["num_layers"]) != depth:
            raise RuntimeError(f"cache entry {entry.path} has {entry.meta['num_layers']} layers, the encoder {depth}")
        combiner = Combiner.from_config(cfg.strategy, depth, int(entry.meta["width"]))
        t_select = time.perf_counter()
        data, reused = reuse.tagging_data(entry, corpus, combiner, device, wanted)
        return entry, hit, combiner, data, reused, time.perf_counter() - t_select

    try:
        entry, hit, combiner, data, reused, select_s = features()
    except CacheDamaged as e:  # found by a whole-file check, after the sampled checks at open passed
        if not cfg.cache.rebuild:
            raise
        log.warning("cache entry %s is damaged (%s): rebuilding it", e.path, e.why)
        remove_entry(e.path.parent, e.path.name)
        entry, hit, combiner, data, reused, select_s = features()

    torch.manual_seed(cfg.seed)
    probe_inputs = ProbeInputs(len(corpus.labels), combiner.output_width, combiner.mix_layers,
                               pooling=entry.key.pooling)
    model = build(cfg.probe, probe_inputs).to(device)
    t_hold = time.perf_counter()  # word batches: splits small enough are read once and held (tagging_data.for_layout)
    hold = int(cfg.trainer.hold_words_mb) * 2**20
    data = {split: for_layout(d, model.layout(device), cfg.trainer.words_per_batch, hold) for split, d in data.items()}
    select_s += time.perf_counter() - t_hold
    record = {"layers": list(combiner.layers), "combine": combiner.combine, "pooling": entry.key.pooling,
              "causal": bool(entry.key.causal),
              "encoder_dtype": entry.key.dtype, "cache_hit": hit, "cache_entry": str(entry.path),
              "encoder_passes": 0 if hit else int(entry.meta["encoder_passes"]),
              "features_reused": reused}  # combined features kept from the previous job of this process
    timings = {"extract_s": 0.0 if hit else float(entry.meta["extract_s"]),
               "select_s": select_s}  # reading and combining the strategy's layers (and the copy to the device)
    return RunInputs(corpus, dict(data), model, depth, record, timings, combiner=combiner, probe_inputs=probe_inputs)


def trainable_encoder(cfg: DictConfig) -> LoadedEncoder:
    """The encoder ``strategy=finetune`` trains: float32 weights (training runs under autocast), windows of
    ``finetune.max_length`` (null: ``encoder.max_length``), ``finetune.attention``; causal as ``encoder.causal``
    says (null: from its config)."""
    ft = cfg.finetune
    return load_encoder(cfg.encoder.name_or_path, cfg.device, "float32",
                        cfg.encoder.max_length if ft.max_length is None else ft.max_length, attention=ft.attention,
                        causal=cfg.encoder.get("causal"))


def encoder_inputs(cfg: DictConfig, device: torch.device, session: Session) -> RunInputs:
    """The encoder itself trained (``strategy=finetune``): the corpus, each split's windows, the encoder and head.

    A previous frozen job's kept features are dropped first (the encoder needs the memory).
    """
    if cfg.encoder.dtype not in ("auto", "float32"):
        log.info("strategy=finetune loads the encoder in float32 and trains under autocast; "
                 "encoder.dtype=%s applies to frozen features only", cfg.encoder.dtype)
    session.features.forget()
    corpus = corpus_of(cfg, session.files)
    t_load = time.perf_counter()
    loaded = trainable_encoder(cfg)
    load_s = time.perf_counter() - t_load

    t_plan = time.perf_counter()
    data = {split: WindowData.from_config(cfg, loaded, corpus, split) for split in ("train", "dev", "test")}
    plan_s = time.perf_counter() - t_plan

    pooling = Pooling.for_encoder(cfg.pooling.method, loaded.causal)
    torch.manual_seed(cfg.seed)
    model = build(cfg.probe, ProbeInputs(len(corpus.labels), encoder=loaded.model, pooling=pooling)).to(device)
    train = data["train"]
    record = {"layers": None, "combine": None, "pooling": pooling, "causal": loaded.causal,
              "encoder_dtype": "float32", "cache_hit": False, "cache_entry": None,
              "features_reused": False,
              "finetune": {"train_sentences": train.num_sentences, "train_words": train.num_words,
                           "train_windows": len(train.plan.windows), "train_tokens": train.tokens,
                           "windows_per_batch": train.windows_per_batch(cfg.trainer.batch_size),
                           "max_length": loaded.max_length, "stride": cfg.finetune.stride,
                           "attention": attention_of(loaded.model), "pad_to_multiple_of": train.pad_to, "saved": None}}
    timings = {"extract_s": 0.0, "select_s": 0.0,
               "load_s": load_s,  # loading the encoder
               "plan_s": plan_s}  # tokenising and cutting windows, all splits
    return RunInputs(corpus, dict(data), model, loaded.num_layers, record, timings, loaded=loaded)


def train_and_record(cfg: DictConfig, out_dir: Path, inputs: RunInputs, trainer: Trainer, device: torch.device,
                     precision: str, t_start: float, own_peak: bool = False) -> RunResult:
    """Fit the model, tag dev and test, score and write them, and write the run's record.

    ``own_peak``: the peak RSS was reset when the job started (:func:`~bert_ner_probe.device.reset_peak_rss`),
    so the record's ``peak_rss_mb`` is this job's; else the process's.
    """
    corpus, data, model = inputs.corpus, inputs.data, inputs.model
    labels = corpus.labels
    lengths = {split: np.asarray([len(s.words) for s in corpus[split].sentences]) for split in ("dev", "test")}

    def tags_of(split: str, ids: np.ndarray) -> List[List[str]]:
        return [[labels[i] for i in sentence] for sentence in sentences_of(ids, lengths[split])]

    epochs = trainer.plan(data["train"])
    trained = trainer.fit(model, data["train"], data["dev"], dev_score(cfg, corpus, tags_of), device, epochs)

    def labels_of(split: str) -> np.ndarray:
        if split == "dev" and trained.dev_labels is not None:
            return trained.dev_labels  # the best epoch's, which the restored weights predict again
        return trainer.predict(model, data[split], device)

    t_eval = time.perf_counter()
    metrics = {split: score_and_write(cfg, corpus, split, tags_of(split, labels_of(split)), out_dir)
               for split in ("dev", "test")}
    if not model.fine_tunes_encoder:  # H_V(Y | X) of this probe: what conditional probing compares (report/conditional)
        metrics["dev"]["cross_entropy_bits"] = trainer.code_length(model, data["dev"], device) / data["dev"].num_words
    eval_s = time.perf_counter() - t_eval

    record = dict(inputs.record)
    if cfg.mdl:
        def fresh() -> Model:
            torch.manual_seed(cfg.seed)
            return build(cfg.probe, inputs.probe_inputs).to(device)

        settings = OnlineCodeConfig.from_config(cfg)
        record["mdl"] = online_code(trainer, fresh, data["train"], data["dev"], len(labels), int(cfg.seed), settings,
                                    device)
    if model.fine_tunes_encoder:
        record["encoder_passes"] = encoder_passes(trainer, data, epochs, trained)
        record["finetune"] = {**record["finetune"], "train_tokens_per_s": train_tokens_per_s(data["train"], trained)}
        if cfg.finetune.save:
            saved = model.save(out_dir / MODEL_DIR, inputs.loaded.tokenizer, labels)
            record["finetune"] = {**record["finetune"], "saved": str(saved)}
    timings = {"extract_s": inputs.timings["extract_s"], "select_s": inputs.timings["select_s"],
               "train_s": trained.train_s, "eval_s": eval_s, "total_s": time.perf_counter() - t_start,
               **{k: v for k, v in inputs.timings.items() if k not in ("extract_s", "select_s")}}
    mix = inputs.combiner.mix_record(model.mix) if inputs.combiner is not None else None
    peak_mb, scope = peak_rss(own_peak)
    result = results_record(cfg, corpus, depth=inputs.depth, strategy=cfg.strategy.name, metrics=metrics,
                            trained=trained, device=device, precision=precision, mix_weights=mix, timings=timings,
                            encoder_name=encoder_name(cfg.encoder), peak_rss_mb=peak_mb, peak_rss_scope=scope,
                            **record)
    write_results(out_dir, result)
    return result


def dev_score(cfg: DictConfig, corpus: Corpus, tags_of: Callable[[str, np.ndarray], List[List[str]]]) -> DevScore:
    """What early stopping maximises: dev entity F1, or dev token accuracy on a control task (no entities)."""
    gold = [s.tags for s in corpus["dev"].sentences]
    if cfg.control != Control.none:
        return DevScore("dev_accuracy", of_labels=lambda ids: token_accuracy(gold, tags_of("dev", ids)))
    entities = GoldEntities(gold, cfg.eval.mode)  # read once, scored every epoch
    return DevScore("dev_f1", of_labels=lambda ids: entities.f1(tags_of("dev", ids)))


def online_code(trainer: Trainer, new_model: Callable[[], Model], train: BatchSource, stop: BatchSource,
                num_labels: int, seed: int, settings: OnlineCodeConfig, device: torch.device) -> Dict[str, Any]:
    """``results.json``'s ``mdl``: the online code length of the training tags (Voita & Titov 2020), its blocks
    planned by :func:`~bert_ner_probe.metrics.description_length.online_plan`, each sent by a fresh probe trained on
    its prefix and stopped early on ``stop`` (the dev split; :func:`~bert_ner_probe.training.online_code.online_bits`)."""
    t0 = time.perf_counter()
    blocks, steps = online_plan(train.num_sentences, seed)
    fits = online_bits(trainer, new_model, train, stop, steps, settings, seed, device)
    result = online_code_length([train.sentence_words(b) for b in blocks], num_labels, [f.bits for f in fits])
    log.info("online code: %.1f kbits against %.1f kbits uniform (compression %.2f), %.0f s",
             result.online_bits / 1000, result.uniform_bits / 1000, result.compression, time.perf_counter() - t0)
    return {**result.to_dict(), **fits_record(fits, settings), "seconds": time.perf_counter() - t0}


def train_tokens_per_s(train: WindowData, trained: TrainResult) -> float:
    """Encoder positions trained per second (special tokens counted, padding not) over the epoch loops run:
    every epoch passes over every training window once."""
    seconds = sum(h["epoch_s"] for h in trained.history)
    return train.tokens * len(trained.history) / seconds if seconds > 0 else float("nan")


def encoder_passes(trainer: Trainer, data: Dict[str, BatchSource], epochs: List[List[np.ndarray]],
                   trained: TrainResult) -> int:
    """Encoder passes of a fine-tuning run: its training steps, dev after each epoch, then test (the best epoch's
    dev predictions are kept, not made again)."""
    settings = trainer.config
    evals = {s: len(data[s].eval_batches(settings.eval_batch_size, settings.eval_max_words)) for s in ("dev", "test")}
    return sum(len(b) for b in epochs[:trained.epochs_run]) + trained.epochs_run * evals["dev"] + evals["test"]
