"""Run the frozen encoder once over a split and pool every cached hidden state of every word.

:func:`plan_batches` tokenises, cuts windows (see :mod:`bert_ner_probe.features.windows`),
sorts them by length and batches them by a token budget, so padding stays
small. :func:`extract_split` runs the plan. :class:`HiddenStates` hands each
hidden state to the pooling as the model produces it: a forward pre-hook on
the first transformer layer gives hidden state 0 (the embeddings' output, the
first layer's input), a forward hook on layer ``i`` gives hidden state
``i + 1``, and the model's ``last_hidden_state`` gives ``N`` (after the final
norm of a decoder such as GPT-2 or Llama, as ``output_hidden_states`` gives
it). Each state is pooled per word (:mod:`bert_ner_probe.features.pooling`)
and written to its own output (a :class:`~bert_ner_probe.features.row_file.RowFile`
of the cache) at each word's row, then dropped; so a pass holds one hidden
state at a time, whatever the encoder's depth, not ``N + 1`` of them and their
stack; after each pass the heap's freed pages go back to the system
(:func:`~bert_ner_probe.device.trim_heap`), so the next batch's shapes do not
pile up free memory. The first batch is also run with ``output_hidden_states=True`` and
every hooked state compared with it; a model whose hooked states differ (an
architecture that changes its states between layers) is read through
``output_hidden_states`` instead.

On a GPU nothing in the loop makes the host wait for the GPU: inputs go through
pinned memory, the pooled words come back into pinned buffers, and writer
threads put each batch into the outputs once its copy has landed, while the GPU
runs the next batches. The model runs in the dtype it was loaded in
(``encoder.dtype``; ``auto`` = bf16 where the hardware has it, see
:func:`bert_ner_probe.device.encoder_dtype`).
"""

from __future__ import annotations

import functools
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from bert_ner_probe.device import to_device_nowait, trim_heap
from bert_ner_probe.features.batching import batches_by_length
from bert_ner_probe.features.encoder import LoadedEncoder, layer_stack
from bert_ner_probe.features.pooling import pool_words
from bert_ner_probe.features.windows import Window, build_windows, tokenize_words

log = logging.getLogger(__name__)


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
                    max_length: int, max_pieces_per_word: int = 32, stride: Optional[int] = None,
                    causal: bool = False) -> WindowPlan:
    """Tokenise and cut into windows: every word of ``sentences`` is read from exactly one window.

    ``stride``: pieces between the starts of a sequence's windows (None = half a window,
    :mod:`bert_ner_probe.features.windows`); ``causal``: each word from the window where it has the most
    left context. An alignment error (a word missing, or read twice) raises.
    """
    head, tail = special_tokens(tokenizer)
    width = max_length - len(head) - len(tail)
    pieces = tokenize_words(tokenizer, sentences, min(max_pieces_per_word, width))
    windows: List[Window] = build_windows(pieces, doc_of_sentence, context, width, stride, causal)
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
                 max_pieces_per_word: int = 32, causal: bool = False) -> List[EncoderBatch]:
    """Every encoder input of a split: its windows (:func:`plan_windows_of`) batched by length."""
    plan = plan_windows_of(tokenizer, sentences, doc_of_sentence, context, max_length, max_pieces_per_word,
                           causal=causal)
    return [plan.batch(idx) for idx in batches_by_length(plan.lengths, batch_size, max_tokens)]


Sink = Callable[[int, torch.Tensor], None]  # (hidden-state index, Shape: (batch, time, hidden))


class HiddenStates:
    """Runs the encoder and hands each wanted hidden state to a sink as the model produces it.

    With hooks (the module docstring) when the model has a stack of ``num_layers`` layers
    (:func:`~bert_ner_probe.features.encoder.layer_stack`) and :meth:`check` finds the hooked states
    equal to ``output_hidden_states``; else every pass runs with ``output_hidden_states=True``.
    Use as a context manager: leaving it removes the hooks.
    """

    def __init__(self, model: Any, num_layers: int, wanted: Sequence[int]) -> None:
        self.model, self.num_layers, self.wanted = model, int(num_layers), frozenset(int(h) for h in wanted)
        self.sink: Optional[Sink] = None
        self.handles: List[Any] = []
        stack = layer_stack(model, self.num_layers)
        self.hooked = stack is not None
        if stack is None:
            return
        self.handles.append(stack[0].register_forward_pre_hook(self._first_input, with_kwargs=True))
        for i, layer in enumerate(stack[:-1]):  # hidden state N is the model's last_hidden_state (after a final norm)
            if i + 1 in self.wanted:
                self.handles.append(layer.register_forward_hook(functools.partial(self._output, i + 1)))

    def _emit(self, state: int, hidden: torch.Tensor) -> None:
        if self.sink is not None and state in self.wanted:
            self.sink(state, hidden)

    def _first_input(self, module: Any, args: tuple, kwargs: dict) -> None:
        self._emit(0, args[0] if args else kwargs["hidden_states"])

    def _output(self, state: int, module: Any, args: tuple, output: Any) -> None:
        self._emit(state, output[0] if isinstance(output, (tuple, list)) else output)

    def run(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, sink: Sink) -> None:
        """One forward pass; ``sink(h, state)`` for each wanted hidden state ``h``, in order."""
        if not self.hooked:
            res = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
            for h in sorted(self.wanted):
                sink(h, res.hidden_states[h])
            return
        self.sink = sink
        try:
            res = self.model(input_ids=input_ids, attention_mask=attention_mask)
        finally:
            self.sink = None
        if self.num_layers in self.wanted:
            sink(self.num_layers, res.last_hidden_state)

    def check(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> bool:
        """Whether the hooked states equal ``output_hidden_states``' on these inputs, bit for bit; if they do not,
        the hooks are removed and every later pass reads ``output_hidden_states``."""
        if not self.hooked:
            return False
        got: Dict[int, torch.Tensor] = {}
        self.run(input_ids, attention_mask, lambda h, x: got.__setitem__(h, x.clone()))
        ref = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True).hidden_states
        same = (len(ref) == self.num_layers + 1 and sorted(got) == sorted(self.wanted)
                and all(torch.equal(got[h], ref[h]) for h in self.wanted))
        if not same:
            log.info("%s: hooked hidden states differ from output_hidden_states; reading those instead",
                     type(self.model).__name__)
            self.close()
            self.hooked = False
        return same

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def __enter__(self) -> "HiddenStates":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def extract_split(
    encoder: LoadedEncoder,
    sentences: Sequence[Sequence[str]],
    doc_of_sentence: Sequence[int],
    out: Mapping[int, Any],
    pooling: str,
    context: str,
    batch_size: int = 64,
    max_tokens: int = 16384,
    max_pieces_per_word: int = 32,
    desc: str = "extract",
    progress: bool = True,
) -> dict:
    """Fill ``out[h]`` (Shape: (words, width), one per wanted hidden state ``h``) with pooled features.

    ``out[h][rows] = values`` writes rows (a numpy array or a
    :class:`~bert_ner_probe.features.row_file.RowFile`); ``pooling`` is resolved (not ``auto``). Windows follow
    ``encoder.causal``. Returns counters: windows, encoder passes (batches), pieces fed to the encoder, seconds
    spent in all and on the plan, and whether the hidden states were hooked. Every word row is written exactly once;
    each batch is padded only when its turn comes.
    """
    t0 = time.perf_counter()
    plan = plan_windows_of(encoder.tokenizer, sentences, doc_of_sentence, context, encoder.max_length,
                           max_pieces_per_word, causal=encoder.causal)
    batches = batches_by_length(plan.lengths, batch_size, max_tokens)
    plan_s = time.perf_counter() - t0
    n_words = sum(len(s) for s in sentences)
    for h, dest in out.items():
        if dest.shape[0] != n_words:
            raise RuntimeError(f"alignment error: {n_words} words, {dest.shape[0]} rows for hidden state {h}")
    dev = encoder.device
    bar = tqdm(total=n_words, desc=desc, unit="word", disable=not progress, leave=False)
    windows = pieces = 0
    with torch.inference_mode(), _Writer(out, dev) as writer, \
            HiddenStates(encoder.model, encoder.num_layers, list(out)) as states:
        for k, idx in enumerate(batches):
            b = plan.batch(idx)
            ids = to_device_nowait(torch.from_numpy(b.input_ids), dev)
            mask = to_device_nowait(torch.from_numpy(b.attention_mask), dev)
            if k == 0:
                states.check(ids[:1], mask[:1])  # one window: the check holds every state of it twice
            where = to_device_nowait(torch.from_numpy(b.positions), dev)  # Shape: (3, words)

            def sink(h: int, hidden: torch.Tensor, rows: np.ndarray = b.words, where: torch.Tensor = where) -> None:
                w = where.to(hidden.device, non_blocking=True)  # a spread model's layers sit on several GPUs
                pooled = pool_words(hidden.unsqueeze(2), w[0], w[1], w[2], pooling,
                                    check=False)  # Shape: (words, 1, width); plan_windows_of checked
                writer.put(h, rows, pooled[:, 0].to(torch.float16))

            states.run(ids, mask, sink)
            if dev.type == "cpu":  # the pass's freed activations (glibc's heap) back to the system:
                trim_heap()  # the next shapes rarely fit them; a GPU's live in torch's caching allocator
            windows += b.input_ids.shape[0]
            pieces += int(b.attention_mask.sum())
            bar.update(b.words.size)
        hooked = states.hooked
    bar.close()
    return {
        "windows": windows,
        "encoder_passes": len(batches),
        "pieces": pieces,
        "words": n_words,
        "hooked": hooked,  # hidden states taken by hooks as the model made them (else output_hidden_states)
        "plan_s": plan_s,  # tokenising, windows and batches
        "seconds": time.perf_counter() - t0,
    }


class _Writer:
    """Puts pooled word rows into the outputs: at once on the CPU; on a GPU, from threads.

    On a GPU each hidden state's pooled batch is copied into a pinned host buffer
    without waiting, and a writer thread waits for that copy and fills the rows,
    while the host queues the next work. Batches own disjoint rows, so ``depth`` of
    them are written at once by as many threads. A failed write is raised by a
    later :meth:`put` or on leaving the block.
    """

    def __init__(self, out: Mapping[int, Any], device: torch.device, depth: int = 4) -> None:
        self.out, self.device, self.depth = out, device, depth
        self.pool = ThreadPoolExecutor(depth, thread_name_prefix="extract-writer") if device.type == "cuda" else None
        self.pending: List[Future] = []

    def put(self, state: int, rows: np.ndarray, pooled: torch.Tensor) -> None:
        """``out[state][rows] = pooled`` (Shape: (words, width), float16)."""
        if self.pool is None or not pooled.is_cuda:
            self.out[state][rows] = pooled.cpu().numpy()
            return
        host = torch.empty(pooled.shape, dtype=pooled.dtype, pin_memory=True)
        host.copy_(pooled, non_blocking=True)  # queued on the current stream of pooled's GPU
        done = torch.cuda.Event(blocking=True)  # a waiting writer sleeps instead of spinning on a core
        done.record(torch.cuda.current_stream(pooled.device))  # that GPU's stream, whichever is the current GPU
        while len(self.pending) >= self.depth:
            self.pending.pop(0).result()
        self.pending.append(self.pool.submit(self._write, state, rows, host, done))

    def _write(self, state: int, rows: np.ndarray, host: torch.Tensor, done: torch.cuda.Event) -> None:
        done.synchronize()
        self.out[state][rows] = host.numpy()

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
