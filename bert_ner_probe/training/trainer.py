"""One training loop for every model: the probes over cached features and the fine-tuned encoder.

:class:`Trainer` fits any :class:`~bert_ner_probe.probes.base.Model` on any
:class:`BatchSource` (a split's cached features,
:class:`~bert_ner_probe.training.tagging_data.TaggingData`, or its encoder
windows, :class:`~bert_ner_probe.training.window_data.WindowData`), as
flair's ``train()`` and ``fine_tune()`` share one loop. It owns:

* **epochs and batches** — every epoch's batches are drawn up front from one
  seeded generator (the linear schedule needs the number of steps); the
  source decides what a batch is (length-bucketed sentences, or windows
  holding about as many words, :meth:`BatchSource.plan_epoch`);
* **precision** — the forward pass and loss under ``torch.autocast`` (bf16 or
  fp16; weights, optimiser state and the loss stay float32), fp16 with a
  gradient scaler (:func:`bert_ner_probe.device.training_precision` resolves ``auto``);
* **gradient accumulation** — ``grad_accum=K`` splits each batch into K
  micro-batches whose gradients add up to the batch's (each micro-batch's
  mean loss weighted by its share of the batch's words), one optimiser step;
* **clipping, optimiser and schedule** — :mod:`bert_ner_probe.training.optim`;
* **host memory** — on a CPU, blocks the size of the largest trainable
  parameter stay on glibc's heap (:func:`bert_ner_probe.device.keep_on_heap`):
  each step frees its gradients and allocates them again;
* **early stopping** — dev F1 after every epoch, stop after ``patience``
  epochs without a better one, the best epoch's weights restored
  (:mod:`bert_ner_probe.training.early_stopping`);
* **the history** — per epoch: mean train loss per word, dev F1, seconds,
  words/s of the epoch loop, the dev evaluation's seconds and the last rate.

A model differs only in what it is and the batches it reads. On a GPU no
step makes the host wait for the device: losses are summed on the device and
batches are gathered there when the features fit (``scripts/bench.py``
compares an epoch with a bare loop's).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, fields
from typing import Any, Callable, Dict, List, Optional, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from bert_ner_probe.device import Precision, autocast, keep_on_heap, training_precision
from bert_ner_probe.probes.base import Model
from bert_ner_probe.probes.batch import Batch, Layout
from bert_ner_probe.training.early_stopping import EarlyStopping
from bert_ner_probe.training.optim import build_optimizer, build_schedule

log = logging.getLogger(__name__)


class BatchSource(Protocol):
    """One split as the trainer reads it: batches of units (sentences or windows) and their words."""

    @property
    def num_words(self) -> int: ...

    @property
    def home(self) -> torch.device:
        """Where predictions are gathered (the features' device)."""
        ...

    def plan_epoch(self, batch_size: int, rng: np.random.Generator, bucket_pool: int) -> List[np.ndarray]:
        """One epoch's training batches of unit indices."""
        ...

    def eval_batches(self, batch_size: int, max_words: int) -> List[np.ndarray]:
        """Evaluation batches of unit indices, bounded in units and padded positions."""
        ...

    def words_in(self, units: np.ndarray) -> int:
        """Words the units hold (what the batch's loss averages over)."""
        ...

    def batch(self, units: np.ndarray, layout: Layout, device: torch.device) -> Batch:
        """The units as one batch in ``layout``, on ``device``."""
        ...


@dataclass
class TrainResult:
    best_epoch: int
    epochs_run: int
    best_dev_f1: float
    history: List[Dict[str, float]]
    train_s: float
    # the best epoch's dev predictions (Shape: (words,)), what the restored weights predict again; None when
    # fit scored the model itself (dev_score)
    dev_labels: Optional[np.ndarray] = None


@dataclass(frozen=True)
class Trainer:
    """The training settings (``trainer.*``, ``seed``, ``progress``): one way to fit, predict and score a model.

    Every default is the config schema's (``TrainerConfig`` in :mod:`bert_ner_probe.config`);
    build it with :meth:`from_config`.
    """

    epochs: int
    batch_size: int
    words_per_batch: int  # a word-wise probe's batches (:class:`~bert_ner_probe.training.tagging_data.WordData`)
    lr: float
    patience: int
    seed: int
    grad_clip: float
    eval_batch_size: int
    eval_max_words: int
    progress: bool
    bucket_pool: int
    precision: str  # as configured; :meth:`precision_on` resolves it for a device and model
    optimizer: str
    weight_decay: float
    schedule: str
    warmup_ratio: float
    grad_accum: int

    @classmethod
    def from_config(cls, cfg: Any) -> "Trainer":
        """From a composed run config: ``cfg.trainer`` plus the run's ``seed`` and ``progress``."""
        trainer = cfg.trainer
        return cls(**{f.name: trainer[f.name] for f in fields(cls) if f.name not in ("seed", "progress")},
                   seed=int(cfg.seed), progress=bool(cfg.progress))

    def precision_on(self, device: torch.device, fine_tunes_encoder: bool = False) -> Precision:
        """The autocast format on ``device`` (:func:`bert_ner_probe.device.training_precision`)."""
        return training_precision(self.precision, device, finetune=fine_tunes_encoder)

    def plan(self, data: BatchSource) -> List[List[np.ndarray]]:
        """Every epoch's training batches, drawn up front from the seed."""
        rng = np.random.default_rng(self.seed)
        return [data.plan_epoch(self.batch_size, rng, self.bucket_pool) for _ in range(self.epochs)]

    def fit(self, model: Model, train: BatchSource, dev: BatchSource,
            dev_f1: Optional[Callable[[np.ndarray], float]], device: torch.device,
            epochs: List[List[np.ndarray]] | None = None,
            dev_score: Optional[Callable[[Model], float]] = None) -> TrainResult:
        """Fit ``model``; return the best epoch (1-based), the history and the best epoch's dev predictions.
        The best weights are restored.

        ``dev_f1`` scores the dev split's predicted label ids (Shape: (words,)); ``dev_score``, when given,
        scores the model itself instead (no prediction pass: the online code stops on the held-out code
        length); higher is better either way. ``epochs``: the batches of :meth:`plan` (drawn here when None).
        """
        last_dev: List[np.ndarray] = []  # the latest epoch's dev predictions
        if dev_score is None:
            if dev_f1 is None:
                raise ValueError("fit needs dev_f1 or dev_score")

            def dev_score(m: Model) -> float:
                last_dev[:] = [self.predict(m, dev, device)]
                return dev_f1(last_dev[0])
        best_dev: Optional[np.ndarray] = None
        precision = self.precision_on(device, model.fine_tunes_encoder)
        if device.type == "cpu":  # the gradients come and go every step: keep their blocks mapped
            keep_on_heap(max((p.numel() * p.element_size() for p in model.parameters() if p.requires_grad),
                             default=0))
        epochs = self.plan(train) if epochs is None else epochs
        layout = model.layout(device)
        optim = build_optimizer(model, self.optimizer, self.lr, self.weight_decay, device)
        schedule = build_schedule(optim, self.schedule, sum(len(b) for b in epochs), self.warmup_ratio)
        scaler = torch.amp.GradScaler(device.type, enabled=precision == Precision.fp16)
        stopper = EarlyStopping(self.patience)
        history: List[Dict[str, float]] = []
        t0 = time.perf_counter()
        epoch = 0
        for epoch, batches in enumerate(epochs, start=1):
            model.train()
            total = torch.zeros((), device=device)  # summed on the device: no host wait per step
            words = 0
            t_epoch = time.perf_counter()
            bar = tqdm(batches, desc=f"epoch {epoch}/{self.epochs}", unit="batch", disable=not self.progress,
                       leave=False)
            for units in bar:
                batch_words = train.words_in(units)
                for part in np.array_split(units, min(self.grad_accum, len(units))):  # micro-batches, one step
                    batch = train.batch(part, layout, device)
                    n = batch.num_words
                    with autocast(device, precision):
                        loss = model.loss(batch)  # mean over this micro-batch's words
                    scaler.scale(loss if n == batch_words else loss * (n / batch_words)).backward()  # the batch's mean
                    total += loss.detach() * n
                if self.grad_clip:
                    scaler.unscale_(optim)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), self.grad_clip)
                scaler.step(optim)
                scaler.update()
                optim.zero_grad(set_to_none=True)
                schedule.step()
                words += batch_words
            bar.close()
            f1 = close_epoch(history, epoch, self.epochs, total, words, t_epoch, device,
                             lambda: dev_score(model), lr_end=float(schedule.get_last_lr()[0]))
            stop = stopper.update(model, epoch, f1)
            if stopper.best_epoch == epoch and last_dev:
                best_dev = last_dev[0]  # kept: the run scores dev without predicting it again
            if stop:
                break
        stopper.restore(model)
        return TrainResult(stopper.best_epoch, epoch, stopper.best_f1, history, time.perf_counter() - t0, best_dev)

    def predict(self, model: Model, data: BatchSource, device: torch.device) -> np.ndarray:
        """The best label id of every word of ``data``, Shape: (words,), in the split's word order.

        Batches hold at most ``eval_batch_size`` units and ``eval_max_words`` padded positions
        (:meth:`BatchSource.eval_batches`); labels are gathered on the data's home device and
        copied to the host once.
        """
        model.eval()
        precision = self.precision_on(device, model.fine_tunes_encoder)
        layout = model.layout(device)
        n_words = data.num_words
        flat = torch.full((n_words + 1,), -1, dtype=torch.long, device=data.home)  # the last slot: padding's sink
        with torch.no_grad():
            for units in data.eval_batches(self.eval_batch_size, self.eval_max_words):
                batch = data.batch(units, layout, device)
                with autocast(device, precision):
                    labels = model.decode(batch)
                batch.put(flat, labels)
        labels = flat[:n_words].cpu().numpy()
        if (labels < 0).any():
            raise RuntimeError(f"alignment error: {int((labels < 0).sum())} words were in no batch")
        return labels

    def code_length(self, model: Model, data: BatchSource, device: torch.device) -> float:
        """The bits needed to send ``data``'s labels with ``model``'s distribution: Σ −log₂ p(label | word).

        Each evaluation batch's mean loss (nats per word: cross-entropy, or a
        CRF's sequence negative log-likelihood per word) times its words, summed, over ln 2.
        """
        model.eval()
        precision = self.precision_on(device, model.fine_tunes_encoder)
        layout = model.layout(device)
        total = torch.zeros((), dtype=torch.float64, device=device)
        with torch.no_grad():
            for units in data.eval_batches(self.eval_batch_size, self.eval_max_words):
                batch = data.batch(units, layout, device)
                with autocast(device, precision):
                    loss = model.loss(batch)
                total += loss.double() * batch.num_words
        return float(total) / math.log(2)


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


def sentences_of(labels: np.ndarray, lengths: np.ndarray) -> List[List[int]]:
    """Flat word labels (Shape: (words,)) cut into sentences of ``lengths`` words."""
    ends = np.cumsum(lengths)
    return [labels[e - n:e].tolist() for e, n in zip(ends, lengths)]
