//! End-to-end tests of "no event lost": events published through the POST
//! routes are kept in a capped Redis Stream history, late subscribers get
//! that history, browsers resume with `Last-Event-ID`, and every stream
//! starts with `retry:`. The portable component runs under `wasmtime serve`
//! against a private `redis-server`.
//!
//! Each test starts its own Redis and gateway on free ports and uses fresh
//! ids, so tests are independent and run in parallel. The race test prints
//! its random seed; `E2E_SEED=<n>` replays a run.

mod common;

use common::*;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// How long a published event may take to reach the browser.
const EVENT: Duration = Duration::from_secs(10);
/// How long the gateway may take to subscribe after the stream opened.
const SUBSCRIBE: Duration = Duration::from_secs(10);
/// How long a finished stream may take to end.
const END: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------

fn new_running_exec(env: &TestEnv, user: &str) -> ExecRecord {
    let rec = ExecRecord::new(&new_execution_id(), user, "running");
    env.redis.put_execution(&rec);
    rec
}

/// The owner's execution stream, optionally resuming after `last_event_id`.
/// Panics (with the body) unless the answer is a 200 event stream.
fn open_exec(env: &TestEnv, rec: &ExecRecord, last_event_id: Option<&str>) -> SseStream {
    let auth = bearer(&jwt::token(&rec.user_id, "user"));
    let mut headers = vec![("Authorization", auth.as_str())];
    if let Some(id) = last_event_id {
        headers.push(("Last-Event-ID", id));
    }
    let s = open_stream(env.gw.addr(), &exec_path(&rec.id), &headers);
    let ct = s.resp.header("content-type").unwrap_or_default();
    assert!(
        ct.starts_with("text/event-stream"),
        "content-type {ct:?} (Last-Event-ID {last_event_id:?})"
    );
    s
}

fn open_notifications(env: &TestEnv, user: &str, last_event_id: Option<&str>) -> SseStream {
    let auth = bearer(&jwt::token(user, "user"));
    let mut headers = vec![("Authorization", auth.as_str())];
    if let Some(id) = last_event_id {
        headers.push(("Last-Event-ID", id));
    }
    let s = open_stream(env.gw.addr(), NOTIF_STREAM_PATH, &headers);
    let ct = s.resp.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("text/event-stream"), "content-type {ct:?}");
    s
}

fn wait_subscribers(env: &TestEnv, channel: &str, want: i64, s: &SseStream) {
    if let Err(n) = env.redis.wait_numsub(channel, want, SUBSCRIBE) {
        panic!(
            "expected {want} subscriber(s) on {channel} within {SUBSCRIBE:?}, PUBSUB NUMSUB = \
             {n}; stream so far: {:?}",
            s.transcript
        );
    }
}

/// The status control event: first, built from the record, without `id:`.
/// A `Last-Event-ID` the history no longer (or never) held: the browser
/// is told the replay cannot be proven complete (`event: resume`).
fn expect_unrecovered(s: &mut SseStream) {
    let ev = s.next_event(EVENT);
    assert_eq!(ev.event.as_deref(), Some("resume"), "{ev:?}");
    assert_eq!(ev.json(), json!({"recovered": false}));
    assert_eq!(ev.id, None, "{ev:?}");
}

fn expect_status(s: &mut SseStream, rec: &ExecRecord) {
    let ev = s.next_event(EVENT);
    let v = ev.json();
    assert_eq!(
        v["event_type"], "status",
        "the first event must be the status event: {v}; stream {:?}",
        s.transcript
    );
    assert_eq!(v["execution_id"], rec.id.as_str(), "{v}");
    assert_eq!(v["status"], rec.status.as_str(), "{v}");
    assert_eq!(
        ev.id, None,
        "the status event has no history entry, so no `id:`: {ev:?}"
    );
}

/// The next event is `want` (an unnamed event) carrying `id: want_id`
/// (None: no `id:` line).
fn expect_exec_event(s: &mut SseStream, want: &Value, want_id: Option<&str>) {
    let ev = s.next_event(EVENT);
    assert!(
        ev.event.is_none() || ev.event.as_deref() == Some("message"),
        "execution events are unnamed: {ev:?}"
    );
    assert_eq!(
        &ev.json(),
        want,
        "unexpected event (wanted id {want_id:?}); stream so far: {:?}",
        s.transcript
    );
    assert_eq!(
        ev.id.as_deref(),
        want_id,
        "wrong `id:` for {want}; stream so far: {:?}",
        s.transcript
    );
}

fn expect_notification(s: &mut SseStream, want: &Value, want_id: &str) {
    let ev = s.next_event(EVENT);
    assert_eq!(
        ev.event.as_deref(),
        Some("notification"),
        "notifications are `event: notification`: {ev:?}"
    );
    assert_eq!(
        &ev.json(),
        want,
        "unexpected notification; stream so far: {:?}",
        s.transcript
    );
    assert_eq!(
        ev.id.as_deref(),
        Some(want_id),
        "wrong `id:`; stream so far: {:?}",
        s.transcript
    );
}

/// The body's first line must be `retry: <ms>`.
fn assert_starts_with_retry(s: &SseStream, ms: u64) {
    let first = s.parser().first_nonempty_line.clone().unwrap_or_default();
    let value = first
        .strip_prefix("retry:")
        .map(|v| v.strip_prefix(' ').unwrap_or(v));
    assert_eq!(
        value,
        Some(ms.to_string().as_str()),
        "the stream must start with `retry: {ms}`, its first line is {first:?}; stream {:?}",
        s.transcript
    );
    assert_eq!(s.parser().last_retry, Some(ms));
}

/// An execution event as the producer posts it (with its execution_id).
fn ev(rec: &ExecRecord, event_type: &str, seq: u64) -> Value {
    json!({
        "event_type": event_type,
        "execution_id": rec.id,
        "event_id": format!("{}-{seq}", rec.id),
        "timestamp": format!("2025-01-15T10:30:{:02}.000000+00:00", seq % 60),
        "seq": seq,
    })
}

fn note(n: u64) -> Value {
    json!({"notification_id": format!("n-{n}"), "subject": format!("Notification {n}"),
           "severity": "medium", "tags": ["execution"]})
}

fn xlen(env: &TestEnv, key: &str) -> i64 {
    redis::cmd("XLEN")
        .arg(key)
        .query(&mut env.redis.conn())
        .unwrap_or_else(|e| panic!("XLEN {key}: {e}"))
}

// ---------------------------------------------------------------------------
// retry
// ---------------------------------------------------------------------------

#[test]
fn every_stream_starts_with_the_configured_retry() {
    let env = TestEnv::start_with(|b| b.env("RETRY_MS", "1500"));
    let addr = env.gw.addr();

    let rec = new_running_exec(&env, "alice");
    let mut s = open_exec(&env, &rec, None);
    expect_status(&mut s, &rec);
    assert_starts_with_retry(&s, 1500);

    let mut s = open_notifications(&env, "alice", None);
    wait_subscribers(&env, &notif_channel("alice"), 1, &s);
    let n = json!({"subject": "hello"});
    env.redis.publish(&notif_channel("alice"), &n.to_string());
    assert_eq!(s.next_json(EVENT), n);
    assert_starts_with_retry(&s, 1500);

    let session = format!("replay-{}", new_execution_id());
    env.redis.put_replay_session(&session, "running");
    let auth = bearer(&jwt::token("root", "admin"));
    let mut s = open_stream(
        addr,
        &replay_status_path(&session),
        &[("Authorization", &auth)],
    );
    wait_subscribers(&env, &replay_channel(&session), 1, &s);
    assert_eq!(
        s.next_json(EVENT)["status"],
        "running",
        "the session's status first"
    );
    let r = json!({"session_id": session, "status": "running"});
    env.redis.publish(&replay_channel(&session), &r.to_string());
    assert_eq!(s.next_json(EVENT), r);
    assert_starts_with_retry(&s, 1500);
}

// ---------------------------------------------------------------------------
// history and Last-Event-ID
// ---------------------------------------------------------------------------

#[test]
fn late_subscriber_gets_history_then_live_events() {
    let env = TestEnv::start();
    let rec = new_running_exec(&env, "alice");

    // The second one without execution_id: filled in, in history too.
    let mut posted = vec![ev(&rec, "execution_queued", 1), ev(&rec, "pod_created", 2)];
    let mut third = ev(&rec, "pod_running", 3);
    third.as_object_mut().unwrap().remove("execution_id");
    posted.push(third);
    let ids: Vec<String> = posted
        .iter()
        .map(|v| publish_exec(&env, &rec.id, v))
        .collect();
    posted[2]["execution_id"] = json!(rec.id);

    let mut s = open_exec(&env, &rec, None);
    expect_status(&mut s, &rec);
    assert_starts_with_retry(&s, 3000);
    for (v, id) in posted.iter().zip(&ids) {
        expect_exec_event(&mut s, v, Some(id));
    }

    wait_subscribers(&env, &exec_channel(&rec.id), 1, &s);
    let live = ev(&rec, "execution_completed", 4);
    let live_id = publish_exec(&env, &rec.id, &live);
    expect_exec_event(&mut s, &live, Some(&live_id));
    s.assert_open_for(Duration::from_millis(500));
}

#[test]
fn last_event_id_resumes_without_gap_or_duplicate() {
    let env = TestEnv::start();
    let rec = new_running_exec(&env, "alice");

    let mut s = open_exec(&env, &rec, None);
    expect_status(&mut s, &rec);
    wait_subscribers(&env, &exec_channel(&rec.id), 1, &s);
    let first = [ev(&rec, "execution_queued", 1), ev(&rec, "pod_created", 2)];
    let first_ids: Vec<String> = first
        .iter()
        .map(|v| publish_exec(&env, &rec.id, v))
        .collect();
    for (v, id) in first.iter().zip(&first_ids) {
        expect_exec_event(&mut s, v, Some(id));
    }
    s.disconnect();

    let missed = [
        ev(&rec, "pod_scheduled", 3),
        ev(&rec, "pod_running", 4),
        ev(&rec, "execution_completed", 5),
    ];
    let missed_ids: Vec<String> = missed
        .iter()
        .map(|v| publish_exec(&env, &rec.id, v))
        .collect();

    let mut s = open_exec(&env, &rec, Some(&first_ids[1]));
    expect_status(&mut s, &rec);
    for (v, id) in missed.iter().zip(&missed_ids) {
        expect_exec_event(&mut s, v, Some(id));
    }
    // Then live ones (the gateway must already be subscribed: it sent the
    // history, and anything posted after it read the history must come).
    let live = ev(&rec, "pod_terminated", 6);
    let live_id = publish_exec(&env, &rec.id, &live);
    expect_exec_event(&mut s, &live, Some(&live_id));
    s.assert_open_for(Duration::from_millis(500));

    let last = ev(&rec, "result_stored", 7);
    let last_id = publish_exec(&env, &rec.id, &last);
    expect_exec_event(&mut s, &last, Some(&last_id));
    s.expect_end(END);
}

#[test]
fn terminal_event_in_history_ends_the_stream() {
    let env = TestEnv::start();
    let rec = new_running_exec(&env, "alice");
    let mut posted = vec![
        ev(&rec, "pod_running", 1),
        ev(&rec, "execution_completed", 2),
    ];
    let mut stored = ev(&rec, "result_stored", 3);
    stored["result"] = json!({"stdout": "42\n", "stderr": "", "exit_code": 0});
    posted.push(stored);
    let ids: Vec<String> = posted
        .iter()
        .map(|v| publish_exec(&env, &rec.id, v))
        .collect();
    // Something after the terminal event is never sent.
    publish_exec(&env, &rec.id, &ev(&rec, "pod_terminated", 4));

    let mut s = open_exec(&env, &rec, None);
    expect_status(&mut s, &rec);
    for (v, id) in posted.iter().zip(&ids) {
        expect_exec_event(&mut s, v, Some(id));
    }
    s.expect_end(END);

    // Resuming after the first event: the rest up to the terminal, then end.
    let mut s = open_exec(&env, &rec, Some(&ids[0]));
    expect_status(&mut s, &rec);
    for (v, id) in posted.iter().zip(&ids).skip(1) {
        expect_exec_event(&mut s, v, Some(id));
    }
    s.expect_end(END);
}

#[test]
fn plain_publish_still_works_and_keeps_order_with_posted_events() {
    let env = TestEnv::start();
    let rec = new_running_exec(&env, "alice");
    let ch = exec_channel(&rec.id);
    let mut s = open_exec(&env, &rec, None);
    expect_status(&mut s, &rec);
    wait_subscribers(&env, &ch, 1, &s);

    let a = ev(&rec, "execution_queued", 1);
    let b = ev(&rec, "pod_created", 2);
    let c = ev(&rec, "pod_running", 3);
    let d = ev(&rec, "execution_completed", 4);
    let id_a = publish_exec(&env, &rec.id, &a);
    env.redis.publish(&ch, &b.to_string());
    let id_c = publish_exec(&env, &rec.id, &c);
    env.redis.publish(&ch, &d.to_string());

    expect_exec_event(&mut s, &a, Some(&id_a));
    expect_exec_event(&mut s, &b, None);
    expect_exec_event(&mut s, &c, Some(&id_c));
    expect_exec_event(&mut s, &d, None);
    s.assert_open_for(Duration::from_millis(300));

    // Only the posted events are in the history.
    let mut late = open_exec(&env, &rec, None);
    expect_status(&mut late, &rec);
    expect_exec_event(&mut late, &a, Some(&id_a));
    expect_exec_event(&mut late, &c, Some(&id_c));
    late.assert_open_for(Duration::from_millis(500));

    // A plain terminal event still ends both.
    let e = ev(&rec, "result_stored", 5);
    env.redis.publish(&ch, &e.to_string());
    expect_exec_event(&mut s, &e, None);
    expect_exec_event(&mut late, &e, None);
    s.expect_end(END);
    late.expect_end(END);
}

#[test]
fn notifications_resume_after_last_event_id_and_have_no_history_otherwise() {
    let env = TestEnv::start();
    let user = "nora";
    let ch = notif_channel(user);
    let notes: Vec<Value> = (1..=3).map(note).collect();
    let ids: Vec<String> = notes.iter().map(|n| publish_notif(&env, user, n)).collect();

    let mut s = open_notifications(&env, user, Some(&ids[0]));
    expect_notification(&mut s, &notes[1], &ids[1]);
    expect_notification(&mut s, &notes[2], &ids[2]);
    assert_starts_with_retry(&s, 3000);
    wait_subscribers(&env, &ch, 1, &s);
    let n4 = note(4);
    let id4 = publish_notif(&env, user, &n4);
    expect_notification(&mut s, &n4, &id4);

    // Without Last-Event-ID: no history, only live events.
    let mut fresh = open_notifications(&env, user, None);
    wait_subscribers(&env, &ch, 2, &fresh);
    fresh.assert_open_for(Duration::from_millis(700));
    let n5 = note(5);
    let id5 = publish_notif(&env, user, &n5);
    expect_notification(&mut fresh, &n5, &id5);
    expect_notification(&mut s, &n5, &id5);
    s.assert_open_for(Duration::from_millis(300));
}

#[test]
fn malformed_last_event_id_is_treated_as_absent() {
    let env = TestEnv::start();
    let rec = new_running_exec(&env, "alice");
    let posted: Vec<Value> = (1..=3).map(|i| ev(&rec, "pod_running", i)).collect();
    let ids: Vec<String> = posted
        .iter()
        .map(|v| publish_exec(&env, &rec.id, v))
        .collect();

    let huge_numbers = format!("{}-{}", "1".repeat(150), "1".repeat(149));
    let long_text = "x".repeat(300);
    for bad in [
        "garbage",
        "123",
        "1-2-3",
        "-",
        long_text.as_str(),
        huge_numbers.as_str(),
        // Well formed, older than everything: the full history too.
        "0-1",
        // Well formed but no entry can have it (an exclusive XRANGE start
        // Redis refuses; years ahead of the clock): ignored, never a 503.
        "18446744073709551615-18446744073709551615",
        "99999999999999-0",
    ] {
        let mut s = open_exec(&env, &rec, Some(bad));
        expect_status(&mut s, &rec);
        if bad == "0-1" {
            // Well formed and not in the history: not proven complete.
            expect_unrecovered(&mut s);
        }
        for (v, id) in posted.iter().zip(&ids) {
            expect_exec_event(&mut s, v, Some(id));
        }
        s.assert_open_for(Duration::from_millis(300));
        s.disconnect();
    }
}

#[test]
fn last_event_id_newer_than_history_gets_only_live_events() {
    let env = TestEnv::start();
    let rec = new_running_exec(&env, "alice");
    for i in 1..=3 {
        publish_exec(&env, &rec.id, &ev(&rec, "pod_running", i));
    }
    // Newer than every entry, within the hour the gateway accepts ahead of
    // its clock (further ahead is ignored like a malformed id).
    let ahead = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 60_000;
    let mut s = open_exec(&env, &rec, Some(&format!("{ahead}-0")));
    expect_status(&mut s, &rec);
    expect_unrecovered(&mut s);
    wait_subscribers(&env, &exec_channel(&rec.id), 1, &s);
    s.assert_open_for(Duration::from_millis(500));
    let live = ev(&rec, "execution_completed", 4);
    let live_id = publish_exec(&env, &rec.id, &live);
    expect_exec_event(&mut s, &live, Some(&live_id));
}

#[test]
fn history_is_capped_and_expires() {
    let env = TestEnv::start_with(|b| {
        b.env("HISTORY_MAX_LEN", "5")
            .env("HISTORY_TTL_SECONDS", "600")
    });
    let rec = new_running_exec(&env, "alice");
    let posted: Vec<Value> = (0..50).map(|i| ev(&rec, "tick", i)).collect();
    let ids: Vec<String> = posted
        .iter()
        .map(|v| publish_exec(&env, &rec.id, v))
        .collect();

    let key = history_key(&exec_channel(&rec.id));
    let len = xlen(&env, &key);
    assert!(
        (5..=100).contains(&len),
        "HISTORY_MAX_LEN=5, 50 events posted: XLEN {key} = {len} (approximate trimming \
         allows up to ~100, at least the last 5 must stay)"
    );
    let ttl: i64 = redis::cmd("TTL")
        .arg(&key)
        .query(&mut env.redis.conn())
        .unwrap();
    assert!(
        ttl > 0 && ttl <= 600,
        "HISTORY_TTL_SECONDS=600: TTL {key} = {ttl}"
    );

    // What stayed is the newest events, and a late subscriber gets exactly that.
    let entries: Vec<(String, redis::Value)> = redis::cmd("XRANGE")
        .arg(&key)
        .arg("-")
        .arg("+")
        .query(&mut env.redis.conn())
        .unwrap();
    let kept: Vec<String> = entries.into_iter().map(|(id, _)| id).collect();
    let newest = &ids[ids.len() - kept.len()..];
    assert_eq!(
        kept, newest,
        "the history must hold the newest events, in order"
    );
    let mut s = open_exec(&env, &rec, None);
    expect_status(&mut s, &rec);
    let first = ids.len() - kept.len();
    for (v, id) in posted.iter().zip(&ids).skip(first) {
        expect_exec_event(&mut s, v, Some(id));
    }
    s.assert_open_for(Duration::from_millis(300));
    // A browser that saw only the first event comes back after it was
    // trimmed: told, then given what the history still has (issue 22).
    let mut s = open_exec(&env, &rec, Some(&ids[0]));
    expect_status(&mut s, &rec);
    expect_unrecovered(&mut s);
    for (v, id) in posted.iter().zip(&ids).skip(first) {
        expect_exec_event(&mut s, v, Some(id));
    }
    // One whose id is still there resumes with no such notice.
    let mut s = open_exec(&env, &rec, Some(&ids[first]));
    expect_status(&mut s, &rec);
    for (v, id) in posted.iter().zip(&ids).skip(first + 1) {
        expect_exec_event(&mut s, v, Some(id));
    }
    s.assert_open_for(Duration::from_millis(300));
}

#[test]
fn history_key_prefix_is_configurable() {
    let env = TestEnv::start_with(|b| b.env("HISTORY_KEY_PREFIX", "h2:"));
    let rec = new_running_exec(&env, "alice");
    let posted = [ev(&rec, "pod_created", 1), ev(&rec, "pod_running", 2)];
    let ids: Vec<String> = posted
        .iter()
        .map(|v| publish_exec(&env, &rec.id, v))
        .collect();
    let ch = exec_channel(&rec.id);
    assert_eq!(xlen(&env, &format!("h2:{{{ch}}}")), 2);
    assert_eq!(
        xlen(&env, &history_key(&ch)),
        0,
        "the default-prefix key must not be written"
    );
    let mut s = open_exec(&env, &rec, Some(&ids[0]));
    expect_status(&mut s, &rec);
    expect_exec_event(&mut s, &posted[1], Some(&ids[1]));
    s.assert_open_for(Duration::from_millis(300));
}

// ---------------------------------------------------------------------------
// race: a fast producer and clients that keep reconnecting
// ---------------------------------------------------------------------------

/// xorshift64*: small, seedable, good enough for picking delays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn race_seed() -> u64 {
    std::env::var("E2E_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| now_ms() ^ u64::from(std::process::id()) << 20)
        | 1
}

/// What one race client saw.
struct RaceRun {
    /// Every non-status event, as (n, or None for the terminal one; id).
    seen: Vec<(Option<u64>, String)>,
    connections: usize,
    /// Connections opened while the producer was still posting.
    during_production: usize,
}

/// One client: wait until the producer has posted a random number of
/// events, then connect, read a random number of events, disconnect,
/// reconnect with Last-Event-ID, ... until the terminal event and the end of
/// the stream.
fn race_client(
    addr: std::net::SocketAddr,
    rec: &ExecRecord,
    mut rng: Rng,
    n_events: u64,
    posted: &AtomicU64,
    deadline: Instant,
    abort: &AtomicBool,
) -> Result<RaceRun, String> {
    const MAX_CONNECTIONS: usize = 300;
    let auth = bearer(&jwt::token(&rec.user_id, "user"));
    let path = exec_path(&rec.id);
    let mut run = RaceRun {
        seen: Vec::new(),
        connections: 0,
        during_production: 0,
    };
    // Join at a random moment of the production (or before it starts).
    let start_at = rng.below(n_events);
    while posted.load(Ordering::Relaxed) < start_at {
        if abort.load(Ordering::Relaxed) || Instant::now() > deadline {
            return Err(format!("producer never reached event {start_at}"));
        }
        thread::sleep(Duration::from_micros(200));
    }
    for conn in 0..MAX_CONNECTIONS {
        let last = run.seen.last().map(|(_, id)| id.clone());
        let mut headers = vec![
            ("Authorization", auth.as_str()),
            ("Accept", "text/event-stream"),
        ];
        if let Some(id) = &last {
            headers.push(("Last-Event-ID", id.as_str()));
        }
        run.connections += 1;
        if posted.load(Ordering::Relaxed) <= n_events {
            run.during_production += 1;
        }
        let resp = send_request(addr, "GET", &path, &headers, None, Duration::from_secs(15))
            .map_err(|e| format!("connection {conn}: GET: {e}"))?;
        if resp.status != 200 {
            return Err(format!("connection {conn}: status {}", resp.status));
        }
        let mut s = SseStream::new(resp, &format!("race connection {conn}"));
        let want = 1 + rng.below(40);
        let mut read = 0;
        let mut first = true;
        // Heartbeat comments do not extend the wait for the next event.
        let mut event_deadline = Instant::now() + EVENT;
        while read < want {
            if abort.load(Ordering::Relaxed) {
                return Err("aborted: the producer failed".into());
            }
            let now = Instant::now();
            let until = event_deadline.min(deadline);
            if now >= until {
                return Err(format!(
                    "connection {conn}: no event within {EVENT:?} (or the test deadline \
                     passed) after {} events, Last-Event-ID {last:?}; this connection: {:?}",
                    run.seen.len(),
                    s.transcript
                ));
            }
            match s.next(until - now) {
                Next::Item(SseItem::Event(e)) => {
                    event_deadline = Instant::now() + EVENT;
                    let v: Value = serde_json::from_str(&e.data).map_err(|err| {
                        format!("connection {conn}: data not JSON ({err}): {:?}", e.data)
                    })?;
                    let is_first = std::mem::replace(&mut first, false);
                    if v["event_type"] == "status" {
                        if !is_first || e.id.is_some() {
                            return Err(format!(
                                "connection {conn}: unexpected status event {e:?}; {:?}",
                                s.transcript
                            ));
                        }
                        continue;
                    }
                    if is_first {
                        return Err(format!(
                            "connection {conn}: first event is not the status event: {e:?}"
                        ));
                    }
                    let id = e.id.clone().ok_or_else(|| {
                        format!("connection {conn}: posted event without `id:`: {e:?}")
                    })?;
                    let terminal = v["event_type"] == "result_stored";
                    run.seen
                        .push((if terminal { None } else { v["n"].as_u64() }, id));
                    read += 1;
                    if terminal {
                        return match s.next(END) {
                            Next::End(EndKind::Clean) => Ok(run),
                            other => Err(format!(
                                "connection {conn}: after the terminal event expected a clean \
                                 end, got {other:?}"
                            )),
                        };
                    }
                    if rng.below(8) == 0 {
                        // Fall behind the producer for a moment.
                        thread::sleep(Duration::from_millis(rng.below(20)));
                    }
                }
                Next::Item(SseItem::Comment(_)) => {}
                Next::End(end) => {
                    return Err(format!(
                        "connection {conn}: stream ended ({end:?}) before the terminal event; \
                         {:?}",
                        s.transcript
                    ))
                }
                Next::Timeout => {}
            }
        }
        s.disconnect();
        thread::sleep(Duration::from_millis(rng.below(5)));
    }
    Err(format!(
        "still not done after {MAX_CONNECTIONS} connections ({} events)",
        run.seen.len()
    ))
}

#[test]
fn racing_producer_and_reconnecting_clients_miss_nothing() {
    const N: u64 = 300;
    const CLIENTS: u64 = 5;
    let env = TestEnv::start_with(|b| b.env("HEARTBEAT_SECONDS", "1"));
    let rec = new_running_exec(&env, "alice");
    let addr = env.gw.addr();
    let seed = race_seed();
    eprintln!("[race] seed {seed} (E2E_SEED={seed} replays the delays)");
    let deadline = Instant::now() + Duration::from_secs(60);
    let abort = Arc::new(AtomicBool::new(false));
    // How many events the producer has had accepted so far.
    let posted = Arc::new(AtomicU64::new(0));

    let producer = {
        let (rec, abort, posted) = (rec.clone(), abort.clone(), posted.clone());
        thread::spawn(move || -> Result<Vec<String>, String> {
            let token = service_token();
            let mut ids = Vec::new();
            for n in 0..=N {
                let body = if n < N {
                    json!({"event_type": "tick", "n": n})
                } else {
                    json!({"event_type": "result_stored", "execution_id": rec.id,
                           "result": {"exit_code": 0}})
                };
                let resp = post_json(addr, &exec_path(&rec.id), Some(&token), &body.to_string());
                if resp.status != 202 || Instant::now() > deadline {
                    abort.store(true, Ordering::Relaxed);
                    return Err(format!(
                        "POST event {n}: status {} body {:?}",
                        resp.status,
                        resp.text()
                    ));
                }
                match resp.json()["id"].as_str() {
                    Some(id) => {
                        ids.push(id.to_string());
                        posted.fetch_add(1, Ordering::Relaxed);
                    }
                    None => {
                        abort.store(true, Ordering::Relaxed);
                        return Err(format!("POST event {n}: no id in {:?}", resp.text()));
                    }
                }
            }
            Ok(ids)
        })
    };
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (rec, abort, posted) = (rec.clone(), abort.clone(), posted.clone());
            let rng = Rng(seed.wrapping_mul(c * 2 + 1) | 1);
            thread::spawn(move || race_client(addr, &rec, rng, N, &posted, deadline, &abort))
        })
        .collect();

    let started = Instant::now();
    let ids = match producer.join() {
        Ok(Ok(ids)) => ids,
        Ok(Err(e)) => panic!("producer failed: {e}"),
        Err(_) => panic!("producer panicked"),
    };
    eprintln!(
        "[race] producer posted {} events in {:.1}s",
        ids.len(),
        started.elapsed().as_secs_f64()
    );
    for w in ids.windows(2) {
        assert!(
            parse_history_id(&w[0]) < parse_history_id(&w[1]),
            "POST ids must increase: {} then {}",
            w[0],
            w[1]
        );
    }
    let mut want: Vec<(Option<u64>, String)> =
        (0..N).map(|n| (Some(n), ids[n as usize].clone())).collect();
    want.push((None, ids[N as usize].clone()));

    let mut failures = Vec::new();
    for (c, h) in clients.into_iter().enumerate() {
        match h.join() {
            Ok(Ok(run)) => {
                eprintln!(
                    "[race] client {c}: {} connections, {} of them while the producer was \
                     posting",
                    run.connections, run.during_production
                );
                let seen = run.seen;
                if seen != want {
                    let first_bad = seen
                        .iter()
                        .zip(&want)
                        .position(|(a, b)| a != b)
                        .unwrap_or(seen.len().min(want.len()));
                    failures.push(format!(
                        "client {c}: {} events, first difference at #{first_bad}: got {:?}, \
                         expected {:?}",
                        seen.len(),
                        &seen[first_bad.saturating_sub(2)..(first_bad + 3).min(seen.len())],
                        &want[first_bad.saturating_sub(2)..(first_bad + 3).min(want.len())],
                    ));
                }
            }
            Ok(Err(e)) => failures.push(format!("client {c}: {e}")),
            Err(_) => failures.push(format!("client {c}: panicked (see above)")),
        }
    }
    eprintln!("[race] done in {:.1}s", started.elapsed().as_secs_f64());
    assert!(
        failures.is_empty(),
        "seed {seed}: {} of {CLIENTS} clients saw a gap, a duplicate or an error:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
