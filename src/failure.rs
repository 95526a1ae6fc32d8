//! Why a Redis connection failed, in the words every log line and close
//! reason uses: one text per cause, whichever shell or wiring saw it (the
//! shells pass these on and write none of their own).

use crate::resp::RespError;

/// The connection stayed silent past its deadline (connect, a reply, a
/// liveness `PING`) though TCP did not say it broke.
pub const SILENT: &str = "redis did not answer in time";

/// Cluster: `MOVED` more times than `machine::command::MAX_REDIRECTS`.
pub const REDIRECTS: &str = "too many cluster redirects";

/// The server sent bytes that are not the RESP we expect.
pub fn protocol(e: &RespError) -> String {
    format!("redis protocol: {e}")
}
