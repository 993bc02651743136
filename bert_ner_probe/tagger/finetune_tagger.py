"""The fine-tuning tagger: the encoder itself, trained, with a linear classifier over its last layer.

As in Devlin et al. (2019, §5.3, the fine-tuning rows of Table 7): for a
window of sub-tokens, the last hidden state ``h`` (Shape: (time, hidden))
is pooled per word exactly as the frozen features are
(:mod:`bert_ner_probe.features.pooling`: first sub-token by default), and::

    scores(word) = W · dropout(pool(h, word)) + b          # Shape: (labels,)

trained with token-level cross-entropy, every encoder weight included. With
``crf=True`` a linear-chain CRF (pytorch-crf) scores each *chain* instead:
the words of one sentence that one window reads, in order — the whole
sentence, unless the sentence is longer than a window — as the probe's CRF
scores sentences.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn

from bert_ner_probe.features.pooling import pool_words, pooled_width

#: The strategy name that selects fine-tuning (``strategy=finetune``) instead of a frozen-feature probe.
from bert_ner_probe.strategy import FINETUNE  # noqa: E402,F401  (re-exported for run.py)


class FineTuneTagger(nn.Module):
    def __init__(self, encoder: nn.Module, num_labels: int, pooling: str = "first",
                 dropout: Optional[float] = None, crf: bool = False) -> None:
        """``encoder``: a Hugging Face base model (e.g. ``BertModel``); ``dropout=None`` takes its ``hidden_dropout_prob``."""
        super().__init__()
        hidden = int(encoder.config.hidden_size)
        self.encoder = encoder
        self.pooling = pooling
        p = float(getattr(encoder.config, "hidden_dropout_prob", 0.1)) if dropout is None else float(dropout)
        self.dropout = nn.Dropout(p)
        self.classifier = nn.Linear(pooled_width(pooling, hidden), num_labels)
        self.crf = None
        if crf:
            from torchcrf import CRF

            self.crf = CRF(num_labels, batch_first=True)

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
        return self.classifier(self.dropout(words[:, 0])).float()

    def loss(self, scores: torch.Tensor, tags: torch.Tensor, chain: torch.Tensor) -> torch.Tensor:
        """Mean loss per word: cross-entropy, or the CRF's negative log-likelihood of each chain.

        ``scores`` Shape: (words, labels); ``tags``, ``chain`` Shape: (words,) (chain ids ascending).
        """
        if self.crf is None:
            return nn.functional.cross_entropy(scores, tags)
        padded, mask, index = chains(scores, chain)
        gold = torch.zeros(mask.shape, dtype=torch.long, device=tags.device)
        gold[mask] = tags[index[mask]]
        return -self.crf(padded, gold, mask=mask, reduction="sum") / mask.sum()

    @torch.no_grad()
    def decode(self, scores: torch.Tensor, chain: torch.Tensor) -> torch.Tensor:
        """Best label of every word, Shape: (words,): argmax, or Viterbi over each chain with a CRF."""
        if self.crf is None:
            return scores.argmax(-1)
        padded, mask, index = chains(scores, chain)
        best = torch.empty(scores.shape[0], dtype=torch.long, device=scores.device)
        for i, path in enumerate(self.crf.decode(padded, mask=mask)):
            best[index[i, : len(path)]] = torch.as_tensor(path, dtype=torch.long, device=scores.device)
        return best


def chains(scores: torch.Tensor, chain: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Words grouped into padded chains, for a CRF.

    Args:
        scores: Shape: (words, labels); chain: Shape: (words,), ascending (each chain's words contiguous).
    Returns:
        ``(padded, mask, index)``: padded Shape: (chains, longest, labels) (0 at padding), mask
        Shape: (chains, longest) bool, and index Shape: (chains, longest): each position's word
        (0 at padding).
    """
    counts = torch.bincount(chain)
    counts = counts[counts > 0]  # Shape: (chains,)
    starts = torch.cumsum(counts, 0) - counts
    pos = torch.arange(int(counts.max()), device=scores.device)  # Shape: (longest,)
    mask = pos[None, :] < counts[:, None]
    index = torch.where(mask, starts[:, None] + pos[None, :], 0)
    padded = scores[index] * mask.unsqueeze(-1)
    return padded, mask, index
