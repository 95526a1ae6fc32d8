//! The gateway's routes and wire-contract assertions: paths, JSON errors,
//! publishing.

use super::*;
use std::time::{SystemTime, UNIX_EPOCH};

/// An error answer of the wire contract: `status`, `content-type:
/// application/json`, a `type` equal to `error_type` and a non-empty string
/// `detail`. Returns the body.
pub fn expect_json_error(resp: &Response, status: u16, error_type: &str) -> serde_json::Value {
    let v = expect_json_error_shape(resp, status);
    assert_eq!(
        v["type"], error_type,
        "expected error type {error_type}; body {v}"
    );
    v
}

/// Like [`expect_json_error`] for answers whose `type` name is not fixed:
/// any non-empty string `type` is accepted.
pub fn expect_json_error_shape(resp: &Response, status: u16) -> serde_json::Value {
    assert_eq!(
        resp.status,
        status,
        "expected status {status}, got {} with headers {:?} and body {:?}",
        resp.status,
        resp.headers,
        resp.text()
    );
    let ct = resp.header("content-type").unwrap_or_default();
    assert!(
        ct.starts_with("application/json"),
        "error content-type must be application/json, got {ct:?} (status {}, body {:?})",
        resp.status,
        resp.text()
    );
    let v = resp.json();
    assert!(
        v["type"].as_str().is_some_and(|t| !t.is_empty()),
        "error body must have a non-empty string type: {v}"
    );
    assert!(
        v["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "error body must have a non-empty string detail: {v}"
    );
    v
}

/// A token that may publish (role `service`).
pub fn service_token() -> String {
    jwt::token("producer-1", "service")
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A successful publish: 202, JSON body with a history id `<ms>-<seq>`
/// close to now. Returns the id.
pub fn expect_accepted(resp: &Response, what: &str) -> String {
    assert_eq!(
        resp.status,
        202,
        "{what}: expected 202, got {} with headers {:?} and body {:?}",
        resp.status,
        resp.headers,
        resp.text()
    );
    let ct = resp.header("content-type").unwrap_or_default();
    assert!(
        ct.starts_with("application/json"),
        "{what}: 202 content-type must be application/json, got {ct:?}"
    );
    let v = resp.json();
    let id = v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: 202 body must have a string `id`: {v}"))
        .to_string();
    let (ms, _seq) = parse_history_id(&id)
        .unwrap_or_else(|| panic!("{what}: id {id:?} is not of the form <ms>-<seq>"));
    let now = now_ms();
    assert!(
        ms.abs_diff(now) < 60_000,
        "{what}: id {id:?} should carry the current time in ms (now {now})"
    );
    id
}

pub fn publish_exec(env: &TestEnv, id: &str, body: &serde_json::Value) -> String {
    let resp = post_json(
        env.gw.addr(),
        &exec_path(id),
        Some(&service_token()),
        &body.to_string(),
    );
    expect_accepted(&resp, &format!("POST {}", exec_path(id)))
}

pub fn publish_notif(env: &TestEnv, user: &str, body: &serde_json::Value) -> String {
    let resp = post_json(
        env.gw.addr(),
        &notif_path(user),
        Some(&service_token()),
        &body.to_string(),
    );
    expect_accepted(&resp, &format!("POST {}", notif_path(user)))
}

pub fn exec_path(id: &str) -> String {
    format!("/api/v1/events/executions/{id}")
}

/// `GET`: the caller's notification stream.
pub const NOTIF_STREAM_PATH: &str = "/api/v1/events/notifications/stream";

/// `POST`: publish a notification to `user_id`.
pub fn notif_path(user_id: &str) -> String {
    format!("/api/v1/events/notifications/{user_id}")
}

/// `GET`: a replay session's status stream (admins).
pub fn replay_status_path(session_id: &str) -> String {
    format!("/api/v1/events/replay/{session_id}/status")
}

pub const HEALTH_PATH: &str = "/api/v1/events/health";

/// Readiness: answers `PING` through Redis (503 when it does not).
pub const READY_PATH: &str = "/api/v1/events/health/ready";

/// The OpenAPI document (`openapi.json`, served as it is).
pub const OPENAPI_PATH: &str = "/api/v1/events/openapi.json";

/// The execution view's phases, in the order the Python service's
/// producers publish them.
pub const EXECUTION_PHASES: [&str; 5] = [
    "execution_requested",
    "execution_queued",
    "pod_created",
    "pod_running",
    "execution_completed",
];

/// `user`'s notification stream, subscribed (what is published next
/// reaches it).
pub fn open_notifications(env: &TestEnv, user: &str) -> SseStream {
    let auth = bearer(&jwt::token(user, "user"));
    let s = open_stream(
        env.gw.addr(),
        NOTIF_STREAM_PATH,
        &[("Authorization", &auth)],
    );
    env.redis
        .wait_numsub(&notif_channel(user), 1, std::time::Duration::from_secs(10))
        .unwrap_or_else(|n| panic!("{user}'s notification stream: NUMSUB {n}"));
    s
}
