"""bert_ner_probe's Hydra plugins: the ``grids`` sweeper (a union of grids, :mod:`bert_ner_probe.grids`)."""
