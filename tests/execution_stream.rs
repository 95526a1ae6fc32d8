//! End-to-end tests of `GET /api/v1/events/executions/{execution_id}`:
//! the portable component under `wasmtime serve`, a private `redis-server`,
//! real HS256 tokens and a raw HTTP/1.1 + SSE client.
//!
//! Each test starts its own Redis and gateway on free ports, so tests are
//! independent and run in parallel. Set `SSE_GATEWAY_WASM` to test a prebuilt
//! component and `WASMTIME` to pick the wasmtime binary.

mod common;

use common::*;
use serde_json::{json, Value};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How long a published event may take to reach the browser. Generous, for
/// loaded CI machines; a healthy gateway needs milliseconds.
const EVENT: Duration = Duration::from_secs(10);
/// How long the gateway may take to subscribe after the stream opened.
const SUBSCRIBE: Duration = Duration::from_secs(10);
/// How long a finished stream may take to end.
const END: Duration = Duration::from_secs(10);
/// How long the Redis subscription may outlive the stream (issue: ~5 s).
const UNSUBSCRIBE: Duration = Duration::from_secs(5);

const FINISHED: [&str; 5] = ["completed", "failed", "timeout", "cancelled", "error"];

// ---------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------

/// Create a fresh execution record owned by `user`.
fn new_exec(env: &TestEnv, user: &str, status: &str) -> ExecRecord {
    let rec = ExecRecord::new(&new_execution_id(), user, status);
    env.redis.put_execution(&rec);
    rec
}

fn open_bearer(env: &TestEnv, id: &str, token: &str) -> SseStream {
    let auth = bearer(token);
    open_stream(env.gw.addr(), &exec_path(id), &[("Authorization", &auth)])
}

/// The first event must be the status control event built from the record.
fn expect_status_event(s: &mut SseStream, rec: &ExecRecord) -> Value {
    let ev = s.next_event(EVENT);
    assert_default_event_type(&ev);
    let v = ev.json();
    assert_eq!(
        v["event_type"], "status",
        "first event must be the status event: {v}"
    );
    assert_eq!(v["execution_id"], rec.id.as_str(), "status event: {v}");
    assert_eq!(v["status"], rec.status.as_str(), "status event: {v}");
    assert_eq!(v["timestamp"], rec.updated_at.as_str(), "status event: {v}");
    v
}

/// The browser client listens with `onmessage`: events must be default
/// ("message") events, not named ones.
fn assert_default_event_type(ev: &SseEvent) {
    assert!(
        ev.event.is_none() || ev.event.as_deref() == Some("message"),
        "execution events must be unnamed (`onmessage`), got `event: {:?}` for {:?}",
        ev.event,
        ev.data
    );
}

/// Open the owner's stream, check the status event, and wait until the
/// gateway is subscribed (so nothing published afterwards can be missed).
fn open_live(env: &TestEnv, rec: &ExecRecord) -> SseStream {
    let mut s = open_bearer(env, &rec.id, &jwt::token(&rec.user_id, "user"));
    expect_status_event(&mut s, rec);
    wait_subscribed(env, &rec.id, &mut s);
    s
}

fn wait_subscribed(env: &TestEnv, id: &str, s: &mut SseStream) {
    if let Err(n) = env.redis.wait_numsub(&exec_channel(id), 1, SUBSCRIBE) {
        panic!(
            "the gateway did not subscribe to {} within {SUBSCRIBE:?} (PUBSUB NUMSUB = {n}); \
             stream so far: {:?}",
            exec_channel(id),
            s.transcript
        );
    }
}

fn exec_event(id: &str, event_type: &str, seq: u64) -> Value {
    json!({
        "event_type": event_type,
        "execution_id": id,
        "event_id": format!("{id}-{seq}"),
        "timestamp": format!("2025-01-15T10:30:{:02}.000000+00:00", seq % 60),
        "seq": seq,
    })
}

fn publish(env: &TestEnv, id: &str, v: &Value) {
    env.redis.publish(&exec_channel(id), &v.to_string());
}

/// The next event must be exactly `want` (fields passed through unchanged).
fn expect_event(s: &mut SseStream, want: &Value) {
    let ev = s.next_event(EVENT);
    assert_default_event_type(&ev);
    let got = ev.json();
    assert_eq!(
        &got, want,
        "unexpected event; stream so far: {:?}",
        s.transcript
    );
}

fn get_with_token(env: &TestEnv, id: &str, token: &str) -> Response {
    let auth = bearer(token);
    get(
        env.gw.addr(),
        &exec_path(id),
        &[("Authorization", &auth), ("Accept", "text/event-stream")],
    )
}

// ---------------------------------------------------------------------------
// the stream
// ---------------------------------------------------------------------------

#[test]
fn status_event_comes_first_with_sse_headers() {
    let env = TestEnv::start();
    let rec = ExecRecord {
        updated_at: "2025-03-01T08:15:42.987654+00:00".into(),
        ..ExecRecord::new(&new_execution_id(), "alice", "running")
    };
    env.redis.put_execution(&rec);

    let mut s = open_bearer(&env, &rec.id, &jwt::token("alice", "user"));
    let ct = s
        .resp
        .header("content-type")
        .unwrap_or_default()
        .to_string();
    assert!(ct.starts_with("text/event-stream"), "content-type {ct:?}");
    assert_eq!(s.resp.header("cache-control"), Some("no-cache"));
    assert_eq!(s.resp.header("x-accel-buffering"), Some("no"));

    expect_status_event(&mut s, &rec);
    // An in-progress execution's stream stays open after the status event.
    s.assert_open_for(Duration::from_millis(1500));
}

#[test]
fn published_events_arrive_in_order_and_stream_stays_open() {
    let env = TestEnv::start();
    let rec = new_exec(&env, "alice", "queued");
    let mut s = open_live(&env, &rec);

    // The first event must arrive on its own (not held back until more data).
    let first = json!({
        "event_type": "execution_queued",
        "execution_id": rec.id,
        "timestamp": "2025-01-15T10:30:01.000000+00:00",
        "event_id": "e-1",
        "queue_position": 3,
        "metadata": {"service_name": "api", "correlation_id": "c-1"},
    });
    publish(&env, &rec.id, &first);
    expect_event(&mut s, &first);

    let rest = vec![
        json!({"event_type": "pod_created", "execution_id": rec.id, "pod_name": "executor-abc",
               "timestamp": "2025-01-15T10:30:02.000000+00:00", "event_id": "e-2"}),
        json!({"event_type": "pod_running", "execution_id": rec.id, "status": "running",
               "note": "ünïcødé ✓ \"quoted\" back\\slash", "event_id": "e-3"}),
        json!({"event_type": "execution_completed", "execution_id": rec.id, "exit_code": 0,
               "resource_usage": {"execution_time_wall_seconds": 0.25, "peak_memory_kb": 10240},
               "event_id": "e-4"}),
    ];
    for v in &rest {
        publish(&env, &rec.id, v);
    }
    for v in &rest {
        expect_event(&mut s, v);
    }
    // None of these is terminal (execution_completed is not: the result
    // comes later), so the stream must still be open.
    s.assert_open_for(Duration::from_millis(1500));
}

fn terminal_event_ends_stream(terminal: &str) {
    let env = TestEnv::start();
    let rec = new_exec(&env, "alice", "running");
    let mut s = open_live(&env, &rec);

    let before = exec_event(&rec.id, "pod_running", 1);
    publish(&env, &rec.id, &before);
    expect_event(&mut s, &before);

    let mut last = exec_event(&rec.id, terminal, 2);
    if terminal == "result_stored" {
        last["result"] = json!({"stdout": "42\n", "stderr": "", "exit_code": 0});
    } else {
        last["error"] = json!("boom");
    }
    let after = exec_event(&rec.id, "pod_terminated", 3);
    // Published back to back: the gateway may read both in one go, it must
    // still stop after the terminal one.
    publish(&env, &rec.id, &last);
    publish(&env, &rec.id, &after);

    expect_event(&mut s, &last);
    s.expect_end(END);
}

#[test]
fn result_stored_ends_stream() {
    terminal_event_ends_stream("result_stored");
}

#[test]
fn result_failed_ends_stream() {
    terminal_event_ends_stream("result_failed");
}

#[test]
fn execution_failed_ends_stream() {
    terminal_event_ends_stream("execution_failed");
}

#[test]
fn execution_timeout_ends_stream() {
    terminal_event_ends_stream("execution_timeout");
}

#[test]
fn finished_record_with_result_sends_status_then_result_then_ends() {
    let env = TestEnv::start();
    for status in ["completed", "failed"] {
        let result = json!({
            "stdout": "hello\nworld\n",
            "stderr": if status == "failed" { "Traceback...\nValueError: x\n" } else { "" },
            "exit_code": if status == "failed" { 1 } else { 0 },
            "resource_usage": {"execution_time_wall_seconds": 0.125, "cpu_time_jiffies": 12,
                               "peak_memory_kb": 20480},
            "lang": "python", "lang_version": "3.11",
        });
        let rec =
            ExecRecord::new(&new_execution_id(), "alice", status).with_result(&result.to_string());
        env.redis.put_execution(&rec);

        let mut s = open_bearer(&env, &rec.id, &jwt::token("alice", "user"));
        expect_status_event(&mut s, &rec);
        let ev = s.next_event(EVENT);
        assert_default_event_type(&ev);
        let v = ev.json();
        assert_eq!(
            v["event_type"], "result_stored",
            "[{status}] second event: {v}"
        );
        assert_eq!(
            v["execution_id"],
            rec.id.as_str(),
            "[{status}] second event: {v}"
        );
        assert_eq!(
            v["result"], result,
            "[{status}] result must be the stored result as JSON (not a string): {v}"
        );
        s.expect_end(END);
    }
}

#[test]
fn finished_record_without_result_sends_status_then_ends() {
    let env = TestEnv::start();
    for status in FINISHED {
        let rec = new_exec(&env, "alice", status);
        let mut s = open_bearer(&env, &rec.id, &jwt::token("alice", "user"));
        expect_status_event(&mut s, &rec);
        s.expect_end(END);
    }
}

/// The deepest guest path the p2 builds' shadow stack must hold (build.rs):
/// a stored result nested to serde_json's recursion limit is parsed into a
/// value, serialized into the `result_stored` event and dropped, one
/// recursion per level. It trapped with a 32 KiB stack and runs with 64 KiB;
/// the p2 builds link 128 KiB. Past the limit the parse stops there and the
/// result goes out as a JSON string.
#[test]
fn a_stored_result_nested_to_the_json_limit_is_sent_whole() {
    let env = TestEnv::start();
    // 126 arrays in the stored `{"r": ...}`: 127 levels, serde_json's most.
    for depth in [126, 200] {
        let nested = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        let stored = format!("{{\"r\":{nested}}}");
        let rec = ExecRecord::new(&new_execution_id(), "alice", "completed").with_result(&stored);
        env.redis.put_execution(&rec);
        let mut s = open_bearer(&env, &rec.id, &jwt::token("alice", "user"));
        expect_status_event(&mut s, &rec);
        let ev = s.next_event(EVENT);
        assert!(
            ev.data.starts_with("{\"event_type\":\"result_stored\""),
            "[{depth}] second event: {}",
            &ev.data[..ev.data.len().min(200)]
        );
        if depth == 126 {
            // As JSON: one level more than the client's parser takes, so
            // compared as text.
            assert!(
                ev.data.contains(&format!("\"result\":{stored}")),
                "[{depth}] the result must be the stored JSON"
            );
        } else {
            assert_eq!(
                ev.json()["result"],
                Value::from(stored.as_str()),
                "[{depth}] too deep to parse: the result is sent as a string"
            );
        }
        s.expect_end(END);
    }
}

#[test]
fn heartbeat_comment_when_idle() {
    let env = TestEnv::start_with(|b| b.env("HEARTBEAT_SECONDS", "1"));
    let rec = new_exec(&env, "alice", "running");
    let mut s = open_live(&env, &rec);

    let started = Instant::now();
    let mut pings = 0;
    while pings < 2 {
        let left = Duration::from_secs(6).saturating_sub(started.elapsed());
        match s.next(left) {
            Next::Item(SseItem::Comment(c)) if c.trim() == "ping" => pings += 1,
            Next::Item(SseItem::Comment(c)) => panic!("unexpected comment {c:?}"),
            Next::Item(SseItem::Event(e)) => panic!("unexpected event while idle: {e:?}"),
            Next::End(end) => panic!("stream ended while idle ({end:?}): {:?}", s.transcript),
            Next::Timeout => panic!(
                "HEARTBEAT_SECONDS=1 but only {pings} `: ping` comment(s) in 6 s: {:?}",
                s.transcript
            ),
        }
    }
    // Heartbeats do not get in the way of events.
    let ev = exec_event(&rec.id, "pod_running", 1);
    publish(&env, &rec.id, &ev);
    expect_event(&mut s, &ev);
}

// ---------------------------------------------------------------------------
// authentication and authorization
// ---------------------------------------------------------------------------

#[test]
fn no_token_is_401_authentication_required() {
    let env = TestEnv::start();
    let rec = new_exec(&env, "alice", "running");
    for headers in [
        vec![("Accept", "text/event-stream")],
        // Unrelated cookies are not a token.
        vec![
            ("Accept", "text/event-stream"),
            ("Cookie", "theme=dark; lang=en"),
        ],
    ] {
        let resp = get(env.gw.addr(), &exec_path(&rec.id), &headers);
        expect_json_error(&resp, 401, "AuthenticationRequiredError");
    }
}

#[test]
fn bad_signature_is_401_invalid_credentials() {
    let env = TestEnv::start();
    let rec = new_exec(&env, "alice", "running");

    let wrong_secret = jwt::hs256(
        "not-the-gateway-secret-0123456789abcdef",
        &jwt::claims("alice", "user"),
    );
    expect_json_error(
        &get_with_token(&env, &rec.id, &wrong_secret),
        401,
        "InvalidCredentialsError",
    );

    // A valid token whose payload was swapped (privilege escalation attempt).
    let good = jwt::token("alice", "user");
    let forged_payload = jwt::b64(jwt::claims("alice", "admin").to_string().as_bytes());
    let parts: Vec<&str> = good.split('.').collect();
    let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    expect_json_error(
        &get_with_token(&env, &rec.id, &tampered),
        401,
        "InvalidCredentialsError",
    );

    // The same forgery through the cookie.
    let cookie = format!("access_token={wrong_secret}");
    let resp = get(
        env.gw.addr(),
        &exec_path(&rec.id),
        &[("Cookie", &cookie), ("Accept", "text/event-stream")],
    );
    expect_json_error(&resp, 401, "InvalidCredentialsError");
}

#[test]
fn expired_token_is_401_invalid_credentials() {
    let env = TestEnv::start();
    let rec = new_exec(&env, "alice", "running");
    let now = jwt::now();
    let expired = jwt::hs256(
        SECRET,
        &json!({"sub": "alice", "role": "user", "iat": now - 7200, "exp": now - 3600}),
    );
    expect_json_error(
        &get_with_token(&env, &rec.id, &expired),
        401,
        "InvalidCredentialsError",
    );

    // `exp` is required.
    let no_exp = jwt::hs256(SECRET, &json!({"sub": "alice", "role": "user", "iat": now}));
    expect_json_error(
        &get_with_token(&env, &rec.id, &no_exp),
        401,
        "InvalidCredentialsError",
    );
}

#[test]
fn alg_none_and_algorithm_confusion_are_401() {
    let env = TestEnv::start();
    let rec = new_exec(&env, "alice", "running");
    let claims = jwt::claims("alice", "user");

    let unsigned = jwt::compact(&json!({"alg": "none", "typ": "JWT"}), &claims, None);
    assert!(unsigned.ends_with('.'));
    expect_json_error(
        &get_with_token(&env, &rec.id, &unsigned),
        401,
        "InvalidCredentialsError",
    );

    for alg in ["none", "None", "NONE"] {
        // `alg: none` even with a (valid HS256) signature attached.
        let t = jwt::compact(&json!({"alg": alg, "typ": "JWT"}), &claims, Some(SECRET));
        expect_json_error(
            &get_with_token(&env, &rec.id, &t),
            401,
            "InvalidCredentialsError",
        );
    }

    // Algorithm confusion: an RS256 header with an HMAC over the secret.
    let confused = jwt::compact(
        &json!({"alg": "RS256", "typ": "JWT"}),
        &claims,
        Some(SECRET),
    );
    expect_json_error(
        &get_with_token(&env, &rec.id, &confused),
        401,
        "InvalidCredentialsError",
    );
}

#[test]
fn garbage_token_is_401_invalid_credentials() {
    let env = TestEnv::start();
    let rec = new_exec(&env, "alice", "running");
    let not_json = format!(
        "{}.{}.{}",
        jwt::b64(b"{\"alg\":\"HS256\"}"),
        jwt::b64(b"not json"),
        jwt::hs256_sig(SECRET, "x")
    );
    for token in [
        "garbage",
        "a.b.c",
        "...",
        "eyJhbGciOiJIUzI1NiJ9",
        not_json.as_str(),
    ] {
        let resp = get_with_token(&env, &rec.id, token);
        expect_json_error(&resp, 401, "InvalidCredentialsError");
    }
    let resp = get(
        env.gw.addr(),
        &exec_path(&rec.id),
        &[
            ("Cookie", "access_token=garbage"),
            ("Accept", "text/event-stream"),
        ],
    );
    expect_json_error(&resp, 401, "InvalidCredentialsError");
}

#[test]
fn other_users_execution_is_403_access_denied() {
    let env = TestEnv::start();
    let rec = new_exec(&env, "alice", "running");
    for role in ["user", "service"] {
        let resp = get_with_token(&env, &rec.id, &jwt::token("mallory", role));
        let v = expect_json_error(&resp, 403, "ForbiddenError");
        assert_eq!(v["detail"], "Access denied", "[{role}] {v}");
    }
    // The gateway subscribes before it reads the record (so no event slips
    // in between) and must release that subscription on refusal.
    if let Err(n) = env
        .redis
        .wait_numsub(&exec_channel(&rec.id), 0, Duration::from_secs(2))
    {
        panic!("subscription kept after 403: NUMSUB {n}");
    }
}

#[test]
fn admin_may_stream_another_users_execution() {
    let env = TestEnv::start();
    let rec = new_exec(&env, "alice", "running");
    let mut s = open_bearer(&env, &rec.id, &jwt::token("root", "admin"));
    expect_status_event(&mut s, &rec);
    wait_subscribed(&env, &rec.id, &mut s);
    let ev = exec_event(&rec.id, "pod_running", 1);
    publish(&env, &rec.id, &ev);
    expect_event(&mut s, &ev);
}

#[test]
fn unknown_execution_is_404() {
    let env = TestEnv::start();
    let id = new_execution_id();
    let resp = get_with_token(&env, &id, &jwt::token("alice", "user"));
    expect_json_error(&resp, 404, "ExecutionNotFoundError");
    // Admins get the same answer.
    let resp = get_with_token(&env, &id, &jwt::token("root", "admin"));
    expect_json_error(&resp, 404, "ExecutionNotFoundError");
}

#[test]
fn bearer_header_authenticates() {
    let env = TestEnv::start();
    let rec = new_exec(&env, "alice", "running");
    let mut s = open_bearer(&env, &rec.id, &jwt::token("alice", "user"));
    expect_status_event(&mut s, &rec);
}

#[test]
fn access_token_cookie_authenticates() {
    let env = TestEnv::start();
    let rec = new_exec(&env, "alice", "running");
    // What the browser sends: several cookies, the token among them.
    let cookie = format!(
        "theme=dark; access_token={}; csrf_token=abc123",
        jwt::token("alice", "user")
    );
    let mut s = open_stream(env.gw.addr(), &exec_path(&rec.id), &[("Cookie", &cookie)]);
    expect_status_event(&mut s, &rec);
    wait_subscribed(&env, &rec.id, &mut s);
    let ev = exec_event(&rec.id, "pod_running", 1);
    publish(&env, &rec.id, &ev);
    expect_event(&mut s, &ev);
}

// ---------------------------------------------------------------------------
// subscription lifetime
// ---------------------------------------------------------------------------

#[test]
fn subscription_released_after_client_disconnects() {
    let env = TestEnv::start_with(|b| b.env("HEARTBEAT_SECONDS", "1"));
    let rec = new_exec(&env, "alice", "running");
    let s = open_live(&env, &rec);
    s.disconnect();
    if let Err(n) = env
        .redis
        .wait_numsub(&exec_channel(&rec.id), 0, UNSUBSCRIBE)
    {
        panic!(
            "browser went away but the gateway is still subscribed to {} after {UNSUBSCRIBE:?} \
             (PUBSUB NUMSUB = {n}; HEARTBEAT_SECONDS=1)",
            exec_channel(&rec.id)
        );
    }
}

#[test]
fn subscription_released_after_terminal_event() {
    let env = TestEnv::start();
    let rec = new_exec(&env, "alice", "running");
    let mut s = open_live(&env, &rec);
    let last = exec_event(&rec.id, "result_stored", 1);
    publish(&env, &rec.id, &last);
    expect_event(&mut s, &last);
    s.expect_end(END);
    if let Err(n) = env
        .redis
        .wait_numsub(&exec_channel(&rec.id), 0, UNSUBSCRIBE)
    {
        panic!(
            "the stream ended but the gateway is still subscribed to {} after {UNSUBSCRIBE:?} \
             (PUBSUB NUMSUB = {n})",
            exec_channel(&rec.id)
        );
    }
}

// ---------------------------------------------------------------------------
// message handling
// ---------------------------------------------------------------------------

#[test]
fn invalid_messages_are_skipped_and_stream_goes_on() {
    let env = TestEnv::start();
    let rec = new_exec(&env, "alice", "running");
    let mut s = open_live(&env, &rec);
    let ch = exec_channel(&rec.id);
    let no_event_type = json!({"execution_id": rec.id, "status": "running"}).to_string();
    let numeric_event_type = json!({"event_type": 7, "execution_id": rec.id}).to_string();
    let null_event_type = json!({"event_type": null, "execution_id": rec.id}).to_string();
    let nested =
        json!({"data": {"event_type": "result_stored"}, "execution_id": rec.id}).to_string();
    for bad in [
        "not json at all",
        "{\"event_type\": \"result_stored\"",
        "[1, 2, 3]",
        "\"result_stored\"",
        "42",
        "null",
        "",
        no_event_type.as_str(),
        numeric_event_type.as_str(),
        null_event_type.as_str(),
        nested.as_str(),
    ] {
        env.redis.publish(&ch, bad);
    }
    let good = exec_event(&rec.id, "pod_running", 1);
    publish(&env, &rec.id, &good);
    // The skipped messages never reach the browser: the next event is the
    // valid one, and the stream is still open after it.
    expect_event(&mut s, &good);
    s.assert_open_for(Duration::from_millis(1000));

    let last = exec_event(&rec.id, "result_stored", 2);
    publish(&env, &rec.id, &last);
    expect_event(&mut s, &last);
    s.expect_end(END);
}

#[test]
fn multi_line_json_arrives_as_several_data_lines() {
    let env = TestEnv::start();
    let rec = new_exec(&env, "alice", "running");
    let mut s = open_live(&env, &rec);

    let v = json!({
        "event_type": "pod_running",
        "execution_id": rec.id,
        "metadata": {"stdout_preview": "line1\nline2", "tags": ["a", "b"]},
    });
    let pretty = serde_json::to_string_pretty(&v).unwrap();
    let lines = pretty.lines().count();
    assert!(
        lines > 3,
        "test payload should span several lines: {pretty}"
    );
    env.redis.publish(&exec_channel(&rec.id), &pretty);

    let ev = s.next_event(EVENT);
    assert_default_event_type(&ev);
    assert_eq!(
        ev.data, pretty,
        "the rejoined data lines must be the published text; stream: {:?}",
        s.transcript
    );
    assert_eq!(ev.data_lines, lines, "one `data:` line per payload line");
    s.assert_open_for(Duration::from_millis(500));

    // A pretty-printed terminal event is recognised as terminal too.
    let last =
        json!({"event_type": "result_stored", "execution_id": rec.id, "result": {"exit_code": 0}});
    let last_pretty = serde_json::to_string_pretty(&last).unwrap();
    env.redis.publish(&exec_channel(&rec.id), &last_pretty);
    let ev = s.next_event(EVENT);
    assert_eq!(ev.data, last_pretty);
    assert!(ev.data_lines > 1);
    s.expect_end(END);
}

#[test]
fn crlf_json_is_not_emitted_raw() {
    let env = TestEnv::start();
    let rec = new_exec(&env, "alice", "running");
    let mut s = open_live(&env, &rec);

    // JSON whose whitespace uses CRLF and a lone CR: each is a line break in
    // SSE, so emitting them raw would cut the event into broken pieces.
    let payload = format!(
        "{{\r\n  \"event_type\": \"pod_running\",\r\n  \"execution_id\": \"{}\",\r  \"seq\": 1\r\n}}",
        rec.id
    );
    let want: Value = serde_json::from_str(&payload).unwrap();
    env.redis.publish(&exec_channel(&rec.id), &payload);

    let ev = s.next_event(EVENT);
    let got: Value = serde_json::from_str(&ev.data).unwrap_or_else(|e| {
        panic!(
            "event data is not the published JSON ({e}): {:?}; stream: {:?}",
            ev.data, s.transcript
        )
    });
    assert_eq!(got, want);
    assert!(ev.data_lines > 1, "{ev:?}");
    s.assert_open_for(Duration::from_millis(500));
}

// ---------------------------------------------------------------------------
// load
// ---------------------------------------------------------------------------

#[test]
fn fifty_concurrent_streams_each_get_their_own_events_in_order() {
    const STREAMS: usize = 50;
    const TYPES: [&str; 5] = [
        "execution_queued",
        "pod_created",
        "pod_running",
        "execution_completed",
        "result_stored",
    ];
    let env = TestEnv::start();
    let addr = env.gw.addr();
    let recs: Vec<ExecRecord> = (0..STREAMS)
        .map(|i| new_exec(&env, &format!("user-{i}"), "running"))
        .collect();

    let (ready_tx, ready_rx) = mpsc::channel::<usize>();
    let mut handles = Vec::new();
    for (i, rec) in recs.iter().cloned().enumerate() {
        let ready_tx = ready_tx.clone();
        handles.push(thread::spawn(move || {
            let auth = bearer(&jwt::token(&rec.user_id, "user"));
            let mut s = open_stream(addr, &exec_path(&rec.id), &[("Authorization", &auth)]);
            expect_status_event(&mut s, &rec);
            ready_tx.send(i).unwrap();
            let mut events = Vec::new();
            loop {
                match s.next(Duration::from_secs(30)) {
                    Next::Item(SseItem::Event(e)) => events.push(e.json()),
                    Next::Item(SseItem::Comment(_)) => {}
                    Next::End(end) => return (events, Some(end)),
                    Next::Timeout => return (events, None),
                }
            }
        }));
    }
    drop(ready_tx);
    let deadline = Instant::now() + Duration::from_secs(90);
    for _ in 0..STREAMS {
        let left = deadline.saturating_duration_since(Instant::now());
        if ready_rx.recv_timeout(left).is_err() {
            // A thread panicked (its message is printed) or timed out.
            break;
        }
    }
    let mut con = env.redis.conn();
    for rec in &recs {
        let ch = exec_channel(&rec.id);
        let deadline = Instant::now() + SUBSCRIBE;
        while env.redis.numsub_on(&mut con, &ch) != 1 {
            assert!(
                Instant::now() < deadline,
                "gateway never subscribed to {ch} (50 concurrent streams)"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
    // Interleave: every execution's n-th event before anyone's (n+1)-th.
    let expected: Vec<Vec<Value>> = recs
        .iter()
        .map(|rec| {
            TYPES
                .iter()
                .enumerate()
                .map(|(n, t)| {
                    let mut v = exec_event(&rec.id, t, n as u64);
                    v["owner"] = json!(rec.user_id);
                    v
                })
                .collect()
        })
        .collect();
    for n in 0..TYPES.len() {
        for (rec, events) in recs.iter().zip(&expected) {
            env.redis
                .publish_on(&mut con, &exec_channel(&rec.id), &events[n].to_string());
        }
    }

    let mut failures = Vec::new();
    for (i, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok((events, end)) => {
                if events != expected[i] {
                    failures.push(format!(
                        "stream {i} ({}): got {} events {:?}, expected {:?}",
                        recs[i].id,
                        events.len(),
                        events,
                        expected[i]
                    ));
                } else if end != Some(EndKind::Clean) {
                    failures.push(format!("stream {i}: did not end cleanly: {end:?}"));
                }
            }
            Err(_) => failures.push(format!("stream {i}: client thread panicked (see above)")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {STREAMS} streams wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
    for rec in &recs {
        assert!(
            env.redis
                .wait_numsub(&exec_channel(&rec.id), 0, UNSUBSCRIBE)
                .is_ok(),
            "subscription to {} outlived its stream",
            exec_channel(&rec.id)
        );
    }
}

// ---------------------------------------------------------------------------
// configuration and Redis failures
// ---------------------------------------------------------------------------

/// wasmtime only: under Spin `jwt_secret` is a required variable, so `spin
/// up` refuses to start without it (tests/spin_host.rs checks that).
#[test]
fn missing_jwt_secret_is_500_naming_it() {
    if !runs_on(
        Host::Wasmtime,
        "missing_jwt_secret_is_500_naming_it",
        "spin.toml requires jwt_secret",
    ) {
        return;
    }
    let env = TestEnv::start_with(|b| b.without_env("JWT_SECRET"));
    let rec = new_exec(&env, "alice", "running");
    let resp = get_with_token(&env, &rec.id, &jwt::token("alice", "user"));
    assert_eq!(
        resp.status,
        500,
        "expected 500 for a missing JWT_SECRET, got {} {:?}",
        resp.status,
        resp.text()
    );
    let ct = resp.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("application/json"), "content-type {ct:?}");
    let v = resp.json();
    let detail = v["detail"].as_str().unwrap_or_default();
    assert!(
        detail.to_ascii_lowercase().contains("jwt_secret"),
        "the error must name the missing variable: {v}"
    );
}

#[test]
fn unreachable_redis_is_503_quickly() {
    // Nothing listens there.
    let closed = free_port();
    let gw = GatewayBuilder::new(&format!("redis://127.0.0.1:{closed}")).start();
    let id = new_execution_id();
    let started = Instant::now();
    let auth = bearer(&jwt::token("alice", "user"));
    let resp = get(gw.addr(), &exec_path(&id), &[("Authorization", &auth)]);
    let took = started.elapsed();
    expect_json_error(&resp, 503, "ServiceUnavailableError");
    assert!(took < Duration::from_secs(10), "503 took {took:?}");
}

#[test]
fn gateway_recovers_when_redis_comes_back() {
    let mut env = TestEnv::start();
    let token = jwt::token("alice", "user");
    env.redis.stop();
    let rec = ExecRecord::new(&new_execution_id(), "alice", "running");
    let started = Instant::now();
    let resp = get_with_token(&env, &rec.id, &token);
    expect_json_error(&resp, 503, "ServiceUnavailableError");
    assert!(started.elapsed() < Duration::from_secs(10));

    env.redis.restart();
    env.redis.put_execution(&rec);
    let mut s = open_bearer(&env, &rec.id, &token);
    expect_status_event(&mut s, &rec);
    wait_subscribed(&env, &rec.id, &mut s);
    let ev = exec_event(&rec.id, "pod_running", 1);
    publish(&env, &rec.id, &ev);
    expect_event(&mut s, &ev);
}
