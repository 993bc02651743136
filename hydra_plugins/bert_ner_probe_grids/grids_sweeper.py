"""The ``grids`` sweeper: Hydra's basic sweeper over a union of grids (the rule: :mod:`bert_ner_probe.grids`).

Selected with ``hydra/sweeper=grids`` (``conf/hydra/sweeper/grids.yaml``); ``experiment=probing`` uses it.
Hydra finds it here because it only loads plugins from the ``hydra_plugins`` package.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

GRIDS_VALUE = "_grids_value_"  # where a job's config holds an expression while it is resolved


class GridsSweeper(BasicSweeper):
    """The basic sweeper (batches, validation of every job's config before the first runs, the launcher), over
    the jobs of :func:`bert_ner_probe.grids.expand`.

    ``params`` and ``grids`` are read from the sweep's config unresolved (:meth:`setup`), so that an
    interpolated value is resolved in each job's own config, not in the sweep's.
    """

    def __init__(self, max_batch_size: Optional[int] = None, params: Optional[Dict[str, str]] = None,
                 grids: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(max_batch_size, params)
        self.grids = grids or {}

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        node = config.hydra.sweeper
        self.params = OmegaConf.to_container(node.params, resolve=False) if node.get("params") else {}
        self.grids = OmegaConf.to_container(node.grids, resolve=False) if node.get("grids") else {}

    def resolve(self, overrides: Sequence[str], expression: str) -> str:
        """``expression`` resolved in the config that ``overrides`` compose (as the job would get it)."""
        assert self.hydra_context is not None and self.config is not None
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        cfg = copy.deepcopy(cfg)
        OmegaConf.set_readonly(cfg, False)
        OmegaConf.set_struct(cfg, False)
        cfg[GRIDS_VALUE] = expression
        return str(cfg[GRIDS_VALUE])

    def sweep(self, arguments: List[str]) -> Any:
        from bert_ner_probe.grids import expand

        assert self.config is not None and self.launcher is not None
        jobs, per_grid, duplicates = expand(self.params, self.grids, arguments, self.resolve)
        made = ", ".join(f"{name} {n}" for name, n in per_grid.items())
        log.info("grids sweeper: %d jobs (%s%s)", len(jobs), made,
                 f"; {duplicates} made by two grids run once" if duplicates else "")
        size = self.max_batch_size or len(jobs) or 1
        self.overrides = [jobs[i:i + size] for i in range(0, len(jobs), size)]
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        returns = []
        initial_job_idx = 0
        while not self.is_done():
            batch = self.get_job_batch()
            self.validate_batch_is_legal(batch)
            results = self.launcher.launch(batch, initial_job_idx=initial_job_idx)
            for r in results:
                _ = r.return_value  # a failed job's exception surfaces here, as in the basic sweeper
            initial_job_idx += len(batch)
            returns.append(results)
        return returns
