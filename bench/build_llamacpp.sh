#!/usr/bin/env bash
# Builds llama.cpp (the peer we measure against) from the source vendored in the
# llama-cpp-python sdist, fetched with pip from the configured package index.
# Result: $SMOLT_BENCH_DIR/llama.cpp/build/bin/{llama-bench,llama-simple,llama-cli}
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${SMOLT_BENCH_DIR:-$here/.work}
version=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
mkdir -p "$work"
if [ -x "$work/llama.cpp/build/bin/llama-bench" ]; then
  echo "llama.cpp already built in $work/llama.cpp/build/bin"
  exit 0
fi
if [ ! -x "$work/venv/bin/cmake" ]; then
  python3 -m venv "$work/venv"
  "$work/venv/bin/pip" install --quiet cmake ninja
fi
sdist="$work/llama_cpp_python-$version.tar.gz"
if [ ! -f "$sdist" ]; then
  python3 -m pip download --quiet --no-deps --no-binary llama-cpp-python "llama-cpp-python==$version" -d "$work"
fi
rm -rf "$work/src" && mkdir -p "$work/src"
tar xzf "$sdist" -C "$work/src"
rm -rf "$work/llama.cpp"
mv "$work/src/llama_cpp_python-$version/vendor/llama.cpp" "$work/llama.cpp"
cd "$work/llama.cpp"
PATH="$work/venv/bin:$PATH" cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TESTS=OFF
PATH="$work/venv/bin:$PATH" cmake --build build --target llama-bench llama-simple llama-tokenize -j "${JOBS:-2}"
echo "built: $work/llama.cpp/build/bin"
