"""What the trainer reads when the encoder itself trains: a split as encoder windows, with every word's label.

The fine-tuned encoder (:mod:`bert_ner_probe.probes.finetune`) reads the same
corpus, windows (sentence or document context, the same max-context rule,
:mod:`bert_ner_probe.features.windows`) and sub-word pooling as a
frozen-feature run; :class:`WindowData` is its
:class:`~bert_ner_probe.training.trainer.BatchSource`.

Training steps over *windows*: in sentence context a window is a sentence
and a batch holds ``trainer.batch_size`` of them; in document context windows
cover whole documents (a word is read from the window where it has most
context, and the loss counts each word once), and a batch holds as many
windows as hold ``trainer.batch_size`` average training sentences' words on
average, so the optimiser takes about the same number of steps in both
contexts and each word is encoded once per epoch (``W/S`` times where windows of
``W`` pieces start ``S`` apart), not once per sentence. Either way batches are
length-bucketed as the probes' are (:func:`~bert_ner_probe.features.batching.bucketed_batches`):
a document's last window is short, and padding it to its batch's longest
would cost the encoder as much as real tokens.
Evaluation batches hold at most ``trainer.eval_batch_size`` windows and
``encoder.max_tokens`` padded sub-tokens (as extraction batches them).
Every batch's time axis is padded to a multiple of ``finetune.pad_to_multiple_of``
(:meth:`~bert_ner_probe.features.extract.WindowPlan.batch`): with windows of
any length a CPU run under bf16 autocast builds and keeps a oneDNN kernel for
each new shape, and the process grows with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional

import numpy as np
import torch

from bert_ner_probe.data.conll import Corpus
from bert_ner_probe.device import to_device_nowait
from bert_ner_probe.features.batching import batches_by_length, bucketed_batches
from bert_ner_probe.features.encoder import LoadedEncoder
from bert_ner_probe.features.extract import EncoderBatch, WindowPlan, plan_windows_of
from bert_ner_probe.features.windows import Context
from bert_ner_probe.probes.batch import Layout, WindowBatch


@dataclass
class WindowData:
    """One split as encoder windows, with every word's label index."""

    plan: WindowPlan
    tags: torch.Tensor  # Shape: (words,) label indices, on the CPU
    sentence_of_word: np.ndarray  # Shape: (words,) each word's sentence within the split
    context: Context
    max_tokens: int  # padded sub-tokens per evaluation batch (encoder.max_tokens)
    pad_to: int = 1  # a batch's time axis is padded to a multiple of it (finetune.pad_to_multiple_of)

    @property
    def num_words(self) -> int:
        return int(self.tags.numel())

    @property
    def num_sentences(self) -> int:
        return int(self.sentence_of_word[-1]) + 1 if self.num_words else 0

    @property
    def home(self) -> torch.device:
        return torch.device("cpu")

    @classmethod
    def of(cls, loaded: LoadedEncoder, corpus: Corpus, split: str, context: Context | str, max_pieces_per_word: int,
           max_tokens: int, limit: Optional[int] = None, stride: Optional[int] = None,
           pad_to: int = 1) -> "WindowData":
        """Windows of the split's first ``limit`` sentences (all with None), ``stride`` pieces apart (None: half a
        window) and at most ``loaded.max_length`` positions long, each word in the window the encoder's rule gives
        it (:attr:`~bert_ner_probe.features.encoder.LoadedEncoder.causal`); batches padded to a multiple of ``pad_to``."""
        sentences = corpus[split].sentences[:limit]
        plan = plan_windows_of(loaded.tokenizer, [s.words for s in sentences], [s.doc for s in sentences],
                               context, loaded.max_length, max_pieces_per_word, stride, causal=loaded.causal)
        lengths = [len(s.words) for s in sentences]
        tags = torch.as_tensor(corpus.label_ids(split)[:sum(lengths)], dtype=torch.long)
        return cls(plan, tags, np.repeat(np.arange(len(lengths)), lengths), Context(context), max_tokens, pad_to)

    @classmethod
    def from_config(cls, cfg: Any, loaded: LoadedEncoder, corpus: Corpus, split: str) -> "WindowData":
        """The split as a fine-tuning run reads it: ``encoder.context``, ``encoder.max_pieces_per_word`` and
        ``encoder.max_tokens``, ``finetune.stride`` and ``finetune.pad_to_multiple_of``, and
        ``finetune.train_limit`` for the training split."""
        enc, ft = cfg.encoder, cfg.finetune
        return cls.of(loaded, corpus, split, enc.context, enc.max_pieces_per_word, enc.max_tokens,
                      ft.train_limit if split == "train" else None, ft.stride, ft.pad_to_multiple_of)

    def words_per_batch(self, batch_size: int) -> float:
        """The words a document-context training batch aims at: ``batch_size`` average sentences' worth."""
        return batch_size * self.num_words / max(self.num_sentences, 1)

    def windows_per_batch(self, batch_size: int) -> int:
        """Windows of a training batch: ``batch_size`` sentences, or in document context the windows that hold
        :meth:`words_per_batch` words on average (at least one)."""
        if self.context == Context.sentence:
            return batch_size
        return max(1, round(self.words_per_batch(batch_size) * len(self.plan.windows) / max(self.num_words, 1)))

    @property
    def tokens(self) -> int:
        """Encoder positions of one pass over every window (special tokens included, no padding)."""
        return int(self.plan.lengths.sum())

    def chains(self, batch: EncoderBatch) -> np.ndarray:
        """Each word's CRF chain in ``batch``: its sentence's words read from one window. Shape: (words,), ascending."""
        row, sentence = batch.positions[0], self.sentence_of_word[batch.words]
        starts = np.r_[True, (row[1:] != row[:-1]) | (sentence[1:] != sentence[:-1])]
        return np.cumsum(starts) - 1

    # ---------------------------------------------------------------- what the trainer reads (BatchSource)

    def plan_epoch(self, batch_size: int, rng: np.random.Generator, bucket_pool: int) -> List[np.ndarray]:
        """One epoch's batches of window indices (see the module docstring)."""
        return bucketed_batches(self.plan.lengths, self.windows_per_batch(batch_size), rng, bucket_pool)

    def eval_batches(self, batch_size: int, max_words: int) -> List[np.ndarray]:
        """Windows by length, at most ``batch_size`` a batch and ``max_tokens`` padded sub-tokens (not ``max_words``)."""
        return batches_by_length(self.plan.lengths, batch_size, self.max_tokens)

    def words_in(self, windows: np.ndarray) -> int:
        return int(self.plan.words[windows].sum())

    def batch(self, windows: np.ndarray, layout: Layout, device: torch.device) -> WindowBatch:
        """The windows' encoder inputs, word positions, tags and chains on ``device``, without the host waiting."""
        if layout != Layout.windows:
            raise ValueError(f"encoder windows cannot make a {layout} batch")
        b = self.plan.batch(windows, self.pad_to)
        ids, mask, pos, words, chain = (to_device_nowait(torch.from_numpy(a), device) for a in
                                        (b.input_ids, b.attention_mask, b.positions, b.words, self.chains(b)))
        tags = to_device_nowait(self.tags[torch.from_numpy(b.words)], device)
        return WindowBatch(ids, mask, pos, tags, words, chain)
