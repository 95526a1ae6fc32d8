//! [`Wiring::Shared`]: the same rules with the subscription in the
//! instance's hub and the commands on the shared command connection.

use super::test_support::*;
use super::*;
use crate::redis::session::Tag;

/// The machine's operations as the p3 shell carries them out: the
/// channel to join on the hub, the commands for the shared connection.
/// None rides a connection of the stream's own.
pub(super) trait Carried {
    fn join_channel(&mut self) -> Option<String>;
    fn take_requests(&mut self) -> Vec<Run>;
}

impl Carried for StreamMachine {
    fn join_channel(&mut self) -> Option<String> {
        let at = self.ops.iter().position(|op| matches!(op, Op::Join(_)))?;
        match self.ops.remove(at) {
            Some(Op::Join(channel)) => Some(channel),
            _ => None,
        }
    }

    fn take_requests(&mut self) -> Vec<Run> {
        let mut runs = Vec::new();
        self.ops.retain(|op| match op {
            Op::Run(r) => {
                runs.push(r.clone());
                false
            }
            Op::Join(_) => true,
        });
        assert!(runs.iter().all(|r| !r.on_stream), "{runs:?}");
        runs
    }
}

/// No operation waiting asks for a connection of the stream's own.
fn nothing_on_stream(m: &StreamMachine) -> bool {
    !m.ops
        .iter()
        .any(|op| matches!(op, Op::Run(r) if r.on_stream))
}

fn open(cfg: &Config) -> StreamMachine {
    let req = opening(Topic::Execution("e1".into()), None);
    StreamMachine::open(Wiring::Shared, cfg, &user("u1"), req)
}

fn record(user: &str, status: &str) -> Value {
    let pair = |k: &str, v: &str| (Value::Bulk(k.into()), Value::Bulk(v.into()));
    Value::Map(vec![pair("user_id", user), pair("status", status)])
}

fn history(entries: &[(&str, &str)]) -> Value {
    Value::Array(
        entries
            .iter()
            .map(|(id, data)| {
                Value::Array(vec![
                    Value::Bulk(id.as_bytes().to_vec()),
                    Value::Array(vec![
                        Value::Bulk(b"data".to_vec()),
                        Value::Bulk(data.as_bytes().to_vec()),
                    ]),
                ])
            })
            .collect(),
    )
}

fn tags(requests: &[Run]) -> Vec<Tag> {
    requests.iter().map(|r| r.tag).collect()
}

fn pending(m: &StreamMachine) -> String {
    String::from_utf8(m.pending().to_vec()).unwrap()
}

/// Opened, subscribed, every command answered with `answer(tag)`.
fn answered(answer: impl Fn(Tag) -> Result<Value, String>) -> StreamMachine {
    let mut m = open(&cfg(&[]));
    assert_eq!(m.join_channel().as_deref(), Some("sse:exec:e1"));
    m.handle_subscribed(5);
    for r in m.take_requests() {
        m.handle_reply(r.tag, answer(r.tag), 6);
    }
    m
}

fn ok(tag: Tag) -> Result<Value, String> {
    Ok(match tag {
        Tag::Acquire => Value::Int(1),
        Tag::Record => record("u1", "running"),
        Tag::History => history(&[("5-1", r#"{"event_type":"a"}"#)]),
        _ => Value::Nil,
    })
}

#[test]
fn no_connection_of_its_own_and_commands_only_after_the_subscription() {
    let mut m = open(&cfg(&[]));
    assert!(nothing_on_stream(&m));
    assert!(nothing_on_stream(&m));
    assert_eq!(m.join_channel().as_deref(), Some("sse:exec:e1"));
    assert_eq!(m.join_channel(), None, "joined once");
    assert!(
        m.take_requests().is_empty(),
        "nothing before the confirmation"
    );
    // A message before the record and history were read is kept.
    m.handle_message(br#"{"_sse_id":"5-2","event_type":"b"}"#, 4);
    m.handle_subscribed(5);
    let requests = m.take_requests();
    let mut t = tags(&requests);
    t.sort_by_key(|t| format!("{t:?}"));
    assert_eq!(t, vec![Tag::Acquire, Tag::History, Tag::Record]);
    let xrange = requests.iter().find(|r| r.tag == Tag::History).unwrap();
    assert_eq!(xrange.args[0], b"XRANGE");
    for r in requests {
        assert!(
            m.poll_event().is_none(),
            "decided only once every answer is in"
        );
        m.handle_reply(r.tag, ok(r.tag), 6);
    }
    assert!(matches!(m.poll_event(), Some(Event::Start)));
    assert_eq!(
        pending(&m),
        "retry: 3000\n\n\
         data: {\"event_type\":\"status\",\"execution_id\":\"e1\",\"timestamp\":null,\"event_id\":null,\"status\":\"running\",\"result\":null}\n\n\
         id: 5-1\ndata: {\"event_type\":\"a\"}\n\n\
         id: 5-2\ndata: {\"event_type\":\"b\"}\n\n"
    );
    assert!(nothing_on_stream(&m));
}

#[test]
fn live_messages_dedupe_and_the_hub_owns_liveness() {
    let mut m = answered(ok);
    assert!(matches!(m.poll_event(), Some(Event::Start)));
    let n = m.pending().len();
    m.handle_body_took(n, 10);
    m.handle_message(br#"{"_sse_id":"5-1","event_type":"a"}"#, 11);
    assert_eq!(pending(&m), "", "already replayed from history");
    m.handle_message(br#"{"_sse_id":"5-3","event_type":"c"}"#, 11);
    assert_eq!(pending(&m), "id: 5-3\ndata: {\"event_type\":\"c\"}\n\n");
    let n = m.pending().len();
    m.handle_body_took(n, 12);
    // Heartbeats renew the slot on the shared connection and send no
    // PING of their own: a missing PONG cannot end the stream.
    for beat in 1..=3 {
        m.handle_timeout(12 + beat * 15 * S);
        assert_eq!(pending(&m), ": ping\n\n");
        assert!(nothing_on_stream(&m));
        assert_eq!(tags(&m.take_requests()), vec![Tag::Renew]);
        m.handle_body_took(8, 12 + beat * 15 * S);
    }
    // The hub lost the subscription: reconnectable, slot given back.
    m.handle_redis_failure("subscription lost", 100 * S);
    assert_eq!(pending(&m), "retry: 3000\n\n: redis connection lost\n\n");
    let n = m.pending().len();
    m.handle_body_took(n, 100 * S);
    assert!(matches!(
        m.poll_event(),
        Some(Event::Finished(Close::RedisLost))
    ));
    assert_eq!(tags(&m.take_requests()), vec![Tag::Release]);
}

/// How a hub subscription ends is the machine's call: a Cluster `MOVED`
/// is followed `MAX_REDIRECTS` times, then fails; the close texts are the
/// machine's.
#[test]
fn subscription_ends_redirect_a_bounded_number_of_times_then_fail() {
    use crate::redis::cluster::Moved;
    use crate::redis::hub::End;
    let moved = || {
        End::Moved(Moved {
            slot: 1,
            host: "10.0.0.2".into(),
            port: 6380,
        })
    };
    let mut m = open(&cfg(&[]));
    m.join_channel();
    for _ in 0..super::MAX_REDIRECTS {
        let to = m
            .handle_subscription_end(moved(), 1)
            .expect("join the owner");
        assert_eq!((to.host.as_str(), to.port), ("10.0.0.2", 6380));
        assert!(m.poll_event().is_none());
    }
    assert!(m.handle_subscription_end(moved(), 2).is_none());
    assert!(matches!(m.poll_event(), Some(Event::Refuse(e)) if e.status == 503));
    assert!(m.logs().any(|l| l.contains("too many cluster redirects")));
    for (end, text) in [
        (End::Overflow, "subscription queue overflowed"),
        (End::Lost(String::new()), "subscription lost\""),
        (End::Lost("eof".into()), "subscription lost: eof"),
    ] {
        let mut m = open(&cfg(&[]));
        m.join_channel();
        assert!(m.handle_subscription_end(end, 1).is_none());
        assert!(matches!(m.poll_event(), Some(Event::Refuse(e)) if e.status == 503));
        assert!(m.logs().any(|l| l.contains(text)), "{text}");
    }
}

/// On one Redis the instance's lease covers its streams' slots: the
/// acquire names and refreshes it, a heartbeat sends no renewal, the
/// release gives back the leased member. On Cluster each stream renews
/// its own (a script cannot reach the lease key's slot).
#[test]
fn an_instance_lease_replaces_per_stream_renewals_on_one_redis() {
    for cluster in [false, true] {
        let cfg = cfg(&[("redis_cluster", &cluster.to_string())]);
        let req = Opening {
            instance: Some("i7"),
            ..opening(Topic::Execution("e1".into()), None)
        };
        let mut m = StreamMachine::open(Wiring::Shared, &cfg, &user("u1"), req);
        m.join_channel();
        m.handle_subscribed(5);
        let requests = m.take_requests();
        let acquire = requests.iter().find(|r| r.tag == Tag::Acquire).unwrap();
        let keys: Vec<&[u8]> = acquire.args[3..].iter().map(Vec::as_slice).collect();
        let member: &[u8] = if cluster {
            assert_eq!(keys[..2], [&b"sse:streams:u1"[..], b"m1"]);
            b"m1"
        } else {
            assert_eq!(
                keys[..3],
                [
                    &b"sse:streams:u1"[..],
                    b"sse:instance:i7",
                    b"sse:instance:i7/m1"
                ]
            );
            b"sse:instance:i7/m1"
        };
        for r in requests {
            m.handle_reply(r.tag, ok(r.tag), 6);
        }
        assert!(matches!(m.poll_event(), Some(Event::Start)));
        let n = m.pending().len();
        m.handle_body_took(n, 7);
        m.handle_timeout(7 + 15 * S);
        let renewals = tags(&m.take_requests());
        if cluster {
            assert_eq!(renewals, vec![Tag::Renew], "its own lease");
        } else {
            assert!(renewals.is_empty(), "the instance renews: {renewals:?}");
        }
        m.handle_body_took(8, 7 + 15 * S);
        m.handle_redis_failure("subscription lost", 20 * S);
        let n = m.pending().len();
        m.handle_body_took(n, 20 * S);
        let release = m.take_requests();
        assert_eq!(tags(&release), vec![Tag::Release]);
        assert_eq!(release[0].args[2], member, "cluster {cluster}");
    }
}

fn user_record(id: &str, active: &str) -> Value {
    let pair = |k: &str, v: &str| (Value::Bulk(k.into()), Value::Bulk(v.into()));
    Value::Map(vec![pair("user_id", id), pair("is_active", active)])
}

/// A notification stream's channel is named by the store's user id: the
/// user record is read on the shared command connection before the join.
#[test]
fn the_user_record_is_read_before_the_notification_channel_is_joined() {
    let req = Opening {
        topic: Topic::Notifications,
        last_event_id: None,
        member: "m1".into(),
        instance: None,
        now: 0,
        unix_now: UNIX,
    };
    let mut m = StreamMachine::open(Wiring::Shared, &store_cfg(), &user("u1"), req);
    assert!(nothing_on_stream(&m));
    assert_eq!(m.join_channel(), None, "no channel before the user record");
    let first = m.take_requests();
    assert_eq!(tags(&first), vec![Tag::User]);
    assert_eq!(
        first[0].args,
        vec![b"HGETALL".to_vec(), b"user:u1".to_vec()]
    );
    m.handle_reply(Tag::User, Ok(user_record("store-7", "true")), 1);
    assert_eq!(m.join_channel().as_deref(), Some("sse:notif:store-7"));
    assert!(m.take_requests().is_empty(), "the rest waits for the join");
    m.handle_subscribed(2);
    let rest = m.take_requests();
    assert!(!tags(&rest).contains(&Tag::User), "read once: {rest:?}");
    for r in rest {
        m.handle_reply(r.tag, ok(r.tag), 3);
    }
    assert!(matches!(m.poll_event(), Some(Event::Start)));
}

#[test]
fn a_lost_command_connection_while_identifying_is_a_503() {
    let req = Opening {
        topic: Topic::Notifications,
        last_event_id: None,
        member: "m1".into(),
        instance: None,
        now: 0,
        unix_now: UNIX,
    };
    let mut m = StreamMachine::open(Wiring::Shared, &store_cfg(), &user("u1"), req);
    m.take_requests();
    m.handle_reply(Tag::User, Err("connection lost".into()), 1);
    assert!(matches!(m.poll_event(), Some(Event::Refuse(e)) if e.status == 503));
    assert_eq!(m.join_channel(), None);
}

/// The heartbeat's re-read of the user record goes out as a request too;
/// a deactivated user is cut with `access_revoked`.
#[test]
fn the_heartbeat_re_read_of_the_user_is_a_request() {
    let mut m = {
        let mut m = open(&store_cfg());
        let first = m.take_requests();
        assert_eq!(tags(&first), vec![Tag::User], "the user record first");
        m.handle_reply(Tag::User, Ok(user_record("u1", "true")), 4);
        assert!(m.join_channel().is_some());
        m.handle_subscribed(5);
        for r in m.take_requests() {
            let answer = match r.tag {
                Tag::User => Ok(user_record("u1", "true")),
                tag => ok(tag),
            };
            m.handle_reply(r.tag, answer, 6);
        }
        m
    };
    assert!(matches!(m.poll_event(), Some(Event::Start)));
    let n = m.pending().len();
    m.handle_body_took(n, 7);
    m.handle_timeout(7 + S);
    let reread = m.take_requests();
    assert!(tags(&reread).contains(&Tag::User), "{reread:?}");
    assert!(nothing_on_stream(&m), "nothing on a connection of its own");
    m.handle_reply(Tag::User, Ok(user_record("u1", "false")), 8 + S);
    assert!(pending(&m).contains("access_revoked"), "{}", pending(&m));
}

/// History entry `5-n`, its event padded to about `pad` bytes.
fn entry(n: usize, event_type: &str, pad: usize) -> (String, String) {
    let data = format!(
        r#"{{"event_type":"{event_type}","n":{n},"pad":"{}"}}"#,
        "x".repeat(pad)
    );
    (format!("5-{n}"), data)
}

fn page(entries: &[(String, String)]) -> Value {
    let pairs: Vec<(&str, &str)> = entries
        .iter()
        .map(|(id, data)| (id.as_str(), data.as_str()))
        .collect();
    history(&pairs)
}

/// The one `XRANGE` among `requests`: (start, count).
fn xrange(requests: &[Run]) -> (String, String) {
    let asks: Vec<&Run> = requests.iter().filter(|r| r.tag == Tag::History).collect();
    assert_eq!(asks.len(), 1, "{requests:?}");
    let a: Vec<String> = asks[0]
        .args
        .iter()
        .map(|a| String::from_utf8(a.clone()).unwrap())
        .collect();
    assert_eq!(a[..2], ["XRANGE", "history:{sse:exec:e1}"]);
    assert_eq!(a[3..5], ["+", "COUNT"]);
    (a[2].clone(), a[5].clone())
}

/// Opened on `first` (the page read with the opening requests), the
/// record saying `running` without a result.
fn opened_with_page(first: &[(String, String)]) -> StreamMachine {
    let mut m = open(&cfg(&[]));
    assert!(m.join_channel().is_some());
    m.handle_subscribed(1);
    for r in m.take_requests() {
        let answer = match r.tag {
            Tag::History => {
                assert_eq!(xrange(std::slice::from_ref(&r)), ("-".into(), "7".into()));
                Ok(page(first))
            }
            tag => ok(tag),
        };
        m.handle_reply(r.tag, answer, 2);
    }
    assert!(matches!(m.poll_event(), Some(Event::Start)));
    m
}

/// A history larger than a page: page 1 comes with the opening requests,
/// the next is a request asked once the browser drained the last and its
/// answer comes back through `reply`; every event once, in order, live
/// messages racing the pages dropped (with an id) or held (plain).
#[test]
fn later_history_pages_are_requests_answered_through_reply() {
    let c = cfg(&[]);
    assert_eq!(c.stream.page_entries, 7);
    // Page 1 is more than the low water: page 2 waits for the browser.
    let mut all: Vec<_> = (1..=7).map(|n| entry(n, "t", 20_000)).collect();
    all.extend((8..=16).map(|n| entry(n, "t", 10)));
    let mut m = opened_with_page(&all[..7]);
    assert!(m.pending().len() > c.stream.low_water);
    assert!(m.take_requests().is_empty(), "page 1 is not drained yet");
    let mut got = pending(&m);
    m.handle_body_took(m.pending().len(), 3);
    let asked = m.take_requests();
    assert_eq!(xrange(&asked), ("(5-7".into(), "7".into()));
    assert!(nothing_on_stream(&m), "nothing on a connection of its own");
    assert!(nothing_on_stream(&m));
    // Live while page 2 is read: 5-9 is in it, the plain one waits.
    m.handle_message(br#"{"_sse_id":"5-9","event_type":"t","n":9}"#, 4);
    m.handle_message(br#"{"event_type":"plain"}"#, 4);
    assert!(m.pending().is_empty(), "nothing jumps ahead of the history");
    m.handle_reply(Tag::History, Ok(page(&all[7..14])), 5);
    got += &pending(&m);
    m.handle_body_took(m.pending().len(), 6);
    assert_eq!(xrange(&m.take_requests()), ("(5-14".into(), "7".into()));
    m.handle_reply(Tag::History, Ok(page(&all[14..])), 7);
    assert!(m.take_requests().is_empty(), "2 < 7 entries: the last page");
    // Live now: a duplicate of the history is dropped, a newer one sent.
    m.handle_message(br#"{"_sse_id":"5-16","event_type":"t","n":16}"#, 8);
    m.handle_message(br#"{"_sse_id":"5-17","event_type":"t","n":17}"#, 8);
    got += &pending(&m);
    let mut want: Vec<_> = (1..=16)
        .map(|n| (Some(format!("5-{n}")), n.to_string()))
        .collect();
    want.push((None, "plain".into()));
    want.push((Some("5-17".into()), "17".into()));
    let got: Vec<_> = events(&got)
        .into_iter()
        .filter(|(_, what)| what != "status")
        .collect();
    assert_eq!(got, want);
    assert!(m.poll_event().is_none(), "a running execution stays open");
}

/// A `result_stored` on a later page, whose result the record read at
/// open lacked: the record's `HGET` is a request too, and the event goes
/// out filled before the stream ends.
#[test]
fn a_later_pages_result_stored_is_filled_from_a_request() {
    let mut all: Vec<_> = (1..=7).map(|n| entry(n, "t", 10)).collect();
    all.push(entry(8, "result_stored", 10));
    let mut m = opened_with_page(&all[..7]);
    let mut got = pending(&m);
    m.handle_body_took(m.pending().len(), 3);
    assert_eq!(xrange(&m.take_requests()), ("(5-7".into(), "7".into()));
    m.handle_reply(Tag::History, Ok(page(&all[7..])), 4);
    assert!(
        m.pending().is_empty(),
        "the result_stored waits for its result"
    );
    let read = m.take_requests();
    assert_eq!(tags(&read), vec![Tag::Result]);
    assert_eq!(
        read[0].args,
        vec![b"HGET".to_vec(), b"exec:e1".to_vec(), b"result".to_vec()]
    );
    m.handle_reply(
        Tag::Result,
        Ok(Value::Bulk(br#"{"exit_code":0}"#.to_vec())),
        5,
    );
    got += &pending(&m);
    assert_eq!(events(&got).pop(), Some((Some("5-8".into()), "8".into())));
    assert!(got.ends_with("\"result\":{\"exit_code\":0}}\n\n"), "{got}");
    m.handle_body_took(m.pending().len(), 6);
    assert!(matches!(
        m.poll_event(),
        Some(Event::Finished(Close::Terminal))
    ));
    assert_eq!(tags(&m.take_requests()), vec![Tag::Release]);
}

/// With the user store on, every kind of stream reads the user record
/// alone first and joins its channel only for an active user: a refused
/// user is never subscribed and takes no slot.
#[test]
fn every_kind_reads_the_user_first_and_a_refused_user_never_joins() {
    for topic in [
        Topic::Execution("e1".into()),
        Topic::Notifications,
        Topic::ReplayStatus("r1".into()),
    ] {
        let req = |topic: &Topic| Opening {
            topic: topic.clone(),
            last_event_id: None,
            member: "m1".into(),
            instance: None,
            now: 0,
            unix_now: UNIX,
        };
        let mut m = StreamMachine::open(Wiring::Shared, &store_cfg(), &user("u1"), req(&topic));
        assert_eq!(m.join_channel(), None, "{topic:?}: not before the record");
        assert_eq!(tags(&m.take_requests()), vec![Tag::User], "{topic:?}");
        m.handle_reply(Tag::User, Ok(user_record("u1", "false")), 1);
        assert!(
            matches!(m.poll_event(), Some(Event::Refuse(e)) if e.status == 401),
            "{topic:?}"
        );
        assert_eq!(m.join_channel(), None, "{topic:?}: refused, never joined");
        assert!(m.take_requests().is_empty(), "{topic:?}: no slot taken");
        // An active user: the channel is joined after the record.
        let mut m = StreamMachine::open(Wiring::Shared, &store_cfg(), &user("u1"), req(&topic));
        m.take_requests();
        m.handle_reply(Tag::User, Ok(user_record("u1", "true")), 1);
        assert!(m.join_channel().is_some(), "{topic:?}");
        assert!(m.take_requests().is_empty(), "{topic:?}: after the join");
    }
}

/// On the shared connections a message published just after a page's
/// `XRANGE` ran can arrive before that page's reply. The short page does
/// not end the history then: one more page reads the message's entry, so
/// the browser gets every event once, in order.
#[test]
fn a_live_message_newer_than_the_last_page_is_read_with_one_more_page() {
    let all: Vec<_> = (1..=10).map(|n| entry(n, "t", 10)).collect();
    let mut m = opened_with_page(&all[..7]);
    let mut got = pending(&m);
    m.handle_body_took(m.pending().len(), 3);
    assert_eq!(xrange(&m.take_requests()), ("(5-7".into(), "7".into()));
    // Page 2's XRANGE ran when 5-9 was the newest entry; 5-10 was
    // published after it and its message overtakes the reply.
    m.handle_message(br#"{"_sse_id":"5-10","event_type":"t","n":10}"#, 4);
    m.handle_reply(Tag::History, Ok(page(&all[7..9])), 5);
    got += &pending(&m);
    m.handle_body_took(m.pending().len(), 6);
    assert_eq!(
        xrange(&m.take_requests()),
        ("(5-9".into(), "7".into()),
        "2 < 7 entries, but 5-10 is not read yet"
    );
    m.handle_reply(Tag::History, Ok(page(&all[9..])), 7);
    assert!(m.take_requests().is_empty(), "the history is over");
    m.handle_message(br#"{"_sse_id":"5-11","event_type":"t","n":11}"#, 8);
    got += &pending(&m);
    let got: Vec<_> = events(&got)
        .into_iter()
        .filter(|(_, what)| what != "status")
        .collect();
    let want: Vec<_> = (1..=11)
        .map(|n| (Some(format!("5-{n}")), n.to_string()))
        .collect();
    assert_eq!(got, want);
}

/// A re-read page that comes back empty (the entry was trimmed or expired
/// meanwhile) ends the history: the stream goes live, it does not ask again.
/// A page asked after the dropped message arrived ran after its `XADD`:
/// lacking the entry, it was trimmed, and the history ends there (no
/// endless re-reads). A page asked before it arrived, though, may have
/// run before it was published: read on (the earlier rule, "an empty
/// re-read ends it", lost that message).
#[test]
fn a_page_asked_after_the_dropped_message_ends_the_history_however_short() {
    let all: Vec<_> = (1..=7).map(|n| entry(n, "t", 10)).collect();
    let mut m = opened_with_page(&all);
    m.handle_body_took(m.pending().len(), 3);
    assert_eq!(xrange(&m.take_requests()), ("(5-7".into(), "7".into()));
    m.handle_message(br#"{"_sse_id":"5-9","event_type":"t","n":9}"#, 4);
    m.handle_reply(Tag::History, Ok(page(&[])), 5);
    assert_eq!(
        xrange(&m.take_requests()),
        ("(5-7".into(), "7".into()),
        "asked before 5-9 arrived: read again"
    );
    m.handle_reply(Tag::History, Ok(page(&[])), 6);
    assert!(
        m.take_requests().is_empty(),
        "5-9 was trimmed: no more pages"
    );
    m.handle_message(br#"{"_sse_id":"5-10","event_type":"t","n":10}"#, 7);
    assert_eq!(
        events(&pending(&m)),
        vec![(Some("5-10".into()), "10".into())]
    );
}

/// The hub discarded a message too large to decode: the stream tells its
/// browser (reconnectable), and one told while opening hears it at start.
#[test]
fn a_message_too_large_for_the_hub_ends_the_stream_reconnectably() {
    let mut m = answered(ok);
    assert!(matches!(m.poll_event(), Some(Event::Start)));
    m.handle_body_took(m.pending().len(), 7);
    m.handle_too_large(1, 8);
    assert_eq!(pending(&m), "retry: 3000\n\n: events dropped\n\n");
    let mut m = open(&cfg(&[]));
    m.join_channel();
    m.handle_subscribed(5);
    m.handle_too_large(2, 5);
    for r in m.take_requests() {
        m.handle_reply(r.tag, ok(r.tag), 6);
    }
    assert!(matches!(m.poll_event(), Some(Event::Start)));
    assert!(
        pending(&m).ends_with(": events dropped\n\n"),
        "{}",
        pending(&m)
    );
    assert!(m.logs().any(|l| l.contains(r#""messages":2"#)));
}
