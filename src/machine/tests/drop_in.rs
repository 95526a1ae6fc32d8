//! Issue 13's rules: `result_stored` filled from the record, the replay
//! session's first event, identity from the user store.

use super::*;
use crate::http::auth::Role;

fn hash(pairs: &[(&str, &str)]) -> String {
    let mut s = format!("%{}\r\n", pairs.len());
    for (k, v) in pairs {
        s += &bulk(k);
        s += &bulk(v);
    }
    s
}

const NULL_RESULT: &str = r#"{"event_type":"result_stored","execution_id":"e1","result":null}"#;

#[test]
fn a_live_result_stored_without_result_waits_for_the_records_result_in_order() {
    let mut m = live();
    m.handle_bytes(message("sse:exec:e1", NULL_RESULT).as_bytes(), 20);
    assert_eq!(
        wire(&mut m),
        "*3\r\n$4\r\nHGET\r\n$7\r\nexec:e1\r\n$6\r\nresult\r\n",
        "read on the stream's own connection"
    );
    m.handle_bytes(
        message("sse:exec:e1", r#"{"event_type":"late"}"#).as_bytes(),
        21,
    );
    assert_eq!(pending(&m), "", "held until the reply");
    m.handle_bytes(bulk(r#"{"exit_code":0}"#).as_bytes(), 22);
    assert_eq!(
        pending(&m),
        "data: {\"event_type\":\"result_stored\",\"execution_id\":\"e1\",\"result\":{\"exit_code\":0}}\n\n"
    );
    let n = m.pending().len();
    m.handle_body_took(n, 23);
    assert!(matches!(
        m.poll_event(),
        Some(Event::Finished(Close::Terminal))
    ));
}

#[test]
fn a_record_without_a_result_leaves_it_null_and_logs() {
    let mut m = live();
    m.handle_bytes(message("sse:exec:e1", NULL_RESULT).as_bytes(), 20);
    m.poll_transmit();
    m.handle_bytes(b"$-1\r\n", 21);
    assert_eq!(pending(&m), format!("data: {NULL_RESULT}\n\n"));
    assert!(m.logs().any(|l| l.contains("result_not_filled")));
}

#[test]
fn other_events_pass_without_a_read() {
    let mut m = live();
    m.handle_bytes(
        message(
            "sse:exec:e1",
            r#"{"event_type":"pod_running","result":null}"#,
        )
        .as_bytes(),
        20,
    );
    assert!(pending(&m).contains("pod_running"));
    assert_eq!(wire(&mut m), "");
}

#[test]
fn a_replayed_result_stored_is_filled_from_the_record_read_with_it() {
    let hist = history(&[("5-1", NULL_RESULT)]);
    let rec = hash(&[
        ("user_id", "u1"),
        ("status", "completed"),
        ("result", r#"{"stdout":"hi"}"#),
    ]);
    let m = opened(&cfg(&[]), &format!("{hist}:1\r\n{rec}"));
    let text = pending(&m);
    assert!(
        text.contains("id: 5-1\ndata: {\"event_type\":\"result_stored\",\"execution_id\":\"e1\",\"result\":{\"stdout\":\"hi\"}}\n\n"),
        "{text}"
    );
    assert_eq!(text.matches("result_stored").count(), 1, "no second result");
}

#[test]
fn cluster_reads_the_result_on_its_own_connection() {
    let c = cfg(&[("redis_cluster", "true"), ("max_streams_per_user", "0")]);
    let mut m = open(&c, &user("u1"), Topic::Execution("e1".into()), None);
    m.poll_connect();
    m.poll_transmit();
    m.handle_bytes(
        format!(
            "{HELLO}>3\r\n+ssubscribe\r\n{}:1\r\n{}",
            bulk("sse:exec:e1"),
            history(&[])
        )
        .as_bytes(),
        1,
    );
    let mut rec = m.poll_commands(0).remove(0);
    rec.transmit();
    rec.receive(format!("{HELLO}{}", record("u1", "running")).as_bytes());
    m.handle_command(rec, 2);
    assert!(matches!(m.poll_event(), Some(Event::Start)));
    m.handle_bytes(
        format!(
            ">3\r\n+smessage\r\n{}{}",
            bulk("sse:exec:e1"),
            bulk(NULL_RESULT)
        )
        .as_bytes(),
        3,
    );
    let mut read = m.poll_commands(0);
    assert_eq!(read.len(), 1);
    let mut read = read.remove(0);
    assert_eq!(read.tag, Tag::Result);
    assert!(String::from_utf8(read.transmit()).unwrap().contains("HGET"));
    read.receive(format!("{HELLO}{}", bulk("7")).as_bytes());
    m.handle_command(read, 4);
    assert!(pending(&m).contains(r#""result":7}"#), "{}", pending(&m));
}

// ---------------------------------------------------------------------------
// Replay status
// ---------------------------------------------------------------------------

fn admin(id: &str) -> Identity {
    Identity {
        role: Role::Admin,
        ..user(id)
    }
}

fn replay_opened(replies: &str) -> OwnConnection {
    let c = cfg(&[("max_streams_per_user", "0")]);
    let mut m = open(&c, &admin("root"), Topic::ReplayStatus("s1".into()), None);
    let w = wire(&mut m);
    assert!(
        w.ends_with("*2\r\n$7\r\nHGETALL\r\n$9\r\nreplay:s1\r\n"),
        "{w}"
    );
    m.poll_connect();
    m.handle_bytes(
        format!("{HELLO}{}{replies}", subscribed("sse:replay:s1")).as_bytes(),
        1,
    );
    m
}

#[test]
fn replay_starts_with_the_sessions_status() {
    let mut m = replay_opened(&hash(&[("status", "running")]));
    assert!(matches!(m.poll_event(), Some(Event::Start)));
    assert!(pending(&m)
        .starts_with("retry: 3000\n\ndata: {\"session_id\":\"s1\",\"status\":\"running\","));
    assert!(m.wants_redis());
}

#[test]
fn a_finished_replay_session_is_sent_and_ends_cleanly() {
    let mut m = replay_opened(&hash(&[("status", "completed")]));
    assert!(matches!(m.poll_event(), Some(Event::Start)));
    assert!(!m.wants_redis());
    let n = m.pending().len();
    m.handle_body_took(n, 2);
    match m.poll_event() {
        Some(Event::Finished(why)) => assert!(why.ends_cleanly(), "{why:?}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_missing_replay_session_is_404_without_a_type() {
    let mut m = replay_opened("%0\r\n");
    match m.poll_event() {
        Some(Event::Refuse(e)) => assert_eq!(
            (e.status, String::from_utf8(e.body()).unwrap()),
            (404, r#"{"detail":"Replay session not found"}"#.to_string())
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_non_admin_is_refused_by_name_before_redis() {
    let mut m = open(
        &cfg(&[]),
        &user("alice"),
        Topic::ReplayStatus("s".into()),
        None,
    );
    match m.poll_event() {
        Some(Event::Refuse(e)) => assert_eq!(
            String::from_utf8(e.body()).unwrap(),
            r#"{"detail":"Admin access required for user 'alice'","type":"AdminAccessRequiredError"}"#
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(m.poll_connect(), None);
}

// ---------------------------------------------------------------------------
// Identity from the user store
// ---------------------------------------------------------------------------

/// An execution stream of token subject `alice` with the store on: the
/// user record is read alone first (nothing subscribed, no slot taken);
/// the store's answer `user_rec` decides who opens, and on the same
/// connection the pipeline follows (its replies: the subscription, the
/// history, the slot, the exec record).
fn store_opened(who: &Identity, user_rec: &str, exec: &str) -> OwnConnection {
    let mut m = store_asked(who, Topic::Execution("e1".into()));
    m.handle_bytes(format!("{HELLO}{user_rec}").as_bytes(), 10);
    if m.wants_redis() {
        assert_eq!(m.poll_connect(), None, "the same connection");
        let w = wire(&mut m);
        assert!(w.starts_with("*2\r\n$9\r\nSUBSCRIBE\r\n"), "{w}");
        assert!(w.contains("EVAL") && !w.contains("user:alice"), "{w}");
        m.handle_bytes(
            format!("{}{}:1\r\n{exec}", subscribed("sse:exec:e1"), history(&[])).as_bytes(),
            10,
        );
    }
    m
}

/// Opens `topic` with the store on; checks that only the user record is
/// asked for.
fn store_asked(who: &Identity, topic: Topic) -> OwnConnection {
    let mut m = open(&store_cfg(), who, topic, None);
    assert!(m.poll_connect().is_some());
    let w = wire(&mut m);
    assert!(
        w.contains(&format!("user:{}", who.user_id))
            && !w.contains("SUBSCRIBE")
            && !w.contains("EVAL"),
        "{w}"
    );
    m
}

#[test]
fn the_store_gives_the_user_id_that_owns_the_execution() {
    let rec = hash(&[("user_id", "u-1"), ("role", "user"), ("is_active", "true")]);
    let mut m = store_opened(&user("alice"), &rec, &record("u-1", "running"));
    assert!(matches!(m.poll_event(), Some(Event::Start)));
    // The token's subject is not the owner.
    let mut m = store_opened(&user("alice"), &rec, &record("alice", "running"));
    assert_eq!(refusal(&mut m), 403);
}

#[test]
fn unknown_or_inactive_users_are_401_before_anything_is_subscribed() {
    for topic in [
        Topic::Execution("e1".into()),
        Topic::Notifications,
        Topic::ReplayStatus("s1".into()),
    ] {
        for rec in [
            "%0\r\n".to_string(),
            hash(&[("user_id", "u-1"), ("is_active", "false")]),
        ] {
            let mut m = store_asked(&user("alice"), topic.clone());
            m.handle_bytes(format!("{HELLO}{rec}").as_bytes(), 10);
            match m.poll_event() {
                Some(Event::Refuse(e)) => assert_eq!(
                    String::from_utf8(e.body()).unwrap(),
                    r#"{"detail":"Invalid credentials","type":"InvalidCredentialsError"}"#
                ),
                other => panic!("{other:?}"),
            }
            assert_eq!(wire(&mut m), "", "no slot to give back, nothing subscribed");
            assert!(m.logs().any(|l| l.contains("auth_failed")));
        }
    }
}

#[test]
fn admin_comes_from_the_stores_role_and_claims_do_not_count() {
    let root = hash(&[("user_id", "u-0"), ("role", "admin")]);
    let mut m = store_opened(&user("alice"), &root, &record("u-9", "running"));
    assert!(matches!(m.poll_event(), Some(Event::Start)));
    let plain = hash(&[("user_id", "u-3"), ("role", "user")]);
    let mut m = store_opened(&admin("alice"), &plain, &record("u-9", "running"));
    assert_eq!(refusal(&mut m), 403);
}

#[test]
fn service_tokens_skip_the_store() {
    let svc = Identity {
        role: Role::Service,
        ..user("alice")
    };
    let mut m = open(&store_cfg(), &svc, Topic::Execution("e1".into()), None);
    assert!(!wire(&mut m).contains("user:alice"));
}

#[test]
fn a_replay_with_the_store_checks_the_stores_role() {
    let c = cfg(&[
        ("identity_key_prefix", "user:"),
        ("max_streams_per_user", "0"),
    ]);
    let mut m = open(&c, &user("bob"), Topic::ReplayStatus("s1".into()), None);
    assert!(m.poll_event().is_none(), "decided after the store's reply");
    m.poll_connect();
    m.poll_transmit();
    m.handle_bytes(
        format!("{HELLO}{}", hash(&[("user_id", "u-2"), ("role", "user")])).as_bytes(),
        1,
    );
    m.poll_transmit();
    m.handle_bytes(
        format!(
            "{}{}",
            subscribed("sse:replay:s1"),
            hash(&[("status", "running")])
        )
        .as_bytes(),
        2,
    );
    match m.poll_event() {
        Some(Event::Refuse(e)) => {
            assert_eq!(e.status, 403);
            assert!(String::from_utf8(e.body())
                .unwrap()
                .contains("for user 'bob'"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_user_deactivated_while_streaming_is_cut_at_the_next_heartbeat() {
    let rec = hash(&[("user_id", "u-1"), ("is_active", "1")]);
    let mut m = store_opened(&user("alice"), &rec, &record("u-1", "running"));
    assert!(matches!(m.poll_event(), Some(Event::Start)));
    let n = m.pending().len();
    m.handle_body_took(n, 10);
    m.poll_transmit();
    // Still active a heartbeat later: nothing happens.
    m.handle_timeout(10 + S);
    assert_eq!(wire(&mut m), "*2\r\n$7\r\nHGETALL\r\n$10\r\nuser:alice\r\n");
    m.handle_bytes(rec.as_bytes(), 10 + S + 1);
    assert!(!pending(&m).contains("access_revoked"));
    // A busy stream never idles into a heartbeat; the user is read anyway.
    for t in 1..4 {
        m.handle_bytes(
            message("sse:exec:e1", r#"{"event_type":"pod_running"}"#).as_bytes(),
            10 + S + t * S / 4,
        );
        let n = m.pending().len();
        m.handle_body_took(n, 10 + S + t * S / 4);
    }
    assert_eq!(m.poll_timeout(), Some(10 + 2 * S));
    m.handle_timeout(10 + 2 * S);
    assert!(wire(&mut m).contains("user:alice"));
    m.handle_bytes(
        hash(&[("user_id", "u-1"), ("is_active", "0")]).as_bytes(),
        10 + 2 * S + 2,
    );
    assert!(
        pending(&m)
            .ends_with("event: access_revoked\ndata: {\"detail\":\"Invalid credentials\"}\n\n"),
        "{}",
        pending(&m)
    );
    assert!(!m.wants_redis());
    let n = m.pending().len();
    m.handle_body_took(n, 10 + 2 * S + 3);
    match m.poll_event() {
        Some(Event::Finished(why)) => {
            assert_eq!(why, Close::Revoked);
            assert!(why.ends_cleanly(), "nothing to come back for");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_notification_stream_reads_the_user_first_and_subscribes_to_the_stores_id() {
    let mut m = open(&store_cfg(), &user("alice"), Topic::Notifications, None);
    assert!(m.poll_connect().is_some());
    let w = wire(&mut m);
    assert!(w.contains("user:alice") && !w.contains("SUBSCRIBE"), "{w}");
    m.handle_bytes(
        format!("{HELLO}{}", hash(&[("user_id", "u-7")])).as_bytes(),
        1,
    );
    assert_eq!(m.poll_connect(), None, "the same connection");
    let w = wire(&mut m);
    assert!(
        w.starts_with("*2\r\n$9\r\nSUBSCRIBE\r\n$13\r\nsse:notif:u-7\r\n"),
        "{w}"
    );
    assert!(w.contains("EVAL"));
    m.handle_bytes(
        format!("{}:1\r\n", subscribed("sse:notif:u-7")).as_bytes(),
        2,
    );
    assert!(matches!(m.poll_event(), Some(Event::Start)));
    // Re-read at the heartbeat, like every stream with the store on.
    let n = m.pending().len();
    m.handle_body_took(n, 3);
    m.handle_timeout(3 + S);
    assert!(wire(&mut m).contains("user:alice"));
}

#[test]
fn a_notification_stream_of_an_unknown_user_subscribes_to_nothing() {
    let mut m = open(&store_cfg(), &user("alice"), Topic::Notifications, None);
    m.poll_connect();
    m.poll_transmit();
    m.handle_bytes(format!("{HELLO}%0\r\n").as_bytes(), 1);
    assert_eq!(refusal(&mut m), 401);
    assert_eq!(wire(&mut m), "");
    assert!(m.poll_timeout().is_none());
}
