//! Why a Redis connection failed, in the words every log line and close
//! reason uses: one text per cause, whichever shell or wiring saw it (the
//! shells pass these on and write none of their own).

use crate::log;
use crate::redis::resp::RespError;

/// Cluster redirects followed before giving up (a stable cluster needs one).
pub const MAX_REDIRECTS: usize = 3;

/// The connection stayed silent past its deadline (connect, a reply, a
/// liveness `PING`) though TCP did not say it broke.
pub const SILENT: &str = "redis did not answer in time";

/// Cluster: `MOVED` more times than [`MAX_REDIRECTS`].
pub const REDIRECTS: &str = "too many cluster redirects";

/// Logs a command's failure (`redis_unavailable`, one line per failure,
/// never a credential) and gives its detail back: what a shared
/// connection answers the streams that asked (each stream's machine
/// turns it into its 503).
pub fn logged(logs: &mut Vec<String>, detail: &str) -> String {
    logs.push(log::line("redis_unavailable", &[("detail", detail.into())]));
    detail.to_string()
}

/// The server sent bytes that are not the RESP we expect.
pub fn protocol(e: &RespError) -> String {
    format!("redis protocol: {e}")
}
