"""Table 7 of Devlin et al. (2019): its feature-based strategies, in the paper's order, and the paper's figures.

The report (rows in this order, the paper's dev F1 beside each), the
benchmark's sweep and ``scripts/gpu_check.sh`` read them from here.
"""

from __future__ import annotations

from typing import Dict, Tuple

#: Feature-based NER with BERT-base (cased), CoNLL-2003 dev F1, per strategy (Table 7), in the paper's order:
#: Embeddings, Second-to-Last Hidden, Last Hidden, Weighted Sum Last Four Hidden, Concat Last Four Hidden,
#: Weighted Sum All 12 Layers.
PAPER_DEV_F1: Dict[str, float] = {
    "embeddings": 91.0,
    "second_to_last": 95.6,
    "last": 94.9,
    "sum_last_four": 95.9,
    "concat_last_four": 96.1,
    "sum_all": 95.5,
}
#: The paper's fine-tuned BERT-base dev F1 on the same task.
PAPER_FINETUNE_DEV_F1 = 96.4
#: The paper's fine-tuned BERT-large dev F1 (Table 3).
PAPER_FINETUNE_LARGE_DEV_F1 = 96.6
#: The strategy names of Table 7, in the paper's order.
TABLE7_ORDER: Tuple[str, ...] = tuple(PAPER_DEV_F1)
