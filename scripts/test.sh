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

cargo test "$@"
