#!/bin/bash
# Calibration and routing on a finished demo's later-period test set: the demo's fine-tuned
# model as the small one, a larger model served by `smolt serve` as the fallback.
#   bench/demo/route.sh DEMO_DIR [FALLBACK_MODEL] [OUT]
# e.g. cargo run --release -- demo --seed 1 --test 120 --out runs/demo-1
#      bench/demo/route.sh runs/demo-1 qwen2.5-0.5b runs/demo-1-route
set -euo pipefail
D=${1:?usage: route.sh DEMO_DIR [FALLBACK_MODEL] [OUT]}
M=${2:-qwen2.5-0.5b}
OUT=${3:-$D-route}
SMOLT=${SMOLT:-target/release/smolt}
PORT=${PORT:-8093}
$SMOLT serve --model "$M" --port "$PORT" --max-batch 2 > "$OUT.serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER' EXIT
for _ in $(seq 1 300); do
  curl -s "http://127.0.0.1:$PORT/health" | grep -q ready && break
  sleep 1
done
$SMOLT eval --adapter "$D/train" --data "$D/data/test.jsonl" --schema "$D/data/schema.json" \
  --eval-config "$D/data/eval.json" --out "$OUT" -n 120 --fallback "http://127.0.0.1:$PORT"
