//! Bursts: a browser that keeps reading is never cut, whatever arrives at
//! once (the p3 hub hands a stream its whole burst in one go; a p2 read
//! can hold many messages too); past the backlog, messages with history
//! ids are caught up from the history, plain ones end the stream
//! reconnectably, never silently.

use super::replay::{page_reply, xranges};
use super::*;
use crate::config::REPLAY_PAGE_BYTES;

/// `n` events of about `pad` bytes, plain or with history ids `5-k`.
fn burst(n: u64, pad: usize, ids: bool) -> Vec<String> {
    (1..=n)
        .map(|k| {
            let id = if ids {
                format!(r#""_sse_id":"5-{k}","#)
            } else {
                String::new()
            };
            format!(
                r#"{{{id}"event_type":"t","n":{k},"pad":"{}"}}"#,
                "x".repeat(pad)
            )
        })
        .collect()
}

/// The event numbers in SSE text.
fn numbers(sse: &str) -> Vec<u64> {
    sse.split("\n\n")
        .filter_map(|b| b.split("\"n\":").nth(1))
        .filter_map(|n| {
            let digits: String = n.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

/// A live stream whose backlog is the old 8 MiB (the default is 32 MiB),
/// so a burst can pass it without 40 MB of test data.
fn live_small_backlog() -> (OwnConnection, Config) {
    let mut c = cfg(&[]);
    c.stream.backlog_bytes = 8 << 20;
    let mut m = opened(&c, &ok_replies());
    assert!(matches!(m.poll_event(), Some(Event::Start)));
    let n = m.pending().len();
    m.handle_body_took(n, 10);
    m.poll_transmit();
    (m, c)
}

/// Reads like a browser that keeps up: 64 KiB at a time until nothing
/// is pending; returns what it read.
fn read_all(m: &mut OwnConnection, now: u64) -> String {
    let mut got = String::new();
    while !m.pending().is_empty() {
        let n = m.pending().len().min(64 * 1024);
        got += std::str::from_utf8(&m.pending()[..n]).unwrap();
        m.handle_body_took(n, now);
    }
    got
}

#[test]
fn a_burst_in_one_redis_read_reaches_a_reader_that_keeps_reading() {
    // 300 × 20 KB (6 MB) plain messages in one read of a p2 connection.
    let mut m = live();
    let wire: String = burst(300, 20_000, false)
        .iter()
        .map(|p| message("sse:exec:e1", p))
        .collect();
    m.handle_bytes(wire.as_bytes(), 11);
    assert!(
        m.pending().len() <= cfg(&[]).stream.outbox_bytes + 21_000,
        "the rest waits in the backlog, not the outbox"
    );
    let got = read_all(&mut m, 12);
    assert_eq!(numbers(&got), (1..=300).collect::<Vec<_>>());
    assert!(m.wants_redis() && m.poll_event().is_none(), "not cut");
}

#[test]
fn past_the_backlog_a_burst_with_ids_is_caught_up_from_the_history() {
    let (mut m, c) = live_small_backlog();
    let events = burst(600, 20_000, true); // 12 MB > the 8 MiB backlog
    for p in &events {
        m.handle_bytes(message("sse:exec:e1", p).as_bytes(), 11);
    }
    let logs: Vec<String> = m.logs().collect();
    assert!(
        logs.iter().any(|l| l.contains(r#""event":"catch_up""#)),
        "{logs:?}"
    );
    assert!(m.wants_redis(), "not cut");
    // The browser reads; the history is read from the last id it was given.
    let mut got = read_all(&mut m, 12);
    let sent = numbers(&got);
    let last = *sent.last().unwrap();
    assert_eq!(sent, (1..=last).collect::<Vec<_>>());
    let mut pages = 0;
    loop {
        let asks = xranges(&wire(&mut m));
        let Some((start, count)) = asks.first().cloned() else {
            break;
        };
        pages += 1;
        let after: u64 = start.trim_start_matches("(5-").parse().unwrap();
        let page: Vec<(String, String)> = (after + 1..=600)
            .take(count as usize)
            .map(|k| {
                let data = events[k as usize - 1].replace(&format!(r#""_sse_id":"5-{k}","#), "");
                (format!("5-{k}"), data)
            })
            .collect();
        m.handle_bytes(page_reply(&page).as_bytes(), 13);
        // Live messages racing the pages: dropped, the history has them.
        m.handle_bytes(message("sse:exec:e1", &events[599]).as_bytes(), 13);
        got += &read_all(&mut m, 14);
        assert!(m.pending().len() <= c.stream.low_water + REPLAY_PAGE_BYTES);
    }
    assert!(pages > 1, "{pages} pages");

    assert_eq!(numbers(&got), (1..=600).collect::<Vec<_>>());
    // Live again: a newer one goes straight out.
    let next = r#"{"_sse_id":"5-601","event_type":"t","n":601}"#;
    m.handle_bytes(message("sse:exec:e1", next).as_bytes(), 15);
    assert_eq!(numbers(&pending(&m)), vec![601]);
}

#[test]
fn past_the_backlog_plain_messages_end_the_stream_reconnectably() {
    let (mut m, _) = live_small_backlog();
    for p in burst(600, 20_000, false) {
        m.handle_bytes(message("sse:exec:e1", &p).as_bytes(), 11);
    }
    let logs: Vec<String> = m.logs().collect();
    assert!(
        logs.iter()
            .any(|l| l.contains(r#""event":"messages_dropped""#)),
        "{logs:?}"
    );
    let got = read_all(&mut m, 12);
    assert!(got.ends_with("retry: 3000\n\n: events dropped\n\n"));
    assert!(matches!(
        m.poll_event(),
        Some(Event::Finished(Close::Overrun))
    ));
}

#[test]
fn a_stalled_reader_is_cut_by_time_not_by_bytes() {
    let c = cfg(&[("write_stall_seconds", "2")]);
    let mut m = opened(&c, &ok_replies());
    m.poll_event();
    for p in burst(100, 20_000, false) {
        m.handle_bytes(message("sse:exec:e1", &p).as_bytes(), 11);
    }
    assert!(m.poll_event().is_none(), "2 MB behind, not cut for it");
    m.handle_timeout(10 + 2 * S);
    assert!(matches!(
        m.poll_event(),
        Some(Event::Finished(Close::SlowClient))
    ));
}

/// A message too large for the connection's frame limit is discarded
/// unread (the connection goes on): the browser is told, never a gap.
#[test]
fn a_message_too_large_to_decode_ends_the_stream_reconnectably() {
    let mut m = live();
    let huge = "x".repeat(crate::redis::session::MAX_REPLY_BYTES + 1);
    m.handle_bytes(message("sse:exec:e1", &huge).as_bytes(), 11);
    let logs: Vec<String> = m.logs().collect();
    assert!(
        logs.iter()
            .any(|l| l.contains(r#""event":"messages_dropped""#) && l.contains("too large")),
        "{logs:?}"
    );
    assert!(!logs.iter().any(|l| l.contains("redis_lost")), "{logs:?}");
    assert!(pending(&m).ends_with("retry: 3000\n\n: events dropped\n\n"));
}
