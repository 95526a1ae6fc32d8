#!/usr/bin/env bash
# A/B of two builds of the p3 component reading Spin variables (what
# spin-p3.toml ships; the bench's spin-p3 target is configured by `spin up
# -e` instead), each under `spin up -f` its own spin-p3.toml with the
# manifest's instance flags, against one Redis, alternated ROUNDS times:
#   bench/scripts/spin-variables-ab.sh A_MANIFEST B_MANIFEST [STREAMS] [ROUNDS]
# Each manifest's component must be built (`spin build -f` it, or
# scripts/build.sh p3-spin in its tree). A git worktree gives the other
# build: git worktree add /tmp/before HEAD~1. Writes bench/target/spin-ab/.
set -euo pipefail
cd "$(dirname "$0")/../.."
a=$(realpath "$1")
b=$(realpath "$2")
streams=${3:-2000}
rounds=${4:-2}
out=$(pwd)/bench/target/spin-ab
mkdir -p "$out"
. scripts/tools.sh
ensure_tools >/dev/null
find_spin >/dev/null
cargo build --release --manifest-path bench/Cargo.toml >/dev/null 2>&1
ulimit -n "$(ulimit -Hn)"
secret=bench-secret-0123456789abcdef-0123456789abcdef
redis_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
    --maxclients 20000 --client-output-buffer-limit 'pubsub 0 0 0' --tcp-backlog 4096 \
    >"$out/redis.log" 2>&1 &
redis_pid=$!
trap 'kill $redis_pid 2>/dev/null' EXIT
sleep 1

# run NAME MANIFEST PORT: one bench step against spin up serving MANIFEST.
run() {
    (cd "$(dirname "$2")" && SPIN_VARIABLE_JWT_SECRET=$secret SPIN_VARIABLE_REDIS_PORT=$redis_port \
        exec "$SPIN" up -f "$2" --listen "127.0.0.1:$3" \
        --max-instance-reuse-count 100000 --max-instance-concurrent-reuse-count 256 \
        >"$out/spin-$1.log" 2>&1) &
    local spin_pid=$!
    for _ in $(seq 1 100); do
        curl -s -o /dev/null "http://127.0.0.1:$3/health" && break
        sleep 0.2
    done
    bench/target/release/sse-bench --url "http://127.0.0.1:$3" --redis-url "redis://127.0.0.1:$redis_port" \
        --server-pid "$spin_pid" --steps "$streams" --phase-seconds 2 --idle-seconds 2 \
        --fanout-rates '' --rate 500 --out "$out" --name "$1" >"$out/bench-$1.log" 2>&1
    pkill -KILL -P "$spin_pid" 2>/dev/null || true
    kill -KILL "$spin_pid" 2>/dev/null || true
    wait "$spin_pid" 2>/dev/null || true
    local row cost
    row=$(grep "^| url | $streams | $streams" "$out/$1.md" | cut -d'|' -f5-7,11-12)
    cost=$(grep "^| url | $streams | 0" "$out/$1.md" | cut -d'|' -f6)
    echo "$1: opened/s | TTFE p50 / p99 ms | TTFE alone p50 ms | RSS | private KiB/stream:$row; server CPU µs/open:$cost"
}

for r in $(seq 1 "$rounds"); do
    run "a-$r" "$a" 18181
    run "b-$r" "$b" 18182
done
