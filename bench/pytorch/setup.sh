#!/usr/bin/env bash
# Creates the PyTorch peer's virtual environment with pinned packages (the versions the
# peers used, see /work/shared/fixtures/peers.md), from the configured package index.
# Idempotent: does nothing when the venv already has exactly these versions.
# Result: $SMOLT_BENCH_DIR/torch-venv (default bench/.work/torch-venv)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=${SMOLT_BENCH_DIR:-$here/.work}
venv=$work/torch-venv
pins=(
  "torch==${TORCH_VERSION:-2.15.0}"
  "transformers==${TRANSFORMERS_VERSION:-5.24.0}"
  "peft==${PEFT_VERSION:-0.21.2}"
  "gguf==${GGUF_VERSION:-0.19.0}"
  "safetensors==${SAFETENSORS_VERSION:-0.8.0}"
)
mkdir -p "$work"
command -v python3 >/dev/null || { echo "setup.sh: python3 not found; install Python 3.10+ first" >&2; exit 1; }
stamp="$venv/.smolt-pins"
want=$(printf '%s\n' "${pins[@]}")
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$venv/bin/python" -c "import torch, transformers, peft, gguf, safetensors" 2>/dev/null; then
  echo "torch venv ready: $venv"
  exit 0
fi
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" || { echo "setup.sh: 'python3 -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)" >&2; exit 1; }
fi
echo "installing into $venv: ${pins[*]} (torch is a large download; a few minutes)"
if ! "$venv/bin/pip" install --quiet "${pins[@]}"; then
  echo "setup.sh: pip install failed for: ${pins[*]}" >&2
  echo "  If a pinned version is unavailable on your index, override it, e.g. TORCH_VERSION=2.14.1 $0" >&2
  exit 1
fi
printf '%s\n' "$want" > "$stamp"
"$venv/bin/python" - <<'PY'
from importlib.metadata import version
print("installed:", ", ".join(f"{p} {version(p)}" for p in ("torch", "transformers", "peft", "gguf", "safetensors")))
PY
echo "torch venv ready: $venv"
