//! The WASI shell: the HTTP entry point and logging.
//!
//! Everything here moves bytes between the host and the core: the request
//! gate (`gate::admit`) decides what to answer, the stream machine
//! (`machine::own::OwnConnection`) what to send. One request = one component
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

use crate::http::answer;
use crate::http::error::ApiError;
use crate::http::gate;
use crate::http::routes::Route;
use crate::log::Level;
use crate::machine::Topic;
use crate::telemetry;
use body::Responder;
use std::cell::Cell;
use wasi::http::types::{IncomingRequest, Method, ResponseOutparam};

thread_local! {
    /// This request's `log_level` (one instance = one request).
    static LEVEL: Cell<Level> = const { Cell::new(Level::Info) };
    /// What this request recorded for `wasi:otel`.
    #[cfg(feature = "otel")]
    static RECORDER: std::cell::RefCell<telemetry::Recorder> = Default::default();
}

/// The component's `wasi:http/incoming-handler` export.
struct Handler;

impl wasi::exports::http::incoming_handler::Guest for Handler {
    fn handle(req: IncomingRequest, out: ResponseOutparam) {
        handle(req, out)
    }
}

wasi::http::proxy::export!(Handler);

/// Answers the request, then logs it (`request`, debug) and, with the
/// `otel` feature, exports its metrics and span.
fn handle(req: IncomingRequest, out: ResponseOutparam) {
    let started = clock::now();
    #[cfg(feature = "otel")]
    let wall = wasi::clocks::wall_clock::now();
    let method = method_name(req.method());
    let path = req.path_with_query().unwrap_or_default();
    let route = telemetry::route_of(&method, &path);
    respond(req, &method, &path, Responder::new(out));
    let status = body::status();
    emit(crate::log::request(
        &method,
        route,
        status,
        started,
        clock::now(),
    ));
    #[cfg(feature = "otel")]
    RECORDER.with_borrow_mut(|r| {
        r.answered(route, status);
        otel::export_metrics(r, wall);
        let attrs = r.span_attributes(&method, route, status);
        otel::span(&format!("{method} {route}"), &attrs, status >= 500, wall);
    });
}

/// The request method as sent (`GET`, ..., or the extension method's name).
fn method_name(method: Method) -> String {
    match method {
        Method::Get => "GET".into(),
        Method::Head => "HEAD".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Connect => "CONNECT".into(),
        Method::Options => "OPTIONS".into(),
        Method::Trace => "TRACE".into(),
        Method::Patch => "PATCH".into(),
        Method::Other(name) => name,
    }
}

fn respond(req: IncomingRequest, method: &str, path_and_query: &str, mut out: Responder) {
    let entries = req.headers().entries();
    let headers: Vec<(&str, &[u8])> = entries
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    let request = gate::Request {
        method,
        path: path_and_query.split('?').next().unwrap_or(""),
        headers: &headers,
        unix_now: clock::unix_seconds(),
    };
    let decision = gate::admit(&request, config_source::load);
    LEVEL.with(|l| l.set(decision.log_level));
    print(decision.logs.into_iter());
    out.add_headers(decision.headers);
    let (route, cfg, who, last_event_id) = match decision.verdict.into_serve() {
        Ok(serve) => serve,
        Err(answer) => return out.answer(answer),
    };
    let Some(who) = who else {
        return match route {
            Route::DemoPage => out.answer(crate::http::dev::demo_page()),
            Route::DevToken => dev::token(&cfg, req, out),
            Route::Ready => publish::ready(&cfg, out),
            Route::Health => out.answer(answer::health()),
            Route::OpenApi => out.answer(answer::openapi()),
            _ => out.error(&ApiError::not_found()),
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
