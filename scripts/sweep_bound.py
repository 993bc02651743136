#!/usr/bin/env python
"""The bare-loop bound of a finished sweep, and how its wall time compares.

``python scripts/sweep_bound.py SWEEP_DIR --wall SECONDS [--out bound.json]``

For the jobs of one finished sweep (every ``results.json`` under
``SWEEP_DIR``, all from one encoder, corpus and trainer), on this machine:

* **bare extraction** — the encoder's forward passes alone
  (``model(**batch, output_hidden_states=True)`` under ``torch.inference_mode``,
  in the sweep's resolved encoder dtype) over every split, in the batches the
  harness plans (:func:`bert_ner_probe.features.extract.plan_batches`: same context,
  windows and batch limits), with inputs already on the device;
* **bare epoch** — per tagger input width in the sweep, one epoch of the bare
  loop of ``scripts/bench.py`` (two-layer BiLSTM + linear + cross-entropy +
  Adam, batches padded in advance on the device, the faster of its packed
  and padded forms) over the full training split's sentence lengths, in the
  sweep's batch size and precision; the features are random, which does not
  change the time.

``bound = 2 × (Σ_jobs epochs_run × bare_epoch(width of the job) + bare_extraction)``;
the sweep is within the bound when ``--wall`` (the sweep command's wall
time) is at most ``bound``. Prints one line per width and the verdict, and
writes the numbers to ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # scripts/: the bare loops of bench.py
from bench import REPO_ROOT, BareTagger, _timed, bare_batches, bare_epoch, bare_forward, bare_inputs  # noqa: E402

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bert_ner_probe.features import encoder as enc  # noqa: E402
from bert_ner_probe.data.conll import SPLITS, load_corpus  # noqa: E402
from bert_ner_probe.features.pooling import pooled_width  # noqa: E402
from bert_ner_probe.training.tagging_data import TaggingData  # noqa: E402

SHARED = ("encoder", "data", "pooling", "trainer", "tagger", "device")  # config groups every job must share


def load_jobs(sweep_dir: Path) -> List[Dict[str, Any]]:
    runs = [json.loads(p.read_text()) for p in sorted(Path(sweep_dir).rglob("results.json"))]
    if not runs:
        raise SystemExit(f"error: no results.json under {sweep_dir}")
    first = runs[0]["config"]
    for r in runs[1:]:
        for group in SHARED:
            if r["config"][group] != first[group]:
                raise SystemExit(f"error: the jobs of {sweep_dir} differ in {group}: one bound needs one setting")
    return runs


def sweep_corpus(cfg: Dict[str, Any]):
    """The corpus the sweep read (its folder, or its hub dataset), with its limits."""
    d = cfg["data"]
    return load_corpus(d["dir"], d["scheme"], d["limit"], d["hub_id"])


def bare_extraction_s(cfg: Dict[str, Any], dtype: str, device: torch.device, repeats: int) -> Dict[str, Any]:
    """Seconds of forward passes alone over every split, best of ``repeats``."""
    e = cfg["encoder"]
    loaded = enc.load_encoder(e["name_or_path"], str(device), dtype, e["max_length"])
    corpus = sweep_corpus(cfg)
    batches = []
    for split in SPLITS:
        sents = corpus[split].sentences
        batches += bare_inputs(loaded, [s.words for s in sents], [s.doc for s in sents], e["context"],
                               e["batch_size"], e["max_tokens"], e["max_pieces_per_word"])

    _timed(lambda: bare_forward(loaded, batches[:2] + batches[-2:]), device)  # warm-up
    times = [_timed(lambda: bare_forward(loaded, batches), device)[0] for _ in range(repeats)]
    return {"bare_extract_s": min(times), "bare_extract_times": times, "encoder_passes": len(batches),
            "hidden_size": loaded.hidden_size}


def bare_epoch_s(cfg: Dict[str, Any], width: int, precision: str, device: torch.device, repeats: int
                 ) -> Dict[str, Any]:
    """Seconds of one bare epoch at input ``width`` (faster form, best of ``repeats``) on the full train split."""
    corpus = sweep_corpus(cfg)
    sents = corpus["train"].sentences
    offsets = np.concatenate([[0], np.cumsum([len(s.words) for s in sents])]).astype(np.int64)
    index = {t: i for i, t in enumerate(corpus.labels)}
    tags = [index[t] for s in sents for t in s.tags]
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(int(offsets[-1]), width, generator=gen).to(torch.float16)
    data = TaggingData.build(feats, offsets, tags, device)
    t = cfg["trainer"]
    prepared, words = bare_batches(data, t["batch_size"], int(cfg["seed"]), device, t["bucket_pool"])
    out: Dict[str, Any] = {"width": width, "words": words}
    for packed in (True, False):
        torch.manual_seed(0)
        model = BareTagger(width, cfg["tagger"]["hidden_size"], len(corpus.labels)).to(device)
        optim = torch.optim.Adam(model.parameters(), lr=t["lr"], fused=device.type in ("cpu", "cuda"))
        bare_epoch(model, optim, prepared[:8], packed, precision, device)  # warm-up
        times = [_timed(lambda: bare_epoch(model, optim, prepared, packed, precision, device), device)[0]
                 for _ in range(repeats)]
        out["packed_s" if packed else "padded_s"] = min(times)
    out["epoch_s"] = min(out["packed_s"], out["padded_s"])
    prepared = data = None  # free the device memory before the next width
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


def main(argv: Sequence[str] | None = None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("sweep_dir", type=Path)
    p.add_argument("--wall", type=float, required=True, help="wall time of the sweep command, seconds")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args(argv)
    runs = load_jobs(a.sweep_dir)
    cfg = runs[0]["config"]
    device = enc.resolve_device(cfg["device"])
    extraction = bare_extraction_s(cfg, runs[0]["encoder_dtype"], device, a.repeats)
    hidden = extraction["hidden_size"]

    word = pooled_width(cfg["pooling"]["method"], hidden)  # one layer's vector of a word

    def width(r: Dict[str, Any]) -> int:
        return word * len(r["layers"]) if r["combine"] == "concat" else word

    epochs = Counter()
    for r in runs:
        epochs[width(r)] += int(r["epochs_run"])
    per_width = {w: bare_epoch_s(cfg, w, runs[0]["precision"], device, a.repeats) for w in sorted(epochs)}
    bare_train_s = sum(n * per_width[w]["epoch_s"] for w, n in epochs.items())
    bound = 2 * (bare_train_s + extraction["bare_extract_s"])
    result = {
        "jobs": len(runs), "wall_s": a.wall, "bound_s": bound, "within": a.wall <= bound,
        "bare_train_s": bare_train_s, **extraction,
        "epochs_by_width": {str(w): n for w, n in epochs.items()},
        "bare_epoch_by_width": {str(w): v for w, v in per_width.items()},
        "device": str(device), "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    for w, v in per_width.items():
        print(f"width {w}: {epochs[w]} epochs run; bare epoch {v['epoch_s']:.3f}s "
              f"(packed {v['packed_s']:.3f}s, padded {v['padded_s']:.3f}s)")
    print(f"bare extraction {extraction['bare_extract_s']:.2f}s ({extraction['encoder_passes']} passes); "
          f"bare training {bare_train_s:.1f}s; bound 2 x ({bare_train_s:.1f} + "
          f"{extraction['bare_extract_s']:.2f}) = {bound:.1f}s; sweep wall {a.wall:.1f}s "
          f"= {a.wall / bound:.2f} of the bound: {'WITHIN' if result['within'] else 'OVER'}")
    if a.out:
        a.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
