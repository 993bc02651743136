"""Strategy step: which cached layers a word's vector is made of and how they are combined."""

#: The strategy name of a fine-tuning run (the encoder and a linear head trained together; no cached layers).
FINETUNE = "finetune"
