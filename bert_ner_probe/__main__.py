"""``python -m bert_ner_probe`` runs the same Hydra main as ``bert-ner-probe``."""

from .main import main

if __name__ == "__main__":
    main()
