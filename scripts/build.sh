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
# spin-sdk 7.0.0 pins wasip3 0.7 and so wit-bindgen 0.57.1, whose
# `inter-task-wakeup` cancels its wake-up read while the stream is still in a
# waitable set; wasmtime and Spin trap with "waitable cannot be used
# synchronously while added to a waitable set" (fixed upstream in wit-bindgen
# 0.61), and whose `spawn` leaves a future spawned during a poll that ends
# pending unpolled until some unrelated event wakes the task (a stream that
# joins a new Cluster node's connection then waited for its own timeout;
# reworked upstream in wit-bindgen PR 1608). Until spin-sdk moves on, the
# p3 variants build against a patched copy
# of that crate: the registry's copy (checksum-verified by cargo) plus
# scripts/p3/*.patch, in a scratch manifest dir under target/, so the
# repository's Cargo.toml and Cargo.lock stay as they are for the p2 builds.
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
manifest=()
case "$variant" in
    p3*)
        scratch=target/p3-manifest
        patched=$scratch/wit-bindgen-0.57.1
        "${CARGO:-cargo}" fetch --locked --target wasm32-wasip2 >/dev/null
        crate=$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/wit-bindgen-0.57.1.crate | head -n1)
        mkdir -p "$scratch"
        # The marker names the patch set, so a new patch re-extracts the copy.
        marker="$patched/.patched-$(cat scripts/p3/wit-bindgen-0.57.1-*.patch | sha256sum | cut -c1-16)"
        if [ ! -f "$marker" ]; then
            rm -rf "$patched"
            tar xzf "$crate" -C "$scratch"
            for p in scripts/p3/wit-bindgen-0.57.1-*.patch; do
                patch -s -p1 -d "$patched" < "$p"
            done
            touch "$marker"
        fi
        ln -sfn "$PWD/src" "$scratch/src"
        ln -sfn "$PWD/static" "$scratch/static"
        ln -sfn "$PWD/openapi.json" "$scratch/openapi.json"
        cp Cargo.lock "$scratch/Cargo.lock"
        {
            cat Cargo.toml
            printf '\n[patch.crates-io]\nwit-bindgen = { path = "wit-bindgen-0.57.1" }\n'
        } > "$scratch/Cargo.toml"
        manifest=(--manifest-path "$scratch/Cargo.toml")
        ;;
esac
# An inherited CARGO_TARGET_DIR or CARGO_BUILD_TARGET would move the output
# away from the path spin.toml and the callers expect.
env -u CARGO_BUILD_TARGET CARGO_TARGET_DIR="$PWD/$dir" \
    "${CARGO:-cargo}" build --release --target wasm32-wasip2 "${manifest[@]}" "${features[@]}" >&2
wasm="$PWD/$dir/wasm32-wasip2/release/sse_gateway.wasm"
[ -f "$wasm" ] || { echo "build.sh: cargo succeeded but $wasm is missing" >&2; exit 1; }
echo "$wasm"
