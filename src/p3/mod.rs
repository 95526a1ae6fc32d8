//! The WASIp3 shell (`--features p3`): `wasi:http@0.3.0` through spin-sdk 7.
//!
//! One component instance serves many requests at once, each a task of its
//! own; every stream in the instance shares one Redis subscription
//! connection ([`link`], driving the core [`crate::hub::Hub`]). Like
//! `src/host/` for the p2 builds, this only moves bytes and time; decisions
//! are in the core modules.

mod clock;
mod link;
mod notify;

use crate::auth::{token_from_headers, AuthError, Identity, Verifier};
use crate::config::{Config, Source};
use crate::error::ApiError;
use crate::limits;
use crate::routes::{self, Route};
use spin_sdk7::wasip3;
use std::cell::Cell;
use wasip3::http::types::{ErrorCode, Fields, Method, Request, Response};
use wasip3::{wit_future, wit_stream};

wasip3::http::service::export!(Gateway);

struct Gateway;

thread_local! {
    /// Requests this instance has accepted (the host reuses an instance for
    /// many requests, concurrently).
    static REQUESTS: Cell<u64> = const { Cell::new(0) };
}

impl wasip3::exports::http::handler::Guest for Gateway {
    async fn handle(req: Request) -> Result<Response, ErrorCode> {
        REQUESTS.set(REQUESTS.get() + 1);
        Ok(respond(req).await.unwrap_or_else(|e| error_response(&e)))
    }
}

async fn respond(req: Request) -> Result<Response, ApiError> {
    let path_and_query = req.get_path_with_query().unwrap_or_default();
    let path = path_and_query.split('?').next().unwrap_or("");
    let route = routes::route(method_name(&req.get_method()), path)?;
    let cfg = load_config().await.map_err(|e| {
        log("config_error", &[("detail", e.to_string().into())]);
        ApiError::configuration(e.to_string())
    })?;
    let headers = req.get_headers().copy_all();
    let size = limits::header_bytes(headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())));
    if size > cfg.limits.max_header_bytes {
        return Err(ApiError::headers_too_large(cfg.limits.max_header_bytes));
    }
    match route {
        Route::Health => Ok(health(&cfg)),
        Route::NotificationStream => {
            let who = authenticate(&headers, &cfg)?;
            notify::stream(cfg, who).await
        }
        // The other routes come with the stream machine (issue 12).
        _ => Err(ApiError::not_found()),
    }
}

/// `GET /api/v1/events/health`: from the instance alone. With `dev_mode` it
/// also shows this instance's counters (how many requests share it), which
/// production leaves out.
fn health(cfg: &Config) -> Response {
    let mut reply = serde_json::json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "build": "p3",
    });
    if cfg.dev_mode {
        reply["instance"] = instance_stats();
    }
    full_response(
        200,
        &[("content-type", "application/json")],
        reply.to_string().into_bytes(),
    )
}

/// This instance's counters (for logs and dev-mode health).
fn instance_stats() -> serde_json::Value {
    let (streams, connections) = link::stats();
    serde_json::json!({
        "requests": REQUESTS.get(),
        "streams": streams,
        "redis_subscription_connections": connections,
    })
}

/// WASI environment variables, upper-cased, as the portable build.
#[cfg(not(feature = "p3-spin-variables"))]
async fn load_config() -> Result<Config, crate::config::ConfigError> {
    let env = wasip3::cli::environment::get_environment();
    Config::load(&Source(move |name: &str| {
        let upper = name.to_ascii_uppercase();
        env.iter()
            .find(|(k, _)| *k == upper)
            .map(|(_, v)| v.clone())
    }))
}

/// Spin application variables, as the Spin build; spin-sdk 7 reads them
/// asynchronously, so every variable the gateway knows is fetched first.
#[cfg(feature = "p3-spin-variables")]
async fn load_config() -> Result<Config, crate::config::ConfigError> {
    let mut values = std::collections::HashMap::new();
    for name in crate::config::VARIABLES {
        if let Ok(v) = spin_sdk7::variables::get(name).await {
            values.insert(*name, v);
        }
    }
    Config::load(&Source(move |name: &str| values.get(name).cloned()))
}

fn header<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .filter_map(|(_, v)| std::str::from_utf8(v).ok())
        .collect()
}

/// Verifies the caller's JWT before anything touches Redis.
fn authenticate(headers: &[(String, Vec<u8>)], cfg: &Config) -> Result<Identity, ApiError> {
    let authorization = header(headers, "authorization");
    let cookies = header(headers, "cookie");
    let token = token_from_headers(authorization.first().copied(), &cookies)
        .ok_or_else(ApiError::authentication_required)?;
    Verifier::new(cfg.auth.clone())
        .verify(token, clock::unix_seconds())
        .map_err(|e| match e {
            AuthError::Missing => ApiError::authentication_required(),
            AuthError::Invalid(reason) => {
                log("auth_failed", &[("reason", reason.into())]);
                ApiError::invalid_credentials()
            }
        })
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

fn fields(headers: &[(&str, &str)]) -> Fields {
    let list: Vec<(String, Vec<u8>)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
    Fields::from_list(&list).unwrap_or_else(|_| Fields::new())
}

/// A response whose whole body is known now.
fn full_response(status: u16, headers: &[(&str, &str)], body: Vec<u8>) -> Response {
    let (mut tx, rx) = wit_stream::new();
    let (trailers_tx, trailers) = wit_future::new(|| Ok(None));
    drop(trailers_tx);
    let (response, _) = Response::new(fields(headers), Some(rx), trailers);
    let _ = response.set_status_code(status);
    wit_bindgen_spawn(async move {
        tx.write_all(body).await;
    });
    response
}

fn error_response(e: &ApiError) -> Response {
    let mut headers = vec![("content-type", "application/json")];
    headers.extend(e.headers.iter().map(|(k, v)| (*k, v.as_str())));
    full_response(e.status, &headers, e.body())
}

/// Runs `fut` in this request's task after the handler has returned (the
/// response body is written from there).
fn wit_bindgen_spawn(fut: impl std::future::Future<Output = ()> + 'static) {
    wasip3::wit_bindgen::spawn(fut);
}

/// One JSON log line on stderr. Callers pass no tokens or secrets.
fn log(event: &str, fields: &[(&str, serde_json::Value)]) {
    let mut line = serde_json::Map::new();
    line.insert("event".into(), event.into());
    for (k, v) in fields {
        line.insert((*k).into(), v.clone());
    }
    eprintln!("{}", serde_json::Value::Object(line));
}
