#!/usr/bin/env bash
# Builds the smolt image and checks it as a load balancer would use it: the health probe turns
# healthy, a schema-constrained chat answer is valid JSON, /metrics is Prometheus text, and
# `docker stop` during a request lets that request finish before the container exits 0.
#
#   deploy/check.sh [--source]     # default: packs target/release/smolt (cargo build --release -p smolt)
#
# Needs a running Docker daemon, python3, and the default model in ~/.cache/smolt/models (or
# $SMOLT_MODEL_DIR): `smolt fetch`. Base images come from your registry as usual; RUST_IMAGE /
# RUNTIME_IMAGE override them (e.g. a locally imported Debian rootfs where no registry is reachable).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
models=${SMOLT_MODEL_DIR:-$HOME/.cache/smolt/models}
image=smolt:check
name=smolt-check-$$
port=${CHECK_PORT:-18080}
build=prebuilt
[ "${1:-}" = --source ] && build=source
fail() { echo "check.sh: FAILED: $*" >&2; exit 1; }
cleanup() { docker rm -f "$name" >/dev/null 2>&1 || true; }
trap cleanup EXIT

[ -f "$models/gemma-3-270m-q4_k_m.gguf" ] || fail "no model in $models: run \`smolt fetch\` first"
if [ $build = prebuilt ] && [ ! -x "$root/target/release/smolt" ]; then
  fail "no target/release/smolt: run \`cargo build --release -p smolt\` first (or pass --source)"
fi
runtime=${RUNTIME_IMAGE:-debian:bookworm-slim}
args=(--build-arg SMOLT_BUILD=$build --build-arg RUNTIME_IMAGE="$runtime")
if [ $build = prebuilt ]; then
  args+=(--build-arg BUILD_IMAGE="$runtime")
elif [ -n "${RUST_IMAGE:-}" ]; then
  args+=(--build-arg RUST_IMAGE="$RUST_IMAGE")
fi
echo "== building $image ($build)"
docker build -q "${args[@]}" -t $image "$root" >/dev/null
docker image inspect $image --format 'image: {{.Size}} bytes, user {{.Config.User}}, entrypoint {{.Config.Entrypoint}}'

echo "== starting (model folder mounted read-only)"
docker run -d --name "$name" -p 127.0.0.1:$port:8080 -v "$models:/models:ro" $image --max-batch 4 >/dev/null
t0=$(date +%s)
until [ "$(docker inspect -f '{{.State.Health.Status}}' "$name")" = healthy ]; do
  [ "$(docker inspect -f '{{.State.Running}}' "$name")" = true ] || { docker logs "$name" >&2; fail "container exited"; }
  [ $(( $(date +%s) - t0 )) -lt 180 ] || { docker logs "$name" >&2; fail "not healthy after 180 s"; }
  sleep 1
done
echo "healthy after $(( $(date +%s) - t0 )) s (Docker's HEALTHCHECK on GET /health)"

url=http://127.0.0.1:$port
echo "== a schema-constrained answer"
curl -fsS $url/v1/chat/completions -H 'Content-Type: application/json' -d '{
  "model": "gemma-3-270m", "temperature": 0, "max_tokens": 64,
  "messages": [{"role": "user", "content": "Receipt: TESCO STORES, 12 Main St, 03/05/2019, TOTAL 12.40. Give company and total as JSON."}],
  "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object",
    "properties": {"company": {"type": "string"}, "total": {"type": "string"}},
    "required": ["company", "total"], "additionalProperties": false}}}}' \
  | python3 -c '
import json, sys
r = json.load(sys.stdin)
answer = json.loads(r["choices"][0]["message"]["content"])
assert set(answer) == {"company", "total"}, answer
print("answer:", answer, "| finish:", r["choices"][0]["finish_reason"])'

echo "== metrics"
metrics=$(curl -fsS $url/metrics)
grep -q '^smolt_serve_requests_total' <<<"$metrics" || fail "/metrics has no smolt_serve_requests_total"
grep -E '^smolt_serve_requests_total' <<<"$metrics" | head -3

echo "== graceful drain: docker stop while a 160-token answer is being written"
out=$(mktemp)
curl -sS -o "$out" -w '%{http_code}' $url/v1/completions -H 'Content-Type: application/json' \
  -d '{"model": "gemma-3-270m", "prompt": "Once upon a time", "max_tokens": 160, "ignore_eos": true, "temperature": 0}' \
  > "$out.code" &
client=$!
sleep 1.5
running=$(curl -fsS $url/metrics | awk '/^smolt_serve_running /{print $2}')
[ "${running:-0}" != 0 ] || fail "the request was not running when the stop came (running=$running)"
t1=$(date +%s.%N)
docker stop -t 60 "$name" >/dev/null
echo "docker stop returned after $(python3 -c "print(round($(date +%s.%N) - $t1, 1))") s"
wait $client || fail "the client's connection failed during the drain"
[ "$(cat "$out.code")" = 200 ] || fail "drained request answered $(cat "$out.code"): $(cat "$out")"
python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
n = r["usage"]["completion_tokens"]
assert n == 160, f"only {n} of 160 tokens"
why = r["choices"][0]["finish_reason"]
print(f"in-flight request finished: 200, {n} tokens, finish_reason {why}")' "$out"
code=$(docker inspect -f '{{.State.ExitCode}}' "$name")
[ "$code" = 0 ] || fail "container exited $code"
echo "container exited 0"
rm -f "$out" "$out.code"
echo "check.sh: all passed"
