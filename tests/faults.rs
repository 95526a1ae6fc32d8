//! End-to-end tests of the gateway when things go wrong: Redis unreachable,
//! killed mid-stream and restarted, answering garbage or nothing at all; a
//! browser that stops reading while events flood; streams that reach
//! `max_stream_seconds`; invalid configuration values. In every case the
//! browser gets a prompt, well-formed answer (503/500 JSON, or a stream end
//! with a `retry:` hint) and resumes with `Last-Event-ID` losing nothing.
//!
//! The portable component runs under `wasmtime serve` against a private
//! `redis-server` (or a fake one written here); each test starts its own on
//! free ports and uses fresh ids, so tests are independent and run in
//! parallel.

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// How long a published event may take to reach the browser.
const EVENT: Duration = Duration::from_secs(10);
/// How long the gateway may take to subscribe after the stream opened.
const SUBSCRIBE: Duration = Duration::from_secs(10);
/// The default `RETRY_MS`.
const RETRY_MS: u64 = 3000;

// ---------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------

fn new_running_exec(redis: &RedisServer, user: &str) -> ExecRecord {
    let rec = ExecRecord::new(&new_execution_id(), user, "running");
    redis.put_execution(&rec);
    rec
}

fn exec_ev(rec: &ExecRecord, event_type: &str, seq: u64) -> Value {
    json!({"event_type": event_type, "execution_id": rec.id, "seq": seq})
}

fn note(n: u64) -> Value {
    json!({"title": format!("note {n}"), "n": n})
}

/// The owner's execution stream, optionally resuming after `last_event_id`;
/// checks the status event and waits until the gateway is subscribed.
fn open_exec(env: &TestEnv, rec: &ExecRecord, last_event_id: Option<&str>) -> SseStream {
    let s = open_exec_unsubscribed(env, rec, last_event_id);
    wait_subscribed(&env.redis, &exec_channel(&rec.id), 1, &s);
    s
}

/// Like [`open_exec`], without waiting for the subscription (a stream whose
/// history ends with a terminal event may already be gone).
fn open_exec_unsubscribed(
    env: &TestEnv,
    rec: &ExecRecord,
    last_event_id: Option<&str>,
) -> SseStream {
    let auth = bearer(&jwt::token(&rec.user_id, "user"));
    let mut headers = vec![("Authorization", auth.as_str())];
    if let Some(id) = last_event_id {
        headers.push(("Last-Event-ID", id));
    }
    let mut s = open_stream(env.gw.addr(), &exec_path(&rec.id), &headers);
    let v = s.next_json(EVENT);
    assert_eq!(v["event_type"], "status", "first event: {v}");
    assert_eq!(v["execution_id"], rec.id.as_str(), "{v}");
    s
}

fn open_notifications(env: &TestEnv, user: &str, last_event_id: Option<&str>) -> SseStream {
    let auth = bearer(&jwt::token(user, "user"));
    let mut headers = vec![("Authorization", auth.as_str())];
    if let Some(id) = last_event_id {
        headers.push(("Last-Event-ID", id));
    }
    let s = open_stream(env.gw.addr(), NOTIF_STREAM_PATH, &headers);
    wait_subscribed(&env.redis, &notif_channel(user), 1, &s);
    s
}

fn wait_subscribed(redis: &RedisServer, channel: &str, want: i64, s: &SseStream) {
    if let Err(n) = redis.wait_numsub(channel, want, SUBSCRIBE) {
        panic!(
            "expected {want} subscriber(s) on {channel} within {SUBSCRIBE:?}, PUBSUB NUMSUB = \
             {n}; stream so far: {:?}",
            s.transcript
        );
    }
}

/// The next event is `want` with history id `want_id`; returns nothing.
fn expect_event(s: &mut SseStream, name: Option<&str>, want: &Value, want_id: &str) {
    let ev = s.next_event(EVENT);
    assert_eq!(
        ev.event.as_deref(),
        name,
        "event name of {want}; stream so far: {:?}",
        s.transcript
    );
    assert_eq!(
        &ev.json(),
        want,
        "unexpected event (wanted id {want_id}); stream so far: {:?}",
        s.transcript
    );
    assert_eq!(
        ev.id.as_deref(),
        Some(want_id),
        "wrong `id:` for {want}; stream so far: {:?}",
        s.transcript
    );
}

/// No further event arrives for `dur` (comments allowed).
fn expect_quiet(s: &mut SseStream, dur: Duration) {
    s.assert_open_for(dur);
}

/// Read until the body ends (cleanly or not) within `within`, refusing any
/// event on the way. Returns how it ended and the comments seen.
fn read_until_end(s: &mut SseStream, within: Duration, what: &str) -> (EndKind, Vec<String>) {
    let deadline = Instant::now() + within;
    let mut comments = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match s.next(left) {
            Next::Item(SseItem::Comment(c)) => comments.push(c),
            Next::Item(SseItem::Event(e)) => {
                panic!(
                    "{what}: unexpected event before the end: {e:?}; {:?}",
                    s.transcript
                )
            }
            Next::End(end) => return (end, comments),
            Next::Timeout => panic!(
                "{what}: the stream did not end within {within:?}; {:?}",
                s.transcript
            ),
        }
    }
}

/// A 503 ServiceUnavailableError with a `retry-after` in whole seconds.
fn assert_unavailable(resp: &Response, took: Duration, what: &str) {
    let v = expect_json_error(resp, 503, "ServiceUnavailableError");
    let ra = resp.header("retry-after").unwrap_or_default();
    assert!(
        ra.parse::<u64>().is_ok_and(|s| s >= 1),
        "{what}: 503 needs `retry-after` in whole seconds, got {ra:?}; headers {:?}",
        resp.headers
    );
    assert!(
        took < Duration::from_secs(5),
        "{what}: the 503 took {took:?} ({v})"
    );
}

/// The requests browsers, producers and probes make, sent at once (each
/// timed): two streams, a publish and health, all 503 within 5 s.
fn assert_all_unavailable(addr: SocketAddr, what: &str) {
    let token = jwt::token("alice", "user");
    let auth = bearer(&token);
    let cookie = format!("access_token={token}");
    let exec = exec_path(&new_execution_id());
    let body = json!({"event_type": "pod_running"}).to_string();
    let service = service_token();
    let timed = |f: &dyn Fn() -> Response| {
        let started = Instant::now();
        let resp = f();
        (resp, started.elapsed())
    };
    let (stream, notif, publish, health) = thread::scope(|scope| {
        let stream = scope.spawn(|| {
            timed(&|| {
                get(
                    addr,
                    &exec,
                    &[("Authorization", &auth), ("Accept", "text/event-stream")],
                )
            })
        });
        let notif = scope.spawn(|| timed(&|| get(addr, NOTIF_STREAM_PATH, &[("Cookie", &cookie)])));
        let publish = scope.spawn(|| timed(&|| post_json(addr, &exec, Some(&service), &body)));
        let health = scope.spawn(|| timed(&|| get(addr, common::READY_PATH, &[])));
        (
            stream.join().expect("stream request"),
            notif.join().expect("notification request"),
            publish.join().expect("publish request"),
            health.join().expect("health request"),
        )
    });
    assert_unavailable(&stream.0, stream.1, &format!("{what}: execution stream"));
    assert_unavailable(&notif.0, notif.1, &format!("{what}: notification stream"));
    assert_unavailable(&publish.0, publish.1, &format!("{what}: publish"));
    let v = expect_json_error(&health.0, 503, "ServiceUnavailableError");
    assert!(
        health.1 < Duration::from_secs(5),
        "{what}: health took {:?} ({v})",
        health.1
    );
}

// ---------------------------------------------------------------------------
// Redis unreachable, dying, answering garbage
// ---------------------------------------------------------------------------

#[test]
fn unreachable_redis_is_503_with_retry_after() {
    let closed = free_port();
    let gw = GatewayBuilder::new(&format!("redis://127.0.0.1:{closed}")).start();
    assert_all_unavailable(gw.addr(), "closed port");
}

/// A Redis that hangs with its connections open (SIGSTOP: no error, no
/// close, nothing answered) is found by the liveness check (a stream's
/// `PING` on p2, the subscription connection's on p3): the stream ends
/// with `retry:` so the browser comes back, and once Redis answers again
/// the next stream is served.
#[test]
fn a_silent_redis_ends_streams_reconnectably() {
    let env = TestEnv::start_with(|b| b.env("HEARTBEAT_SECONDS", "1"));
    let user = "frank";
    let exec = new_running_exec(&env.redis, user);
    let mut s = open_exec(&env, &exec, None);
    let e1 = publish_exec(&env, &exec.id, &exec_ev(&exec, "pod_running", 1));
    expect_event(&mut s, None, &exec_ev(&exec, "pod_running", 1), &e1);
    env.redis.freeze();
    let frozen = Instant::now();
    let (end, comments) = read_until_end(&mut s, Duration::from_secs(10), "silent Redis");
    let took = frozen.elapsed();
    env.redis.thaw();
    assert!(
        s.parser().retry_lines >= 2,
        "a `retry:` line before the end (ended {end:?} after {took:?}, comments {comments:?})"
    );
    eprintln!("silent Redis: ended {end:?} {took:?} after the freeze; comments {comments:?}");
    let mut again = open_exec(&env, &exec, Some(&e1));
    let e2 = publish_exec(&env, &exec.id, &exec_ev(&exec, "pod_succeeded", 2));
    expect_event(&mut again, None, &exec_ev(&exec, "pod_succeeded", 2), &e2);
}

#[test]
fn redis_dying_mid_stream_ends_streams_with_retry_and_resume_loses_nothing() {
    let redis = RedisServer::start_persistent();
    let gw = GatewayBuilder::new(&redis.url()).start();
    let mut env = TestEnv { gw, redis };
    let user = "alice";
    let a = new_running_exec(&env.redis, user);
    let b = new_running_exec(&env.redis, user);

    let mut sa = open_exec(&env, &a, None);
    let mut sb = open_exec(&env, &b, None);
    let mut sn = open_notifications(&env, user, None);
    let a1 = publish_exec(&env, &a.id, &exec_ev(&a, "pod_created", 1));
    let a2 = publish_exec(&env, &a.id, &exec_ev(&a, "pod_running", 2));
    let b1 = publish_exec(&env, &b.id, &exec_ev(&b, "pod_running", 1));
    let n1 = publish_notif(&env, user, &note(1));
    expect_event(&mut sa, None, &exec_ev(&a, "pod_created", 1), &a1);
    expect_event(&mut sa, None, &exec_ev(&a, "pod_running", 2), &a2);
    expect_event(&mut sb, None, &exec_ev(&b, "pod_running", 1), &b1);
    expect_event(&mut sn, Some("notification"), &note(1), &n1);
    let retries_before: Vec<usize> = [&sa, &sb, &sn]
        .iter()
        .map(|s| s.parser().retry_lines)
        .collect();
    assert_eq!(
        retries_before,
        vec![1, 1, 1],
        "each stream starts with one retry:"
    );

    // Redis crashes.
    env.redis.stop();
    let killed = Instant::now();
    for (s, what) in [
        (&mut sa, "execution stream a"),
        (&mut sb, "execution stream b"),
        (&mut sn, "notification stream"),
    ] {
        let (end, comments) = read_until_end(s, Duration::from_secs(5), what);
        let took = killed.elapsed();
        assert!(
            s.parser().retry_lines >= 2,
            "{what}: expected a `retry:` line before the end (ended {end:?} after {took:?}, \
             comments {comments:?}); {:?}",
            s.transcript
        );
        assert_eq!(s.parser().last_retry, Some(RETRY_MS), "{what}");
        eprintln!("{what}: ended {end:?} {took:?} after the kill; comments {comments:?}");
    }

    // Redis comes back with its data; producers carry on while the
    // browsers are away.
    env.redis.restart();
    let mut con = env.redis.conn();
    let owner: Option<String> = redis::cmd("HGET")
        .arg(format!("exec:{}", a.id))
        .arg("user_id")
        .query(&mut con)
        .unwrap();
    assert_eq!(
        owner.as_deref(),
        Some(user),
        "the harness restart kept the data"
    );
    let a3 = publish_exec(&env, &a.id, &exec_ev(&a, "execution_completed", 3));
    let n2 = publish_notif(&env, user, &note(2));

    // Each browser resumes after the last id it saw: exactly what it
    // missed, in order, then live events.
    let mut ra = open_exec(&env, &a, Some(&a2));
    expect_event(&mut ra, None, &exec_ev(&a, "execution_completed", 3), &a3);
    let mut rn = open_notifications(&env, user, Some(&n1));
    expect_event(&mut rn, Some("notification"), &note(2), &n2);
    let mut rb = open_exec(&env, &b, Some(&b1));
    let a4 = publish_exec(&env, &a.id, &exec_ev(&a, "result_stored", 4));
    expect_event(&mut ra, None, &exec_ev(&a, "result_stored", 4), &a4);
    ra.expect_end(Duration::from_secs(5));
    let n3 = publish_notif(&env, user, &note(3));
    expect_event(&mut rn, Some("notification"), &note(3), &n3);
    let b2 = publish_exec(&env, &b.id, &exec_ev(&b, "pod_running", 2));
    expect_event(&mut rb, None, &exec_ev(&b, "pod_running", 2), &b2);
    expect_quiet(&mut rb, Duration::from_millis(300));
    expect_quiet(&mut rn, Duration::from_millis(300));

    // And the history itself survived: a fresh browser gets all of it.
    let mut fresh = open_exec_unsubscribed(&env, &a, None);
    for (seq, (t, id)) in [
        ("pod_created", &a1),
        ("pod_running", &a2),
        ("execution_completed", &a3),
        ("result_stored", &a4),
    ]
    .iter()
    .enumerate()
    {
        expect_event(&mut fresh, None, &exec_ev(&a, t, seq as u64 + 1), id);
    }
    fresh.expect_end(Duration::from_secs(5));
}

/// What a fake "Redis" does with every connection.
#[derive(Clone, Copy, Debug)]
enum Fake {
    /// Answers with bytes that are not RESP.
    Garbage,
    /// Announces a ~100 GB bulk string and streams bytes of it.
    HugeBulk,
    /// Answers every command with an error (a Redis that wants a password).
    NoAuth,
    /// Accepts and never answers.
    Silent,
    /// Greets like Redis 7 (`HELLO` → a map), then answers every command
    /// with an integer: a reply of the wrong type for `PING`.
    Integers,
}

/// A fake Redis on loopback, bounded in time and bytes; stops on Drop.
struct FakeRedis {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl FakeRedis {
    fn start(kind: Fake) -> FakeRedis {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        thread::spawn(move || {
            let until = Instant::now() + Duration::from_secs(60);
            while !stop2.load(Ordering::Relaxed) && Instant::now() < until {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let stop3 = stop2.clone();
                        thread::spawn(move || serve_fake(kind, conn, &stop3));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        FakeRedis { port, stop }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for FakeRedis {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve_fake(kind: Fake, mut conn: TcpStream, stop: &AtomicBool) {
    let until = Instant::now() + Duration::from_secs(15);
    let _ = conn.set_read_timeout(Some(Duration::from_millis(100)));
    let _ = conn.set_write_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 4096];
    let mut sent = 0usize;
    let mut greeted = false;
    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
        let got = match conn.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(_) => 0,
        };
        let result = match kind {
            Fake::Silent => Ok(()),
            Fake::Garbage if got > 0 => conn.write_all(b"?garbage\r\n\x00\xff not resp\r\n"),
            Fake::NoAuth if got > 0 => conn.write_all(b"-NOAUTH Authentication required.\r\n"),
            Fake::Integers if got > 0 => {
                let commands = buf[..got].iter().filter(|&&b| b == b'*').count();
                let mut reply = Vec::new();
                for _ in 0..commands {
                    reply.extend_from_slice(if greeted { b":7\r\n" } else { b"%0\r\n" });
                    greeted = true;
                }
                conn.write_all(&reply)
            }
            Fake::HugeBulk if sent < 64 << 20 => {
                if !greeted {
                    greeted = true;
                    sent += 14;
                    conn.write_all(b"$99999999999\r\n")
                } else {
                    sent += 64 << 10;
                    conn.write_all(&[b'x'; 64 << 10])
                }
            }
            _ => Ok(()),
        };
        if result.is_err() {
            return;
        }
    }
}

#[test]
fn redis_answering_garbage_or_nothing_is_503_and_the_gateway_survives() {
    let fakes = [Fake::Garbage, Fake::HugeBulk, Fake::NoAuth, Fake::Silent];
    thread::scope(|scope| {
        let handles: Vec<_> = fakes
            .iter()
            .map(|&kind| {
                scope.spawn(move || {
                    let fake = FakeRedis::start(kind);
                    let gw = GatewayBuilder::new(&fake.url()).start();
                    // Twice: the first answer did not break the gateway.
                    assert_all_unavailable(gw.addr(), &format!("{kind:?} (first)"));
                    assert_all_unavailable(gw.addr(), &format!("{kind:?} (again)"));
                })
            })
            .collect();
        let mut failures = Vec::new();
        for (kind, h) in fakes.iter().zip(handles) {
            if let Err(e) = h.join() {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("{kind:?}: {msg}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    });
}

#[test]
fn a_wrong_typed_reply_to_ping_is_503_and_logged() {
    let fake = FakeRedis::start(Fake::Integers);
    let gw = GatewayBuilder::new(&fake.url()).start();
    let resp = get(gw.addr(), READY_PATH, &[]);
    assert_eq!(resp.status, 503, "{}", gw.log());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !gw.log().contains("redis_unavailable") {
        assert!(
            Instant::now() < deadline,
            "no log line says why: {}",
            gw.log()
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert!(gw.log().contains("Int(7)"), "{}", gw.log());
}

// ---------------------------------------------------------------------------
// a browser that stops reading
// ---------------------------------------------------------------------------

#[test]
fn stalled_reader_is_dropped_with_bounded_memory_while_others_stream_on() {
    const FLOOD_EVENTS: usize = 20_000;
    const EVENT_BYTES: usize = 2_048;
    const MAX_GROWTH: u64 = 32 << 20;
    let env = TestEnv::start_with(|b| {
        b.env("WRITE_STALL_SECONDS", "2")
            .env("HEARTBEAT_SECONDS", "1")
    });
    // Only the gateway may decide to drop the stalled stream.
    env.redis.unlimited_pubsub_buffers();
    let pid = env.gw.pid().expect("gateway pid");
    let user = "erin";
    let slow = new_running_exec(&env.redis, user);
    let fast = new_running_exec(&env.redis, user);
    let mut reader = open_exec(&env, &fast, None);

    // The stalled browser: reads the response head, then never again.
    let conn = host_stats::connect_small_window(env.gw.addr(), 4096);
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\nAuthorization: {}\r\n\r\n",
        exec_path(&slow.id),
        env.gw.addr(),
        bearer(&jwt::token(user, "user"))
    );
    let stalled = send_raw_on(conn, req.as_bytes(), Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("stalled stream: {e}"));
    assert_eq!(stalled.status, 200, "stalled stream: {stalled:?}");
    let slow_ch = exec_channel(&slow.id);
    if let Err(n) = env.redis.wait_numsub(&slow_ch, 1, SUBSCRIBE) {
        panic!("the stalled stream never subscribed (NUMSUB = {n})");
    }
    let rss_before = host_stats::rss_kib(pid) * 1024;

    // Flood the stalled stream's channel from another thread.
    let done = Arc::new(AtomicBool::new(false));
    let flood = {
        let url = env.redis.url();
        let channel = slow_ch.clone();
        let id = slow.id.clone();
        let done = done.clone();
        thread::spawn(move || {
            let client = redis::Client::open(format!("{url}/")).unwrap();
            let mut con = client
                .get_connection_with_timeout(Duration::from_secs(5))
                .unwrap();
            con.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let pad = "x".repeat(EVENT_BYTES - 80);
            let started = Instant::now();
            let mut delivered = 0i64;
            for batch in 0..FLOOD_EVENTS / 200 {
                if started.elapsed() > Duration::from_secs(20) {
                    break;
                }
                let mut pipe = redis::pipe();
                for i in 0..200 {
                    let seq = batch * 200 + i;
                    let ev = json!({"event_type": "pod_running", "execution_id": id,
                                    "seq": seq, "pad": pad});
                    pipe.cmd("PUBLISH").arg(&channel).arg(ev.to_string());
                }
                let receivers: Vec<i64> = pipe.query(&mut con).unwrap();
                delivered += receivers.iter().sum::<i64>();
                // Paced over 4 s or more: past the 2 s write stall, so the
                // stalled stream must be dropped while the flood goes on
                // (a burst alone waits in its backlog, up to 32 MiB).
                thread::sleep(Duration::from_millis(40));
            }
            done.store(true, Ordering::Relaxed);
            (delivered, started.elapsed())
        })
    };

    // Meanwhile the other stream's events arrive promptly; memory is sampled.
    let mut rss_max = rss_before;
    let mut worst = Duration::ZERO;
    let mut probes = 0u64;
    let flood_started = Instant::now();
    while probes < 5 || (!done.load(Ordering::Relaxed) && probes < 100) {
        probes += 1;
        let ev = exec_ev(&fast, "pod_running", probes);
        let sent = Instant::now();
        env.redis.publish(&exec_channel(&fast.id), &ev.to_string());
        let got = reader.next_json(Duration::from_secs(5));
        let latency = sent.elapsed();
        assert_eq!(got, ev, "the reading browser's events during the flood");
        worst = worst.max(latency);
        rss_max = rss_max.max(host_stats::rss_kib(pid) * 1024);
        thread::sleep(Duration::from_millis(100));
    }
    let (delivered, flood_took) = flood.join().expect("flood thread");
    eprintln!(
        "flood: {FLOOD_EVENTS} x {EVENT_BYTES} B in {flood_took:?}, {delivered} delivered to a \
         subscriber; {probes} probes, worst latency {worst:?}"
    );
    assert!(
        worst < Duration::from_secs(2),
        "a reading browser waited {worst:?} for an event while another stalled"
    );

    // The stalled stream is closed and its subscription released.
    if let Err(n) = env.redis.wait_numsub(
        &slow_ch,
        0,
        Duration::from_secs(15).saturating_sub(flood_started.elapsed()),
    ) {
        panic!(
            "the stalled stream still holds its subscription {:?} after the flood started \
             (NUMSUB = {n}; {delivered} flood events went to a subscriber)",
            flood_started.elapsed()
        );
    }
    assert!(
        (delivered as usize) < FLOOD_EVENTS,
        "the stalled stream took all {delivered} flood events before it was dropped"
    );
    rss_max = rss_max.max(host_stats::rss_kib(pid) * 1024);
    let growth = rss_max.saturating_sub(rss_before);
    eprintln!(
        "wasmtime RSS: before {} KiB, max {} KiB, growth {} KiB",
        rss_before >> 10,
        rss_max >> 10,
        growth >> 10
    );
    assert!(
        growth < MAX_GROWTH,
        "gateway memory grew by {} MiB while a stalled stream was flooded with {} MiB",
        growth >> 20,
        (FLOOD_EVENTS * EVENT_BYTES) >> 20
    );

    // The reading browser is still fine afterwards.
    let ev = exec_ev(&fast, "result_stored", 999);
    env.redis.publish(&exec_channel(&fast.id), &ev.to_string());
    assert_eq!(reader.next_json(EVENT), ev);
    reader.expect_end(Duration::from_secs(5));
    drop(stalled);
}

// ---------------------------------------------------------------------------
// maximum stream lifetime
// ---------------------------------------------------------------------------

#[test]
fn max_stream_lifetime_ends_with_retry_and_resume_has_no_gap() {
    let env = TestEnv::start_with(|b| b.env("MAX_STREAM_SECONDS", "10"));
    let rec = new_running_exec(&env.redis, "frank");
    let opened = Instant::now();
    let mut s = open_exec(&env, &rec, None);
    let e1 = publish_exec(&env, &rec.id, &exec_ev(&rec, "pod_running", 1));
    expect_event(&mut s, None, &exec_ev(&rec, "pod_running", 1), &e1);

    let comments = s.expect_aborted(Duration::from_secs(15));
    let lived = opened.elapsed();
    assert!(
        lived >= Duration::from_secs(9) && lived <= Duration::from_secs(14),
        "with MAX_STREAM_SECONDS=10 the stream lived {lived:?}"
    );
    assert_eq!(
        s.parser().retry_lines,
        2,
        "a `retry:` line at the start and one before the end; {:?}",
        s.transcript
    );
    assert_eq!(s.parser().last_retry, Some(RETRY_MS));
    assert!(
        comments.iter().any(|c| c.contains("max stream duration")),
        "a comment should say why the stream ended: {comments:?}"
    );

    // Events published while the browser reconnects are not lost.
    let e2 = publish_exec(&env, &rec.id, &exec_ev(&rec, "pod_running", 2));
    let e3 = publish_exec(&env, &rec.id, &exec_ev(&rec, "execution_completed", 3));
    let mut r = open_exec(&env, &rec, s.parser().last_event_id.as_deref());
    expect_event(&mut r, None, &exec_ev(&rec, "pod_running", 2), &e2);
    expect_event(&mut r, None, &exec_ev(&rec, "execution_completed", 3), &e3);
    let e4 = publish_exec(&env, &rec.id, &exec_ev(&rec, "result_stored", 4));
    expect_event(&mut r, None, &exec_ev(&rec, "result_stored", 4), &e4);
    r.expect_end(Duration::from_secs(5));
}

// ---------------------------------------------------------------------------
// configuration
// ---------------------------------------------------------------------------

/// Environment for one gateway, and the variable its 500 must name.
type ConfigCase = (Vec<(&'static str, &'static str)>, Option<&'static str>);

#[test]
fn invalid_config_values_are_500_naming_the_variable() {
    let closed = format!("redis://127.0.0.1:{}", free_port());
    // (env, variable the 500 must name; None: valid, so Redis is tried: 503)
    let cases: Vec<ConfigCase> = vec![
        (vec![("HEARTBEAT_SECONDS", "0")], Some("heartbeat_seconds")),
        (
            vec![("MAX_STREAM_SECONDS", "5")],
            Some("max_stream_seconds"),
        ),
        (vec![("REDIS_URL", "redis:/x")], Some("redis_url")),
        (vec![("DNS_SERVER", "kube-dns")], Some("dns_server")),
        (vec![("REDIS_TLS_CA_PEM", "x")], Some("redis_tls_ca_pem")),
        (vec![("REDIS_URL", "http://x")], Some("redis_url")),
        (
            vec![("HEARTBEAT_SECONDS", "1"), ("MAX_STREAM_SECONDS", "10")],
            None,
        ),
    ];
    // Under Spin, redis_url is assembled by spin.toml from redis_host,
    // redis_port, ...: a non-redis:// URL cannot be configured there.
    let cases: Vec<ConfigCase> = if host() == Host::Spin {
        println!("[e2e] invalid_config_values: the REDIS_URL cases are wasmtime only (spin.toml builds redis_url)");
        cases
            .into_iter()
            .filter(|(env, _)| !env.iter().any(|(k, _)| *k == "REDIS_URL"))
            .collect()
    } else {
        cases
    };
    thread::scope(|scope| {
        let handles: Vec<_> = cases
            .iter()
            .map(|(env, var)| {
                let closed = closed.clone();
                scope.spawn(move || {
                    let mut b = GatewayBuilder::new(&closed);
                    for (k, v) in env {
                        b = b.env(k, v);
                    }
                    let gw = b.start();
                    let auth = bearer(&jwt::token("alice", "user"));
                    let resp = get(
                        gw.addr(),
                        &exec_path(&new_execution_id()),
                        &[("Authorization", &auth), ("Accept", "text/event-stream")],
                    );
                    match var {
                        Some(var) => {
                            let v = expect_json_error_shape(&resp, 500);
                            let detail = v["detail"].as_str().unwrap_or_default();
                            assert!(
                                detail.to_ascii_lowercase().contains(var),
                                "{env:?}: the 500 must name {var}: {v}"
                            );
                        }
                        None => {
                            expect_json_error(&resp, 503, "ServiceUnavailableError");
                        }
                    }
                })
            })
            .collect();
        let mut failures = Vec::new();
        for ((env, _), h) in cases.iter().zip(handles) {
            if let Err(e) = h.join() {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("{env:?}: {msg}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    });
}
