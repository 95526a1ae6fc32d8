#!/usr/bin/env bash
# Instructions per delivered event in the native baseline (the gateway's
# core on tokio + hyper), counted by valgrind's callgrind over a window of
# the latency phase: `callgrind_control --zero` at its start, `--dump` at
# its end; events in the window = rate x window.
#   bench/scripts/callgrind-native.sh [STREAMS] [RATE] [WINDOW_SECONDS]
# Writes bench/target/callgrind/ (callgrind.out.*, annotate-*.txt).
set -euo pipefail
cd "$(dirname "$0")/../.."
streams=${1:-100}
rate=${2:-200}
window=${3:-10}
out=${CALLGRIND_OUT:-bench/target/callgrind}
rm -rf "$out" && mkdir -p "$out"
[ -n "${BENCH_BIN:-}" ] || cargo build --release --manifest-path bench/Cargo.toml >/dev/null 2>&1
bin=${BENCH_BIN:-bench/target/release/sse-bench}
secret=callgrind-secret-0123456789abcdef
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rport=$(free_port)
gport=$(free_port)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no \
    --client-output-buffer-limit 'pubsub 0 0 0' >"$out/redis.log" 2>&1 &
pids+=($!)
REDIS_URL=redis://127.0.0.1:$rport JWT_SECRET=$secret \
    valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out.%p" \
    "$bin" native-server --addr "127.0.0.1:$gport" >"$out/server.log" 2>&1 &
vg=$!
pids+=($vg)
for _ in $(seq 1 300); do
    curl -fs "http://127.0.0.1:$gport/api/v1/events/health" >/dev/null 2>&1 && break
    sleep 0.2
done
"$bin" --url "http://127.0.0.1:$gport/" --redis-url "redis://127.0.0.1:$rport" \
    --jwt-secret "$secret" --server-pid "$vg" --steps "$streams" --rate "$rate" \
    --fanout-rates '' --idle-seconds 1 --phase-seconds $((window + 6)) --hold-seconds 2 \
    --concurrency 20 --out "$out" --name callgrind-native >"$out/bench.log" 2>&1 &
bench=$!
pids+=($bench)
for _ in $(seq 1 1200); do
    grep -q holding "$out/bench.log" && break
    kill -0 $bench 2>/dev/null || { cat "$out/bench.log"; exit 1; }
    sleep 0.1
done
# hold 2 s + idle 1 s, then 2 s into the latency phase
sleep 5
callgrind_control --zero "$vg" >/dev/null
t0=$(date +%s.%N)
sleep "$window"
callgrind_control --dump=window "$vg" >/dev/null
t1=$(date +%s.%N)
wait $bench || true
dump=$(ls "$out"/callgrind.out.*.1 | head -1)
events=$(python3 -c "print(round(($t1-$t0)*$rate))")
total=$(callgrind_annotate "$dump" 2>/dev/null | sed -n 's/^\([0-9,]*\) (100.0%).*PROGRAM TOTALS.*/\1/p' | tr -d ,)
echo "window $(python3 -c "print(round($t1-$t0,2))") s, ~$events events, $total instructions: $((total / events)) per event" \
    | tee "$out/summary.txt"
callgrind_annotate --inclusive=yes "$dump" 2>/dev/null | head -80 >"$out/annotate-inclusive.txt"
callgrind_annotate "$dump" 2>/dev/null | head -60 >"$out/annotate-self.txt"
echo "wrote $dump, $out/annotate-{inclusive,self}.txt"
