# Sourced by the other scripts: finds or installs what the gateway needs on a
# fresh machine (wasm target, clang for ring's C code, redis-server, dnsmasq
# for the name tests, wasmtime) and exports WASMTIME.
# wasmtime is compiled from crates.io once (15-20 min on 2 cores) and cached
# under $SSE_GATEWAY_CACHE (default ~/.cache/sse-gateway).

WASMTIME_VERSION=48.0.8
SSE_GATEWAY_CACHE=${SSE_GATEWAY_CACHE:-$HOME/.cache/sse-gateway}

ensure_wasm_target() {
    if ! rustup target list --installed | grep -qx wasm32-wasip2; then
        rustup target add wasm32-wasip2
    fi
}

# Installs Debian packages that are missing ($1: a command that proves it).
apt_install() {
    local probe=$1
    shift
    if ! command -v "$probe" >/dev/null; then
        local sudo=""
        [ "$(id -u)" = 0 ] || sudo=sudo
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
    fi
}

ensure_redis() {
    apt_install redis-cli redis-tools
    apt_install redis-server redis-server
}

# ring (rustls' crypto provider) compiles C and assembly for wasm32-wasip2:
# it needs clang (Debian's clang 14 works) and llvm-ar.
ensure_clang() {
    apt_install clang clang
    apt_install llvm-ar llvm
}

# tests/redis_tls.rs resolves names through a real DNS server on loopback.
# dnsmasq-base is the binary alone, without a system service.
ensure_dnsmasq() {
    PATH="$PATH:/usr/sbin" apt_install dnsmasq dnsmasq-base
}

ensure_wasmtime() {
    local root="$SSE_GATEWAY_CACHE/wasmtime-$WASMTIME_VERSION"
    if [ -n "${WASMTIME:-}" ] && [ -x "$WASMTIME" ]; then
        :
    elif [ -x "$root/bin/wasmtime" ]; then
        WASMTIME="$root/bin/wasmtime"
    else
        echo "Installing wasmtime $WASMTIME_VERSION into $root (one-time, ~20 min)..." >&2
        cargo install wasmtime-cli --locked --version "$WASMTIME_VERSION" \
            --no-default-features \
            --features run,serve,wasi-http,cranelift,component-model,component-model-async,pooling-allocator,parallel-compilation \
            --root "$root" >&2
        WASMTIME="$root/bin/wasmtime"
    fi
    export WASMTIME
}

ensure_tools() {
    ensure_wasm_target
    ensure_clang
    ensure_redis
    ensure_dnsmasq
    ensure_wasmtime
}

# Builds the portable component (config from env) into target/e2e.
build_portable() {
    CARGO_TARGET_DIR=target/e2e cargo build --release --target wasm32-wasip2 \
        --no-default-features --features portable
    export SSE_GATEWAY_WASM="$PWD/target/e2e/wasm32-wasip2/release/sse_gateway.wasm"
}

# Builds the Spin component (config from Spin variables) into target/spin.
build_spin() {
    CARGO_TARGET_DIR=target/spin cargo build --release --target wasm32-wasip2
    export SSE_GATEWAY_SPIN_WASM="$PWD/target/spin/wasm32-wasip2/release/sse_gateway.wasm"
}
