"""The batches a model reads, one type per layout, and where each batch's words sit in their split.

A model declares the layout it reads (:meth:`bert_ner_probe.probes.base.Model.layout`);
the trainer asks the split's data for a batch in that layout
(:class:`bert_ner_probe.training.tagging_data.TaggingData` for cached
features, :class:`bert_ner_probe.training.window_data.WindowData` for
encoder windows) and hands it to the model's ``loss`` and ``decode``. Every
batch knows its words' rows in the split (``rows``), so a prediction lands in
the split's word order whatever order the batch holds its words in
(:meth:`Batch.put`).

=========  ==================================================  =====================
layout     holds                                               read by
=========  ==================================================  =====================
words      each word alone: no sentence structure              linear, mlp
packed     sentences as one PackedSequence, longest first      bilstm on a GPU
padded     sentences padded to the longest, longest first      bilstm on the CPU, any CRF
windows    encoder windows (sub-token ids) and word positions  the fine-tuned encoder
=========  ==================================================  =====================
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn.utils.rnn import PackedSequence

from bert_ner_probe.choice import Choice
from bert_ner_probe.data.corpus import IGNORE_INDEX


class Layout(Choice):
    """How a batch holds its words (see the module docstring)."""

    words = "words"
    packed = "packed"
    padded = "padded"
    windows = "windows"


class Batch:
    """What every batch has: ``rows``, each word's row in its split (Shape: (words,) unless a subclass says
    otherwise), its number of words and :meth:`put`."""

    rows: torch.Tensor

    @property
    def num_words(self) -> int:
        return int(self.rows.shape[0])

    def put(self, flat: torch.Tensor, labels: torch.Tensor) -> None:
        """Write ``labels`` (as the model's ``decode`` returns them for this batch) into ``flat`` at the words' rows.

        ``flat``: Shape: (split words + 1,); its last slot takes padding. Here labels Shape: (words,).
        """
        flat[self.rows.to(flat.device)] = labels.to(flat.device)


@dataclass
class WordsBatch(Batch):
    """Words without sentences: ``x`` Shape: (words, width) or (words, K, width) float32; ``tags``, ``rows`` Shape: (words,)."""

    x: torch.Tensor
    tags: torch.Tensor
    rows: torch.Tensor


@dataclass
class PackedBatch(Batch):
    """Sentences packed time-major, longest first: ``seq.data`` Shape: (words, ...); ``tags``, ``rows`` Shape: (words,)."""

    seq: PackedSequence
    tags: torch.Tensor
    rows: torch.Tensor  # packed order


@dataclass
class PaddedBatch(Batch):
    """Sentences padded to the longest, longest first.

    ``x`` Shape: (batch, time, ...) float32, zero at padding; ``lengths`` Shape:
    (batch,) on the CPU; ``tags`` Shape: (batch, time), :data:`IGNORE_INDEX` at
    padding; ``rows`` and ``valid`` Shape: (batch, time) on the features'
    device: each position's word row (0 at padding) and whether it is a word.
    """

    x: torch.Tensor
    lengths: torch.Tensor
    tags: torch.Tensor
    rows: torch.Tensor
    valid: torch.Tensor

    @classmethod
    def of(cls, x: torch.Tensor, lengths: torch.Tensor, tags: torch.Tensor | None = None) -> "PaddedBatch":
        """A batch of sentences already padded: ``x`` Shape: (batch, time, ...), ``lengths`` Shape: (batch,).

        Rows number the words sentence after sentence; ``tags`` Shape: (batch, time)
        (:data:`IGNORE_INDEX` at padding; all :data:`IGNORE_INDEX` when None).
        """
        lengths = torch.as_tensor(lengths, dtype=torch.long).cpu()
        pos = torch.arange(x.shape[1], device=x.device)
        valid = pos[None, :] < lengths.to(x.device)[:, None]  # Shape: (batch, time)
        starts = (torch.cumsum(lengths, 0) - lengths).to(x.device)
        rows = torch.where(valid, starts[:, None] + pos[None, :], 0)
        tags = torch.full(valid.shape, IGNORE_INDEX, dtype=torch.long, device=x.device) if tags is None else tags
        return cls(x, lengths, tags, rows, valid)

    @property
    def num_words(self) -> int:
        return int(self.lengths.sum())

    def put(self, flat: torch.Tensor, labels: torch.Tensor) -> None:
        # labels Shape: (batch, time); padding goes to the sink slot at the end of flat
        sink = flat.shape[0] - 1
        flat.scatter_(0, torch.where(self.valid, self.rows, sink).flatten(), labels.to(flat.device).flatten())


@dataclass
class WindowBatch(Batch):
    """Encoder windows: sub-token inputs, each word's position in them, its tag, row and CRF chain.

    ``input_ids``, ``attention_mask`` Shape: (batch, time); ``positions`` Shape:
    (3, words): window row, first and last sub-token position; ``tags``,
    ``rows``, ``chain`` Shape: (words,) — ``chain`` numbers the runs of one
    sentence's words read from one window, ascending (what a CRF scores).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    positions: torch.Tensor
    tags: torch.Tensor
    rows: torch.Tensor
    chain: torch.Tensor
