#!/usr/bin/env bash
# The full suite: lints, unit tests of the core on the host, the WIT world
# check and the end-to-end tests against the real component in
# `wasmtime serve` with a real redis-server.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/tools.sh
ensure_tools

cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo clippy --target wasm32-wasip2 -- -D warnings
cargo clippy --target wasm32-wasip2 --no-default-features --features portable -- -D warnings

build_portable
build_spin
echo "portable component: $(stat -c %s "$SSE_GATEWAY_WASM") bytes; spin component: $(stat -c %s "$SSE_GATEWAY_SPIN_WASM") bytes"

# Doc tests are excluded (there are none).
log=$(mktemp)
blog=$(mktemp)
trap 'rm -f "$log" "$blog"' EXIT
set +e
cargo test --all-targets "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

# The demo page in a real browser: Debian's headless Chromium driven by
# playwright-core from npm (no browser is ever downloaded).
if [ ! -x /usr/bin/chromium ]; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi
(cd browser && npm ci --no-audit --no-fund --silent)
set +e
node --test --test-reporter=tap --test-concurrency=1 browser/ 2>&1 | tee "$blog"
bstatus=${PIPESTATUS[0]}
set -e

# One closing line for the whole suite: cargo's binaries plus the browser.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     /^# pass / { p += $3 } /^# fail / { f += $3 }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log" "$blog"
if [ "$status" -ne 0 ]; then exit "$status"; fi
exit "$bstatus"
