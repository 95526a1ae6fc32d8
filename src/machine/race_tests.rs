//! Exactly once, explored rather than sampled: the machine on both
//! wirings against a model of Redis, a producer and a browser that
//! reconnects, under every interleaving of what can happen independently
//! (small histories, exhaustively), and under random schedules beyond
//! that.
//!
//! The model: Redis executes the producer's publishes (`XADD` then
//! `PUBLISH`, atomically, as the publish script does), the `SUBSCRIBE`
//! and the stream's commands in one global order. On the p3 wiring
//! ([`Wiring::Shared`]) each execution puts its output on one of two pipes
//! (the subscription's pushes, the command connection's replies) that
//! reach the machine independently, in their own order. On the p2 wiring
//! ([`Wiring::Own`]) there is one connection: its commands run after its
//! `SUBSCRIBE`, in the order sent, and replies and pushes share one pipe. The browser reads everything it is given and may drop the
//! connection and come back with `Last-Event-ID` (what `EventSource`
//! does), onto a fresh subscription and command connection.
//!
//! The invariant: what the browser saw, across its connections, is every
//! event at most once and in order at every step, and every event exactly
//! once once everything settled.

use super::test_support::{self, opening, user, UNIX};
use super::*;
use crate::rules::history::split_live;
use std::collections::VecDeque;

/// Entry ids a little in the past, so a `Last-Event-ID` is believed.
const MS: u64 = (UNIX as u64 - 100) * 1000;

fn cfg(page_entries: u64) -> Config {
    // `max_event_bytes` chooses the page size (512 KiB per page).
    let max_event = (512 * 1024 / page_entries as usize) - crate::config::ENTRY_OVERHEAD;
    test_support::cfg(&[
        ("max_streams_per_user", "0"),
        ("max_event_bytes", &max_event.to_string()),
    ])
}

/// What can happen next. Redis-side steps are atomic in Redis' order;
/// deliveries are the machine being fed one item of one pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The producer's next event: `XADD` + `PUBLISH`.
    Publish,
    /// Redis runs the stream's `SUBSCRIBE` (its confirmation is queued).
    Subscribe,
    /// Redis runs the oldest command the stream sent.
    Execute,
    /// The oldest push reaches the machine.
    Push,
    /// The oldest reply reaches the machine.
    Reply,
    /// The browser drops the connection and reconnects.
    Reconnect,
    /// A slow browser reads what is pending (a fast one reads at once).
    Read,
}

enum Pushed {
    Confirmed,
    Message(Vec<u8>),
    /// [`Wiring::Own`]: a reply, on the same pipe as the pushes.
    Reply(Tag, Value),
}

/// One browser connection's pipes and machine.
struct Conn {
    m: StreamMachine,
    join: bool,
    subscribed: bool,
    commands: VecDeque<Run>,
    /// [`Wiring::Own`]: commands at the head of `commands` sent before
    /// the join (Redis runs them before the `SUBSCRIBE`).
    before_join: usize,
    joined: bool,
    replies: VecDeque<(Tag, Value)>,
    started: bool,
    over: bool,
    /// Plain events delivered to this connection's machine: no history
    /// has them, so only those of the last connection must arrive.
    plain: Vec<usize>,
}

struct World {
    cfg: Config,
    wiring: Wiring,
    events: usize,
    /// Which events the producer sends with plain `PUBLISH` (no history).
    plain: fn(usize) -> bool,
    published: usize,
    history: Vec<(EntryId, Vec<u8>)>,
    reconnects: usize,
    /// The channel is subscribed by other streams of the instance all
    /// along (the p3 hub): a stream that joins is live at once, and
    /// messages published before it joined may still be on their way.
    shared_hub: bool,
    /// The browser reads only when it gets to ([`Step::Read`]), and the
    /// stream's budget is a few events, so bursts fill the outbox and the
    /// backlog and the stream catches up from the history.
    slow: bool,
    /// The subscription's pushes on their way to the machine (and on
    /// [`Wiring::Own`] the replies).
    pushes: VecDeque<Pushed>,
    conn: Conn,
    /// This connection's bytes not yet parsed into events.
    raw: String,
    /// Event numbers the browser saw, in order, across connections.
    seen: Vec<usize>,
    last_id: Option<EntryId>,
    trace: Vec<Step>,
    /// Catch-ups the machines logged (to show the schedules reach them).
    catch_ups: usize,
}

fn id(n: usize) -> EntryId {
    EntryId {
        ms: MS + n as u64,
        seq: 0,
    }
}

fn event(n: usize) -> String {
    format!(r#"{{"event_type":"t","n":{n}}}"#)
}

fn range_reply(history: &[(EntryId, Vec<u8>)], args: &[Vec<u8>]) -> Value {
    let arg = |i: usize| std::str::from_utf8(&args[i]).unwrap();
    assert_eq!(arg(0), "XRANGE");
    let from = |id: &str| Some(EntryId::parse(id).unwrap());
    let (after, at) = match arg(2) {
        "-" => (None, None),
        start => match start.strip_prefix('(') {
            Some(id) => (from(id), None),
            None => (None, from(start)),
        },
    };
    let count: usize = arg(5).parse().unwrap();
    let entries = history
        .iter()
        .filter(|(id, _)| Some(*id) > after && Some(*id) >= at)
        .take(count)
        .map(|(id, data)| {
            Value::Array(vec![
                Value::Bulk(id.to_string().into_bytes()),
                Value::Array(vec![
                    Value::Bulk(b"data".to_vec()),
                    Value::Bulk(data.clone()),
                ]),
            ])
        });
    Value::Array(entries.collect())
}

impl World {
    fn new(
        wiring: Wiring,
        page_entries: u64,
        events: usize,
        reconnects: usize,
        plain: fn(usize) -> bool,
    ) -> World {
        World::wired(
            wiring,
            page_entries,
            events,
            reconnects,
            plain,
            false,
            false,
        )
    }

    fn wired(
        wiring: Wiring,
        page_entries: u64,
        events: usize,
        reconnects: usize,
        plain: fn(usize) -> bool,
        shared_hub: bool,
        slow: bool,
    ) -> World {
        let mut cfg = cfg(page_entries);
        if slow {
            // A live message waits unless the outbox is empty, and a
            // second one waiting overflows the backlog.
            cfg.stream.outbox_bytes = 0;
            cfg.stream.backlog_bytes = 60;
            cfg.stream.low_water = 60;
        }
        let conn = Conn::open(&cfg, wiring, None);
        let mut w = World {
            cfg,
            wiring,
            events,
            plain,
            published: 0,
            history: Vec::new(),
            reconnects,
            shared_hub,
            slow,
            pushes: VecDeque::new(),
            conn,
            raw: String::new(),
            seen: Vec::new(),
            last_id: None,
            trace: Vec::new(),
            catch_ups: 0,
        };
        w.settle();
        w
    }

    fn enabled(&self) -> Vec<Step> {
        let c = &self.conn;
        let mut steps = Vec::new();
        if self.published < self.events {
            steps.push(Step::Publish);
        }
        if c.join {
            steps.push(Step::Subscribe);
        }
        // One connection runs its commands in the order sent.
        let behind = self.wiring == Wiring::Own && c.join && c.before_join == 0;
        if !c.commands.is_empty() && !behind {
            steps.push(Step::Execute);
        }
        if !self.pushes.is_empty() {
            steps.push(Step::Push);
        }
        if !c.replies.is_empty() {
            steps.push(Step::Reply);
        }
        if self.reconnects > 0 && c.started {
            steps.push(Step::Reconnect);
        }
        if self.slow && !c.m.pending().is_empty() {
            steps.push(Step::Read);
        }
        steps
    }

    fn step(&mut self, step: Step) {
        self.trace.push(step);
        let c = &mut self.conn;
        let now = self.trace.len() as u64;
        match step {
            Step::Publish => {
                self.published += 1;
                let n = self.published;
                let payload = if (self.plain)(n) {
                    event(n).into_bytes()
                } else {
                    let id = id(n);
                    self.history.push((id, event(n).into_bytes()));
                    format!(r#"{{"_sse_id":"{id}","event_type":"t","n":{n}}}"#).into_bytes()
                };
                if c.subscribed || self.shared_hub {
                    self.pushes.push_back(Pushed::Message(payload));
                }
            }
            Step::Subscribe => {
                c.join = false;
                c.subscribed = true;
                self.pushes.push_back(Pushed::Confirmed);
            }
            Step::Execute => {
                let r = c.commands.pop_front().unwrap();
                c.before_join = c.before_join.saturating_sub(1);
                let v = range_reply(&self.history, &r.args);
                match self.wiring {
                    Wiring::Own => self.pushes.push_back(Pushed::Reply(r.tag, v)),
                    Wiring::Shared => c.replies.push_back((r.tag, v)),
                }
            }
            Step::Push => match self.pushes.pop_front().unwrap() {
                Pushed::Confirmed => c.m.handle_subscribed(now),
                Pushed::Message(_) if !c.subscribed => {}
                Pushed::Message(p) => {
                    if let (None, _) = split_live(&p) {
                        let text = String::from_utf8(p.clone()).unwrap();
                        c.plain.extend(
                            text.split("\"n\":")
                                .nth(1)
                                .and_then(|n| n.trim_end_matches('}').parse::<usize>().ok()),
                        );
                    }
                    c.m.handle_message(std::sync::Arc::<[u8]>::from(p), now)
                }
                Pushed::Reply(tag, v) => c.m.handle_reply(tag, Ok(v), now),
            },
            Step::Reply => {
                let (tag, v) = c.replies.pop_front().unwrap();
                c.m.handle_reply(tag, Ok(v), now);
            }
            Step::Read => self.read(),
            Step::Reconnect => {
                self.reconnects -= 1;
                c.m.handle_body_gone(now);
                self.settle();
                assert!(self.conn.over, "a gone browser ends the stream");
                self.conn = Conn::open(&self.cfg, self.wiring, self.last_id);
                self.raw.clear();
                if !self.shared_hub {
                    self.pushes.clear();
                }
            }
        }
        self.settle();
    }

    /// Everything that follows at once: the join asked, commands sent
    /// (those that are not history pages answered at once: their timing
    /// does not matter here), the browser reading what it is given.
    fn settle(&mut self) {
        let now = self.trace.len() as u64;
        loop {
            let c = &mut self.conn;
            let mut progressed = false;
            while let Some(op) = c.m.poll_op() {
                let r = match op {
                    Op::Join(_) if self.shared_hub => {
                        // The hub's subscription is confirmed: live at once.
                        c.subscribed = true;
                        c.m.handle_subscribed(now);
                        continue;
                    }
                    Op::Join(_) => {
                        (c.join, c.joined) = (true, true);
                        continue;
                    }
                    Op::Run(r) => r,
                };
                // On its own connection, everything rides behind the join.
                assert_eq!(r.on_stream, self.wiring == Wiring::Own, "{r:?}");
                progressed = true;
                match r.tag {
                    Tag::History => {
                        if !c.joined {
                            c.before_join += 1;
                        }
                        c.commands.push_back(r)
                    }
                    Tag::Record => {
                        let pair =
                            |k: &str, v: &str| (Value::Bulk(k.into()), Value::Bulk(v.into()));
                        let rec =
                            Value::Map(vec![pair("user_id", "u1"), pair("status", "running")]);
                        c.m.handle_reply(r.tag, Ok(rec), now);
                    }
                    tag => c.m.handle_reply(tag, Ok(Value::Nil), now),
                }
            }
            while let Some(e) = c.m.poll_event() {
                match e {
                    Event::Start => c.started = true,
                    Event::Finished(_) => c.over = true,
                    Event::Refuse(e) => panic!("refused: {e:?} after {:?}", self.trace),
                }
            }
            self.catch_ups +=
                c.m.logs()
                    .filter(|l| l.contains(r#""event":"catch_up""#))
                    .count();
            if !self.slow && !c.m.pending().is_empty() {
                progressed = true;
                self.read();
            }
            if !progressed {
                return;
            }
        }
    }

    /// The browser takes every pending byte.
    fn read(&mut self) {
        let now = self.trace.len() as u64;
        let c = &mut self.conn;
        let n = c.m.pending().len();
        self.raw += std::str::from_utf8(c.m.pending()).unwrap();
        c.m.handle_body_took(n, now);
        self.parse();
    }

    /// Complete events of this connection's bytes: `id:` remembered, the
    /// event number checked against what was seen.
    fn parse(&mut self) {
        while let Some(end) = self.raw.find("\n\n") {
            let block: String = self.raw.drain(..end + 2).collect();
            let mut number = None;
            for line in block.lines() {
                if let Some(id) = line.strip_prefix("id: ") {
                    self.last_id = EntryId::parse(id);
                }
                if let Some(n) = line.split("\"n\":").nth(1) {
                    number = n.trim_end_matches('}').parse::<usize>().ok();
                }
            }
            let Some(n) = number else { continue };
            assert!(
                !self.seen.contains(&n),
                "event {n} twice: seen {:?} after {:?}",
                self.seen,
                self.trace
            );
            if !(self.plain)(n) {
                let last = self.seen.iter().rev().find(|k| !(self.plain)(**k));
                assert!(
                    last.is_none_or(|k| *k < n),
                    "event {n} out of order: seen {:?} after {:?}",
                    self.seen,
                    self.trace
                );
            }
            self.seen.push(n);
        }
    }

    /// Nothing left but a reconnect: every event arrived.
    fn settled(&self) -> bool {
        self.enabled().iter().all(|s| *s == Step::Reconnect)
    }

    /// Every event with a history id arrived, and every plain one the
    /// last connection was subscribed for (one published while the
    /// browser was away has nothing to be recovered from).
    fn check_complete(&self) {
        let missing: Vec<usize> = (1..=self.events)
            .filter(|n| !(self.plain)(*n) || self.conn.plain.contains(n))
            .filter(|n| !self.seen.contains(n))
            .collect();
        assert!(
            missing.is_empty(),
            "missing {missing:?}, seen {:?} after {:?}",
            self.seen,
            self.trace
        );
    }
}

impl Conn {
    fn open(cfg: &Config, wiring: Wiring, last_id: Option<EntryId>) -> Conn {
        let last = last_id.map(|id| id.to_string());
        let req = opening(Topic::Execution("e1".into()), last.as_deref());
        Conn {
            m: StreamMachine::open(wiring, cfg, &user("u1"), req),
            join: false,
            subscribed: false,
            commands: VecDeque::new(),
            before_join: 0,
            joined: false,
            replies: VecDeque::new(),
            started: false,
            over: false,
            plain: Vec::new(),
        }
    }
}

/// Complete schedules explored, and how many of them caught up.
#[derive(Debug, Default)]
struct Explored {
    leaves: u64,
    caught_up: u64,
}

/// Every schedule from `make()`, depth first, each replayed from the start
/// (the machine is not `Clone`).
fn explore(make: &dyn Fn() -> World) -> Explored {
    fn walk(make: &dyn Fn() -> World, prefix: &mut Vec<usize>, seen: &mut Explored) {
        let mut w = make();
        for &i in prefix.iter() {
            let s = w.enabled()[i];
            w.step(s);
        }
        if w.settled() {
            w.check_complete();
            seen.leaves += 1;
            seen.caught_up += u64::from(w.catch_ups > 0);
        }
        for i in 0..w.enabled().len() {
            prefix.push(i);
            walk(make, prefix, seen);
            prefix.pop();
        }
    }
    let mut seen = Explored::default();
    walk(make, &mut Vec::new(), &mut seen);
    seen
}

fn never(_: usize) -> bool {
    false
}

fn even(n: usize) -> bool {
    n.is_multiple_of(2)
}

const WIRINGS: [Wiring; 2] = [Wiring::Own, Wiring::Shared];

#[test]
fn every_interleaving_of_one_page_per_event_delivers_each_event_once() {
    for wiring in WIRINGS {
        let seen = explore(&|| World::new(wiring, 1, 3, 0, never));
        // One connection's single pipe allows fewer orders (803 here).
        assert!(seen.leaves > 500, "{wiring:?}: {seen:?}");
    }
}

#[test]
fn every_interleaving_with_a_reconnect_delivers_each_event_once() {
    for wiring in WIRINGS {
        let seen = explore(&|| World::new(wiring, 1, 2, 1, never));
        assert!(seen.leaves > 1000, "{wiring:?}: {seen:?}");
        let seen = explore(&|| World::new(wiring, 2, 3, 1, never));
        assert!(seen.leaves > 1000, "{wiring:?}: {seen:?}");
    }
}

/// p3: other streams keep the channel subscribed, so a stream that joins
/// (a reconnect above all) may be handed a message published before it
/// joined, older than its `Last-Event-ID`.
#[test]
fn every_interleaving_on_a_shared_hub_delivers_each_event_once() {
    let seen = explore(&|| World::wired(Wiring::Shared, 1, 2, 1, never, true, false));
    assert!(seen.leaves > 1000, "{seen:?}");
    let seen = explore(&|| World::wired(Wiring::Shared, 2, 3, 1, never, true, false));
    assert!(seen.leaves > 1000, "{seen:?}");
}

/// A browser slower than the burst: the outbox fills, the backlog
/// overflows and the stream reads on from the history, racing the live
/// messages and the pages as any replay does.
#[test]
fn every_interleaving_of_a_catch_up_delivers_each_event_once() {
    for wiring in WIRINGS {
        let seen = explore(&|| World::wired(wiring, 1, 3, 0, never, false, true));
        assert!(
            seen.leaves > 1000 && seen.caught_up > 100,
            "{wiring:?}: {seen:?}"
        );
    }
}

#[test]
fn every_interleaving_with_plain_publishes_delivers_each_event_once() {
    for wiring in WIRINGS {
        let seen = explore(&|| World::new(wiring, 1, 3, 0, even));
        assert!(seen.leaves > 100, "{wiring:?}: {seen:?}");
    }
}

/// Larger histories and more reconnects than exhaustive search affords:
/// random schedules, each seed replayable.
#[test]
fn random_schedules_deliver_each_event_once() {
    let mut caught_up = 0;
    for seed in 1..=3000u64 {
        let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let page = 1 + next() % 3;
        let has_plain = seed % 4 == 0;
        let plain = if has_plain { even } else { never };
        let slow = seed % 5 < 2 && !has_plain;
        let (wiring, shared_hub) = match seed % 3 {
            0 => (Wiring::Shared, true),
            1 => (Wiring::Shared, false),
            _ => (Wiring::Own, false),
        };
        let mut w = World::wired(wiring, page, 12, 3, plain, shared_hub, slow);
        loop {
            let steps = w.enabled();
            if w.settled() && (steps.is_empty() || next() % 4 != 0) {
                break;
            }
            let s = steps[(next() % steps.len() as u64) as usize];
            w.step(s);
        }
        w.check_complete();
        caught_up += u64::from(w.catch_ups > 0);
    }
    assert!(caught_up > 100, "{caught_up} schedules caught up");
}
