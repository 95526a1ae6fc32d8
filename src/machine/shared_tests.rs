//! [`Wiring::Shared`]: the same rules with the subscription in the
//! instance's hub and the commands on the shared command connection.

use super::*;
use crate::auth::Role;
use crate::config::Source;
use crate::session::Tag;

const S: u64 = 1_000_000_000;
const UNIX: i64 = 1_700_000_000;

fn cfg() -> Config {
    Config::load(&Source(|name: &str| {
        (name == "jwt_secret").then(|| "s".repeat(32))
    }))
    .unwrap()
}

fn who() -> Identity {
    Identity {
        user_id: "u1".into(),
        role: Role::User,
        expires_at: UNIX + 3600,
    }
}

fn open(cfg: &Config) -> StreamMachine {
    let req = Opening {
        topic: Topic::Execution("e1".into()),
        last_event_id: None,
        member: "m1".into(),
        now: 0,
        unix_now: UNIX,
    };
    StreamMachine::open_wired(Wiring::Shared, cfg, &who(), req)
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

fn tags(requests: &[Request]) -> Vec<Tag> {
    requests.iter().map(|r| r.tag).collect()
}

fn pending(m: &StreamMachine) -> String {
    String::from_utf8(m.pending().to_vec()).unwrap()
}

/// Opened, subscribed, every command answered with `answer(tag)`.
fn answered(answer: impl Fn(Tag) -> Result<Value, ApiError>) -> StreamMachine {
    let mut m = open(&cfg());
    assert_eq!(m.join_channel().as_deref(), Some("sse:exec:e1"));
    m.subscribed(5);
    for r in m.take_requests() {
        m.reply(r.tag, answer(r.tag), 6);
    }
    m
}

fn ok(tag: Tag) -> Result<Value, ApiError> {
    Ok(match tag {
        Tag::Acquire => Value::Int(1),
        Tag::Record => record("u1", "running"),
        Tag::History => history(&[("5-1", r#"{"event_type":"a"}"#)]),
        _ => Value::Nil,
    })
}

#[test]
fn no_connection_of_its_own_and_commands_only_after_the_subscription() {
    let mut m = open(&cfg());
    assert_eq!(m.connect_to(), None);
    assert!(m.transmit().is_empty());
    assert_eq!(m.join_channel().as_deref(), Some("sse:exec:e1"));
    assert_eq!(m.join_channel(), None, "joined once");
    assert!(
        m.take_requests().is_empty(),
        "nothing before the confirmation"
    );
    // A message before the record and history were read is kept.
    m.message(br#"{"_sse_id":"5-2","event_type":"b"}"#, 4);
    m.subscribed(5);
    let requests = m.take_requests();
    let mut t = tags(&requests);
    t.sort_by_key(|t| format!("{t:?}"));
    assert_eq!(t, vec![Tag::Acquire, Tag::History, Tag::Record]);
    let xrange = requests.iter().find(|r| r.tag == Tag::History).unwrap();
    assert_eq!(xrange.args[0], b"XRANGE");
    for r in requests {
        assert!(m.poll().is_none(), "decided only once every answer is in");
        m.reply(r.tag, ok(r.tag), 6);
    }
    assert!(matches!(m.poll(), Some(Event::Start)));
    assert_eq!(
        pending(&m),
        "retry: 3000\n\n\
         data: {\"event_type\":\"status\",\"execution_id\":\"e1\",\"timestamp\":null,\"event_id\":null,\"status\":\"running\",\"result\":null}\n\n\
         id: 5-1\ndata: {\"event_type\":\"a\"}\n\n\
         id: 5-2\ndata: {\"event_type\":\"b\"}\n\n"
    );
    assert!(m.transmit().is_empty());
}

#[test]
fn live_messages_dedupe_and_the_hub_owns_liveness() {
    let mut m = answered(ok);
    assert!(matches!(m.poll(), Some(Event::Start)));
    let n = m.pending().len();
    m.body_took(n, 10);
    m.message(br#"{"_sse_id":"5-1","event_type":"a"}"#, 11);
    assert_eq!(pending(&m), "", "already replayed from history");
    m.message(br#"{"_sse_id":"5-3","event_type":"c"}"#, 11);
    assert_eq!(pending(&m), "id: 5-3\ndata: {\"event_type\":\"c\"}\n\n");
    let n = m.pending().len();
    m.body_took(n, 12);
    // Heartbeats renew the slot on the shared connection and send no
    // PING of their own: a missing PONG cannot end the stream.
    for beat in 1..=3 {
        m.handle_timeout(12 + beat * 15 * S);
        assert_eq!(pending(&m), ": ping\n\n");
        assert!(m.transmit().is_empty());
        assert_eq!(tags(&m.take_requests()), vec![Tag::Renew]);
        m.body_took(8, 12 + beat * 15 * S);
    }
    // The hub lost the subscription: reconnectable, slot given back.
    m.redis_failed("subscription lost", 100 * S);
    assert_eq!(pending(&m), "retry: 3000\n\n: redis connection lost\n\n");
    let n = m.pending().len();
    m.body_took(n, 100 * S);
    assert!(matches!(m.poll(), Some(Event::Finished(Close::RedisLost))));
    assert_eq!(tags(&m.take_requests()), vec![Tag::Release]);
}

#[test]
fn refusals_give_the_slot_back_on_the_shared_connection() {
    for (answer, status) in [
        (Ok(Value::Nil), 404),
        (Ok(record("u2", "running")), 403),
        (Err(ApiError::service_unavailable(2)), 503),
    ] {
        let mut m = answered(|tag| match tag {
            Tag::Record => answer.clone(),
            t => ok(t),
        });
        match m.poll() {
            Some(Event::Refuse(e)) => assert_eq!(e.status, status),
            other => panic!("expected {status}, got {other:?}"),
        }
        assert_eq!(tags(&m.take_requests()), vec![Tag::Release], "{status}");
    }
    // No slot free: 429, nothing to give back.
    let mut m = answered(|tag| match tag {
        Tag::Acquire => Ok(Value::Int(0)),
        t => ok(t),
    });
    assert!(matches!(m.poll(), Some(Event::Refuse(e)) if e.status == 429));
    assert!(m.take_requests().is_empty());
}

#[test]
fn failures_while_opening_are_503_and_release_only_what_may_be_held() {
    // Lost before the confirmation: no command went out, nothing held.
    let mut m = open(&cfg());
    m.join_channel();
    m.redis_failed("subscription lost", 1);
    assert!(matches!(m.poll(), Some(Event::Refuse(e)) if e.status == 503));
    assert!(m.take_requests().is_empty());
    // The command connection broke with the acquire unanswered: released.
    let mut m = open(&cfg());
    m.join_channel();
    m.subscribed(1);
    assert_eq!(m.take_requests().len(), 3);
    m.redis_failed("command connection lost", 2);
    assert!(matches!(m.poll(), Some(Event::Refuse(e)) if e.status == 503));
    assert_eq!(tags(&m.take_requests()), vec![Tag::Release]);
    // No confirmation in time: the opening deadline.
    let mut m = open(&cfg());
    m.join_channel();
    let deadline = m.deadline().unwrap();
    m.handle_timeout(deadline);
    assert!(matches!(m.poll(), Some(Event::Refuse(e)) if e.status == 503));
}

fn store_cfg() -> Config {
    Config::load(&Source(|name: &str| match name {
        "jwt_secret" => Some("s".repeat(32)),
        "identity_key_prefix" => Some("user:".into()),
        "heartbeat_seconds" => Some("1".into()),
        _ => None,
    }))
    .unwrap()
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
        now: 0,
        unix_now: UNIX,
    };
    let mut m = StreamMachine::open_wired(Wiring::Shared, &store_cfg(), &who(), req);
    assert_eq!(m.connect_to(), None);
    assert_eq!(m.join_channel(), None, "no channel before the user record");
    let first = m.take_requests();
    assert_eq!(tags(&first), vec![Tag::User]);
    assert_eq!(
        first[0].args,
        vec![b"HGETALL".to_vec(), b"user:u1".to_vec()]
    );
    m.reply(Tag::User, Ok(user_record("store-7", "true")), 1);
    assert_eq!(m.join_channel().as_deref(), Some("sse:notif:store-7"));
    assert!(m.take_requests().is_empty(), "the rest waits for the join");
    m.subscribed(2);
    let rest = m.take_requests();
    assert!(!tags(&rest).contains(&Tag::User), "read once: {rest:?}");
    for r in rest {
        m.reply(r.tag, ok(r.tag), 3);
    }
    assert!(matches!(m.poll(), Some(Event::Start)));
}

#[test]
fn a_lost_command_connection_while_identifying_is_a_503() {
    let req = Opening {
        topic: Topic::Notifications,
        last_event_id: None,
        member: "m1".into(),
        now: 0,
        unix_now: UNIX,
    };
    let mut m = StreamMachine::open_wired(Wiring::Shared, &store_cfg(), &who(), req);
    m.take_requests();
    m.reply(Tag::User, Err(ApiError::service_unavailable(1)), 1);
    assert!(matches!(m.poll(), Some(Event::Refuse(e)) if e.status == 503));
    assert_eq!(m.join_channel(), None);
}

/// The heartbeat's re-read of the user record goes out as a request too;
/// a deactivated user is cut with `access_revoked`.
#[test]
fn the_heartbeat_re_read_of_the_user_is_a_request() {
    let mut m = {
        let mut m = open(&store_cfg());
        assert!(m.join_channel().is_some());
        m.subscribed(5);
        for r in m.take_requests() {
            let answer = match r.tag {
                Tag::User => Ok(user_record("u1", "true")),
                tag => ok(tag),
            };
            m.reply(r.tag, answer, 6);
        }
        m
    };
    assert!(matches!(m.poll(), Some(Event::Start)));
    let n = m.pending().len();
    m.body_took(n, 7);
    m.handle_timeout(7 + S);
    let reread = m.take_requests();
    assert!(tags(&reread).contains(&Tag::User), "{reread:?}");
    assert!(
        m.transmit().is_empty(),
        "nothing on a connection of its own"
    );
    m.reply(Tag::User, Ok(user_record("u1", "false")), 8 + S);
    assert!(pending(&m).contains("access_revoked"), "{}", pending(&m));
}
