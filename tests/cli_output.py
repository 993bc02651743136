"""``one_error_line``: what a command that failed on a user error prints, checked the way every CLI test checks it."""

from __future__ import annotations

import subprocess


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The run failed as a user error: exit 2, no traceback, exactly one ``error:`` line; return it."""
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]
