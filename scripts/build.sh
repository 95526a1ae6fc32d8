#!/usr/bin/env bash
# Builds one variant of the component and prints its path as the last line
# (cargo's progress goes to stderr), so callers write
#     wasm=$(scripts/build.sh portable)
# The one place that knows each variant's cargo flags and output path:
#   spin      the default build (config from Spin variables) into target/,
#             the path spin.toml's `source` names (what `spin build` makes)
#   portable  config from environment variables, for `wasmtime serve` or any
#             WASI-HTTP host, into target/portable (so it never overwrites
#             the Spin build)
#   otel      the Spin build that also records metrics and spans through
#             wasi:otel (`spin up --experimental-wasi-otel`), into target/otel
#   p3        the WASIp3 build (`--features p3`: wasi:http@0.3.0 via
#             spin-sdk 7, many streams per instance, config from the
#             environment), into target/p3, for `wasmtime serve` and Spin
#   p3-spin   the same reading Spin variables (`--features p3-spin-variables`,
#             Spin only), into target/p3-spin
#
# The p3 variants compile against the patched wit-bindgen 0.57.1 in
# vendor/ through Cargo.toml's [patch.crates-io] (vendor/README.md): a
# plain cargo build, the same as `spin build` runs.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/tools.sh

variant=${1:-}
case "$variant" in
    spin) dir=target features=() ;;
    portable) dir=target/portable features=(--no-default-features --features portable) ;;
    otel) dir=target/otel features=(--features otel) ;;
    p3) dir=target/p3 features=(--no-default-features --features p3) ;;
    p3-spin) dir=target/p3-spin features=(--no-default-features --features p3-spin-variables) ;;
    *)
        echo "usage: scripts/build.sh spin|portable|otel|p3|p3-spin" >&2
        exit 2
        ;;
esac

ensure_wasm_target
ensure_clang
# An inherited CARGO_TARGET_DIR or CARGO_BUILD_TARGET would move the output
# away from the path spin.toml and the callers expect.
env -u CARGO_BUILD_TARGET CARGO_TARGET_DIR="$PWD/$dir" \
    "${CARGO:-cargo}" build --release --target wasm32-wasip2 "${features[@]}" >&2
wasm="$PWD/$dir/wasm32-wasip2/release/sse_gateway.wasm"
[ -f "$wasm" ] || { echo "build.sh: cargo succeeded but $wasm is missing" >&2; exit 1; }
echo "$wasm"
