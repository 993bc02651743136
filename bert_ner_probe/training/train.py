"""Train the tagger on cached features: bucketed batches, Adam, early stopping on dev F1.

Sentences are shuffled, cut into pools of ``bucket_pool × batch_size``,
sorted by length inside each pool and batched, so a batch holds sentences of
similar length (little padding, short packed sequences); batch order is
shuffled. Small pools matter: with pools of 50 batches, batches became so
uniform (all headlines, all long sentences) that dev F1 after 3 epochs fell
from 88.6 (random batches) to 86.8 on MiniLM ``concat_last_four``; pools of
5 batches keep the speed of bucketing (47 s vs 63 s an epoch on 2 cores).
After every epoch the dev set is tagged and scored; training stops after
``patience`` epochs without a better dev F1 and the best epoch's weights are
put back.

On a GPU the features stay on the device when they fit, each batch is
gathered there straight into packed order (:meth:`TaggingData.packed`), and
no step makes the host wait for the GPU: on an H200 a 2×768 epoch at batch
256 ran at 0.95 of a bare loop's speed (``scripts/bench.py``).

``precision="bf16"`` runs the tagger's forward pass under
``torch.autocast(dtype=torch.bfloat16)`` (weights, optimiser state and loss
stay float32); ``"auto"`` picks it on CPUs with native bf16 matrix units
(AMX or AVX512-BF16), where it makes an epoch 1.5–2× faster, and float32 elsewhere.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, fields
from typing import Any, Callable, Dict, List

import numpy as np
import torch
from tqdm.auto import tqdm

from bert_ner_probe.device import Precision, autocast, training_precision
from bert_ner_probe.features.batching import batches_by_length, bucketed_batches
from bert_ner_probe.training.early_stopping import EarlyStopping
from bert_ner_probe.training.optim import build_optimizer, build_schedule
from bert_ner_probe.tagger.bilstm_tagger import BiLSTMTagger
from bert_ner_probe.training.tagging_data import TaggingData, longest_first

log = logging.getLogger(__name__)


def predict(model: BiLSTMTagger, data: TaggingData, device: torch.device, batch_size: int = 256,
            precision: str = "fp32", max_words: int = 8192) -> List[List[int]]:
    """Label indices for every sentence, in order.

    Sentences are sorted by length and batched by at most ``batch_size``
    sentences and ``max_words`` padded positions, so a batch of the longest
    sentences stays small; ``precision`` as resolved by :func:`bert_ner_probe.device.training_precision`.
    Each batch's labels go into one flat tensor on the features' device,
    copied to the host once at the end. Without a CRF, a tagger that packs on
    ``device`` reads packed batches (:meth:`TaggingData.packed`).
    """
    model.eval()
    n_words = int(data.offsets[-1])
    home = data.x.device
    flat = torch.zeros(n_words + 1, dtype=torch.long, device=home)  # Shape: (words + 1,); the last is padding's sink
    packed = model.crf is None and model.packs(device)
    for ids in batches_by_length(data.lengths, batch_size, max_words):
        with torch.no_grad(), autocast(device, precision):
            if packed:
                seq, _, rows = data.packed(ids, device)
                flat[rows] = model.packed_scores(seq).argmax(-1).to(home)  # Shape: (words,)
            else:
                rows, valid, lens = data.positions(ids[::-1].copy())  # longest first
                x, lengths, _ = data.gather(rows, valid, lens, device)
                best = model.decode(x, lengths)  # Shape: (batch, time)
                flat.scatter_(0, torch.where(valid, rows, n_words).flatten(), best.to(home).flatten())
    words = flat[:n_words].cpu().numpy()
    return [words[s:e].tolist() for s, e in zip(data.offsets[:-1], data.offsets[1:])]


def close_epoch(history: List[Dict[str, float]], epoch: int, epochs: int, total: torch.Tensor, words: int,
                t_epoch: float, device: torch.device, score_dev: Callable[[], float], **extra: float) -> float:
    """End an epoch: wait for the device, score dev, append the epoch's entry to ``history`` and log it.

    ``total`` is the summed loss × words of the epoch (on the device); returns the dev F1.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    epoch_s = time.perf_counter() - t_epoch
    f1 = score_dev()
    history.append({"epoch": epoch, "train_loss": float(total) / max(words, 1), "dev_f1": f1,
                    "epoch_s": epoch_s, "train_words_per_s": words / epoch_s,
                    "dev_eval_s": time.perf_counter() - t_epoch - epoch_s, **extra})
    log.info("epoch %d/%d: train loss %.4f, dev F1 %.2f, %.1f s (%.0f words/s)", epoch, epochs,
             history[-1]["train_loss"], 100 * f1, epoch_s, history[-1]["train_words_per_s"])
    return f1


@dataclass
class TrainResult:
    best_epoch: int
    epochs_run: int
    best_dev_f1: float
    history: List[Dict[str, float]]
    train_s: float


def train(
    model: BiLSTMTagger,
    train_data: TaggingData,
    dev_data: TaggingData,
    dev_f1: Callable[[List[List[int]]], float],
    device: torch.device,
    epochs: int,
    batch_size: int,
    lr: float,
    patience: int,
    seed: int,
    grad_clip: float = 5.0,
    eval_batch_size: int = 256,
    eval_max_words: int = 8192,
    progress: bool = True,
    bucket_pool: int = 5,
    precision: str = "fp32",
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    schedule: str = "constant",
    warmup_ratio: float = 0.0,
    grad_accum: int = 1,
) -> TrainResult:
    """Fit ``model``; return the best epoch (1-based) and per-epoch history. Best weights are restored.

    The optimiser and schedule come from :mod:`bert_ner_probe.training.optim` (Adam at a constant rate by
    default); ``grad_accum=K`` splits each batch into K micro-batches whose gradients add up to
    the batch's, one optimiser step per batch.
    """
    rng = np.random.default_rng(seed)
    optim = build_optimizer(model, optimizer, lr, weight_decay, device)
    steps_per_epoch = len(bucketed_batches(train_data.lengths, batch_size, np.random.default_rng(0), bucket_pool))
    lr_schedule = build_schedule(optim, schedule, epochs * steps_per_epoch, warmup_ratio)
    stopper = EarlyStopping(patience)
    packed = model.crf is None and model.packs(device)  # straight to packed batches: no padding at all
    history: List[Dict[str, float]] = []
    t0 = time.perf_counter()
    epoch = 0
    for epoch in range(1, epochs + 1):
        model.train()
        batches = bucketed_batches(train_data.lengths, batch_size, rng, bucket_pool)
        total = torch.zeros((), device=device)  # summed on the device: no host sync per step
        words = 0
        t_epoch = time.perf_counter()
        bar = tqdm(batches, desc=f"epoch {epoch}/{epochs}", unit="batch", disable=not progress, leave=False)
        for ids in bar:
            optim.zero_grad(set_to_none=True)
            batch_words = int(train_data.lengths[ids].sum())
            for part in np.array_split(ids, min(grad_accum, len(ids))):  # micro-batches, one step
                with autocast(device, precision):
                    if packed:
                        seq, tags, _ = train_data.packed(part, device)
                        loss = model.packed_loss(seq, tags)
                        n = int(seq.batch_sizes.sum())
                    else:
                        x, lens, tags = train_data.batch(longest_first(part, train_data.lengths), device)
                        loss = model.loss(x, lens, tags)
                        n = int(lens.sum())
                (loss if n == batch_words else loss * (n / batch_words)).backward()  # the batch's mean
                total += loss.detach() * n
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optim.step()
            lr_schedule.step()
            words += batch_words
        bar.close()
        f1 = close_epoch(history, epoch, epochs, total, words, t_epoch, device,
                         lambda: dev_f1(predict(model, dev_data, device, eval_batch_size, precision, eval_max_words)))
        if stopper.update(model, epoch, f1):
            break
    stopper.restore(model)
    return TrainResult(stopper.best_epoch, epoch, stopper.best_f1, history, time.perf_counter() - t0)


@dataclass(frozen=True)
class ProbeTrainer:
    """The probe's training settings (``trainer.*``, ``seed``, ``progress``): one way to fit and to predict."""

    epochs: int
    batch_size: int
    lr: float
    patience: int
    seed: int
    grad_clip: float = 5.0
    eval_batch_size: int = 256
    eval_max_words: int = 8192
    progress: bool = True
    bucket_pool: int = 5
    precision: str = "auto"  # as configured; :meth:`precision_on` resolves it for a device
    optimizer: str = "adam"
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_ratio: float = 0.0
    grad_accum: int = 1

    @classmethod
    def from_config(cls, cfg: Any) -> "ProbeTrainer":
        """From a composed run config: ``cfg.trainer`` plus the run's ``seed`` and ``progress``."""
        trainer = cfg.trainer
        return cls(**{f.name: trainer[f.name] for f in fields(cls) if f.name not in ("seed", "progress")},
                   seed=int(cfg.seed), progress=bool(cfg.progress))

    def precision_on(self, device: torch.device) -> Precision:
        """The autocast format on ``device`` (:func:`bert_ner_probe.device.training_precision`)."""
        return training_precision(self.precision, device)

    def fit(self, model: BiLSTMTagger, train_data: TaggingData, dev_data: TaggingData,
            dev_f1: Callable[[List[List[int]]], float], device: torch.device) -> TrainResult:
        """:func:`train` with these settings."""
        return train(model, train_data, dev_data, dev_f1, device, epochs=self.epochs, batch_size=self.batch_size,
                     lr=self.lr, patience=self.patience, seed=self.seed, grad_clip=self.grad_clip,
                     eval_batch_size=self.eval_batch_size, eval_max_words=self.eval_max_words,
                     progress=self.progress, bucket_pool=self.bucket_pool, precision=self.precision_on(device),
                     optimizer=self.optimizer, weight_decay=self.weight_decay, schedule=self.schedule,
                     warmup_ratio=self.warmup_ratio, grad_accum=self.grad_accum)

    def predict(self, model: BiLSTMTagger, data: TaggingData, device: torch.device) -> List[List[int]]:
        """:func:`predict` with these settings."""
        return predict(model, data, device, self.eval_batch_size, self.precision_on(device), self.eval_max_words)
