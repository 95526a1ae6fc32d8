//! The p3 shell's log lines: the core's lines filtered by `log_level` and
//! written in one `write` each, and the `request` line of every request
//! (for a stream, once it ended), as the p2 shell writes them.

use super::clock;
use crate::http::routes;
use crate::log::{self, Level};
use std::cell::Cell;
use std::io::Write;

thread_local! {
    /// The configured `log_level`. One instance serves many requests, all
    /// with the same configuration; the last loaded one counts.
    static LEVEL: Cell<Level> = const { Cell::new(Level::Info) };
}

/// Sets `log_level` from a request's gate decision.
pub fn set_level(level: Level) {
    LEVEL.set(level);
}

/// Prints the core's log lines on stderr.
pub fn print(lines: impl Iterator<Item = String>) {
    for line in lines {
        emit(line);
    }
}

/// One JSON log line on stderr. Callers pass no tokens or secrets.
pub fn log(event: &str, fields: &[(&str, serde_json::Value)]) {
    emit(log::line(event, fields));
}

/// A line at or above `log_level`, in one write (streams of one instance
/// and other instances share stderr).
fn emit(line: String) {
    if log::enabled(&line, LEVEL.get()) {
        let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
    }
}

/// The `request` line (debug) of one request, written once it is answered.
pub struct RequestLine {
    method: String,
    route: &'static str,
    started: u64,
}

impl RequestLine {
    pub fn new(method: &str, path: &str) -> RequestLine {
        let route = routes::route(method, path).ok();
        RequestLine {
            method: method.to_string(),
            route: crate::telemetry::route_name(route.as_ref()),
            started: clock::now(),
        }
    }

    /// Logs the request with the status it was answered with.
    pub fn answered(self, status: u16) {
        let (method, route) = (self.method.as_str(), self.route);
        emit(log::request(
            method,
            route,
            status,
            self.started,
            clock::now(),
        ));
    }
}
