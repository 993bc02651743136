"""The base of every configuration choice: a ``str`` Enum whose text is its value.

Config fields typed with a :class:`Choice` subclass make OmegaConf reject a
value outside the Enum when the config is composed; the member still
compares equal to its string (``Combine.concat == "concat"``), prints as it
(``f"{Combine.concat}"`` is ``concat``) and is written to JSON as it.
"""

from __future__ import annotations

import enum


class Choice(str, enum.Enum):
    def __str__(self) -> str:
        return str(self.value)

    __format__ = str.__format__  # f"{member}" is the value on every Python version

    @classmethod
    def names(cls) -> str:
        """``a | b | c``, for messages."""
        return " | ".join(m.value for m in cls)
