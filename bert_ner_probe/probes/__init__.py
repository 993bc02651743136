"""Probe step (``bert_ner_probe.probes``; the config group is ``probe``): the models the trainer fits, by name (``probe=bilstm|linear|mlp|finetune``, :mod:`.registry`)."""
