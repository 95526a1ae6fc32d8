//! The WASIp3 shell (`--features p3`): `wasi:http@0.3.0` through spin-sdk 7.
//!
//! One component instance serves many requests at once, each a task of its
//! own; every stream in the instance shares one Redis subscription
//! connection ([`link`], driving the core [`crate::redis::hub::Hub`]). Like
//! `src/host/` for the p2 builds, this only moves bytes and time; decisions
//! are in the core modules.

mod clock;
mod commands;
mod dev;
mod driver;
mod lease;
mod logs;
mod net;
mod pump;
mod subscriptions;

use crate::config::Config;
use crate::http::answer::{self, Answer};
use crate::http::body::BodyBudget;
use crate::http::error::ApiError;
use crate::http::gate;
use crate::http::routes::Route;
use crate::machine::instance::ConfigReuse;
use crate::machine::publish::Publish;
use crate::machine::{Command, Topic};
use spin_sdk7::wasip3;
use std::cell::{Cell, RefCell};
use std::sync::Arc;
use wasip3::http::types::{ErrorCode, Fields, Method, Request, Response};
use wasip3::wit_bindgen::StreamResult;
use wasip3::{wit_future, wit_stream};

wasip3::http::service::export!(Gateway);

struct Gateway;

thread_local! {
    /// Requests this instance has accepted (the host reuses an instance for
    /// many requests, concurrently).
    static REQUESTS: Cell<u64> = const { Cell::new(0) };
}

type Headers = Vec<(&'static str, String)>;

impl wasip3::exports::http::handler::Guest for Gateway {
    async fn handle(req: Request) -> Result<Response, ErrorCode> {
        REQUESTS.set(REQUESTS.get() + 1);
        let mut line = None;
        let response = respond(req, &mut line).await;
        // A stream took its line along: it is logged when the stream ends.
        if let Some(line) = line {
            line.answered(response.get_status_code());
        }
        Ok(response)
    }
}

/// The request into `gate::admit`, its verdict to the route. `line` is
/// the request's `request` log line, left for the caller or taken by a
/// stream.
async fn respond(req: Request, line: &mut Option<RequestLine>) -> Response {
    let path_and_query = req.get_path_with_query().unwrap_or_default();
    let path = path_and_query.split('?').next().unwrap_or("");
    *line = Some(RequestLine::new(method_name(&req.get_method()), path));
    let entries = req.get_headers().copy_all();
    let headers: Vec<(&str, &[u8])> = entries
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    let method = req.get_method();
    let request = gate::Request {
        method: method_name(&method),
        path,
        headers: &headers,
        unix_now: clock::unix_seconds(),
    };
    let loaded = config().await;
    let decision = gate::admit(&request, move || loaded);
    logs::set_level(decision.log_level);
    print(decision.logs.into_iter());
    let cors = decision.headers;
    let (route, cfg, who, last_event_id) = match decision.verdict.into_serve() {
        Ok(serve) => serve,
        Err(answer) => return answer_response(answer, &cors),
    };
    let Some(who) = who else {
        return match route {
            Route::Ready => ready(&cfg, &cors).await,
            Route::Health => health(&cfg, &cors),
            Route::OpenApi => answer_response(answer::openapi(), &cors),
            Route::DemoPage => answer_response(crate::http::dev::demo_page(), &cors),
            Route::DevToken => {
                let declared = header(&entries, "content-length");
                answer_response(dev::token(&cfg, req, declared).await, &cors)
            }
            _ => error_response(&ApiError::not_found(), &cors),
        };
    };
    if let Some(topic) = Topic::of(&route) {
        return pump::serve(cfg, who, topic, last_event_id, cors, line.take()).await;
    }
    match route {
        Route::PublishExecution(_) | Route::PublishNotification(_) => {
            let declared = header(&entries, "content-length");
            match publish(&cfg, &who, &route, req, declared).await {
                Ok(reply) => json_response(202, &cors, reply),
                Err(e) => error_response(&e, &cors),
            }
        }
        Route::DevExecution => answer_response(dev::create_execution(&cfg, &who).await, &cors),
        _ => error_response(&ApiError::not_found(), &cors),
    }
}

/// `POST` publish: the body read against its budget, then the publish
/// command on a connection of its own.
async fn publish(
    cfg: &Config,
    who: &crate::http::auth::Identity,
    route: &Route,
    req: Request,
    declared: Option<u64>,
) -> Result<Vec<u8>, ApiError> {
    let publish = Publish::new(cfg, who, route).ok_or_else(ApiError::not_found)??;
    let raw = read_body(req, declared, publish.max_body, cfg.limits.max_body_seconds).await?;
    commands::reply(publish.command(cfg, &raw, clock::now())?, |cmd| {
        publish.answer(cmd)
    })
    .await
}

/// Reads the request body within `body::BodyBudget`: 413 over `limit`
/// bytes, 408 when it has not all arrived after `max_seconds`.
async fn read_body(
    req: Request,
    declared: Option<u64>,
    limit: usize,
    max_seconds: u64,
) -> Result<Vec<u8>, ApiError> {
    let mut budget = BodyBudget::new(declared, limit, max_seconds, clock::now())?;
    let (res_tx, res) = wit_future::new(|| Ok(()));
    drop(res_tx);
    let (mut body, _trailers) = Request::consume_body(req, res);
    loop {
        let read = body.read(Vec::with_capacity(16 * 1024));
        match clock::before(budget.deadline(), read).await {
            None => {
                budget.check_time(clock::now())?;
            }
            Some((StreamResult::Complete(_), chunk)) => budget.push(&chunk, clock::now())?,
            Some(_) => return Ok(budget.finish()),
        }
    }
}

/// `GET /api/v1/events/health`: from the instance alone. With `dev_mode` it
/// also shows this instance's counters (how many requests share it), which
/// production leaves out.
fn health(cfg: &Config, cors: &Headers) -> Response {
    let mut answer = answer::health();
    if cfg.dev_mode {
        // The instance's counters ride on the liveness body in dev mode.
        if let Ok(mut body) = serde_json::from_slice::<serde_json::Value>(&answer.body) {
            body["instance"] = instance_stats();
            answer.body = body.to_string().into_bytes();
        }
    }
    answer_response(answer, cors)
}

/// `GET /api/v1/events/health/ready`: 200 when Redis answers `PING`.
async fn ready(cfg: &Config, cors: &Headers) -> Response {
    let pong = commands::reply(Command::ping(cfg, clock::now()), Command::text).await;
    answer_response(answer::ready(pong), cors)
}

/// This instance's counters (for dev-mode health).
fn instance_stats() -> serde_json::Value {
    let (streams, connections) = subscriptions::stats();
    serde_json::json!({
        "requests": REQUESTS.get(),
        "streams": streams,
        "redis_subscription_connections": connections,
        "redis_command_connections": commands::open_connections(),
    })
}

thread_local! {
    /// The configuration this instance's requests share.
    static CONFIG: RefCell<ConfigReuse> = RefCell::new(ConfigReuse::default());
}

/// The instance's configuration, loaded again once
/// [`ConfigReuse`] says it is stale.
async fn config() -> Result<Arc<Config>, crate::config::ConfigError> {
    let now = clock::now();
    if let Some(cfg) = CONFIG.with_borrow(|c| c.fresh(now)) {
        return Ok(cfg);
    }
    let loaded = load_config().await;
    CONFIG.with_borrow_mut(|c| c.keep(loaded, now))
}

/// WASI environment variables, upper-cased, as the portable build.
#[cfg(not(feature = "p3-spin-variables"))]
async fn load_config() -> Result<Config, crate::config::ConfigError> {
    Config::from_env(&wasip3::cli::environment::get_environment())
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
    Config::load(&crate::config::Source(move |name: &str| {
        values.get(name).cloned()
    }))
}

fn header(headers: &[(String, Vec<u8>)], name: &str) -> Option<u64> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| std::str::from_utf8(v).ok()?.trim().parse().ok())
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
fn full_response(status: u16, extra: &[(&str, &str)], cors: &Headers, body: Vec<u8>) -> Response {
    let mut headers = extra.to_vec();
    headers.extend(cors.iter().map(|(k, v)| (*k, v.as_str())));
    let (mut tx, rx) = wit_stream::new();
    let (trailers_tx, trailers) = wit_future::new(|| Ok(None));
    let (response, _) = Response::new(fields(&headers), Some(rx), trailers);
    let _ = response.set_status_code(status);
    // The trailers only after the body: Spin 4.1 may end the response as
    // soon as they resolve, and a trailers writer dropped at once sent an
    // empty body now and then (a 400 with no JSON in the p3 Spin pass).
    wit_bindgen_spawn(async move {
        tx.write_all(body).await;
        drop(tx);
        let _ = trailers_tx.write(Ok(None)).await;
    });
    response
}

fn json_response(status: u16, cors: &Headers, body: Vec<u8>) -> Response {
    full_response(status, &[("content-type", "application/json")], cors, body)
}

fn error_response(e: &ApiError, cors: &Headers) -> Response {
    answer_response(Answer::from(e), cors)
}

/// Sends a core [`Answer`] and prints its log lines.
fn answer_response(answer: Answer, cors: &Headers) -> Response {
    let headers: Vec<(&str, &str)> = answer
        .headers
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .collect();
    let response = full_response(answer.status, &headers, cors, answer.body);
    print(answer.logs.into_iter());
    response
}

/// Runs `fut` in this request's task after the handler has returned (the
/// response body is written from there).
fn wit_bindgen_spawn(fut: impl std::future::Future<Output = ()> + 'static) {
    wasip3::wit_bindgen::spawn(fut);
}

use logs::{log, print, RequestLine};
