#!/usr/bin/env bash
# SROIE receipts end to end with smolt: an 80/20 split of the given train.jsonl, one epoch of
# LoRA training, then the fine-tuned model and the 2-shot base model on the held-out receipts.
#
#   bench/sroie/run.sh /path/to/sroie/train.jsonl [OUT] [EVAL_LIMIT]
#
# The SROIE data is research data and is not shipped with smolt. Prints both evaluations and
# the comparison; everything lands in OUT (default runs/sroie).
#
# Another base model: SMOLT_MODEL=qwen2.5-0.5b bench/sroie/run.sh … (every smolt command here
# reads SMOLT_MODEL). Results so far, with the commands that made them: bench/sroie/RESULTS.md.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
data="${1:?usage: $0 SROIE_TRAIN_JSONL [OUT] [EVAL_LIMIT]}"
out="${2:-runs/sroie}"
limit="${3:-60}"
smolt="${SMOLT:-cargo run --release -q --}"
mkdir -p "$out"
$smolt data split "$data" --valid 0.2 --test 0 --seed 0 --out "$out/split"
$smolt data check "$out/split/train.jsonl" "$out/split/valid.jsonl"
# Training takes the truths as they are: about 70 SROIE totals carry currency marks ("RM 3.90",
# "$8.20") that the decoding schema's bare-number pattern would reject, so the schema is used
# only at evaluation, where the number normaliser compares totals by value.
if [ ! -f "$out/train/summary.json" ]; then
  resume=""
  [ -d "$out/train/checkpoints" ] && resume="--resume"
  $smolt train --data "$out/split/train.jsonl" --out "$out/train" \
    --epochs 1 --set max_len=640 --set checkpoint_every=25 --set eval_every=0 $resume
fi
$smolt eval --data "$out/split/valid.jsonl" --limit "$limit" --schema "$here/schema.json" \
  --eval-config "$here/eval.toml" --adapter "$out/train" --out "$out/fine-tuned" -n 120
$smolt eval --data "$out/split/valid.jsonl" --limit "$limit" --schema "$here/schema.json" \
  --eval-config "$here/eval.toml" --few-shot 2 --shots "$out/split/train.jsonl" \
  --out "$out/few-shot" -n 120
$smolt eval --compare "$out/few-shot" "$out/fine-tuned" --out "$out"
