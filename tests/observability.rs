//! Operators' view, end to end: the log schema and `log_level` (portable
//! build under `wasmtime serve`, whose stderr carries only the component's
//! lines and one line of wasmtime's), and the `wasi:otel` export of the
//! `otel` build to a real OTLP/HTTP receiver (Spin only: only
//! `spin up --experimental-wasi-otel` links `wasi:otel`).

mod common;

use common::otlp::{attribute, OtlpReceiver};
use common::*;
use serde_json::{json, Value};
use sse_gateway::log::EVENTS;
use std::time::{Duration, Instant};

const EVENT: Duration = Duration::from_secs(10);
const END: Duration = Duration::from_secs(10);
/// Spin's exporter sends metrics at once; spans go through its batch
/// processor (`OTEL_BSP_SCHEDULE_DELAY`).
const EXPORT: Duration = Duration::from_secs(20);

fn event(id: &str, event_type: &str, seq: u64) -> Value {
    json!({
        "event_type": event_type,
        "execution_id": id,
        "event_id": format!("{id}-{seq}"),
        "timestamp": "2025-01-15T10:30:00.000000+00:00",
    })
}

/// Opens the owner's stream of a fresh execution, publishes three events
/// (the last one terminal) and reads until the stream ends; returns the
/// number of events the browser received (the status snapshot included).
fn stream_of_three(env: &TestEnv) -> usize {
    let rec = ExecRecord::new(&new_execution_id(), "user-obs", "running");
    env.redis.put_execution(&rec);
    let auth = bearer(&jwt::token(&rec.user_id, "user"));
    let mut s = open_stream(
        env.gw.addr(),
        &exec_path(&rec.id),
        &[("Authorization", &auth)],
    );
    let status = s.next_json(EVENT);
    assert_eq!(status["event_type"], "status", "{status}");
    let mut received = 1;
    env.redis
        .wait_numsub(&exec_channel(&rec.id), 1, EVENT)
        .expect("the gateway subscribes");
    for (seq, kind) in ["execution_started", "execution_running", "result_stored"]
        .iter()
        .enumerate()
    {
        publish_exec(env, &rec.id, &event(&rec.id, kind, seq as u64));
    }
    for kind in ["execution_started", "execution_running", "result_stored"] {
        assert_eq!(s.next_json(EVENT)["event_type"], kind);
        received += 1;
    }
    s.expect_end(END);
    received
}

/// The component's log lines (wasmtime prefixes each with `stderr [n] :: `
/// and adds only its `Serving HTTP` line); every one is a JSON object whose
/// `event` is in the schema.
fn log_lines(gw: &Gateway) -> Vec<Value> {
    let mut out = Vec::new();
    for line in gw.log().lines().filter(|l| !l.trim().is_empty()) {
        if line.starts_with("Serving HTTP on") {
            continue;
        }
        let line = match line.split_once(" :: ") {
            Some((prefix, rest)) if prefix.starts_with("stderr [") => rest,
            _ => line,
        };
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line:?}"));
        let name = v["event"]
            .as_str()
            .unwrap_or_else(|| panic!("no event: {line}"));
        assert!(
            EVENTS.iter().any(|(n, _)| *n == name),
            "event {name} is not in the documented schema: {line}"
        );
        out.push(v);
    }
    out
}

fn named<'a>(lines: &'a [Value], name: &str) -> Vec<&'a Value> {
    lines.iter().filter(|v| v["event"] == name).collect()
}

/// Waits until a line named `name` is in the log (the component writes it
/// as the stream ends, shortly after the browser saw the end).
fn wait_for_line(gw: &Gateway, name: &str) {
    let deadline = Instant::now() + END;
    while Instant::now() < deadline && !gw.log().contains(&format!(r#""event":"{name}""#)) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn log_lines_parse_and_carry_the_documented_fields() {
    if !runs_on(
        Host::Wasmtime,
        "log schema",
        "Spin's stderr mixes in its own lines",
    ) {
        return;
    }
    let env = TestEnv::start_with(|b| b.env("LOG_LEVEL", "debug"));
    let received = stream_of_three(&env);
    let bad = get(
        env.gw.addr(),
        &exec_path("e1"),
        &[("Authorization", "Bearer x.y.z")],
    );
    assert_eq!(bad.status, 401);
    wait_for_line(&env.gw, "request");
    let lines = log_lines(&env.gw);
    let opened = named(&lines, "stream_opened");
    assert_eq!(opened.len(), 1, "{lines:?}");
    assert_eq!(opened[0]["kind"], "execution");
    for field in ["channel", "queued_events"] {
        assert!(
            opened[0].get(field).is_some(),
            "stream_opened lacks {field}"
        );
    }
    let closed = named(&lines, "stream_closed");
    assert_eq!(closed.len(), 1, "{lines:?}");
    assert_eq!(closed[0]["kind"], "execution");
    assert_eq!(closed[0]["reason"], "terminal event");
    assert_eq!(closed[0]["events"], received as u64);
    assert!(closed[0]["duration_ms"].is_u64());
    assert!(closed[0]["first_event_ms"].is_u64(), "{}", closed[0]);
    assert_eq!(named(&lines, "auth_failed").len(), 1, "{lines:?}");
    let requests = named(&lines, "request");
    assert!(
        requests
            .iter()
            .any(|r| r["route"] == "/api/v1/events/executions/{id}"
                && r["status"] == 401
                && r["method"] == "GET"),
        "{requests:?}"
    );
    let text = env.gw.log();
    assert!(!text.contains("x.y.z"), "a token reached the log");
}

#[test]
fn log_level_warn_drops_per_stream_lines() {
    if !runs_on(
        Host::Wasmtime,
        "log_level",
        "Spin's stderr mixes in its own lines",
    ) {
        return;
    }
    let env = TestEnv::start_with(|b| b.env("LOG_LEVEL", "warn"));
    stream_of_three(&env);
    let bad = get(
        env.gw.addr(),
        &exec_path("e1"),
        &[("Authorization", "Bearer x.y.z")],
    );
    assert_eq!(bad.status, 401);
    wait_for_line(&env.gw, "auth_failed");
    // The stream's close line would have been written before the 401's.
    let lines = log_lines(&env.gw);
    assert_eq!(
        named(&lines, "auth_failed").len(),
        1,
        "warn keeps trouble: {lines:?}"
    );
    for dropped in ["stream_opened", "stream_closed", "request"] {
        assert!(
            named(&lines, dropped).is_empty(),
            "{dropped} at warn: {lines:?}"
        );
    }
}

/// Spin only: the `otel` build under `spin up --experimental-wasi-otel`
/// exports to a real OTLP/HTTP receiver.
#[test]
fn spin_exports_stream_counters_and_a_span() {
    if !runs_on(
        Host::Spin,
        "wasi:otel export",
        "wasmtime serve has no wasi:otel",
    ) {
        return;
    }
    let otlp = OtlpReceiver::start();
    let wasm = otel_component_wasm();
    let env = TestEnv::start_with(|b| {
        b.spin_wasm(wasm)
            .arg("--experimental-wasi-otel")
            .host_env("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp.endpoint())
            .host_env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
            .host_env("OTEL_BSP_SCHEDULE_DELAY", "200")
            .host_env("OTEL_SERVICE_NAME", "sse-gateway-test")
    });
    let received = stream_of_three(&env) as u64;
    let bad = get(
        env.gw.addr(),
        &exec_path("e1"),
        &[("Authorization", "Bearer x.y.z")],
    );
    assert_eq!(bad.status, 401);

    let closed = [("kind", "execution"), ("reason", "terminal event")];
    let all_in = otlp.wait_for(EXPORT, |o| {
        o.counter("sse_gateway.streams.closed", &closed) >= 1
            && o.counter("sse_gateway.http.error_answers", &[("status", "401")]) >= 1
    });
    assert!(all_in, "metrics received: {:?}", otlp.metric_names());
    let kind = [("kind", "execution")];
    assert_eq!(otlp.counter("sse_gateway.streams.opened", &kind), 1);
    assert_eq!(otlp.counter("sse_gateway.streams.closed", &closed), 1);
    assert_eq!(
        otlp.counter("sse_gateway.events.delivered", &kind),
        received
    );
    assert_eq!(otlp.histogram_count("sse_gateway.stream.events", &kind), 1);
    assert_eq!(
        otlp.histogram_count("sse_gateway.stream.duration", &kind),
        1
    );
    assert_eq!(
        otlp.histogram_count("sse_gateway.stream.time_to_first_event", &kind),
        1
    );
    let route = [
        ("route", "/api/v1/events/executions/{id}"),
        ("status", "401"),
    ];
    assert_eq!(otlp.counter("sse_gateway.http.error_answers", &route), 1);
    assert!(otlp.counter("sse_gateway.auth.failures", &[]) >= 1);

    let name = "GET /api/v1/events/executions/{id}";
    assert!(
        otlp.wait_for(EXPORT, |o| o.spans(name).len() >= 2),
        "spans named {name:?}: {:?}",
        otlp.spans(name)
    );
    let spans = otlp.spans(name);
    let stream = spans
        .iter()
        .find(|s| attribute(&s.attributes, "http.response.status_code").as_deref() == Some("200"))
        .unwrap_or_else(|| panic!("no 200 span: {spans:?}"));
    let attr = |k: &str| attribute(&stream.attributes, k);
    assert_eq!(
        attr("http.route").as_deref(),
        Some("/api/v1/events/executions/{id}")
    );
    assert_eq!(attr("sse.stream.kind").as_deref(), Some("execution"));
    assert_eq!(attr("sse.close.reason").as_deref(), Some("terminal event"));
    assert_eq!(attr("sse.events"), Some(received.to_string()));
    for s in &spans {
        for kv in &s.attributes {
            let v = format!("{:?}", kv.value);
            assert!(!v.contains("user-obs") && !v.contains("x.y.z"), "{v}");
        }
    }
}
