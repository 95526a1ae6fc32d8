//! The WASIp3 build for e2e tests: built once per test binary by
//! `scripts/build.sh p3` (or taken from `SSE_GATEWAY_P3_WASM`).
//!
//! `SSE_GATEWAY_HOST=p3-wasmtime` or `p3-spin` runs every e2e file against
//! it: the same hosts as `wasmtime` and `spin` (so host-specific checks
//! apply unchanged), serving the p3 component (`p3-spin`: the variant that
//! reads Spin variables, under the shipped `spin.toml` with its `source`
//! pointed at it), with the flags the README gives for p3.

use std::path::PathBuf;
use std::sync::OnceLock;

/// Path of the p3 component.
pub fn p3_component() -> PathBuf {
    static WASM: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    super::gateway::built(&WASM, "SSE_GATEWAY_P3_WASM", "p3")
}

/// True when this run serves the p3 build (`super::Pass`).
pub fn p3_build() -> bool {
    super::pass().build == super::Build::P3
}

/// Path of the p3 component that reads Spin variables (`p3-spin`).
pub fn p3_spin_component() -> PathBuf {
    static WASM: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    super::gateway::built(&WASM, "SSE_GATEWAY_P3_SPIN_WASM", "p3-spin")
}

/// The host flags the README gives for the p3 build: an instance takes
/// new streams for as long as it lives (the default reuse count, 128,
/// would start a new instance every 128 requests) and up to 256 requests
/// being handled at once. A flag the test already passes (`given`) wins.
pub fn host_args(given: &[String]) -> Vec<&'static str> {
    if !p3_build() {
        return Vec::new();
    }
    [
        ("--max-instance-reuse-count", "100000"),
        ("--max-instance-concurrent-reuse-count", "256"),
    ]
    .into_iter()
    .filter(|(flag, _)| !given.iter().any(|g| g == flag))
    .flat_map(|(flag, value)| [flag, value])
    .collect()
}

/// Whether `PUBSUB NUMSUB` = `n` means `want` streams are subscribed. In
/// p2 each stream has its own subscription; in p3 the streams of one
/// instance share one, so `want` streams count as 1 to `want` (the host
/// decides how many instances they landed in); 0 still means released.
pub fn numsub_matches(n: i64, want: i64) -> bool {
    if p3_build() && want > 0 {
        (1..=want).contains(&n)
    } else {
        n == want
    }
}

/// Makes [`super::GatewayBuilder`] serve the p3 component in this test
/// binary (every test in it must call this before starting a gateway).
pub fn use_p3() {
    static SET: OnceLock<()> = OnceLock::new();
    SET.get_or_init(|| std::env::set_var("SSE_GATEWAY_WASM", p3_component()));
}

/// Subscription connections Redis sees, with how many channels each holds.
pub fn subscription_connections(redis: &super::RedisServer) -> Vec<u64> {
    let mut con = redis.conn();
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(&mut con)
        .expect("CLIENT LIST");
    list.lines()
        .filter_map(|line| {
            let field = |name: &str| {
                line.split_whitespace()
                    .find_map(|f| f.strip_prefix(name))
                    .and_then(|v| v.parse::<u64>().ok())
            };
            let channels = field("sub=").unwrap_or(0) + field("ssub=").unwrap_or(0);
            (channels > 0).then_some(channels)
        })
        .collect()
}

/// Every client connection Redis sees except the one asking
/// (`CLIENT LIST` from the test's own connection).
pub fn redis_clients(redis: &super::RedisServer) -> usize {
    let mut con = redis.conn();
    let me: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query(&mut con)
        .expect("CLIENT ID");
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(&mut con)
        .expect("CLIENT LIST");
    let me = format!("id={me} ");
    list.lines().filter(|l| !l.starts_with(&me)).count()
}
