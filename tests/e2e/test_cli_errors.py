"""The command's error path on bad data and a missing encoder: one line, exit status 2, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]


def _cli(tmp_path: Path, *overrides: str, **extra_env: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CONLL2003_DIR"}
    env.update(extra_env)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "bert_ner_probe", f"cache_dir={tmp_path / 'cache'}",
           f"hydra.run.dir={tmp_path / 'run'}", "progress=false", "device=cpu", *overrides]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def _refused_before_any_work(res: subprocess.CompletedProcess, tmp_path: Path) -> None:
    """Exit status 2, no traceback, and nothing written to the cache."""
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_cli_malformed_data_exits_2_without_traceback(tmp_path, conll):
    d = conll.write(tmp_path / "data", train="EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\ncall NN O\n")
    res = _cli(tmp_path, f"data.dir={d}")
    _refused_before_any_work(res, tmp_path)
    assert f"{d / 'train.txt'}:4:" in res.stderr
    assert "expected 4 columns" in res.stderr


def test_cli_missing_encoder_folder_exits_2(tmp_path, conll):
    d = conll.write(tmp_path / "data")
    res = _cli(tmp_path, f"data.dir={d}", "encoder.name_or_path=/nonexistent/folder")
    assert res.returncode == 2, res.stderr
    assert "/nonexistent/folder" in res.stderr and "does not exist" in res.stderr
    assert "Traceback" not in res.stderr


def test_cli_without_data_dir_asks_the_configured_hub_dataset(tmp_path):
    # Offline here: the message must name the data.hub_id given, not the default one.
    res = _cli(tmp_path, "data.dir=null", "data.hub_id=someone/other_conll", HF_HUB_OFFLINE="1")
    assert res.returncode == 2, res.stderr
    assert "'someone/other_conll'" in res.stderr and "Traceback" not in res.stderr


def test_cli_mdl_with_too_little_training_data_exits_2_before_any_work(tmp_path, conll):
    """mdl=true needs a sentence in its first block, 0.1% of the training set: one line, before any extraction."""
    d = conll.write(tmp_path / "data")
    res = _cli(tmp_path, f"data.dir={d}", "probe=linear", "mdl=true")
    _refused_before_any_work(res, tmp_path)
    assert "mdl=true: training set of 5 sentences is too small" in res.stderr and "needs at least 750" in res.stderr


def test_cli_device_map_on_a_cpu_exits_2_before_any_work(tmp_path, conll):
    """encoder.device_map=auto hands a model larger than one GPU to transformers; a CPU run refuses it in one line."""
    d = conll.write(tmp_path / "data")
    res = _cli(tmp_path, f"data.dir={d}", "encoder.device_map=auto")
    _refused_before_any_work(res, tmp_path)
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error: ")]
    assert lines == ["error: encoder.device_map=auto spreads a model over GPUs, but this run's device is cpu: drop it "
                     "(one host holds the whole model there)"]


@pytest.mark.parametrize("override, message", [
    ("tagger.hidden_size=256", "error: tagger.hidden_size: renamed to probe.hidden_size"),
    ("tagger=linear", "error: tagger=linear: renamed to probe=linear"),
])
def test_a_renamed_key_answers_with_its_new_name(tmp_path, override, message):
    """Older commands and notes still say tagger (renamed probe): one line naming the new key, exit 2, no work."""
    res = _cli(tmp_path, override)
    assert res.returncode == 2 and res.stderr.strip().splitlines() == [message]
    assert not (tmp_path / "run").exists()


def test_help_starts_with_the_harness_then_lists_the_groups(tmp_path):
    res = _cli(tmp_path, "--help")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "bert-ner-probe: which layers of a frozen encoder carry entity information?"
    text = res.stdout
    starts = [text.index(f"bert-ner-probe {c}") for c in ("debug=smoke", "experiment=table7_cpu", "experiment=probing")]
    assert starts == sorted(starts) and "Docs: README.md and docs/" in text
    groups = text.index("== Configuration groups")
    assert groups > starts[-1] and "probe: bilstm, finetune, linear, mlp" in text[groups:]
    assert "powered by Hydra" not in text
