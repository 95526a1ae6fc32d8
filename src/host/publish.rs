//! The request/response routes' I/O: publishing an event (`POST`, its
//! body read within the budget) and readiness (a `PING`).

use super::body::Responder;
use super::{clock, redis};
use crate::config::Config;
use crate::http::answer::{self, Answer};
use crate::http::auth::Identity;
use crate::http::body::BodyBudget;
use crate::http::error::ApiError;
use crate::http::routes::Route;
use crate::machine::publish::Publish;
use crate::machine::Command;
use wasi::http::types::IncomingRequest;

/// `POST /api/v1/events/executions/{id}` and
/// `POST /api/v1/events/notifications/{user_id}` (service tokens).
pub fn publish(cfg: &Config, who: &Identity, route: &Route, req: IncomingRequest, out: Responder) {
    let result = (|| {
        let publish = Publish::new(cfg, who, route).ok_or_else(ApiError::not_found)??;
        let raw = read_body(req, publish.max_body, cfg.limits.max_body_seconds)?;
        redis::reply(publish.command(cfg, &raw, clock::now())?, |cmd| {
            publish.answer(cmd)
        })
    })();
    out.answer(result.map(|reply| Answer::json(202, reply)).into());
}

/// Reads the request body within the budget (`body::BodyBudget`): 413
/// over `limit` bytes, 408 when it has not all arrived after `max_seconds`.
/// Waits on the body and the deadline at once, never in a blocking read.
pub(super) fn read_body(
    req: IncomingRequest,
    limit: usize,
    max_seconds: u64,
) -> Result<Vec<u8>, ApiError> {
    let declared =
        crate::http::body::content_length(&req.headers().get(&"content-length".to_string()));
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

/// `GET /api/v1/events/health/ready`: readiness, no auth; 200 when Redis
/// answers `PING`, else 503 with `retry-after`.
pub fn ready(cfg: &Config, out: Responder) {
    let pong = redis::reply(Command::ping(cfg, clock::now()), Command::text);
    out.answer(answer::ready(pong));
}
