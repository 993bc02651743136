"""Sub-token alignment and encoder windows; no word is ever dropped.

Every word is tokenised into one or more sub-tokens (a word the tokenizer
maps to nothing gets the unknown token; a word with more than
``max_pieces_per_word`` pieces keeps its first ones). A *sequence* is a run of
words embedded together: one sentence (``context=sentence``) or a whole
document (``context=document``, the paper's "maximal document context").

A sequence longer than the window ``W`` (the model's maximum length minus
its special tokens) is cut into overlapping windows, each starting about
``S`` pieces (the *stride*, ``W/2`` unless given) after the previous one.
Every word is then read from the window where it has the most context::

    score(word, window) = min(pieces left of the word, pieces right of it)

as in BERT's SQuAD "max context" rule, so each word sees about ``(W − S)/2``
pieces or more on both sides wherever its sequence allows (``W/4`` at the
default stride). A *causal* encoder (GPT-2, Llama: each position sees only
the positions on its left) reads a word from the window where it has the
most left context::

    score_causal(word, window) = pieces left of the word

that is the earliest window holding it, so it sees about ``W − S`` pieces or
more before it (``W/2`` at the default stride) instead of a middle position
whose right half it cannot see. A sequence of ``P`` pieces costs the encoder
about ``P · W / S`` positions: a longer stride reads each piece fewer times,
for less guaranteed context (``S = W``: no overlap, each piece read once).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np

from bert_ner_probe.choice import Choice


class Context(Choice):
    """``encoder.context``: what a word's window holds besides its own sentence."""

    sentence = "sentence"  # each sentence alone
    document = "document"  # the whole document, windows overlapping past the encoder's length (the paper's)


@dataclass
class Window:
    """One encoder input and the words read from it.

    ``piece_ids`` excludes special tokens. ``word_index`` holds global word
    indices (row in the feature array); ``first``/``last`` hold the positions
    of each word's first and last sub-token within ``piece_ids``.
    """

    piece_ids: np.ndarray  # Shape: (pieces,)
    word_index: np.ndarray  # Shape: (words,)
    first: np.ndarray  # Shape: (words,)
    last: np.ndarray  # Shape: (words,)


def tokenize_words(tokenizer, sentences: Sequence[Sequence[str]], max_pieces_per_word: int) -> List[List[np.ndarray]]:
    """Sub-token ids of every word of every sentence, aligned one-to-one with the words.

    Returns ``out[s][w]``: the piece ids of word ``w`` of sentence ``s``
    (never empty).
    """
    if max_pieces_per_word < 1:
        raise ValueError("max_pieces_per_word must be at least 1")
    unk = tokenizer.unk_token_id
    if unk is None:
        unk = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(".")[0])
    enc = tokenizer([list(s) for s in sentences], is_split_into_words=True, add_special_tokens=False)
    out: List[List[np.ndarray]] = []
    for s, words in enumerate(sentences):
        ids = np.asarray(enc["input_ids"][s], dtype=np.int64)
        wid = np.asarray([-1 if w is None else w for w in enc.word_ids(s)], dtype=np.int64)
        # Shape: ids, wid (pieces,); words are contiguous and in order.
        bounds = np.searchsorted(wid, np.arange(len(words) + 1), side="left")
        per_word = np.split(ids, bounds[1:-1])
        counts = np.diff(bounds)
        for w in np.nonzero((counts == 0) | (counts > max_pieces_per_word))[0]:
            per_word[w] = per_word[w][:max_pieces_per_word] if counts[w] else np.asarray([unk], dtype=np.int64)
        out.append(per_word)
    return out


def plan_windows(word_pieces: Sequence[np.ndarray], first_word: int, width: int,
                 stride: Optional[int] = None, causal: bool = False) -> List[Window]:
    """Cut one sequence of words into windows of at most ``width`` pieces, starting about ``stride`` apart.

    ``word_pieces[i]`` are the piece ids of word ``i``; ``first_word`` is the
    global index of word 0; ``stride`` None = ``width // 2``. Every word appears
    in exactly one returned window: the one where its smaller side context is
    largest, or with ``causal`` its left context (the module docstring's scores).
    """
    n = len(word_pieces)
    if n == 0:
        return []
    counts = np.fromiter((len(p) for p in word_pieces), dtype=np.int64, count=n)
    if counts.max() > width:
        raise ValueError(f"a word has {counts.max()} pieces, more than the window width {width}")
    cum = np.concatenate([[0], np.cumsum(counts)])  # Shape: (n + 1,)
    all_ids = np.concatenate(list(word_pieces))
    spans = []
    start = 0
    stride = max(1, width // 2 if stride is None else min(int(stride), width))
    while True:
        end = int(np.searchsorted(cum, cum[start] + width, side="right")) - 1
        spans.append((start, end))
        if end >= n:
            break
        nxt = int(np.searchsorted(cum, cum[start] + stride, side="right")) - 1  # last word start <= stride
        start = min(max(nxt, start + 1), end)
    # Give each word to the window where its smaller side context (causal: its left context) is largest;
    # on a tie the earlier window keeps it.
    best = np.full(n, -1, dtype=np.int64)
    best_score = np.full(n, -1, dtype=np.int64)
    for k, (s, e) in enumerate(spans):
        idx = np.arange(s, e)
        left = cum[idx] - cum[s]
        score = left if causal else np.minimum(left, cum[e] - cum[idx + 1])
        better = score > best_score[s:e]
        best[s:e][better] = k
        best_score[s:e][better] = score[better]
    windows = []
    for k, (s, e) in enumerate(spans):
        idx = np.nonzero(best[s:e] == k)[0] + s
        if idx.size == 0:
            continue
        base = cum[s]
        windows.append(Window(
            piece_ids=all_ids[cum[s]:cum[e]],
            word_index=idx + first_word,
            first=cum[idx] - base,
            last=cum[idx + 1] - 1 - base,
        ))
    return windows


def build_windows(
    pieces: Sequence[Sequence[np.ndarray]],
    doc_of_sentence: Sequence[int],
    context: Context | str,
    width: int,
    stride: Optional[int] = None,
    causal: bool = False,
) -> List[Window]:
    """Windows for a whole split.

    ``pieces`` comes from :func:`tokenize_words`; ``doc_of_sentence`` gives
    each sentence's document (documents are contiguous). ``context`` is
    ``sentence`` (each sentence alone) or ``document`` (each document as one
    sequence, so words see neighbouring sentences). ``causal``: words go to the
    window where they have the most left context (:func:`plan_windows`).
    """
    context = Context.parse(context, "encoder.context")
    windows: List[Window] = []
    offset = 0
    if context == Context.sentence:
        for sent in pieces:
            windows.extend(plan_windows(sent, offset, width, stride, causal))
            offset += len(sent)
        return windows
    i = 0
    while i < len(pieces):
        j = i
        while j < len(pieces) and doc_of_sentence[j] == doc_of_sentence[i]:
            j += 1
        seq = [w for sent in pieces[i:j] for w in sent]
        windows.extend(plan_windows(seq, offset, width, stride, causal))
        offset += len(seq)
        i = j
    return windows
