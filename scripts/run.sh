#!/usr/bin/env bash
# Runs the gateway locally: builds the component, starts Redis on
# 127.0.0.1:6379 if none answers there, and serves the gateway on
# 127.0.0.1:3000 (PORT=... to change): the portable build under
# `wasmtime serve`, or with `scripts/run.sh spin` the default build under
# `spin up` with the shipped spin.toml. Ctrl-C stops everything this script
# started (the gateway, the demo producer and a redis-server it started).
# With DEV_MODE=true (the default here, never in spin.toml) it also serves
# the demo page at /demo and runs the demo producer in the background.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/tools.sh

HOST=${1:-wasmtime}
case "$HOST" in
    wasmtime) ensure_tools ;;
    spin)
        ensure_wasm_target
        ensure_redis
        find_spin
        [ -n "$SPIN" ] || { echo "run.sh spin: no Spin found (\$SPIN, spin on PATH, ../shared/spin/install.sh)" >&2; exit 1; }
        ;;
    *)
        echo "usage: scripts/run.sh [wasmtime|spin]" >&2
        exit 2
        ;;
esac

PORT=${PORT:-3000}
REDIS_PORT=${REDIS_PORT:-6379}
# HS256 needs a secret of at least 32 bytes (RFC 7518); this one is for local runs only.
JWT_SECRET=${JWT_SECRET:-dev-secret-change-me-0123456789abcdef}
HEARTBEAT_SECONDS=${HEARTBEAT_SECONDS:-15}
DEV_MODE=${DEV_MODE:-true}
case "$DEV_MODE" in 1 | true) DEV_MODE=true ;; 0 | false) DEV_MODE=false ;; esac

# Everything started here is stopped on exit, Ctrl-C included.
PIDS=()
stop_all() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop_all EXIT
trap 'exit 130' INT TERM

if ! redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
    echo "Starting redis-server on 127.0.0.1:$REDIS_PORT (stopped with this script)"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize no >/dev/null &
    PIDS+=($!)
    for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi

if [ "$HOST" = spin ]; then
    scripts/build.sh spin >/dev/null
else
    WASM=$(scripts/build.sh portable | tail -n 1)
fi
TOKEN=$(cargo run -q --example mint_token -- "$JWT_SECRET" user-1 user 86400)

if [ "$DEV_MODE" = true ]; then
    # The demo producer plays the executions the demo page starts: it takes
    # ids from the Redis list demo:jobs and publishes through the gateway.
    cargo build -q --example demo_producer
    GATEWAY_URL="http://127.0.0.1:$PORT" REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
        JWT_SECRET="$JWT_SECRET" "${CARGO_TARGET_DIR:-target}/debug/examples/demo_producer" &
    PIDS+=($!)
fi

cat <<MSG

sse-gateway on http://127.0.0.1:$PORT under $HOST  (Redis 127.0.0.1:$REDIS_PORT)

1. Create an execution record owned by user-1:
   redis-cli -p $REDIS_PORT HSET exec:demo-1 user_id user-1 status queued updated_at $(date -u +%Y-%m-%dT%H:%M:%SZ)
2. Open its stream (a development token for user-1, valid 24 h):
   curl -N -H "Authorization: Bearer $TOKEN" http://127.0.0.1:$PORT/api/v1/events/executions/demo-1
3. Publish events from another shell:
   redis-cli -p $REDIS_PORT PUBLISH sse:exec:demo-1 '{"event_type":"pod_running","execution_id":"demo-1"}'
   redis-cli -p $REDIS_PORT PUBLISH sse:exec:demo-1 '{"event_type":"result_stored","execution_id":"demo-1","result":{"exit_code":0}}'

MSG
if [ "$DEV_MODE" = true ]; then
    cat <<MSG
Demo (DEV_MODE=true: development tokens can be minted; never in production):
   open http://127.0.0.1:$PORT/demo  and press "Run execution"
   (the demo producer runs in the background; DEV_MODE=false scripts/run.sh turns both off)

MSG
fi

# The gateway runs in the background so the traps fire at once on Ctrl-C.
if [ "$HOST" = spin ]; then
    SPIN_VARIABLE_JWT_SECRET="$JWT_SECRET" \
        SPIN_VARIABLE_REDIS_HOST=127.0.0.1 SPIN_VARIABLE_REDIS_PORT="$REDIS_PORT" \
        SPIN_VARIABLE_HEARTBEAT_SECONDS="$HEARTBEAT_SECONDS" SPIN_VARIABLE_DEV_MODE="$DEV_MODE" \
        "$SPIN" up -f spin.toml --listen "127.0.0.1:$PORT" &
else
    "$WASMTIME" serve -S cli -S inherit-network -S allow-ip-name-lookup \
        --env REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
        --env JWT_SECRET="$JWT_SECRET" \
        --env HEARTBEAT_SECONDS="$HEARTBEAT_SECONDS" \
        --env DEV_MODE="$DEV_MODE" \
        --addr "127.0.0.1:$PORT" \
        "$WASM" &
fi
GATEWAY=$!
PIDS=("$GATEWAY" "${PIDS[@]}")
wait "$GATEWAY"
