"""The grids sweeper's rule (bert_ner_probe/grids.py): a union of cartesian grids, the command line over every grid,
interpolated values resolved per job. The plugin runs a real sweep in tests/e2e/test_probing_sweep.py."""

from __future__ import annotations

from typing import List, Sequence

from bert_ner_probe.grids import expand, grid_overrides, is_late


def no_late(job: Sequence[str], expression: str) -> str:
    raise AssertionError(f"nothing to resolve, got {expression!r}")


def jobs_of(params, grids, arguments, resolve=no_late) -> List[List[str]]:
    jobs, _, _ = expand(params, grids, arguments, resolve)
    return jobs


def test_each_grid_is_a_product_and_the_grids_run_one_after_another():
    params = {"strategy": "layer"}
    grids = {"linear": {"probing": "linear", "seed": "1,2"}, "bilstm": {"probing": "bilstm", "seed": "1"}}
    jobs, per_grid, duplicates = expand(params, grids, [], no_late)
    assert jobs == [["strategy=layer", "probing=linear", "seed=1"], ["strategy=layer", "probing=linear", "seed=2"],
                    ["strategy=layer", "probing=bilstm", "seed=1"]]
    assert per_grid == {"linear": 2, "bilstm": 1} and duplicates == 0


def test_a_grid_wins_over_the_shared_params_and_the_command_line_over_both():
    params = {"strategy": "layer", "seed": "7"}
    grids = {"a": {"seed": "1,2", "strategy": "conditional"}, "b": {}}
    assert jobs_of(params, grids, []) == [["strategy=conditional", "seed=1"], ["strategy=conditional", "seed=2"],
                                          ["strategy=layer", "seed=7"]]
    # the command line's seed=3 replaces every grid's seeds; its sweep of pooling crosses every grid
    assert jobs_of(params, grids, ["seed=3", "pooling=first,mean"]) == [
        ["strategy=conditional", "seed=3", "pooling=first"], ["strategy=conditional", "seed=3", "pooling=mean"],
        ["strategy=layer", "seed=3", "pooling=first"], ["strategy=layer", "seed=3", "pooling=mean"]]
    assert grid_overrides({"mdl": False}, {"x": True}, []) == ["mdl=false", "x=true"]  # booleans as Hydra reads them


def test_an_interpolated_value_is_resolved_in_each_jobs_own_config():
    """``resolve(job, expression)`` sees the job's other overrides (the real one composes them: test_config)."""
    seen = []

    def resolve(job, expression):
        seen.append((tuple(job), expression))
        return "0,1" if "encoder=small" in job else "0,1,2"

    params = {"strategy.index": "${hidden_states:${encoder.name_or_path}}"}
    assert is_late("strategy.index=${hidden_states:${encoder.name_or_path}}") and not is_late("seed=1")
    jobs = jobs_of(params, {"g": {"seed": "1"}}, ["encoder=small,large"], resolve)
    assert jobs == [["seed=1", "encoder=small", "strategy.index=0"], ["seed=1", "encoder=small", "strategy.index=1"],
                    ["seed=1", "encoder=large", "strategy.index=0"], ["seed=1", "encoder=large", "strategy.index=1"],
                    ["seed=1", "encoder=large", "strategy.index=2"]]
    assert seen == [(("seed=1", "encoder=small"), "${hidden_states:${encoder.name_or_path}}"),
                    (("seed=1", "encoder=large"), "${hidden_states:${encoder.name_or_path}}")]


def test_a_job_two_grids_make_runs_once_and_is_counted_and_a_null_grid_is_left_out():
    grids = {"a": {"seed": "1,2"}, "b": {"seed": "2,3"}, "c": None}
    jobs, per_grid, duplicates = expand({}, grids, [], no_late)
    assert jobs == [["seed=1"], ["seed=2"], ["seed=3"]]
    assert per_grid == {"a": 2, "b": 2} and duplicates == 1
    assert jobs_of({"seed": "1,2"}, {}, []) == [["seed=1"], ["seed=2"]]  # no grid: the params alone, as basic
