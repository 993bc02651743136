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
* **early stopping** — one named dev score after every epoch (:class:`DevScore`:
  ``dev_f1``, ``dev_accuracy``, ``neg_code_length``, and which way is better),
  stop after ``patience`` epochs without a better one once ``min_steps``
  optimiser steps are done, the best epoch's weights restored
  (:mod:`bert_ner_probe.training.early_stopping`);
* **the history** — per epoch: mean train loss per word, the dev score under
  its name, seconds, words/s of the epoch loop, the dev evaluation's seconds
  and the last rate.

Its settings are :class:`TrainerConfig` (``trainer.*``), which it holds
rather than repeats; the run's ``seed`` and ``progress`` come beside them.

A model differs only in what it is and the batches it reads. On a GPU no
step makes the host wait for the device: losses are summed on the device and
batches are gathered there when the features fit (``scripts/bench.py``
compares an epoch with a bare loop's).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Protocol

import numpy as np
import torch
from omegaconf import OmegaConf
from tqdm.auto import tqdm

from bert_ner_probe.device import Precision, autocast, training_precision
from bert_ner_probe.probes.base import Model
from bert_ner_probe.probes.batch import Batch, Layout
from bert_ner_probe.training.early_stopping import EarlyStopping
from bert_ner_probe.training.optim import OptimizerName, ScheduleName, build_optimizer, build_schedule

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
class TrainerConfig:
    """``trainer.*``: how every model is trained (the defaults of ``conf/trainer/default.yaml``)."""

    name: str = "default"
    epochs: int = 10
    batch_size: int = 32  # sentences (fine-tuning in document context: windows holding as many words)
    words_per_batch: int = 256  # probes that read single words (linear, mlp): shuffled words per batch instead
    # such a probe holds a split's combined features in memory when they take at most this many MiB (read once, not
    # one read per word per batch); larger splits, and sentence batches, are read from the cache batch by batch
    hold_words_mb: int = 1024
    lr: float = 1e-3
    patience: int = 3
    min_steps: int = 0  # early stopping stops no run before this many optimiser steps
    min_delta: float = 0.0  # an epoch is better only if its dev score beats the best by more than this
    grad_clip: float = 5.0
    eval_batch_size: int = 256
    eval_max_words: int = 8192  # and at most this many padded words per evaluation batch (bounds memory)
    bucket_pool: int = 5  # sort by length within pools of this many batches; 1 = plain random batches
    precision: Precision = Precision.auto  # autocast format; auto and the rules: bert_ner_probe/device.py
    optimizer: OptimizerName = OptimizerName.adam
    weight_decay: float = 0.0  # not on biases and LayerNorm weights
    schedule: ScheduleName = ScheduleName.constant  # linear = decay to 0, after the warm-up
    warmup_ratio: float = 0.0  # share of the optimiser steps with a linearly rising rate
    grad_accum: int = 1  # micro-batches per batch (one optimiser step), for batches that do not fit in memory
    concurrent: str = "auto"  # jobs of a multirun at once: auto (1 on CPU, what fits on a GPU) | N (concurrency.py)


@dataclass(frozen=True)
class DevScore:
    """What early stopping watches after each epoch: a named score of the dev split and which way is better.

    It scores either the dev split's predicted label ids (``of_labels``, Shape: (words,) → float: the
    trainer predicts dev once per epoch and keeps the best epoch's predictions) or the model itself
    (``of_model``: no prediction pass, e.g. the online code's held-out code length). ``name`` is what the
    history and ``results.json`` call it: ``dev_f1``, ``dev_accuracy``, ``neg_code_length``.
    """

    name: str
    of_labels: Optional[Callable[[np.ndarray], float]] = None
    of_model: Optional[Callable[[Model], float]] = None
    higher_is_better: bool = True

    def __post_init__(self) -> None:
        if (self.of_labels is None) == (self.of_model is None):
            raise ValueError(f"DevScore {self.name!r}: give exactly one of of_labels and of_model")

    def record(self) -> Dict[str, Any]:
        """Its name and direction, as ``results.json`` keeps them."""
        return {"name": self.name, "higher_is_better": self.higher_is_better}


@dataclass
class TrainResult:
    best_epoch: int
    epochs_run: int
    dev_score: DevScore  # what early stopping watched
    best_dev_score: float  # its value at the best epoch
    history: List[Dict[str, float]]
    train_s: float
    # the best epoch's dev predictions (Shape: (words,)), what the restored weights predict again; None when
    # the dev score is of the model itself (DevScore.of_model)
    dev_labels: Optional[np.ndarray] = None
    steps: int = 0  # optimiser steps taken


@dataclass(frozen=True)
class Trainer:
    """One way to fit, predict and score a model: the training settings, the run's seed and progress bars.

    Build it from a run's config with :meth:`from_config`.
    """

    config: TrainerConfig
    seed: int
    progress: bool = False

    @classmethod
    def from_config(cls, cfg: Any) -> "Trainer":
        """From a composed run config: ``cfg.trainer`` (checked against :class:`TrainerConfig`) plus the run's
        ``seed`` and ``progress``."""
        settings = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(TrainerConfig), cfg.trainer))
        return cls(settings, seed=int(cfg.seed), progress=bool(cfg.progress))

    def with_settings(self, **changes: Any) -> "Trainer":
        """A copy with some ``trainer.*`` settings changed (``epochs=1``, ...)."""
        return dataclasses.replace(self, config=dataclasses.replace(self.config, **changes))

    def precision_on(self, device: torch.device, fine_tunes_encoder: bool = False) -> Precision:
        """The autocast format on ``device`` (:func:`bert_ner_probe.device.training_precision`)."""
        return training_precision(self.config.precision, device, finetune=fine_tunes_encoder)

    def plan(self, data: BatchSource) -> List[List[np.ndarray]]:
        """Every epoch's training batches, drawn up front from the seed."""
        rng = np.random.default_rng(self.seed)
        settings = self.config
        return [data.plan_epoch(settings.batch_size, rng, settings.bucket_pool) for _ in range(settings.epochs)]

    def fit(self, model: Model, train: BatchSource, dev: BatchSource, dev_score: DevScore, device: torch.device,
            epochs: List[List[np.ndarray]] | None = None) -> TrainResult:
        """Fit ``model``; return the best epoch (1-based), the history and the best epoch's dev predictions.
        The best weights are restored.

        ``dev_score`` is scored after every epoch (:class:`DevScore`); ``epochs``: the batches of
        :meth:`plan` (drawn here when None).
        """
        settings = self.config
        last_dev: List[np.ndarray] = []  # the latest epoch's dev predictions (a score of the labels)

        def score_dev() -> float:
            if dev_score.of_model is not None:
                return dev_score.of_model(model)
            last_dev[:] = [self.predict(model, dev, device)]
            return dev_score.of_labels(last_dev[0])

        best_dev: Optional[np.ndarray] = None
        precision = self.precision_on(device, model.fine_tunes_encoder)
        epochs = self.plan(train) if epochs is None else epochs
        layout = model.layout(device)
        optim = build_optimizer(model, settings.optimizer, settings.lr, settings.weight_decay, device)
        schedule = build_schedule(optim, settings.schedule, sum(len(b) for b in epochs), settings.warmup_ratio)
        scaler = torch.amp.GradScaler(device.type, enabled=precision == Precision.fp16)
        stopper = EarlyStopping(settings.patience, dev_score.higher_is_better, settings.min_delta)
        history: List[Dict[str, float]] = []
        t0 = time.perf_counter()
        epoch = steps = 0
        for epoch, batches in enumerate(epochs, start=1):
            model.train()
            total = torch.zeros((), device=device)  # summed on the device: no host wait per step
            words = 0
            t_epoch = time.perf_counter()
            bar = tqdm(batches, desc=f"epoch {epoch}/{settings.epochs}", unit="batch", disable=not self.progress,
                       leave=False)
            for units in bar:
                batch_words = train.words_in(units)
                for part in np.array_split(units, min(settings.grad_accum, len(units))):  # micro-batches, one step
                    batch = train.batch(part, layout, device)
                    n = batch.num_words
                    with autocast(device, precision):
                        loss = model.loss(batch)  # mean over this micro-batch's words
                    scaler.scale(loss if n == batch_words else loss * (n / batch_words)).backward()  # the batch's mean
                    total += loss.detach() * n
                if settings.grad_clip:
                    scaler.unscale_(optim)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
                scaler.step(optim)
                scaler.update()
                optim.zero_grad(set_to_none=True)
                schedule.step()
                words += batch_words
            steps += len(batches)
            bar.close()
            score = close_epoch(history, epoch, settings.epochs, total, words, t_epoch, device, dev_score.name,
                                score_dev, lr_end=float(schedule.get_last_lr()[0]))
            stop = stopper.update(model, epoch, score)
            if stopper.best_epoch == epoch and last_dev:
                best_dev = last_dev[0]  # kept: the run scores dev without predicting it again
            if stop and steps >= settings.min_steps:
                break
        stopper.restore(model)
        return TrainResult(stopper.best_epoch, epoch, dev_score, stopper.best_score, history,
                           time.perf_counter() - t0, best_dev, steps)

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
            for units in data.eval_batches(self.config.eval_batch_size, self.config.eval_max_words):
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
            for units in data.eval_batches(self.config.eval_batch_size, self.config.eval_max_words):
                batch = data.batch(units, layout, device)
                with autocast(device, precision):
                    loss = model.loss(batch)
                total += loss.double() * batch.num_words
        return float(total) / math.log(2)


def close_epoch(history: List[Dict[str, float]], epoch: int, epochs: int, total: torch.Tensor, words: int,
                t_epoch: float, device: torch.device, score_name: str, score_dev: Callable[[], float],
                **extra: float) -> float:
    """End an epoch: wait for the device, score dev, append the epoch's entry to ``history`` and log it.

    ``total`` is the summed loss × words of the epoch (on the device); the dev score is recorded under
    ``score_name``; returns it.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    epoch_s = time.perf_counter() - t_epoch
    score = score_dev()
    history.append({"epoch": epoch, "train_loss": float(total) / max(words, 1), score_name: score,
                    "epoch_s": epoch_s, "train_words_per_s": words / epoch_s,
                    "dev_eval_s": time.perf_counter() - t_epoch - epoch_s, **extra})
    log.info("epoch %d/%d: train loss %.4f, %s %.4f, %.1f s (%.0f words/s)", epoch, epochs,
             history[-1]["train_loss"], score_name, score, epoch_s, history[-1]["train_words_per_s"])
    return score


def sentences_of(labels: np.ndarray, lengths: np.ndarray) -> List[List[int]]:
    """Flat word labels (Shape: (words,)) cut into sentences of ``lengths`` words."""
    ends = np.cumsum(lengths)
    return [labels[e - n:e].tolist() for e, n in zip(ends, lengths)]
