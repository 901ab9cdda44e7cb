#!/usr/bin/env bash
# One command for the whole comparison: smolt vs llama.cpp (inference) and PyTorch+PEFT (LoRA training).
#
#   bench/run.sh --data PATH/sroie/train.jsonl [--quick] [--model M.gguf] [--out BENCHMARKS.md]
#                [--only smolt|peers] [--no-build-smolt] [--note TEXT]
#
# (i)   builds/installs the peers if missing (bench/build_llamacpp.sh, bench/pytorch/setup.sh);
# (ii)  runs smolt's side (bench/smolt_side.py: `smolt bench ... --json`, `smolt train ...`; a missing
#       subcommand is reported and skipped) and the peers' (bench/llamacpp_bench.py, bench/pytorch/train_bench.py);
# (iii) appends a markdown section (table, machine, date, this command) to BENCHMARKS.md via bench/report.py.
# Raw JSON lines and logs: bench/.work/results/<UTC time>/.  Nothing else should run on the machine meanwhile:
# the load average before the run is recorded in the report.
#
# --quick: 2 threads only, 6 receipt steps, one seq512 config (batch 1, last 128, 4 steps), 1 latency rep
#          (checks that everything works; ~5 minutes on 2 cores once built).
# Full (default): threads 2 and 1; receipts 30 steps; seq512 x {last 128, last 512} x {batch 1, 4}, 7 steps;
#          receipt latency x3 (~20 minutes on 2 cores).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
work=${SMOLT_BENCH_DIR:-$here/.work}
cmdline="bench/run.sh$(printf " %q" "$@")"

model=${SMOLT_BENCH_MODEL:-$HOME/.cache/smolt/models/gemma-3-270m-q4_k_m.gguf}
data=${SMOLT_BENCH_DATA:-}
out=$root/BENCHMARKS.md
quick=0; only=all; build_smolt=1; notes=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --model) model=$2; shift ;;
    --data) data=$2; shift ;;
    --out) out=$2; shift ;;
    --only) only=$2; shift ;;
    --no-build-smolt) build_smolt=0 ;;
    --note) notes+=(--note "$2"); shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
case "$only" in all|smolt|peers) ;; *) echo "run.sh: --only takes smolt or peers" >&2; exit 2 ;; esac

if [ ! -f "$model" ]; then
  echo "run.sh: model $model not found." >&2
  echo "  Fetch the default one with: cargo run --release -- fetch   (or pass --model PATH.gguf)" >&2
  exit 1
fi
if [ -n "$data" ] && [ ! -f "$data" ]; then
  echo "run.sh: data file $data not found" >&2; exit 1
fi
[ -n "$data" ] || echo "run.sh: no --data (SROIE train.jsonl): the receipt figures will be skipped" >&2

stamp=$(date -u +%Y%m%dT%H%M%SZ)
res=$work/results/$stamp
mkdir -p "$res"
results=$res/results.jsonl
: > "$results"
load=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")
echo "run.sh: results in $res (load average now: $load)" >&2

if [ $quick = 1 ]; then
  threads=2; reps=3; receipt_steps=6; lat_reps=1
  seq_runs=("1 128 4")
else
  threads=2,1; reps=3; receipt_steps=30; lat_reps=3
  seq_runs=("1 128 7" "1 512 7" "4 128 7" "4 512 7")
fi

# ---- (i) peers ------------------------------------------------------------------------------
if [ "$only" != smolt ]; then
  "$here/build_llamacpp.sh" 2>&1 | tee -a "$res/build.log" >&2
  "$here/pytorch/setup.sh" 2>&1 | tee -a "$res/build.log" >&2
fi

# ---- (ii) smolt's side ------------------------------------------------------------------------
if [ "$only" != peers ]; then
  if [ $build_smolt = 1 ]; then
    if command -v cargo >/dev/null; then
      echo "run.sh: cargo build --release -p smolt" >&2
      (cd "$root" && cargo build --release -p smolt) 2>&1 | tail -3 >&2 \
        || echo "run.sh: cargo build failed; using the existing target/release/smolt if any" >&2
    else
      echo "run.sh: cargo not found; using the existing target/release/smolt if any" >&2
    fi
  fi
  what=(limits speed seq)
  [ -n "$data" ] && what+=(train)
  seq_arg=""; seq_steps=7
  for r in "${seq_runs[@]}"; do set -- $r; seq_arg+="${seq_arg:+,}$1:$2"; seq_steps=$3; done
  python3 "$here/smolt_side.py" "${what[@]}" --model "$model" --threads "$threads" --reps "$reps" \
    ${data:+--data "$data"} --steps "$receipt_steps" --seq-runs "$seq_arg" --seq-steps "$seq_steps" \
    2> >(tee -a "$res/smolt.log" >&2) >> "$results" \
    || echo "run.sh: smolt's side failed (see $res/smolt.log); going on with the peers" >&2
fi

# ---- (ii) peers' side -------------------------------------------------------------------------
if [ "$only" != smolt ]; then
  lwhat=(speed)
  [ -n "$data" ] && lwhat+=(receipt)
  python3 "$here/llamacpp_bench.py" "${lwhat[@]}" --model "$model" --threads "$threads" --reps "$reps" \
    ${data:+--data "$data"} --latency-reps "$lat_reps" --raw-dir "$res/llamacpp-raw" \
    2> >(tee -a "$res/llamacpp.log" >&2) >> "$results" \
    || echo "run.sh: the llama.cpp benchmark failed (see $res/llamacpp.log)" >&2
  py=$work/torch-venv/bin/python
  tb=$here/pytorch/train_bench.py
  if [ -n "$data" ]; then
    "$py" "$tb" --workload receipts --model "$model" --data "$data" --steps "$receipt_steps" --threads 2 \
      2> >(tee -a "$res/pytorch.log" >&2) >> "$results" || echo "run.sh: PyTorch receipts run failed" >&2
  fi
  for r in "${seq_runs[@]}"; do
    set -- $r
    "$py" "$tb" --workload seq512 --model "$model" --batch "$1" --last "$2" --steps "$3" --threads 2 \
      2> >(tee -a "$res/pytorch.log" >&2) >> "$results" || echo "run.sh: PyTorch seq512 batch $1 last $2 failed" >&2
  done
fi

# smolt's receipt -> JSON latency needs the prompt and schema file the llama.cpp run just wrote.
if [ "$only" = all ] && [ -n "$data" ]; then
  python3 "$here/smolt_side.py" receipt --model "$model" --threads "$threads" --latency-reps "$lat_reps" \
    --raw-dir "$res/llamacpp-raw" 2> >(tee -a "$res/smolt.log" >&2) >> "$results" \
    || echo "run.sh: smolt's receipt latency failed (see $res/smolt.log)" >&2
fi

# ---- (iii) report -----------------------------------------------------------------------------
[ $quick = 1 ] && notes+=(--note "--quick run: few steps/repetitions; a smoke test more than a measurement")
load_end=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")
python3 "$here/report.py" "$results" --out "$out" --command "$cmdline" --load "before $load; after $load_end" "${notes[@]}"
echo "run.sh: done; raw results in $results" >&2
