#!/usr/bin/env bash
# What TLS to Redis costs per stream: runs the benchmark (--url mode) twice
# against the same component and the same redis-server, once with
# redis:// and once with rediss:// (a CA and certificate made here with the
# openssl CLI), and prints both results' stream-open rate and time to first
# event. Loopback only; everything started here is stopped on exit.
#   bench/scripts/tls-open-cost.sh [STEPS] [WASM]     (STEPS default 100,300)
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/tools.sh
ensure_tools
STEPS=${1:-100,300}
WASM=${2:-}
if [ -z "$WASM" ]; then
    WASM=$(scripts/build.sh portable | tail -n 1)
fi
SECRET=bench-secret-0123456789abcdef-0123456789abcdef
DIR=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$DIR"
}
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=bench CA" -keyout "$DIR/ca.key" -out "$DIR/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
    -keyout "$DIR/redis.key" -out "$DIR/redis.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost\n' >"$DIR/ext"
openssl x509 -req -in "$DIR/redis.csr" -CA "$DIR/ca.pem" -CAkey "$DIR/ca.key" \
    -CAcreateserial -days 2 -extfile "$DIR/ext" -out "$DIR/redis.pem" 2>/dev/null

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
REDIS_PORT=$(free_port)
TLS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --tls-port "$TLS_PORT" --bind 127.0.0.1 --save "" \
    --appendonly no --tls-cert-file "$DIR/redis.pem" --tls-key-file "$DIR/redis.key" \
    --tls-ca-cert-file "$DIR/ca.pem" --tls-auth-clients no --maxclients 10000 >"$DIR/redis.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

# run NAME REDIS_URL [wasmtime serve args...]: one benchmark of a fresh gateway.
run() {
    local name=$1 url=$2 port pid
    shift 2
    port=$(free_port)
    "$WASMTIME" serve -S cli -S inherit-network -S allow-ip-name-lookup \
        --env REDIS_URL="$url" --env JWT_SECRET="$SECRET" --env MAX_STREAMS_PER_USER=0 "$@" \
        --addr "127.0.0.1:$port" "$WASM" >"$DIR/gw-$name.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    for _ in $(seq 300); do curl -s "http://127.0.0.1:$port/api/v1/events/health" >/dev/null && break; sleep 0.1; done
    cargo run -q --release --manifest-path bench/Cargo.toml -- --url "http://127.0.0.1:$port" \
        --redis-url "redis://127.0.0.1:$REDIS_PORT" --server-pid "$pid" --steps "$STEPS" \
        --phase-seconds 3 --idle-seconds 1 --fanout-rates "" --out "$DIR/out" --name "$name"
    kill "$pid" 2>/dev/null || true
}
run plain "redis://localhost:$REDIS_PORT"
run tls "rediss://localhost:$TLS_PORT" --env REDIS_TLS_CA_PEM="$(cat "$DIR/ca.pem")"
for name in plain tls; do
    echo "== $name"
    cat "$DIR/out/$name.md"
done
