"""Metrics step: seqeval scores of predicted tags, token accuracy, the CoNLL prediction files and the formulas of
the online code length."""
