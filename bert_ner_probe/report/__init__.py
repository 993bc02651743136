"""Report step: collect a sweep's jobs into tables, significance tests and plots."""
