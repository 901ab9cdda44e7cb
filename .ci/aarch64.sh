#!/usr/bin/env bash
# The aarch64 step of CI: cross-build for aarch64-unknown-linux-gnu and run, under qemu user
# emulation and in release builds (a debug build under emulation runs for many minutes):
#   - the kernel suites: smolt-quant (every dot product, matmul and quantizer against the
#     scalar reference, with the NEON, sdot and i8mm paths selected, then again on emulated
#     CPUs without i8mm and without dotprod) and smolt-kernels (the dense f32/bf16
#     kernels, which the compiler vectorises for NEON);
#   - the real-model checks of smolt-model's real_model test on its short prompts
#     (SMOLT_TEST_MAX_PROMPT=32): Gemma 3 270M f32 logits and greedy against HF, quantized
#     logits and greedy against llama.cpp's band, Qwen 2.5 0.5B f32 logits against HF.
# Measured on a 2-core Xeon: kernel suites ≈ 4 min with their build, model checks 5m54s
# (353 s of tests) after a 2m45s build; 3–4 min more when apt installs the toolchain.
#
# The toolchain is the distribution's: its rustc ships an aarch64 standard library (rustup's
# may have none installed), so it builds into a target directory of its own. Where the tools
# are missing they are installed with apt if we are root; otherwise the step says why it is
# skipped. Opt-in (SMOLT_AARCH64=1; a missing toolchain is then an error): the ≈ 15 minutes
# it takes would push a suite that must stay well under 30 minutes past it.
set -euo pipefail
cd "$(dirname "$0")/.."

want="${SMOLT_AARCH64:-0}"
if [ "$want" = 0 ]; then
    echo "aarch64: skipped (opt-in: SMOLT_AARCH64=1 .ci/run)"
    exit 0
fi

have_tools() {
    local libdir
    libdir=$(/usr/bin/rustc --print target-libdir --target aarch64-unknown-linux-gnu 2>/dev/null) &&
        compgen -G "$libdir/libstd-*" >/dev/null &&
        command -v aarch64-linux-gnu-gcc >/dev/null && command -v qemu-aarch64 >/dev/null
}

skip() {
    if [ "$want" = 1 ]; then
        echo "aarch64: $1 (SMOLT_AARCH64=1 requires this step)" >&2
        exit 1
    fi
    echo "aarch64: skipped: $1 (SMOLT_AARCH64=1 to require it, 0 to silence this)"
    exit 0
}

if ! have_tools; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        skip "no aarch64 toolchain, and not root with apt-get to install it"
    fi
    echo "aarch64: installing the toolchain with apt-get"
    if ! { dpkg --add-architecture arm64 && apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rustc-web \
            libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user; } \
        >/tmp/smolt-aarch64-apt.log 2>&1; then
        tail -5 /tmp/smolt-aarch64-apt.log >&2
        skip "installing the toolchain failed (log: /tmp/smolt-aarch64-apt.log)"
    fi
    have_tools || skip "the toolchain is still incomplete after installing it"
fi

export RUSTC=/usr/bin/rustc
# A target directory of its own: the two compilers cannot share build outputs.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/aarch64"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
# Statically linked: under qemu-user 7.2 (Debian 12) a dynamically linked aarch64 program hangs
# in its first pthread_create (C programs too), and every test harness starts threads.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static"

start=$SECONDS
# --lib --tests: no doctests (rustdoc would be rustup's, which has no aarch64 std).
cargo test --release --target aarch64-unknown-linux-gnu -p smolt-quant -p smolt-kernels --lib --tests
# The same quantized-kernel suite on CPUs without i8mm (Cortex-A76: NEON + sdot) and without
# dotprod (Cortex-A72: plain NEON), so every table and matmul path runs (qemu reads QEMU_CPU).
for cpu in cortex-a76 cortex-a72; do
    QEMU_CPU=$cpu cargo test --release --target aarch64-unknown-linux-gnu -p smolt-quant --lib --tests
done
echo "aarch64: kernel suites passed under qemu in $((SECONDS - start)) s"

start=$SECONDS
SMOLT_TEST_MAX_PROMPT=32 cargo test --release --target aarch64-unknown-linux-gnu \
    -p smolt-model --test real_model -- --test-threads 1 \
    f32_logits_match_hf_at_every_position_of_every_prompt \
    f32_greedy_reproduces_hf_until_the_first_near_tie \
    fast_logits_and_greedy_are_as_close_as_llama_cpp_on_the_quantized_file
echo "aarch64: real-model checks passed under qemu in $((SECONDS - start)) s"
