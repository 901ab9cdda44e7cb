#!/usr/bin/env bash
# Exports a trained adapter in every format and checks that llama.cpp and PEFT compute what
# smolt computes with it. Prints two Markdown tables (see interop/RESULTS.md).
#
#   interop/run.sh RUN_DIR RECORDS.jsonl [OUT]
#
# RUN_DIR: a `smolt train` run; RECORDS: JSONL with an `input` field (our own validation
# split, never a held-out test set). Needs Python with llama-cpp-python, torch, transformers
# and peft: `python3 -m venv .venv && .venv/bin/pip install llama-cpp-python torch transformers
# peft gguf numpy` (llama-cpp-python compiles llama.cpp: ~10 minutes on 2 cores), then
# PYTHON=.venv/bin/python interop/run.sh ...
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
run="${1:?usage: $0 RUN_DIR RECORDS.jsonl [OUT]}"
records="${2:?usage: $0 RUN_DIR RECORDS.jsonl [OUT]}"
out="${3:-$run/interop}"
py="${PYTHON:-python3}"
cd "$here/.."
cargo build --release -q --bin smolt --example logits
smolt=target/release/smolt
base=$("$py" -c "import tomllib,sys; print(tomllib.load(open(sys.argv[1],'rb'))['model'])" "$run/config.toml")
mkdir -p "$out"
$smolt export "$run" --format gguf-lora --out "$out/lora.gguf" --force
$smolt export "$run" --format merged-gguf --out "$out/merged.gguf" --force
$smolt export "$run" --format peft --out "$out/peft" --force
echo "## llama.cpp"
"$py" "$here/llamacpp_check.py" --base "$base" --lora "$out/lora.gguf" --merged "$out/merged.gguf" \
  --run "$run" --records "$records" --smolt "$smolt" --example target/release/examples/logits
echo "## PEFT"
"$py" "$here/peft_check.py" --gguf "$base" --peft "$out/peft" --run "$run" --records "$records" \
  --example target/release/examples/logits
