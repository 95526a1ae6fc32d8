//! The stream machine's rules, driven with RESP bytes and a fake clock.

use super::own::OwnConnection;
use super::test_support::*;
use super::*;

const HELLO: &str = "%1\r\n+server\r\n+redis\r\n";

fn open(cfg: &Config, who: &Identity, topic: Topic, last: Option<&str>) -> OwnConnection {
    OwnConnection::open(cfg, who, opening(topic, last))
}

fn wire(m: &mut OwnConnection) -> String {
    String::from_utf8(m.poll_transmit()).unwrap()
}

fn bulk(s: &str) -> String {
    format!("${}\r\n{s}\r\n", s.len())
}

fn subscribed(channel: &str) -> String {
    format!(">3\r\n+subscribe\r\n{}:1\r\n", bulk(channel))
}

fn record(user: &str, status: &str) -> String {
    format!(
        "%2\r\n{}{}{}{}",
        bulk("user_id"),
        bulk(user),
        bulk("status"),
        bulk(status)
    )
}

fn history(entries: &[(&str, &str)]) -> String {
    let mut s = format!("*{}\r\n", entries.len());
    for (id, data) in entries {
        s += &format!("*2\r\n{}*2\r\n{}{}", bulk(id), bulk("data"), bulk(data));
    }
    s
}

fn message(channel: &str, payload: &str) -> String {
    format!(">3\r\n+message\r\n{}{}", bulk(channel), bulk(payload))
}

fn pending(m: &OwnConnection) -> String {
    String::from_utf8(m.pending().to_vec()).unwrap()
}

/// An execution stream of `u1` opened with `replies` after the subscription
/// (history, acquire, record, in pipeline order).
fn opened(cfg: &Config, replies: &str) -> OwnConnection {
    let mut m = open(cfg, &user("u1"), Topic::Execution("e1".into()), None);
    m.poll_connect().unwrap();
    m.poll_transmit();
    m.handle_bytes(
        format!("{HELLO}{}{replies}", subscribed("sse:exec:e1")).as_bytes(),
        10,
    );
    m
}

fn ok_replies() -> String {
    format!("{}:1\r\n{}", history(&[]), record("u1", "running"))
}

fn live() -> OwnConnection {
    let mut m = opened(&cfg(&[]), &ok_replies());
    assert!(matches!(m.poll_event(), Some(Event::Start)));
    let n = m.pending().len();
    m.handle_body_took(n, 10);
    m.poll_transmit();
    m
}

fn refusal(m: &mut OwnConnection) -> u16 {
    match m.poll_event() {
        Some(Event::Refuse(e)) => e.status,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn opening_is_one_pipeline_in_order() {
    let mut m = open(&cfg(&[]), &user("u1"), Topic::Execution("e1".into()), None);
    assert_eq!(m.poll_connect().map(|t| t.port), Some(6379));
    assert_eq!(m.poll_connect(), None, "one connection");
    let w = wire(&mut m);
    let order = ["HELLO", "SUBSCRIBE", "XRANGE", "EVAL", "HGETALL"];
    let at: Vec<usize> = order
        .iter()
        .map(|c| w.find(&format!("\r\n{c}\r\n")).unwrap())
        .collect();
    assert!(at.windows(2).all(|p| p[0] < p[1]), "{w}");
    assert!(w.contains("history:{sse:exec:e1}\r\n$1\r\n-\r\n$1\r\n+\r\n$5\r\nCOUNT\r\n$1\r\n7"));
    assert!(m.wants_redis());
    assert_eq!(m.poll_timeout(), Some(3000 * 1_000_000));
}

#[test]
fn an_open_stream_sends_retry_status_history_then_early_messages() {
    let early = message("sse:exec:e1", r#"{"_sse_id":"5-2","event_type":"b"}"#);
    let dup = message("sse:exec:e1", r#"{"_sse_id":"5-1","event_type":"a"}"#);
    let hist = history(&[("5-1", r#"{"event_type":"a"}"#)]);
    let mut m = opened(
        &cfg(&[]),
        &format!("{dup}{early}{hist}:1\r\n{}", record("u1", "running")),
    );
    assert!(matches!(m.poll_event(), Some(Event::Start)));
    assert_eq!(
        pending(&m),
        "retry: 3000\n\n\
         data: {\"event_type\":\"status\",\"execution_id\":\"e1\",\"timestamp\":null,\"event_id\":null,\"status\":\"running\",\"result\":null}\n\n\
         id: 5-1\ndata: {\"event_type\":\"a\"}\n\n\
         id: 5-2\ndata: {\"event_type\":\"b\"}\n\n"
    );
    assert!(m.logs().any(|l| l.contains("stream_opened")));
}

#[test]
fn no_limit_no_slot_commands() {
    let c = cfg(&[("max_streams_per_user", "0")]);
    let mut m = open(&c, &user("u1"), Topic::Execution("e1".into()), None);
    let w = wire(&mut m);
    assert!(!w.contains("EVAL"));
    m.handle_bytes(
        format!(
            "{HELLO}{}{}{}",
            subscribed("sse:exec:e1"),
            history(&[]),
            record("u1", "x")
        )
        .as_bytes(),
        1,
    );
    assert!(matches!(m.poll_event(), Some(Event::Start)));
    m.handle_body_gone(2);
    assert!(matches!(
        m.poll_event(),
        Some(Event::Finished(Close::ClientGone))
    ));
    assert_eq!(wire(&mut m), "", "no ZREM without a slot");
}

#[test]
fn redis_trouble_while_opening_is_503_with_the_slot_given_back() {
    let mut m = opened(&cfg(&[]), &history(&[]));
    m.handle_bytes(b":1\r\n", 11);
    m.handle_timeout(3000 * 1_000_000 - 1);
    assert!(m.poll_event().is_none(), "not yet");
    m.handle_timeout(3000 * 1_000_000);
    assert_eq!(refusal(&mut m), 503);
    assert!(wire(&mut m).contains("ZREM"), "on the stream's connection");
    // The acquire's reply never came: it may have run, so give back.
    let mut m = opened(&cfg(&[]), "");
    m.handle_redis_failure("connection closed", 5);
    assert_eq!(refusal(&mut m), 503);
    assert_eq!(m.poll_commands(0)[0].tag, Tag::Release);
    assert!(m.logs().any(|l| l.contains("redis_unavailable")));
    // It said 0: nothing to give back.
    let mut m = opened(&cfg(&[]), &format!("{}:0\r\n", history(&[])));
    m.handle_redis_failure("connection closed", 5);
    assert_eq!(refusal(&mut m), 503);
    assert!(m.poll_commands(0).is_empty());
}

#[test]
fn refusals_without_redis() {
    let mut m = open(
        &cfg(&[]),
        &user("u1"),
        Topic::ReplayStatus("r".into()),
        None,
    );
    assert_eq!(refusal(&mut m), 403);
    assert_eq!(m.poll_connect(), None);
    let mut m = open(&cfg(&[]), &user("a b"), Topic::Notifications, None);
    assert_eq!(refusal(&mut m), 400);
}

#[test]
fn out_of_range_or_future_last_event_ids_are_ignored() {
    for last in [
        "18446744073709551615-18446744073709551615",
        "99999999999999-0",
        "garbage",
    ] {
        let mut m = open(&cfg(&[]), &user("u1"), Topic::Notifications, Some(last));
        let w = wire(&mut m);
        assert!(
            !w.contains("XRANGE"),
            "{last}: no history without a resume point"
        );
        assert!(m.logs().any(|l| l.contains("last_event_id_ignored")));
    }
    let recent = format!("{}-3", UNIX * 1000);
    let mut m = open(&cfg(&[]), &user("u1"), Topic::Notifications, Some(&recent));
    assert!(wire(&mut m).contains(&format!("\r\n{recent}\r\n")));
    let mut m = open(
        &cfg(&[]),
        &user("u1"),
        Topic::Execution("e".into()),
        Some("1-1-1"),
    );
    assert!(
        wire(&mut m).contains("\r\n$1\r\n-\r\n"),
        "execution: whole history"
    );
}

#[test]
fn cluster_side_commands_follow_the_subscription_and_release_on_failure() {
    let c = cfg(&[("redis_cluster", "true")]);
    let mut m = open(&c, &user("u1"), Topic::Execution("e1".into()), None);
    m.poll_connect();
    let w = wire(&mut m);
    assert!(w.contains("SSUBSCRIBE") && w.contains("XRANGE") && !w.contains("HGETALL"));
    m.handle_bytes(
        format!(
            "{HELLO}>3\r\n+ssubscribe\r\n{}:1\r\n{}",
            bulk("sse:exec:e1"),
            history(&[])
        )
        .as_bytes(),
        1,
    );
    let mut cmds = m.poll_commands(0);
    assert_eq!(cmds.len(), 2);
    let mut acquire = cmds.remove(0);
    let mut rec = cmds.remove(0);
    assert!(acquire
        .transmit()
        .ends_with(b"$2\r\nm1\r\n$5\r\n50000\r\n$2\r\n10\r\n$5\r\n50000\r\n"));
    acquire.receive(format!("{HELLO}:1\r\n").as_bytes());
    m.handle_command(acquire, 2);
    assert!(m.poll_event().is_none(), "waits for the record");
    rec.failed("connection refused");
    m.handle_command(rec, 3);
    assert_eq!(refusal(&mut m), 503);
    let release = m.poll_commands(0);
    assert_eq!(release.len(), 1, "the taken slot is given back");
    assert_eq!(release[0].tag, Tag::Release);
}

#[test]
fn cluster_redirects_rebuild_the_pipeline() {
    let c = cfg(&[("redis_cluster", "true")]);
    let mut m = open(&c, &user("u1"), Topic::Notifications, None);
    m.poll_connect();
    let first = wire(&mut m);
    m.handle_bytes(format!("{HELLO}-MOVED 12 10.0.0.5:7002\r\n").as_bytes(), 1);
    let to = m.poll_connect().unwrap();
    assert_eq!((to.host.as_str(), to.port), ("10.0.0.5", 7002));
    assert_eq!(wire(&mut m), first);
    for _ in 0..MAX_REDIRECTS {
        m.poll_connect();
        m.handle_bytes(format!("{HELLO}-MOVED 12 10.0.0.5:7002\r\n").as_bytes(), 1);
    }
    assert_eq!(refusal(&mut m), 503);
}

#[test]
fn heartbeat_pings_and_renews_then_a_missing_pong_is_redis_lost() {
    let mut m = live();
    let hb = 15 * S;
    assert_eq!(
        m.poll_timeout(),
        Some(10 + hb),
        "the heartbeat is the nearest deadline"
    );
    m.handle_timeout(10 + hb);
    assert_eq!(pending(&m), ": ping\n\n");
    let w = wire(&mut m);
    assert!(w.contains("PING") && w.contains("EVAL"), "{w}");
    m.handle_body_took(8, 10 + hb);
    m.handle_bytes(b"+PONG\r\n:1\r\n", 11 + hb);
    m.handle_timeout(10 + 2 * hb);
    assert!(wire(&mut m).contains("PING"), "PONG came: ping again");
    m.handle_body_took(8, 10 + 2 * hb);
    m.handle_timeout(10 + 3 * hb);
    assert_eq!(
        pending(&m),
        ": ping\n\nretry: 3000\n\n: redis connection lost\n\n"
    );
    assert!(!m.wants_redis());
    let n = m.pending().len();
    m.handle_body_took(n, 10 + 3 * hb);
    assert!(matches!(
        m.poll_event(),
        Some(Event::Finished(Close::RedisLost))
    ));
    assert!(wire(&mut m).contains("ZREM"));
    assert!(m.logs().any(|l| l.contains("no PONG")));
}

#[test]
fn deadline_order_token_lifetime_stall() {
    // The token runs out before the first heartbeat.
    let c = cfg(&[("jwt_leeway_seconds", "0")]);
    let who = Identity {
        expires_at: UNIX + 5,
        ..user("u1")
    };
    let mut m = open(&c, &who, Topic::Execution("e1".into()), None);
    m.poll_connect();
    m.handle_bytes(
        format!("{HELLO}{}{}", subscribed("sse:exec:e1"), ok_replies()).as_bytes(),
        0,
    );
    m.poll_event();
    let n = m.pending().len();
    m.handle_body_took(n, 0);
    assert_eq!(m.poll_timeout(), Some(5 * S));
    m.handle_timeout(5 * S);
    assert!(pending(&m).contains("event: token_expired"));
    // Lifetime before the heartbeat.
    let c = cfg(&[("max_stream_seconds", "10"), ("heartbeat_seconds", "60")]);
    let mut m = opened(&c, &ok_replies());
    m.poll_event();
    assert_eq!(
        m.poll_timeout(),
        Some(10 * S),
        "lifetime counts from the open"
    );
    // Bytes pending: the stall deadline.
    let c = cfg(&[("write_stall_seconds", "2")]);
    let mut m = opened(&c, &ok_replies());
    m.poll_event();
    assert_eq!(m.poll_timeout(), Some(10 + 2 * S));
    m.handle_timeout(10 + 2 * S);
    assert!(matches!(
        m.poll_event(),
        Some(Event::Finished(Close::SlowClient))
    ));
    assert!(wire(&mut m).contains("ZREM"));
}

#[test]
fn a_closed_stream_with_bytes_pending_waits_for_the_flush_deadline_only() {
    let mut m = live();
    m.handle_bytes(
        message("sse:exec:e1", r#"{"event_type":"execution_failed"}"#).as_bytes(),
        20 * S,
    );
    assert!(!m.wants_redis(), "terminal: Redis no longer read");
    // The heartbeat would be due at 15 s, in the past now: not a deadline.
    assert_eq!(m.poll_timeout(), Some(25 * S));
    m.handle_timeout(21 * S);
    assert!(m.poll_event().is_none());
    m.handle_timeout(25 * S);
    // The terminal event never left: not a clean end (the body is aborted).
    assert!(matches!(
        m.poll_event(),
        Some(Event::Finished(Close::SlowClient))
    ));
    assert!(m.poll_timeout().is_none());
}

#[test]
fn a_terminal_event_ends_the_stream_once_written() {
    let mut m = live();
    m.handle_bytes(
        message("sse:exec:e1", r#"{"event_type":"execution_failed"}"#).as_bytes(),
        20,
    );
    let n = m.pending().len();
    m.handle_body_took(n - 1, 21);
    assert!(m.poll_event().is_none());
    m.handle_body_took(1, 22);
    assert!(matches!(
        m.poll_event(),
        Some(Event::Finished(Close::Terminal))
    ));
    let logs: Vec<String> = m.logs().collect();
    assert!(
        logs.last()
            .unwrap()
            .contains(r#""reason":"terminal event""#),
        "{logs:?}"
    );
    assert!(wire(&mut m).contains("ZREM"));
}

#[test]
fn a_finished_execution_sends_its_result_and_ends() {
    let replies = format!("{}:1\r\n{}", history(&[]), record("u1", "completed"));
    let mut m = opened(&cfg(&[]), &replies);
    assert!(matches!(m.poll_event(), Some(Event::Start)));
    assert!(!m.wants_redis());
    let n = m.pending().len();
    m.handle_body_took(n, 11);
    assert!(matches!(
        m.poll_event(),
        Some(Event::Finished(Close::Terminal))
    ));
}

#[test]
fn garbage_from_redis_ends_a_live_stream_as_redis_lost() {
    let mut m = live();
    m.handle_bytes(b"?what\r\n", 20);
    assert!(pending(&m).contains(": redis connection lost"));
    assert!(m.logs().any(|l| l.contains("redis_lost")));
}

#[test]
fn cluster_renewals_and_release_go_through_their_own_commands() {
    let c = cfg(&[("redis_cluster", "true")]);
    let mut m = open(&c, &user("u1"), Topic::Notifications, None);
    m.poll_connect();
    m.poll_transmit();
    m.handle_bytes(
        format!("{HELLO}>3\r\n+ssubscribe\r\n{}:1\r\n", bulk("sse:notif:u1")).as_bytes(),
        1,
    );
    let mut acquire = m.poll_commands(0).remove(0);
    acquire.receive(b"+OK\r\n:1\r\n");
    m.handle_command(acquire, 2);
    assert!(matches!(m.poll_event(), Some(Event::Start)));
    m.handle_timeout(2 + 15 * S);
    assert!(wire(&mut m).contains("PING"));
    let mut renew = m.poll_commands(0).remove(0);
    assert_eq!(renew.tag, Tag::Renew);
    renew.failed("refused");
    m.handle_command(renew, 3 + 15 * S);
    assert!(m.logs().any(|l| l.contains("slot_renew_failed")));
    m.handle_body_gone(4 + 15 * S);
    assert!(matches!(
        m.poll_event(),
        Some(Event::Finished(Close::ClientGone))
    ));
    assert_eq!(m.poll_commands(0)[0].tag, Tag::Release);
}

mod burst;
mod drop_in;
mod replay;

/// `Finished` never comes before `Start` (the shells' one answer to it,
/// `Event::unstarted`, is for a machine bug): a stream that ends while
/// opening is refused, one that ends at once after its first bytes has
/// started first, whatever arrives in the same read.
#[test]
fn finished_never_comes_before_start() {
    let finished = format!("{}:1\r\n{}", history(&[]), record("u1", "completed"));
    let garbage = "?what\r\n".to_string();
    let refused = format!("{}:0\r\n{}", history(&[]), record("u1", "running"));
    for replies in [finished, garbage, refused] {
        let mut m = opened(&cfg(&[]), &replies);
        let n = m.pending().len();
        m.handle_body_took(n, 11);
        m.handle_body_gone(12);
        let mut started = false;
        while let Some(ev) = m.poll_event() {
            match ev {
                Event::Start => started = true,
                Event::Finished(why) => assert!(started, "{why:?} before Start: {replies:?}"),
                Event::Refuse(_) => assert!(!started),
            }
        }
    }
}
