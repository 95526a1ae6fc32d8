//! The WASI shell: the HTTP entry point, authentication glue and logging.
//!
//! Everything here moves bytes between the host and the core modules
//! (`routes`, `auth`, `session`, `stream`, `history`); decisions are made
//! there. One request = one component instance, so a stream may block in
//! `wasi:io/poll` without starving anything else.

mod body;
mod clock;
mod config_source;
mod dev;
mod net;
mod publish;
mod redis;
mod streams;

use crate::auth::{token_from_headers, AuthError, Identity, Verifier};
use crate::config::Config;
use crate::error::ApiError;
use crate::limits;
use crate::routes::{self, Route};
use body::Responder;
use spin_sdk::http::{IncomingRequest, Method, ResponseOutparam};

/// Seconds a client should wait before retrying after a 503.
const RETRY_AFTER_SECONDS: u32 = 2;

#[spin_sdk::http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    let mut out = Responder::new(out);
    let path_and_query = req.path_with_query().unwrap_or_default();
    let path = path_and_query.split('?').next().unwrap_or("");
    let route = match routes::route(method_name(&req.method()), path) {
        Ok(r) => r,
        Err(e) => return out.error(&e),
    };
    let cfg = match config_source::load() {
        Ok(c) => c,
        Err(e) => {
            log("config_error", &[("detail", &e.to_string())]);
            return out.error(&ApiError::configuration(e.to_string()));
        }
    };
    if routes::dev_only(path) && !cfg.dev_mode {
        return out.error(&ApiError::not_found());
    }
    let origin = header_values(&req, "origin").into_iter().next();
    let entries = req.headers().entries();
    let size = limits::header_bytes(entries.iter().map(|(k, v)| (k.as_str(), v.as_slice())));
    if size > cfg.limits.max_header_bytes {
        // Before preflights too: an OPTIONS is no way around the budget.
        out.add_headers(cfg.cors.response_headers(origin.as_deref()));
        return out.error(&ApiError::headers_too_large(cfg.limits.max_header_bytes));
    }
    if let Route::Preflight(allow) = route {
        let requested = header_values(&req, "access-control-request-method");
        return match cfg.cors.preflight(
            origin.as_deref(),
            requested.first().map(String::as_str),
            allow,
        ) {
            Ok(headers) => {
                out.add_headers(headers);
                out.send(204, &[], b"")
            }
            Err(e) => out.error(&e),
        };
    }
    out.add_headers(cfg.cors.response_headers(origin.as_deref()));
    match route {
        Route::Health => return publish::health(out),
        Route::Ready => return publish::ready(&cfg, out),
        Route::DemoPage => return dev::demo_page(out),
        Route::DevToken => return dev::token(&cfg, req, out),
        _ => {}
    }
    let who = match authenticate(&req, &cfg) {
        Ok(who) => who,
        Err(e) => return out.error(&e),
    };
    let last_event_id = header_values(&req, "last-event-id").into_iter().next();
    let last_event_id = last_event_id.as_deref();
    match route {
        Route::ExecutionStream(id) => streams::execution(&cfg, &who, &id, last_event_id, out),
        Route::NotificationStream => streams::notifications(&cfg, &who, last_event_id, out),
        Route::ReplayStatus(id) => streams::replay_status(&cfg, &who, &id, last_event_id, out),
        Route::PublishExecution(id) => publish::execution(&cfg, &who, &id, req, out),
        Route::PublishNotification(user) => publish::notification(&cfg, &who, &user, req, out),
        Route::DevExecution if cfg.dev_mode => dev::create_execution(&cfg, &who, out),
        Route::DevExecution | Route::DemoPage | Route::DevToken => {
            out.error(&ApiError::not_found())
        }
        Route::Ready => publish::ready(&cfg, out),
        Route::Health | Route::Preflight(_) => publish::health(out),
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

/// Header values as text; a value that is not UTF-8 is ignored.
fn header_values(req: &IncomingRequest, name: &str) -> Vec<String> {
    req.headers()
        .get(name)
        .into_iter()
        .filter_map(|v| String::from_utf8(v).ok())
        .collect()
}

/// Verifies the caller's JWT before anything touches Redis. Header values
/// go to the core as bytes: it decides which credential counts.
fn authenticate(req: &IncomingRequest, cfg: &Config) -> Result<Identity, ApiError> {
    let headers = req.headers();
    let (authorization, cookies) = (headers.get("authorization"), headers.get("cookie"));
    let authorization: Vec<&[u8]> = authorization.iter().map(Vec::as_slice).collect();
    let cookies: Vec<&[u8]> = cookies.iter().map(Vec::as_slice).collect();
    token_from_headers(&authorization, &cookies)
        .and_then(|token| Verifier::new(cfg.auth.clone()).verify(token, clock::unix_seconds()))
        .map_err(|e| match e {
            AuthError::Missing => ApiError::authentication_required(),
            AuthError::Invalid(reason) => {
                log("auth_failed", &[("reason", &reason)]);
                ApiError::invalid_credentials()
            }
        })
}

/// Logs a Redis failure and gives the 503 the client sees.
fn unavailable(detail: &str) -> ApiError {
    log("redis_unavailable", &[("detail", &detail)]);
    ApiError::service_unavailable(RETRY_AFTER_SECONDS)
}

/// One JSON log line on stderr. Callers pass no tokens or secrets.
fn log(event: &str, fields: &[(&str, &dyn LogValue)]) {
    let mut line = serde_json::Map::new();
    line.insert("event".into(), event.into());
    for (k, v) in fields {
        line.insert((*k).into(), v.to_json());
    }
    let mut text = serde_json::Value::Object(line).to_string();
    text.push('\n');
    write_stderr(text.as_bytes());
}

/// Writes a formatted line in one `write` (`eprintln!` of a `Display`
/// writes each piece on its own, and lines of concurrent instances then
/// interleave). A write takes at most 4096 bytes; log lines are far shorter.
fn write_stderr(bytes: &[u8]) {
    let stderr = wasi::cli::stderr::get_stderr();
    for chunk in bytes.chunks(4096) {
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
