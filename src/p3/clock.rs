//! Time from `wasi:clocks@0.3.0`: monotonic nanoseconds for deadlines,
//! system-clock seconds for JWT `exp`.

use futures::future::{self, Either};
use spin_sdk7::wasip3::clocks::{monotonic_clock, system_clock};
use std::future::Future;
use std::pin::pin;

/// Monotonic now, in nanoseconds.
pub fn now() -> u64 {
    monotonic_clock::now()
}

/// Nanoseconds in `secs` seconds.
pub fn secs(secs: u64) -> u64 {
    secs.saturating_mul(1_000_000_000)
}

/// Resolves at the monotonic instant `deadline`.
pub async fn until(deadline: u64) {
    monotonic_clock::wait_until(deadline).await
}

/// Races `fut` against the monotonic instant `deadline`; `None` when the
/// deadline won.
pub async fn before<T>(deadline: u64, fut: impl Future<Output = T>) -> Option<T> {
    match future::select(pin!(fut), pin!(until(deadline))).await {
        Either::Left((v, _)) => Some(v),
        Either::Right(_) => None,
    }
}

/// Unix seconds, for token expiry checks.
pub fn unix_seconds() -> i64 {
    system_clock::now().seconds
}
