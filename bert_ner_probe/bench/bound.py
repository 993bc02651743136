"""The bare-loop bound of a finished sweep, and how its wall time compares.

``python scripts/sweep_bound.py SWEEP_DIR --wall SECONDS [--out bound.json]``

For the jobs of one finished sweep (every ``results.json`` under
``SWEEP_DIR``, all from one encoder, corpus and trainer), on this machine:

* **bare extraction** — :func:`~bert_ner_probe.bench.bare.bare_forward` (the
  encoder's forward passes alone, in the sweep's resolved encoder dtype) over
  every split, in the batches the harness plans (same context, windows and
  batch limits), with inputs already on the device;
* **bare epoch** — per tagger input shape in the sweep, one epoch of
  :func:`~bert_ner_probe.bench.bare.bare_epoch` (the faster of its packed and
  padded forms) over the sweep's training split's sentence lengths, in the
  sweep's batch size and precision; the features are random, which does not
  change the time.

``bound = 2 × (Σ_jobs epochs_run × bare_epoch(shape of the job) + bare_extraction)``;
the sweep is within the bound when ``--wall`` (the sweep command's wall
time) is at most ``bound``. Prints one line per shape and the verdict, and
writes the numbers to ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from bert_ner_probe.bench.bare import (BareSpec, bare_batches, bare_epoch_times, bare_forward, bare_inputs, timed,
                                       warm_up_epochs, warm_up_forward)
from bert_ner_probe.bench.children import run_results
from bert_ner_probe.data.corpus import SPLITS
from bert_ner_probe.device import resolve_device
from bert_ner_probe.errors import UserError
from bert_ner_probe.features.encoder import load_encoder
from bert_ner_probe.features.pooling import pooled_width
from bert_ner_probe.results.run_result import RunResult
from bert_ner_probe.data.load import corpus_of
from bert_ner_probe.strategy.combiner import Combiner
from bert_ner_probe.training.tagging_data import TaggingData

SHARED = ("encoder", "data", "pooling", "trainer", "probe", "device")  # config groups every job must share
Shape = Tuple[int, ...]  # one word as the tagger reads it: (width,), or (K, width) when it mixes K layers


def load_jobs(sweep_dir: Path) -> List[RunResult]:
    """The sweep's runs; a :class:`UserError` when there are none or they differ in a shared group."""
    runs = run_results(sweep_dir)
    if not runs:
        raise UserError(f"no results.json under {sweep_dir}")
    first = runs[0].config
    for r in runs[1:]:
        for group in SHARED:
            if r.config[group] != first[group]:
                raise UserError(f"the jobs of {sweep_dir} differ in {group}: one bound needs one setting")
    return runs


def bare_extraction_s(cfg: DictConfig, dtype: str, device: torch.device, repeats: int) -> Dict[str, Any]:
    """Seconds of forward passes alone over every split, best of ``repeats``."""
    e = cfg.encoder
    loaded = load_encoder(e.name_or_path, str(device), dtype, e.max_length)
    corpus = corpus_of(cfg)
    batches = []
    for split in SPLITS:
        sents = corpus[split].sentences
        batches += bare_inputs(loaded, [s.words for s in sents], [s.doc for s in sents], e.context,
                               e.batch_size, e.max_tokens, e.max_pieces_per_word)
    warm_up_forward(loaded, batches)
    times = [timed(lambda: bare_forward(loaded, batches), device)[0] for _ in range(repeats)]
    return {"bare_extract_s": min(times), "bare_extract_times": times, "encoder_passes": len(batches),
            "hidden_size": loaded.hidden_size}


def bare_epoch_s(cfg: DictConfig, shape: Shape, precision: str, device: torch.device, repeats: int
                 ) -> Dict[str, Any]:
    """Seconds of one bare epoch of words of ``shape`` (faster form, best of ``repeats``) on the sweep's train split."""
    corpus = corpus_of(cfg)
    sents = corpus["train"].sentences
    offsets = np.concatenate([[0], np.cumsum([len(s.words) for s in sents])]).astype(np.int64)
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn((int(offsets[-1]),) + shape, generator=gen).to(torch.float16)
    data = TaggingData.build(feats, offsets, corpus.label_ids("train"), device)
    t = cfg.trainer
    prepared, words = bare_batches(data, t.batch_size, int(cfg.seed), device, t.bucket_pool)
    mix = shape[0] if len(shape) == 2 else None
    bare = BareSpec(shape[-1], cfg.probe.hidden_size, len(corpus.labels), mix, t.lr)
    warm_up_epochs(bare, prepared, precision, device, 0)
    out: Dict[str, Any] = {"width": shape[-1], "mix_layers": mix, "words": words}
    for packed in (True, False):
        out["packed_s" if packed else "padded_s"] = min(
            bare_epoch_times(bare, prepared, repeats, packed, precision, device, 0))
    out["epoch_s"] = min(out["packed_s"], out["padded_s"])
    prepared = data = None  # free the device memory before the next shape
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


def shape_of(r: RunResult, word: int) -> Shape:
    """One word of a job as its tagger reads it (:attr:`Combiner.row_shape` of the job's layers and rule)."""
    return Combiner(tuple(r.layers), r.combine, word).row_shape


def main(argv: Sequence[str] | None = None) -> Dict[str, Any]:
    """Measure the bound of ``SWEEP_DIR``, print it and the verdict; write ``--out`` when given."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("sweep_dir", type=Path)
    p.add_argument("--wall", type=float, required=True, help="wall time of the sweep command, seconds")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args(argv)
    runs = load_jobs(a.sweep_dir)
    cfg = OmegaConf.create(runs[0].config)
    device = resolve_device(cfg.device)
    extraction = bare_extraction_s(cfg, runs[0].encoder_dtype, device, a.repeats)
    word = pooled_width(cfg.pooling.method, extraction["hidden_size"])  # one layer's vector of a word

    epochs: Counter = Counter()
    for r in runs:
        epochs[shape_of(r, word)] += int(r.epochs_run or 0)
    per_shape = {s: bare_epoch_s(cfg, s, runs[0].precision, device, a.repeats)
                 for s in sorted(epochs, key=lambda s: (s[-1], len(s), s[0]))}
    bare_train_s = sum(n * per_shape[s]["epoch_s"] for s, n in epochs.items())
    bound = 2 * (bare_train_s + extraction["bare_extract_s"])
    label = {s: f"{s[-1]}" + (f" mix {s[0]}" if len(s) == 2 else "") for s in per_shape}
    result = {
        "jobs": len(runs), "wall_s": a.wall, "bound_s": bound, "within": a.wall <= bound,
        "bare_train_s": bare_train_s, **extraction,
        "epochs_by_width": {label[s]: epochs[s] for s in per_shape},
        "bare_epoch_by_width": {label[s]: v for s, v in per_shape.items()},
        "device": str(device), "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    for s, v in per_shape.items():
        print(f"width {label[s]}: {epochs[s]} epochs run; bare epoch {v['epoch_s']:.3f}s "
              f"(packed {v['packed_s']:.3f}s, padded {v['padded_s']:.3f}s)")
    print(f"bare extraction {extraction['bare_extract_s']:.2f}s ({extraction['encoder_passes']} passes); "
          f"bare training {bare_train_s:.1f}s; bound 2 x ({bare_train_s:.1f} + "
          f"{extraction['bare_extract_s']:.2f}) = {bound:.1f}s; sweep wall {a.wall:.1f}s "
          f"= {a.wall / bound:.2f} of the bound: {'WITHIN' if result['within'] else 'OVER'}")
    if a.out:
        a.out.write_text(json.dumps(result, indent=2))
    return result
