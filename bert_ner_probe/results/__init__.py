"""Results step: the record of one run (``results.json``) and its typed view."""
