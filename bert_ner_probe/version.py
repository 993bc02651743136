"""The package's version (``bert_ner_probe.__version__``), in a module that imports nothing: results.json records it."""

__version__ = "0.1.0"
