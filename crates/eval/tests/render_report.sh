#!/usr/bin/env bash
# Renders the demo report pages in headless Chromium and writes PNG screenshots, so a person
# (or a reviewer's image viewer) can check the HTML looks right. Not part of `cargo test`:
# it needs Chromium (`apt-get install -y chromium`) and takes a few seconds per page.
#
#   crates/eval/tests/render_report.sh [OUT_DIR]     # default target/demo_report
#
# Writes OUT_DIR/{base,tuned}/report.html, OUT_DIR/compare.html and a .png next to each.
set -euo pipefail
cd "$(dirname "$0")/../../.."
out="${1:-target/demo_report}"
browser="$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)"
if [ -z "$browser" ]; then
    echo "render_report.sh: no chromium found; install it with: apt-get install -y chromium" >&2
    exit 2
fi
cargo run -q -p smolt-eval --example demo_report -- "$out" > /dev/null
shot() { # html png height
    local profile
    profile="$(mktemp -d)"
    "$browser" --headless --no-sandbox --disable-gpu --disable-background-networking \
        --disable-component-update --disable-sync --no-first-run --hide-scrollbars \
        --user-data-dir="$profile" --screenshot="$2" --window-size="1280,$3" \
        "file://$(realpath "$1")" > /dev/null 2>&1
    rm -rf "$profile"
    [ -s "$2" ] || { echo "render_report.sh: no screenshot for $1" >&2; exit 1; }
    echo "$2"
}
shot "$out/tuned/report.html" "$out/tuned/report.png" "${HEIGHT:-1600}"
shot "$out/base/report.html" "$out/base/report.png" "${HEIGHT:-1600}"
shot "$out/compare.html" "$out/compare.png" 1300
