"""Sub-token alignment, windows and extraction with a real tokenizer and a real (tiny, random) BertModel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bert_ner_probe.errors import UserError
from bert_ner_probe.features.batching import batches_by_length
from bert_ner_probe.features.extract import extract_split, special_tokens
from bert_ner_probe.features.windows import build_windows, plan_windows, tokenize_words

pytestmark = pytest.mark.usefixtures("one_thread")

# ---------------------------------------------------------------- plan_windows


def _synthetic_pieces(n: int, max_len: int, seed: int = 0):
    """Word w has pieces w*10, w*10+1, … so every piece id names its word."""
    rng = np.random.default_rng(seed)
    return [np.arange(int(rng.integers(1, max_len + 1)), dtype=np.int64) + 10 * w for w in range(n)]


def _check_windows(pieces, windows, width, first_word=0):
    n = len(pieces)
    seen = np.zeros(n, dtype=np.int64)
    for win in windows:
        assert 1 <= win.piece_ids.size <= width
        assert win.word_index.size == win.first.size == win.last.size >= 1
        for g, f, l in zip(win.word_index, win.first, win.last):
            w = int(g) - first_word
            seen[w] += 1
            # first..last point at exactly this word's pieces inside the window.
            np.testing.assert_array_equal(win.piece_ids[f:l + 1], pieces[w])
    np.testing.assert_array_equal(seen, np.ones(n, dtype=np.int64))  # every word in exactly one window


@pytest.mark.parametrize("width", [8, 16, 30, 64])
@pytest.mark.parametrize("max_len", [1, 4])
def test_every_word_in_exactly_one_window(width, max_len):
    pieces = _synthetic_pieces(700, max_len)
    windows = plan_windows(pieces, 0, width)
    _check_windows(pieces, windows, width)
    # Word order is kept, so concatenating windows' words gives 0..n-1.
    assert np.concatenate([w.word_index for w in windows]).tolist() == list(range(700))


def test_first_word_offset_and_windows_are_contiguous_slices():
    pieces = _synthetic_pieces(50, 3, seed=3)
    windows = plan_windows(pieces, 1000, 16)
    _check_windows(pieces, windows, 16, first_word=1000)
    assert windows[0].word_index[0] == 1000 and windows[-1].word_index[-1] == 1049
    all_ids = np.concatenate(pieces)
    for win in windows:  # a window is a contiguous run of the sequence's pieces
        start = int(np.nonzero(all_ids == win.piece_ids[0])[0][0])
        np.testing.assert_array_equal(all_ids[start:start + win.piece_ids.size], win.piece_ids)


def test_short_sequence_is_one_window():
    pieces = [np.array([5, 6]), np.array([7]), np.array([8, 9, 10])]
    (win,) = plan_windows(pieces, 3, 6)
    assert win.piece_ids.tolist() == [5, 6, 7, 8, 9, 10]
    assert win.word_index.tolist() == [3, 4, 5]
    assert win.first.tolist() == [0, 2, 3]
    assert win.last.tolist() == [1, 2, 5]


def test_empty_sequence_has_no_windows():
    assert plan_windows([], 0, 16) == []


def test_word_longer_than_the_window_is_rejected():
    with pytest.raises(ValueError, match="5 pieces, more than the window width 4"):
        plan_windows([np.array([1]), np.arange(5), np.array([2])], 0, 4)


def test_word_exactly_as_long_as_the_window_is_accepted():
    pieces = [np.array([1]), np.arange(10, 14), np.array([2])]
    windows = plan_windows(pieces, 0, 4)
    _check_windows(pieces, windows, 4)


@pytest.mark.parametrize("width,max_len", [(64, 1), (64, 4), (128, 3), (510, 4)])
def test_max_context_rule(width, max_len):
    """A word with >= width/2 pieces on both sides in its sequence sees about width/4 on both sides.

    Windows start every ~width/2 pieces (rounded to word boundaries), so the bound holds up to a
    couple of word lengths: >= width//4 - 2 * max_len.
    """
    pieces = _synthetic_pieces(2500, max_len, seed=width + max_len)
    cum = np.concatenate([[0], np.cumsum([len(p) for p in pieces])])
    windows = plan_windows(pieces, 0, width)
    _check_windows(pieces, windows, width)
    worst = None
    for win in windows:
        for g, f, l in zip(win.word_index, win.first, win.last):
            if cum[g] >= width // 2 and cum[-1] - cum[g + 1] >= width // 2:
                ctx = min(int(f), win.piece_ids.size - 1 - int(l))
                worst = ctx if worst is None else min(worst, ctx)
    assert worst is not None
    assert worst >= width // 4 - 2 * max_len


def test_middle_word_gets_the_centred_window():
    # 200 single-piece words, width 20: windows start every 10 pieces, so word 105 (piece 105)
    # is best read from the window starting at 95 or 100 (either gives min side >= 5), not from
    # the one starting at 105 (left context 0) or at 90 (right context 0).
    pieces = [np.array([w]) for w in range(200)]
    windows = plan_windows(pieces, 0, 20)
    (win,) = [w for w in windows if 105 in w.word_index]
    k = int(np.nonzero(win.word_index == 105)[0][0])
    left, right = int(win.first[k]), win.piece_ids.size - 1 - int(win.last[k])
    assert min(left, right) >= 5


# ---------------------------------------------------------------- tokenize_words (real tokenizer)


def test_tokenize_words_aligns_one_to_one(minilm_tokenizer):
    out = tokenize_words(minilm_tokenizer, [["Peter", "Blackburn"], ["BRUSSELS", "1996-08-22"]], 32)
    assert [[p.tolist() for p in s] for s in out] == [
        [[2848], [13934]],  # peter, blackburn
        [[9371], [2727, 1011, 5511, 1011, 2570]],  # brussels; 1996 - 08 - 22
    ]


def test_words_that_tokenize_to_nothing_get_the_unknown_token(minilm_tokenizer):
    # The MiniLM (BERT uncased) tokenizer strips these characters and yields no piece at all.
    for w in ["\u200b", "\x07", "\u00ad"]:
        assert minilm_tokenizer([[w]], is_split_into_words=True, add_special_tokens=False)["input_ids"] == [[]]
    words = ["\u200b", "a", "\x07", "b", "\u00ad"]
    (sent,) = tokenize_words(minilm_tokenizer, [words], 32)
    assert minilm_tokenizer.unk_token_id == 100
    assert [p.tolist() for p in sent] == [[100], [1037], [100], [1038], [100]]


def test_max_pieces_per_word_keeps_the_first_pieces(minilm_tokenizer):
    word = "Antidisestablishmentarianism"  # anti ##dis ##est ##ab ##lish ##ment ##arian ##ism
    (full,) = tokenize_words(minilm_tokenizer, [[word, "EU"]], 32)
    assert full[0].tolist() == [3424, 10521, 4355, 7875, 13602, 3672, 12199, 2964]
    (cut,) = tokenize_words(minilm_tokenizer, [[word, "EU"]], 3)
    assert [p.tolist() for p in cut] == [[3424, 10521, 4355], [7327]]
    with pytest.raises(ValueError, match="at least 1"):
        tokenize_words(minilm_tokenizer, [[word]], 0)


def test_special_tokens_of_a_bert_tokenizer(minilm_tokenizer):
    assert special_tokens(minilm_tokenizer) == ([101], [102])  # [CLS] … [SEP]


# ---------------------------------------------------------------- build_windows


def test_build_windows_sentence_and_document_contexts():
    rng = np.random.default_rng(7)
    lens = [3, 12, 1, 7, 40, 2, 9]
    docs = [0, 0, 0, 1, 1, 2, 2]
    pieces, ident = [], 0
    for n in lens:
        sent = []
        for _ in range(n):
            sent.append(np.arange(int(rng.integers(1, 4))) + 10 * ident)
            ident += 1
        pieces.append(sent)
    flat = [w for s in pieces for w in s]
    total = sum(lens)
    for context in ("sentence", "document"):
        windows = build_windows(pieces, docs, context, 24)
        _check_windows(flat, windows, 24)
        assert sum(w.word_index.size for w in windows) == total
        sent_of_word = np.repeat(np.arange(len(lens)), lens)
        doc_of_word = np.asarray(docs)[sent_of_word]
        for w in windows:
            # Sentence context: a window never mixes sentences. Document context: never mixes documents.
            if context == "sentence":
                assert len(set(sent_of_word[w.word_index])) == 1
            else:
                assert len(set(doc_of_word[w.word_index])) == 1
    # Document context joins sentences: document 0 (3 + 12 + 1 words, ≤ 48 pieces) has a window
    # holding words of more than one sentence.
    doc_windows = build_windows(pieces, docs, "document", 24)
    assert any(len(set(np.repeat(np.arange(len(lens)), lens)[w.word_index])) > 1 for w in doc_windows)
    with pytest.raises(UserError, match="encoder.context='paragraph': expected one of sentence \\| document"):
        build_windows(pieces, docs, "paragraph", 24)


# ---------------------------------------------------------------- batches_by_length


@pytest.mark.parametrize("max_batch,max_tokens", [(4, 1000), (64, 300), (3, 50), (1000, 10**6)])
def test_batches_by_length_respects_limits(max_batch, max_tokens):
    lengths = np.random.default_rng(0).integers(3, 120, size=257)
    batches = batches_by_length(lengths, max_batch, max_tokens)
    assert sorted(np.concatenate(batches).tolist()) == list(range(257))
    prev_max = 0
    for b in batches:
        assert 1 <= len(b) <= max_batch
        assert len(b) == 1 or len(b) * lengths[b].max() <= max_tokens
        assert lengths[b].min() >= prev_max  # sorted by length: batches do not interleave
        prev_max = lengths[b].max()
    if max_tokens == 10**6:
        assert len(batches) == 1


def test_a_window_longer_than_max_tokens_gets_its_own_batch():
    batches = batches_by_length(np.array([5, 500, 6]), 8, 100)
    assert [b.tolist() for b in batches] == [[0, 2], [1]]


# ---------------------------------------------------------------- extraction with a tiny BertModel

LONG_VOCAB = ["the", "Commission", "said", "1996-08-22", "Antidisestablishmentarianism", "EU", "\u200b",
              "Blackburn", ",", "Wolverhampton", "unbelievably", "a"]
SHORT_A = ["Peter", "Blackburn", "visited", "1996-08-22", "Antidisestablishmentarianism", "."]
SHORT_B = ["EU", "rejects", "German", "call"]


def _long_sentence(n=1000, seed=0):
    rng = np.random.default_rng(seed)
    return [LONG_VOCAB[i] for i in rng.integers(0, len(LONG_VOCAB), size=n)]


def _direct_hidden(encoder, piece_ids) -> np.ndarray:
    """All hidden states of [CLS] pieces [SEP], computed with the model itself. Shape: (time, layers + 1, hidden)."""
    ids = torch.tensor([[101, *[int(p) for p in piece_ids], 102]])
    with torch.no_grad():
        res = encoder.model(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True)
    return torch.stack(res.hidden_states, dim=2)[0].numpy()


def _run(encoder, sentences, docs, pooling, context, **kw):
    n = sum(len(s) for s in sentences)
    width = 64 if pooling == "first_last" else 32
    out = np.full((n, 3, width), np.nan, dtype=np.float16)
    stats = extract_split(encoder, sentences, docs, out, pooling, context, progress=False, **kw)
    return out, stats


@pytest.mark.parametrize("context", ["sentence", "document"])
def test_extract_writes_every_row_of_a_1000_word_sentence(tiny_encoder, context):
    long = _long_sentence()
    sentences = [SHORT_B, long, SHORT_A]
    docs = [0, 0, 1]
    out, stats = _run(tiny_encoder, sentences, docs, "first", context, batch_size=8, max_tokens=256)
    assert out.shape[0] == 1010 == stats["words"]
    assert not np.isnan(out).any()  # no row left unwritten
    assert np.isfinite(out).all()
    assert stats["windows"] > 1000 * 1.2 / 62  # the long sentence needed many windows
    assert stats["encoder_passes"] >= stats["windows"] / 8

    # Each word of the long sentence carries the hidden state of its first piece in the window
    # the planner chose for it: recompute two windows directly with the model.
    tok = tiny_encoder.tokenizer
    pieces = tokenize_words(tok, sentences, 32)
    windows = build_windows(pieces, docs, context, 64 - 2)
    long_windows = [w for w in windows if w.word_index.min() >= len(SHORT_B) and w.word_index.max() < 4 + 1000]
    for win in (long_windows[len(long_windows) // 2], long_windows[-1]):
        h = _direct_hidden(tiny_encoder, win.piece_ids)
        expected = h[win.first + 1]  # +1 for [CLS]
        np.testing.assert_allclose(out[win.word_index].astype(np.float32), expected, rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("pooling", ["first", "last", "mean", "first_last"])
def test_short_sentence_features_equal_the_models_hidden_states(tiny_encoder, pooling):
    sentences = [SHORT_A, SHORT_B, _long_sentence(150, seed=1)]  # padded in one batch with longer windows
    out, _ = _run(tiny_encoder, sentences, [0, 1, 2], pooling, "sentence", batch_size=16)
    assert not np.isnan(out).any()
    (pieces,) = tokenize_words(tiny_encoder.tokenizer, [SHORT_A], 32)
    h = _direct_hidden(tiny_encoder, np.concatenate(pieces))  # Shape: (time, 3, 32)
    pos, rows = 1, []  # position 0 is [CLS]
    for p in pieces:
        f, l = pos, pos + len(p) - 1
        if pooling == "first":
            rows.append(h[f])
        elif pooling == "last":
            rows.append(h[l])
        elif pooling == "mean":
            rows.append(h[f:l + 1].mean(axis=0))
        else:
            rows.append(np.concatenate([h[f], h[l]], axis=-1))
        pos = l + 1
    expected = np.stack(rows)
    assert [len(p) for p in pieces] == [1, 1, 1, 5, 8, 1]  # multi-piece words make pooling matter
    np.testing.assert_allclose(out[:len(SHORT_A)].astype(np.float32), expected, rtol=2e-3, atol=2e-3)


def test_document_context_changes_features_of_a_sentence(tiny_encoder):
    sentences = [SHORT_B, SHORT_A]
    alone, _ = _run(tiny_encoder, sentences, [0, 0], "first", "sentence")
    joined, _ = _run(tiny_encoder, sentences, [0, 0], "first", "document")
    # Layer 0 (embeddings) differs too: positions shift when SHORT_A follows SHORT_B.
    assert not np.allclose(alone[len(SHORT_B):], joined[len(SHORT_B):], atol=1e-2)
    # In document context SHORT_A is read in one window with SHORT_B before it.
    (pa, pb) = tokenize_words(tiny_encoder.tokenizer, [SHORT_B, SHORT_A], 32)
    h = _direct_hidden(tiny_encoder, np.concatenate(pa + pb))
    first_pos = 1 + np.cumsum([0] + [len(p) for p in pa + pb])[:-1]
    np.testing.assert_allclose(joined.astype(np.float32), h[first_pos], rtol=2e-3, atol=2e-3)


def test_extract_rejects_an_output_of_the_wrong_size(tiny_encoder):
    out = np.zeros((3, 3, 32), dtype=np.float16)
    with pytest.raises(RuntimeError, match="alignment error"):
        extract_split(tiny_encoder, [SHORT_B], [0], out, "first", "sentence", progress=False)
