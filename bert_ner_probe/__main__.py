"""``python -m bert_ner_probe`` runs the same Hydra main as ``bert-ner-probe``."""

from bert_ner_probe.main import main

if __name__ == "__main__":
    main()
