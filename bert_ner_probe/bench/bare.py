"""The bare reference loops the harness is measured against, deliberately bare.

* Extraction: :func:`bare_inputs` pads the encoder inputs the harness plans
  (:func:`bert_ner_probe.features.extract.plan_batches`: same windows, same
  length-sorted batches) and copies them to the device in advance;
  :func:`bare_forward` then runs ``model(..., output_hidden_states=True)``
  under ``torch.inference_mode`` and nothing else.
* Training: :func:`bare_batches` pads the harness's first-epoch batches in
  advance on the device; :func:`bare_epoch` runs a two-layer BiLSTM + linear
  (:class:`BareTagger`, with a bare scalar mix in front when the features keep
  K layers) with cross-entropy and Adam over them, in one of two forms:
  *packed* (``pack_padded_sequence``, exact) or *padded* (one ``nn.LSTM``
  call on the padded batch: the backward direction reads padding, which is
  wrong, but it is the fastest call there is). No dropout, no gradient
  clipping: the bare loop's best case.
* Fine-tuning: :func:`bare_finetune_batches` builds the harness's
  fine-tuning batches (:class:`~bert_ner_probe.training.window_data.WindowData`,
  the same windows in the same batches) in advance on the device;
  :func:`bare_finetune_epoch` runs the encoder, takes each word's first
  sub-token, a linear layer, cross-entropy, backward and a fused AdamW step
  per batch, and nothing else (no clipping, no schedule).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_sequence

from bert_ner_probe.data.corpus import IGNORE_INDEX
from bert_ner_probe.device import autocast
from bert_ner_probe.features.batching import bucketed_batches
from bert_ner_probe.features.encoder import LoadedEncoder
from bert_ner_probe.features.extract import plan_batches
from bert_ner_probe.training.tagging_data import TaggingData
from bert_ner_probe.training.window_data import WindowData

EncoderBatch = Tuple[torch.Tensor, torch.Tensor]  # input_ids, attention_mask, on the device
FinetuneBatch = Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
# input_ids, attention_mask, each word's window row and first sub-token position, its tag
BareBatch = Tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # features, lengths (CPU), tags


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> Tuple[float, Any]:
    """Seconds ``fn`` takes (device work included) and its result."""
    sync(device)
    t0 = time.perf_counter()
    result = fn()
    sync(device)
    return time.perf_counter() - t0, result


# --------------------------------------------------------------------------- extraction


def bare_inputs(loaded: LoadedEncoder, sentences: Sequence[Sequence[str]], docs: Sequence[int], context: str,
                batch_size: int, max_tokens: int, max_pieces_per_word: int) -> List[EncoderBatch]:
    """``(input_ids, attention_mask)`` of every encoder pass the harness plans, already on the device."""
    plan = plan_batches(loaded.tokenizer, sentences, docs, context, loaded.max_length, batch_size, max_tokens,
                        max_pieces_per_word)
    return [(torch.from_numpy(b.input_ids).to(loaded.device), torch.from_numpy(b.attention_mask).to(loaded.device))
            for b in plan]


def bare_forward(loaded: LoadedEncoder, batches: Sequence[EncoderBatch]) -> None:
    """The bare extraction loop: ``model(..., output_hidden_states=True)`` and nothing else."""
    with torch.inference_mode():
        for ids, mask in batches:
            loaded.model(input_ids=ids, attention_mask=mask, output_hidden_states=True)


def warm_up_forward(loaded: LoadedEncoder, batches: Sequence[EncoderBatch]) -> None:
    """One untimed bare pass over the shortest and the longest batches (kernels chosen, memory allocated)."""
    timed(lambda: bare_forward(loaded, list(batches[:2]) + list(batches[-1:])), loaded.device)


# --------------------------------------------------------------------------- training


def bare_batches(data: TaggingData, batch_size: int, seed: int, device: torch.device, bucket_pool: int
                 ) -> Tuple[List[BareBatch], int]:
    """The harness's first-epoch batches, padded in advance for the bare loops.

    Returns ``[(features (float32, on device), lengths, tags (IGNORE_INDEX at padding, on device))]``
    and the number of words. Same sentences per batch as the harness's first
    epoch with this seed (:func:`bucketed_batches` on a fresh ``default_rng(seed)``),
    longest first (as ``pack_padded_sequence`` wants). ``data.x`` must be a tensor.
    """
    rng = np.random.default_rng(seed)
    out: List[BareBatch] = []
    words = 0
    for ids in bucketed_batches(data.lengths, batch_size, rng, bucket_pool):
        ids = ids[np.argsort(-data.lengths[ids], kind="stable")]
        spans = [(int(data.offsets[i]), int(data.offsets[i + 1])) for i in ids]
        lens = torch.tensor([e - s for s, e in spans])
        # Shape: (B, T, width), or (B, T, K, width) for features that keep K layers
        x = pad_sequence([data.x[s:e].float() for s, e in spans], batch_first=True).to(device)
        y = pad_sequence([data.tags[s:e] for s, e in spans], batch_first=True, padding_value=IGNORE_INDEX).to(device)
        out.append((x, lens, y))
        words += int(lens.sum())
    return out, words


class BareMix(nn.Module):
    """``γ · Σ_k softmax(w)_k · h_k`` over the K layers of a word, written out."""

    def __init__(self, num_layers: int) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(num_layers))
        self.gamma = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shape: (..., K, width) → (..., width)."""
        return self.gamma * (torch.softmax(self.weights, 0)[:, None] * x).sum(dim=-2)


class BareTagger(nn.Module):
    """Two-layer BiLSTM + linear, nothing else (a :class:`BareMix` in front when ``mix_layers`` is given)."""

    def __init__(self, input_size: int, hidden_size: int, num_labels: int, mix_layers: Optional[int] = None) -> None:
        super().__init__()
        self.mix = BareMix(mix_layers) if mix_layers else None
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers=2, bidirectional=True, batch_first=True)
        self.linear = nn.Linear(2 * hidden_size, num_labels)


def bare_epoch(model: BareTagger, optim: torch.optim.Optimizer, batches: Sequence[BareBatch], packed: bool,
               precision: str, device: torch.device) -> None:
    """One pass of forward, cross-entropy, backward and Adam step per prepared batch.

    ``packed``: run the LSTM on ``pack_padded_sequence`` input; else on the padded batch as it is.
    """
    model.train()
    for x, lens, y in batches:
        with autocast(device, precision):
            if model.mix is not None:
                x = model.mix(x)  # Shape: (B, T, K, width) → (B, T, width)
            if packed:
                out, _ = model.lstm(pack_padded_sequence(x, lens, batch_first=True))
                scores = model.linear(out.data)  # Shape: (words, labels)
                target = pack_padded_sequence(y, lens, batch_first=True).data
            else:
                out, _ = model.lstm(x)
                scores = model.linear(out).flatten(0, 1)  # Shape: (batch * time, labels)
                target = y.flatten()
            loss = nn.functional.cross_entropy(scores.float(), target, ignore_index=IGNORE_INDEX)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()


@dataclass(frozen=True)
class BareSpec:
    """What a bare tagger is built from: LSTM input width, units per direction, labels, mixed layers, Adam's rate."""

    width: int
    hidden_size: int
    num_labels: int
    mix_layers: Optional[int]
    lr: float


def bare_epoch_times(shape: BareSpec, batches: Sequence[BareBatch], epochs: int, packed: bool, precision: str,
                     device: torch.device, seed: int) -> List[float]:
    """Seconds of each of ``epochs`` bare epochs of a fresh :class:`BareTagger` (seeded) and Adam."""
    torch.manual_seed(seed)
    model = BareTagger(shape.width, shape.hidden_size, shape.num_labels, shape.mix_layers).to(device)
    optim = torch.optim.Adam(model.parameters(), lr=shape.lr, fused=device.type in ("cpu", "cuda"))
    return [timed(lambda: bare_epoch(model, optim, batches, packed, precision, device), device)[0]
            for _ in range(epochs)]


def warm_up_epochs(shape: BareSpec, batches: Sequence[BareBatch], precision: str, device: torch.device,
                   seed: int) -> None:
    """One untimed bare epoch of each form over the first 8 batches."""
    for packed in (True, False):
        bare_epoch_times(shape, batches[:8], 1, packed, precision, device, seed)


# --------------------------------------------------------------------------- fine-tuning


def bare_finetune_batches(data: WindowData, batches: Sequence[np.ndarray], device: torch.device
                          ) -> List[FinetuneBatch]:
    """The windows of each of ``batches`` (the harness's epoch) as tensors on ``device``, built in advance."""
    out: List[FinetuneBatch] = []
    for units in batches:
        b = data.plan.batch(units, data.pad_to)
        out.append((torch.from_numpy(b.input_ids).to(device), torch.from_numpy(b.attention_mask).to(device),
                    torch.from_numpy(b.positions[0]).to(device), torch.from_numpy(b.positions[1]).to(device),
                    data.tags[torch.from_numpy(b.words)].to(device)))
    return out


def bare_finetune_epoch(encoder: nn.Module, head: nn.Linear, optim: torch.optim.Optimizer,
                        batches: Sequence[FinetuneBatch], precision: str, device: torch.device) -> None:
    """One pass of encoder forward, first sub-token, linear, cross-entropy, backward and AdamW step per batch."""
    encoder.train()
    for ids, mask, row, first, tags in batches:
        with autocast(device, precision):
            hidden = encoder(input_ids=ids, attention_mask=mask).last_hidden_state  # Shape: (batch, time, hidden)
            scores = head(hidden[row, first])  # Shape: (words, labels)
            loss = nn.functional.cross_entropy(scores.float(), tags)
        loss.backward()
        optim.step()
        optim.zero_grad(set_to_none=True)
