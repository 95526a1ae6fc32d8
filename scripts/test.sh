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

# Doc tests are excluded (there are none); the closing line sums every binary.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --all-targets "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "all tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
