"""The probe: (optional scalar mix) → input dropout → BiLSTM → dropout → linear → label scores.

As in Devlin et al. (2019, §5.3): a randomly initialised two-layer BiLSTM
(768 units per direction by default) over frozen word features, a linear
classifier on top, trained with token-level cross-entropy; with ``crf=True``
a linear-chain CRF (pytorch-crf) replaces the softmax.

The LSTM runs packed (``impl="packed"``, cuDNN's fast path) or over the
padded batch with per-sentence reversal for the backward direction
(``impl="padded"``, :mod:`bert_ner_probe.tagger.bilstm`, oneDNN's fused kernel on
the CPU). With the same weights both give the same outputs in evaluation;
in training their dropout masks are drawn differently. ``impl="auto"`` picks
padded on the CPU and packed elsewhere (on CUDA, padded makes cuDNN copy
the weights of every layer but the first at each call). Without a CRF a
packing tagger also takes batches already in packed order
(:meth:`BiLSTMTagger.packed_scores`), so no padding is made at all.
"""

from __future__ import annotations

from typing import Any, List, Optional

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from bert_ner_probe.choice import Choice
from bert_ner_probe.device import to_device_nowait
from bert_ner_probe.tagger.bilstm import bidirectional_lstm
from bert_ner_probe.tagger.dropout import Dropout
from bert_ner_probe.strategy.combiner import Combiner
from bert_ner_probe.strategy.scalar_mix import ScalarMix



class LstmImpl(Choice):
    """``tagger.impl``: how the LSTM steps over a batch of sentences of different lengths."""

    auto = "auto"  # padded on the CPU, packed elsewhere
    packed = "packed"
    padded = "padded"


class BiLSTMTagger(nn.Module):
    def __init__(
        self,
        input_size: int,
        num_labels: int,
        hidden_size: int = 768,
        num_layers: int = 2,
        dropout: float = 0.5,
        crf: bool = False,
        mix_layers: Optional[int] = None,
        input_dropout: float = 0.0,
        impl: LstmImpl | str = LstmImpl.auto,
    ) -> None:
        """``mix_layers=K`` expects inputs of Shape: (batch, time, K, input_size) and learns a ScalarMix."""
        super().__init__()
        self.impl = LstmImpl.parse(impl, "tagger.impl")
        self.mix = ScalarMix(mix_layers) if mix_layers else None
        self.input_dropout = Dropout(input_dropout)
        self.dropout = Dropout(dropout)
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers=num_layers, bidirectional=True,
                            batch_first=True, dropout=dropout if num_layers > 1 else 0.0)
        self.classifier = nn.Linear(2 * hidden_size, num_labels)
        self.crf = None
        if crf:
            from torchcrf import CRF

            self.crf = CRF(num_labels, batch_first=True)

    @classmethod
    def from_config(cls, tagger_cfg: Any, combiner: Combiner, num_labels: int) -> "BiLSTMTagger":
        """The tagger of ``tagger_cfg`` over ``combiner``'s words: its input width and, for scalar_mix, its mix."""
        return cls(input_size=combiner.output_width, num_labels=num_labels, hidden_size=tagger_cfg.hidden_size,
                   num_layers=tagger_cfg.num_layers, dropout=tagger_cfg.dropout, crf=tagger_cfg.crf,
                   mix_layers=combiner.mix_layers, input_dropout=tagger_cfg.input_dropout, impl=tagger_cfg.impl)

    def packs(self, device: torch.device) -> bool:
        """Whether the LSTM runs on packed sequences on ``device`` (``impl``: auto = not on the CPU)."""
        return self.impl == LstmImpl.packed or (self.impl == LstmImpl.auto and device.type != "cpu")

    def packed_scores(self, seq: PackedSequence) -> torch.Tensor:
        """Label scores of every word of a packed batch, in packed order: Shape: (words, labels), float32.

        ``seq.data``: Shape: (words, input) or (words, K, input) with a mix. No
        padding is made at any point (the fast path on a GPU; see
        :meth:`bert_ner_probe.training.train.TaggingData.packed`).
        """
        x = seq.data
        if self.mix is not None:
            x = self.mix(x)  # Shape: (words, input)
        out, _ = self.lstm(seq._replace(data=self.input_dropout(x)))
        return self.classifier(self.dropout(out.data)).float()  # Shape: (words, labels)

    def packed_loss(self, seq: PackedSequence, tags: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy per word; ``tags``: Shape: (words,), in packed order. Not for a CRF."""
        if self.crf is not None:
            raise ValueError("a CRF scores whole sentences: use loss() on padded batches")
        return nn.functional.cross_entropy(self.packed_scores(seq), tags)

    def emissions(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Label scores.

        Args:
            x: Shape: (batch, time, input) or (batch, time, K, input) with a mix.
            lengths: Shape: (batch,) — words per sentence, on the CPU.
        Returns:
            Shape: (batch, time, labels), float32 (also under autocast); padded positions hold zeros.
        """
        if self.mix is not None:
            x = self.mix(x)  # Shape: (batch, time, input)
        x = self.input_dropout(x)
        if not self.packs(x.device):
            out = bidirectional_lstm(self.lstm, x, lengths)  # Shape: (batch, time, 2h)
        else:
            # Longest first (as the trainer batches): no sort on the GPU, no index copy from the host.
            longest_first = bool((lengths[:-1] >= lengths[1:]).all())
            packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=longest_first)
            out, _ = self.lstm(packed)
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])  # Shape: (batch, time, 2h)
        scores = self.classifier(self.dropout(out)).float()
        return scores * valid_mask(lengths, scores.shape[1], scores.device).unsqueeze(-1)

    def loss(self, x: torch.Tensor, lengths: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
        """Mean loss per word. ``tags``: Shape: (batch, time), -100 at padding."""
        scores = self.emissions(x, lengths)
        if self.crf is not None:
            mask = tags != -100  # Shape: (batch, time)
            nll = -self.crf(scores, tags.clamp(min=0), mask=mask, reduction="sum")
            return nll / mask.sum()
        return nn.functional.cross_entropy(scores.reshape(-1, scores.shape[-1]), tags.reshape(-1),
                                           ignore_index=-100)

    @torch.no_grad()
    def decode(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Best label index per position, Shape: (batch, time), on ``x``'s device (0 at padding).

        Viterbi with a CRF, argmax without; no copy to the host.
        """
        scores = self.emissions(x, lengths)  # Shape: (batch, time, labels)
        if self.crf is None:
            return scores.argmax(-1)
        paths = self.crf.decode(scores, mask=valid_mask(lengths, scores.shape[1], scores.device))
        best = torch.zeros(scores.shape[:2], dtype=torch.long)
        for i, path in enumerate(paths):
            best[i, : len(path)] = torch.tensor(path, dtype=torch.long)
        return best.to(scores.device)

    def predict(self, x: torch.Tensor, lengths: torch.Tensor) -> List[List[int]]:
        """Best label index per word of each sentence (Viterbi with a CRF, argmax without)."""
        best = self.decode(x, lengths).cpu()
        return [best[i, : int(n)].tolist() for i, n in enumerate(lengths)]


def valid_mask(lengths: torch.Tensor, time: int, device: torch.device) -> torch.Tensor:
    """Shape: (batch, time) — True at the first ``lengths[i]`` positions of row ``i``.

    ``lengths`` on the CPU goes to a GPU without the host waiting (:func:`to_device_nowait`).
    """
    return torch.arange(time, device=device)[None, :] < to_device_nowait(lengths, device)[:, None]

