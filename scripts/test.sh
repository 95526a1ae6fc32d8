#!/usr/bin/env bash
# The full suite: lints, unit tests of the core on the host, the WIT world
# check and the end-to-end tests against the real component with a real
# redis-server, once per host: the portable build under `wasmtime serve`,
# then the default build under `spin up` (plus tests/spin_host.rs), then
# the same against the WASIp3 build (`p3`) under both hosts.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/tools.sh
ensure_tools
ensure_registry
ensure_cargo_deny
find_spin

echo "== lints $(date +%T)"
cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo clippy --target wasm32-wasip2 -- -D warnings
cargo clippy --target wasm32-wasip2 --no-default-features --features portable -- -D warnings
cargo clippy --target wasm32-wasip2 --features otel -- -D warnings
cargo clippy --target wasm32-wasip2 --no-default-features --features p3 -- -D warnings
cargo clippy --target wasm32-wasip2 --no-default-features --features p3-spin-variables -- -D warnings
# The core's doc comments: every link resolves (the codemap points into them).
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --quiet
# deny.toml: banned crates, licenses, sources (crates.io only). Offline: the
# advisories check needs the RustSec database from GitHub, which this CI
# cannot reach (docs/DEPENDENCIES.md).
# cargo-deny reads `cargo metadata`, which needs every crate of the lock
# file on every platform (windows-sys too) in the local registry, and a
# build here downloads only Linux' and wasm's: fetch the rest first.
cargo fetch --locked
"$CARGO_DENY" --offline --locked check bans licenses sources

SSE_GATEWAY_WASM=$(scripts/build.sh portable | tail -n 1)
SSE_GATEWAY_SPIN_WASM=$(scripts/build.sh spin | tail -n 1)
SSE_GATEWAY_OTEL_WASM=$(scripts/build.sh otel | tail -n 1)
SSE_GATEWAY_P3_WASM=$(scripts/build.sh p3 | tail -n 1)
export SSE_GATEWAY_WASM SSE_GATEWAY_SPIN_WASM SSE_GATEWAY_OTEL_WASM SSE_GATEWAY_P3_WASM
if [ -n "$SPIN" ]; then
    # Built before the Spin pass: tests/oci.rs pushes both Spin apps there
    # (scripts/package.sh), so neither build happens inside a timed pass.
    SSE_GATEWAY_P3_SPIN_WASM=$(scripts/build.sh p3-spin | tail -n 1)
    export SSE_GATEWAY_P3_SPIN_WASM
fi
echo "portable component: $(stat -c %s "$SSE_GATEWAY_WASM") bytes; spin component: $(stat -c %s "$SSE_GATEWAY_SPIN_WASM") bytes; otel component: $(stat -c %s "$SSE_GATEWAY_OTEL_WASM") bytes"

# The e2e files are those built on the harness (tests/common); spin_host is
# about Spin only and runs in the Spin pass, p3_model (the p3 build's own
# model, always under wasmtime) in the p3 pass. Everything else runs once.
# (oci, which pushes and serves both Spin builds, is an e2e file that runs
# in the Spin pass and says in one line that it skips the others.)
once=(--lib --bins --examples)
e2e=()
for f in tests/*.rs; do
    name=$(basename "$f" .rs)
    if [ "$name" = spin_host ] || [ "$name" = p3_model ]; then
        continue
    elif grep -q '^mod common;' "$f"; then
        e2e+=(--test "$name")
    else
        once+=(--test "$name")
    fi
done

# Doc tests are excluded (there are none).
log=$(mktemp)
slog=$(mktemp)
plog=$(mktemp)
blog=$(mktemp)
trap 'rm -f "$log" "$slog" "$plog" "$blog"' EXIT
set +e
# Each pass has a hard bound, so a hung test fails the run with a line
# saying which pass, instead of eating CI's whole budget.
pass_timeout=${SSE_GATEWAY_PASS_TIMEOUT:-1800}
echo "== e2e under wasmtime serve (portable build) $(date +%T)"
SSE_GATEWAY_HOST=wasmtime timeout -k 30 "$pass_timeout" cargo test --no-fail-fast "${once[@]}" "${e2e[@]}" "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
[ "$status" -ne 124 ] || echo "tests: the wasmtime pass did not finish within ${pass_timeout}s"
if [ -n "$SPIN" ]; then
    echo "== e2e under spin up (default build, $("$SPIN" --version)) $(date +%T)"
    SSE_GATEWAY_HOST=spin timeout -k 30 "$pass_timeout" cargo test --no-fail-fast --test spin_host "${e2e[@]}" "$@" 2>&1 | tee "$slog"
    sstatus=${PIPESTATUS[0]}
    [ "$sstatus" -ne 124 ] || echo "tests: the Spin pass did not finish within ${pass_timeout}s"
    [ "$sstatus" -eq 0 ] || status=$sstatus
else
    echo "tests: the Spin half did NOT run: no Spin found (\$SPIN, spin on PATH, ../shared/spin/install.sh)"
    if [ "${CI:-}" = true ]; then status=1; fi
fi

# The WASIp3 build (many streams per instance, one shared subscription and
# one command connection per instance and Redis node): the whole e2e suite
# again under both hosts, plus p3_model (streams sharing an instance and
# its Redis connections, always under wasmtime) and, under Spin, spin_host.
# Tests that hold for one build only say so in one printed line. ~5 min
# under wasmtime, ~3 under Spin.
p3_files=(--test p3_model "${e2e[@]}")
p3_spin_files=(--test spin_host "${e2e[@]}")
p3_timeout=${SSE_GATEWAY_P3_PASS_TIMEOUT:-1200}
echo "== e2e under wasmtime serve (p3 build) $(date +%T)"
started=$(date +%s)
SSE_GATEWAY_HOST=p3-wasmtime timeout -k 30 "$p3_timeout" cargo test --no-fail-fast "${p3_files[@]}" "$@" 2>&1 | tee "$plog"
pstatus=${PIPESTATUS[0]}
[ "$pstatus" -ne 124 ] || echo "tests: the p3 wasmtime pass did not finish within ${p3_timeout}s"
echo "p3 wasmtime pass: $(($(date +%s) - started)) s"
[ "$pstatus" -eq 0 ] || status=$pstatus
if [ -n "$SPIN" ]; then
    echo "== e2e under spin up (p3 build reading Spin variables) $(date +%T)"
    started=$(date +%s)
    SSE_GATEWAY_HOST=p3-spin timeout -k 30 "$p3_timeout" cargo test --no-fail-fast "${p3_spin_files[@]}" "$@" 2>&1 | tee -a "$plog"
    pstatus=${PIPESTATUS[0]}
    [ "$pstatus" -ne 124 ] || echo "tests: the p3 Spin pass did not finish within ${p3_timeout}s"
    echo "p3 Spin pass: $(($(date +%s) - started)) s"
    [ "$pstatus" -eq 0 ] || status=$pstatus
fi
set -e

echo "== browser $(date +%T)"
# The demo page in a real browser: Debian's headless Chromium driven by
# playwright-core from npm (no browser is ever downloaded).
if [ ! -x /usr/bin/chromium ]; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi
(cd browser && npm ci --no-audit --no-fund --silent)
set +e
timeout -k 10 900 node --test --test-reporter=tap --test-concurrency=1 browser/ 2>&1 | tee "$blog"
bstatus=${PIPESTATUS[0]}
# The same page against the p3 build, with the README's instance flags.
SSE_GATEWAY_WASM=$SSE_GATEWAY_P3_WASM \
    SSE_GATEWAY_WASMTIME_ARGS="--max-instance-reuse-count 100000 --max-instance-concurrent-reuse-count 256" \
    timeout -k 10 900 node --test --test-reporter=tap --test-concurrency=1 browser/ 2>&1 | tee -a "$blog"
[ "${PIPESTATUS[0]}" -eq 0 ] || bstatus=1
set -e

echo "== python producer $(date +%T)"
# clients/python against the portable build and a real Redis (and Cluster);
# its pytest summary line is counted below, as the browser's TAP lines are.
set +e
timeout -k 10 600 scripts/test-python.sh 2>&1 | tee -a "$blog"
[ "${PIPESTATUS[0]}" -eq 0 ] || bstatus=1
set -e

echo "== testkit, bench and fuzz $(date +%T)"
# --- testkit/, bench/ and fuzz/ (own packages, not built by `cargo test` above) -------
# Both build against the crate as a library, so an API change that breaks
# them fails here. The native baseline pumps the same stream machine as the
# component: a short benchmark (a few hundred streams, one step, ~40 s)
# runs it natively next to the p2 component and the WASIp3 build.
set +e
(
    set -e
    # testkit/: tokens and /proc readings the e2e tests and the bench share.
    (cd testkit && cargo fmt --check && cargo clippy --all-targets -- -D warnings && cargo test)
    (cd bench && cargo fmt --check && cargo clippy --release --all-targets -- -D warnings &&
        cargo test --release && cargo build --release)
    # cargo-fuzz needs nightly; the targets are checked as a normal crate.
    (cd fuzz && cargo check --bins)
    bench_out=$(mktemp -d)
    trap 'rm -rf "$bench_out"' EXIT
    timeout -k 10 600 bench/target/release/sse-bench --steps 300 --phase-seconds 3 --idle-seconds 2 \
        --fanout-rates 10000 --fanout-seconds 2 --rate 500 \
        --wasm "$SSE_GATEWAY_WASM" --wasmtime "$WASMTIME" --out "$bench_out" --name smoke \
        --add-targets p3 --p3-wasm "$SSE_GATEWAY_P3_WASM"
    # Every stream of the three servers opened and none was dropped.
    awk -F'|' '/^\| (wasmtime|native|p3) \| 300 \|/ && NF > 5 && $4+0 >= 0 { rows++; if ($4 != " 0 " || $5 != " 0 ") bad++ }
         END { if (rows < 3 || bad) { print "bench smoke: failed or dropped streams"; exit 1 } }' \
        <(grep -A6 '^| target | streams | open failed' "$bench_out/smoke.md")
    echo "bench smoke: wasmtime (p2), native and p3 served 300 streams"
) 2>&1 | tee "$blog.bench"
bench_status=${PIPESTATUS[0]}
set -e
[ "$bench_status" -eq 0 ] || status=$bench_status
# The bench's own unit tests (its command line) count in the closing line.
grep '^test result:' "$blog.bench" >> "$blog" || true
rm -f "$blog.bench"
# --- end of bench/ and fuzz/ ------------------------------------------------

# One closing line for the whole suite: cargo's binaries under both hosts
# plus the browser and pytest.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     /^# pass / { p += $3 } /^# fail / { f += $3 }
     /^=+ .*[0-9]+ (passed|failed|errors?)[ ,].*in [0-9.]+s/ { for (i = 2; i < NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^(failed|errors?)/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log" "$slog" "$plog" "$blog"
if [ "$status" -ne 0 ]; then exit "$status"; fi
exit "$bstatus"
