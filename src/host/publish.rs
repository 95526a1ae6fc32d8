//! The request/response routes: publishing an event (`POST`), liveness and
//! readiness.

use super::body::Responder;
use super::{clock, log, redis, unavailable, RETRY_AFTER_SECONDS};
use crate::auth::{Identity, Role};
use crate::config::Config;
use crate::error::ApiError;
use crate::events::{prepare_publish, StreamKind};
use crate::history;
use crate::limits::BodyBudget;
use crate::session::Tag;
use spin_sdk::http::IncomingRequest;

/// `POST /api/v1/events/executions/{id}` (service tokens).
pub fn execution(cfg: &Config, who: &Identity, id: &str, req: IncomingRequest, out: Responder) {
    let channel = format!("{}{}", cfg.prefixes.exec_channel, id);
    publish(cfg, who, StreamKind::Execution, Some(id), channel, req, out);
}

/// `POST /api/v1/events/notifications/{user_id}` (service tokens).
pub fn notification(
    cfg: &Config,
    who: &Identity,
    user: &str,
    req: IncomingRequest,
    out: Responder,
) {
    let channel = format!("{}{}", cfg.prefixes.notif_channel, user);
    publish(cfg, who, StreamKind::Notification, None, channel, req, out);
}

fn publish(
    cfg: &Config,
    who: &Identity,
    kind: StreamKind,
    execution_id: Option<&str>,
    channel: String,
    req: IncomingRequest,
    out: Responder,
) {
    let result = (|| {
        if who.role != Role::Service {
            return Err(ApiError::forbidden());
        }
        let raw = read_body(req, cfg.max_event_bytes, cfg.limits.max_body_seconds)?;
        let event = prepare_publish(kind, &raw, execution_id).map_err(ApiError::bad_request)?;
        let key = history::key(&cfg.prefixes.history_key, &channel);
        let args = history::publish_command(&key, &channel, &event, cfg.history, cfg.redis_cluster);
        let reply = redis::command(cfg, Tag::Publish, &args)?;
        reply
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| unavailable(&format!("publish script replied {reply:?}")))
    })();
    match result {
        Ok(id) => {
            let reply = serde_json::json!({ "id": id, "channel": channel });
            out.json(202, reply.to_string().as_bytes());
        }
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
    match redis::command(cfg, Tag::Ping, &[b"PING".to_vec()]) {
        Ok(v) if v.as_str() == Some("PONG") => {
            let reply = serde_json::json!({"status": "ok", "version": version, "redis": "ok"});
            out.json(200, reply.to_string().as_bytes());
        }
        other => {
            if let Ok(v) = other {
                log("health_unexpected_reply", &[("reply", &format!("{v:?}"))]);
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
