#!/usr/bin/env bash
# Builds wasmtime 48.0.8 with the two patches in vendor/host-patches/
# applied (the host-side packing change and listen backlog measured in
# docs/PERFORMANCE.md, "Packing p3 instances: a host patch"), into
# ~/.cache/sse-gateway/wasmtime-48.0.8-packing/, and prints the binary's
# path last. Not part of the product or of CI: a reproducible A/B of a host
# change, for `sse-bench --target-wasmtime T=PATH`.
#
# The patched binary behaves as upstream unless its environment sets
#   WASMTIME_QUEUE_WAIT_MS=W   queue a request up to W ms for an instance that
#                              has room but is busy, before starting another
#   WASMTIME_SERVE_BACKLOG=N   the listen backlog (upstream: 100)
# ~10 min on 2 cores; crates.io must be reachable.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
patches=$root/vendor/host-patches
cache=${SSE_GATEWAY_CACHE:-$HOME/.cache/sse-gateway}
dest=$cache/wasmtime-48.0.8-packing
bin=$dest/target/release/wasmtime

if [ -x "$bin" ] && cat "$patches"/*.patch | cmp -s - "$dest/applied.patch"; then
    echo "$bin"
    exit 0
fi

rm -rf "$dest"
mkdir -p "$dest/fetch/src"
# Let cargo download the two published crates (checksums verified).
cat > "$dest/fetch/Cargo.toml" <<'EOF'
[package]
name = "fetch-wasmtime"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
wasmtime-cli = { version = "=48.0.8", default-features = false }
wasmtime-wasi-http = { version = "=48.0.8", default-features = false }
EOF
: > "$dest/fetch/src/lib.rs"
(cd "$dest/fetch" && cargo fetch >&2)
registry=$(cd "$dest/fetch" && cargo metadata --format-version 1 2>/dev/null |
    python3 -c 'import json,sys; m=json.load(sys.stdin); print(next(p["manifest_path"] for p in m["packages"] if p["name"]=="wasmtime-cli"))')
registry=$(dirname "$(dirname "$registry")")
cp -r "$registry/wasmtime-cli-48.0.8" "$dest/cli"
cp -r "$registry/wasmtime-wasi-http-48.0.8" "$dest/wasi-http"

patch -p1 -d "$dest/wasi-http" < "$patches/wasmtime-wasi-http-48.0.8-queue-wait.patch" >&2
patch -p1 -d "$dest/cli" < "$patches/wasmtime-cli-48.0.8-backlog.patch" >&2
printf '\n[patch.crates-io]\nwasmtime-wasi-http = { path = "../wasi-http" }\n' >> "$dest/cli/Cargo.toml"

(cd "$dest/cli" && CARGO_TARGET_DIR="$dest/target" cargo build --release \
    --no-default-features \
    --features run,serve,wasi-http,cranelift,component-model,component-model-async,pooling-allocator,parallel-compilation >&2)
cat "$patches"/*.patch > "$dest/applied.patch"
echo "$bin"
