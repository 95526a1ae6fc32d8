//! The WASIp3 build's model under `wasmtime serve`: one component instance
//! serves many streams over one shared Redis subscription connection, which
//! subscribes a channel on its first stream and releases it after its last,
//! and a connection that breaks ends every stream on it reconnectably.

mod common;

use common::p3::{redis_clients, subscription_connections, use_p3};
use common::{bearer, get, jwt, open_stream, Host, Next, SseItem, SseStream, TestEnv};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const STREAM: &str = common::NOTIF_STREAM_PATH;
const WAIT: Duration = Duration::from_secs(10);

fn p3_env() -> TestEnv {
    use_p3();
    // wasmtime whatever SSE_GATEWAY_HOST says: the instance numbers this
    // file reads are in wasmtime's log prefixes.
    TestEnv::start_with(|b| {
        b.on(Host::Wasmtime)
            .env("HEARTBEAT_SECONDS", "1")
            .env("DEV_MODE", "true")
            .arg("--max-instance-reuse-count")
            .arg("1000")
    })
}

fn open(env: &TestEnv, user: &str) -> SseStream {
    let auth = bearer(&jwt::token(user, "user"));
    open_stream(env.gw.addr(), STREAM, &[("Authorization", auth.as_str())])
}

/// Waits until Redis shows `want` (channels per subscription connection).
fn wait_connections(env: &TestEnv, want: &[u64]) {
    let deadline = Instant::now() + WAIT;
    let mut seen = subscription_connections(&env.redis);
    while seen != want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        seen = subscription_connections(&env.redis);
    }
    assert_eq!(seen, want, "channels per subscription connection");
}

#[test]
fn health_answers_from_the_p3_build() {
    let env = p3_env();
    let resp = get(env.gw.addr(), "/api/v1/events/health", &[]);
    assert_eq!(resp.status, 200);
    let body = resp.json();
    assert_eq!(body["status"], "ok");
    // Only the p3 build shows its instance's counters (with dev_mode).
    assert_eq!(body["instance"]["redis_subscription_connections"], 0);
}

/// The wasmtime instances that opened `streams` streams (its log prefixes a
/// guest's stderr with `stderr [instance] ::`), once all are logged.
fn stream_instances(env: &TestEnv, streams: usize) -> BTreeSet<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let log = env.gw.log();
        let opened: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(r#""event":"stream_opened""#))
            .collect();
        if opened.len() >= streams || Instant::now() >= deadline {
            assert_eq!(opened.len(), streams, "stream_opened log lines");
            return opened
                .iter()
                .filter_map(|l| Some(l.split_once("stderr [")?.1.split_once(']')?.0.to_string()))
                .collect();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_numsub(env: &TestEnv, channel: &str, ok: impl Fn(i64) -> bool) -> i64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let n = env.redis.numsub(channel);
        if ok(n) || Instant::now() >= deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn many_streams_share_one_instance_and_one_subscription() {
    let env = p3_env();
    let mut streams: Vec<SseStream> = (0..8).map(|_| open(&env, "alice")).collect();
    streams.push(open(&env, "bob"));
    // Which instance serves a request is the host's choice (it starts
    // another while one is busy); within each, one connection carries every
    // channel its streams need.
    let instances = stream_instances(&env, streams.len());
    assert!(
        instances.len() < streams.len(),
        "nine streams in {} instances: none shared one",
        instances.len()
    );
    let connections = subscription_connections(&env.redis);
    assert_eq!(
        connections.len(),
        instances.len(),
        "one subscription connection per instance"
    );
    assert!(env.redis.numsub("sse:notif:alice") as usize <= instances.len());
    assert_eq!(env.redis.numsub("sse:notif:bob"), 1);
    assert_eq!(
        connections.iter().sum::<u64>() as i64,
        env.redis.numsub("sse:notif:alice") + 1
    );
    let health = get(env.gw.addr(), "/api/v1/events/health", &[]).json();
    assert!(
        health["instance"]["redis_subscription_connections"].as_u64() <= Some(1),
        "{health}"
    );

    assert_eq!(
        env.redis.publish("sse:notif:alice", r#"{"n":1}"#) as usize,
        connections
            .len()
            .min(env.redis.numsub("sse:notif:alice") as usize)
    );
    for s in &mut streams[..8] {
        let ev = s.next_event(WAIT);
        assert_eq!(ev.event.as_deref(), Some("notification"));
        assert_eq!(ev.data, r#"{"n":1}"#);
    }
    assert_eq!(env.redis.publish("sse:notif:bob", r#"{"n":2}"#), 1);
    assert_eq!(streams[8].next_json(WAIT)["n"], 2, "bob gets only his");
    streams[0].assert_open_for(Duration::from_millis(300)); // alice: no event of bob's

    // Bob leaves: his channel is released, alice's stays.
    streams.pop().unwrap().disconnect();
    assert_eq!(wait_numsub(&env, "sse:notif:bob", |n| n == 0), 0);
    assert!(env.redis.numsub("sse:notif:alice") >= 1);
    // Everyone leaves: nothing stays subscribed.
    for s in streams {
        s.disconnect();
    }
    wait_connections(&env, &[]);
}

/// What a p3 instance costs Redis whatever its streams: one subscription
/// connection (every channel) and one command connection (slots, records,
/// history). 40 streams of 8 users, each taking a slot, counted with
/// `CLIENT LIST`.
#[test]
fn the_streams_of_an_instance_share_two_redis_connections() {
    let env = p3_env();
    let streams: Vec<SseStream> = (0..40)
        .map(|i| open(&env, &format!("u{}", i % 8)))
        .collect();
    let instances = stream_instances(&env, streams.len()).len();
    let deadline = Instant::now() + WAIT;
    let mut clients = redis_clients(&env.redis);
    while clients != 2 * instances && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        clients = redis_clients(&env.redis);
    }
    assert_eq!(
        clients,
        2 * instances,
        "{} streams in {instances} instances: Redis connections",
        streams.len()
    );
    // Each subscription connection holds each of its users' channels once.
    let subscribed: i64 = (0..8)
        .map(|u| env.redis.numsub(&format!("sse:notif:u{u}")))
        .sum();
    assert_eq!(
        subscription_connections(&env.redis).iter().sum::<u64>() as i64,
        subscribed
    );
    assert!(
        subscribed <= 8 * instances as i64,
        "{subscribed} subscriptions"
    );
    println!(
        "[e2e] 40 streams, {instances} instances, {clients} Redis connections (streams / {})",
        40 / clients.max(1)
    );
    for s in streams {
        s.disconnect();
    }
    wait_connections(&env, &[]);
}

#[test]
fn a_broken_subscription_connection_ends_its_streams_reconnectably() {
    let mut env = p3_env();
    let mut a = open(&env, "carol");
    let mut b = open(&env, "dave");
    assert_eq!(wait_numsub(&env, "sse:notif:dave", |n| n == 1), 1);
    env.redis.stop();
    for s in [&mut a, &mut b] {
        let deadline = Instant::now() + WAIT;
        let mut comments = Vec::new();
        let end = loop {
            match s.next(deadline.saturating_duration_since(Instant::now())) {
                Next::Item(SseItem::Comment(c)) => comments.push(c),
                Next::Item(_) => continue,
                Next::End(end) => break end,
                Next::Timeout => panic!("the stream outlived its Redis connection"),
            }
        };
        // As in p2: the close is told (`retry:` and a comment), then the
        // body ends.
        assert!(
            comments.iter().any(|c| c.contains("redis connection lost")),
            "{comments:?} then {end:?}"
        );
    }
    // A fresh connection serves the next stream.
    env.redis.restart();
    let mut c = open(&env, "carol");
    wait_connections(&env, &[1]);
    env.redis.publish("sse:notif:carol", r#"{"back":true}"#);
    assert_eq!(c.next_json(WAIT)["back"], true);
}

/// The p3 component links on both hosts: it exports `wasi:http/handler@0.3.0`
/// and imports only WASI (0.3, plus the 0.2 interfaces Rust's `std` uses on
/// `wasm32-wasip2`), nothing Spin-only.
#[test]
fn the_p3_component_is_a_wasi_http_0_3_service() {
    let bytes = std::fs::read(common::p3::p3_component()).expect("component built");
    let (mut depth, mut imports, mut exports) = (0usize, Vec::new(), Vec::new());
    for payload in wasmparser::Parser::new(0).parse_all(&bytes) {
        match payload.expect("valid component") {
            wasmparser::Payload::Version { .. } => depth += 1,
            wasmparser::Payload::End(_) => depth -= 1,
            wasmparser::Payload::ComponentImportSection(s) if depth == 1 => imports.extend(
                s.into_iter()
                    .map(|i| i.expect("import").name.name.to_string()),
            ),
            wasmparser::Payload::ComponentExportSection(s) if depth == 1 => exports.extend(
                s.into_iter()
                    .map(|e| e.expect("export").name.name.to_string()),
            ),
            _ => {}
        }
    }
    assert_eq!(exports, ["wasi:http/handler@0.3.0"]);
    for want in [
        "wasi:http/types@0.3.0",
        "wasi:sockets/types@0.3.0",
        "wasi:clocks/monotonic-clock@0.3.0",
    ] {
        assert!(
            imports.iter().any(|i| i == want),
            "{want} not imported: {imports:?}"
        );
    }
    let foreign: Vec<&String> = imports
        .iter()
        .filter(|i| !(i.starts_with("wasi:") && (i.contains("@0.3.") || i.contains("@0.2."))))
        .collect();
    assert!(
        foreign.is_empty(),
        "imports outside WASI 0.2/0.3: {foreign:?}"
    );
}
