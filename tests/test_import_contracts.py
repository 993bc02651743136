"""The import contracts of pyproject.toml ([tool.importlinter]): imports run one way, with import-linter."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept() -> None:
    """``lint-imports`` over this checkout's package: every contract kept (a broken one fails with its chain)."""
    command = shutil.which("lint-imports")
    args = [command] if command else [sys.executable, "-c", "from importlinter.cli import lint_imports_command; "
                                                            "lint_imports_command()"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([*args, "--config", str(REPO_ROOT / "pyproject.toml"), "--no-cache"], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout
