"""Data step: read a corpus (CoNLL files or a ``datasets`` dataset) into sentences, tags and documents."""
