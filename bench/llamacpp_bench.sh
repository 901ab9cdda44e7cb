#!/usr/bin/env bash
# llama.cpp peer figures as JSON lines on stdout (progress on stderr). Builds llama.cpp first if needed.
#   bench/llamacpp_bench.sh [speed] [receipt] [--model M.gguf] [--threads 2,1] [--reps 3] [--runs 1]
#                           [--data train.jsonl] [--receipt-index 0] [--latency-reps 3]
#   speed:   llama-bench -m M -t T -p 512 -n 128 -r 3 -o json  for T in 2,1 -> pp512/tg128 min/median/max
#   receipt: one SROIE receipt -> JSON with llama-completion --json-schema-file, greedy; wall time
# Default: speed only.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
"$here/build_llamacpp.sh" >&2
exec python3 "$here/llamacpp_bench.py" "$@"
