"""Strategy step: which cached layers a word's vector is made of and how they are combined."""
