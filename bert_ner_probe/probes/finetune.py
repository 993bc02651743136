"""The fine-tuned encoder: the encoder itself, trained, with a linear classifier over its last layer.

As in Devlin et al. (2019, §5.3, the fine-tuning rows of Table 7): for a
window of sub-tokens, the last hidden state ``h`` (Shape: (time, hidden))
is pooled per word exactly as the frozen features are
(:mod:`bert_ner_probe.features.pooling`: first sub-token by default), and::

    scores(word) = W · dropout(pool(h, word)) + b          # Shape: (labels,)

trained with token-level cross-entropy, every encoder weight included, with
the encoder's own dropout (its masks drawn with half the random draws on a CPU:
:mod:`bert_ner_probe.probes.encoder_dropout`). With
``crf=True`` a linear-chain CRF scores each *chain* instead: the words of
one sentence that one window reads, in order — the whole sentence, unless
the sentence is longer than a window — as the probes' CRF scores sentences.

To the trainer it is one more :class:`~bert_ner_probe.probes.base.Model`:
it reads :class:`~bert_ner_probe.probes.batch.WindowBatch` batches, and its
parameter groups (weight decay off for biases and LayerNorm weights) come
from :func:`bert_ner_probe.training.optim.build_optimizer` as every model's do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List, Optional

import torch
from torch import nn

from bert_ner_probe.features.pooling import pool_words, pooled_width
from bert_ner_probe.probes.base import Model, ProbeConfig, ProbeInputs
from bert_ner_probe.probes.batch import Layout, WindowBatch
from bert_ner_probe.probes.crf import ChainCRF
from bert_ner_probe.probes.dropout import Dropout
from bert_ner_probe.probes.encoder_dropout import use_rand_dropout
from bert_ner_probe.probes.registry import register


@register("finetune", ProbeConfig)  # reads crf; the dropout before its head is the encoder's own
class FineTunedEncoder(Model):
    fine_tunes_encoder = True

    def __init__(self, encoder: nn.Module, num_labels: int, pooling: str = "first",
                 dropout: Optional[float] = None, crf: bool = ProbeConfig.crf) -> None:
        """``encoder``: a Hugging Face base model (e.g. ``BertModel``); ``dropout=None`` takes its ``hidden_dropout_prob``."""
        super().__init__()
        hidden = int(encoder.config.hidden_size)
        self.encoder = encoder
        self.pooling = pooling
        p = float(getattr(encoder.config, "hidden_dropout_prob", 0.1)) if dropout is None else float(dropout)
        use_rand_dropout(encoder)  # the same dropout, its masks drawn faster on a CPU
        self.dropout = Dropout(p)
        self.classifier = nn.Linear(pooled_width(pooling, hidden), num_labels)
        self.crf = ChainCRF(num_labels) if crf else None

    @classmethod
    def from_config(cls, cfg: ProbeConfig, inputs: ProbeInputs) -> "FineTunedEncoder":
        """Over ``inputs.encoder`` (made trainable here), with ``probe.crf``; dropout is the encoder's own."""
        if inputs.encoder is None:
            raise ValueError("probe=finetune trains an encoder: ProbeInputs.encoder is None")
        model = cls(inputs.encoder, inputs.num_labels, inputs.pooling, crf=cfg.crf)
        model.encoder.requires_grad_(True)
        return model

    def layout(self, device: torch.device) -> Layout:
        return Layout.windows

    def word_scores(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    positions: torch.Tensor) -> torch.Tensor:
        """Label scores of every word read from the batch, float32. Shape: (words, labels).

        Args:
            input_ids, attention_mask: Shape: (batch, time).
            positions: Shape: (3, words) — each word's window row, first and last sub-token
                position (see :class:`bert_ner_probe.features.extract.EncoderBatch`), rows ascending.
        """
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        # Shape: hidden (batch, time, hidden) → pooled (words, 1, width)
        words = pool_words(hidden.unsqueeze(2), positions[0], positions[1], positions[2], self.pooling, check=False)
        # The head runs in float32 even under autocast: it is tiny, and its row count (the batch's words) changes
        # with every batch, so in bf16 on a CPU each batch would build and keep oneDNN kernels of a new shape.
        with torch.autocast(hidden.device.type, enabled=False):
            return self.classifier(self.dropout(words[:, 0].float()))  # Shape: (words, labels)

    def batch_scores(self, batch: WindowBatch) -> torch.Tensor:
        return self.word_scores(batch.input_ids, batch.attention_mask, batch.positions)

    def loss(self, batch: WindowBatch) -> torch.Tensor:
        """Mean loss per word: cross-entropy, or the CRF's negative log-likelihood of each chain."""
        scores = self.batch_scores(batch)  # Shape: (words, labels)
        if self.crf is None:
            return nn.functional.cross_entropy(scores, batch.tags)
        return self.crf.chain_loss(scores, batch.tags, batch.chain)

    @torch.no_grad()
    def decode(self, batch: WindowBatch) -> torch.Tensor:
        """Best label of every word, Shape: (words,): argmax, or Viterbi over each chain with a CRF."""
        scores = self.batch_scores(batch)
        return scores.argmax(-1) if self.crf is None else self.crf.chain_decode(scores, batch.chain)

    def save(self, folder: Path, tokenizer: Any, labels: List[str]) -> Path:
        """The fine-tuned encoder as a Hugging Face folder (loadable as ``encoder.name_or_path=<folder>``)
        plus its head: ``token_classifier.pt`` (classifier and CRF weights) and ``token_classifier.json``."""
        folder.mkdir(parents=True, exist_ok=True)
        encoder = self.encoder
        encoder.config.id2label = dict(enumerate(labels))
        encoder.config.label2id = {t: i for i, t in enumerate(labels)}
        encoder.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        head = {k: v for k, v in self.state_dict().items() if not k.startswith("encoder.")}
        torch.save(head, folder / "token_classifier.pt")
        (folder / "token_classifier.json").write_text(json.dumps(
            {"labels": labels, "pooling": self.pooling, "crf": self.crf is not None,
             "input": "last hidden state, pooled per word"}, indent=2))
        return folder
