//! Hand-built compact JWS tokens (HS256, `alg: none`, anything): the
//! testkit's (shared with the benchmark), with the tests' secret and a
//! lifetime of an hour.

// Each test crate uses only some of the harness (dead_code covers fns, not re-exports).
use serde_json::Value;
#[allow(unused_imports)]
pub use sse_gateway_testkit::jwt::{b64, compact, hs256, hs256_sig, now};

/// Standard claims: sub, role, iat = now, exp = now + 1 h.
pub fn claims(sub: &str, role: &str) -> Value {
    sse_gateway_testkit::jwt::claims(sub, role, 3600)
}

/// A valid token for the default gateway secret.
pub fn token(sub: &str, role: &str) -> String {
    hs256(super::SECRET, &claims(sub, role))
}
