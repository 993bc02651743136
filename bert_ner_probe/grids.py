"""A sweep that is a union of grids: each grid a cartesian product, the jobs of all grids one after another.

Hydra's basic sweeper runs one cartesian product of its ``params`` and the
command line's sweeps. A probing sweep is not one: its linear rows run three
seeds and its BiLSTM rows one, and its conditional rows ([h_b; h_L]) run
every hidden state but the baseline. The ``grids`` sweeper
(``hydra/sweeper=grids``, the plugin in ``hydra_plugins/bert_ner_probe_grids``)
takes named grids beside the shared ``params``::

    hydra:
      sweeper:
        params:                 # every grid
          strategy.index: ${hidden_states:${encoder.name_or_path}}
        grids:
          linear: {probing: linear, seed: "1,2,3"}
          bilstm: {probing: bilstm, seed: "1"}

For each grid, in order, the overrides are the shared ``params``, then the
grid's own (they win), then the command line's (they win over both, in every
grid: ``seed=1`` makes every grid one seed), and the grid's jobs are their
cartesian product, the first key slowest, as the basic sweeper orders them.
A value that is an interpolation (``${hidden_states:${encoder.name_or_path}}``)
is resolved in each job's own config — composed from the grid's other
values — not in the sweep's: a sweep over two encoders sweeps each one's own
hidden states, and a conditional grid every hidden state but its own
baseline. A job that two grids both make runs once, and the sweeper says so;
a grid set to null (``~hydra.sweeper.grids.bilstm`` or ``=null``) is left out; no job is dropped otherwise. :func:`expand` is the whole rule (the plugin,
the docs' check and the tests call it).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Dict, List, Mapping, Sequence, Tuple

#: ``resolve(job_overrides, expression)``: ``expression`` (an OmegaConf interpolation) resolved in the config that
#: the job overrides compose.
Resolver = Callable[[Sequence[str], str], str]


def is_late(override: str) -> bool:
    """Whether an override's value is resolved in each job's config (it holds an interpolation, ``${...}``)."""
    return "=" in override and "${" in override.split("=", 1)[1]


def grid_overrides(params: Mapping[str, str], grid: Mapping[str, str], arguments: Sequence[str]) -> List[str]:
    """One grid's overrides: the shared ``params``, then the grid's (winning), then the command line's (winning
    over both); a key keeps its first place."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    merged: "OrderedDict[str, str]" = OrderedDict()
    for key, value in (*params.items(), *grid.items()):
        merged[str(key)] = f"{key}={str(value).lower() if isinstance(value, bool) else value}"
    for override in OverridesParser.create().parse_overrides(list(arguments)):
        merged[override.get_key_element()] = override.input_line
    return list(merged.values())


def _product(overrides: Sequence[str]) -> List[List[str]]:
    """The cartesian product of ``key=a,b`` overrides, the first key slowest (Hydra's basic sweeper's rule)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(overrides))
    (jobs,) = BasicSweeper.split_arguments(parsed, None)
    return [list(job) for job in jobs]


def grid_jobs(overrides: Sequence[str], resolve: Resolver) -> List[List[str]]:
    """The jobs of one grid's ``overrides`` (:func:`grid_overrides`): the product of the plain ones, each then
    crossed with its interpolated ones, resolved in the config the plain ones compose."""
    plain = [o for o in overrides if not is_late(o)]
    late = [o for o in overrides if is_late(o)]
    jobs = []
    for job in _product(plain):
        resolved = [f"{o.split('=', 1)[0]}={resolve(job, o.split('=', 1)[1])}" for o in late]
        jobs += [job + rest for rest in _product(resolved)] if resolved else [job]
    return jobs


def expand(params: Mapping[str, str], grids: Mapping[str, Mapping[str, str]], arguments: Sequence[str],
           resolve: Resolver) -> Tuple[List[List[str]], Dict[str, int], int]:
    """Every job of the union of ``grids`` (in order; a grid set to null is left out; no grid: one grid of
    ``params`` alone) with the command line's ``arguments``: ``(jobs, jobs made by each grid, duplicates run
    once)``. Jobs are override lists."""
    named = {k: g for k, g in grids.items() if g is not None} if grids else {"params": {}}
    jobs: List[List[str]] = []
    seen = set()
    per_grid: Dict[str, int] = {}
    duplicates = 0
    for name, grid in named.items():
        made = grid_jobs(grid_overrides(params, grid, arguments), resolve)
        per_grid[str(name)] = len(made)
        for job in made:
            key = frozenset(job)
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            jobs.append(job)
    return jobs, per_grid, duplicates
