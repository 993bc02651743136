"""``strategy=finetune``: train the encoder itself with a linear head, on the probe's data, windows and metric.

The other half of Table 7 (Devlin et al. 2019): the same corpus, limits,
scheme, context (sentence or document, the same windows and max-context
rule, :mod:`bert_ner_probe.features.windows`), sub-word pooling and seqeval scoring
as a frozen-feature run, and the same outputs (``results.json`` with
``strategy: finetune`` and ``layers: null``, ``predictions/{dev,test}.conll``)
— only the trained part differs (:mod:`bert_ner_probe.tagger.finetune_tagger`). The
feature cache is never read or written.

Training steps over *windows*: in sentence context a window is a sentence
and a batch holds ``trainer.batch_size`` of them (length-bucketed as the
probe's batches); in document context windows cover whole documents
(a word is read from the window where it has most context, and the loss
counts each word once), and a batch holds the number of words nearest to
``trainer.batch_size`` average training sentences, so the optimiser takes
about the same number of steps in both contexts and each word is encoded
about once per epoch (twice where windows overlap), not once per sentence.

``trainer=finetune`` (picked by ``strategy=finetune``) sets the usual
fine-tuning recipe: AdamW, lr 5e-5, weight decay 0.01, linear warm-up over
10% of the steps then linear decay, batch 32, 3 epochs, gradient clipping
1.0, early stopping on dev F1 with the best epoch restored. Every step runs
under bf16 autocast where the hardware has bf16 (Ampere+ GPUs, CPUs with
AMX or AVX512-BF16), fp16 with a gradient scaler on older GPUs, float32
elsewhere. ``trainer.grad_accum=K`` splits each batch into K micro-batches
whose gradients add up to the batch's (one optimiser step, the same batch
size), for batches that do not fit in memory.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
from omegaconf import DictConfig
from tqdm.auto import tqdm

from bert_ner_probe.device import autocast, resolve_device, to_device_nowait, training_precision
from bert_ner_probe.features.batching import batches_by_length, bucketed_batches
from bert_ner_probe.data.conll import Corpus
from bert_ner_probe.training.early_stopping import EarlyStopping
from bert_ner_probe.features.encoder import LoadedEncoder, load_encoder
from bert_ner_probe.features.extract import EncoderBatch, WindowPlan, plan_windows_of
from bert_ner_probe.tagger.finetune_tagger import FineTuneTagger
from bert_ner_probe.metrics.score import GoldEntities
from bert_ner_probe.training.optim import build_optimizer, build_schedule
from bert_ner_probe.data.load import corpus_of
from bert_ner_probe.metrics.score import score_and_write
from bert_ner_probe.results.record import results_record, write_results
from bert_ner_probe.results.run_result import RunResult
from bert_ner_probe.training.tagging_data import FeatureReuse
from bert_ner_probe.training.train import TrainResult, close_epoch

log = logging.getLogger(__name__)

MODEL_DIR = "model"  # finetune.save=true: the fine-tuned encoder (Hugging Face folder) and its head


@dataclass
class SplitWindows:
    """One split as encoder windows, with every word's label index."""

    plan: WindowPlan
    tags: torch.Tensor  # Shape: (words,) label indices, on the CPU
    sentence_of_word: np.ndarray  # Shape: (words,) each word's sentence within the split

    @property
    def num_words(self) -> int:
        return int(self.tags.numel())

    @classmethod
    def of(cls, loaded: LoadedEncoder, corpus: Corpus, split: str, cfg: DictConfig,
           limit: Optional[int] = None) -> "SplitWindows":
        """Windows of the split's first ``limit`` sentences (all with None)."""
        sentences = corpus[split].sentences[:limit]
        plan = plan_windows_of(loaded.tokenizer, [s.words for s in sentences], [s.doc for s in sentences],
                               cfg.encoder.context, loaded.max_length, cfg.encoder.max_pieces_per_word)
        lengths = [len(s.words) for s in sentences]
        tags = torch.as_tensor(corpus.label_ids(split)[:sum(lengths)], dtype=torch.long)
        return cls(plan, tags, np.repeat(np.arange(len(lengths)), lengths))

    def chains(self, batch: EncoderBatch) -> np.ndarray:
        """Each word's CRF chain in ``batch``: its sentence's words read from one window. Shape: (words,), ascending."""
        row, sentence = batch.positions[0], self.sentence_of_word[batch.words]
        starts = np.r_[True, (row[1:] != row[:-1]) | (sentence[1:] != sentence[:-1])]
        return np.cumsum(starts) - 1


def training_batches(plan: WindowPlan, context: str, batch_size: int, words_per_batch: float,
                     rng: np.random.Generator, bucket_pool: int) -> List[np.ndarray]:
    """One epoch's batches of window indices (see the module docstring)."""
    if context == "sentence":
        return bucketed_batches(plan.lengths, batch_size, rng, bucket_pool)
    words = plan.words
    batches: List[np.ndarray] = []
    current: List[int] = []
    count = 0
    for k in rng.permutation(len(plan.windows)):
        n = int(words[k])
        if current and count + n - words_per_batch > words_per_batch - count:  # nearer the target without k
            batches.append(np.asarray(current))
            current, count = [], 0
        current.append(int(k))
        count += n
    if current:
        batches.append(np.asarray(current))
    return batches


def _inputs(batch: EncoderBatch, device: torch.device):
    """A batch's encoder inputs and word positions on ``device``, without the host waiting."""
    return tuple(to_device_nowait(torch.from_numpy(a), device)
                 for a in (batch.input_ids, batch.attention_mask, batch.positions))


def predict(model: FineTuneTagger, windows: SplitWindows, device: torch.device, precision: str,
            cfg: DictConfig) -> np.ndarray:
    """Label index of every word of the split, Shape: (words,), in the split's word order.

    Windows are batched by length, at most ``trainer.eval_batch_size`` windows and
    ``encoder.max_tokens`` padded sub-tokens a batch (as extraction batches them).
    """
    model.eval()
    plan = windows.plan
    flat = torch.full((windows.num_words,), -1, dtype=torch.long, device=device)
    with torch.no_grad():
        for idx in _eval_batches(plan, cfg):
            b = plan.batch(idx)
            ids, mask, pos = _inputs(b, device)
            with autocast(device, precision):
                scores = model.word_scores(ids, mask, pos)
            chain = to_device_nowait(torch.from_numpy(windows.chains(b)), device)
            flat[to_device_nowait(torch.from_numpy(b.words), device)] = model.decode(scores, chain)
    labels = flat.cpu().numpy()
    if (labels < 0).any():
        raise RuntimeError(f"alignment error: {int((labels < 0).sum())} words were read from no window")
    return labels


def _split_sentences(labels: np.ndarray, lengths: List[int]) -> List[List[int]]:
    ends = np.cumsum(lengths)
    return [labels[e - n:e].tolist() for e, n in zip(ends, lengths)]


def plan_epochs(train_w: SplitWindows, cfg: DictConfig, words_per_batch: float) -> List[List[np.ndarray]]:
    """Every epoch's training batches, drawn up front: the linear schedule needs the number of steps."""
    rng = np.random.default_rng(cfg.seed)
    return [training_batches(train_w.plan, cfg.encoder.context, cfg.trainer.batch_size, words_per_batch, rng,
                             cfg.trainer.bucket_pool) for _ in range(cfg.trainer.epochs)]


def _eval_batches(plan: WindowPlan, cfg: DictConfig) -> List[np.ndarray]:
    return batches_by_length(plan.lengths, cfg.trainer.eval_batch_size, cfg.encoder.max_tokens)


def finetune(model: FineTuneTagger, train_w: SplitWindows, dev_w: SplitWindows,
             dev_f1: Callable[[np.ndarray], float], cfg: DictConfig, device: torch.device,
             precision: str, epochs: List[List[np.ndarray]]) -> TrainResult:
    """Train ``model`` (encoder and head) on the planned batches (:func:`plan_epochs`); the best dev epoch's
    weights are restored."""
    tr = cfg.trainer
    total_steps = sum(len(b) for b in epochs)  # one optimiser step per planned batch
    optim = build_optimizer(model, tr.optimizer, tr.lr, tr.weight_decay, device)
    schedule = build_schedule(optim, tr.schedule, total_steps, tr.warmup_ratio)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    stopper = EarlyStopping(tr.patience)
    history: List[Dict[str, float]] = []
    t0 = time.perf_counter()
    epoch = 0
    for epoch, batches in enumerate(epochs, start=1):
        model.train()
        total = torch.zeros((), device=device)  # summed on the device: no host wait per step
        words = 0
        t_epoch = time.perf_counter()
        bar = tqdm(batches, desc=f"epoch {epoch}/{tr.epochs}", unit="batch", disable=not cfg.progress, leave=False)
        for idx in bar:
            batch_words = int(train_w.plan.words[idx].sum())
            for part in np.array_split(idx, min(tr.grad_accum, len(idx))):  # micro-batches, one step
                b = train_w.plan.batch(part)
                ids, mask, pos = _inputs(b, device)
                tags = to_device_nowait(train_w.tags[torch.from_numpy(b.words)], device)
                chain = to_device_nowait(torch.from_numpy(train_w.chains(b)), device)
                with autocast(device, precision):
                    scores = model.word_scores(ids, mask, pos)  # Shape: (words, labels), float32
                loss = model.loss(scores, tags, chain)  # mean over this micro-batch's words
                scaler.scale(loss * (b.words.size / batch_words)).backward()  # ... weighted: the batch's mean
                total += loss.detach() * b.words.size
            if tr.grad_clip:
                scaler.unscale_(optim)
                torch.nn.utils.clip_grad_norm_(model.parameters(), tr.grad_clip)
            scaler.step(optim)
            scaler.update()
            optim.zero_grad(set_to_none=True)
            schedule.step()
            words += batch_words
        bar.close()
        f1 = close_epoch(history, epoch, tr.epochs, total, words, t_epoch, device,
                         lambda: dev_f1(predict(model, dev_w, device, precision, cfg)),
                         lr_end=float(schedule.get_last_lr()[0]))
        if stopper.update(model, epoch, f1):
            break
    stopper.restore(model)
    return TrainResult(stopper.best_epoch, epoch, stopper.best_f1, history, time.perf_counter() - t0)


def save_model(model: FineTuneTagger, loaded: LoadedEncoder, labels: List[str], folder: Path) -> Path:
    """The fine-tuned encoder as a Hugging Face folder (loadable as ``encoder.name_or_path=<folder>``)
    plus its head: ``token_classifier.pt`` (classifier and CRF weights) and ``token_classifier.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    encoder = model.encoder
    encoder.config.id2label = dict(enumerate(labels))
    encoder.config.label2id = {t: i for i, t in enumerate(labels)}
    encoder.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)
    head = {k: v for k, v in model.state_dict().items() if not k.startswith("encoder.")}
    torch.save(head, folder / "token_classifier.pt")
    (folder / "token_classifier.json").write_text(json.dumps(
        {"labels": labels, "pooling": model.pooling, "crf": model.crf is not None,
         "input": "last hidden state, pooled per word"}, indent=2))
    return folder


def run_finetune(cfg: DictConfig, out_dir: Path, t_start: float, reuse: Optional[FeatureReuse] = None) -> RunResult:
    """One fine-tuning run end to end (config checked by the caller); results as :func:`~bert_ner_probe.run.run_probe`'s.

    ``reuse``: a previous frozen job's kept features, dropped here (the encoder needs the memory).
    """
    device = resolve_device(cfg.device)
    precision = training_precision(cfg.trainer.precision, device, finetune=True)
    if cfg.trainer.name != "finetune":
        log.warning("strategy=finetune with trainer=%s (lr %g): the fine-tuning recipe is trainer=finetune",
                    cfg.trainer.name, cfg.trainer.lr)
    if cfg.encoder.dtype not in ("auto", "float32"):
        log.info("strategy=finetune loads the encoder in float32 and trains under %s autocast; "
                 "encoder.dtype=%s applies to frozen features only", precision, cfg.encoder.dtype)
    if reuse is not None:
        reuse.forget()  # a previous frozen job's combined features: the encoder needs the memory
    corpus = corpus_of(cfg)
    t_load = time.perf_counter()
    loaded = load_encoder(cfg.encoder.name_or_path, cfg.device, "float32", cfg.encoder.max_length)
    load_s = time.perf_counter() - t_load

    t_plan = time.perf_counter()
    limit = cfg.finetune.train_limit
    train_w = SplitWindows.of(loaded, corpus, "train", cfg, limit)
    held = {split: SplitWindows.of(loaded, corpus, split, cfg) for split in ("dev", "test")}
    plan_s = time.perf_counter() - t_plan
    n_train = len(corpus["train"].sentences[:limit])
    words_per_batch = cfg.trainer.batch_size * train_w.num_words / max(n_train, 1)

    torch.manual_seed(cfg.seed)
    model = FineTuneTagger(loaded.model, len(corpus.labels), cfg.pooling.method, crf=cfg.tagger.crf)
    model.encoder.requires_grad_(True)
    model.to(device)

    labels = corpus.labels
    lengths = {s: [len(x.words) for x in corpus[s].sentences] for s in ("dev", "test")}

    def tags_of(split: str, ids: np.ndarray) -> List[List[str]]:
        return [[labels[i] for i in sent] for sent in _split_sentences(ids, lengths[split])]

    dev_gold = GoldEntities([s.tags for s in corpus["dev"].sentences], cfg.eval.mode)
    epochs = plan_epochs(train_w, cfg, words_per_batch)
    trained = finetune(model, train_w, held["dev"], lambda ids: dev_gold.f1(tags_of("dev", ids)), cfg, device,
                       precision, epochs)

    t_eval = time.perf_counter()
    metrics = {split: score_and_write(cfg, corpus, split, tags_of(split, predict(model, held[split], device,
                                                                                  precision, cfg)), out_dir)
        for split in ("dev", "test")}
    eval_s = time.perf_counter() - t_eval
    saved = save_model(model, loaded, labels, out_dir / MODEL_DIR) if cfg.finetune.save else None

    eval_passes = {s: len(_eval_batches(w.plan, cfg)) for s, w in held.items()}
    passes = (sum(len(b) for b in epochs[:trained.epochs_run])  # training steps, then dev after each epoch
              + trained.epochs_run * eval_passes["dev"] + eval_passes["dev"] + eval_passes["test"])
    result = results_record(
        cfg, corpus, depth=loaded.num_layers, strategy=cfg.strategy.name, layers=None, combine=None,
        metrics=metrics, trained=trained, device=device, encoder_dtype="float32", precision=precision,
        cache_hit=False, cache_entry=None, encoder_passes=passes, features_reused=False, mix_weights=None,
        timings={"extract_s": 0.0, "select_s": 0.0, "train_s": trained.train_s, "eval_s": eval_s,
                 "total_s": time.perf_counter() - t_start,
                 "load_s": load_s,  # loading the encoder
                 "plan_s": plan_s},  # tokenising and cutting windows, all splits
        finetune={"train_sentences": n_train, "train_words": train_w.num_words,
                  "train_windows": len(train_w.plan.windows), "words_per_batch": words_per_batch,
                  "saved": str(saved) if saved else None})
    write_results(out_dir, result)
    return result
