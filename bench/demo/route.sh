#!/bin/bash
# Calibration and routing on a finished demo's later-period test set: the demo's fine-tuned
# model as the small one, a larger model served by `smolt serve` as the fallback.
#   [FALLBACK_ADAPTER=RUN] bench/demo/route.sh DEMO_DIR [FALLBACK_MODEL] [OUT]
# e.g. cargo run --release -- demo --seed 1 --test 120 --out runs/demo-1
#      bench/demo/route.sh runs/demo-1 qwen2.5-0.5b runs/demo-1-route
# FALLBACK_ADAPTER: serve the fallback model with this adapter (e.g. the train/ folder of
# `smolt demo --model qwen2.5-0.5b --seed 1`, trained on the same receipts) and ask it.
set -euo pipefail
D=${1:?usage: route.sh DEMO_DIR [FALLBACK_MODEL] [OUT]}
M=${2:-qwen2.5-0.5b}
OUT=${3:-$D-route}
SMOLT=${SMOLT:-target/release/smolt}
PORT=${PORT:-8093}
ADAPTER_ARGS=()
FALLBACK_MODEL_ARGS=()
if [ -n "${FALLBACK_ADAPTER:-}" ]; then
  ADAPTER_ARGS=(--adapter "teacher=$FALLBACK_ADAPTER")
  FALLBACK_MODEL_ARGS=(--fallback-model teacher)
fi
$SMOLT serve --model "$M" "${ADAPTER_ARGS[@]}" --port "$PORT" --max-batch 2 > "$OUT.serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER' EXIT
for _ in $(seq 1 300); do
  curl -s "http://127.0.0.1:$PORT/health" | grep -q "\"status\":\"ok\"" && break
  sleep 1
done
$SMOLT eval --adapter "$D/train" --data "$D/data/test.jsonl" --schema "$D/data/schema.json" \
  --eval-config "$D/data/eval.json" --out "$OUT" -n 120 --fallback "http://127.0.0.1:$PORT" \
  "${FALLBACK_MODEL_ARGS[@]}"
