//! Bursts (issue 22), end to end under every host and build: a browser
//! that keeps reading is never cut, whatever a producer publishes at once;
//! one that never reads does not hold its neighbours up; a browser that
//! falls far behind catches up from the history (events with ids) or is
//! told that events were dropped (plain `PUBLISH`), never a silent gap.
//!
//! Events of 20 KB are ordinary here: `result_stored` carries stdout and
//! stderr. The producer publishes in one Redis pipeline, as a busy
//! producer's events reach Redis back to back. Before the backlog
//! (`machine::backlog`), the p3 build cut every reader of 60 × 20 KB.

mod common;

use common::*;
use serde_json::{json, Value};
use sse_gateway::config::HistoryLimits;
use sse_gateway::rules::history::publish_command;
use std::thread;
use std::time::Duration;

/// How long one event may take to arrive.
const EVENT: Duration = Duration::from_secs(30);

fn running_exec(env: &TestEnv) -> ExecRecord {
    let rec = ExecRecord::new(&new_execution_id(), "alice", "running");
    env.redis.put_execution(&rec);
    rec
}

fn event(rec: &ExecRecord, n: u64, size: usize) -> String {
    let pad = "x".repeat(size.saturating_sub(80));
    json!({"event_type": "tick", "execution_id": rec.id, "n": n, "pad": pad}).to_string()
}

/// The owner's stream, past its status event (so it is subscribed).
fn open(env: &TestEnv, rec: &ExecRecord) -> SseStream {
    let auth = bearer(&jwt::token(&rec.user_id, "user"));
    let mut s = open_stream(
        env.gw.addr(),
        &exec_path(&rec.id),
        &[("Authorization", &auth)],
    );
    assert_eq!(s.next_json(EVENT)["event_type"], "status");
    s
}

/// Publishes `count` events of `size` bytes in one pipeline: plain
/// `PUBLISH` (the Python producers), or the gateway's publish script
/// (history ids).
fn burst(env: &TestEnv, rec: &ExecRecord, count: u64, size: usize, ids: bool) {
    let channel = exec_channel(&rec.id);
    let limits = HistoryLimits {
        max_len: 1000,
        ttl_seconds: 3600,
    };
    let mut pipe = redis::pipe();
    for n in 1..=count {
        let e = event(rec, n, size);
        if ids {
            // The cap the gateways of this file run with (131,072 at most).
            let args =
                publish_command(&history_key(&channel), &channel, &e, limits, false, 131_072);
            let mut cmd = redis::cmd("EVAL");
            for a in &args[1..] {
                cmd.arg(a.as_slice());
            }
            pipe.add_command(cmd).ignore();
        } else {
            pipe.cmd("PUBLISH").arg(&channel).arg(&e).ignore();
        }
    }
    let mut con = env.redis.conn();
    let () = pipe.query(&mut con).expect("publish the burst");
}

/// What a reader saw of a burst of `count`: the event numbers (and ids)
/// in order, until the last one or the end of the stream.
struct Seen {
    numbers: Vec<u64>,
    ids: Vec<Option<String>>,
    /// The stream ended before the last event: how, and the comments.
    ended: Option<(EndKind, Vec<String>)>,
}

fn read_burst(s: &mut SseStream, count: u64) -> Seen {
    let mut seen = Seen {
        numbers: Vec::new(),
        ids: Vec::new(),
        ended: None,
    };
    let mut comments = Vec::new();
    while seen.numbers.last() != Some(&count) {
        match s.next(EVENT) {
            Next::Item(SseItem::Event(e)) => {
                let v: Value = e.json();
                seen.numbers
                    .push(v["n"].as_u64().expect("a numbered event"));
                seen.ids.push(e.id.clone());
            }
            Next::Item(SseItem::Comment(c)) => comments.push(c),
            Next::End(end) => {
                seen.ended = Some((end, comments));
                break;
            }
            Next::Timeout => panic!(
                "no event within {EVENT:?} after {} of {count}",
                seen.numbers.len()
            ),
        }
    }
    seen
}

#[test]
fn a_reader_that_keeps_reading_gets_a_large_burst_whole() {
    let env = TestEnv::start();
    let rec = running_exec(&env);
    let mut s = open(&env, &rec);
    burst(&env, &rec, 60, 20_000, false);
    let seen = read_burst(&mut s, 60);
    assert!(seen.ended.is_none(), "cut: {:?}", seen.ended);
    assert_eq!(seen.numbers, (1..=60).collect::<Vec<_>>());
    s.assert_open_for(Duration::from_millis(300));
}

/// 20 readers of one execution and one that opened it and never reads:
/// every reader gets all 300 × 20 KB, in order (issue 22 item 3).
#[test]
fn a_stalled_neighbour_holds_no_reader_up() {
    // 21 streams of one user: past the default of 10 per user.
    let env = TestEnv::start_with(|b| b.env("MAX_STREAMS_PER_USER", "0"));
    let rec = running_exec(&env);
    let _stalled = open(&env, &rec);
    let readers: Vec<SseStream> = (0..20).map(|_| open(&env, &rec)).collect();
    let handles: Vec<_> = readers
        .into_iter()
        .map(|mut s| thread::spawn(move || read_burst(&mut s, 300)))
        .collect();
    burst(&env, &rec, 300, 20_000, false);
    for (i, h) in handles.into_iter().enumerate() {
        let seen = h.join().expect("reader");
        assert!(seen.ended.is_none(), "reader {i} cut: {:?}", seen.ended);
        assert_eq!(seen.numbers, (1..=300).collect::<Vec<_>>(), "reader {i}");
    }
}

/// 400 × 100 KB (40 MB, past the 32 MiB backlog) while the browser
/// looks away for a second: with history ids every event arrives once, in
/// order, on the same connection (caught up from the history once the
/// backlog overflowed; some hosts buffer part of it themselves).
#[test]
fn a_reader_far_behind_a_burst_with_ids_catches_up_on_the_same_connection() {
    let env = TestEnv::start_with(|b| b.env("MAX_EVENT_BYTES", "131072"));
    // 40 MB behind: what the gateway does, not Redis' cut at 32 MB (a
    // "redis connection lost" end on a loaded machine, seen in a full run).
    env.redis.unlimited_pubsub_buffers();
    let rec = running_exec(&env);
    let mut s = open(&env, &rec);
    burst(&env, &rec, 400, 100_000, true);
    thread::sleep(Duration::from_secs(1));
    let seen = read_burst(&mut s, 400);
    assert!(seen.ended.is_none(), "cut: {:?}", seen.ended);
    assert_eq!(seen.numbers, (1..=400).collect::<Vec<_>>());
    assert!(
        seen.ids.iter().all(Option::is_some),
        "every event has its id"
    );
    let log = env.gw.log();
    let caught_up = log
        .lines()
        .filter(|l| l.contains(r#""event":"catch_up""#))
        .count();
    eprintln!("[bursts] {caught_up} catch-up(s)");
}

/// The same with plain `PUBLISH`: nothing can give those events back, so
/// the browser gets them all, or those it can and then a reconnectable
/// end saying so (`: events dropped`, an aborted body), never a gap.
#[test]
fn a_reader_far_behind_a_plain_burst_gets_it_all_or_is_told() {
    let env = TestEnv::start_with(|b| b.env("MAX_EVENT_BYTES", "131072"));
    // 40 MB behind: what the gateway does, not Redis' cut at 32 MB (a
    // "redis connection lost" end on a loaded machine, seen in a full run).
    env.redis.unlimited_pubsub_buffers();
    let rec = running_exec(&env);
    let mut s = open(&env, &rec);
    burst(&env, &rec, 400, 100_000, false);
    thread::sleep(Duration::from_secs(1));
    let seen = read_burst(&mut s, 400);
    let got = seen.numbers.len() as u64;
    assert_eq!(seen.numbers, (1..=got).collect::<Vec<_>>(), "in order");
    match seen.ended {
        None => assert_eq!(got, 400),
        Some((end, comments)) => {
            eprintln!("[bursts] told after {got} of 400: {comments:?}");
            // The reconnect signal both real clients act on: never a
            // clean end after a gap.
            assert!(matches!(end, EndKind::Abrupt(_)), "{end:?}");
            if comments.is_empty() && host() == Host::Spin && p3::p3_build() {
                // Spin's p3 build completes a body write once Spin holds
                // the bytes; aborting the body then drops those it has not
                // sent, the comment among them, when the reader is this
                // far behind (docs/LIMITS.md, known host difference).
                println!("[e2e] p3 under Spin: aborted without the comment Spin still held");
            } else {
                assert_eq!(comments.last().map(String::as_str), Some("events dropped"));
            }
        }
    }
}

/// One message larger than the gateway's 8 MiB frame limit, published
/// with plain `PUBLISH` (anyone who can reach Redis can send one), costs
/// only its own channel's streams, which are told (`: events dropped`, a
/// reconnectable end); another user's stream on the same instance and
/// subscription connection (p3) goes on (issue 26 item 1).
#[test]
fn a_message_too_large_to_decode_costs_only_its_channel() {
    let env = TestEnv::start();
    let rec = running_exec(&env);
    let mut victim = open(&env, &rec);
    let mut other = open_notifications(&env, "bob");
    let huge = format!(
        r#"{{"event_type":"tick","pad":"{}"}}"#,
        "x".repeat(9_000_000)
    );
    env.redis.publish(&exec_channel(&rec.id), &huge);
    let seen = read_burst(&mut victim, 1);
    assert!(seen.numbers.is_empty(), "{:?}", seen.numbers);
    let (end, comments) = seen.ended.expect("the victim's stream ends");
    assert!(matches!(end, EndKind::Abrupt(_)), "{end:?}");
    assert_eq!(comments.last().map(String::as_str), Some("events dropped"));
    env.redis
        .publish(&notif_channel("bob"), r#"{"title":"still here"}"#);
    assert_eq!(other.next_json(EVENT)["title"], "still here");
    let log = env.gw.log();
    assert!(log.contains("too large"), "the drop is logged");
    assert!(
        !log.contains("redis_subscription_lost"),
        "the connection went on"
    );
}

/// Per-instance admission (issue 26 item 4): a p3 instance serves at most
/// `max_streams_per_instance` streams, so it never takes more than the
/// memory its streams may need. At the limit it asks the host for no more
/// requests (`backpressure`), so the next stream is served by another
/// instance instead of being refused: the browser notices nothing, and the
/// streams already in are untouched. (The 503 with `retry-after` for a
/// request that reaches a full instance anyway is the unit test
/// `limits::tests::a_full_instance_asks_for_no_more_requests_and_refuses_one_that_comes`.)
#[test]
fn a_full_instance_sends_the_next_stream_to_another_instance() {
    let env = TestEnv::start_with(|b| {
        b.env("MAX_STREAMS_PER_INSTANCE", "3")
            .env("HEARTBEAT_SECONDS", "1")
            .env("MAX_STREAMS_PER_USER", "0")
    });
    let rec = running_exec(&env);
    let channel = exec_channel(&rec.id);
    let mut streams: Vec<SseStream> = (0..3).map(|_| open(&env, &rec)).collect();
    // The three share one instance: one subscription to the channel.
    let one_instance = env.redis.numsub(&channel);
    // The fourth is served, not refused (`open` fails with the body of
    // anything but a 200).
    streams.push(open(&env, &rec));
    if p3::p3_build() {
        assert_eq!(one_instance, 1, "three streams, one instance");
        // A second instance joined the channel for the fourth.
        env.redis
            .wait_numsub(&channel, 2, Duration::from_secs(10))
            .unwrap_or_else(|n| panic!("subscriptions to the channel: {n}, want 2"));
    } else {
        println!(
            "[e2e] a_full_instance_sends...: the limit is p3's (a p2 instance serves one \
             stream); four streams opened under {}",
            host().name()
        );
    }
    env.redis
        .publish(&channel, r#"{"event_type":"tick","n":1}"#);
    for s in &mut streams {
        assert_eq!(s.next_json(EVENT)["n"], 1, "every stream, both instances");
    }
    assert!(
        !env.gw.log().contains("instance_full"),
        "nobody was refused"
    );
}
