"""Models by name: ``probe.name`` → the class that :func:`register` gave that name, and its ``probe.*`` schema.

A new probe is one module plus one yaml, as AllenNLP registers models:

* ``bert_ner_probe/probes/<name>.py`` defines a :class:`~bert_ner_probe.probes.base.Model`
  subclass decorated with ``@register("<name>", <its config>)``, where ``<its config>`` is a
  dataclass of its hyperparameters (:class:`~bert_ner_probe.probes.base.ProbeConfig` or a
  subclass, in the same module: their types and defaults live there alone);
* ``conf/probe/<name>.yaml`` names that schema first in its defaults list
  (``- /schema/probe/<name>@_here_``) and sets nothing else it does not change.

:func:`register` stores the schema in Hydra's ConfigStore (``schema/probe/<name>``), so a
misspelt key or a wrong type under ``probe.`` fails when the config is composed, as
everywhere else. :func:`model_class` imports ``bert_ner_probe.probes.<name>`` the first time the
name is asked for, and :func:`available` imports them all (``bert_ner_probe.config.register``
does, before any config is composed), so no list of probes is kept anywhere.

A probe outside this package is a module of an importable package that registers it when
Hydra imports the package: the package named on the config search path
(``hydra.searchpath=[pkg://mypkg]``) is imported before composition, and its folder holds
``probe/<option>.yaml``. ``probe.name`` is the name it registered (``mypkg.my_probe`` by
convention: its module path, which :func:`model_class` imports when no probe of that name is
registered yet, as in a fresh worker process).
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from typing import Any, Callable, Dict, List, Type, TypeVar

from bert_ner_probe.errors import UserError
from bert_ner_probe.probes.base import Model, ProbeConfig, ProbeInputs

M = TypeVar("M", bound=Type[Model])

#: The ConfigStore group of the probes' schemas: ``conf/probe/<name>.yaml`` starts from ``/schema/probe/<name>``.
SCHEMA_GROUP = "schema/probe"

_MODELS: Dict[str, Type[Model]] = {}


def register(name: str, config: Type[ProbeConfig] = ProbeConfig) -> Callable[[M], M]:
    """Class decorator: the model ``probe.name=<name>`` builds, its hyperparameters ``config`` (a dataclass)
    stored in Hydra's ConfigStore as ``schema/probe/<name>`` with ``name`` set."""
    if not (isinstance(config, type) and issubclass(config, ProbeConfig) and dataclasses.is_dataclass(config)):
        raise TypeError(f"probe {name!r}: its config must be a dataclass subclassing ProbeConfig, not {config!r}")

    def add(cls: M) -> M:
        seen = _MODELS.get(name)
        if seen is not None and seen.__qualname__ != cls.__qualname__:
            raise ValueError(f"probe {name!r} is registered twice: {seen.__module__}.{seen.__qualname__} and "
                             f"{cls.__module__}.{cls.__qualname__}")
        from hydra.core.config_store import ConfigStore  # noqa: PLC0415

        cls.config_type = config
        _MODELS[name] = cls
        ConfigStore.instance().store(group=SCHEMA_GROUP, name=name, node=config(name=name))
        return cls

    return add


def available() -> List[str]:
    """The probes of this package (its modules that register one), for messages; every one is registered after."""
    import bert_ner_probe.probes as package

    for info in pkgutil.iter_modules(package.__path__):
        _import(f"{package.__name__}.{info.name}")
    return sorted(_MODELS)


def _import(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name is not None and module.startswith(e.name):  # the module itself is missing, not one it imports
            return False
        raise
    return True


def model_class(name: str) -> Type[Model]:
    """The class registered as ``name``; one :class:`UserError` listing the probes there are if none is."""
    if name not in _MODELS and "." not in name:
        _import(f"bert_ner_probe.probes.{name}")
    if name not in _MODELS:
        _import(name)  # a probe outside the package, named by its module
    if name not in _MODELS:
        raise UserError(f"probe.name={name!r}: no such probe (there are: {', '.join(available())})")
    return _MODELS[name]


def probe_config(cfg: Any) -> ProbeConfig:
    """The run's ``probe`` config as its model's schema (a dataclass instance), with one :class:`UserError` when the
    keys are another probe's (``probe.name=linear`` over ``probe=bilstm``'s keys) or do not fit the schema."""
    from omegaconf import OmegaConf  # noqa: PLC0415
    from omegaconf.errors import OmegaConfBaseException  # noqa: PLC0415

    name = str(cfg.name)
    want = model_class(name).config_type
    have = OmegaConf.get_type(cfg) if OmegaConf.is_config(cfg) else type(cfg)
    if dataclasses.is_dataclass(have) and have is not want:
        raise UserError(f"probe.name={name}: its keys are {want.__name__}'s, but these are {have.__name__}'s; "
                        f"choose the probe and its keys together with probe=<its yaml> (conf/probe/)")
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(want), cfg))
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", "") or ""
        raise UserError(f"probe.{key}: {str(e).strip().splitlines()[0]} (probe.name={name}: {want.__name__})") from None


def build(cfg: Any, inputs: ProbeInputs) -> Model:
    """The model of the run's ``probe`` config over ``inputs``."""
    settings = probe_config(cfg)
    return model_class(settings.name).from_config(settings, inputs)
