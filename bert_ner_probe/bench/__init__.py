"""The benchmark: the harness against deliberately bare PyTorch loops on this machine.

* :mod:`~bert_ner_probe.bench.bare` — the bare reference loops (encoder forward, BiLSTM epoch);
* :mod:`~bert_ner_probe.bench.measure` — extraction and training timings, harness vs bare;
* :mod:`~bert_ner_probe.bench.children` — harness runs as child processes (sweeps, peak RSS);
* :mod:`~bert_ner_probe.bench.render` — ``bench.md``;
* :mod:`~bert_ner_probe.bench.settings` — what shapes the measurements, and the harness overrides;
* :mod:`~bert_ner_probe.bench.cli` — ``scripts/bench.py``;
* :mod:`~bert_ner_probe.bench.bound` — ``scripts/sweep_bound.py``: the bare-loop bound of a finished sweep.
"""
