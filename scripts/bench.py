#!/usr/bin/env python
"""Benchmark the harness against bare PyTorch loops: ``python scripts/bench.py --out DIR`` (see bert_ner_probe/bench/cli.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this source checkout, installed or not

from bert_ner_probe.bench.cli import main, script  # noqa: E402

if __name__ == "__main__":
    script(main)
