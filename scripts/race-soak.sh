#!/usr/bin/env bash
# Runs the end-to-end race test (tests/resume.rs,
# racing_producer_and_reconnecting_clients_miss_nothing: a producer posting
# 300 events while 5 clients keep reconnecting with Last-Event-ID) many
# times per host and build, each with its own seed, and counts the runs in
# which any client lost or repeated an event. Not part of CI (one run is no
# evidence; this is the sampled half, machine::race_tests the exhaustive one).
#
#   scripts/race-soak.sh [RUNS] [HOST ...]     # default: 100 runs, all four hosts
#
# HOST: wasmtime (portable build), spin (default build), p3-wasmtime,
# p3-spin. A failing run prints its seed: E2E_SEED=<seed> replays its delays.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/tools.sh
ensure_tools
find_spin
runs=${1:-100}
shift || true
hosts=("$@")
[ ${#hosts[@]} -gt 0 ] || hosts=(wasmtime spin p3-wasmtime p3-spin)

SSE_GATEWAY_WASM=$(scripts/build.sh portable | tail -n 1)
SSE_GATEWAY_SPIN_WASM=$(scripts/build.sh spin | tail -n 1)
SSE_GATEWAY_P3_WASM=$(scripts/build.sh p3 | tail -n 1)
SSE_GATEWAY_P3_SPIN_WASM=$(scripts/build.sh p3-spin | tail -n 1)
export SSE_GATEWAY_WASM SSE_GATEWAY_SPIN_WASM SSE_GATEWAY_P3_WASM SSE_GATEWAY_P3_SPIN_WASM

# The test binary, built once.
bin=$(cargo test --test resume --no-run --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
test=racing_producer_and_reconnecting_clients_miss_nothing
log=$(mktemp)
trap 'rm -f "$log"' EXIT

for host in "${hosts[@]}"; do
    if [[ $host == *spin* && -z $SPIN ]]; then
        echo "$host: skipped, no Spin found"
        continue
    fi
    failed=0
    seeds=()
    started=$(date +%s)
    for ((i = 1; i <= runs; i++)); do
        seed=$(( (RANDOM << 30 | RANDOM << 15 | RANDOM) | 1 ))
        if ! SSE_GATEWAY_HOST=$host E2E_SEED=$seed timeout 120 "$bin" --exact "$test" \
            >"$log" 2>&1; then
            failed=$((failed + 1))
            seeds+=("$seed")
            grep -m 3 -E 'missed|twice|differ|panicked' "$log" | cut -c1-300 || true
        fi
    done
    echo "$host: $runs runs, $failed failed, $(($(date +%s) - started)) s${seeds:+; seeds ${seeds[*]}}"
done
