"""How many jobs of a sweep run at once on one device: ``trainer.concurrent``.

A sweep's jobs (30–150 small taggers reading the same cached features) each
use a small share of a GPU: a 2×768 BiLSTM step is bound by kernel launches
from one host thread. So a multirun dispatches its jobs to worker processes
that share the device and the feature cache (``conf/hydra/launcher/concurrent.yaml``:
Hydra's joblib launcher, whose ``n_jobs`` is :func:`concurrent_jobs` of
``trainer.concurrent`` and ``device``). Each job is still one ordinary Hydra
job — its own seed, weights, batch order, early stopping, run folder and
``results.json`` — and a job's error is caught inside it (``main.py`` writes
``error.json``), so it does not stop its siblings.

* ``trainer.concurrent=1`` — one job at a time, in the launching process (today's behaviour).
* ``trainer.concurrent=N`` — N worker processes.
* ``trainer.concurrent=auto`` — on the CPU, 1 (the cores are already shared by
  the one job's threads); on CUDA, as many as fit in the free GPU memory::

      N = min(host cores, (free − margin) // PER_JOB_BYTES),  margin = max(MARGIN_BYTES, 10 % of the card)

  at least 1. ``PER_JOB_BYTES`` covers a worker's CUDA context, one
  strategy's features of a base-size encoder and a 2×768 tagger in training.

The count is passed to the workers in ``$BERT_NER_PROBE_WORKERS``, so that
each one takes a fair share of the host's threads (:func:`worker_threads`)
and of the free GPU memory for its features
(:func:`bert_ner_probe.training.tagging_data.feature_home`).
"""

from __future__ import annotations

import os
from typing import Any

from omegaconf import OmegaConf

from bert_ner_probe.errors import UserError

ENV = "BERT_NER_PROBE_WORKERS"
PER_JOB_BYTES = 6 * 2**30  # per worker; bench.md gives the measurement behind it
MARGIN_BYTES = 4 * 2**30
RESOLVER = "probe_concurrent"


def host_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def concurrent_jobs(value: Any, device: str) -> int:
    """Worker processes for ``trainer.concurrent=value`` on ``device`` (see the module docstring)."""
    text = str(value).strip().lower()
    if text != "auto":
        try:
            n = int(text)
        except ValueError:
            n = 0
        if n < 1:
            raise UserError(f"trainer.concurrent={value!r}: expected auto or a whole number of at least 1")
        return n
    import torch

    from bert_ner_probe.device import resolve_device

    dev = resolve_device(str(device))
    if dev.type != "cuda":
        return 1
    free, total = torch.cuda.mem_get_info(dev)
    margin = max(MARGIN_BYTES, 0.1 * total)
    return max(1, min(host_cores(), int((free - margin) // PER_JOB_BYTES)))


def _resolve(value: Any, device: Any) -> int:
    """The launcher's ``n_jobs``; in a worker (``$BERT_NER_PROBE_WORKERS`` set) the launching process's count."""
    if os.environ.get(ENV):
        return int(os.environ[ENV])
    n = concurrent_jobs(value, str(device))
    os.environ[ENV] = str(n)  # inherited by the worker processes, started after this
    return n


def register_resolver() -> None:
    """``${probe_concurrent:${trainer.concurrent},${device}}`` for ``conf/hydra/launcher/concurrent.yaml``."""
    OmegaConf.register_new_resolver(RESOLVER, _resolve, replace=True)


def workers() -> int:
    """How many jobs of this sweep run at once (1 outside a concurrent sweep)."""
    return max(1, int(os.environ.get(ENV) or 1))


def worker_threads() -> int:
    """Torch threads for one job when ``threads`` is not set: the host's cores shared among the workers."""
    return max(1, host_cores() // workers())
