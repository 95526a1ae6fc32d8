//! The WASI shell: the HTTP entry point and logging.
//!
//! Everything here moves bytes between the host and the core: the request
//! gate (`gate::admit`) decides what to answer, the stream machine
//! (`machine::StreamMachine`) what to send. One request = one component
//! instance, so a stream may block in `wasi:io/poll` without starving
//! anything else.

mod body;
mod clock;
mod config_source;
mod dev;
mod net;
#[cfg(feature = "otel")]
mod otel;
mod publish;
mod pump;
mod redis;

use crate::error::ApiError;
use crate::gate::{self, Verdict};
use crate::log::Level;
use crate::machine::Topic;
use crate::routes::{self, Route};
use crate::telemetry;
use body::Responder;
use spin_sdk::http::{IncomingRequest, Method, ResponseOutparam};
use std::cell::Cell;

thread_local! {
    /// This request's `log_level` (one instance = one request).
    static LEVEL: Cell<Level> = const { Cell::new(Level::Info) };
    /// What this request recorded for `wasi:otel`.
    #[cfg(feature = "otel")]
    static RECORDER: std::cell::RefCell<telemetry::Recorder> = Default::default();
}

/// Answers the request, then logs it (`request`, debug) and, with the
/// `otel` feature, exports its metrics and span.
#[spin_sdk::http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    let started = clock::now();
    #[cfg(feature = "otel")]
    let wall = otel::now();
    let method = method_name(&req.method()).to_string();
    let path = req.path_with_query().unwrap_or_default();
    let route = routes::route(&method, path.split('?').next().unwrap_or("")).ok();
    let route = telemetry::route_name(route.as_ref());
    respond(req, out).await;
    let status = body::status();
    let millis = clock::now().saturating_sub(started) / 1_000_000;
    emit(crate::log::line(
        "request",
        &[
            ("method", method.as_str().into()),
            ("route", route.into()),
            ("status", status.into()),
            ("duration_ms", millis.into()),
        ],
    ));
    #[cfg(feature = "otel")]
    RECORDER.with_borrow_mut(|r| {
        r.answered(route, status);
        otel::export_metrics(r, wall);
        let attrs = r.span_attributes(&method, route, status);
        otel::span(&format!("{method} {route}"), &attrs, status >= 500, wall);
    });
}

async fn respond(req: IncomingRequest, out: ResponseOutparam) {
    let mut out = Responder::new(out);
    let path_and_query = req.path_with_query().unwrap_or_default();
    let path = path_and_query.split('?').next().unwrap_or("");
    let entries = req.headers().entries();
    let headers: Vec<(&str, &[u8])> = entries
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    let method = req.method();
    let request = gate::Request {
        method: method_name(&method),
        path,
        headers: &headers,
        unix_now: clock::unix_seconds(),
    };
    let decision = gate::admit(&request, config_source::load);
    LEVEL.with(|l| l.set(decision.log_level));
    print(decision.logs.into_iter());
    out.add_headers(decision.headers);
    let (route, cfg, who, last_event_id) = match decision.verdict {
        Verdict::Refuse(e) => return out.error(&e),
        Verdict::Preflight => return out.send(204, &[], b""),
        Verdict::Serve {
            route,
            cfg,
            who,
            last_event_id,
        } => (route, cfg, who, last_event_id),
    };
    let Some(who) = who else {
        return match route {
            Route::DemoPage => dev::demo_page(out),
            Route::DevToken => dev::token(&cfg, req, out),
            Route::Ready => publish::ready(&cfg, out),
            _ => publish::health(out),
        };
    };
    if let Some(topic) = Topic::of(&route) {
        return pump::serve(&cfg, &who, topic, last_event_id.as_deref(), out);
    }
    match route {
        Route::DevExecution => dev::create_execution(&cfg, &who, out),
        Route::PublishExecution(_) | Route::PublishNotification(_) => {
            publish::publish(&cfg, &who, &route, req, out)
        }
        _ => out.error(&ApiError::not_found()),
    }
}

fn method_name(m: &Method) -> &str {
    match m {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Connect => "CONNECT",
        Method::Options => "OPTIONS",
        Method::Trace => "TRACE",
        Method::Patch => "PATCH",
        Method::Other(s) => s,
    }
}

/// Prints the core's log lines on stderr.
fn print(lines: impl Iterator<Item = String>) {
    for line in lines {
        emit(line);
    }
}

/// One log line: recorded (feature `otel`, whatever the level) and printed
/// if its level is at or above `log_level`.
fn emit(line: String) {
    #[cfg(feature = "otel")]
    RECORDER.with_borrow_mut(|r| r.observe(&line));
    if crate::log::enabled(&line, LEVEL.with(Cell::get)) {
        write_line(line);
    }
}

/// One JSON log line on stderr. Callers pass no tokens or secrets.
fn log(event: &str, fields: &[(&str, &dyn LogValue)]) {
    let fields: Vec<(&str, serde_json::Value)> =
        fields.iter().map(|(k, v)| (*k, v.to_json())).collect();
    emit(crate::log::line(event, &fields));
}

/// Writes a line in one `write` (`eprintln!` writes the line and its
/// newline separately, and lines of concurrent instances then interleave).
/// A write takes at most 4096 bytes; log lines are far shorter.
fn write_line(mut line: String) {
    line.push('\n');
    let stderr = wasi::cli::stderr::get_stderr();
    for chunk in line.as_bytes().chunks(4096) {
        if stderr.blocking_write_and_flush(chunk).is_err() {
            break;
        }
    }
}

/// Values a log line can carry.
trait LogValue {
    fn to_json(&self) -> serde_json::Value;
}

impl LogValue for &str {
    fn to_json(&self) -> serde_json::Value {
        (*self).into()
    }
}

impl LogValue for String {
    fn to_json(&self) -> serde_json::Value {
        self.as_str().into()
    }
}

impl LogValue for u64 {
    fn to_json(&self) -> serde_json::Value {
        (*self).into()
    }
}

impl LogValue for usize {
    fn to_json(&self) -> serde_json::Value {
        (*self).into()
    }
}
