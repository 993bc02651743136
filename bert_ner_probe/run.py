"""One probing run: data → features (cache) → strategy → tagger → training → metrics → results.json.

:func:`run_probe` takes a composed config and an output folder, writes
``results.json`` and ``predictions/{dev,test}.conll`` there and returns the
:class:`~bert_ner_probe.results.run_result.RunResult`. Each step is built
from the config by its own package; this module only wires them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import torch
from omegaconf import DictConfig

from bert_ner_probe.config import check_values
from bert_ner_probe.data.load import corpus_of
from bert_ner_probe.device import resolve_device
from bert_ner_probe.features.encoder import num_layers
from bert_ner_probe.features.store import cache_key, get_features
from bert_ner_probe.metrics.score import GoldEntities, score_and_write
from bert_ner_probe.results.record import results_record, write_results
from bert_ner_probe.results.run_result import RunResult
from bert_ner_probe.strategy.combiner import Combiner, resolve_layers
from bert_ner_probe.tagger.bilstm_tagger import BiLSTMTagger
from bert_ner_probe.tagger.finetune_tagger import FINETUNE
from bert_ner_probe.training.concurrency import worker_threads, workers
from bert_ner_probe.memo import Session
from bert_ner_probe.training.tagging_data import FeatureReuse
from bert_ner_probe.training.train import ProbeTrainer


def run_probe(cfg: DictConfig, out_dir: Path, session: Optional[Session] = None) -> RunResult:
    """Run one configuration end to end; return its result (also written to ``results.json``).

    ``session`` is what this run shares with the runs before and after it in
    this process: parsed data files, encoder hashes and the last combined
    features (:mod:`bert_ner_probe.memo`); None = a fresh one, nothing shared.
    """
    out_dir = Path(out_dir)
    session = session if session is not None else Session()
    reuse = session.features
    t_start = time.perf_counter()
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    elif workers() > 1:  # one of several jobs at once (trainer.concurrent): a share of the cores each
        torch.set_num_threads(worker_threads())
    check_values(cfg)
    if cfg.strategy.name == FINETUNE:  # the encoder itself trained: no feature cache, no BiLSTM
        from bert_ner_probe.training.finetune import run_finetune

        try:
            return run_finetune(cfg, out_dir, t_start, session)
        finally:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()  # the next job's free-memory checks see the room
    device = resolve_device(cfg.device)
    trainer = ProbeTrainer.from_config(cfg)
    precision = trainer.precision_on(device)  # before any work: bf16 is refused on CUDA
    depth = num_layers(cfg.encoder.name_or_path)
    layers = resolve_layers(None if cfg.strategy.layers is None else list(cfg.strategy.layers), depth)
    corpus = corpus_of(cfg, session.files)

    key = cache_key(cfg.encoder, cfg.pooling.method, corpus, cfg.device, session.fingerprints)
    wanted = FeatureReuse.wanted(key, cfg.cache_dir, layers, cfg.strategy.combine, device)
    reuse.forget(unless=wanted)  # before a possible extraction, which needs the memory
    entry, hit = get_features(cfg.encoder, cfg.pooling.method, corpus, cfg.device, cfg.cache_dir, cfg.progress,
                              rebuild=cfg.cache.rebuild, key=key)
    if int(entry.meta["num_layers"]) != depth:
        raise RuntimeError(f"cache entry {entry.path} has {entry.meta['num_layers']} layers, the encoder {depth}")
    combiner = Combiner.from_config(cfg.strategy, depth, int(entry.meta["width"]))

    t_select = time.perf_counter()
    data, reused = reuse.tagging_data(entry, corpus, combiner, device, wanted)
    select_s = time.perf_counter() - t_select

    torch.manual_seed(cfg.seed)
    model = BiLSTMTagger.from_config(cfg.tagger, combiner, len(corpus.labels)).to(device)
    labels = corpus.labels

    def tags_of(pred_ids: List[List[int]]) -> List[List[str]]:
        return [[labels[i] for i in p] for p in pred_ids]

    dev_gold = GoldEntities([s.tags for s in corpus["dev"].sentences], cfg.eval.mode)  # read once, scored every epoch
    trained = trainer.fit(model, data["train"], data["dev"], lambda p: dev_gold.f1(tags_of(p)), device)

    t_eval = time.perf_counter()
    metrics = {split: score_and_write(cfg, corpus, split, tags_of(trainer.predict(model, data[split], device)), out_dir)
               for split in ("dev", "test")}
    eval_s = time.perf_counter() - t_eval

    result = results_record(
        cfg, corpus, depth=depth, strategy=cfg.strategy.name, layers=list(combiner.layers),
        combine=combiner.combine, metrics=metrics, trained=trained, device=device,
        encoder_dtype=entry.meta["key"]["dtype"], precision=precision, cache_hit=hit, cache_entry=str(entry.path),
        encoder_passes=0 if hit else int(entry.meta["encoder_passes"]),
        features_reused=reused,  # combined features kept from the previous job of this process
        mix_weights=combiner.mix_record(model.mix),
        timings={
            "extract_s": 0.0 if hit else float(entry.meta["extract_s"]),
            "select_s": select_s,  # reading and combining the strategy's layers (and the copy to the device)
            "train_s": trained.train_s,
            "eval_s": eval_s,
            "total_s": time.perf_counter() - t_start,
        })
    write_results(out_dir, result)
    return result
