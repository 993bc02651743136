"""The base of every configuration choice: a ``str`` Enum whose text is its value.

Config fields typed with a :class:`Choice` subclass make OmegaConf reject a
value outside the Enum when the config is composed (``pooling.method=max``
fails before any work starts); the member still compares equal to its
string (``Combine.concat == "concat"``), prints as it (``f"{Combine.concat}"``
is ``concat``) and is written to JSON as it, so results files and cache keys
read the same as with plain strings.

Each Enum lives in the module that owns the thing it chooses (``Pooling`` in
``features/pooling.py``, ``Combine`` in ``strategy/combiner.py``, …).
Functions that also take a plain string from Python callers turn it into the
member with :meth:`Choice.parse`, the one place a bad value becomes an error.
"""

from __future__ import annotations

import enum
from typing import Type, TypeVar

C = TypeVar("C", bound="Choice")


class Choice(str, enum.Enum):
    def __str__(self) -> str:
        return str(self.value)

    __format__ = str.__format__  # f"{member}" is the value on every Python version

    @classmethod
    def names(cls) -> str:
        """``a | b | c``, for messages."""
        return " | ".join(m.value for m in cls)

    @classmethod
    def parse(cls: Type[C], value: object, key: str) -> C:
        """``value`` (a member or its text) as a member; a :class:`~bert_ner_probe.errors.UserError` naming ``key`` if
        it is none of them."""
        try:
            return cls(value)
        except ValueError:
            from bert_ner_probe.errors import UserError

            raise UserError(f"{key}={value!r}: expected one of {cls.names()}") from None
