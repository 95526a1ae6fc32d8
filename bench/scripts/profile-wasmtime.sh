#!/usr/bin/env bash
# Samples a server under test with perf (cpu-clock, call graphs; JIT symbols
# from wasmtime's --profile=perfmap and a component built with its name
# section) during one phase of one bench step.
#   bench/scripts/profile-wasmtime.sh [STREAMS] [TARGET] [SECONDS] [PHASE]
# TARGET: wasmtime (default) or native. PHASE: events (the latency phase,
# default) or open (the streams opening). Writes bench/target/profile/.
set -euo pipefail
cd "$(dirname "$0")/../.."
streams=${1:-1000}
target=${2:-wasmtime}
secs=${3:-10}
phase=${4:-events}
out=bench/target/profile
mkdir -p "$out"
cargo build --release --manifest-path bench/Cargo.toml >/dev/null 2>&1
extra=()
if [ "$target" = wasmtime ]; then
    # The same component with its name section kept, so perf shows guest
    # function names.
    CARGO_PROFILE_RELEASE_STRIP=false CARGO_TARGET_DIR=target/bench-prof cargo build --release \
        --target wasm32-wasip2 --no-default-features --features portable >/dev/null 2>&1
    extra=(--wasmtime-arg --profile=perfmap --wasm target/bench-prof/wasm32-wasip2/release/sse_gateway.wasm)
fi
log="$out/bench-$target-$phase.log"
./bench/target/release/sse-bench --steps "$streams" --targets "$target" --fanout-rates '' \
    --idle-seconds 1 --phase-seconds $((secs + 8)) --hold-seconds 2 "${extra[@]}" \
    --out "$out" --name "profile-$target-$phase" >"$log" 2>&1 &
bench=$!
trap 'kill $bench 2>/dev/null || true' EXIT
marker=holding
[ "$phase" = open ] && marker="step $streams streams"
for _ in $(seq 1 600); do
    grep -q "$marker" "$log" && break
    kill -0 $bench 2>/dev/null || { cat "$log"; exit 1; }
    sleep 0.1
done
pid=$(pgrep -P $bench | head -50 | while read -r p; do
    case "$(tr '\0' ' ' </proc/$p/cmdline)" in *wasmtime*serve*|*native-server*) echo "$p";; esac
done | head -1)
# events: hold 2 s + idle 1 s, then 1 s into the latency phase.
[ "$phase" = events ] && sleep 4
perf record -e cpu-clock -F 999 -g -p "$pid" -o "$out/$target-$phase.perf" -- sleep "$secs" \
    2>"$out/perf-record.log"
wait $bench || true
trap - EXIT
report() {
    perf report -i "$out/$target-$phase.perf" -g none --stdio "$@" 2>/dev/null \
        | grep -v '^#' | grep -v '^$' || true
}
report --no-children --percent-limit 0.5 --sort dso >"$out/$target-$phase-dso.txt"
report --no-children --percent-limit 0.5 --sort dso,symbol >"$out/$target-$phase-flat.txt"
report --children --percent-limit 1 --sort symbol >"$out/$target-$phase-children.txt"
samples=$(perf report -i "$out/$target-$phase.perf" -n -g none --sort pid --stdio 2>/dev/null \
    | awk '!/^#/ && NF > 3 { n += $3 } END { print n + 0 }')
echo "$samples samples at 999 Hz over $secs s (pid $pid)" | tee "$out/$target-$phase-summary.txt"
grep -E 'streams: held' "$log" | tail -1 | tee -a "$out/$target-$phase-summary.txt"
echo "wrote $out/$target-$phase.perf and $out/$target-$phase-{dso,flat,children}.txt"
