#!/usr/bin/env bash
# Where a p2 stream's memory goes (docs/PERFORMANCE.md, issue 24 item 5):
# the null component (the host's floor), the null component holding one TCP
# connection, and the gateway, under `wasmtime serve` and `spin up`, 400
# streams each (after 20 warm-up), snapshots 3 s and 23 s after opening;
# then 300 streams opened, closed and opened again (what a freed slot
# keeps). Prints the tables; the JSON (with every smaps) stays in OUT.
#     scripts/p2-mem/run.sh [OUT]      (default target/p2-mem)
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/tools.sh
ensure_tools
find_spin
[ -n "${SPIN:-}" ] || { echo "run.sh: no Spin found" >&2; exit 1; }
export SPIN
out=$(realpath -m "${1:-target/p2-mem}")
mkdir -p "$out"
portable=$(scripts/build.sh portable | tail -n 1)
spin=$(scripts/build.sh spin | tail -n 1)
env -u CARGO_BUILD_TARGET CARGO_TARGET_DIR="$PWD/target/p2-mem-null" \
    cargo build --release --target wasm32-wasip2 --manifest-path scripts/p2-mem/null/Cargo.toml >&2
null=$PWD/target/p2-mem-null/wasm32-wasip2/release/null_p2.wasm
m=scripts/p2-mem/measure.py
g() { grep -E "^==|per stream|later|after close|reopened" || true; }
cd "$out"
python3 "$OLDPWD/$m" wasmtime null "$null" 400 --late 20 --label null --out wt-null.json | g
python3 "$OLDPWD/$m" wasmtime null "$null" 400 --null-tcp --late 20 --label null+tcp --out wt-nulltcp.json | g
python3 "$OLDPWD/$m" wasmtime gateway "$portable" 400 --late 20 --label gateway --out wt-gw.json | g
python3 "$OLDPWD/$m" spin null "$null" 400 --late 20 --label null --out spin-null.json | g
python3 "$OLDPWD/$m" spin null "$null" 400 --null-tcp --late 20 --label null+tcp --out spin-nulltcp.json | g
python3 "$OLDPWD/$m" spin gateway "$spin" 400 --late 20 --label gateway --out spin-gw.json | g
python3 "$OLDPWD/$m" spin gateway "$portable" 400 --spin-env --late 20 --label gateway-env --out spin-gw-env.json | g
python3 "$OLDPWD/$m" wasmtime gateway "$portable" 300 --env HEARTBEAT_SECONDS=1 --churn 8 --label churn --out wt-churn.json | g
python3 "$OLDPWD/$m" spin gateway "$spin" 300 --env heartbeat_seconds=1 --churn 8 --label churn --out spin-churn.json | g
SPIN_WASMTIME_LINEAR_MEMORY_KEEP_RESIDENT=0 python3 "$OLDPWD/$m" spin gateway "$spin" 300 \
    --env heartbeat_seconds=1 --churn 8 --label churn-keep-resident-0 --out spin-churn-kr0.json | g
LATE=1 python3 "$OLDPWD/scripts/p2-mem/summarize.py" wt-null.json wt-nulltcp.json wt-gw.json \
    spin-null.json spin-nulltcp.json spin-gw.json spin-gw-env.json
