//! End-to-end tests of the paged history replay (issue 14): histories far
//! larger than one Redis reply or the outbox bound reach a late subscriber
//! and a resuming browser whole, each event once and in order; the host's
//! memory stays bounded (its RSS growth is printed, not asserted: it
//! depends on the host's allocator); odd `Last-Event-ID`s and stalled or
//! lagging readers cost no error, no CPU and no leaked stream slot.
//!
//! Run under both hosts (`SSE_GATEWAY_HOST=wasmtime|spin`).

mod common;

use common::host_stats::*;
use common::*;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// How long one event may take to arrive while a large history streams.
const EVENT: Duration = Duration::from_secs(30);
/// How long a released slot may take to show in Redis.
const RELEASE: Duration = Duration::from_secs(10);

const USER: &str = "alice";

/// The tests that assert on their host's CPU or memory share this (read);
/// the one that loads the machine with hundreds of replays takes it alone
/// (write), so its load never shows up in their figures (CI's p3 Spin pass
/// once saw the stalled-reader CPU check fail beside it; alone: 10 ms).
static MEASURED: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn running_exec(env: &TestEnv) -> ExecRecord {
    let rec = ExecRecord::new(&new_execution_id(), USER, "running");
    env.redis.put_execution(&rec);
    rec
}

fn tick(n: u64, pad: usize) -> Value {
    json!({"event_type": "tick", "n": n, "pad": "x".repeat(pad)})
}

/// Mallory's running execution with 150 history entries of ~60 KB (9 MB,
/// pages of 7), added straight to Redis (faster than 150 POSTs).
fn mallorys_large_history(env: &TestEnv) -> ExecRecord {
    let big = ExecRecord::new(&new_execution_id(), "mallory", "running");
    env.redis.put_execution(&big);
    let mut pipe = redis::pipe();
    for n in 0..150 {
        pipe.cmd("XADD")
            .arg(history_key(&exec_channel(&big.id)))
            .arg("*")
            .arg("data")
            .arg(tick(n, 60_000).to_string())
            .ignore();
    }
    pipe.query::<()>(&mut env.redis.conn()).expect("history");
    big
}

/// Publishes `count` events of about `size` bytes through the API; their ids.
fn publish_history(env: &TestEnv, rec: &ExecRecord, count: u64, size: usize) -> Vec<String> {
    let pad = size.saturating_sub(40);
    (0..count)
        .map(|n| publish_exec(env, &rec.id, &tick(n, pad)))
        .collect()
}

/// A stream read without keeping a transcript (histories here are tens of
/// megabytes).
struct Reader {
    resp: HttpResponse,
    parser: SseParser,
}

impl Reader {
    fn open(addr: SocketAddr, rec: &ExecRecord, last_event_id: Option<&str>) -> Reader {
        let auth = bearer(&jwt::token(&rec.user_id, "user"));
        let mut headers = vec![("Authorization", auth.as_str())];
        if let Some(id) = last_event_id {
            headers.push(("Last-Event-ID", id));
        }
        let mut resp = send_request(
            addr,
            "GET",
            &exec_path(&rec.id),
            &headers,
            None,
            Duration::from_secs(15),
        )
        .expect("GET the execution stream");
        if resp.status != 200 {
            let status = resp.status;
            let (body, _) = resp.read_to_end(Duration::from_secs(2));
            panic!(
                "Last-Event-ID {last_event_id:?}: expected a stream, got {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        Reader {
            resp,
            parser: SseParser::new(),
        }
    }

    /// The next event (comments skipped), or how the stream ended.
    fn next(&mut self, timeout: Duration) -> Result<SseEvent, String> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.parser.pop() {
                Some(SseItem::Event(e)) => return Ok(e),
                Some(_) => continue,
                None => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.resp.read_body(left) {
                BodyRead::Data(d) => self.parser.feed(&d),
                BodyRead::End(end) => return Err(format!("stream ended: {end:?}")),
                BodyRead::Timeout => return Err(format!("no event within {timeout:?}")),
            }
        }
    }

    fn status(&mut self) {
        let ev = self.next(EVENT).unwrap();
        assert_eq!(ev.json()["event_type"], "status", "first event: {ev:?}");
    }

    /// Reads `want` events: each must be the next id of `ids`, with its
    /// `n`. Returns the host's peak RSS (KiB) seen meanwhile.
    fn expect_events(&mut self, ids: &[String], first_n: u64, pid: u32) -> u64 {
        let mut peak = rss_kib(pid);
        for (i, id) in ids.iter().enumerate() {
            let ev = self
                .next(EVENT)
                .unwrap_or_else(|e| panic!("event {i} of {}: {e}", ids.len()));
            assert_eq!(
                ev.id.as_deref(),
                Some(id.as_str()),
                "event {i} of {}: gap, duplicate or reorder",
                ids.len()
            );
            assert_eq!(ev.json()["n"], first_n + i as u64, "event {i}");
            if i % 50 == 0 {
                peak = peak.max(rss_kib(pid));
            }
        }
        peak.max(rss_kib(pid))
    }

    fn disconnect(self) {
        self.resp.disconnect();
    }
}

/// 1,000 events of `size` bytes in history: a late subscriber gets them
/// all, a browser resuming half-way gets the rest, each once and in order,
/// then live events, and the slot is given back.
fn large_history(size: usize) {
    const N: u64 = 1000;
    let env = TestEnv::start_with(|b| b.env("HEARTBEAT_SECONDS", "1"));
    let rec = running_exec(&env);
    let started = Instant::now();
    let ids = publish_history(&env, &rec, N, size);
    let published = started.elapsed();
    let pid = env.gw.pid().expect("host pid");
    let rss_before = rss_kib(pid);

    // A late subscriber.
    let t = Instant::now();
    let mut late = Reader::open(env.gw.addr(), &rec, None);
    late.status();
    let peak_late = late.expect_events(&ids, 0, pid);
    let late_secs = t.elapsed().as_secs_f64();
    // Live after the history, no duplicate of it in between.
    let live = publish_exec(&env, &rec.id, &tick(N, 10));
    let ev = late.next(EVENT).unwrap();
    assert_eq!(ev.id.as_deref(), Some(live.as_str()), "{ev:?}");
    late.disconnect();

    // A browser resuming after the 500th event.
    let t = Instant::now();
    let mut resumed = Reader::open(env.gw.addr(), &rec, Some(&ids[499]));
    resumed.status();
    let peak_resume = resumed.expect_events(&ids[500..], 500, pid);
    let resume_secs = t.elapsed().as_secs_f64();
    let ev = resumed.next(EVENT).unwrap();
    assert_eq!(ev.id.as_deref(), Some(live.as_str()), "then the live one");
    let end = json!({"event_type": "result_stored", "execution_id": rec.id});
    let end_id = publish_exec(&env, &rec.id, &end);
    let ev = resumed.next(EVENT).unwrap();
    assert_eq!(ev.id.as_deref(), Some(end_id.as_str()));
    assert!(resumed.next(Duration::from_secs(10)).is_err(), "ended");
    expect_slots_released(&env.redis, USER, RELEASE);

    let rss_after = rss_kib(pid);
    println!(
        "[history] {} {N} x {size} B: published in {:.1}s; late subscriber {late_secs:.1}s, \
         resume of 500 {resume_secs:.1}s; host RSS {rss_before} KiB before, peak {} KiB \
         (+{} KiB) late, peak {} KiB (+{} KiB) resume, {rss_after} KiB after",
        host().name(),
        published.as_secs_f64(),
        peak_late,
        peak_late.saturating_sub(rss_before),
        peak_resume,
        peak_resume.saturating_sub(rss_before),
    );
}

#[test]
fn a_history_of_1000_events_of_2_kb_reaches_late_and_resuming_browsers_whole() {
    large_history(2_000);
}

#[test]
fn a_history_of_1000_events_of_60_kb_reaches_late_and_resuming_browsers_whole() {
    large_history(60_000);
}

#[test]
fn the_largest_last_event_id_is_ignored_and_holds_no_slot() {
    let env = TestEnv::start_with(|b| b.env("HEARTBEAT_SECONDS", "1"));
    let rec = running_exec(&env);
    let ids = publish_history(&env, &rec, 3, 100);
    let pid = env.gw.pid().expect("host pid");
    let mut s = Reader::open(
        env.gw.addr(),
        &rec,
        Some("18446744073709551615-18446744073709551615"),
    );
    s.status();
    s.expect_events(&ids, 0, pid);
    assert_eq!(slots_held(&env.redis, USER), 1, "the open stream holds one");
    s.disconnect();
    // The gateway notices at its next write (a heartbeat) and gives it back.
    expect_slots_released(&env.redis, USER, RELEASE);
    let log = env.gw.log();
    assert!(!log.contains("redis_unavailable"), "{}", tail(&log, 4000));
}

#[test]
fn a_stalled_reader_with_a_terminal_event_pending_costs_no_cpu() {
    let _measured = MEASURED.read().unwrap_or_else(|e| e.into_inner());
    // More than the sockets between host and browser take (6 MB, within
    // the 8 MiB outbox bound of 4 MiB events; the browser's receive
    // window kept small), so the
    // terminal event stays pending while the browser reads nothing: the
    // stream waits for the flush deadline (5 s).
    let env = TestEnv::start_with(|b| b.env("MAX_EVENT_BYTES", "4194304"));
    let rec = running_exec(&env);
    let pid = env.gw.pid().expect("host pid");
    let auth = jwt::token(&rec.user_id, "user");
    let raw = format!(
        "GET {} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {auth}\r\n\r\n",
        exec_path(&rec.id)
    );
    let sock = connect_small_window(env.gw.addr(), 4096);
    let resp = send_raw_on(sock, raw.as_bytes(), Duration::from_secs(15)).expect("GET");
    assert_eq!(resp.status, 200);
    env.redis
        .wait_numsub(&exec_channel(&rec.id), 1, Duration::from_secs(10))
        .expect("subscribed");
    let big = json!({"event_type": "pod_running", "execution_id": rec.id,
                     "pad": "z".repeat(3_000_000)});
    publish_exec(&env, &rec.id, &big);
    let end = json!({"event_type": "result_stored", "execution_id": rec.id,
                     "pad": "y".repeat(3_000_000)});
    publish_exec(&env, &rec.id, &end);
    // The publishes' own work (two 3 MB bodies read, checked and framed
    // in the same host process) is over once the host is quiet for a
    // moment; on a loaded machine that takes longer than on an idle one,
    // so wait for it (at most 1.5 s) instead of a fixed time. A host that
    // spins is never quiet and is measured all the same.
    let quiet_by = Instant::now() + Duration::from_millis(1500);
    loop {
        let before = cpu_time(pid);
        thread::sleep(Duration::from_millis(200));
        let step = cpu_time(pid).saturating_sub(before);
        if step < Duration::from_millis(10) || Instant::now() >= quiet_by {
            break;
        }
    }
    // Within the flush deadline (5 s after the terminal event).
    let (cpu0, t0) = (cpu_time(pid), Instant::now());
    thread::sleep(Duration::from_secs(2));
    let used = cpu_time(pid).saturating_sub(cpu0);
    let wall = t0.elapsed();
    println!(
        "[history] {}: stalled reader, terminal pending: host CPU {:?} over {:?} ({:.1} %)",
        host().name(),
        used,
        wall,
        100.0 * used.as_secs_f64() / wall.as_secs_f64()
    );
    assert!(
        used < Duration::from_millis(200),
        "the host used {used:?} of CPU in {wall:?} while waiting to flush"
    );
    // After the flush deadline the stream is over and its slot given back.
    expect_slots_released(&env.redis, USER, RELEASE);
    let log = env.gw.log();
    let closed = log
        .lines()
        .find(|l| l.contains("stream_closed"))
        .unwrap_or("");
    println!("[history] {}: {closed}", host().name());
    let millis: u64 = closed
        .split("\"duration_ms\":")
        .nth(1)
        .and_then(|r| {
            let digits = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
            r[..digits].parse().ok()
        })
        .unwrap_or_else(|| panic!("no stream_closed duration in {closed:?}"));
    if common::p3::p3_build() && host() == Host::Spin {
        // Spin's WASIp3 body takes the whole 6 MB into its own buffers
        // (each write completes at once), so the stream ends on the
        // terminal event and the backlog waits in Spin, not in our outbox.
        println!("[history] p3 under Spin: the body took 6 MB unread; no flush wait to observe");
        assert!(closed.contains("terminal event"), "{closed}");
        resp.disconnect();
        return;
    }
    // The terminal event never left: not a clean end (the body is
    // aborted, so a fetch-based client reconnects), told as a reader that
    // stopped reading.
    assert!(
        closed.contains("client stopped reading") && millis >= 5000,
        "the stream should have waited for the flush deadline with bytes pending: {closed}"
    );
    resp.disconnect();
}

#[test]
fn a_reader_that_lags_slightly_for_30_seconds_keeps_bounded_memory() {
    let _measured = MEASURED.read().unwrap_or_else(|e| e.into_inner());
    const RATE: u64 = 100;
    const SECONDS: u64 = 30;
    let env = TestEnv::start_with(|b| b.env("HEARTBEAT_SECONDS", "1"));
    let rec = running_exec(&env);
    let pid = env.gw.pid().expect("host pid");
    let mut s = Reader::open(env.gw.addr(), &rec, None);
    s.status();
    env.redis
        .wait_numsub(&exec_channel(&rec.id), 1, Duration::from_secs(10))
        .expect("subscribed");
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (addr, id, stop) = (env.gw.addr(), rec.id.clone(), stop.clone());
        thread::spawn(move || {
            let token = service_token();
            let start = Instant::now();
            let mut ids = Vec::new();
            for n in 0..RATE * SECONDS {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let due = start + Duration::from_millis(n * 1000 / RATE);
                thread::sleep(due.saturating_duration_since(Instant::now()));
                let body = tick(n, 2_000).to_string();
                let resp = post_json(addr, &exec_path(&id), Some(&token), &body);
                assert_eq!(resp.status, 202, "POST {n}");
                ids.push(resp.json()["id"].as_str().unwrap().to_string());
            }
            ids
        })
    };
    let rss_start = rss_kib(pid);
    const WARM_UP: usize = 5;
    let mut samples = Vec::new();
    let mut got = Vec::new();
    let mut next_sample = Instant::now();
    // About 20 % slower than the producer between reads, caught up in
    // bursts: the outbox always holds a little.
    let mut lag = Duration::from_millis(12);
    while got.len() < (RATE * SECONDS) as usize {
        let ev = match s.next(EVENT) {
            Ok(ev) => ev,
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                panic!("after {} events: {e}", got.len());
            }
        };
        assert_eq!(ev.json()["n"], got.len() as u64, "in order, none lost");
        got.push(ev.id.unwrap());
        if got.len() % 200 == 0 {
            lag = Duration::ZERO;
        } else if got.len() % 200 == 50 {
            lag = Duration::from_millis(12);
        }
        thread::sleep(lag);
        if Instant::now() >= next_sample {
            samples.push(rss_kib(pid));
            next_sample += Duration::from_secs(1);
        }
    }
    let ids = producer.join().expect("producer");
    assert_eq!(got, ids, "every event once, in order");
    // The first seconds hold the host's own warm-up for the producer's
    // POSTs (Spin's p3 pass once took +108 MB for 3 s, then fell below
    // the start): growth is judged from the fifth second on.
    let settled = samples.get(WARM_UP).copied().unwrap_or(rss_start);
    let peak = samples
        .iter()
        .skip(WARM_UP)
        .copied()
        .max()
        .unwrap_or(settled);
    println!(
        "[history] {}: lagging reader {SECONDS}s at {RATE}/s x 2 KB: host RSS {rss_start} KiB \
         at start, {settled} KiB after {WARM_UP} s, peak after {peak} KiB (+{} KiB); \
         samples {samples:?}",
        host().name(),
        peak.saturating_sub(settled)
    );
    assert!(
        peak.saturating_sub(settled) < 64 * 1024,
        "host RSS grew by {} KiB",
        peak.saturating_sub(settled)
    );
    s.disconnect();
    expect_slots_released(&env.redis, USER, RELEASE);
}

#[test]
fn a_result_stored_on_a_later_history_page_gets_the_records_result() {
    // 20 events and a result_stored without a result (as the Python
    // service's producers send it): four pages of 7, the result_stored on
    // the last. A late subscriber and a browser resuming half-way both get
    // it with the record's result, as main's single page did.
    const RESULT: &str = r#"{"exit_code":0,"stdout":"ok"}"#;
    let env = TestEnv::start();
    let rec = running_exec(&env);
    let ids = publish_history(&env, &rec, 20, 200);
    let end = json!({"event_type": "result_stored", "execution_id": rec.id, "result": null});
    let end_id = publish_exec(&env, &rec.id, &end);
    env.redis
        .put_execution(&ExecRecord::new(&rec.id, USER, "completed").with_result(RESULT));
    let pid = env.gw.pid().expect("host pid");
    for (from, last) in [(0usize, None), (10, Some(ids[9].as_str()))] {
        let mut s = Reader::open(env.gw.addr(), &rec, last);
        s.status();
        s.expect_events(&ids[from..], from as u64, pid);
        let ev = s.next(EVENT).unwrap();
        assert_eq!(ev.id.as_deref(), Some(end_id.as_str()), "{ev:?}");
        assert_eq!(ev.json()["event_type"], "result_stored");
        assert_eq!(
            ev.json()["result"],
            serde_json::from_str::<Value>(RESULT).unwrap(),
            "filled from the record: {ev:?}"
        );
        let after = s.next(Duration::from_secs(10));
        assert!(after.is_err(), "the terminal event ends it: {after:?}");
    }
    expect_slots_released(&env.redis, USER, RELEASE);
}

/// Seven 2 MB entries in one execution's history, written around the
/// publish script's cap (a producer's own `XADD`, or the script run
/// without its `max_event_bytes` argument): a page of them is larger than
/// a Redis reply may be. Before, every open of that execution was a 503
/// and (p3) each reset the instance's shared command connection, failing
/// another user's commands. Now the oversized entries are skipped with a
/// log line, the execution opens with every other event once, in order,
/// and a neighbour's stream goes on. The script itself refuses such an
/// event when given the cap (issue 26 item 3).
#[test]
fn oversized_history_entries_cost_only_themselves() {
    let env = TestEnv::start();
    let rec = running_exec(&env);
    let mut bob = open_notifications(&env, "bob");

    let channel = exec_channel(&rec.id);
    let key = history_key(&channel);
    let mut con = env.redis.conn();
    let first = publish_exec(&env, &rec.id, &tick(1, 10));
    let big = tick(99, 2_000_000).to_string();
    for _ in 0..7 {
        let _: String = redis::cmd("XADD")
            .arg(&key)
            .arg("*")
            .arg("data")
            .arg(&big)
            .query(&mut con)
            .expect("XADD");
    }
    // The script with the gateway's cap refuses it, stores nothing.
    let refused: redis::RedisResult<String> = redis::cmd("EVAL")
        .arg(sse_gateway::rules::history::PUBLISH_SCRIPT)
        .arg(1)
        .arg(&key)
        .arg(&channel)
        .arg(&big)
        .arg(1000)
        .arg(3600)
        .arg("PUBLISH")
        .arg(65536)
        .query(&mut con);
    let err = refused.expect_err("an event over max_event_bytes is refused");
    assert!(
        err.to_string().contains("larger than max_event_bytes"),
        "{err}"
    );
    let len: u64 = redis::cmd("XLEN").arg(&key).query(&mut con).unwrap();
    assert_eq!(len, 8, "the refused event was not stored");
    let last = publish_exec(&env, &rec.id, &tick(2, 10));

    for round in 0..2 {
        let mut r = Reader::open(env.gw.addr(), &rec, None);
        r.status();
        let mut got = Vec::new();
        for _ in 0..2 {
            let ev = r
                .next(EVENT)
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            got.push(ev.id.unwrap_or_default());
        }
        assert_eq!(got, vec![first.clone(), last.clone()], "round {round}");
        r.disconnect();
    }
    env.redis
        .publish(&notif_channel("bob"), r#"{"title":"still here"}"#);
    assert_eq!(bob.next_json(EVENT)["title"], "still here");
    let log = env.gw.log();
    let skipped = log
        .lines()
        .filter(|l| l.contains("message_skipped") && l.contains("too large"))
        .count();
    assert_eq!(skipped, 14, "seven entries skipped per open");
    assert!(!log.contains("redis_command_connection_lost"), "{log}");
    assert!(!log.contains("\"status\":503"), "no open was refused");
}

/// Issue 26 item 2: one user's replays do not starve other users' opens.
/// One user (`max_streams_per_user` off) opens 200 replays of a history of
/// ~60 KB entries, 50 at a time, and never reads them: each asks ~420 KB
/// pages until its socket's kernel buffers are full, on the instance's
/// shared command connection; meanwhile other users open small
/// executions, one every 50 ms. Every open must succeed and no command
/// connection may be lost or overdue (`redis_timeout_ms` at its default,
/// 3 s: at 1 s a 2-core machine also running the test client, Redis and a
/// compile starved an instance's reader past it twice in CI-like runs,
/// though Redis answered in milliseconds; `TIMEOUT_MS=1000` asks for the
/// stricter run by hand). The
/// opens' latencies, alone and beside the replays, are printed for
/// docs/PERFORMANCE.md, not asserted. At this scale the build before the
/// page window passes too (measured: p90 537 ms vs 245 ms at 400 replays);
/// what the window guarantees is shown exactly by the core's
/// `pipeline::tests::pages_wait_for_the_window_in_turn_across_users`.
/// `STALLED`, `WAVE` and `TIMEOUT_MS` scale it by hand.
#[test]
fn one_users_replays_do_not_starve_other_users_opens() {
    let _alone = MEASURED.write().unwrap_or_else(|e| e.into_inner());
    if !common::p3::p3_build() {
        println!(
            "[e2e] one_users_replays_do_not_starve_other_users_opens: p3 only \
             (a p2 stream's commands have a connection of their own)"
        );
        return;
    }
    let num = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let stalled_n = num("STALLED", 200);
    let wave_n = num("WAVE", 50);
    let timeout_ms = num("TIMEOUT_MS", 3000).to_string();
    let env = TestEnv::start_with(|b| {
        b.env("REDIS_TIMEOUT_MS", &timeout_ms)
            .env("MAX_STREAMS_PER_USER", "0")
    });
    let big = mallorys_large_history(&env);

    let addr = env.gw.addr();
    let redis_url = env.redis.url();
    // `n` users open small executions, one every 50 ms; how long each open
    // took (to the status event), sorted.
    let opens = move |round: &'static str, n: usize| {
        let redis = redis::Client::open(redis_url.as_str()).expect("redis");
        let mut con = redis.get_connection().expect("redis");
        let mut opens = Vec::new();
        for i in 0..n {
            let rec = ExecRecord::new(&new_execution_id(), &format!("{round}{i}"), "running");
            put_execution_on(&mut con, &rec);
            let t = Instant::now();
            let mut r = Reader::open(addr, &rec, None);
            r.status();
            opens.push(t.elapsed());
            r.disconnect();
            thread::sleep(Duration::from_millis(50));
        }
        opens.sort();
        opens
    };
    let alone = opens("a", 20);
    // Now the same while one user opens the replays, WAVE at a time (each
    // wave's first pages asked together).
    let victims = {
        let opens = opens.clone();
        thread::spawn(move || opens("v", 40))
    };
    let auth = bearer(&jwt::token("mallory", "user"));
    let mut held = Vec::new();
    let started = Instant::now();
    for wave in 0..stalled_n / wave_n {
        let openers: Vec<_> = (0..wave_n)
            .map(|_| {
                let (path, auth) = (exec_path(&big.id), auth.clone());
                thread::spawn(move || {
                    send_get(
                        addr,
                        &path,
                        &[("Authorization", auth.as_str())],
                        Duration::from_secs(30),
                    )
                    .expect("GET")
                })
            })
            .collect();
        for o in openers {
            let resp = o.join().expect("opener");
            if resp.status != 200 {
                let log = env.gw.log();
                panic!(
                    "a replay of wave {wave} was refused ({}): {}",
                    resp.status,
                    tail(&log, 3000)
                );
            }
            held.push(resp);
        }
    }
    let opened_all = started.elapsed();
    let beside = victims.join().expect("the other users' opens");
    let pct = |v: &[Duration], q: usize| v[(v.len() - 1) * q / 100];
    println!(
        "[history] {}: other users' opens alone p50 {:?}, max {:?}; beside {stalled_n} \
         replays of one user (opened in {opened_all:?}) p50 {:?}, p90 {:?}, max {:?}",
        host().name(),
        pct(&alone, 50),
        pct(&alone, 100),
        pct(&beside, 50),
        pct(&beside, 90),
        pct(&beside, 100),
    );
    let log = env.gw.log();
    assert!(
        !log.contains("redis_command_connection_lost"),
        "{}",
        tail(&log, 4000)
    );
    assert!(
        !log.contains("did not answer in time"),
        "{}",
        tail(&log, 4000)
    );
    assert!(
        !log.contains("redis connection lost"),
        "a replay ended: {}",
        tail(&log, 4000)
    );
    drop(held);
}

/// Issue 26: a wasm memory never shrinks, so an instance that grew under
/// stalled replays of a large history would hold that memory for as long
/// as new streams keep it alive. Past `retire_instance_memory_mib` it
/// retires: it serves the stream it still has, the next stream opens in
/// another instance, and once its last stream ends the host drops it and
/// the host's memory falls back, while the new stream goes on.
#[test]
fn an_instance_grown_by_stalled_replays_retires_and_gives_its_memory_back() {
    let _alone = MEASURED.write().unwrap_or_else(|e| e.into_inner());
    if !common::p3::p3_build() {
        println!(
            "[e2e] an_instance_grown_by_stalled_replays_retires...: p3 only (a p2 \
             instance serves one stream and is dropped with it)"
        );
        return;
    }
    const STALLED: usize = 24;
    const RETIRE_MIB: u64 = 12;
    let env = TestEnv::start_with(|b| {
        b.env("RETIRE_INSTANCE_MEMORY_MIB", &RETIRE_MIB.to_string())
            .env("MAX_STREAMS_PER_USER", "0")
            .env("WRITE_STALL_SECONDS", "300")
            .env("HEARTBEAT_SECONDS", "1")
    });
    let addr = env.gw.addr();
    let pid = env.gw.pid().expect("host pid");
    let rec = running_exec(&env);
    let channel = exec_channel(&rec.id);
    // A browser that stays on the first instance throughout.
    let mut keeper = Reader::open(addr, &rec, None);
    keeper.status();
    env.redis
        .wait_numsub(&channel, 1, Duration::from_secs(10))
        .expect("subscribed");
    let before = rss_kib(pid);

    let big = mallorys_large_history(&env);
    // Replays of 9 MB each that are never read: each holds its window.
    let auth = bearer(&jwt::token("mallory", "user"));
    let stalled: Vec<_> = (0..STALLED)
        .map(|_| {
            let resp = send_get(
                addr,
                &exec_path(&big.id),
                &[("Authorization", auth.as_str())],
                Duration::from_secs(30),
            )
            .expect("GET");
            assert_eq!(resp.status, 200, "a stalled replay opens");
            thread::sleep(Duration::from_millis(100));
            resp
        })
        .collect();
    let grown = Instant::now() + Duration::from_secs(20);
    let mut peak = rss_kib(pid);
    while peak < before + 2 * RETIRE_MIB * 1024 && Instant::now() < grown {
        thread::sleep(Duration::from_millis(200));
        peak = peak.max(rss_kib(pid));
    }
    for s in stalled {
        s.disconnect();
    }
    // The stalled replays' end is when the grown instance notices.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !env.gw.log().contains("instance_retired") && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    let log = env.gw.log();
    assert!(
        log.contains("instance_retired"),
        "no instance retired; host RSS {before} KiB before the replays, {peak} KiB at \
         their peak: {}",
        tail(&log, 3000)
    );
    // A new browser of the same execution is served by another instance:
    // a second subscription to the channel.
    let mut newcomer = Reader::open(addr, &rec, None);
    newcomer.status();
    env.redis
        .wait_numsub(&channel, 2, Duration::from_secs(10))
        .unwrap_or_else(|n| panic!("subscriptions to the channel: {n}, want 2 (a new instance)"));
    thread::sleep(Duration::from_secs(3));
    let held = rss_kib(pid);
    // The keeper leaves: the retired instance has no stream left, the host
    // drops it and its memory (at least the limit it grew past, less what
    // the host keeps of a freed instance) goes back.
    keeper.disconnect();
    let want = RETIRE_MIB * 1024 / 2;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut after = rss_kib(pid);
    while held.saturating_sub(after) < want && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(200));
        after = rss_kib(pid);
    }
    println!(
        "[history] {}: {STALLED} stalled replays: host RSS {before} KiB before, {peak} KiB \
         at peak, {held} KiB with the retired instance's last stream, {after} KiB once it \
         left",
        host().name()
    );
    assert!(
        held.saturating_sub(after) >= want,
        "host RSS {held} -> {after} KiB when the retired instance's last stream left: its \
         memory was not given back: {}",
        tail(&env.gw.log(), 3000)
    );
    // The newcomer's instance carries on.
    env.redis
        .publish(&channel, r#"{"event_type":"tick","n":1}"#);
    let ev = newcomer.next(EVENT).expect("the next event");
    assert_eq!(ev.json()["n"], 1);
    newcomer.disconnect();
}
