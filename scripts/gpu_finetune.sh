#!/usr/bin/env bash
# The fine-tuning row on a lent CUDA machine with no network; run from the repo root:
#
#   bash scripts/gpu_finetune.sh        # results under $OUT (default ./gpu_out)
#
# Wheels from .whl/ and data from .devdata/ as scripts/gpu_check.sh takes them. Runs, each
# on the full CoNLL-2003 data with the defaults of trainer/finetune.yaml (AdamW 5e-5, warm-up
# 10% + linear decay, batch 32, 3 epochs, clip 1.0, bf16 autocast where the GPU has bf16):
#   (1) MiniLM (.devdata/minilm, fp16 weights loaded as float32), sentence context;
#   (2) MiniLM, document context (the paper's);
#   (3) a randomly initialised BERT-base-sized encoder, document context, 1 epoch: time only.
# Prints each run's summary line, per-epoch dev F1 and times.
set -euo pipefail
START=$(date +%s)
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
step() { echo "[gpu_finetune $(date +%H:%M:%S) +$(( $(date +%s) - START ))s] $*"; }

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$PWD"
fi
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
export CONLL2003_DIR="${CONLL2003_DIR:-$PWD/.devdata/conll2003}"
MINILM=${MINILM:-$PWD/.devdata/minilm}
BERT_BASE=${BERT_BASE:-/tmp/bert-base-random}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true

python3 - "$MINILM" "$BERT_BASE" <<'PY'
import sys, torch
from transformers import AutoTokenizer, BertConfig, BertModel
tok = AutoTokenizer.from_pretrained(sys.argv[1])
torch.manual_seed(0)
BertModel(BertConfig(vocab_size=tok.vocab_size)).save_pretrained(sys.argv[2])
tok.save_pretrained(sys.argv[2])
PY

show() {
    python3 - "$1" <<'PY'
import sys
from bert_ner_probe.results.run_result import RunResult
r = RunResult.load(sys.argv[1])
print(f"  dev F1 {100 * r.dev.f1:.2f}  test F1 {100 * r.test.f1:.2f}  best epoch {r.best_epoch}/"
      f"{r.epochs_run}  precision {r.precision}  train {r.timings['train_s']:.1f}s  "
      f"total {r.timings['total_s']:.1f}s")
for h in r.history:
    print(f"    epoch {h.epoch}: loss {h.train_loss:.4f} dev F1 {100 * h.dev_f1:.2f} "
          f"{h.epoch_s:.1f}s ({h.train_words_per_s:.0f} words/s) dev eval {h.dev_eval_s:.1f}s")
PY
}

run() {  # name, overrides...
    local name=$1; shift
    step "$name: $*"
    local t0=$(date +%s)
    python3 -m bert_ner_probe strategy=finetune device=cuda progress=false "hydra.run.dir=$OUT/$name" "$@" \
        > "$OUT/$name.log" 2>&1 || { tail -20 "$OUT/$name.log"; return 1; }
    step "$name: $(( $(date +%s) - t0 )) s wall"
    show "$OUT/$name"
}

run ft_minilm_sentence encoder.name_or_path="$MINILM" encoder.context=sentence
run ft_minilm_document encoder.name_or_path="$MINILM" encoder.context=document
run ft_bert_base_document encoder.name_or_path="$BERT_BASE" encoder.context=document trainer.epochs=1
step "done"
