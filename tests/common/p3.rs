//! The WASIp3 build for e2e tests: built once per test binary by
//! `scripts/build.sh p3` (or taken from `SSE_GATEWAY_P3_WASM`).

use std::path::PathBuf;
use std::sync::OnceLock;

/// Path of the p3 component.
pub fn p3_component() -> PathBuf {
    static WASM: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    super::gateway::built(&WASM, "SSE_GATEWAY_P3_WASM", "p3")
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
