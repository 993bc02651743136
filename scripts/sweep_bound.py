#!/usr/bin/env python
"""The bare-loop bound of a finished sweep: ``python scripts/sweep_bound.py SWEEP_DIR --wall SECONDS [--out F]``.

See bert_ner_probe/bench/bound.py.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this source checkout, installed or not

from bert_ner_probe.bench.bound import main  # noqa: E402
from bert_ner_probe.bench.cli import script  # noqa: E402

if __name__ == "__main__":
    script(main)
