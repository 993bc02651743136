"""Sub-token alignment and windows (bert_ner_probe/features/windows.py) with the real MiniLM tokenizer."""

from __future__ import annotations

import numpy as np
import pytest

from bert_ner_probe.errors import UserError
from bert_ner_probe.features.extract import special_tokens
from bert_ner_probe.features.windows import build_windows, plan_windows, tokenize_words

pytestmark = pytest.mark.usefixtures("one_thread")


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


def test_stride_sets_where_windows_start_and_the_context_guaranteed():
    """40 single-piece words, width 10, stride 8: windows at 0, 8, 16, 24, 32 (the last reaching the end).

    Word 12 is in the window starting at 8 alone (left 4, right 5), so it reads there; word 17 is in 8..17 (left 9, right 0) and 16..25 (left 1, right 8): min 0 vs 1, it reads from 16.
    Every word with 8 pieces on both sides in its sequence sees at least (10 − 8) / 2 = 1 on both sides.
    """
    pieces = [np.array([w]) for w in range(40)]
    windows = plan_windows(pieces, 0, 10, stride=8)
    _check_windows(pieces, windows, 10)
    assert [int(w.piece_ids[0]) for w in windows] == [0, 8, 16, 24, 32]
    home = {int(g): int(w.piece_ids[0]) for w in windows for g in w.word_index}
    assert home[12] == 8 and home[17] == 16
    for w in windows:
        for g, f, l in zip(w.word_index, w.first, w.last):
            if 8 <= g < 32:
                assert min(int(f), w.piece_ids.size - 1 - int(l)) >= 1
    # stride = width: no overlap, every piece in one window; the default is half a window
    assert sum(w.piece_ids.size for w in plan_windows(pieces, 0, 10, stride=10)) == 40
    assert [int(w.piece_ids[0]) for w in plan_windows(pieces, 0, 10)][:3] == [0, 5, 10]


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
