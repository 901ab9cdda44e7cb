#!/usr/bin/env bash
# Instructions per decoded token of the aarch64 build, counted under qemu-aarch64 by the
# insn_count plugin (bench/aarch64/insn_count.c): a proxy for speed until an ARM machine is
# lent. Runs `smolt generate` on the default model twice per path — SHORT and LONG new tokens
# from the same prompt, greedy — and divides the difference by LONG − SHORT, so the prompt,
# the load and the start-up cancel out. Paths: NEON with sdot (qemu's default `max` CPU),
# plain NEON (`-cpu cortex-a72`: no dot-product extension) and the portable scalar kernels
# (SMOLT_SIMD=scalar). One thread (the plugin's counters are not atomic).
#
#   bash bench/aarch64/count.sh            # needs the aarch64 toolchain: see .ci/aarch64.sh
#   SHORT=1 LONG=17 PROMPT="..." bash bench/aarch64/count.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

short=${SHORT:-1}
long=${LONG:-17}
prompt=${PROMPT:-"The capital of France is"}
work=bench/.work/aarch64
mkdir -p "$work"

gcc -O2 -shared -fPIC -Wall -Wextra -o "$work/insn_count.so" bench/aarch64/insn_count.c

export RUSTC=/usr/bin/rustc
export CARGO_TARGET_DIR=target/aarch64
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static"
cargo build --release --target aarch64-unknown-linux-gnu -p smolt
bin=target/aarch64/aarch64-unknown-linux-gnu/release/smolt

count() { # path-name qemu-cpu simd tokens → prints "instructions simd_fp"
    local out="$work/count-$1-$4.txt"
    SMOLT_SIMD=$3 qemu-aarch64 -cpu "$2" -plugin "$work/insn_count.so,out=$out" \
        "$bin" --threads 1 generate "$prompt" -n "$4" >"$work/text-$1-$4.txt" 2>/dev/null
    awk '{v[$1]=$2} END {print v["instructions"], v["simd_fp"]}' "$out"
}

printf '| path | qemu -cpu | SMOLT_SIMD | instructions per token | SIMD/FP share | portable ÷ this |\n'
printf '|---|---|---|---|---|---|\n'
rows=("neon+sdot max neon" "neon cortex-a72 neon" "portable max scalar")
declare -A per
for row in "${rows[@]}"; do
    read -r name cpu simd <<<"$row"
    read -r i1 s1 < <(count "$name" "$cpu" "$simd" "$short")
    read -r i2 s2 < <(count "$name" "$cpu" "$simd" "$long")
    per[$name]=$(( (i2 - i1) / (long - short) ))
    share=$(awk -v a="$((s2 - s1))" -v b="$((i2 - i1))" 'BEGIN {printf "%.1f%%", 100 * a / b}')
    echo "$name $cpu $simd ${per[$name]} $share" >>"$work/rows.txt"
done
for row in "${rows[@]}"; do
    read -r name cpu simd <<<"$row"
    ratio=$(awk -v a="${per[$name]}" -v b="${per[portable]}" 'BEGIN {printf "%.2f×", b / a}')
    line=$(grep "^$name $cpu $simd " "$work/rows.txt" | tail -1)
    read -r _ _ _ n share <<<"$line"
    printf '| %s | %s | %s | %s | %s | %s |\n' "$name" "$cpu" "$simd" "$n" "$share" "$ratio"
done
rm -f "$work/rows.txt"
if ! cmp -s "$work/text-neon+sdot-$long.txt" "$work/text-portable-$long.txt"; then
    echo "note: the NEON and portable paths generated different text" >&2
fi
