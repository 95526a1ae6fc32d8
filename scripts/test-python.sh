#!/usr/bin/env bash
# The Python producer package (clients/python) against a real redis-server
# and the portable component under `wasmtime serve`: a venv under target/
# (made once, remade when pyproject.toml changes), the package installed
# editable with pytest, then pytest. Exits non-zero when a test fails.
# WASMTIME and SSE_GATEWAY_WASM are used when set (scripts/test.sh sets
# both); otherwise they come from scripts/tools.sh and scripts/build.sh.
# Extra arguments go to pytest (e.g. -k cluster).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${WASMTIME:-}" ] || [ -z "${SSE_GATEWAY_WASM:-}" ]; then
    . scripts/tools.sh
    ensure_tools
    SSE_GATEWAY_WASM=${SSE_GATEWAY_WASM:-$(scripts/build.sh portable | tail -n 1)}
fi
export WASMTIME SSE_GATEWAY_WASM
command -v redis-server >/dev/null || { . scripts/tools.sh; ensure_redis; }

venv=target/python-venv
stamp="$venv/.installed-$(sha256sum clients/python/pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    rm -rf "$venv"
    # Debian's python3 has no venv (ensurepip) without python3-venv.
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
        rm -rf "$venv"
        sudo=""
        [ "$(id -u)" = 0 ] || sudo=sudo
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv "$venv"
    fi
    "$venv/bin/python" -m pip install -q -e "clients/python[test]"
    touch "$stamp"
fi

echo "python producer: $("$venv/bin/python" --version), wasmtime $("$WASMTIME" --version | cut -d' ' -f2), $SSE_GATEWAY_WASM"
cd clients/python
exec ../../"$venv/bin/python" -m pytest -p no:cacheprovider "$@"
