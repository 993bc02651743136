"""Tagger step: the models that label words (the probe's BiLSTM, the fine-tuning head)."""
