# Sourced by the other scripts: finds or installs what the gateway needs on a
# fresh machine (wasm target, clang and llvm for ring's C code, redis-server,
# dnsmasq for the name tests, wasmtime, cargo-deny) and exports WASMTIME and
# CARGO_DENY; find_spin exports SPIN; ensure_registry installs the OCI
# registry of tests/oci.rs. Components are built by scripts/build.sh.
# wasmtime (15-20 min on 2 cores) and cargo-deny are compiled from crates.io
# once and cached under $SSE_GATEWAY_CACHE (default ~/.cache/sse-gateway).

WASMTIME_VERSION=48.0.8
CARGO_DENY_VERSION=0.20.2
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

# tests/oci.rs pushes the Spin apps to a registry on loopback and runs them
# from it: Debian's docker-registry (distribution 2.8), run by the test as a
# plain process with its own config and storage. Where an init system runs
# package services, the package's own service (port 5000, its config in
# /etc/docker/registry) is no part of the tests.
ensure_registry() {
    apt_install docker-registry docker-registry
}

# Installs crate $2 at version $3 from crates.io once (cargo install, more
# arguments after $3 passed on) under $SSE_GATEWAY_CACHE, and exports
# variable $1 as its binary $4 (an already set, executable $1 wins).
ensure_cached_crate() {
    local var=$1 crate=$2 version=$3 bin=$4
    shift 4
    local root="$SSE_GATEWAY_CACHE/$bin-$version"
    if [ -n "${!var:-}" ] && [ -x "${!var}" ]; then
        :
    elif [ -x "$root/bin/$bin" ]; then
        printf -v "$var" '%s' "$root/bin/$bin"
    else
        echo "Installing $bin $version into $root (one-time)..." >&2
        cargo install "$crate" --locked --version "$version" "$@" --root "$root" >&2
        printf -v "$var" '%s' "$root/bin/$bin"
    fi
    export "${var?}"
}

# ~20 min on 2 cores the first time.
ensure_wasmtime() {
    ensure_cached_crate WASMTIME wasmtime-cli "$WASMTIME_VERSION" wasmtime \
        --no-default-features \
        --features run,serve,wasi-http,cranelift,component-model,component-model-async,pooling-allocator,parallel-compilation
}

# deny.toml's checks (scripts/test.sh, docs/DEPENDENCIES.md): cargo-deny,
# ~2.5 min the first time. Exports CARGO_DENY.
ensure_cargo_deny() {
    ensure_cached_crate CARGO_DENY cargo-deny "$CARGO_DENY_VERSION" cargo-deny
}

# The README's Spin commands (run word for word by tests/spin_host.rs) use
# openssl, curl and ip; the base image has them, this says so if not.
ensure_base() {
    apt_install openssl openssl
    apt_install curl curl
    PATH="$PATH:/usr/sbin" apt_install ip iproute2
}

ensure_tools() {
    ensure_base
    ensure_wasm_target
    ensure_clang
    ensure_redis
    ensure_dnsmasq
    ensure_wasmtime
}

# Finds Spin for the Spin half of the tests and `scripts/run.sh spin`:
# $SPIN, else `spin` on PATH, else the build in ../shared/spin beside the
# clone (its install.sh unpacks it once and prints the path). Exports SPIN,
# empty when none is found.
find_spin() {
    if [ -n "${SPIN:-}" ] && [ -x "$SPIN" ]; then
        :
    elif command -v spin >/dev/null; then
        SPIN=$(command -v spin)
    elif [ -x ../shared/spin/install.sh ]; then
        SPIN=$(../shared/spin/install.sh | tail -n 1)
    else
        SPIN=""
    fi
    export SPIN
}
