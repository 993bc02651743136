"""The trainer (bert_ner_probe/training/trainer.py) on a probe: it learns, restores the best epoch, is deterministic, accumulates."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from run_if import DEVICES, run_if

from bert_ner_probe.metrics.score import f1, score
from bert_ner_probe.probes.bilstm import BiLSTMProbe
from bert_ner_probe.training.tagging_data import TaggingData
from bert_ner_probe.training.trainer import DevScore, Trainer, TrainerConfig, sentences_of

pytestmark = pytest.mark.usefixtures("one_thread")


CPU = torch.device("cpu")


LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def _synthetic_split(n_sentences: int, seed: int, k_layers: int = 0):
    """Random IOB2 tag sequences; each word's features are its label's one-hot plus noise."""
    rng = np.random.default_rng(seed)
    tag_ids, offsets = [], [0]
    for _ in range(n_sentences):
        n = int(rng.integers(2, 10))
        sent, prev = [], 0
        for _ in range(n):
            choice = int(rng.integers(0, 5))
            if choice in (2, 4) and prev not in (choice - 1, choice):  # keep IOB2 valid
                choice -= 1
            sent.append(choice)
            prev = choice
        tag_ids += sent
        offsets.append(offsets[-1] + n)
    onehot = np.eye(5)[tag_ids]
    noise = rng.normal(0, 0.3, size=(len(tag_ids), 3))
    feats = np.concatenate([onehot + rng.normal(0, 0.1, size=onehot.shape), noise], axis=1)  # (words, 8)
    if k_layers:  # layer 0 is pure noise, the last layer carries the label
        layers = [rng.normal(0, 1, size=feats.shape) for _ in range(k_layers - 1)] + [feats]
        feats = np.stack(layers, axis=1)
    return torch.tensor(feats, dtype=torch.float16), np.asarray(offsets), tag_ids


def trainer_of(seed: int = 1, **settings) -> Trainer:
    """A Trainer with the schema's defaults (TrainerConfig) and ``settings``, as a run builds it from its config;
    float32 unless ``precision`` is given (``auto`` is bf16 on a CPU with bf16 units)."""
    from omegaconf import OmegaConf

    trainer = OmegaConf.merge(OmegaConf.structured(TrainerConfig), {"precision": "fp32", **settings})
    return Trainer.from_config(OmegaConf.create({"trainer": trainer, "seed": seed, "progress": False}))


def predict(model, data, device, **settings):
    """Per-sentence label ids, through the trainer's predict."""
    return sentences_of(trainer_of(**settings).predict(model, data, device), data.lengths)


def _gold(offsets, tag_ids):
    return [[LABELS[t] for t in tag_ids[offsets[i]:offsets[i + 1]]] for i in range(len(offsets) - 1)]


def _fit(seed: int, crf: bool = False, k_layers: int = 0, epochs: int = 8, patience: int = 3,
         precision: str = "fp32", impl: str = "auto", dropout: float = 0.1, device: torch.device = CPU, **trainer):
    tr_x, tr_off, tr_tags = _synthetic_split(240, seed=10, k_layers=k_layers)
    dv_x, dv_off, dv_tags = _synthetic_split(60, seed=11, k_layers=k_layers)
    train_data = TaggingData.build(tr_x, tr_off, tr_tags, device)
    dev_data = TaggingData.build(dv_x, dv_off, dv_tags, device)
    gold = _gold(dv_off, dv_tags)
    torch.manual_seed(seed)
    model = BiLSTMProbe(8, len(LABELS), hidden_size=16, num_layers=1, dropout=dropout, crf=crf,
                         mix_layers=k_layers or None, impl=impl).to(device)
    snapshots = []

    def dev_f1(pred_ids):
        snapshots.append(copy.deepcopy(model.state_dict()))  # the weights that produced this score
        return score(gold, [[LABELS[i] for i in p] for p in sentences_of(pred_ids, dev_data.lengths)])["f1"]

    fit = trainer_of(seed, epochs=epochs, batch_size=16, lr=1e-2, patience=patience, precision=precision, **trainer)
    result = fit.fit(model, train_data, dev_data, DevScore("dev_f1", of_labels=dev_f1), device)
    return model, result, snapshots, dev_data, gold


def _same_state(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_train_learns_and_restores_the_best_epoch():
    model, result, snapshots, dev_data, gold = _fit(seed=3)
    f1s = [h["dev_f1"] for h in result.history]
    assert len(f1s) == result.epochs_run == len(snapshots)
    assert result.best_dev_score == max(f1s) >= 0.95
    assert result.best_epoch == 1 + f1s.index(max(f1s))  # the first epoch reaching the best score
    # Training went on past the best epoch (a later epoch cannot beat F1 = 1.0, or stopped improving)…
    assert result.epochs_run > result.best_epoch
    assert result.epochs_run <= result.best_epoch + 3  # …and stopped after `patience` epochs
    # …and the best epoch's weights were put back, not the last epoch's.
    assert _same_state(model.state_dict(), snapshots[result.best_epoch - 1])
    assert not _same_state(model.state_dict(), snapshots[-1])
    pred = predict(model, dev_data, CPU)
    assert f1(gold, [[LABELS[i] for i in p] for p in pred]) == result.best_dev_score
    # The best epoch's dev predictions come back with the result: what the restored weights predict again.
    np.testing.assert_array_equal(result.dev_labels, trainer_of().predict(model, dev_data, CPU))
    assert all(h["train_loss"] > 0 and h["epoch_s"] > 0 for h in result.history)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_min_steps_keeps_training_past_its_patience():
    """A dev score that never improves after epoch 1 stops a run with patience 1 after epoch 2; with min_steps
    it goes on until that many optimiser steps are done (240 sentences in batches of 32: 8 steps an epoch)."""
    from bert_ner_probe.probes.linear import LinearProbe

    x, offsets, tags = _synthetic_split(240, seed=10)
    data = TaggingData.build(x, offsets, tags, CPU)
    flat = DevScore("flat", of_model=lambda m: 1.0)
    for min_steps, epochs_run in ((0, 2), (30, 4), (32, 4), (33, 5)):
        torch.manual_seed(0)
        fit = trainer_of(epochs=10, patience=1, min_steps=min_steps).fit(LinearProbe(8, 5, crf=True), data, data,
                                                                         flat, CPU)
        assert (fit.epochs_run, fit.steps, fit.best_epoch) == (epochs_run, 8 * epochs_run, 1)


def test_predict_does_not_depend_on_how_sentences_are_batched():
    model, _, _, dev_data, _ = _fit(seed=3, epochs=2)
    one_batch = predict(model, dev_data, CPU, eval_batch_size=10**6, eval_max_words=10**9)
    assert len(one_batch) == dev_data.num_sentences
    assert [len(p) for p in one_batch] == list(dev_data.lengths)
    assert predict(model, dev_data, CPU, eval_batch_size=7, eval_max_words=30) == one_batch  # many small batches


def test_same_seed_gives_identical_results():
    runs = [_fit(seed=5, crf=True, k_layers=2, epochs=6, patience=6) for _ in range(2)]
    (m1, r1, *_), (m2, r2, *_) = runs
    strip = [{k: v for k, v in h.items() if k in ("epoch", "train_loss", "dev_f1")} for h in r1.history]
    assert strip == [{k: v for k, v in h.items() if k in ("epoch", "train_loss", "dev_f1")} for h in r2.history]
    assert r1.best_epoch == r2.best_epoch and r1.best_dev_score == r2.best_dev_score >= 0.9
    assert _same_state(m1.state_dict(), m2.state_dict())
    # The scalar mix learned to prefer the layer that carries the label.
    w = m1.mix.normalized_weights()
    assert w[1] > w[0]


@pytest.mark.parametrize("k_layers", [0, 2])
def test_training_on_packed_batches_learns(k_layers):
    """impl=packed (a GPU's route: batches gathered straight into packed order) learns like the padded one."""
    model, result, _, dev_data, gold = _fit(seed=3, epochs=6, k_layers=k_layers, impl="packed")
    assert result.best_dev_score >= 0.95
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    pred = predict(model, dev_data, CPU)
    assert f1(gold, [[LABELS[i] for i in p] for p in pred]) == result.best_dev_score
    # The best epoch's dev predictions come back with the result: what the restored weights predict again.
    np.testing.assert_array_equal(result.dev_labels, trainer_of().predict(model, dev_data, CPU))


@pytest.mark.parametrize("crf", [False, True])
def test_gradient_accumulation_takes_the_same_steps(crf):
    """Without dropout, K micro-batches per batch give the weights of whole batches (one step per batch)."""
    whole, *_ = _fit(seed=3, crf=crf, epochs=2, patience=2, dropout=0.0)
    parts, *_ = _fit(seed=3, crf=crf, epochs=2, patience=2, dropout=0.0, grad_accum=3)
    for k, v in whole.state_dict().items():
        torch.testing.assert_close(parts.state_dict()[k], v, rtol=1e-4, atol=1e-5)


def test_adamw_with_warm_up_and_linear_decay_learns():
    model, result, *_ = _fit(seed=3, epochs=4, patience=4, optimizer="adamw", weight_decay=0.01,
                             schedule="linear", warmup_ratio=0.1)
    assert result.best_dev_score >= 0.6 and result.history[-1]["train_loss"] < result.history[0]["train_loss"]


@run_if(bf16_cpu=True)
def test_bf16_training_learns_too():
    model, result, _, dev_data, gold = _fit(seed=3, epochs=4, precision="bf16")
    assert result.best_dev_score >= 0.95
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast: weights stay float32
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("crf, k_layers", [(False, 0), (True, 3)])
def test_training_on_each_device_learns_with_the_data_on_that_device(device, crf, k_layers):
    """On CUDA the features and tags live on the GPU, the LSTM runs packed (cuDNN) and batches are gathered there."""
    device = torch.device(device)
    model, result, _, dev_data, gold = _fit(seed=3, crf=crf, k_layers=k_layers, device=device)
    assert dev_data.x.device.type == dev_data.tags.device.type == device.type
    assert all(p.device.type == device.type for p in model.parameters())
    assert model.packs(device) == (device.type == "cuda")
    assert result.best_dev_score >= 0.9
    pred = predict(model, dev_data, device)
    assert [len(p) for p in pred] == [len(g) for g in gold]
