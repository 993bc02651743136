"""A linear-chain CRF over word scores (pytorch-crf), for any model that scores every word.

For emissions ``e_t`` (a word's label scores, Shape: (labels,)), transitions
``A`` and start/end scores ``s``, ``u``, a tag sequence ``y_1..y_n`` scores::

    score(y) = s[y_1] + Σ_t e_t[y_t] + Σ_{t>1} A[y_{t-1}, y_t] + u[y_n]
    loss     = −(score(gold) − log Σ_y exp score(y)) / n          (per word)

and decoding is Viterbi's ``argmax_y score(y)``. :class:`ChainCRF` is
pytorch-crf's ``CRF`` (same parameters and state-dict keys) with the two
shapes the models hand it: padded sentences (the probes) and *chains* of
words in one flat batch (the fine-tuned encoder, whose words come from
windows: :func:`chains`).
"""

from __future__ import annotations

from typing import Tuple

import torch
from torchcrf import CRF

from bert_ner_probe.data.corpus import IGNORE_INDEX


class ChainCRF(CRF):
    def __init__(self, num_labels: int) -> None:
        super().__init__(num_labels, batch_first=True)

    def padded_loss(self, scores: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood per word. ``scores`` Shape: (batch, time, labels); ``tags`` Shape:
        (batch, time), :data:`IGNORE_INDEX` at padding."""
        mask = tags != IGNORE_INDEX  # Shape: (batch, time)
        nll = -self(scores, tags.clamp(min=0), mask=mask, reduction="sum")
        return nll / mask.sum()

    @torch.no_grad()
    def padded_decode(self, scores: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Viterbi path of each sentence, Shape: (batch, time) on ``scores``' device (0 at padding)."""
        mask = torch.arange(scores.shape[1], device=scores.device)[None, :] < lengths.to(scores.device)[:, None]
        best = torch.zeros(scores.shape[:2], dtype=torch.long)
        for i, path in enumerate(self.decode(scores, mask=mask)):
            best[i, : len(path)] = torch.tensor(path, dtype=torch.long)
        return best.to(scores.device)

    def chain_loss(self, scores: torch.Tensor, tags: torch.Tensor, chain: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood per word of flat words grouped in chains.

        ``scores`` Shape: (words, labels); ``tags``, ``chain`` Shape: (words,), chain ids ascending.
        """
        padded, mask, index = chains(scores, chain)
        gold = torch.zeros(mask.shape, dtype=torch.long, device=tags.device)
        gold[mask] = tags[index[mask]]
        return -self(padded, gold, mask=mask, reduction="sum") / mask.sum()

    @torch.no_grad()
    def chain_decode(self, scores: torch.Tensor, chain: torch.Tensor) -> torch.Tensor:
        """Viterbi label of every word, Shape: (words,), each chain decoded as one sequence."""
        padded, mask, index = chains(scores, chain)
        best = torch.empty(scores.shape[0], dtype=torch.long, device=scores.device)
        for i, path in enumerate(self.decode(padded, mask=mask)):
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
