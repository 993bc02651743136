"""Fine-tuning a tiny random BertModel through the one trainer (training/trainer.py, training/window_data.py):
it learns, restores the best epoch, accumulates, batches documents."""

from __future__ import annotations

import numpy as np
import torch

from bert_ner_probe.training.trainer import DevScore


def _tiny_bert(tokenizer, seed: int = 0):
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    return BertModel(config)


def _tiny_setup(compose, minilm_tokenizer, small_corpus_dir, overrides, dropout=True):
    from bert_ner_probe.data.conll import load_corpus
    from bert_ner_probe.features.encoder import LoadedEncoder
    from bert_ner_probe.probes.finetune import FineTunedEncoder
    from bert_ner_probe.training.trainer import Trainer

    cfg = compose(["strategy=finetune", "encoder.context=sentence", "progress=false", "trainer.precision=fp32",
                   *overrides])
    corpus = load_corpus(str(small_corpus_dir))
    model = _tiny_bert(minilm_tokenizer)
    if not dropout:
        model.config.hidden_dropout_prob = model.config.attention_probs_dropout_prob = 0.0
        model = type(model)(model.config)
        model.load_state_dict(_tiny_bert(minilm_tokenizer).state_dict())
    loaded = LoadedEncoder(model, minilm_tokenizer, 2, 32, 64, torch.device("cpu"), torch.float32)
    torch.manual_seed(0)
    tagger = FineTunedEncoder(model, len(corpus.labels), dropout=None if dropout else 0.0)
    return Trainer.from_config(cfg), tagger, _windows(loaded, corpus, "train", cfg), _windows(loaded, corpus, "dev", cfg)


def _windows(loaded, corpus, split, cfg, limit=None):
    from bert_ner_probe.training.window_data import WindowData

    enc = cfg.encoder
    return WindowData.of(loaded, corpus, split, enc.context, enc.max_pieces_per_word, enc.max_tokens, limit)


def test_tiny_bert_learns_and_the_best_epoch_comes_back(compose, minilm_tokenizer, small_corpus_dir, one_thread):
    """The whole loop (windows, batches, AdamW with warm-up and decay, clipping, early stopping) on a
    tiny random encoder: the loss falls, every part of the encoder moves, the best epoch's weights return."""
    trainer, tagger, train_w, dev_w = _tiny_setup(compose, minilm_tokenizer, small_corpus_dir, [
        "trainer.epochs=30", "trainer.patience=30", "trainer.batch_size=2", "trainer.lr=1e-3"])
    before = {name: p.detach().clone() for name, p in tagger.named_parameters()}
    snapshots = {}

    def dev_f1(ids: np.ndarray) -> float:  # a made-up dev curve that peaks at epoch 20
        epoch = len(snapshots) + 1
        snapshots[epoch] = {k: v.clone() for k, v in tagger.state_dict().items()}
        return 1.0 - abs(epoch - 20) / 100

    epochs = trainer.plan(train_w)
    assert [len(b) for b in epochs] == [3] * 30  # 5 sentences in batches of 2
    result = trainer.fit(tagger, train_w, dev_w, DevScore("dev_f1", of_labels=dev_f1), torch.device("cpu"), epochs)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < 0.5 * losses[0], losses
    assert result.history[-1]["lr_end"] == 0.0  # linear decay ends at zero
    assert (result.best_epoch, result.epochs_run) == (20, 30)
    assert all(torch.equal(v, snapshots[20][k]) for k, v in tagger.state_dict().items())
    assert not all(torch.equal(v, snapshots[30][k]) for k, v in tagger.state_dict().items())
    moved = [name for name, p in tagger.named_parameters() if not torch.equal(p, before[name])]
    assert "encoder.embeddings.word_embeddings.weight" in moved and "encoder.encoder.layer.1.output.dense.weight" in moved
    assert all(p.requires_grad for p in tagger.parameters())


def test_gradient_accumulation_takes_the_same_steps(compose, minilm_tokenizer, small_corpus_dir, one_thread):
    """Without dropout, K micro-batches per batch give the weights of whole batches (the same steps)."""
    weights = {}
    for k in (1, 2):
        trainer, tagger, train_w, dev_w = _tiny_setup(compose, minilm_tokenizer, small_corpus_dir, [
            "trainer.epochs=2", "trainer.batch_size=4", "trainer.lr=1e-3", f"trainer.grad_accum={k}"], dropout=False)
        epochs = trainer.plan(train_w)
        assert [len(b) for b in epochs] == [2, 2]  # 5 sentences: batches of 4 and 1, two optimiser steps
        trainer.fit(tagger, train_w, dev_w, DevScore("dev_f1", of_labels=lambda ids: 0.0), torch.device("cpu"), epochs)
        weights[k] = {n: p.detach().clone() for n, p in tagger.named_parameters()}
    for name, p in weights[1].items():
        torch.testing.assert_close(weights[2][name], p, rtol=1e-4, atol=1e-5)
    assert not torch.equal(weights[1]["classifier.weight"], _tiny_setup(
        compose, minilm_tokenizer, small_corpus_dir, [], dropout=False)[1].classifier.weight)


def test_document_batches_hold_about_a_batch_of_sentences_worth_of_words(compose, minilm_tokenizer, conll_dir):
    """Document windows are batched by length, as many a batch as hold batch_size sentences' words on average."""
    from bert_ner_probe.data.conll import load_corpus
    from bert_ner_probe.features.encoder import LoadedEncoder

    corpus = load_corpus(str(conll_dir), limits={"train": 400, "dev": 10, "test": 10})
    cfg = compose(["strategy=finetune"])
    loaded = LoadedEncoder(None, minilm_tokenizer, 6, 384, 128, torch.device("cpu"), torch.float32)
    w = _windows(loaded, corpus, "train", cfg)
    assert len(w.plan.windows) < 400 / 2  # documents, not sentences, are encoded together
    per_batch = 32 * w.num_words / 400
    assert w.words_per_batch(32) == per_batch
    k = w.windows_per_batch(32)
    assert k == round(per_batch * len(w.plan.windows) / w.num_words) and k > 1
    batches = w.plan_epoch(32, np.random.default_rng(0), 5)
    covered = np.sort(np.concatenate(batches))
    assert covered.tolist() == list(range(len(w.plan.windows)))  # every window once per epoch
    assert max(len(b) for b in batches) == k
    words = [int(w.plan.words[b].sum()) for b in batches]
    assert abs(np.mean(words) - per_batch) < 0.25 * per_batch, (np.mean(words), per_batch)
    # length-bucketed: less padding than the same windows in random batches of k
    lengths = w.plan.lengths
    padded = sum(len(b) * lengths[b].max() for b in batches)
    shuffled = np.random.default_rng(1).permutation(len(lengths))
    random_padded = sum(len(b) * lengths[b].max() for b in np.array_split(shuffled, len(batches)))
    assert padded < random_padded
    assert w.tokens == int(lengths.sum())


def test_a_longer_stride_encodes_each_piece_fewer_times(compose, minilm_tokenizer, conll_dir):
    """finetune.stride: windows start further apart, so the split costs fewer encoder positions."""
    from bert_ner_probe.data.conll import load_corpus
    from bert_ner_probe.features.encoder import LoadedEncoder
    from bert_ner_probe.training.window_data import WindowData

    corpus = load_corpus(str(conll_dir), limits={"train": 400, "dev": 10, "test": 10})
    loaded = LoadedEncoder(None, minilm_tokenizer, 6, 384, 128, torch.device("cpu"), torch.float32)
    tokens = {stride: WindowData.of(loaded, corpus, "train", "document", 32, 16384, None, stride).tokens
              for stride in (None, 96, 126)}
    pieces = WindowData.of(loaded, corpus, "train", "sentence", 32, 16384).tokens - 2 * 400  # no specials
    assert tokens[None] > tokens[96] > tokens[126] > pieces  # half a window apart: about twice the pieces
    assert tokens[None] > 1.5 * pieces and tokens[96] < 1.25 * pieces, (tokens, pieces)


def test_crf_chains_are_sentences_within_a_window(compose, minilm_tokenizer, conll_dir):
    from bert_ner_probe.data.conll import load_corpus
    from bert_ner_probe.features.encoder import LoadedEncoder

    corpus = load_corpus(str(conll_dir), limits={"train": 60, "dev": 10, "test": 10})
    cfg = compose(["strategy=finetune", "finetune.train_limit=50"])
    loaded = LoadedEncoder(None, minilm_tokenizer, 6, 384, 64, torch.device("cpu"), torch.float32)  # small windows
    w = _windows(loaded, corpus, "train", cfg, limit=50)
    assert w.num_words == sum(len(s.words) for s in corpus["train"].sentences[:50])
    b = w.plan.batch(np.arange(len(w.plan.windows)))
    chain = w.chains(b)
    sentence, row = w.sentence_of_word[b.words], b.positions[0]
    for c in np.unique(chain):  # one sentence and one window per chain, and every chain contiguous
        at = np.nonzero(chain == c)[0]
        assert len(set(sentence[at])) == 1 and len(set(row[at])) == 1 and at[-1] - at[0] + 1 == at.size
    assert len(np.unique(chain)) >= 50  # at least one chain per sentence (long ones span windows)
