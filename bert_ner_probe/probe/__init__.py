"""Probe step: the models the trainer fits, by name (``probe=bilstm|linear|mlp|finetune``, :mod:`.registry`)."""
