//! The request/response routes: publishing an event (`POST`) and health.

use super::body::Responder;
use super::{log, redis, unavailable, RETRY_AFTER_SECONDS};
use crate::auth::{Identity, Role};
use crate::config::Config;
use crate::error::ApiError;
use crate::events::{prepare_publish, StreamKind};
use crate::history;
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
        let raw = read_body(req, cfg.max_event_bytes)?;
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
