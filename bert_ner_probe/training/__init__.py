"""Training step: one loop that fits every model (probes and the fine-tuned encoder), the data it reads, its optimiser,
schedule and stopping, and the online code's probes."""
