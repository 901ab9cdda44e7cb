#!/usr/bin/env bash
# Builds llama.cpp (the peer we measure against) from the source vendored in the
# llama-cpp-python sdist, fetched with pip from the configured package index.
# Result: $SMOLT_BENCH_DIR/llama.cpp/build/bin/{llama-bench,llama-completion,llama-simple,llama-tokenize}
#   and, with `--server` (or LLAMACPP_SERVER=1), also llama-server (the OpenAI-compatible HTTP
#   server that bench/serve_load.py measures smolt serve against).
#   llama-completion is the classic non-interactive CLI (prompt file, --json-schema-file, greedy);
#   in this llama.cpp version `llama-cli` is the interactive chat front end.
# Idempotent and resumable: an interrupted build continues where it stopped; only missing
# binaries are built. A lock file keeps two builds from running at once.
set -euo pipefail
server=${LLAMACPP_SERVER:-0}
for arg in "$@"; do
  case $arg in
    --server) server=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "build_llamacpp.sh: unknown argument '$arg' (only --server)" >&2; exit 2 ;;
  esac
done
here=$(cd "$(dirname "$0")" && pwd)
work=${SMOLT_BENCH_DIR:-$here/.work}
version=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
targets=(llama-bench llama-completion llama-simple llama-tokenize)
[ "$server" = 1 ] && targets+=(llama-server)
jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}
src=$work/llama.cpp
bin=$src/build/bin
mkdir -p "$work"

# GGML_NATIVE=ON compiles for this CPU. On CPUs that report AMX (Intel Sapphire Rapids and later)
# that also compiles ggml's AMX matmul path, which dies with SIGILL (illegal instruction at
# `tilezero`) in the KVM/Firecracker guests we benchmark on; the peers' own machine (AMD Zen 5)
# has no AMX either. So AMX is left out unless LLAMACPP_AMX=1. On CPUs without AMX the
# -mno-amx-* flags change nothing.
# LLAMA_BUILD_SERVER=ON only declares the llama-server target (built when asked for); it changes
# nothing in the other targets, so a build configured with it OFF (earlier versions of this
# script) is reconfigured, not rebuilt.
cmake_args=(-DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TESTS=OFF)
if [ "${LLAMACPP_AMX:-0}" != 1 ]; then
  cmake_args+=("-DCMAKE_C_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
               "-DCMAKE_CXX_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16")
fi
config="${cmake_args[*]}"
stamp=$src/build/.smolt-config
# Whether the stamp's options compile the same code as ours (the server switch aside).
same_config() {
  local s
  s=$(cat "$stamp" 2>/dev/null) || return 1
  [ "${s/-DLLAMA_BUILD_SERVER=OFF/-DLLAMA_BUILD_SERVER=ON}" = "$config" ]
}

missing=()
for t in "${targets[@]}"; do [ -x "$bin/$t" ] || missing+=("$t"); done
# A build made with other options is rebuilt (the stamp records the options).
if [ -f "$src/build/build.ninja" ] && ! same_config; then
  missing=("${targets[@]}")
fi
if [ ${#missing[@]} -eq 0 ]; then
  echo "llama.cpp already built in $bin"
  exit 0
fi

for tool in python3 cc c++; do
  command -v "$tool" >/dev/null || { echo "build_llamacpp.sh: '$tool' not found; install it (Debian/Ubuntu: apt-get install python3-venv build-essential)" >&2; exit 1; }
done

# One build at a time (flock is in util-linux; without it, go on unlocked).
if command -v flock >/dev/null; then
  exec 9>"$work/.llamacpp-build.lock"
  if ! flock -n 9; then
    echo "another llama.cpp build holds $work/.llamacpp-build.lock; waiting for it..." >&2
    flock 9
    missing=()
    for t in "${targets[@]}"; do [ -x "$bin/$t" ] || missing+=("$t"); done
    same_config || missing=("${targets[@]}")
    [ ${#missing[@]} -eq 0 ] && { echo "llama.cpp already built in $bin"; exit 0; }
  fi
fi

if [ -f "$src/build/build.ninja" ] && ! same_config; then
  echo "llama.cpp build options changed (or unknown); reconfiguring and rebuilding" >&2
  rm -f "$stamp"
fi

if [ ! -x "$work/venv/bin/cmake" ] || [ ! -x "$work/venv/bin/ninja" ]; then
  [ -x "$work/venv/bin/python" ] || python3 -m venv "$work/venv"
  "$work/venv/bin/pip" install --quiet cmake ninja \
    || { echo "build_llamacpp.sh: could not pip-install cmake and ninja into $work/venv" >&2; exit 1; }
fi

# Re-extract only when the source is absent or came from another sdist version
# (a tree without the marker is taken as this version: the earlier script wrote none).
if [ ! -f "$src/CMakeLists.txt" ] || { [ -f "$src/.smolt-source" ] && [ "$(cat "$src/.smolt-source")" != "llama-cpp-python==$version" ]; }; then
  sdist="$work/llama_cpp_python-$version.tar.gz"
  if [ ! -f "$sdist" ]; then
    python3 -m pip download --quiet --no-deps --no-binary llama-cpp-python "llama-cpp-python==$version" -d "$work" \
      || { echo "build_llamacpp.sh: could not download the llama-cpp-python==$version sdist with pip" >&2; exit 1; }
  fi
  rm -rf "$work/src" && mkdir -p "$work/src"
  tar xzf "$sdist" -C "$work/src"
  rm -rf "$src"
  mv "$work/src/llama_cpp_python-$version/vendor/llama.cpp" "$src"
  rm -rf "$work/src"
fi
[ -f "$src/.smolt-source" ] || echo "llama-cpp-python==$version" > "$src/.smolt-source"

cd "$src"
export PATH="$work/venv/bin:$PATH"
# (Re)configure when there is no build yet, the options changed, or the build predates the
# server switch: cmake then only regenerates build.ninja, and ninja rebuilds what changed.
if [ ! -f build/build.ninja ] || [ "$(cat build/.smolt-config 2>/dev/null)" != "$config" ]; then
  cmake -S . -B build -G Ninja "${cmake_args[@]}"
fi
echo "building ${missing[*]} with $jobs jobs (about 10+ minutes on 2 cores)"
cmake --build build --target "${missing[@]}" -j "$jobs"
for t in "${targets[@]}"; do
  [ -x "$bin/$t" ] || { echo "build_llamacpp.sh: $bin/$t missing after the build" >&2; exit 1; }
done
printf '%s' "$config" > "$stamp"
# Smoke test on the default model when it is there: catches a build this CPU cannot run.
model=${SMOLT_BENCH_MODEL:-$HOME/.cache/smolt/models/gemma-3-270m-q4_k_m.gguf}
if [ -f "$model" ]; then
  if ! "$bin/llama-bench" -m "$model" -p 8 -n 2 -r 1 -t 2 >/dev/null 2>"$work/llamacpp-smoke.log"; then
    echo "build_llamacpp.sh: the built llama-bench fails on $model (log: $work/llamacpp-smoke.log)" >&2
    rm -f "$stamp"
    exit 1
  fi
fi
echo "built: $bin"
