//! One SSE stream from open to close, sans-I/O (in the style of
//! `quinn-proto`'s `Connection`): the machine is fed what Redis answered
//! and pushed, how many bytes the browser's body took and the current
//! time, and answers with Redis operations, bytes for the body, the next
//! deadline and how the stream ends. A shell only carries those out and
//! keeps the clock.
//!
//! One API for every wiring; inputs are `handle_*`, outputs `poll_*`:
//! 1. [`StreamMachine::poll_op`]: the Redis operations to carry out, in
//!    order: [`Op::Join`] the channel, [`Op::Run`] a command. Their
//!    results come back as [`StreamMachine::handle_subscribed`],
//!    [`StreamMachine::handle_message`], [`StreamMachine::handle_too_large`],
//!    [`StreamMachine::handle_reply`], [`StreamMachine::handle_subscription_end`] and
//!    [`StreamMachine::handle_redis_failure`].
//! 2. [`StreamMachine::poll_event`]: [`Event::Start`] sends the `200` SSE head,
//!    [`Event::Refuse`] the error answer, [`Event::Finished`] ends the
//!    pump (after carrying out the last operations, which give the slot
//!    back).
//! 3. Write [`StreamMachine::pending`] to the body if not empty, report
//!    [`StreamMachine::handle_body_took`] or [`StreamMachine::handle_body_gone`].
//! 4. Wait for Redis ([`StreamMachine::wants_redis`]), the body (only
//!    with bytes pending) or [`StreamMachine::poll_timeout`]; feed what came
//!    and [`StreamMachine::handle_timeout`].
//!
//! The p3 shell carries the operations out on the instance's shared
//! subscription (`hub::Hub`) and command connection
//! (`pipeline::Pipeline`). The p2 shells own one connection per stream:
//! [`own::OwnConnection`] is the core adapter that turns the operations
//! into that one session's bytes, its `MOVED` redirects and one-shot
//! [`Command`]s, and the replies back into the calls above.
//!
//! The phases: *opening* (join, then the history read, the slot `EVAL`
//! and the user record; replies decided in [`opening::decide`]), *live*
//! (messages, heartbeat with a `PING` liveness check where the
//! subscription is the stream's own, slot renewal, stall, token,
//! lifetime) and *closing* (last bytes flushed within
//! [`timers::CLOSE_FLUSH_NS`]). The history is replayed in pages
//! ([`replay`]): the first page comes with the opening, and in the live
//! phase a `Tag::History` reply appends the next page, which `handle_body_took`
//! asks for once the browser has drained the last.

mod api;
pub mod backlog;
pub mod command;
pub mod held;
pub mod instance;
mod live;
pub mod opening;
pub mod own;
pub mod publish;
pub mod replay;
mod start;
pub mod timers;

use crate::config::{Config, StreamBudget};
use crate::http::auth::Identity;
use crate::http::error::{ApiError, RETRY_AFTER_SECONDS};
use crate::log;
use crate::redis::cluster::Moved;
use crate::redis::failure;
use crate::redis::hub::End;
use crate::redis::resp::Value;
use crate::redis::session::Tag;
use crate::rules::events::StreamKind;
use crate::rules::history::{self, split_live, EntryId};
use crate::rules::limits::Slot;
use crate::rules::outbox::{Close, Outbox};
pub use api::{Event, Op, Opening, Run, Topic, Wiring};
use backlog::{Admit, Backlog, Bytes};
pub use command::Command;
use command::{unavailable, MAX_REDIRECTS};
use held::{Held, Offer};
use instance::InstanceLease;
use opening::{Plan, Replies};
use replay::{Paged, Replay};
use std::collections::VecDeque;
use timers::{Due, Timers};

/// Bytes a shell reads from Redis per call. Small on purpose: wasmtime-wasi
/// allocates and zeroes the full length on every read, and a typical event
/// is a few hundred bytes (64 KiB cost ~7 % CPU per event,
/// docs/PERFORMANCE.md). Both shells use it, so the native baseline reads
/// as the component does.
pub const READ_CHUNK: usize = 8 * 1024;

enum Phase {
    /// A notification stream with identity from the user store: its
    /// channel is named by the store's user id, so the user record is read
    /// first (on the stream's connection) and the stream opens after.
    Identifying {
        cfg: Box<Config>,
        topic: Topic,
        resume: Option<EntryId>,
        deadline: u64,
    },
    /// The pipeline is out; collecting replies until `deadline`.
    Opening {
        plan: Plan,
        deadline: u64,
        subscribed: bool,
        early: Vec<Bytes>,
        /// Messages too large to decode before the stream started.
        too_large: usize,
        replies: Replies,
        /// Cluster side commands handed to the shell and not back yet.
        outstanding: usize,
    },
    Live {
        outbox: Outbox,
        started: u64,
        ping_outstanding: bool,
        /// The history replay, until its last page is read.
        replay: Option<Box<Replay>>,
        /// Messages behind a `result_stored` waiting for the record's result.
        held: Held,
        /// Live messages waiting for room in the outbox.
        backlog: Backlog,
        kind: StreamKind,
        /// When the first event was queued (time to first event).
        first_event: Option<u64>,
    },
    Over,
}

/// One stream's state (see the module doc for how to pump it).
pub struct StreamMachine {
    phase: Phase,
    channel: String,
    cluster: bool,
    /// `MOVED` redirects of the subscription followed so far.
    redirects: usize,
    slot: Option<Slot>,
    slot_taken: bool,
    /// Commands whose keys live outside the channel's shard.
    side: Vec<(Tag, Vec<Vec<u8>>)>,
    /// The history's key and where its replay starts.
    history_from: Option<(String, Option<EntryId>)>,
    /// The history's key, kept for a catch-up after a backlog overflow.
    history_key: Option<String>,
    budget: StreamBudget,
    ops: VecDeque<Op>,
    events: Vec<Event>,
    logs: Vec<String>,
    timers: Timers,
    rules: opening::Rules,
    /// Execution streams: the execution id and its record's key, whose
    /// `result` fills a `result_stored` that came without one.
    result_of: Option<(String, Vec<u8>)>,
    /// The user record's `HGETALL` (identity from the user store).
    user_lookup: Option<Vec<Vec<u8>>>,
    /// The caller as the store knew them at open; re-read every heartbeat.
    stored: Option<Identity>,
    /// Monotonic ns when the stream was asked for (time to first event).
    opened_at: u64,
    wiring: Wiring,
}

impl StreamMachine {
    /// The next Redis operation to carry out, in order.
    pub fn poll_op(&mut self) -> Option<Op> {
        self.ops.pop_front()
    }

    /// Queues a command: on the stream's own connection (`on_stream`), or
    /// elsewhere.
    fn run(&mut self, tag: Tag, args: Vec<Vec<u8>>, on_stream: bool) {
        self.ops.push_back(Op::Run(Run {
            tag,
            args,
            on_stream,
        }));
    }

    /// The channel's subscription is confirmed.
    pub fn handle_subscribed(&mut self, now: u64) {
        if let Phase::Opening { subscribed, .. } = &mut self.phase {
            *subscribed = true;
        }
        self.opened_if_complete(now);
    }

    /// A message on the channel.
    /// Shared bytes ([`Bytes::Shared`], the hub's) are kept, not copied,
    /// while they wait for the browser.
    pub fn handle_message(&mut self, payload: impl Into<Bytes>, now: u64) {
        match &mut self.phase {
            Phase::Opening { early, .. } => early.push(payload.into()),
            Phase::Live { .. } => self.live_message(payload.into(), now),
            Phase::Identifying { .. } | Phase::Over => {}
        }
    }

    /// `n` messages on the channel were too large to decode (the
    /// connection's frame limit) and were discarded unread: nothing can
    /// give them back, so the browser is told (`Close::Overrun`), as for
    /// a plain message a full backlog had to drop. While opening, once
    /// the stream has started.
    pub fn handle_too_large(&mut self, n: usize, now: u64) {
        match &mut self.phase {
            Phase::Opening { too_large, .. } => *too_large += n,
            Phase::Live { .. } => self.overrun(n, "too large", now),
            Phase::Identifying { .. } | Phase::Over => {}
        }
    }

    /// The next thing the shell must do, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        (!self.events.is_empty()).then(|| self.events.remove(0))
    }

    /// Log lines to print.
    pub fn logs(&mut self) -> std::vec::Drain<'_, String> {
        self.logs.drain(..)
    }

    /// True while Redis bytes are wanted (opening, or live and not closed).
    pub fn wants_redis(&self) -> bool {
        match &self.phase {
            Phase::Opening { .. } | Phase::Identifying { .. } => true,
            Phase::Live { outbox, .. } => outbox.closed().is_none(),
            Phase::Over => false,
        }
    }

    /// Bytes waiting for the body (empty before [`Event::Start`]).
    pub fn pending(&self) -> &[u8] {
        match &self.phase {
            Phase::Live { outbox, .. } => outbox.pending(),
            _ => &[],
        }
    }

    /// The next deadline (monotonic ns), `None` once over.
    pub fn poll_timeout(&self) -> Option<u64> {
        match &self.phase {
            Phase::Opening { deadline, .. } | Phase::Identifying { deadline, .. } => {
                Some(*deadline)
            }
            Phase::Live { outbox, .. } => Some(self.timers.next(!outbox.pending().is_empty())),
            Phase::Over => None,
        }
    }

    /// Whether the stream has not started yet (identifying or opening):
    /// a subscription's `MOVED` is followed only then.
    fn starting(&self) -> bool {
        matches!(
            self.phase,
            Phase::Identifying { .. } | Phase::Opening { .. }
        )
    }

    /// Whether a command whose key may live outside the channel's shard
    /// rides on the stream's own connection ([`Wiring::Own`] off Cluster).
    fn on_stream(&self) -> bool {
        self.wiring == Wiring::Own && !self.cluster
    }

    /// A read whose key may live outside the channel's shard.
    fn read_aside(&mut self, tag: Tag, args: Vec<Vec<u8>>) {
        self.run(tag, args, self.on_stream());
    }

    /// A read on the channel's own shard (a later history page): on the
    /// stream's own connection wherever it has one.
    fn read_on_shard(&mut self, tag: Tag, args: Vec<Vec<u8>>) {
        self.run(tag, args, self.wiring == Wiring::Own);
    }

    /// The stream's subscription ended without the stream leaving. On
    /// Cluster, a `MOVED` within [`MAX_REDIRECTS`] is the node to join
    /// instead (returned; while opening, what the old subscription
    /// brought is forgotten: it comes again); any other end fails the
    /// stream with its reason, as a lost connection.
    pub fn handle_subscription_end(&mut self, end: End, now: u64) -> Option<Moved> {
        let why = match end {
            End::Moved(to) => return self.redirected(to, now),
            End::Lost(why) if why.is_empty() => "subscription lost".to_string(),
            End::Lost(why) => format!("subscription lost: {why}"),
            End::Overflow => "subscription queue overflowed".into(),
        };
        self.handle_redis_failure(&why, now);
        None
    }

    /// Redis Cluster answered `MOVED`: the node to go to instead, within
    /// [`MAX_REDIRECTS`] (what the old subscription brought while opening
    /// is forgotten: it comes again there); past it, the stream fails.
    fn redirected(&mut self, to: Moved, now: u64) -> Option<Moved> {
        if self.redirects >= MAX_REDIRECTS {
            self.handle_redis_failure(failure::REDIRECTS, now);
            return None;
        }
        self.redirects += 1;
        if let Phase::Opening {
            subscribed,
            early,
            replies,
            ..
        } = &mut self.phase
        {
            (*subscribed, *replies) = (false, Replies::default());
            early.clear();
        }
        Some(to)
    }

    /// The Redis connection failed (connect, write, read, closed).
    pub fn handle_redis_failure(&mut self, detail: &str, now: u64) {
        match &mut self.phase {
            Phase::Opening { .. } => self.opening_failed(detail, false),
            Phase::Identifying { .. } => {
                let e = unavailable(&mut self.logs, detail);
                self.phase = Phase::Over;
                self.events.push(Event::Refuse(e));
            }
            Phase::Live { outbox, .. } => {
                if outbox.closed().is_none() {
                    self.logs.push(log::line(
                        "redis_lost",
                        &[
                            ("channel", self.channel.as_str().into()),
                            ("detail", detail.into()),
                        ],
                    ));
                    outbox.end(Close::RedisLost, self.rules.retry_ms);
                    self.closed_if(now);
                }
            }
            Phase::Over => {}
        }
    }

    /// An [`Op::Run`]'s answer, or why it failed (the connection logged
    /// it): a 503 while opening, as any failed command.
    pub fn handle_reply(&mut self, tag: Tag, answer: Result<Value, String>, now: u64) {
        let outcome = answer.map_err(|_| ApiError::service_unavailable(RETRY_AFTER_SECONDS));
        self.outcome(tag, outcome, now);
    }

    /// A command's outcome: its reply, or the answer its failure gives.
    fn outcome(&mut self, tag: Tag, outcome: Result<Value, ApiError>, now: u64) {
        match (&mut self.phase, tag) {
            (
                Phase::Opening {
                    replies,
                    outstanding,
                    ..
                },
                _,
            ) => {
                replies.list.push((tag, outcome));
                *outstanding = outstanding.saturating_sub(1);
                self.opened_if_complete(now);
            }
            (Phase::Identifying { .. }, Tag::User) => match outcome {
                Ok(v) => self.identified(v, now),
                Err(e) => self.handle_redis_failure(&e.detail, now),
            },
            (
                Phase::Live {
                    ping_outstanding, ..
                },
                Tag::Ping,
            ) => *ping_outstanding = false,
            (Phase::Live { .. }, Tag::History) => match outcome {
                Ok(v) => self.history_page(v, now),
                Err(e) => self.handle_redis_failure(&format!("history page: {}", e.detail), now),
            },
            (_, Tag::Result) => self.result_read(outcome.ok(), now),
            (_, Tag::User) => self.user_read(outcome, now),
            (_, Tag::Renew) => {
                if let Err(e) = outcome {
                    self.logs.push(log::line(
                        "slot_renew_failed",
                        &[("detail", e.detail.into())],
                    ));
                }
            }
            _ => {}
        }
    }

    /// Gives the slot back (best effort: the lease expires anyway): on the
    /// stream's own connection (`on_stream`), else elsewhere (on Cluster
    /// through the slot key's owner).
    fn release_slot(&mut self, on_stream: bool) {
        if !std::mem::take(&mut self.slot_taken) {
            return;
        }
        let Some(slot) = &self.slot else { return };
        let args = slot.release();
        self.run(Tag::Release, args, on_stream);
    }

    /// The body took `n` bytes of [`StreamMachine::pending`].
    pub fn handle_body_took(&mut self, n: usize, now: u64) {
        if let Phase::Live { outbox, .. } = &mut self.phase {
            outbox.consume(n);
            if n > 0 {
                self.timers.wrote(now);
            }
            self.release_backlog(now);
            self.ask_page();
            self.closed_if(now);
        }
    }

    /// The body can no longer be written (the browser left).
    pub fn handle_body_gone(&mut self, now: u64) {
        if let Phase::Live { outbox, .. } = &mut self.phase {
            outbox.close(Close::ClientGone);
            self.closed_if(now);
        }
    }

    /// The clock reached (or passed) [`StreamMachine::poll_timeout`].
    pub fn handle_timeout(&mut self, now: u64) {
        let (outbox, ping_outstanding) = match &mut self.phase {
            Phase::Opening { deadline, .. } => {
                if now >= *deadline {
                    self.opening_failed(failure::SILENT, true);
                }
                return;
            }
            Phase::Identifying { deadline, .. } => {
                if now >= *deadline {
                    self.handle_redis_failure(failure::SILENT, now);
                }
                return;
            }
            Phase::Live {
                outbox,
                ping_outstanding,
                ..
            } => (outbox, ping_outstanding),
            Phase::Over => return,
        };
        match self.timers.due(now, !outbox.pending().is_empty()) {
            Due::Nothing => {}
            Due::FlushOver => {
                // Bytes still pending: not a clean end whatever closed it.
                let why = match outbox.closed() {
                    Some(why) if !why.ends_cleanly() => why,
                    _ => Close::SlowClient,
                };
                return self.finish(why, now);
            }
            Due::Heartbeat => {
                outbox.heartbeat();
                if *ping_outstanding {
                    self.logs.push(log::line(
                        "redis_lost",
                        &[
                            ("channel", self.channel.as_str().into()),
                            ("detail", "no PONG".into()),
                        ],
                    ));
                    outbox.end(Close::RedisLost, self.rules.retry_ms);
                } else {
                    if self.wiring == Wiring::Own {
                        *ping_outstanding = true;
                        self.ops.push_back(Op::Run(Run {
                            tag: Tag::Ping,
                            args: vec![b"PING".to_vec()],
                            on_stream: true,
                        }));
                    }
                    self.renew_slot();
                }
            }
            Due::UserCheck => {
                if let Some(args) = self.user_lookup.clone() {
                    self.read_aside(Tag::User, args);
                }
            }
            due @ (Due::Stalled | Due::TokenExpired | Due::Lifetime) => {
                if let Some(why) = due.close() {
                    outbox.end(why, self.rules.retry_ms);
                }
            }
        }
        self.closed_if(now);
    }

    /// Renews the slot's lease with every heartbeat (unless the instance's
    /// lease covers it).
    fn renew_slot(&mut self) {
        let Some(slot) = self.slot.as_ref().filter(|_| self.slot_taken) else {
            return;
        };
        let Some(args) = slot.renew() else { return };
        self.run(Tag::Renew, args, self.on_stream());
    }

    /// Once the outbox is closed: the flush deadline starts, and the
    /// stream is over when everything is written, or at once when the
    /// browser is gone or not reading.
    fn closed_if(&mut self, now: u64) {
        let Phase::Live { outbox, .. } = &self.phase else {
            return;
        };
        let Some(why) = outbox.closed() else { return };
        self.timers.closed(now);
        if matches!(why, Close::ClientGone | Close::SlowClient) || outbox.finished() {
            self.finish(why, now);
        }
    }

    fn finish(&mut self, why: Close, now: u64) {
        let Phase::Live {
            outbox,
            started,
            kind,
            first_event,
            ..
        } = std::mem::replace(&mut self.phase, Phase::Over)
        else {
            return;
        };
        self.release_slot(self.on_stream());
        let millis = now.saturating_sub(started) / 1_000_000;
        let first = first_event.map(|t| t.saturating_sub(self.opened_at) / 1_000_000);
        self.logs.push(log::line(
            "stream_closed",
            &[
                ("channel", self.channel.as_str().into()),
                ("kind", kind.name().into()),
                ("reason", why.reason().into()),
                ("events", outbox.events_sent().into()),
                ("duration_ms", millis.into()),
                ("first_event_ms", first.into()),
            ],
        ));
        self.events.push(Event::Finished(why));
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod shared_tests;

#[cfg(test)]
mod race_tests;

#[cfg(test)]
mod wiring_tests;

#[cfg(test)]
mod test_support;
