//! Development helpers, served only when `dev_mode` is on: the demo page,
//! local token minting and simulated executions.
//!
//! - `GET /demo`: a static page (`static/demo.html`, compiled in).
//! - `POST /api/v1/events/dev/token`: an HS256 token for a demo *user*, as
//!   JSON and as the `access_token` cookie, so the page's own `EventSource`
//!   authenticates by cookie. Only the ordinary `user` role is minted: an
//!   `admin` token would read every execution and a `service` token could
//!   publish, and neither is needed to watch one's own events.
//! - `POST /api/v1/events/dev/executions`: creates an execution record owned
//!   by the caller (`status` `queued`) and queues its id on [`JOB_QUEUE`] for
//!   the demo producer (`examples/demo_producer.rs`), which publishes the
//!   events through the publish API.

use super::body::Responder;
use super::{clock, log, redis};
use crate::auth::{Alg, Identity};
use crate::config::Config;
use crate::dev_token::{mint, token_request, TOKEN_TTL_SECONDS};
use crate::error::ApiError;
use crate::machine::Command;
use chrono::{DateTime, SecondsFormat, Utc};
use spin_sdk::http::IncomingRequest;

/// The demo page, compiled into the component.
const DEMO_HTML: &str = include_str!("../../static/demo.html");

/// Redis list the demo producer takes execution ids from (`BRPOP`).
pub const JOB_QUEUE: &str = "demo:jobs";

/// Largest accepted body of a token request.
const MAX_TOKEN_REQUEST_BYTES: usize = 4096;

/// Demo execution records expire after a day.
const RECORD_TTL_SECONDS: u64 = 86_400;

/// Creates the record with an expiry. `KEYS[1]` the record; `ARGV`: user
/// id, updated_at, TTL seconds. One key, so it also runs on Redis Cluster
/// (the job is queued by a second command: the queue lives in another slot).
const CREATE_SCRIPT: &str = r#"redis.call('HSET', KEYS[1], 'user_id', ARGV[1], 'status', 'queued', 'updated_at', ARGV[2])
return redis.call('EXPIRE', KEYS[1], ARGV[3])"#;

/// `GET /demo`: the demo page.
pub fn demo_page(out: Responder) {
    out.send(
        200,
        &[
            ("content-type", "text/html; charset=utf-8"),
            ("cache-control", "no-store"),
            ("x-content-type-options", "nosniff"),
            ("referrer-policy", "no-referrer"),
            (
                "content-security-policy",
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
                 frame-ancestors 'none'",
            ),
        ],
        DEMO_HTML.as_bytes(),
    )
}

/// `POST /api/v1/events/dev/token`: a development token for a demo user.
///
/// Body (optional): `{"sub": "<user id>", "role": "user"}`. `sub` defaults to
/// `demo-user` and must be a valid id (it names the notification channel);
/// `role` may only be `user`.
pub fn token(cfg: &Config, req: IncomingRequest, out: Responder) {
    let result = (|| {
        if !cfg.auth.keys.allows(Alg::Hs256) || cfg.auth.hs256_secret.is_empty() {
            return Err(ApiError::configuration(
                "dev tokens are HS256: set jwt_secret and allow HS256",
            ));
        }
        let (sub, role) = token_request(&super::publish::read_body(
            req,
            MAX_TOKEN_REQUEST_BYTES,
            cfg.limits.max_body_seconds,
        )?)?;
        let now = super::clock::unix_seconds();
        let token = mint(cfg, &sub, &role, now)?;
        log("dev_token_minted", &[("user_id", &sub), ("role", &role)]);
        Ok((token, sub, now + TOKEN_TTL_SECONDS))
    })();
    match result {
        Ok((token, sub, exp)) => {
            let cookie = format!(
                "access_token={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={TOKEN_TTL_SECONDS}"
            );
            let body = serde_json::json!({
                "token": token,
                "sub": sub,
                "role": "user",
                "expires_at": exp,
            });
            out.send(
                200,
                &[
                    ("content-type", "application/json"),
                    ("cache-control", "no-store"),
                    ("set-cookie", &cookie),
                ],
                body.to_string().as_bytes(),
            )
        }
        Err(e) => out.error(&e),
    }
}

/// `POST /api/v1/events/dev/executions`: starts a simulated execution owned
/// by the caller. Answers 201 `{"execution_id", "queued_jobs"}`.
pub fn create_execution(cfg: &Config, who: &Identity, out: Responder) {
    let id = format!("demo-{:016x}", wasi::random::random::get_random_u64());
    let key = format!("{}{}", cfg.prefixes.exec_key, id);
    let record: Vec<Vec<u8>> = vec![
        b"EVAL".to_vec(),
        CREATE_SCRIPT.as_bytes().to_vec(),
        b"1".to_vec(),
        key.into_bytes(),
        who.user_id.as_bytes().to_vec(),
        iso_now().into_bytes(),
        RECORD_TTL_SECONDS.to_string().into_bytes(),
    ];
    let job: Vec<Vec<u8>> = vec![
        b"LPUSH".to_vec(),
        JOB_QUEUE.as_bytes().to_vec(),
        id.as_bytes().to_vec(),
    ];
    // The record first: the producer looks it up as soon as it takes the job.
    let run = |args| redis::ran(Command::new(cfg, args, clock::now())).int();
    match run(record).and_then(|_| run(job)) {
        Ok(queued) => {
            log(
                "dev_execution_created",
                &[("execution_id", &id), ("user_id", &who.user_id)],
            );
            let body = serde_json::json!({ "execution_id": id, "queued_jobs": queued });
            out.json(201, body.to_string().as_bytes())
        }
        Err(e) => out.error(&e),
    }
}

/// The wall clock as ISO 8601 UTC with milliseconds (`2024-05-01T12:00:00.123Z`).
fn iso_now() -> String {
    let now = wasi::clocks::wall_clock::now();
    DateTime::<Utc>::from_timestamp(now.seconds as i64, now.nanoseconds)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_default()
}
