//! The request/response routes: publishing an event (`POST`), liveness and
//! readiness.

use super::body::Responder;
use super::{clock, redis};
use crate::auth::Identity;
use crate::config::Config;
use crate::error::ApiError;
use crate::limits::BodyBudget;
use crate::machine::command::RETRY_AFTER_SECONDS;
use crate::machine::publish::Publish;
use crate::machine::Command;
use crate::routes::Route;
use spin_sdk::http::IncomingRequest;

/// `POST /api/v1/events/executions/{id}` and
/// `POST /api/v1/events/notifications/{user_id}` (service tokens).
pub fn publish(cfg: &Config, who: &Identity, route: &Route, req: IncomingRequest, out: Responder) {
    let result = (|| {
        let publish = Publish::new(cfg, who, route).ok_or_else(ApiError::not_found)??;
        let raw = read_body(req, publish.max_body, cfg.limits.max_body_seconds)?;
        let mut cmd = redis::ran(publish.command(cfg, &raw, clock::now())?);
        publish.answer(&mut cmd)
    })();
    match result {
        Ok(reply) => out.json(202, &reply),
        Err(e) => out.error(&e),
    }
}

/// Reads the request body within the budget (`limits::BodyBudget`): 413
/// over `limit` bytes, 408 when it has not all arrived after `max_seconds`.
/// Waits on the body and the deadline at once, never in a blocking read.
pub(super) fn read_body(
    req: IncomingRequest,
    limit: usize,
    max_seconds: u64,
) -> Result<Vec<u8>, ApiError> {
    let declared = req
        .headers()
        .get("content-length")
        .first()
        .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<u64>().ok());
    let mut budget = BodyBudget::new(declared, limit, max_seconds, clock::now())?;
    let broken = || ApiError::bad_request("request body could not be read");
    let incoming = req.consume().map_err(|_| broken())?;
    let stream = incoming.stream().map_err(|_| broken())?;
    let timer = clock::timer_at(budget.deadline());
    loop {
        match stream.read(16 * 1024) {
            Ok(chunk) if chunk.is_empty() => {
                let readable = stream.subscribe();
                wasi::io::poll::poll(&[&readable, &timer]);
                budget.check_time(clock::now())?;
            }
            Ok(chunk) => budget.push(&chunk, clock::now())?,
            Err(wasi::io::streams::StreamError::Closed) => return Ok(budget.finish()),
            Err(_) => return Err(broken()),
        }
    }
}

/// `GET /api/v1/events/health`: liveness from the instance alone (no Redis
/// I/O, no auth), so probes and the open internet can't make it dial Redis.
pub fn health(out: Responder) {
    let reply = serde_json::json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")});
    out.json(200, reply.to_string().as_bytes());
}

/// `GET /api/v1/events/health/ready`: readiness, no auth; 200 when Redis
/// answers `PING`, else 503 with `retry-after`.
pub fn ready(cfg: &Config, out: Responder) {
    let version = env!("CARGO_PKG_VERSION");
    let mut ping = redis::ran(Command::ping(cfg, clock::now()));
    match ping.text() {
        Ok(pong) if pong == "PONG" => {
            let reply = serde_json::json!({"status": "ok", "version": version, "redis": "ok"});
            out.json(200, reply.to_string().as_bytes());
        }
        other => {
            if let Ok(reply) = other {
                super::log("health_unexpected_reply", &[("reply", &reply)]);
            }
            let e = ApiError::service_unavailable(RETRY_AFTER_SECONDS);
            let reply = serde_json::json!({
                "status": "unavailable",
                "version": version,
                "redis": "unreachable",
                "detail": "Redis did not answer PING",
                "type": e.kind,
            });
            let retry = RETRY_AFTER_SECONDS.to_string();
            out.send(
                503,
                &[
                    ("content-type", "application/json"),
                    ("retry-after", &retry),
                ],
                reply.to_string().as_bytes(),
            );
        }
    }
}
