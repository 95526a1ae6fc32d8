//! Development routes, served only when `dev_mode` is on: what the demo
//! page, a token request and a simulated execution answer. The shell
//! (`host/dev.rs`) reads the body, the clocks and a random number, runs the
//! commands and sends the answer.
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

use crate::config::Config;
use crate::http::answer::Answer;
use crate::http::auth::{Alg, Identity};
use crate::http::dev_token::{mint, token_request, TOKEN_TTL_SECONDS};
use crate::http::error::ApiError;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;

/// The demo page, compiled into the component.
const DEMO_HTML: &str = include_str!("../../static/demo.html");

/// Redis list the demo producer takes execution ids from (`BRPOP`).
pub const JOB_QUEUE: &str = "demo:jobs";

/// Largest accepted body of a token request.
pub const MAX_TOKEN_REQUEST_BYTES: usize = 4096;

/// Demo execution records expire after a day.
const RECORD_TTL_SECONDS: u64 = 86_400;

/// Creates the record with an expiry. `KEYS[1]` the record; `ARGV`: user
/// id, updated_at, TTL seconds. One key, so it also runs on Redis Cluster
/// (the job is queued by a second command: the queue lives in another slot).
const CREATE_SCRIPT: &str = r#"redis.call('HSET', KEYS[1], 'user_id', ARGV[1], 'status', 'queued', 'updated_at', ARGV[2])
return redis.call('EXPIRE', KEYS[1], ARGV[3])"#;

/// `GET /demo`: the demo page, under a policy that allows only its own
/// inline script and style and requests to this origin.
pub fn demo_page() -> Answer {
    Answer::new(
        200,
        "text/html; charset=utf-8",
        DEMO_HTML.as_bytes().to_vec(),
    )
    .with("cache-control", "no-store")
    .with("x-content-type-options", "nosniff")
    .with("referrer-policy", "no-referrer")
    .with(
        "content-security-policy",
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'",
    )
}

/// Whether tokens can be minted at all; checked before the body is read.
pub fn can_mint(cfg: &Config) -> Result<(), ApiError> {
    if !cfg.auth.keys.allows(Alg::Hs256) || cfg.auth.hs256_secret.is_empty() {
        return Err(ApiError::configuration(
            "dev tokens are HS256: set jwt_secret and allow HS256",
        ));
    }
    Ok(())
}

/// `POST /api/v1/events/dev/token` with its `body` at unix time `now`.
///
/// Body (optional): `{"sub": "<user id>", "role": "user"}`. `sub` defaults to
/// `demo-user` and must be a valid id (it names the notification channel);
/// `role` may only be `user`.
pub fn token(cfg: &Config, body: &[u8], now: i64) -> Result<Answer, ApiError> {
    let (sub, role) = token_request(body)?;
    let token = mint(cfg, &sub, &role, now)?;
    let cookie = format!(
        "access_token={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={TOKEN_TTL_SECONDS}"
    );
    let logged = crate::log::line(
        "dev_token_minted",
        &[("user_id", sub.as_str().into()), ("role", role.into())],
    );
    let body = json!({
        "token": token,
        "sub": sub,
        "role": "user",
        "expires_at": now + TOKEN_TTL_SECONDS,
    });
    Ok(Answer::json(200, body.to_string().into_bytes())
        .with("cache-control", "no-store")
        .with("set-cookie", cookie)
        .logged(logged))
}

/// A simulated execution: its id and the two commands that create it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution {
    /// `demo-` and 16 hex digits.
    pub id: String,
    /// Creates the record (first: the producer looks it up as soon as it
    /// takes the job).
    pub record: Vec<Vec<u8>>,
    /// Queues the id for the producer; its reply is the queue's length.
    pub job: Vec<Vec<u8>>,
}

impl Execution {
    /// The execution `random` names, owned by `who`, created at the wall
    /// clock time `unix` (seconds, nanoseconds).
    pub fn new(cfg: &Config, who: &Identity, random: u64, unix: (i64, u32)) -> Execution {
        let id = format!("demo-{random:016x}");
        let key = format!("{}{}", cfg.prefixes.exec_key, id);
        let updated_at = DateTime::<Utc>::from_timestamp(unix.0, unix.1)
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
            .unwrap_or_default();
        let ttl = RECORD_TTL_SECONDS.to_string();
        let record = [
            b"EVAL".as_slice(),
            CREATE_SCRIPT.as_bytes(),
            b"1",
            key.as_bytes(),
            who.user_id.as_bytes(),
            updated_at.as_bytes(),
            ttl.as_bytes(),
        ];
        let job = [b"LPUSH".as_slice(), JOB_QUEUE.as_bytes(), id.as_bytes()];
        Execution {
            record: record.iter().map(|a| a.to_vec()).collect(),
            job: job.iter().map(|a| a.to_vec()).collect(),
            id,
        }
    }

    /// The `201` once both commands ran: `{"execution_id", "queued_jobs"}`.
    pub fn created(&self, who: &Identity, queued: i64) -> Answer {
        let logged = crate::log::line(
            "dev_execution_created",
            &[
                ("execution_id", self.id.as_str().into()),
                ("user_id", who.user_id.as_str().into()),
            ],
        );
        let body = json!({ "execution_id": self.id, "queued_jobs": queued });
        Answer::json(201, body.to_string().into_bytes()).logged(logged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Source;
    use serde_json::Value;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn config(vars: &[(&str, &str)]) -> Config {
        Config::load(&Source(|k: &str| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        }))
        .unwrap()
    }

    fn header<'a>(a: &'a Answer, name: &str) -> Option<&'a str> {
        a.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_demo_page_runs_only_its_own_script() {
        let a = demo_page();
        assert_eq!(a.status, 200);
        assert_eq!(header(&a, "content-type"), Some("text/html; charset=utf-8"));
        let csp = header(&a, "content-security-policy").unwrap();
        assert!(csp.starts_with("default-src 'none'") && csp.contains("connect-src 'self'"));
        assert!(String::from_utf8_lossy(&a.body).contains("EventSource"));
    }

    #[test]
    fn a_token_comes_as_json_and_cookie_and_is_logged_without_itself() {
        let cfg = config(&[("jwt_secret", SECRET)]);
        assert_eq!(can_mint(&cfg), Ok(()));
        let now = 1_700_000_000;
        let a = token(&cfg, br#"{"sub":"u-1"}"#, now).unwrap();
        let body: Value = serde_json::from_slice(&a.body).unwrap();
        let token = body["token"].as_str().unwrap();
        assert_eq!(body["sub"], "u-1");
        assert_eq!(body["expires_at"], now + TOKEN_TTL_SECONDS);
        let cookie = header(&a, "set-cookie").unwrap();
        assert!(cookie.starts_with(&format!("access_token={token}; Path=/; HttpOnly")));
        assert_eq!(header(&a, "cache-control"), Some("no-store"));
        assert_eq!(a.logs.len(), 1);
        assert!(a.logs[0].contains("dev_token_minted") && !a.logs[0].contains(token));
        assert_eq!(token_err(&cfg, br#"{"role":"admin"}"#), 400);
    }

    fn token_err(cfg: &Config, body: &[u8]) -> u16 {
        token(cfg, body, 0).unwrap_err().status
    }

    #[test]
    fn no_tokens_without_hs256() {
        let jwks = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k1","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
        let cfg = config(&[("jwt_algorithms", "EdDSA"), ("jwt_jwks", jwks)]);
        assert_eq!(can_mint(&cfg).unwrap_err().status, 500);
    }

    #[test]
    fn an_execution_is_a_one_key_script_then_a_job() {
        let cfg = config(&[("jwt_secret", SECRET)]);
        let who = Identity {
            user_id: "u-1".into(),
            role: crate::http::auth::Role::User,
            expires_at: 0,
        };
        let e = Execution::new(&cfg, &who, 0xab, (1_714_564_800, 123_000_000));
        assert_eq!(e.id, "demo-00000000000000ab");
        let text: Vec<String> = e
            .record
            .iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        assert_eq!(text[0], "EVAL");
        assert_eq!(text[2], "1", "one key: runs on Redis Cluster");
        assert_eq!(
            text[3],
            format!("{}demo-00000000000000ab", cfg.prefixes.exec_key)
        );
        assert_eq!(text[4..], ["u-1", "2024-05-01T12:00:00.123Z", "86400"]);
        assert_eq!(
            e.job,
            [
                b"LPUSH".to_vec(),
                b"demo:jobs".to_vec(),
                e.id.clone().into_bytes()
            ]
        );
        let a = e.created(&who, 3);
        assert_eq!(a.status, 201);
        let body: Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(body, json!({"execution_id": e.id, "queued_jobs": 3}));
        assert!(a.logs[0].contains("dev_execution_created"));
    }
}
