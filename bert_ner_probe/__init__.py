"""bert_ner_probe: which layers of a frozen encoder carry entity information?

Feature-based NER probing as in Devlin et al. (2019, §5.3, Table 7).
"""

__version__ = "0.1.0"
