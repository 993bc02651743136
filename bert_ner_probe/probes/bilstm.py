"""The paper's probe: (optional scalar mix) → input dropout → BiLSTM → dropout → linear → label scores.

As in Devlin et al. (2019, §5.3): a randomly initialised two-layer BiLSTM
(768 units per direction by default) over frozen word features, a linear
classifier on top, trained with token-level cross-entropy; with ``crf=True``
a linear-chain CRF (:mod:`bert_ner_probe.probes.crf`) replaces the softmax.

The LSTM runs packed (``impl="packed"``, cuDNN's fast path) or over the
padded batch with per-sentence reversal for the backward direction
(``impl="padded"``, :mod:`bert_ner_probe.probes.lstm_kernel`, oneDNN's fused kernel on
the CPU). With the same weights both give the same outputs in evaluation;
in training their dropout masks are drawn differently. ``impl="auto"`` picks
padded on the CPU and packed elsewhere (on CUDA, padded makes cuDNN copy
the weights of every layer but the first at each call). Without a CRF a
packing probe reads batches already in packed order
(:class:`~bert_ner_probe.probes.batch.PackedBatch`), so no padding is made at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from bert_ner_probe.choice import Choice
from bert_ner_probe.device import to_device_nowait
from bert_ner_probe.errors import check_at_least, check_fraction
from bert_ner_probe.probes.base import FeatureProbe, FeatureProbeConfig, ProbeInputs
from bert_ner_probe.probes.batch import Layout, PackedBatch, PaddedBatch
from bert_ner_probe.probes.dropout import Dropout
from bert_ner_probe.probes.lstm_kernel import bidirectional_lstm
from bert_ner_probe.probes.registry import register


class LstmImpl(Choice):
    """``probe.impl``: how the LSTM steps over a batch of sentences of different lengths."""

    auto = "auto"  # padded on the CPU, packed elsewhere
    packed = "packed"
    padded = "padded"


@dataclass
class BiLSTMConfig(FeatureProbeConfig):
    """``probe=bilstm``: the paper's probe (two layers of 768 units per direction)."""

    hidden_size: int = 768  # units per direction
    num_layers: int = 2  # LSTM layers
    dropout: float = 0.5  # between LSTM layers and before the classifier
    impl: LstmImpl = LstmImpl.auto  # auto = padded on the CPU, packed on a GPU

    def check(self) -> None:
        super().check()
        check_at_least("probe.hidden_size", self.hidden_size)
        check_at_least("probe.num_layers", self.num_layers)
        check_fraction("probe.dropout", self.dropout)


@register("bilstm", BiLSTMConfig)
class BiLSTMProbe(FeatureProbe):
    def __init__(
        self,
        input_size: int,
        num_labels: int,
        hidden_size: int = BiLSTMConfig.hidden_size,
        num_layers: int = BiLSTMConfig.num_layers,
        dropout: float = BiLSTMConfig.dropout,
        crf: bool = BiLSTMConfig.crf,
        mix_layers: Optional[int] = None,
        input_dropout: float = BiLSTMConfig.input_dropout,
        impl: LstmImpl | str = BiLSTMConfig.impl,
    ) -> None:
        """``mix_layers=K`` expects inputs of Shape: (..., K, input_size) and learns a ScalarMix."""
        super().__init__(num_labels, mix_layers, input_dropout)
        self.impl = LstmImpl.parse(impl, "probe.impl")
        self.dropout = Dropout(dropout)
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers=num_layers, bidirectional=True,
                            batch_first=True, dropout=dropout if num_layers > 1 else 0.0)
        self.classifier = nn.Linear(2 * hidden_size, num_labels)
        self.add_crf(crf)

    @classmethod
    def from_config(cls, cfg: BiLSTMConfig, inputs: ProbeInputs) -> "BiLSTMProbe":
        """The probe of ``cfg`` (``probe.*``) over ``inputs``' words: their width and, for scalar_mix, the mix."""
        return cls(input_size=inputs.width, num_labels=inputs.num_labels, hidden_size=cfg.hidden_size,
                   num_layers=cfg.num_layers, dropout=cfg.dropout, crf=cfg.crf, mix_layers=inputs.mix_layers,
                   input_dropout=cfg.input_dropout, impl=cfg.impl)

    def packs(self, device: torch.device) -> bool:
        """Whether the LSTM runs on packed sequences on ``device`` (``impl``: auto = not on the CPU)."""
        return self.impl == LstmImpl.packed or (self.impl == LstmImpl.auto and device.type != "cpu")

    def layout(self, device: torch.device) -> Layout:
        return Layout.packed if self.crf is None and self.packs(device) else Layout.padded

    def flat_scores(self, batch) -> torch.Tensor:
        if not isinstance(batch, PackedBatch):
            raise TypeError(f"the BiLSTM probe reads sentences, not a {type(batch).__name__}")
        return self.packed_scores(batch.seq)

    def packed_scores(self, seq: PackedSequence) -> torch.Tensor:
        """Label scores of every word of a packed batch, in packed order: Shape: (words, labels), float32.

        ``seq.data``: Shape: (words, input) or (words, K, input) with a mix. No
        padding is made at any point (the fast path on a GPU).
        """
        out, _ = self.lstm(seq._replace(data=self.features(seq.data)))
        return self.classifier(self.dropout(out.data)).float()  # Shape: (words, labels)

    def padded_scores(self, batch: PaddedBatch) -> torch.Tensor:
        return self.emissions(batch.x, batch.lengths)

    def emissions(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Label scores.

        Args:
            x: Shape: (batch, time, input) or (batch, time, K, input) with a mix.
            lengths: Shape: (batch,) — words per sentence, on the CPU.
        Returns:
            Shape: (batch, time, labels), float32 (also under autocast); padded positions hold zeros.
        """
        x = self.features(x)  # Shape: (batch, time, input)
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


def valid_mask(lengths: torch.Tensor, time: int, device: torch.device) -> torch.Tensor:
    """Shape: (batch, time) — True at the first ``lengths[i]`` positions of row ``i``.

    ``lengths`` on the CPU goes to a GPU without the host waiting (:func:`to_device_nowait`).
    """
    return torch.arange(time, device=device)[None, :] < to_device_nowait(lengths, device)[:, None]
