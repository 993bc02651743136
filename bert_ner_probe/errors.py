"""User-facing errors.

Every mistake a user can make (a malformed data line, a missing file, an
unknown layer) is raised as a :class:`UserError`. The command-line entry
point prints its message on one line and exits with status 2, with no
Python traceback; everything else is a bug and keeps its traceback.
:func:`check_at_least` and :func:`check_fraction` are the range checks of
config values the types cannot express (``trainer.epochs`` ≥ 1, a dropout in
[0, 1)), in one wording.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union


class UserError(Exception):
    """An error caused by input or configuration, reported without traceback."""


class DataFormatError(UserError):
    """A data file that does not follow the expected column format.

    The message always names the file and, where one applies, the 1-based line.
    """

    def __init__(self, path: Union[str, Path], line: Optional[int], message: str) -> None:
        self.path = str(path)
        self.line = line
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


def check_at_least(key: str, value: float, minimum: float = 1) -> None:
    """``key=value`` must be at least ``minimum``: one :class:`UserError` otherwise."""
    if value < minimum:
        raise UserError(f"{key}={value}: must be at least {minimum}")


def check_fraction(key: str, value: float) -> None:
    """``key=value`` must be in [0, 1) (a dropout probability): one :class:`UserError` otherwise."""
    if not 0.0 <= value < 1.0:
        raise UserError(f"{key}={value}: must be in [0, 1)")
