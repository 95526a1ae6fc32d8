//! The request/response routes: publishing an event (`POST`) and health.

use super::body::Responder;
use super::{clock, redis};
use crate::auth::Identity;
use crate::config::Config;
use crate::error::ApiError;
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
        let raw = read_body(req, publish.max_body)?;
        let mut cmd = redis::ran(publish.command(cfg, &raw, clock::now())?);
        publish.answer(&mut cmd)
    })();
    match result {
        Ok(reply) => out.json(202, &reply),
        Err(e) => out.error(&e),
    }
}

/// Reads the request body, refusing more than `limit` bytes with 413.
pub(super) fn read_body(req: IncomingRequest, limit: usize) -> Result<Vec<u8>, ApiError> {
    let declared = req
        .headers()
        .get("content-length")
        .first()
        .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::payload_too_large(limit));
    }
    let broken = || ApiError::bad_request("request body could not be read");
    let incoming = req.consume().map_err(|_| broken())?;
    let stream = incoming.stream().map_err(|_| broken())?;
    let mut buf = Vec::new();
    loop {
        match stream.blocking_read(16 * 1024) {
            Ok(chunk) => {
                buf.extend_from_slice(&chunk);
                if buf.len() > limit {
                    return Err(ApiError::payload_too_large(limit));
                }
            }
            Err(wasi::io::streams::StreamError::Closed) => return Ok(buf),
            Err(_) => return Err(broken()),
        }
    }
}

/// `GET /api/v1/events/health`: no auth; 200 when Redis answers `PING`.
pub fn health(cfg: &Config, out: Responder) {
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
