//! Time from `wasi:clocks`: monotonic nanoseconds for deadlines and timers,
//! wall-clock seconds for JWT `exp`/`nbf`.

use wasi::clocks::{monotonic_clock, wall_clock};
use wasi::io::poll::Pollable;

/// Monotonic now, in nanoseconds.
pub fn now() -> u64 {
    monotonic_clock::now()
}

/// A pollable that becomes ready at the monotonic instant `deadline`.
pub fn timer_at(deadline: u64) -> Pollable {
    monotonic_clock::subscribe_instant(deadline)
}

/// Unix seconds, for token expiry checks.
pub fn unix_seconds() -> i64 {
    wall_clock::now().seconds as i64
}
