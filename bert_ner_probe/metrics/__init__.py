"""Metrics step: seqeval scores of predicted tags and the CoNLL prediction files."""
