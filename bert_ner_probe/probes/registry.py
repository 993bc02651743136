"""Models by name: ``probe.name`` → the class that :func:`register` gave that name.

A new probe is one module plus one yaml, as AllenNLP registers models:

* ``bert_ner_probe/probes/<name>.py`` defines a :class:`~bert_ner_probe.probes.base.Model`
  subclass decorated with ``@register("<name>")``;
* ``conf/probe/<name>.yaml`` sets ``probe.name: <name>`` and the keys it reads.

:func:`model_class` imports ``bert_ner_probe.probes.<name>`` the first time
the name is asked for, so no list of probes is kept anywhere. A probe
outside this package is named by its module: ``probe.name=mypkg.my_probe``
imports ``mypkg.my_probe``, which registers ``mypkg.my_probe``.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, Dict, List, Type, TypeVar

from bert_ner_probe.errors import UserError
from bert_ner_probe.probes.base import Model, ProbeInputs

M = TypeVar("M", bound=Type[Model])

_MODELS: Dict[str, Type[Model]] = {}


def register(name: str) -> Callable[[M], M]:
    """Class decorator: the model ``probe.name=<name>`` builds."""

    def add(cls: M) -> M:
        seen = _MODELS.get(name)
        if seen is not None and seen.__qualname__ != cls.__qualname__:
            raise ValueError(f"probe {name!r} is registered twice: {seen.__module__}.{seen.__qualname__} and "
                             f"{cls.__module__}.{cls.__qualname__}")
        _MODELS[name] = cls
        return cls

    return add


def available() -> List[str]:
    """The probes of this package (its modules that register one), for messages."""
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
    if name not in _MODELS:
        _import(name if "." in name else f"bert_ner_probe.probes.{name}")
    if name not in _MODELS:
        raise UserError(f"probe.name={name!r}: no such probe (there are: {', '.join(available())})")
    return _MODELS[name]


def build(cfg, inputs: ProbeInputs) -> Model:
    """The model of the run's ``probe`` config over ``inputs``."""
    return model_class(str(cfg.name)).from_config(cfg, inputs)
