"""Run the frozen encoder once over a split and pool every layer of every word.

:func:`plan_batches` tokenises, cuts windows (see :mod:`bert_ner_probe.features.windows`),
sorts them by length and batches them by a token budget, so padding stays
small. :func:`extract_split` runs the plan: each batch's hidden states are
stacked to ``(batch, time, layers + 1, hidden)``, pooled per word
(:mod:`bert_ner_probe.features.pooling`) and written into the output array (a memory
map in the cache) at each word's row. On a GPU nothing in the loop makes the
host wait for the GPU: inputs go through pinned memory, the pooled words come
back into pinned buffers, and writer threads put each batch into the output
array once its copy has landed, while the GPU runs the next batches. The
model runs in the dtype it was loaded in (``encoder.dtype``; ``auto`` = bf16
where the hardware has it, see :func:`bert_ner_probe.device.encoder_dtype`).
"""

from __future__ import annotations

import functools
import mmap
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from bert_ner_probe.device import to_device_nowait
from bert_ner_probe.features.batching import batches_by_length
from bert_ner_probe.features.encoder import LoadedEncoder
from bert_ner_probe.features.pooling import pool_words
from bert_ner_probe.features.windows import Window, build_windows, tokenize_words


def special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """The special token ids the tokenizer puts before and after one sequence (e.g. [CLS], [SEP])."""
    enc = tokenizer(["a", "b"], is_split_into_words=True, add_special_tokens=True)
    ids, word_ids = enc["input_ids"], enc.word_ids()
    content = [k for k, w in enumerate(word_ids) if w is not None]
    return list(ids[: content[0]]), list(ids[content[-1] + 1:])


@dataclass
class EncoderBatch:
    """One encoder pass: padded inputs and, for each word read from it, where its sub-tokens sit."""

    input_ids: np.ndarray  # Shape: (batch, time)
    attention_mask: np.ndarray  # Shape: (batch, time)
    positions: np.ndarray  # Shape: (3, words): window row, first and last sub-token position (specials counted)
    words: np.ndarray  # Shape: (words,): each word's row in the split's feature array


@dataclass
class WindowPlan:
    """A split's encoder windows (:mod:`bert_ner_probe.features.windows`) and how to wrap them in special tokens."""

    windows: List[Window]
    head: List[int]  # special token ids before each window's pieces, e.g. [CLS]
    tail: List[int]  # and after them, e.g. [SEP]
    pad_id: int

    @functools.cached_property
    def lengths(self) -> np.ndarray:
        """Encoder positions of each window, special tokens included. Shape: (windows,)"""
        n_special = len(self.head) + len(self.tail)
        return np.asarray([w.piece_ids.size + n_special for w in self.windows], dtype=np.int64)

    @functools.cached_property
    def words(self) -> np.ndarray:
        """Words read from each window. Shape: (windows,)"""
        return np.asarray([w.word_index.size for w in self.windows], dtype=np.int64)

    def batch(self, idx: Sequence[int], pad_to: int = 1) -> "EncoderBatch":
        """The windows ``idx`` as one padded encoder input, each word's sub-token positions with it.

        ``pad_to``: the batch's time axis is padded up to a multiple of it (the attention mask hides the
        padding). Fewer distinct shapes mean fewer kernels built and kept for them (oneDNN's primitive cache
        on a CPU keeps one per shape), at the cost of at most ``pad_to - 1`` padded positions per window.
        """
        if pad_to < 1:
            raise ValueError(f"pad_to={pad_to}: must be at least 1")
        prefix = len(self.head)
        lengths = self.lengths[np.asarray(idx)]
        time_steps = -(-int(lengths.max()) // pad_to) * pad_to  # the longest window, rounded up
        ids = np.full((len(idx), time_steps), self.pad_id, dtype=np.int64)  # Shape: (batch, time)
        mask = np.zeros_like(ids)
        rows, firsts, lasts, targets = [], [], [], []
        for r, k in enumerate(idx):
            w = self.windows[k]
            seq = np.concatenate([self.head, w.piece_ids, self.tail]) if (self.head or self.tail) else w.piece_ids
            ids[r, :seq.size] = seq
            mask[r, :seq.size] = 1
            rows.append(np.full(w.word_index.size, r))
            firsts.append(w.first + prefix)
            lasts.append(w.last + prefix)
            targets.append(w.word_index)
        return EncoderBatch(ids, mask, np.stack([np.concatenate(rows), np.concatenate(firsts),
                                                 np.concatenate(lasts)]), np.concatenate(targets))


def plan_windows_of(tokenizer, sentences: Sequence[Sequence[str]], doc_of_sentence: Sequence[int], context: str,
                    max_length: int, max_pieces_per_word: int = 32, stride: Optional[int] = None) -> WindowPlan:
    """Tokenise and cut into windows: every word of ``sentences`` is read from exactly one window.

    ``stride``: pieces between the starts of a sequence's windows (None = half a window,
    :mod:`bert_ner_probe.features.windows`). An alignment error (a word missing, or read twice) raises.
    """
    head, tail = special_tokens(tokenizer)
    width = max_length - len(head) - len(tail)
    pieces = tokenize_words(tokenizer, sentences, min(max_pieces_per_word, width))
    windows: List[Window] = build_windows(pieces, doc_of_sentence, context, width, stride)
    n_words = sum(len(s) for s in sentences)
    covered = sum(w.word_index.size for w in windows)
    if covered != n_words:
        raise RuntimeError(f"alignment error: {n_words} words, {covered} planned")
    if any(bool((w.last < w.first).any()) for w in windows):
        raise RuntimeError("alignment error: a word's last sub-token precedes its first")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return WindowPlan(windows, head, tail, pad_id)


def plan_batches(tokenizer, sentences: Sequence[Sequence[str]], doc_of_sentence: Sequence[int], context: str,
                 max_length: int, batch_size: int = 64, max_tokens: int = 16384,
                 max_pieces_per_word: int = 32) -> List[EncoderBatch]:
    """Every encoder input of a split: its windows (:func:`plan_windows_of`) batched by length."""
    plan = plan_windows_of(tokenizer, sentences, doc_of_sentence, context, max_length, max_pieces_per_word)
    return [plan.batch(idx) for idx in batches_by_length(plan.lengths, batch_size, max_tokens)]


def extract_split(
    encoder: LoadedEncoder,
    sentences: Sequence[Sequence[str]],
    doc_of_sentence: Sequence[int],
    out: np.ndarray,
    pooling: str,
    context: str,
    batch_size: int = 64,
    max_tokens: int = 16384,
    max_pieces_per_word: int = 32,
    desc: str = "extract",
    progress: bool = True,
) -> dict:
    """Fill ``out`` (Shape: (words, layers + 1, width)) with pooled features.

    Returns counters: windows, encoder passes (batches), pieces fed to the
    encoder, seconds spent in all and on the plan. Every word row of ``out`` is written exactly once.
    """
    t0 = time.perf_counter()
    plan = plan_batches(encoder.tokenizer, sentences, doc_of_sentence, context, encoder.max_length,
                        batch_size, max_tokens, max_pieces_per_word)
    plan_s = time.perf_counter() - t0
    n_words = sum(len(s) for s in sentences)
    if out.shape[0] != n_words:
        raise RuntimeError(f"alignment error: {n_words} words, {out.shape[0]} rows")
    dev = encoder.device
    bar = tqdm(total=n_words, desc=desc, unit="word", disable=not progress, leave=False)
    with torch.inference_mode(), _Writer(out, dev) as writer:
        for b in plan:
            res = encoder.model(input_ids=to_device_nowait(torch.from_numpy(b.input_ids), dev),
                                attention_mask=to_device_nowait(torch.from_numpy(b.attention_mask), dev),
                                output_hidden_states=True)
            hidden = torch.stack(res.hidden_states, dim=2)  # Shape: (batch, time, layers + 1, hidden)
            where = to_device_nowait(torch.from_numpy(b.positions), dev)  # Shape: (3, words)
            pooled = pool_words(hidden, where[0], where[1], where[2], pooling,
                                check=False)  # Shape: (words, layers + 1, width); plan_batches checked
            writer.put(b.words, pooled.to(torch.float16))
            bar.update(b.words.size)
    bar.close()
    return {
        "windows": sum(b.input_ids.shape[0] for b in plan),
        "encoder_passes": len(plan),
        "pieces": int(sum(b.attention_mask.sum() for b in plan)),
        "words": n_words,
        "plan_s": plan_s,  # tokenising, windows and batches
        "seconds": time.perf_counter() - t0,
    }


RELEASE_BYTES = 64 * 2**20


class _Writer:
    """Puts pooled word rows into the output array: at once on the CPU; on a GPU, from threads.

    On a GPU each batch is copied into a pinned host buffer without waiting,
    and a writer thread waits for that copy and fills the rows, while the host
    queues the next batches. Batches own disjoint rows, so ``depth`` of them
    are written at once by as many threads (first writes into a fresh memory
    map are page faults, which parallel threads take side by side). A failed
    write is raised by a later :meth:`put` or on leaving the block.
    """

    def __init__(self, out: np.ndarray, device: torch.device, depth: int = 4) -> None:
        self.out, self.device, self.depth = out, device, depth
        self.pool = ThreadPoolExecutor(depth, thread_name_prefix="extract-writer") if device.type == "cuda" else None
        self.pending: List[Future] = []
        self.unreleased = 0  # bytes written since the map's pages were last dropped from the resident set

    def put(self, rows: np.ndarray, pooled: torch.Tensor) -> None:
        """``out[rows] = pooled`` (Shape: (words, layers + 1, width), float16)."""
        self.unreleased += pooled.numel() * pooled.element_size()
        if self.unreleased > RELEASE_BYTES and isinstance(getattr(self.out, "base", None), mmap.mmap):
            # Written pages of a shared file map count in this process's RSS until unmapped; dropping
            # them keeps the data (in the page cache, written back as usual) and bounds the RSS of
            # an extraction by RELEASE_BYTES instead of the split's size (1.1 GB for CoNLL train).
            self.out.base.madvise(mmap.MADV_DONTNEED)
            self.unreleased = 0
        if self.pool is None:
            self.out[rows] = pooled.cpu().numpy()
            return
        host = torch.empty(pooled.shape, dtype=pooled.dtype, pin_memory=True)
        host.copy_(pooled, non_blocking=True)  # queued on the current stream of pooled's GPU
        done = torch.cuda.Event(blocking=True)  # a waiting writer sleeps instead of spinning on a core
        done.record(torch.cuda.current_stream(pooled.device))  # that GPU's stream, whichever is the current GPU
        while len(self.pending) >= self.depth:
            self.pending.pop(0).result()
        self.pending.append(self.pool.submit(self._write, rows, host, done))

    def _write(self, rows: np.ndarray, host: torch.Tensor, done: torch.cuda.Event) -> None:
        done.synchronize()
        self.out[rows] = host.numpy()

    def __enter__(self) -> "_Writer":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if self.pool is None:
            return
        try:
            for f in self.pending:
                if exc_type is None:
                    f.result()  # a failed write is the error
                else:
                    f.exception()  # wait, and keep the loop's own error as the one raised
        finally:
            self.pool.shutdown(wait=True)
