"""Training step: the loops that fit a tagger (probe and fine-tuning), their optimiser, schedule and stopping."""
