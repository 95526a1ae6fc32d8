//! Drop-in for the Python service's real browser client and tokens (issue 13).
//!
//! The client is `tests/clients/fetch_client.mjs`: the Python service's
//! fetch-based SSE client re-created (reconnects only on a network error, a
//! non-2xx answer or a failed read; at most 3 attempts; `Last-Event-ID` once
//! an `id:` was seen; a clean end means done), run by Node's own fetch. The
//! raw HTTP/1.1 checks read the chunked body byte by byte.

mod common;

use common::fetch_client::FetchClient;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

const EVENT: Duration = Duration::from_secs(10);
const END: Duration = Duration::from_secs(30);

const RESULT: &str = r#"{"execution_id":"x","status":"completed","exit_code":0,"stdout":"hello\n","stderr":"","lang":"python","lang_version":"3.11","resource_usage":{"execution_time_wall_seconds":0.12,"cpu_time_jiffies":3,"clk_tck_hertz":100,"peak_memory_kb":9000}}"#;

fn cookie(token: &str) -> String {
    format!("access_token={token}")
}

/// A token as the Python service issues them: `sub` (the username) and
/// `exp`, nothing else.
fn python_token(sub: &str, ttl_seconds: i64) -> String {
    jwt::hs256(
        SECRET,
        &json!({"sub": sub, "exp": jwt::now() + ttl_seconds}),
    )
}

fn event(id: &str, t: &str) -> Value {
    json!({"event_type": t, "execution_id": id, "timestamp": "2026-01-01T00:00:00Z", "event_id": format!("{t}-1"), "status": null, "result": null})
}

/// A fetch client on an execution stream, cookie-authenticated like the
/// browser, past its `status` event.
fn open_client(env: &TestEnv, id: &str, token: &str, opts: &[&str]) -> FetchClient {
    let c = cookie(token);
    let mut client = FetchClient::spawn(env.gw.addr(), &exec_path(id), &[("cookie", &c)], opts);
    client.wait_event_type(EVENT, "status");
    client
}

/// Every event the client saw with its history id, status events left out.
fn published_events(client: &FetchClient) -> Vec<(String, String)> {
    client
        .of_kind("event")
        .into_iter()
        .filter(|v| v["data"]["event_type"] != "status")
        .map(|v| {
            (
                v["data"]["event_type"].as_str().unwrap_or("").to_string(),
                v["id"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn expect_types(client: &FetchClient, want: &[&str]) {
    let got: Vec<String> = published_events(client)
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    assert_eq!(
        got,
        want,
        "events in order, each once:\n{}",
        client.transcript()
    );
}

// ---------------------------------------------------------------------------
// Error texts
// ---------------------------------------------------------------------------

fn exact_error(resp: &Response, status: u16, body: &str) {
    assert_eq!(
        (resp.status, resp.text()),
        (status, body.to_string()),
        "headers {:?}",
        resp.headers
    );
    assert_eq!(resp.header("content-type"), Some("application/json"));
}

#[test]
fn errors_carry_the_python_services_texts() {
    let env = TestEnv::start();
    let id = new_execution_id();
    exact_error(
        &get(env.gw.addr(), &exec_path(&id), &[]),
        401,
        r#"{"detail":"Not authenticated","type":"AuthenticationRequiredError"}"#,
    );
    let expired = jwt::hs256(SECRET, &json!({"sub": "alice", "exp": jwt::now() - 3600}));
    let forged = jwt::hs256(
        "another-secret-0123456789abcdef",
        &json!({"sub": "alice", "exp": jwt::now() + 60}),
    );
    for bad in [expired, forged, "garbage".to_string()] {
        let c = cookie(&bad);
        exact_error(
            &get(env.gw.addr(), &exec_path(&id), &[("cookie", &c)]),
            401,
            r#"{"detail":"Invalid credentials","type":"InvalidCredentialsError"}"#,
        );
    }
    let c = cookie(&python_token("alice", 60));
    exact_error(
        &get(env.gw.addr(), &exec_path(&id), &[("cookie", &c)]),
        404,
        &format!(r#"{{"detail":"Execution '{id}' not found","type":"ExecutionNotFoundError"}}"#),
    );
}

// ---------------------------------------------------------------------------
// The fetch client through whole executions
// ---------------------------------------------------------------------------

#[test]
fn whole_execution_ends_cleanly_and_the_client_is_done() {
    let env = TestEnv::start_with(|b| b.env("RETRY_MS", "200"));
    let id = new_execution_id();
    env.redis
        .put_execution(&ExecRecord::new(&id, "alice", "queued").with_result(RESULT));
    let mut client = open_client(&env, &id, &python_token("alice", 600), &[]);
    let status = client.event_data()[0].clone();
    let keys: Vec<&str> = status
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "event_type",
            "execution_id",
            "timestamp",
            "event_id",
            "status",
            "result"
        ],
        "{status}"
    );
    assert_eq!(
        status,
        json!({"event_type":"status","execution_id":id,"timestamp":"2025-01-15T10:30:00.123456+00:00","event_id":null,"status":"queued","result":null})
    );
    for t in EXECUTION_PHASES {
        publish_exec(&env, &id, &event(&id, t));
    }
    let mut stored = event(&id, "result_stored");
    stored["result"] = serde_json::from_str(RESULT).unwrap();
    publish_exec(&env, &id, &stored);
    let end = client.wait_end(END);
    // A clean end after the terminal event: one attempt, no error, done.
    assert_eq!(end["reason"], "clean", "{}", client.transcript());
    assert_eq!(end["attempts"], 1, "{}", client.transcript());
    assert!(
        client.of_kind("error").is_empty(),
        "{}",
        client.transcript()
    );
    let mut want = EXECUTION_PHASES.to_vec();
    want.push("result_stored");
    expect_types(&client, &want);
    let last = client.event_data().last().copied().cloned().unwrap();
    assert_eq!(last["result"]["stdout"], "hello\n");
}

#[test]
fn the_execution_view_shows_the_result_and_no_error() {
    let env = TestEnv::start();
    let id = new_execution_id();
    env.redis
        .put_execution(&ExecRecord::new(&id, "alice", "running").with_result(RESULT));
    let mut client = open_client(
        &env,
        &id,
        &python_token("alice", 600),
        &["--until-terminal"],
    );
    let mut stored = event(&id, "result_stored");
    stored["result"] = serde_json::from_str(RESULT).unwrap();
    publish_exec(&env, &id, &stored);
    let end = client.wait_end(END);
    assert_eq!(
        (end["reason"].as_str(), &end["ui_error"]),
        (Some("terminal"), &Value::Null),
        "{}",
        client.transcript()
    );
}

#[test]
fn result_stored_with_null_result_gets_the_records_result() {
    let env = TestEnv::start();
    let id = new_execution_id();
    env.redis
        .put_execution(&ExecRecord::new(&id, "alice", "running"));
    let mut client = open_client(
        &env,
        &id,
        &python_token("alice", 600),
        &["--until-terminal"],
    );
    publish_exec(&env, &id, &event(&id, "execution_completed"));
    client.wait_event_type(EVENT, "execution_completed");
    // The result is stored after the stream opened: the snapshot taken at
    // open has none, so it must be read when result_stored arrives.
    env.redis
        .put_execution(&ExecRecord::new(&id, "alice", "completed").with_result(RESULT));
    // As the Python service's producers send it: result null (plain PUBLISH).
    env.redis
        .publish(&exec_channel(&id), &event(&id, "result_stored").to_string());
    let stored = client.wait_event_type(EVENT, "result_stored");
    assert_eq!(
        stored["data"]["result"],
        serde_json::from_str::<Value>(RESULT).unwrap(),
        "{}",
        client.transcript()
    );
    // Every other field as the producer sent it.
    assert_eq!(stored["data"]["event_id"], "result_stored-1");
    let end = client.wait_end(END);
    assert_eq!(end["ui_error"], Value::Null);
}

#[test]
fn a_stream_cut_by_its_lifetime_resumes_with_every_event_once() {
    let env = TestEnv::start_with(|b| b.env("MAX_STREAM_SECONDS", "10").env("RETRY_MS", "200"));
    let id = new_execution_id();
    env.redis
        .put_execution(&ExecRecord::new(&id, "alice", "queued"));
    let mut client = open_client(&env, &id, &python_token("alice", 600), &[]);
    for t in &EXECUTION_PHASES[..3] {
        publish_exec(&env, &id, &event(&id, t));
    }
    client.wait_event_type(EVENT, EXECUTION_PHASES[2]);
    // The lifetime ends the first response without its last chunk: a failed
    // read, so the client reconnects with Last-Event-ID.
    let err = client.wait_for(Duration::from_secs(20), "failed read", |v| {
        v["kind"] == "error"
    });
    assert_eq!(err["giving_up"], false);
    let reopened = client.wait_for(EVENT, "reconnect", |v| v["kind"] == "open");
    assert_eq!(reopened["status"], 200, "{}", client.transcript());
    let first_ids: Vec<String> = published_events(&client)
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    assert_eq!(
        reopened["last_event_id"].as_str(),
        first_ids.last().map(String::as_str)
    );
    client.wait_event_type(EVENT, "status");
    for t in &EXECUTION_PHASES[3..] {
        publish_exec(&env, &id, &event(&id, t));
    }
    publish_exec(&env, &id, &event(&id, "result_stored"));
    let end = client.wait_end(END);
    assert_eq!(
        (end["reason"].as_str(), end["attempts"].as_u64()),
        (Some("clean"), Some(2)),
        "{}",
        client.transcript()
    );
    let mut want = EXECUTION_PHASES.to_vec();
    want.push("result_stored");
    expect_types(&client, &want);
}

#[test]
fn a_redis_restart_mid_run_loses_nothing() {
    let redis = RedisServer::start_persistent();
    let gw = GatewayBuilder::new(&redis.url())
        .env("RETRY_MS", "1000")
        .env("HEARTBEAT_SECONDS", "1")
        .start();
    let mut env = TestEnv { gw, redis };
    let id = new_execution_id();
    env.redis
        .put_execution(&ExecRecord::new(&id, "alice", "queued"));
    let mut client = open_client(&env, &id, &python_token("alice", 600), &[]);
    for t in &EXECUTION_PHASES[..2] {
        publish_exec(&env, &id, &event(&id, t));
    }
    client.wait_event_type(EVENT, EXECUTION_PHASES[1]);
    env.redis.stop();
    env.redis.restart();
    client.wait_for(EVENT, "failed read", |v| v["kind"] == "error");
    let reopened = client.wait_for(Duration::from_secs(15), "reconnect", |v| {
        v["kind"] == "open" && v["status"] == 200
    });
    assert!(reopened["last_event_id"].is_string(), "{reopened}");
    client.wait_event_type(EVENT, "status");
    for t in &EXECUTION_PHASES[2..] {
        publish_exec(&env, &id, &event(&id, t));
    }
    publish_exec(&env, &id, &event(&id, "result_stored"));
    let end = client.wait_end(END);
    assert_eq!(end["reason"], "clean", "{}", client.transcript());
    let mut want = EXECUTION_PHASES.to_vec();
    want.push("result_stored");
    expect_types(&client, &want);
}

#[test]
fn token_expiry_aborts_and_the_expired_token_is_refused_on_reconnect() {
    let env = TestEnv::start_with(|b| b.env("JWT_LEEWAY_SECONDS", "0").env("RETRY_MS", "100"));
    let id = new_execution_id();
    env.redis
        .put_execution(&ExecRecord::new(&id, "alice", "running"));
    let mut client = open_client(&env, &id, &python_token("alice", 3), &[]);
    let expired = client.wait_for(EVENT, "token_expired", |v| {
        v["kind"] == "event" && v["event"] == "token_expired"
    });
    assert_eq!(expired["attempt"], 1);
    let end = client.wait_end(END);
    // A failed read (not a clean end), then the same expired cookie is
    // refused twice and the client gives up after its 3 attempts.
    let errors = client.of_kind("error");
    assert_eq!(errors.len(), 3, "{}", client.transcript());
    assert!(
        errors[0]["error"].as_str().unwrap().contains("terminated"),
        "{}",
        client.transcript()
    );
    for refused in client.of_kind("refused") {
        assert_eq!(refused["status"], 401);
        assert_eq!(
            refused["body"],
            r#"{"detail":"Invalid credentials","type":"InvalidCredentialsError"}"#
        );
    }
    assert_eq!(
        (end["reason"].as_str(), end["attempts"].as_u64()),
        (Some("gave_up"), Some(3))
    );
}

// ---------------------------------------------------------------------------
// Raw HTTP/1.1: a terminal event finishes the body, anything else aborts it
// ---------------------------------------------------------------------------

fn raw_stream(env: &TestEnv, id: &str, token: &str) -> HttpResponse {
    let c = cookie(token);
    let resp = send_get(env.gw.addr(), &exec_path(id), &[("cookie", &c)], EVENT).expect("GET");
    assert_eq!(resp.status, 200);
    assert!(
        resp.is_chunked(),
        "SSE over HTTP/1.1 is chunked: {:?}",
        resp.headers
    );
    resp
}

#[test]
fn a_terminal_event_ends_the_chunked_body_with_its_last_chunk() {
    let env = TestEnv::start();
    let id = new_execution_id();
    env.redis
        .put_execution(&ExecRecord::new(&id, "alice", "running"));
    let mut resp = raw_stream(&env, &id, &python_token("alice", 600));
    env.redis
        .wait_numsub(&exec_channel(&id), 1, EVENT)
        .expect("subscribed");
    publish_exec(&env, &id, &event(&id, "result_stored"));
    let (body, end) = resp.read_to_end(END);
    assert_eq!(
        end,
        Some(EndKind::Clean),
        "body {:?}",
        String::from_utf8_lossy(&body)
    );
    assert!(String::from_utf8_lossy(&body).contains("result_stored"));
}

#[test]
fn a_lifetime_end_has_no_last_chunk() {
    let env = TestEnv::start_with(|b| b.env("MAX_STREAM_SECONDS", "10").env("RETRY_MS", "1234"));
    let id = new_execution_id();
    env.redis
        .put_execution(&ExecRecord::new(&id, "alice", "running"));
    let mut resp = raw_stream(&env, &id, &python_token("alice", 600));
    let (body, end) = resp.read_to_end(Duration::from_secs(25));
    let text = String::from_utf8_lossy(&body);
    let Some(EndKind::Abrupt(how)) = end else {
        panic!("a lifetime end must abort the body, got {end:?}; body {text:?}");
    };
    eprintln!("lifetime end on the wire: {how}");
    // What could be flushed was, before the abort.
    assert!(
        text.ends_with("retry: 1234\n\n: max stream duration\n\n"),
        "{text:?}"
    );
}

#[test]
fn a_token_expiry_end_has_no_last_chunk() {
    let env = TestEnv::start_with(|b| b.env("JWT_LEEWAY_SECONDS", "0"));
    let id = new_execution_id();
    env.redis
        .put_execution(&ExecRecord::new(&id, "alice", "running"));
    let mut resp = raw_stream(&env, &id, &python_token("alice", 3));
    let (body, end) = resp.read_to_end(END);
    let text = String::from_utf8_lossy(&body);
    assert!(
        matches!(end, Some(EndKind::Abrupt(_))),
        "{end:?}; body {text:?}"
    );
    assert!(text.contains("event: token_expired\n"), "{text:?}");
}

// ---------------------------------------------------------------------------
// Identity from the user store
// ---------------------------------------------------------------------------

fn identity_env() -> TestEnv {
    TestEnv::start_with(|b| {
        b.env("IDENTITY_KEY_PREFIX", "user:")
            .env("HEARTBEAT_SECONDS", "1")
            .env("RETRY_MS", "100")
    })
}

fn put_user(env: &TestEnv, name: &str, fields: &[(&str, &str)]) {
    let mut cmd = redis::cmd("HSET");
    cmd.arg(format!("user:{name}"));
    for (k, v) in fields {
        cmd.arg(*k).arg(*v);
    }
    cmd.query::<i64>(&mut env.redis.conn()).expect("HSET user");
}

const INVALID: &str = r#"{"detail":"Invalid credentials","type":"InvalidCredentialsError"}"#;

#[test]
fn identity_active_user_streams_their_execution_by_the_stores_user_id() {
    let env = identity_env();
    put_user(
        &env,
        "alice",
        &[("user_id", "u-1"), ("role", "user"), ("is_active", "true")],
    );
    let id = new_execution_id();
    env.redis
        .put_execution(&ExecRecord::new(&id, "u-1", "running"));
    let c = cookie(&python_token("alice", 600));
    let mut s = open_stream(env.gw.addr(), &exec_path(&id), &[("cookie", &c)]);
    assert_eq!(s.next_json(EVENT)["status"], "running");
}

#[test]
fn identity_inactive_and_unknown_users_are_refused() {
    let env = identity_env();
    put_user(
        &env,
        "bob",
        &[("user_id", "u-2"), ("role", "user"), ("is_active", "false")],
    );
    let id = new_execution_id();
    env.redis
        .put_execution(&ExecRecord::new(&id, "u-2", "running"));
    for name in ["bob", "nobody"] {
        let c = cookie(&python_token(name, 600));
        exact_error(
            &get(env.gw.addr(), &exec_path(&id), &[("cookie", &c)]),
            401,
            INVALID,
        );
    }
    // The user record is read before anything else: a refused user was
    // never subscribed, not even for the length of the 401.
    assert_eq!(
        env.redis.numsub(&exec_channel(&id)),
        0,
        "nothing subscribed for a refused user"
    );
    let calls = redis::cmd("INFO")
        .arg("commandstats")
        .query::<String>(&mut env.redis.conn())
        .unwrap();
    assert!(!calls.contains("cmdstat_subscribe:"), "{calls}");
}

#[test]
fn identity_admin_comes_from_the_stores_role_not_the_token() {
    let env = identity_env();
    put_user(&env, "root", &[("user_id", "u-0"), ("role", "admin")]);
    put_user(&env, "carol", &[("user_id", "u-3"), ("role", "user")]);
    let id = new_execution_id();
    env.redis
        .put_execution(&ExecRecord::new(&id, "u-9", "running"));
    let root = cookie(&python_token("root", 600));
    let mut s = open_stream(env.gw.addr(), &exec_path(&id), &[("cookie", &root)]);
    assert_eq!(s.next_json(EVENT)["event_type"], "status");
    // A token claiming admin does not make a store user an admin.
    let claims_admin = jwt::hs256(
        SECRET,
        &json!({"sub": "carol", "role": "admin", "exp": jwt::now() + 600}),
    );
    let c = cookie(&claims_admin);
    let resp = get(env.gw.addr(), &exec_path(&id), &[("cookie", &c)]);
    exact_error(
        &resp,
        403,
        r#"{"detail":"Access denied","type":"ForbiddenError"}"#,
    );
}

#[test]
fn identity_a_user_deactivated_while_streaming_is_cut_within_two_heartbeats() {
    let env = identity_env();
    put_user(&env, "dave", &[("user_id", "u-4"), ("is_active", "1")]);
    let id = new_execution_id();
    env.redis
        .put_execution(&ExecRecord::new(&id, "u-4", "running"));
    let token = python_token("dave", 600);
    let mut client = open_client(&env, &id, &token, &["--until-terminal"]);
    let cut_at = std::time::Instant::now();
    put_user(&env, "dave", &[("is_active", "0")]);
    // Told why, then a clean end: reconnecting would only be refused.
    let revoked = client.wait_for(Duration::from_secs(4), "access_revoked", |v| {
        v["kind"] == "event" && v["event"] == "access_revoked"
    });
    assert!(
        cut_at.elapsed() < Duration::from_millis(2_500),
        "cut after {:?} (heartbeat 1 s)",
        cut_at.elapsed()
    );
    assert_eq!(revoked["data"]["detail"], "Invalid credentials");
    let end = client.wait_end(END);
    assert_eq!(
        (end["reason"].as_str(), end["attempts"].as_u64()),
        (Some("clean"), Some(1)),
        "{}",
        client.transcript()
    );
    // What the Python service's execution view shows for a clean end
    // without a terminal event; it does not reconnect.
    assert_eq!(end["ui_error"], "Connection to server lost.");
    assert!(
        client.of_kind("error").is_empty(),
        "{}",
        client.transcript()
    );
    // A reconnect by any client (EventSource does one) is refused.
    let c = cookie(&token);
    exact_error(
        &get(env.gw.addr(), &exec_path(&id), &[("cookie", &c)]),
        401,
        INVALID,
    );
}

#[test]
fn identity_notifications_use_the_stores_user_id() {
    let env = identity_env();
    put_user(&env, "erin", &[("user_id", "u-5"), ("role", "user")]);
    let c = cookie(&python_token("erin", 600));
    let mut s = open_stream(env.gw.addr(), NOTIF_STREAM_PATH, &[("cookie", &c)]);
    env.redis
        .wait_numsub(&format!("sse:notif:{}", "u-5"), 1, EVENT)
        .expect("subscribed to the store's user id");
    env.redis.publish(
        "sse:notif:u-5",
        r#"{"event_type":"notification","subject":"hi"}"#,
    );
    assert_eq!(s.next_json(EVENT)["subject"], "hi");
    assert_eq!(env.redis.numsub("sse:notif:erin"), 0);
}

// ---------------------------------------------------------------------------
// The replay status route
// ---------------------------------------------------------------------------

const ADMIN_REPLAY: &str = "/api/v1/admin/events/replay";

fn put_replay(env: &TestEnv, session: &str, status: &str) {
    redis::cmd("HSET")
        .arg(format!("replay:{session}"))
        .arg("session_id")
        .arg(session)
        .arg("status")
        .arg(status)
        .arg("total_events")
        .arg("10")
        .arg("replayed_events")
        .arg("4")
        .arg("replay_id")
        .arg("r-1")
        .arg("created_at")
        .arg("2026-01-01T00:00:00Z")
        .query::<i64>(&mut env.redis.conn())
        .expect("HSET replay");
}

fn replay_payload(session: &str, status: &str) -> Value {
    json!({"session_id": session, "status": status, "total_events": 10, "replayed_events": 4, "failed_events": 0, "skipped_events": 0, "replay_id": "r-1", "created_at": "2026-01-01T00:00:00Z", "started_at": null, "completed_at": null, "errors": []})
}

#[test]
fn replay_status_starts_with_the_sessions_current_status_and_ends_on_a_terminal_one() {
    let env = TestEnv::start();
    let session = new_execution_id();
    put_replay(&env, &session, "running");
    let admin = jwt::token("root", "admin");
    let c = cookie(&admin);
    let mut resp = send_get(
        env.gw.addr(),
        &format!("{ADMIN_REPLAY}/{session}/status"),
        &[("cookie", &c)],
        EVENT,
    )
    .unwrap();
    assert_eq!(resp.status, 200);
    env.redis
        .wait_numsub(&replay_channel(&session), 1, EVENT)
        .expect("subscribed");
    let mut done = replay_payload(&session, "completed");
    done["replayed_events"] = json!(10);
    env.redis
        .publish(&replay_channel(&session), &done.to_string());
    let (body, end) = resp.read_to_end(END);
    let mut parser = SseParser::new();
    parser.feed(&body);
    let mut events = Vec::new();
    while let Some(item) = parser.pop() {
        if let SseItem::Event(ev) = item {
            events.push(ev.json());
        }
    }
    assert_eq!(events, vec![replay_payload(&session, "running"), done]);
    assert_eq!(
        end,
        Some(EndKind::Clean),
        "ends cleanly after the terminal status"
    );
}

#[test]
fn replay_status_of_a_finished_session_sends_it_and_ends() {
    let env = TestEnv::start();
    let session = new_execution_id();
    put_replay(&env, &session, "cancelled");
    let c = cookie(&jwt::token("root", "admin"));
    let mut client = FetchClient::spawn(
        env.gw.addr(),
        &format!("{ADMIN_REPLAY}/{session}/status"),
        &[("cookie", &c)],
        &[],
    );
    let end = client.wait_end(END);
    assert_eq!(
        client.event_data(),
        vec![&replay_payload(&session, "cancelled")]
    );
    assert_eq!(
        (end["reason"].as_str(), end["attempts"].as_u64()),
        (Some("clean"), Some(1))
    );
}

#[test]
fn replay_status_unknown_session_is_404_without_a_type() {
    let env = TestEnv::start();
    let c = cookie(&jwt::token("root", "admin"));
    for path in [
        format!("{ADMIN_REPLAY}/nope/status"),
        replay_status_path("nope"),
    ] {
        exact_error(
            &get(env.gw.addr(), &path, &[("cookie", &c)]),
            404,
            r#"{"detail":"Replay session not found"}"#,
        );
    }
}

#[test]
fn replay_status_refuses_non_admins_with_admin_access_required() {
    let env = TestEnv::start();
    let session = new_execution_id();
    put_replay(&env, &session, "running");
    let c = cookie(&python_token("alice", 600));
    exact_error(
        &get(
            env.gw.addr(),
            &format!("{ADMIN_REPLAY}/{session}/status"),
            &[("cookie", &c)],
        ),
        403,
        r#"{"detail":"Admin access required for user 'alice'","type":"AdminAccessRequiredError"}"#,
    );
    exact_error(
        &get(
            env.gw.addr(),
            &format!("{ADMIN_REPLAY}/{session}/status"),
            &[],
        ),
        401,
        r#"{"detail":"Not authenticated","type":"AuthenticationRequiredError"}"#,
    );
}
