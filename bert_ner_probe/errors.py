"""User-facing errors.

Every mistake a user can make (a malformed data line, a missing file, an
unknown layer) is raised as a :class:`UserError`. The command-line entry
point prints its message on one line and exits with status 2, with no
Python traceback; everything else is a bug and keeps its traceback.
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
