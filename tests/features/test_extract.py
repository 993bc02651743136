"""Extraction with a real (tiny, random) BertModel: every row written, equal to the model's own hidden states, the encoder left frozen."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from run_if import DEVICES

from bert_ner_probe.features.extract import extract_split
from bert_ner_probe.features.windows import build_windows, tokenize_words


pytestmark = pytest.mark.usefixtures("one_thread")


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


def _outputs(n: int, width: int = 32, states=(0, 1, 2)) -> dict:
    """One unwritten (NaN) output per hidden state: Shape: (words, width) each."""
    return {h: np.full((n, width), np.nan, dtype=np.float16) for h in states}


def _stacked(out: dict) -> np.ndarray:
    """The outputs as one array: Shape: (words, hidden states, width)."""
    return np.stack([out[h] for h in sorted(out)], axis=1)


def _run(encoder, sentences, docs, pooling, context, **kw):
    n = sum(len(s) for s in sentences)
    out = _outputs(n, 64 if pooling == "first_last" else 32)
    stats = extract_split(encoder, sentences, docs, out, pooling, context, progress=False, **kw)
    return _stacked(out), stats


def test_probe_extraction_leaves_the_encoder_frozen_and_bit_identical(tiny_encoder, small_corpus_dir):
    from bert_ner_probe.data.conll import load_corpus
    from bert_ner_probe.features.extract import extract_split

    corpus = load_corpus(str(small_corpus_dir))
    sentences = [s.words for s in corpus["train"].sentences]
    before = {k: v.clone() for k, v in tiny_encoder.model.state_dict().items()}
    out = _outputs(sum(map(len, sentences)))
    extract_split(tiny_encoder, sentences, [s.doc for s in corpus["train"].sentences], out, "first", "document",
                  progress=False)
    assert not any(p.requires_grad for p in tiny_encoder.model.parameters())
    assert not tiny_encoder.model.training
    after = tiny_encoder.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


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
    out = _outputs(3)
    with pytest.raises(RuntimeError, match="alignment error"):
        extract_split(tiny_encoder, [SHORT_B], [0], out, "first", "sentence", progress=False)


@pytest.mark.parametrize("device", DEVICES)
def test_features_extracted_on_each_device_are_the_models_cpu_hidden_states(tiny_encoder, device):
    """The same windows on CUDA (the encoder moved there, pooling on the GPU) give the CPU model's states."""
    import copy
    import dataclasses

    encoder = tiny_encoder
    if device != "cpu":
        encoder = dataclasses.replace(tiny_encoder, model=copy.deepcopy(tiny_encoder.model).to(device),
                                      device=torch.device(device))
    sentences, docs = [SHORT_A, SHORT_B], [0, 0]
    n = sum(len(x) for x in sentences)
    outputs = _outputs(n)
    extract_split(encoder, sentences, docs, outputs, "first", "sentence", progress=False)
    out = _stacked(outputs)
    pieces = tokenize_words(tiny_encoder.tokenizer, sentences, 32)
    for win in build_windows(pieces, docs, "sentence", 64 - 2):
        expected = _direct_hidden(tiny_encoder, win.piece_ids)[win.first + 1]  # +1 for [CLS]; Shape: (words, 3, 32)
        np.testing.assert_allclose(out[win.word_index].astype(np.float32), expected, rtol=2e-2, atol=2e-2)


def test_a_batch_pads_its_time_axis_to_a_multiple_and_nothing_else_moves(minilm_tokenizer):
    from bert_ner_probe.features.extract import plan_windows_of

    plan = plan_windows_of(minilm_tokenizer, [["the", "cat"], ["a", "dog", "sat", "down"]], [0, 1], "sentence", 64)
    assert plan.lengths.tolist() == [4, 6]  # [CLS] pieces [SEP]
    tight, padded = plan.batch([0, 1]), plan.batch([0, 1], pad_to=8)
    assert tight.input_ids.shape == (2, 6) and padded.input_ids.shape == (2, 8)
    np.testing.assert_array_equal(padded.input_ids[:, :6], tight.input_ids)
    assert (padded.input_ids[:, 6:] == minilm_tokenizer.pad_token_id).all() and not padded.attention_mask[:, 6:].any()
    np.testing.assert_array_equal(padded.attention_mask[:, :6], tight.attention_mask)
    np.testing.assert_array_equal(padded.positions, tight.positions)
    np.testing.assert_array_equal(padded.words, tight.words)
    assert plan.batch([0, 1], pad_to=6).input_ids.shape == (2, 6)  # already a multiple: no padding added
    with pytest.raises(ValueError, match="pad_to=0"):
        plan.batch([0], pad_to=0)
