//! Paged history replay: pages asked as the browser drains them, live
//! messages racing the pages, the switch to live, a finished execution's
//! terminal event on a later page, and the per-stream memory budget.

use super::*;
use crate::config::{FRAME_OVERHEAD, MIN_HOLD_BYTES};

/// A history entry `5-n` whose event is padded to about `pad` bytes.
fn entry(n: u64, event_type: &str, pad: usize) -> (String, String) {
    let data = format!(
        r#"{{"event_type":"{event_type}","n":{n},"pad":"{}"}}"#,
        "x".repeat(pad)
    );
    (format!("5-{n}"), data)
}

fn entries(from: u64, to: u64, pad: usize) -> Vec<(String, String)> {
    (from..=to).map(|n| entry(n, "t", pad)).collect()
}

pub(super) fn page_reply(entries: &[(String, String)]) -> String {
    let pairs: Vec<(&str, &str)> = entries
        .iter()
        .map(|(i, d)| (i.as_str(), d.as_str()))
        .collect();
    history(&pairs)
}

/// The commands in bytes written to Redis (RESP arrays of bulk strings).
fn commands(wire: &str) -> Vec<Vec<String>> {
    let mut lines = wire.split("\r\n");
    let mut out = Vec::new();
    while let Some(head) = lines.next() {
        let Some(n) = head.strip_prefix('*') else {
            continue;
        };
        let n: usize = n.parse().unwrap();
        let args = (0..n)
            .map(|_| {
                lines.next();
                lines.next().unwrap().to_string()
            })
            .collect();
        out.push(args);
    }
    out
}

/// The `XRANGE` asks in `wire`: (start, count).
pub(super) fn xranges(wire: &str) -> Vec<(String, u64)> {
    commands(wire)
        .into_iter()
        .filter(|c| c[0] == "XRANGE")
        .map(|c| {
            assert_eq!(c[1], "history:{sse:exec:e1}");
            assert_eq!((c[3].as_str(), c[4].as_str()), ("+", "COUNT"));
            (c[2].clone(), c[5].parse().unwrap())
        })
        .collect()
}

/// Redis' answer to `XRANGE key start + COUNT count` over `all`.
fn answer(all: &[(String, String)], start: &str, count: u64) -> String {
    let from = EntryId::parse(start.trim_start_matches('(')).unwrap();
    let inclusive = !start.starts_with('(');
    let page: Vec<(String, String)> = all
        .iter()
        .filter(|(id, _)| {
            let id = EntryId::parse(id).unwrap();
            id > from || (inclusive && id == from)
        })
        .take(count as usize)
        .cloned()
        .collect();
    page_reply(&page)
}

/// The browser reads `chunk` bytes per step and Redis answers every page
/// from `all`, until the machine has nothing left to do. Returns what the
/// browser got and the most unsent bytes the outbox ever held.
struct Run {
    got: String,
    max_pending: usize,
    pages: usize,
    end: Option<Close>,
    /// The slot's `ZREM` went out.
    released: bool,
}

fn drive(m: &mut OwnConnection, all: &[(String, String)], chunk: usize, now: u64) -> Run {
    let mut run = Run {
        got: String::new(),
        max_pending: 0,
        pages: 0,
        end: None,
        released: false,
    };
    for _ in 0..1_000_000 {
        run.max_pending = run.max_pending.max(m.pending().len());
        let w = wire(m);
        run.released |= w.contains("ZREM");
        let asks = xranges(&w);
        for (start, count) in &asks {
            run.pages += 1;
            m.handle_bytes(answer(all, start, *count).as_bytes(), now);
        }
        while let Some(ev) = m.poll_event() {
            if let Event::Finished(why) = ev {
                run.end = Some(why);
            }
        }
        run.max_pending = run.max_pending.max(m.pending().len());
        let n = m.pending().len().min(chunk);
        if n == 0 && asks.is_empty() {
            break;
        }
        run.got += std::str::from_utf8(&m.pending()[..n]).unwrap();
        m.handle_body_took(n, now);
    }
    while let Some(ev) = m.poll_event() {
        if let Event::Finished(why) = ev {
            run.end = Some(why);
        }
    }
    run
}

fn opened_with_page(cfg: &Config, first: &[(String, String)], status: &str) -> OwnConnection {
    let mut m = opened(
        cfg,
        &format!("{}:1\r\n{}", page_reply(first), record("u1", status)),
    );
    assert!(matches!(m.poll_event(), Some(Event::Start)));
    m
}

fn numbered(from: u64, to: u64) -> Vec<(Option<String>, String)> {
    (from..=to)
        .map(|n| (Some(format!("5-{n}")), n.to_string()))
        .collect()
}

fn history_events(run: &Run) -> Vec<(Option<String>, String)> {
    events(&run.got)
        .into_iter()
        .filter(|(_, what)| what != "status")
        .collect()
}

#[test]
fn the_next_page_is_asked_only_when_the_browser_has_taken_the_last() {
    let c = cfg(&[]);
    let k = c.stream.page_entries;
    assert_eq!(k, 7);
    let all = entries(1, 20, 20_000);
    let mut m = opened_with_page(&c, &all[..7], "running");
    assert!(m.pending().len() > c.stream.low_water);
    assert!(xranges(&wire(&mut m)).is_empty(), "the page is not drained");
    // The browser takes part of it: still above the low water.
    let over = m.pending().len() - c.stream.low_water - 1;
    m.handle_body_took(over, 20);
    assert!(xranges(&wire(&mut m)).is_empty());
    m.handle_body_took(1, 21);
    assert_eq!(xranges(&wire(&mut m)), vec![("(5-7".to_string(), k)]);
    // One page at a time: taking more does not ask again.
    m.handle_body_took(100, 22);
    assert!(xranges(&wire(&mut m)).is_empty());
    m.handle_bytes(answer(&all, "(5-7", k).as_bytes(), 23);
    let run = drive(&mut m, &all, 16 * 1024, 30);
    assert_eq!(run.pages, 1, "the third page is the last (6 < 7 entries)");
    assert_eq!(run.end, None, "a running execution stays open");
    // Every event once, in order, after what the browser already took.
    let later = history_events(&run);
    assert_eq!(later.last(), Some(&(Some("5-20".into()), "20".into())));
    // Live now: duplicates of history are dropped, newer ones sent.
    m.handle_bytes(
        message("sse:exec:e1", r#"{"_sse_id":"5-20","event_type":"dup"}"#).as_bytes(),
        40,
    );
    m.handle_bytes(
        message("sse:exec:e1", r#"{"_sse_id":"5-21","event_type":"live"}"#).as_bytes(),
        41,
    );
    assert_eq!(
        events(&pending(&m)),
        vec![(Some("5-21".into()), "live".into())]
    );
}

#[test]
fn every_event_once_in_order_across_pages() {
    let all = entries(1, 50, 10);
    let mut m = opened_with_page(&cfg(&[]), &all[..7], "running");
    let run = drive(&mut m, &all, 1 << 20, 20);
    assert_eq!(run.pages, 7, "50 entries in pages of 7: 7 more pages");
    assert_eq!(history_events(&run), numbered(1, 50));
}

#[test]
fn live_messages_racing_the_pages_are_dropped_or_held_then_deduped() {
    let all = entries(1, 10, 10);
    let early_dup = message("sse:exec:e1", r#"{"_sse_id":"5-9","event_type":"t","n":9}"#);
    let early_plain = message("sse:exec:e1", r#"{"event_type":"plain1"}"#);
    let mut m = opened(
        &cfg(&[]),
        &format!(
            "{early_dup}{early_plain}{}:1\r\n{}",
            page_reply(&all[..7]),
            record("u1", "running")
        ),
    );
    assert!(matches!(m.poll_event(), Some(Event::Start)));
    // Small events: the second page is asked at once.
    let asks = xranges(&wire(&mut m));
    assert_eq!(asks, vec![("(5-7".to_string(), 7)]);
    // Live messages while it is read: 5-10 is in that page, the plain one
    // is held, and neither jumps ahead of the history.
    m.handle_bytes(
        message(
            "sse:exec:e1",
            r#"{"_sse_id":"5-10","event_type":"t","n":10}"#,
        )
        .as_bytes(),
        20,
    );
    m.handle_bytes(
        message("sse:exec:e1", r#"{"event_type":"plain2"}"#).as_bytes(),
        21,
    );
    let before: Vec<_> = history_events(&Run {
        got: pending(&m),
        max_pending: 0,
        pages: 0,
        end: None,
        released: false,
    });
    assert_eq!(before, numbered(1, 7), "held until the history is over");
    m.handle_bytes(answer(&all, "(5-7", 7).as_bytes(), 22);
    assert!(xranges(&wire(&mut m)).is_empty(), "3 < 7: the last page");
    // After the last page: live, deduplicated against what was read.
    m.handle_bytes(
        message(
            "sse:exec:e1",
            r#"{"_sse_id":"5-10","event_type":"t","n":10}"#,
        )
        .as_bytes(),
        23,
    );
    m.handle_bytes(
        message(
            "sse:exec:e1",
            r#"{"_sse_id":"5-11","event_type":"t","n":11}"#,
        )
        .as_bytes(),
        24,
    );
    let mut want = numbered(1, 10);
    want.push((None, "plain1".into()));
    want.push((None, "plain2".into()));
    want.push((Some("5-11".into()), "11".into()));
    let got: Vec<_> = events(&pending(&m))
        .into_iter()
        .filter(|(_, w)| w != "status")
        .collect();
    assert_eq!(got, want);
}

/// Plain messages (no history) beyond the hold budget during a replay
/// cannot be recovered: never lost silently, the browser gets a
/// reconnectable end (`retry:`, `: events dropped`, an aborted body).
#[test]
fn plain_messages_beyond_the_hold_budget_end_the_stream_reconnectably() {
    let all = entries(1, 14, 10);
    let mut m = opened_with_page(&cfg(&[]), &all[..7], "running");
    wire(&mut m);
    let big = format!(r#"{{"event_type":"plain","pad":"{}"}}"#, "y".repeat(20_000));
    let held = MIN_HOLD_BYTES.max(65536 + FRAME_OVERHEAD) / big.len();
    for _ in 0..held {
        m.handle_bytes(message("sse:exec:e1", &big).as_bytes(), 20);
    }
    assert!(m.wants_redis(), "within the budget");
    m.handle_bytes(message("sse:exec:e1", &big).as_bytes(), 20);
    let logs: Vec<String> = m.logs().collect();
    assert!(
        logs.iter()
            .any(|l| l.contains(r#""event":"messages_dropped""#) && l.contains(r#""messages":1"#)),
        "{logs:?}"
    );
    assert!(!m.wants_redis());
    assert!(pending(&m).ends_with("retry: 3000\n\n: events dropped\n\n"));
    m.handle_body_took(m.pending().len(), 21);
    assert!(matches!(
        m.poll_event(),
        Some(Event::Finished(Close::Overrun))
    ));
}

#[test]
fn a_finished_execution_ends_at_a_terminal_event_on_a_later_page() {
    let mut all = entries(1, 12, 10);
    all.push(entry(13, "result_stored", 10));
    all.extend(entries(14, 20, 10));
    let mut m = opened_with_page(&cfg(&[]), &all[..7], "completed");
    assert!(m.wants_redis(), "the history is not over yet");
    let run = drive(&mut m, &all, 1 << 20, 20);
    assert_eq!(run.end, Some(Close::Terminal));
    let got = history_events(&run);
    let mut want = numbered(1, 12);
    want.push((Some("5-13".into()), "13".into()));
    assert_eq!(got, want, "nothing after the terminal event");
    assert!(run.released || wire(&mut m).contains("ZREM"));
}

#[test]
fn a_finished_execution_without_a_terminal_in_history_ends_after_the_last_page() {
    let all = entries(1, 10, 10);
    let mut m = opened_with_page(&cfg(&[]), &all[..7], "completed");
    let run = drive(&mut m, &all, 1 << 20, 20);
    assert_eq!(run.end, Some(Close::Terminal));
    assert_eq!(history_events(&run), numbered(1, 10));
}

#[test]
fn replay_memory_stays_within_the_budget_whatever_the_history_holds() {
    // 1,000 events of 60 KB: 60 MB of history, read by a browser that
    // takes 16 KiB per step.
    let c = cfg(&[]);
    let all = entries(1, 1000, 60_000);
    let k = c.stream.page_entries as usize;
    let mut m = opened_with_page(&c, &all[..k], "running");
    let run = drive(&mut m, &all, 16 * 1024, 20);
    assert_eq!(run.end, None, "never a slow client: the browser reads");
    assert_eq!(history_events(&run), numbered(1, 1000));
    let page = c.stream.page_entries as usize * (60_100 + FRAME_OVERHEAD);
    assert!(
        run.max_pending <= c.stream.low_water + page,
        "outbox peaked at {} bytes, budget {}",
        run.max_pending,
        c.stream.low_water + page
    );
    assert!(run.max_pending < c.stream.outbox_bytes);
    assert_eq!(
        run.pages,
        1000_usize.div_ceil(k) + usize::from(1000 % k == 0) - 1
    );
}

#[test]
fn a_browser_that_stops_reading_mid_replay_is_a_slow_client() {
    let c = cfg(&[("write_stall_seconds", "2")]);
    let all = entries(1, 20, 20_000);
    let mut m = opened_with_page(&c, &all[..7], "running");
    assert_eq!(m.poll_timeout(), Some(10 + 2 * S));
    m.handle_timeout(10 + 2 * S);
    assert!(matches!(
        m.poll_event(),
        Some(Event::Finished(Close::SlowClient))
    ));
    assert!(wire(&mut m).contains("ZREM"));
}

#[test]
fn a_failed_page_ends_the_stream_as_redis_lost() {
    let all = entries(1, 10, 10);
    let mut m = opened_with_page(&cfg(&[]), &all[..7], "running");
    assert_eq!(xranges(&wire(&mut m)).len(), 1);
    m.handle_bytes(b"-ERR invalid start ID for the interval\r\n", 20);
    assert!(pending(&m).ends_with("retry: 3000\n\n: redis connection lost\n\n"));
    let n = m.pending().len();
    m.handle_body_took(n, 21);
    assert!(matches!(
        m.poll_event(),
        Some(Event::Finished(Close::RedisLost))
    ));
    // A reply that is not a page.
    let mut m = opened_with_page(&cfg(&[]), &all[..7], "running");
    wire(&mut m);
    m.handle_bytes(b":7\r\n", 20);
    assert!(pending(&m).contains(": redis connection lost"));
}

#[test]
fn a_resume_point_ahead_of_the_history_does_not_silence_live_events() {
    let ahead = format!("{}-0", (UNIX as u64) * 1000 + 60_000);
    let mut m = open(
        &cfg(&[]),
        &user("u1"),
        Topic::Execution("e1".into()),
        Some(&ahead),
    );
    m.poll_connect();
    assert!(
        wire(&mut m).contains(&format!("\r\n{ahead}\r\n")),
        "read from the resume point, inclusive"
    );
    m.handle_bytes(
        format!(
            "{HELLO}{}{}:1\r\n{}",
            subscribed("sse:exec:e1"),
            history(&[]),
            record("u1", "running")
        )
        .as_bytes(),
        10,
    );
    assert!(matches!(m.poll_event(), Some(Event::Start)));
    let live = format!(
        r#"{{"_sse_id":"{}-0","event_type":"t","n":1}}"#,
        UNIX * 1000
    );
    m.handle_bytes(message("sse:exec:e1", &live).as_bytes(), 11);
    let got = events(&pending(&m));
    assert_eq!(got[1], (None, "resume".into()), "not in the history: told");
    assert_eq!(got.last().unwrap().1, "1");
}

/// A `Last-Event-ID` that the history has (its first page is read from
/// it, inclusive) is real: a live message at or before it is one the
/// browser saw already (on p3 one published before the stream joined can
/// still arrive), and is not sent again.
#[test]
fn a_resume_point_found_in_the_history_makes_older_live_messages_duplicates() {
    let last = format!("{}-0", UNIX * 1000);
    let mut m = open(
        &cfg(&[]),
        &user("u1"),
        Topic::Execution("e1".into()),
        Some(&last),
    );
    m.poll_connect();
    wire(&mut m);
    let seen = r#"{"event_type":"t","n":1}"#;
    m.handle_bytes(
        format!(
            "{HELLO}{}{}:1\r\n{}",
            subscribed("sse:exec:e1"),
            history(&[(&last, seen)]),
            record("u1", "running")
        )
        .as_bytes(),
        10,
    );
    assert!(matches!(m.poll_event(), Some(Event::Start)));
    assert_eq!(
        events(&pending(&m)).len(),
        1,
        "the status only: the browser has {last}"
    );
    let live = |id: &str, n: u32| format!(r#"{{"_sse_id":"{id}","event_type":"t","n":{n}}}"#);
    m.handle_bytes(message("sse:exec:e1", &live(&last, 1)).as_bytes(), 11);
    let older = format!("{}-0", UNIX * 1000 - 5);
    m.handle_bytes(message("sse:exec:e1", &live(&older, 0)).as_bytes(), 11);
    let newer = format!("{}-1", UNIX * 1000);
    m.handle_bytes(message("sse:exec:e1", &live(&newer, 2)).as_bytes(), 11);
    let got = events(&pending(&m));
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[1], (Some(newer), "2".into()));
}

#[test]
fn a_result_stored_on_a_later_page_is_filled_from_a_read_after_that_page() {
    // The record read at open (with page 1) has no result yet; page 2
    // holds the `result_stored` published since: the record is read again
    // after that page, and the event goes out with the record's result.
    let mut all = entries(1, 7, 10);
    all.push(entry(8, "result_stored", 10));
    let mut m = opened_with_page(&cfg(&[]), &all[..7], "running");
    let n = m.pending().len();
    let mut got = pending(&m);
    m.handle_body_took(n, 20);
    let asks = xranges(&wire(&mut m));
    assert_eq!(asks.len(), 1);
    m.handle_bytes(answer(&all, &asks[0].0, asks[0].1).as_bytes(), 20);
    assert!(
        m.pending().is_empty(),
        "the result_stored waits for its result"
    );
    let w = wire(&mut m);
    assert!(
        commands(&w).contains(&vec!["HGET".into(), "exec:e1".into(), "result".into()]),
        "{w}"
    );
    m.handle_bytes(bulk(r#"{"exit_code":0}"#).as_bytes(), 21);
    got += &pending(&m);
    let last = events(&got).pop().unwrap();
    assert_eq!(last, (Some("5-8".into()), "8".into()));
    assert!(
        got.ends_with("\"result\":{\"exit_code\":0}}\n\n"),
        "filled: {got}"
    );
    let n = m.pending().len();
    m.handle_body_took(n, 22);
    assert!(matches!(
        m.poll_event(),
        Some(Event::Finished(Close::Terminal))
    ));
}

#[test]
fn a_result_stored_on_the_first_page_is_filled_from_the_record_read_with_it() {
    let all = vec![entry(1, "a", 10), entry(2, "result_stored", 10)];
    let rec = format!(
        "%3\r\n{}{}{}{}{}{}",
        bulk("user_id"),
        bulk("u1"),
        bulk("status"),
        bulk("completed"),
        bulk("result"),
        bulk(r#"{"exit_code":3}"#)
    );
    let mut m = opened(&cfg(&[]), &format!("{}:1\r\n{rec}", page_reply(&all)));
    assert!(matches!(m.poll_event(), Some(Event::Start)));
    let got = pending(&m);
    assert!(!wire(&mut m).contains("HGET"), "no second read");
    assert_eq!(
        history_events(&Run {
            got: got.clone(),
            max_pending: 0,
            pages: 0,
            end: None,
            released: false,
        }),
        numbered(1, 2)
    );
    assert!(
        got.ends_with("\"result\":{\"exit_code\":3}}\n\n"),
        "filled, and the terminal event ends it before the stored result: {got}"
    );
}

/// A history holding entries far larger than `max_event_bytes` (written
/// around the publish script's cap) stays readable: each oversized entry
/// is discarded unread and skipped with a log line, in its place; every
/// other event arrives once, in order, and the connection is never lost
/// (before, a page of seven 2 MB entries was a reply over the cap: every
/// open of the execution a 503, and on p3 the shared connection reset).
#[test]
fn oversized_history_entries_are_skipped_not_fatal() {
    let c = cfg(&[]);
    let big = |n: u64| entry(n, "t", 2_000_000);
    let all: Vec<(String, String)> = (1..=20)
        .map(|n| match n {
            3 | 9..=15 => big(n),
            _ => entry(n, "t", 10),
        })
        .collect();
    let mut m = opened_with_page(&c, &all[..7], "running");
    let run = drive(&mut m, &all, 1 << 20, 20);
    assert_eq!(run.end, None, "the stream stays open");
    let want: Vec<_> = numbered(1, 20)
        .into_iter()
        .filter(|(_, n)| !matches!(n.parse::<u64>().unwrap(), 3 | 9..=15))
        .collect();
    assert_eq!(history_events(&run), want);
    let logs: Vec<String> = m.logs().collect();
    let skipped = logs
        .iter()
        .filter(|l| l.contains("message_skipped") && l.contains("too large"))
        .count();
    assert_eq!(skipped, 8, "{logs:?}");
    assert!(!logs.iter().any(|l| l.contains("redis")), "{logs:?}");
    // A live copy of a skipped entry is not sent either.
    m.handle_bytes(
        message(
            "sse:exec:e1",
            r#"{"_sse_id":"5-15","event_type":"t","n":15}"#,
        )
        .as_bytes(),
        40,
    );
    assert_eq!(events(&pending(&m)), vec![]);
}
