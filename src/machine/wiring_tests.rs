//! Scenarios every wiring passes alike, written once and run on both
//! ([`Wiring::Own`], p2; [`Wiring::Shared`], p3) at the machine's own
//! level: the operations it asks for and what came of them. What only
//! one wiring has stays beside it: the p2 session's bytes and redirects
//! in `tests.rs`, the p3 hub and lease in `shared_tests.rs`.

use super::test_support::*;
use super::*;

const WIRINGS: [Wiring; 2] = [Wiring::Own, Wiring::Shared];

/// One execution stream of `u1` and the commands it asked for.
struct Scene {
    m: StreamMachine,
    wiring: Wiring,
    joined: bool,
}

impl Scene {
    fn open(wiring: Wiring) -> Scene {
        Scene::open_as(wiring, &cfg(&[]), &user("u1"))
    }

    fn open_as(wiring: Wiring, cfg: &Config, who: &Identity) -> Scene {
        let req = opening(Topic::Execution("e1".into()), None);
        Scene {
            m: StreamMachine::open(wiring, cfg, who, req),
            wiring,
            joined: false,
        }
    }

    /// The commands asked since the last call, in order (the join noted).
    /// On the shared connections nothing rides a connection of its own.
    fn asked(&mut self) -> Vec<Run> {
        let mut runs = Vec::new();
        while let Some(op) = self.m.poll_op() {
            match op {
                Op::Join(channel) => {
                    assert_eq!(channel, "sse:exec:e1");
                    self.joined = true;
                }
                Op::Run(r) => runs.push(r),
            }
        }
        if self.wiring == Wiring::Shared {
            assert!(runs.iter().all(|r| !r.on_stream), "{runs:?}");
        }
        runs
    }

    /// The join confirmed and every command answered by `answer` until
    /// the stream is decided (what it asks then is left to see).
    fn answered(wiring: Wiring, answer: impl Fn(Tag) -> Value) -> Scene {
        Scene::open(wiring).answer_all(answer)
    }

    /// [`Scene::answered`] for a stream opened some other way.
    fn answer_all(mut self, answer: impl Fn(Tag) -> Value) -> Scene {
        let mut runs = self.asked();
        assert!(
            self.joined,
            "{:?}: the channel is joined first",
            self.wiring
        );
        self.m.handle_subscribed(5);
        loop {
            if !self.m.events.is_empty() {
                return self;
            }
            runs.extend(self.asked());
            if runs.is_empty() {
                return self;
            }
            for r in std::mem::take(&mut runs) {
                self.m.handle_reply(r.tag, Ok(answer(r.tag)), 6);
            }
        }
    }

    fn refused(&mut self) -> u16 {
        match self.m.poll_event() {
            Some(Event::Refuse(e)) => e.status,
            other => panic!("{:?}: expected a refusal, got {other:?}", self.wiring),
        }
    }

    /// The tags asked since the last call.
    fn tags(&mut self) -> Vec<Tag> {
        self.asked().iter().map(|r| r.tag).collect()
    }
}

fn record(user: &str, status: &str) -> Value {
    let pair = |k: &str, v: &str| (Value::Bulk(k.into()), Value::Bulk(v.into()));
    Value::Map(vec![pair("user_id", user), pair("status", status)])
}

fn ok(tag: Tag) -> Value {
    match tag {
        Tag::Acquire => Value::Int(1),
        Tag::Record => record("u1", "running"),
        _ => Value::Array(Vec::new()),
    }
}

#[test]
fn an_opening_reads_behind_the_join_and_starts_once_answered() {
    for wiring in WIRINGS {
        let mut s = Scene::open(wiring);
        let before = s.tags();
        assert!(s.joined);
        match wiring {
            // Pipelined behind the SUBSCRIBE on the same connection.
            Wiring::Own => assert_eq!(before, vec![Tag::History, Tag::Acquire, Tag::Record]),
            // Nothing before the confirmation: it could miss a publish.
            Wiring::Shared => assert!(before.is_empty(), "{before:?}"),
        }
        let mut s = Scene::answered(wiring, ok);
        assert!(matches!(s.m.poll_event(), Some(Event::Start)), "{wiring:?}");
        let head = String::from_utf8(s.m.pending().to_vec()).unwrap();
        assert!(head.starts_with("retry: "), "{wiring:?}: {head}");
        assert!(head.contains(r#""event_type":"status""#), "{head}");
    }
}

#[test]
fn refusals_give_the_slot_back() {
    for wiring in WIRINGS {
        for (tag, answer, status) in [
            (Tag::Record, Value::Nil, 404),
            (Tag::Record, record("u2", "running"), 403),
            (Tag::Record, Value::Simple("odd".into()), 503),
            // The history reply does not parse.
            (Tag::History, Value::Int(7), 503),
        ] {
            let mut s = Scene::answered(wiring, |t| if t == tag { answer.clone() } else { ok(t) });
            assert_eq!(s.refused(), status, "{wiring:?}");
            let release = s.asked();
            assert_eq!(release.len(), 1, "{wiring:?} {status}: {release:?}");
            assert_eq!(release[0].tag, Tag::Release);
            // On the stream's own connection, which still works.
            assert_eq!(release[0].on_stream, wiring == Wiring::Own);
            assert!(s.m.poll_event().is_none() && !s.m.wants_redis());
            assert!(s.m.poll_timeout().is_none());
        }
        // No slot free: 429, nothing to give back.
        let mut s = Scene::answered(wiring, |t| match t {
            Tag::Acquire => Value::Int(0),
            t => ok(t),
        });
        assert_eq!(s.refused(), 429, "{wiring:?}");
        assert!(s.asked().is_empty(), "{wiring:?}");
    }
}

#[test]
fn failures_while_opening_are_503_and_release_only_what_may_be_held() {
    for wiring in WIRINGS {
        // Lost before the confirmation: the acquire rode behind the join
        // on a connection of its own (it may have run: given back on a
        // fresh connection), and was never sent on the shared one.
        let mut s = Scene::open(wiring);
        s.asked();
        s.m.handle_redis_failure("connection closed", 1);
        assert_eq!(s.refused(), 503, "{wiring:?}");
        let release = s.asked();
        match wiring {
            Wiring::Own => {
                assert_eq!(release.len(), 1, "{release:?}");
                assert_eq!(
                    (release[0].tag, release[0].on_stream),
                    (Tag::Release, false)
                );
            }
            Wiring::Shared => assert!(release.is_empty(), "{release:?}"),
        }
        assert!(s.m.logs().any(|l| l.contains("redis_unavailable")));
        // Lost with the acquire sent and unanswered: given back elsewhere.
        let mut s = Scene::open(wiring);
        s.asked();
        s.m.handle_subscribed(1);
        s.asked();
        s.m.handle_redis_failure("connection closed", 2);
        assert_eq!(s.refused(), 503, "{wiring:?}");
        let release = s.asked();
        assert_eq!(release.len(), 1, "{wiring:?}: {release:?}");
        assert_eq!(
            (release[0].tag, release[0].on_stream),
            (Tag::Release, false)
        );
        // It said 0: nothing to give back.
        let mut s = Scene::open(wiring);
        let mut runs = s.asked();
        s.m.handle_subscribed(1);
        runs.extend(s.asked());
        assert!(runs.iter().any(|r| r.tag == Tag::Acquire));
        s.m.handle_reply(Tag::Acquire, Ok(Value::Int(0)), 2);
        s.m.handle_redis_failure("connection closed", 3);
        assert_eq!(s.refused(), 503, "{wiring:?}");
        assert!(s.asked().is_empty(), "{wiring:?}");
        // Silent until the opening deadline: 503, the slot given back (on
        // the stream's own connection, which may still work).
        let mut s = Scene::open(wiring);
        s.asked();
        s.m.handle_subscribed(1);
        s.asked();
        let deadline = s.m.poll_timeout().unwrap();
        s.m.handle_timeout(deadline - 1);
        assert!(s.m.poll_event().is_none(), "{wiring:?}: not yet");
        s.m.handle_timeout(deadline);
        assert_eq!(s.refused(), 503, "{wiring:?}");
        let release = s.asked();
        assert_eq!(release.len(), 1, "{wiring:?}: {release:?}");
        assert_eq!(release[0].on_stream, wiring == Wiring::Own);
    }
}

/// The heartbeat on both wirings: a `: ping` comment each interval and a
/// renewal of the slot; the liveness check rides the stream's own
/// connection (`PING`, and a missing `PONG` ends the stream reconnectably)
/// or is the hub's on the shared one (no `PING` from the stream). The
/// heartbeat owes nothing to the renewal's answer.
#[test]
fn a_heartbeat_pings_the_browser_and_renews_the_slot() {
    const HB: u64 = 15 * S;
    for wiring in WIRINGS {
        let mut s = Scene::answered(wiring, ok);
        assert!(matches!(s.m.poll_event(), Some(Event::Start)));
        let n = s.m.pending().len();
        s.m.handle_body_took(n, 6);
        assert!(s.asked().is_empty(), "{wiring:?}");
        assert_eq!(s.m.poll_timeout(), Some(6 + HB), "{wiring:?}");
        s.m.handle_timeout(6 + HB - 1);
        assert!(s.m.pending().is_empty(), "{wiring:?}: not yet");
        s.m.handle_timeout(6 + HB);
        assert_eq!(s.m.pending(), b": ping\n\n", "{wiring:?}");
        let runs = s.asked();
        let tags: Vec<Tag> = runs.iter().map(|r| r.tag).collect();
        match wiring {
            Wiring::Own => {
                assert_eq!(tags, vec![Tag::Ping, Tag::Renew]);
                assert!(runs.iter().all(|r| r.on_stream), "{runs:?}");
            }
            Wiring::Shared => assert_eq!(tags, vec![Tag::Renew]),
        }
        s.m.handle_body_took(8, 6 + HB);
        if wiring == Wiring::Own {
            s.m.handle_reply(Tag::Ping, Ok(Value::Simple("PONG".into())), 7 + HB);
        }
        s.m.handle_reply(Tag::Renew, Ok(Value::Int(1)), 7 + HB);
        // The next interval: ping again; on the own connection the PING
        // goes unanswered, and the one after finds it missing.
        s.m.handle_timeout(6 + 2 * HB);
        assert_eq!(s.m.pending(), b": ping\n\n", "{wiring:?}");
        s.asked();
        s.m.handle_body_took(8, 6 + 2 * HB);
        s.m.handle_timeout(6 + 3 * HB);
        let text = String::from_utf8(s.m.pending().to_vec()).unwrap();
        match wiring {
            Wiring::Own => assert_eq!(text, ": ping\n\nretry: 3000\n\n: redis connection lost\n\n"),
            Wiring::Shared => assert_eq!(text, ": ping\n\n"),
        }
    }
}

/// A stream's own deadlines end it alike on both wirings and give its
/// slot back (on its own connection, or the shared one): a token that
/// runs out (`token_expired`, then the body ends) and a browser that
/// stops reading (a slow client).
#[test]
fn deadlines_end_a_stream_alike_and_give_its_slot_back() {
    fn released(s: &mut Scene) {
        let release = s.asked();
        assert_eq!(release.len(), 1, "{:?}: {release:?}", s.wiring);
        assert_eq!(release[0].tag, Tag::Release);
        assert_eq!(release[0].on_stream, s.wiring == Wiring::Own);
    }
    for wiring in WIRINGS {
        let c = cfg(&[("jwt_leeway_seconds", "0")]);
        let who = Identity {
            expires_at: UNIX + 5,
            ..user("u1")
        };
        let mut s = Scene::open_as(wiring, &c, &who).answer_all(ok);
        assert!(matches!(s.m.poll_event(), Some(Event::Start)), "{wiring:?}");
        let n = s.m.pending().len();
        s.m.handle_body_took(n, 6);
        assert_eq!(s.m.poll_timeout(), Some(5 * S), "{wiring:?}");
        s.m.handle_timeout(5 * S);
        let text = String::from_utf8(s.m.pending().to_vec()).unwrap();
        assert!(text.contains("event: token_expired"), "{wiring:?}: {text}");
        let n = s.m.pending().len();
        s.m.handle_body_took(n, 5 * S);
        assert!(
            matches!(s.m.poll_event(), Some(Event::Finished(_))),
            "{wiring:?}"
        );
        released(&mut s);

        let c = cfg(&[("write_stall_seconds", "2")]);
        let mut s = Scene::open_as(wiring, &c, &user("u1")).answer_all(ok);
        assert!(matches!(s.m.poll_event(), Some(Event::Start)), "{wiring:?}");
        // The opening's bytes are never taken.
        let stall = s.m.poll_timeout().unwrap();
        assert!((2 * S..=6 + 2 * S).contains(&stall), "{wiring:?}: {stall}");
        s.m.handle_timeout(stall - 1);
        assert!(s.m.poll_event().is_none(), "{wiring:?}: not yet");
        s.m.handle_timeout(stall);
        assert!(
            matches!(s.m.poll_event(), Some(Event::Finished(Close::SlowClient))),
            "{wiring:?}"
        );
        released(&mut s);
    }
}
