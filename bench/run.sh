#!/usr/bin/env bash
# One command for the whole comparison: smolt vs llama.cpp (inference) and PyTorch+PEFT (LoRA training).
#
#   bench/run.sh --data PATH/sroie/train.jsonl [--quick] [--model M.gguf] [--out FILE.md]
#                [--only smolt|peers] [--no-build-smolt] [--rounds N] [--note TEXT] [--adapter RUN]
#
# (i)   builds/installs the peers if missing (bench/build_llamacpp.sh, bench/pytorch/setup.sh);
# (ii)  runs smolt's side (bench/smolt_side.py: `smolt bench ... --json`, `smolt train ...`; a missing
#       subcommand is reported and skipped) and the peers' (bench/llamacpp_bench.py, bench/pytorch/train_bench.py)
#       in N rounds (PyTorch in f32, and again under bf16 autocast where the CPU has AVX-512 BF16 or AMX;
#       SMOLT_BENCH_AUTOCAST=0 leaves that out), each with its share of the repetitions and steps, alternating which side goes first
#       (smolt, peers | peers, smolt | ...): a machine whose speed drifts during the run then shifts both
#       sides of a ratio alike;
# (iii) writes the run's markdown section (table, machine, date, commit, this command) to a new file
#       bench/results/YYYY-MM-DD-HHMM.md via bench/report.py, adds a row for it to the index of runs in
#       BENCHMARKS.md, and prints the run's medians as rows for BENCHMARKS.md's "Current figures" tables,
#       which are kept by hand (update them when the run is the new reference).
#       --out FILE.md appends the section to FILE.md instead (ad-hoc runs; nothing in the repository changes).
# Raw JSON lines and logs: bench/.work/results/<UTC time>/.  Nothing else should run on the machine meanwhile:
# the load average before the run is recorded in the report.
#
# --adapter RUN: the receipt -> JSON latency with this fine-tuned adapter (a `smolt train` run directory) on
#          both sides, the same work: smolt loads it as it is, llama.cpp the GGUF LoRA `smolt export` writes
#          from it (f32) into the run's raw folder.
# --quick: 2 threads only, 6 receipt steps, one seq512 config (batch 1, last 128, 4 steps), 1 latency rep,
#          one round (checks that everything works; ~5 minutes on 2 cores once built).
# Full (default): 2 rounds; threads 2 and 1, 4 repetitions; receipts 28 timed steps; seq512 x {last 128,
#          last 512} x {batch 1, 4}, 6 timed steps; receipt latency x4 (~25 minutes on 2 cores).
#          Each training run leaves its first 2 steps (warm-up) out of the samples.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
work=${SMOLT_BENCH_DIR:-$here/.work}
cmdline="bench/run.sh$(printf " %q" "$@")"

model=${SMOLT_BENCH_MODEL:-$HOME/.cache/smolt/models/gemma-3-270m-q4_k_m.gguf}
data=${SMOLT_BENCH_DATA:-}
out=
quick=0; only=all; build_smolt=1; notes=(); rounds=; adapter=
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --model) model=$2; shift ;;
    --data) data=$2; shift ;;
    --out) out=$2; shift ;;
    --only) only=$2; shift ;;
    --no-build-smolt) build_smolt=0 ;;
    --rounds) rounds=$2; shift ;;
    --adapter) adapter=$2; shift ;;
    --note) notes+=(--note "$2"); shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
case "$only" in all|smolt|peers) ;; *) echo "run.sh: --only takes smolt or peers" >&2; exit 2 ;; esac
case "$rounds" in ''|[1-9]|[1-9][0-9]) ;; *) echo "run.sh: --rounds takes a positive number" >&2; exit 2 ;; esac

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
  threads=2; reps=3; receipt_steps=6; lat_reps=1; rounds=${rounds:-1}
  seq_runs=("1 128 4")
else
  threads=2,1; reps=4; receipt_steps=30; lat_reps=4; rounds=${rounds:-2}
  seq_runs=("1 128 8" "1 512 8" "4 128 8" "4 512 8")
fi

# ---- (i) peers ------------------------------------------------------------------------------
if [ "$only" != smolt ]; then
  "$here/build_llamacpp.sh" 2>&1 | tee -a "$res/build.log" >&2
  "$here/pytorch/setup.sh" 2>&1 | tee -a "$res/build.log" >&2
fi

# ---- (ii) both sides, in rounds -----------------------------------------------------------------
# Each round runs smolt's side and the peers' with its share of the steps and repetitions; the
# order alternates (smolt, peers | peers, smolt | ...), so that a drift in the machine's speed over
# the run (other tenants, clocks) falls on both sides of every ratio instead of on one.
if [ $build_smolt = 1 ] && [ "$only" != peers ]; then
  if command -v cargo >/dev/null; then
    echo "run.sh: cargo build --release -p smolt" >&2
    (cd "$root" && cargo build --release -p smolt) 2>&1 | tail -3 >&2 \
      || echo "run.sh: cargo build failed; using the existing target/release/smolt if any" >&2
  else
    echo "run.sh: cargo not found; using the existing target/release/smolt if any" >&2
  fi
fi
# --adapter: the same fine-tuned adapter on both sides of the receipt latency.
lora_gguf=
if [ -n "$adapter" ]; then
  [ -d "$adapter" ] || { echo "run.sh: --adapter $adapter is not a run directory" >&2; exit 1; }
  lora_gguf=$res/adapter-lora-f32.gguf
  "$root/target/release/smolt" export "$adapter" --format gguf-lora --model "$model" --out "$lora_gguf" >&2 \
    || { echo "run.sh: smolt export of $adapter failed" >&2; exit 1; }
  notes+=(--note "receipt latency with the adapter $adapter on both sides (llama.cpp: its GGUF LoRA export, f32)")
fi
per_round() { echo $(( ($1 + rounds - 1) / rounds )); }
r_reps=$(per_round $reps); r_lat=$(per_round $lat_reps)
# Training steps per round: the timed share plus the 2 warm-up steps each run leaves out.
r_receipt=$(( $(per_round $((receipt_steps - 2))) + 2 ))

# PyTorch runs in f32, and also under bf16 autocast where the CPU has bf16 hardware (users do that
# there; SMOLT_BENCH_AUTOCAST=0 leaves it out).
autocasts=(none)
if [ "${SMOLT_BENCH_AUTOCAST:-1}" != 0 ] && grep -qwE 'avx512_bf16|amx_bf16' /proc/cpuinfo 2>/dev/null; then
  autocasts+=(bf16)
fi

smolt_side() {  # $1: 1 in the first round (the machine's limits are measured once)
  [ "$only" != peers ] || return 0
  local what=(speed seq)
  [ "$1" = 1 ] && what=(limits "${what[@]}")
  [ -n "$data" ] && what+=(train)
  local seq_arg="" seq_steps=7
  for r in "${seq_runs[@]}"; do set -- $r; seq_arg+="${seq_arg:+,}$1:$2"; seq_steps=$3; done
  seq_steps=$(( $(per_round $((seq_steps - 2))) + 2 ))
  python3 "$here/smolt_side.py" "${what[@]}" --model "$model" --threads "$threads" --reps "$r_reps" \
    ${data:+--data "$data"} --steps "$r_receipt" --seq-runs "$seq_arg" --seq-steps "$seq_steps" \
    2> >(tee -a "$res/smolt.log" >&2) >> "$results" \
    || echo "run.sh: smolt's side failed (see $res/smolt.log); going on with the peers" >&2
}

peers_side() {
  [ "$only" != smolt ] || return 0
  local lwhat=(speed)
  [ -n "$data" ] && lwhat+=(receipt)
  python3 "$here/llamacpp_bench.py" "${lwhat[@]}" --model "$model" --threads "$threads" --reps "$r_reps" \
    ${data:+--data "$data"} --latency-reps "$r_lat" --raw-dir "$res/llamacpp-raw" ${lora_gguf:+--lora "$lora_gguf"} \
    2> >(tee -a "$res/llamacpp.log" >&2) >> "$results" \
    || echo "run.sh: the llama.cpp benchmark failed (see $res/llamacpp.log)" >&2
  local py=$work/torch-venv/bin/python tb=$here/pytorch/train_bench.py ac
  for ac in "${autocasts[@]}"; do
    if [ -n "$data" ]; then
      "$py" "$tb" --workload receipts --model "$model" --data "$data" --steps "$r_receipt" --threads 2 --autocast "$ac" \
        2> >(tee -a "$res/pytorch.log" >&2) >> "$results" || echo "run.sh: PyTorch receipts run ($ac) failed" >&2
    fi
    for r in "${seq_runs[@]}"; do
      set -- $r
      "$py" "$tb" --workload seq512 --model "$model" --batch "$1" --last "$2" --autocast "$ac" \
        --steps $(( $(per_round $(($3 - 2))) + 2 )) --threads 2 \
        2> >(tee -a "$res/pytorch.log" >&2) >> "$results" \
        || echo "run.sh: PyTorch seq512 batch $1 last $2 ($ac) failed" >&2
    done
  done
}

# smolt's receipt -> JSON latency needs the prompt and schema file llama.cpp's run writes.
smolt_receipt() {
  [ "$only" = all ] && [ -n "$data" ] && [ -d "$res/llamacpp-raw" ] || return 0
  python3 "$here/smolt_side.py" receipt --model "$model" --threads "$threads" --latency-reps "$r_lat" \
    --raw-dir "$res/llamacpp-raw" ${adapter:+--adapter "$adapter"} 2> >(tee -a "$res/smolt.log" >&2) >> "$results" \
    || echo "run.sh: smolt's receipt latency failed (see $res/smolt.log)" >&2
}

for round in $(seq 1 "$rounds"); do
  echo "run.sh: round $round of $rounds" >&2
  if [ $((round % 2)) = 1 ]; then
    smolt_side "$round"; peers_side; smolt_receipt
  else
    smolt_receipt; peers_side; smolt_side "$round"
  fi
done

# ---- (iii) report -----------------------------------------------------------------------------
[ $quick = 1 ] && notes+=(--note "--quick run: few steps/repetitions; a smoke test more than a measurement")
[ "$rounds" -gt 1 ] && notes+=(--note "$rounds rounds, smolt and the peers in alternating order (smolt first in odd rounds, the peers first in even ones); each figure pools its samples over the rounds")
load_end=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")
# The source tree's commit (the smolt binary is built from it unless --no-build-smolt).
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo "unknown")
if [ "$commit" != unknown ] && [ -n "$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  commit="$commit (with uncommitted changes)"
fi
[ $build_smolt = 0 ] && commit="$commit, binary not rebuilt (--no-build-smolt)"
if [ -n "$out" ]; then
  dest=(--out "$out")
else
  dest=(--results-dir "$root/bench/results" --index "$root/BENCHMARKS.md")
fi
python3 "$here/report.py" "$results" "${dest[@]}" --command "$cmdline" --commit "$commit" \
  --load "before $load; after $load_end" "${notes[@]}"
echo "run.sh: done; raw results in $results" >&2
