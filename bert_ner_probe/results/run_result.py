"""One typed view of a run's results: :class:`RunResult`, built from the ``results.json`` dict.

``results.json`` stays the stored format (written by
:func:`bert_ner_probe.run.run_probe`, read by the report); :class:`RunResult`
gives its main fields types and names, and :meth:`RunResult.to_dict` returns
the dict it was built from, unchanged, so no field is lost — a field added to
``results.json`` is read here by adding one attribute.

Whether a ``results.json`` is a finished run's is judged here alone
(:func:`check_complete`, which :meth:`RunResult.from_dict` applies): the CLI's
``resume``, the report and the API read every file through it. Files written
before a field was renamed are read too (a history's ``dev_f1`` before the dev
score was named).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

RESULTS_FILE = "results.json"
ERROR_FILE = "error.json"  # written by bert_ner_probe.main instead of results.json when a multirun job fails
#: What every finished run's record holds besides its two splits' scores (``dev``, ``test``).
REQUIRED_FIELDS = ("strategy", "layers", "combine", "pooling", "context", "encoder", "seed")
SPLIT_FIELDS = ("precision", "recall", "f1")


class IncompleteResults(ValueError):
    """A ``results.json`` that is not a finished run's: a field is missing (a cut or foreign file)."""


class FailedRun(IncompleteResults):
    """A ``results.json`` whose ``status`` is not ``ok``; the message is its ``error``."""


def check_complete(d: Any) -> None:
    """Whether ``d`` (a ``results.json`` dict) is a finished run's: status ``ok`` (or none, in older files), every
    :data:`REQUIRED_FIELDS` and each split's precision, recall and F1. Raises :class:`FailedRun` or
    :class:`IncompleteResults` naming the first thing missing."""
    if not isinstance(d, Mapping):
        raise IncompleteResults("not a JSON object")
    status = d.get("status", "ok")
    if status != "ok":
        raise FailedRun(str(d.get("error") or f"status {status!r} in {RESULTS_FILE}"))
    for key in REQUIRED_FIELDS:
        if key not in d:
            raise IncompleteResults(f"no {key!r}")
    for split in ("dev", "test"):
        scores = d.get(split)
        for metric in SPLIT_FIELDS:
            if not isinstance(scores, Mapping) or scores.get(metric) is None:
                raise IncompleteResults(f"no {split}.{metric}")


#: The dev score of a record written before it was named: ``history[i]["dev_f1"]`` held entity F1, or token
#: accuracy for a control-task run.
LEGACY_DEV_SCORE_KEY = "dev_f1"


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
    """Micro scores of one split plus the same per entity type, token accuracy (None in older files) and, for dev
    of a probe over frozen features, its cross-entropy in bits per word, ``−(1/N) Σ log2 p(gold)`` (None in older
    files and for fine-tuning)."""

    per_type: Dict[str, Scores] = field(default_factory=dict)
    accuracy: Optional[float] = None
    cross_entropy_bits: Optional[float] = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SplitScores":
        micro = Scores.from_dict(d)
        return cls(micro.precision, micro.recall, micro.f1, micro.support,
                   {name: Scores.from_dict(s) for name, s in (d.get("per_type") or {}).items()},
                   None if d.get("accuracy") is None else float(d["accuracy"]),
                   None if d.get("cross_entropy_bits") is None else float(d["cross_entropy_bits"]))


@dataclass(frozen=True)
class Epoch:
    """One training epoch: mean train loss per word, the dev score (:attr:`RunResult.dev_score_name`), seconds."""

    epoch: int
    train_loss: float
    dev_score: float
    epoch_s: Optional[float] = None
    train_words_per_s: Optional[float] = None  # the epoch loop alone, not the dev evaluation
    dev_eval_s: Optional[float] = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], score_name: str = LEGACY_DEV_SCORE_KEY) -> "Epoch":
        """A history entry; its dev score is under ``score_name`` (``dev_f1`` in files older than the name)."""
        def opt(name: str) -> Optional[float]:
            return None if d.get(name) is None else float(d[name])

        score = d[score_name] if score_name in d else d[LEGACY_DEV_SCORE_KEY]
        return cls(int(d["epoch"]), float(d["train_loss"]), float(score), opt("epoch_s"),
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
    dev_score_name: str = "dev_f1"  # what early stopping watched, the history's key: dev_f1 | dev_accuracy
    dev_score_higher_is_better: bool = True
    features_reused: Optional[bool] = None  # combined features kept from the previous job of the process
    finetune: Optional[Dict[str, Any]] = None  # a fine-tuning run's windows, words, tokens/s, saved model
    encoder_name: Optional[str] = None  # the encoder loaded: its group's name, else its folder or hub id
    causal: bool = False  # the encoder reads leftwards only (decoder-only: GPT-2, Llama, …)
    peak_rss_mb: Optional[float] = None  # the job's peak resident set size, MiB (None in older files)
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    path: Optional[Path] = field(default=None, compare=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], path: Optional[Path] = None) -> "RunResult":
        """Build from a finished run's ``results.json`` dict (``path``: the file it came from, if any); a dict that
        is not one raises :class:`IncompleteResults` (:func:`check_complete`)."""
        check_complete(d)
        control = str(d.get("control") or "none")
        score = d.get("dev_score") or {"name": "dev_accuracy" if control != "none" else LEGACY_DEV_SCORE_KEY}
        return cls(
            strategy=str(d["strategy"]),
            layers=None if d.get("layers") is None else [int(x) for x in d["layers"]],
            combine=None if d.get("combine") is None else str(d["combine"]),
            pooling=str(d["pooling"]), context=str(d["context"]), seed=int(d["seed"]), encoder=str(d["encoder"]),
            num_layers=None if d.get("num_layers") is None else int(d["num_layers"]),
            labels=list(d.get("labels") or []),
            dev=SplitScores.from_dict(d["dev"]), test=SplitScores.from_dict(d["test"]),
            best_epoch=d.get("best_epoch"), epochs_run=d.get("epochs_run"),
            history=[Epoch.from_dict(h, str(score["name"])) for h in d.get("history") or []],
            timings={k: float(v) for k, v in (d.get("timings") or {}).items()},
            cache_hit=d.get("cache_hit"), mix_weights=d.get("mix_weights"),
            config=dict(d.get("config") or {}), data_notes=list(d.get("data_notes") or []),
            encoder_passes=None if d.get("encoder_passes") is None else int(d["encoder_passes"]),
            sizes={s: dict(v) for s, v in (d.get("sizes") or {}).items()},
            precision=d.get("precision"), encoder_dtype=d.get("encoder_dtype"), device=d.get("device"),
            probe=str(d.get("probe") or ("finetune" if d["strategy"] == "finetune" else "bilstm")),
            control=control, encoder_weights=str(d.get("encoder_weights") or "pretrained"),
            mdl=d.get("mdl"), dev_score_name=str(score["name"]),
            dev_score_higher_is_better=bool(score.get("higher_is_better", True)),
            features_reused=d.get("features_reused"), finetune=d.get("finetune"), encoder_name=d.get("encoder_name"),
            causal=bool(d.get("causal") or False),
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
    def best_dev_score(self) -> Optional[float]:
        """The dev score of the best epoch (the weights the run kept), None without a history."""
        if not self.history or not self.best_epoch:
            return None
        return next((e.dev_score for e in self.history if e.epoch == self.best_epoch), None)

    @property
    def train_sentences(self) -> Optional[int]:
        """The training split's sentences (``sizes``), None in a record without them."""
        return self.sizes.get("train", {}).get("sentences")

    @property
    def run_dir(self) -> Optional[Path]:
        """The run folder (``results.json``'s folder), when loaded from a file."""
        return None if self.path is None else self.path.parent
