"""A probe from outside the package with a hyperparameter of its own (tests/example_probe: its module and its yaml,
nothing else): found on the config search path, typed and checked when the config is composed, run end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from bert_ner_probe.api import compose_config, probe
from bert_ner_probe.errors import UserError

TESTS = Path(__file__).resolve().parents[1]
SEARCH = "hydra.searchpath=[pkg://example_probe]"  # the package holding the probe's module and probe/low_rank.yaml


def test_its_keys_are_typed_and_checked_when_composed():
    cfg = compose_config([SEARCH, "probe=low_rank", "probe.rank=4"])
    assert OmegaConf.get_type(cfg.probe).__name__ == "LowRankConfig"
    assert OmegaConf.to_container(cfg.probe) == {"name": "example_probe", "crf": False, "input_dropout": 0.0,
                                                 "rank": 4}
    with pytest.raises(UserError, match=r"^probe.rank: Value 'four' of type 'str' could not be converted to Integer"):
        compose_config([SEARCH, "probe=low_rank", "probe.rank=four"])
    with pytest.raises(UserError, match=r"^probe.rnak: probe=example_probe has no key 'rnak' \(its keys: crf, "
                                        r"input_dropout, rank\)$"):
        compose_config([SEARCH, "probe=low_rank", "probe.rnak=4"])


def test_a_typo_in_a_sweep_stops_it_before_the_first_job(tmp_path):
    """``probe.rank`` is the low-rank probe's own key: the BiLSTM job of the grid is refused when composed."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)])}
    proc = subprocess.run([sys.executable, "-m", "bert_ner_probe", "-m", SEARCH, "probe=low_rank,bilstm",
                           "probe.rank=4", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: probe.rank: probe=bilstm has no key 'rank' (its keys: crf, input_dropout, hidden_size, num_layers, "
        "dropout, impl); it is a key of probe=example_probe: a sweep over several probes sets it for one of them in "
        "conf/probe/experiment/<probe>_<experiment>.yaml (docs/design.md)"]
    assert not (tmp_path / "sweep").exists()


@pytest.mark.e2e
@pytest.mark.slow
def test_it_runs_end_to_end_on_real_data(tmp_path, conll_dir, one_thread):
    result = probe([SEARCH, "probe=low_rank", "probe.rank=4", "debug=smoke", "trainer.epochs=3", "strategy=last",
                    f"data.dir={conll_dir}", f"cache_dir={tmp_path / 'cache'}"], out_dir=tmp_path / "run")
    assert result.probe == "example_probe" and result.config["probe"]["rank"] == 4
    losses = [e.train_loss for e in result.history]
    assert len(losses) == 3 and losses[-1] < losses[0]
    with pytest.raises(UserError, match=r"^probe.rank=0: must be at least 1"):
        probe([SEARCH, "probe=low_rank", "probe.rank=0", "debug=smoke", f"data.dir={conll_dir}",
               f"cache_dir={tmp_path / 'cache'}"], out_dir=tmp_path / "refused")
