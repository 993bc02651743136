"""Run the frozen encoder once over a split and pool every layer of every word.

Windows (see :mod:`bert_ner_probe.windows`) are sorted by length and batched
by a token budget, so padding stays small; each batch's hidden states are
stacked to ``(batch, time, layers + 1, hidden)``, pooled per word
(:mod:`bert_ner_probe.pooling`) and written straight into the output array
(a memory map in the cache) at each word's row. The model runs in the dtype
it was loaded in (``encoder.dtype``; ``auto`` = bf16 where the hardware has
it, see :func:`bert_ner_probe.features.resolve_dtype_name`).
"""

from __future__ import annotations

import time
from typing import List, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .batching import batches_by_length
from .encoder import LoadedEncoder
from .pooling import pool_words
from .windows import Window, build_windows, tokenize_words


def special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """The special token ids the tokenizer puts before and after one sequence (e.g. [CLS], [SEP])."""
    enc = tokenizer(["a", "b"], is_split_into_words=True, add_special_tokens=True)
    ids, word_ids = enc["input_ids"], enc.word_ids()
    content = [k for k, w in enumerate(word_ids) if w is not None]
    return list(ids[: content[0]]), list(ids[content[-1] + 1:])


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
    encoder and seconds spent. Every word row of ``out`` is written exactly once.
    """
    t0 = time.perf_counter()
    tok = encoder.tokenizer
    head, tail = special_tokens(tok)
    prefix, n_special = len(head), len(head) + len(tail)
    width = encoder.max_length - n_special
    pieces = tokenize_words(tok, sentences, min(max_pieces_per_word, width))
    windows: List[Window] = build_windows(pieces, doc_of_sentence, context, width)
    n_words = sum(len(s) for s in sentences)
    covered = sum(w.word_index.size for w in windows)
    if covered != n_words or out.shape[0] != n_words:
        raise RuntimeError(f"alignment error: {n_words} words, {covered} planned, {out.shape[0]} rows")

    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    lengths = np.asarray([w.piece_ids.size + n_special for w in windows])
    dev = encoder.device
    passes = 0
    bar = tqdm(total=n_words, desc=desc, unit="word", disable=not progress, leave=False)
    with torch.inference_mode():
        for idx in batches_by_length(lengths, batch_size, max_tokens):
            T = int(lengths[idx].max())
            ids = np.full((len(idx), T), pad_id, dtype=np.int64)  # Shape: (batch, time)
            mask = np.zeros((len(idx), T), dtype=np.int64)
            rows, firsts, lasts, targets = [], [], [], []
            for r, k in enumerate(idx):
                w = windows[k]
                seq = np.concatenate([head, w.piece_ids, tail]) if (head or tail) else w.piece_ids
                ids[r, :seq.size] = seq
                mask[r, :seq.size] = 1
                rows.append(np.full(w.word_index.size, r))
                firsts.append(w.first + prefix)
                lasts.append(w.last + prefix)
                targets.append(w.word_index)
            res = encoder.model(input_ids=torch.from_numpy(ids).to(dev),
                                attention_mask=torch.from_numpy(mask).to(dev),
                                output_hidden_states=True)
            passes += 1
            hidden = torch.stack(res.hidden_states, dim=2)  # Shape: (batch, time, layers + 1, hidden)
            pooled = pool_words(hidden,
                                torch.from_numpy(np.concatenate(rows)).to(dev),
                                torch.from_numpy(np.concatenate(firsts)).to(dev),
                                torch.from_numpy(np.concatenate(lasts)).to(dev),
                                pooling)  # Shape: (words, layers + 1, width)
            target = np.concatenate(targets)
            order = np.argsort(target)
            out[target[order]] = pooled.to(torch.float16).cpu().numpy()[order]
            bar.update(target.size)
    bar.close()
    return {
        "windows": len(windows),
        "encoder_passes": passes,
        "pieces": int(lengths.sum()),
        "words": n_words,
        "seconds": time.perf_counter() - t0,
    }
