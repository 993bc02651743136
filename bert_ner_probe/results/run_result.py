"""One typed view of a run's results: :class:`RunResult`, built from the ``results.json`` dict.

``results.json`` stays the stored format (written by
:func:`bert_ner_probe.run.run_probe`, read by the report); :class:`RunResult`
gives its main fields types and names, and :meth:`RunResult.to_dict` returns
the dict it was built from, unchanged, so no field is lost — a field added to
``results.json`` is read here by adding one attribute.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

RESULTS_FILE = "results.json"
ERROR_FILE = "error.json"  # written by bert_ner_probe.main instead of results.json when a multirun job fails


def flatten(tree: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    """``{"probe": {"crf": False}}`` → ``{"probe.crf": False}``; lists stay values (a run's config as fields)."""
    out: Dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


@dataclass(frozen=True)
class Scores:
    """Precision, recall and F1 (fractions in [0, 1]) and the number of gold entities."""

    precision: float
    recall: float
    f1: float
    support: Optional[int] = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Scores":
        support = d.get("support")
        return cls(float(d["precision"]), float(d["recall"]), float(d["f1"]),
                   None if support is None else int(support))


@dataclass(frozen=True)
class SplitScores(Scores):
    """Micro scores of one split plus the same per entity type, and token accuracy (None in older files)."""

    per_type: Dict[str, Scores] = field(default_factory=dict)
    accuracy: Optional[float] = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SplitScores":
        micro = Scores.from_dict(d)
        return cls(micro.precision, micro.recall, micro.f1, micro.support,
                   {name: Scores.from_dict(s) for name, s in (d.get("per_type") or {}).items()},
                   None if d.get("accuracy") is None else float(d["accuracy"]))


@dataclass(frozen=True)
class Epoch:
    """One training epoch: mean train loss per word, dev F1, seconds."""

    epoch: int
    train_loss: float
    dev_f1: float
    epoch_s: Optional[float] = None
    train_words_per_s: Optional[float] = None  # the epoch loop alone, not the dev evaluation
    dev_eval_s: Optional[float] = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Epoch":
        def opt(name: str) -> Optional[float]:
            return None if d.get(name) is None else float(d[name])

        return cls(int(d["epoch"]), float(d["train_loss"]), float(d["dev_f1"]), opt("epoch_s"),
                   opt("train_words_per_s"), opt("dev_eval_s"))


@dataclass(frozen=True)
class RunResult:
    """A finished run: what was probed, how it scored, how long it took, with which config."""

    strategy: str
    layers: Optional[List[int]]  # None for the fine-tuning row
    combine: Optional[str]  # None for the fine-tuning row
    pooling: str
    context: str
    seed: int
    encoder: str
    num_layers: Optional[int]
    labels: List[str]
    dev: SplitScores
    test: SplitScores
    best_epoch: Optional[int]
    epochs_run: Optional[int]
    history: List[Epoch]
    timings: Dict[str, float]
    cache_hit: Optional[bool]
    mix_weights: Optional[Dict[str, Any]]
    config: Dict[str, Any]
    data_notes: List[str]
    encoder_passes: Optional[int] = None  # forward passes of the encoder this run made (0 on a cache hit)
    sizes: Dict[str, Dict[str, int]] = field(default_factory=dict)  # {split: {sentences, words}}
    precision: Optional[str] = None  # trainer.precision as resolved (fp32, bf16, fp16)
    encoder_dtype: Optional[str] = None  # encoder.dtype as resolved
    device: Optional[str] = None  # where it ran: cpu, cuda:0, ...
    probe: str = "bilstm"  # the trained model (probe.name): bilstm, linear, mlp, finetune, ...
    control: str = "none"  # word_type: trained and scored on the control task's tags
    encoder_weights: str = "pretrained"  # random: the random-encoder baseline
    mdl: Optional[Dict[str, Any]] = None  # mdl=true: online and uniform code length (bits), compression, blocks
    encoder_name: Optional[str] = None  # the encoder loaded: its group's name, else its folder or hub id
    causal: bool = False  # the encoder reads leftwards only (decoder-only: GPT-2, Llama, …)
    peak_rss_mb: Optional[float] = None  # the job's peak resident set size, MiB (None in older files)
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    path: Optional[Path] = field(default=None, compare=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], path: Optional[Path] = None) -> "RunResult":
        """Build from a ``results.json`` dict (``path``: the file it came from, if any)."""
        return cls(
            strategy=str(d["strategy"]),
            layers=None if d.get("layers") is None else [int(x) for x in d["layers"]],
            combine=None if d.get("combine") is None else str(d["combine"]),
            pooling=str(d["pooling"]), context=str(d["context"]), seed=int(d["seed"]), encoder=str(d["encoder"]),
            num_layers=None if d.get("num_layers") is None else int(d["num_layers"]),
            labels=list(d.get("labels") or []),
            dev=SplitScores.from_dict(d["dev"]), test=SplitScores.from_dict(d["test"]),
            best_epoch=d.get("best_epoch"), epochs_run=d.get("epochs_run"),
            history=[Epoch.from_dict(h) for h in d.get("history") or []],
            timings={k: float(v) for k, v in (d.get("timings") or {}).items()},
            cache_hit=d.get("cache_hit"), mix_weights=d.get("mix_weights"),
            config=dict(d.get("config") or {}), data_notes=list(d.get("data_notes") or []),
            encoder_passes=None if d.get("encoder_passes") is None else int(d["encoder_passes"]),
            sizes={s: dict(v) for s, v in (d.get("sizes") or {}).items()},
            precision=d.get("precision"), encoder_dtype=d.get("encoder_dtype"), device=d.get("device"),
            probe=str(d.get("probe") or ("finetune" if d["strategy"] == "finetune" else "bilstm")),
            control=str(d.get("control") or "none"), encoder_weights=str(d.get("encoder_weights") or "pretrained"),
            mdl=d.get("mdl"), encoder_name=d.get("encoder_name"), causal=bool(d.get("causal") or False),
            peak_rss_mb=None if d.get("peak_rss_mb") is None else float(d["peak_rss_mb"]),
            raw=dict(d), path=path,
        )

    @classmethod
    def load(cls, path: Union[str, Path]) -> "RunResult":
        """Read ``results.json`` (the file, or the run folder holding it)."""
        p = Path(path)
        if p.is_dir():
            p = p / RESULTS_FILE
        return cls.from_dict(json.loads(p.read_text(encoding="utf-8")), p)

    def to_dict(self) -> Dict[str, Any]:
        """The ``results.json`` dict, as written by the run."""
        return copy.deepcopy(self.raw)

    @property
    def run_dir(self) -> Optional[Path]:
        """The run folder (``results.json``'s folder), when loaded from a file."""
        return None if self.path is None else self.path.parent
