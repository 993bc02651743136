"""Feature step: tokenise into windows, run the frozen encoder once, pool sub-tokens to words, cache every layer on disk."""
