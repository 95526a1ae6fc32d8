#!/usr/bin/env bash
# Builds the WASIp3 component (`--features p3`: wasi:http@0.3.0, spin-sdk 7,
# many streams per instance) and prints its path as the last line.
# `scripts/build-p3.sh spin` builds the variant that reads Spin variables
# (`--features p3-spin-variables`, Spin only) into target/p3-spin instead.
#
# spin-sdk 7.0.0 pins wasip3 0.7 and so wit-bindgen 0.57.1, whose
# `inter-task-wakeup` cancels its wake-up read while the stream is still in a
# waitable set; wasmtime traps with "waitable cannot be used synchronously
# while added to a waitable set" (fixed upstream in wit-bindgen 0.61). Until
# spin-sdk moves on, this build patches that crate: the registry's copy
# (checksum-verified by cargo) plus scripts/p3/*.patch, in a scratch manifest
# dir under target/, so the repository's Cargo.toml and Cargo.lock stay as
# they are for the p2 builds.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
scratch=target/p3-manifest
patched=$scratch/wit-bindgen-0.57.1

cargo fetch --locked --target wasm32-wasip2 >/dev/null
cargo_home=${CARGO_HOME:-$HOME/.cargo}
crate=$(ls "$cargo_home"/registry/cache/*/wit-bindgen-0.57.1.crate | head -n1)

mkdir -p "$scratch"
if [ ! -f "$patched/.patched" ]; then
    rm -rf "$patched"
    tar xzf "$crate" -C "$scratch"
    for p in scripts/p3/wit-bindgen-0.57.1-*.patch; do
        patch -s -p1 -d "$patched" < "$p"
    done
    touch "$patched/.patched"
fi
ln -sfn "$root/src" "$scratch/src"
ln -sfn "$root/static" "$scratch/static"
cp Cargo.lock "$scratch/Cargo.lock"
{
    cat Cargo.toml
    printf '\n[patch.crates-io]\nwit-bindgen = { path = "wit-bindgen-0.57.1" }\n'
} > "$scratch/Cargo.toml"

case "${1:-}" in
    "") features=p3 out=target/p3 ;;
    spin) features=p3-spin-variables out=target/p3-spin ;;
    *) echo "usage: $0 [spin]" >&2; exit 2 ;;
esac
CARGO_TARGET_DIR=$out cargo build --release --target wasm32-wasip2 \
    --manifest-path "$scratch/Cargo.toml" --no-default-features --features "$features" >&2
echo "$root/$out/wasm32-wasip2/release/sse_gateway.wasm"
