//! One SSE stream from open to close, sans-I/O (in the style of
//! `quinn-proto`'s `Connection`): the machine is fed what Redis sent, how
//! many bytes the browser's body took and the current time, and answers
//! with bytes for Redis, bytes for the body, the next deadline and how the
//! stream ends. A shell only moves those bytes and keeps the clock.
//!
//! Pumping it:
//! 1. [`StreamMachine::connect_to`]: (re)connect to Redis there (dropping
//!    any previous connection); failures go to [`StreamMachine::redis_failed`].
//! 2. Write [`StreamMachine::transmit`] to Redis; run each of
//!    [`StreamMachine::take_commands`] (Redis Cluster side commands) with
//!    the same pump and hand it back to [`StreamMachine::command_done`].
//! 3. [`StreamMachine::poll`]: [`Event::Start`] sends the `200` SSE head,
//!    [`Event::Refuse`] the error answer, [`Event::Finished`] ends the pump
//!    (after one more step 2, which gives the slot back).
//! 4. Write [`StreamMachine::pending`] to the body if not empty, report
//!    [`StreamMachine::body_took`] or [`StreamMachine::body_gone`].
//! 5. Wait for Redis bytes ([`StreamMachine::wants_redis`]), the body
//!    (only with bytes pending) or [`StreamMachine::deadline`]; feed
//!    [`StreamMachine::receive`] and [`StreamMachine::handle_timeout`].
//!
//! The phases: *opening* (the pipeline of `HELLO 3`, `SUBSCRIBE`,
//! `XRANGE`, the slot `EVAL` and `HGETALL`; replies decided in
//! [`opening::decide`]), *live* (messages, heartbeat with a Redis `PING`
//! liveness check and slot renewal, stall, token, lifetime) and *closing*
//! (last bytes flushed within [`timers::CLOSE_FLUSH_NS`]). The history is
//! replayed in pages ([`replay`]): the first page comes with the opening
//! pipeline, and in the live phase a `Tag::History` reply appends the next
//! page, which `body_took` asks for once the browser has drained the last.
//!
//! Where its Redis lives is the [`Wiring`]: its own connection (the p2
//! shells, one instance per stream), or the instance's shared subscription
//! (`hub::Hub`) and shared command connection (`pipeline::Pipeline`) of
//! the p3 shell, which pumps many machines in one instance. The rules are
//! the same; only where bytes go differs (see [`Wiring::Shared`]).

pub mod backlog;
pub mod command;
pub mod held;
pub mod instance;
pub mod opening;
pub mod publish;
pub mod replay;
pub mod timers;

use crate::config::{Config, StreamBudget};
use crate::http::auth::Identity;
use crate::http::error::{ApiError, RETRY_AFTER_SECONDS};
use crate::http::routes::Route;
use crate::log;
use crate::redis::cluster::Moved;
use crate::redis::failure;
use crate::redis::hub::End;
use crate::redis::resp::{RespError, Value};
use crate::redis::session::{Incoming, Session, Tag};
use crate::redis::target::RedisTarget;
use crate::rules::events::StreamKind;
use crate::rules::history::{self, split_live, EntryId};
use crate::rules::limits::Slot;
use crate::rules::outbox::{Close, Outbox};
use backlog::{Admit, Backlog, Bytes};
pub use command::Command;
use command::{unavailable, MAX_REDIRECTS};
use held::{Held, Offer};
use instance::InstanceLease;
use opening::{Plan, Replies};
use replay::{Paged, Replay};
use timers::{Due, Timers};

/// Bytes a shell reads from Redis per call. Small on purpose: wasmtime-wasi
/// allocates and zeroes the full length on every read, and a typical event
/// is a few hundred bytes (64 KiB cost ~7 % CPU per event,
/// docs/PERFORMANCE.md). Both shells use it, so the native baseline reads
/// as the component does.
pub const READ_CHUNK: usize = 8 * 1024;

/// Which stream a request opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topic {
    /// `/api/v1/events/executions/{id}`.
    Execution(String),
    /// `/api/v1/events/notifications/stream`.
    Notifications,
    /// `/api/v1/events/replay/{session_id}/status`.
    ReplayStatus(String),
}

impl Topic {
    /// The stream a route opens, if it is a stream route.
    pub fn of(route: &Route) -> Option<Topic> {
        match route {
            Route::ExecutionStream(id) => Some(Topic::Execution(id.clone())),
            Route::NotificationStream => Some(Topic::Notifications),
            Route::ReplayStatus(id) => Some(Topic::ReplayStatus(id.clone())),
            _ => None,
        }
    }
}

/// Where a stream's Redis lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wiring {
    /// One connection of its own for the subscription and every command
    /// (the p2 shells): [`StreamMachine::connect_to`], `transmit`, `receive`.
    Own,
    /// The instance's shared connections (the p3 shell): the shell joins
    /// [`StreamMachine::join_channel`] on its subscription hub and reports
    /// [`StreamMachine::subscribed`] and each [`StreamMachine::message`];
    /// [`StreamMachine::take_requests`] go out on the shared command
    /// connection, their answers come back through
    /// [`StreamMachine::reply`]. The commands go out only once the
    /// subscription is confirmed, as on Cluster, so nothing published in
    /// between is missed (the user record every stream reads first goes
    /// out before the join: a refused user never subscribes). Liveness of the
    /// subscription is the hub's (its `PING`s); a lost hub or command
    /// connection is [`StreamMachine::redis_failed`].
    Shared,
}

/// A command for the shared command connection ([`Wiring::Shared`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub tag: Tag,
    pub args: Vec<Vec<u8>>,
}

/// What the shell must do next.
#[derive(Debug)]
pub enum Event {
    /// Send this error answer; the stream is over.
    Refuse(ApiError),
    /// Send the `200` head with the SSE headers; then write [`StreamMachine::pending`].
    Start,
    /// The stream is over (why, for tests); drop the Redis connection
    /// after writing [`StreamMachine::transmit`] once more. Never before
    /// [`Event::Start`] (a stream that ends before it starts is a
    /// `Refuse`); a shell that meets one anyway answers
    /// [`Event::unstarted`], so every shell answers it alike.
    Finished(Close),
}

impl Event {
    /// The answer to a [`Event::Finished`] with no [`Event::Start`] before
    /// it (which the machine never sends): a 503 the browser retries.
    pub fn unstarted() -> ApiError {
        ApiError::service_unavailable(RETRY_AFTER_SECONDS)
    }
}

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
    session: Session,
    /// The configured Redis; the pipeline is rebuilt for a redirect.
    base: RedisTarget,
    target: RedisTarget,
    cluster: bool,
    redirects: usize,
    needs_connect: bool,
    slot: Option<Slot>,
    slot_taken: bool,
    /// Commands whose keys live outside the channel's slot.
    side: Vec<(Tag, Vec<Vec<u8>>)>,
    history: Option<Vec<Vec<u8>>>,
    /// The history's key and where its replay starts.
    history_from: Option<(String, Option<EntryId>)>,
    /// The history's key, kept for a catch-up after a backlog overflow.
    history_key: Option<String>,
    budget: StreamBudget,
    commands: Vec<Command>,
    events: Vec<Event>,
    logs: Vec<String>,
    timers: Timers,
    rules: opening::Rules,
    /// Side commands are built from a copy of what they need of the config.
    command_cfg: CommandConfig,
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
    /// [`Wiring::Shared`]: the channel to join, until the shell took it.
    join: Option<String>,
    requests: Vec<Request>,
}

/// What a side command needs (the machine borrows no config).
struct CommandConfig {
    redis: RedisTarget,
    cluster: bool,
    timeout_ms: u64,
}

/// What opening a stream needs besides the config.
pub struct Opening<'a> {
    pub topic: Topic,
    /// The browser's `Last-Event-ID` header, as sent.
    pub last_event_id: Option<&'a str>,
    /// A name unique to this stream for its slot (slot sets are shared).
    pub member: String,
    /// The instance's name, where one instance serves many streams
    /// ([`Wiring::Shared`]): their slots may live by one lease
    /// ([`InstanceLease`]).
    pub instance: Option<&'a str>,
    /// Monotonic ns.
    pub now: u64,
    /// Wall-clock unix seconds (token expiry, `Last-Event-ID` sanity).
    pub unix_now: i64,
}

impl StreamMachine {
    /// A stream about to open: the pipeline is queued for
    /// [`StreamMachine::transmit`] (or a refusal that needs no Redis).
    pub fn open(cfg: &Config, who: &Identity, req: Opening<'_>) -> StreamMachine {
        StreamMachine::open_wired(Wiring::Own, cfg, who, req)
    }

    /// [`StreamMachine::open`] with its Redis where `wiring` says.
    pub fn open_wired(
        wiring: Wiring,
        cfg: &Config,
        who: &Identity,
        req: Opening<'_>,
    ) -> StreamMachine {
        let mut logs = Vec::new();
        let resume = opening::resume_point(req.last_event_id, req.unix_now, &mut logs);
        let max = cfg.limits.max_streams_per_user;
        let leased = req
            .instance
            .filter(|_| wiring == Wiring::Shared && InstanceLease::applies(cfg));
        let slot = (max > 0).then(|| {
            let key = format!("{}{}", cfg.prefixes.slots_key, who.user_id);
            let slot = Slot::new(key, req.member, cfg.heartbeat_seconds);
            match leased {
                Some(i) => slot.under_lease(&InstanceLease::key(i), cfg.limits.max_stream_seconds),
                None => slot,
            }
        });
        let mut m = StreamMachine {
            phase: Phase::Over,
            channel: String::new(),
            session: session(&cfg.redis, &cfg.stream),
            base: cfg.redis.clone(),
            target: cfg.redis.clone(),
            cluster: cfg.redis_cluster,
            redirects: 0,
            needs_connect: false,
            slot,
            slot_taken: false,
            side: Vec::new(),
            history: None,
            history_from: None,
            history_key: None,
            budget: cfg.stream,
            commands: Vec::new(),
            events: Vec::new(),
            logs,
            timers: Timers::new(cfg, who.expires_at, req.unix_now, req.now),
            rules: opening::Rules {
                who: who.clone(),
                identified: None,
                max_streams: max,
                retry_ms: cfg.retry_ms,
            },
            command_cfg: CommandConfig {
                redis: cfg.redis.clone(),
                cluster: cfg.redis_cluster,
                timeout_ms: cfg.redis_timeout_ms,
            },
            result_of: None,
            user_lookup: None,
            stored: None,
            opened_at: req.now,
            wiring,
            join: None,
            requests: Vec::new(),
        };
        let deadline = req
            .now
            .saturating_add(cfg.redis_timeout_ms.saturating_mul(1_000_000));
        let lookup = opening::user_lookup(cfg, who);
        // The user store answers first: an unknown or inactive user is
        // refused before anything is subscribed or a slot is taken.
        if let Some(args) = &lookup {
            if wiring == Wiring::Shared {
                m.side_command(Tag::User, args.clone(), req.now);
            } else {
                m.session.command_owned(Tag::User, args);
                m.needs_connect = true;
            }
            m.user_lookup = lookup;
            m.phase = Phase::Identifying {
                cfg: Box::new(cfg.clone()),
                topic: req.topic,
                resume,
                deadline,
            };
            return m;
        }
        m.plan(cfg, who, &req.topic, resume, deadline, false);
        m
    }

    /// Plans the stream and queues its pipeline: on a fresh session, or
    /// (`identified`: the user record was read first) on the one that read it.
    fn plan(
        &mut self,
        cfg: &Config,
        who: &Identity,
        topic: &Topic,
        resume: Option<EntryId>,
        deadline: u64,
        identified: bool,
    ) {
        let mut plan = match Plan::new(cfg, who, topic, resume) {
            Ok(plan) => plan,
            Err(e) => {
                self.phase = Phase::Over;
                return self.events.push(Event::Refuse(e));
            }
        };
        if identified {
            plan.user_lookup = None;
        } else {
            self.user_lookup = plan.user_lookup.clone();
        }
        self.channel = plan.channel.clone();
        self.side = plan.side_commands(self.slot.as_ref(), cfg.limits.max_streams_per_user);
        self.history = plan.history_command(cfg);
        self.history_from = plan.history_key(cfg);
        self.result_of = plan
            .execution_id
            .clone()
            .zip(plan.record_key.as_ref().map(|k| k.as_bytes().to_vec()));
        if self.wiring == Wiring::Shared {
            // Nothing rides on a subscription connection of its own.
            self.side
                .extend(self.history.take().map(|h| (Tag::History, h)));
            self.join = Some(self.channel.clone());
        } else if identified {
            self.session.subscribe_now(&self.channel, self.cluster);
            self.queue_reads();
        } else {
            self.needs_connect = true;
            self.session = self.pipeline();
        }
        self.phase = Phase::Opening {
            plan,
            deadline,
            subscribed: false,
            early: Vec::new(),
            too_large: 0,
            replies: Replies::default(),
            outstanding: 0,
        };
    }

    /// The user record read first came back: refuse, or open the stream
    /// as the user the store knows.
    fn identified(&mut self, reply: Value, now: u64) {
        let Phase::Identifying {
            cfg,
            topic,
            resume,
            deadline,
        } = std::mem::replace(&mut self.phase, Phase::Over)
        else {
            return;
        };
        match opening::store_identity(&self.rules.who, reply, &mut self.logs) {
            Err(e) => self.events.push(Event::Refuse(e)),
            Ok(who) => {
                self.stored = Some(who.clone());
                self.rules.identified = Some(who.clone());
                self.plan(&cfg, &who, &topic, resume, deadline, true);
                self.opened_if_complete(now);
            }
        }
    }

    /// The opening pipeline: handshake, `(S)SUBSCRIBE`, the history read
    /// (same slot as the channel) and, off Cluster, the side commands.
    fn pipeline(&mut self) -> Session {
        let mut session = Session::subscribe(&self.base, &self.channel, self.cluster);
        session.limit_history_entries(self.budget.entry_bytes);
        let previous = std::mem::replace(&mut self.session, session);
        self.queue_reads();
        std::mem::replace(&mut self.session, previous)
    }

    /// The history read and, off Cluster, the side commands.
    fn queue_reads(&mut self) {
        if let Some(args) = &self.history {
            self.session.command_owned(Tag::History, args);
        }
        if !self.cluster {
            for (tag, args) in &self.side {
                self.session.command_owned(*tag, args);
            }
        }
    }

    /// Where to (re)connect, once per needed connection: the first, and
    /// after a Cluster `MOVED` while opening.
    pub fn connect_to(&mut self) -> Option<RedisTarget> {
        std::mem::take(&mut self.needs_connect).then(|| self.target.clone())
    }

    /// When opening the connection [`StreamMachine::connect_to`] asked for
    /// gives up (monotonic ns): the machine's deadline; one with none left
    /// is closing and gives up at once.
    pub fn connect_deadline(&self, now: u64) -> u64 {
        self.deadline().unwrap_or(now)
    }

    /// Bytes to write to Redis now.
    pub fn transmit(&mut self) -> Vec<u8> {
        if self.wiring == Wiring::Shared {
            return Vec::new();
        }
        self.session.take_outgoing()
    }

    /// [`Wiring::Shared`]: the channel to join on the instance's hub, once.
    pub fn join_channel(&mut self) -> Option<String> {
        self.join.take()
    }

    /// [`Wiring::Shared`]: the hub confirmed the channel's subscription.
    pub fn subscribed(&mut self, now: u64) {
        self.incoming(Incoming::Subscribed, now);
        self.opened_if_complete(now);
    }

    /// [`Wiring::Shared`]: a message the hub received on the channel.
    /// Shared bytes ([`Bytes::Shared`], the hub's) are kept, not copied,
    /// while they wait for the browser.
    pub fn message(&mut self, payload: impl Into<Bytes>, now: u64) {
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
    pub fn too_large(&mut self, n: usize, now: u64) {
        match &mut self.phase {
            Phase::Opening { too_large, .. } => *too_large += n,
            Phase::Live { .. } => self.overrun(n, "too large", now),
            Phase::Identifying { .. } | Phase::Over => {}
        }
    }

    /// [`Wiring::Shared`]: commands for the shared command connection.
    pub fn take_requests(&mut self) -> Vec<Request> {
        std::mem::take(&mut self.requests)
    }

    /// Whether a command rides on the stream's own connection (p2 off
    /// Cluster), rather than its own one-shot connection or the shared one.
    fn on_stream(&self) -> bool {
        self.wiring == Wiring::Own && !self.cluster
    }

    /// Cluster side commands to run, each on its own connection.
    pub fn take_commands(&mut self) -> Vec<Command> {
        std::mem::take(&mut self.commands)
    }

    /// The next thing the shell must do, if any.
    pub fn poll(&mut self) -> Option<Event> {
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
    pub fn deadline(&self) -> Option<u64> {
        match &self.phase {
            Phase::Opening { deadline, .. } | Phase::Identifying { deadline, .. } => {
                Some(*deadline)
            }
            Phase::Live { outbox, .. } => Some(self.timers.next(!outbox.pending().is_empty())),
            Phase::Over => None,
        }
    }

    /// Bytes read from Redis.
    pub fn receive(&mut self, bytes: &[u8], now: u64) {
        let mut items = Vec::new();
        match self.session.receive(bytes, &mut items) {
            Ok(()) => {}
            Err(RespError::Moved(moved))
                if self.cluster && matches!(self.phase, Phase::Identifying { .. }) =>
            {
                // The user record lives elsewhere: read it there first.
                self.target.host = moved.host;
                self.target.port = moved.port;
                self.redirects += 1;
                if self.redirects > MAX_REDIRECTS {
                    return self.redis_failed(failure::REDIRECTS, now);
                }
                let mut session = session(&self.base, &self.budget);
                if let Some(args) = &self.user_lookup {
                    session.command_owned(Tag::User, args);
                }
                self.session = session;
                self.needs_connect = true;
                return;
            }
            Err(RespError::Moved(moved))
                if self.cluster && matches!(self.phase, Phase::Opening { .. }) =>
            {
                if self.redirects < MAX_REDIRECTS {
                    self.redirects += 1;
                    moved.redirect(&mut self.target);
                    self.session = self.pipeline();
                    self.needs_connect = true;
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
                } else {
                    self.redis_failed(failure::REDIRECTS, now);
                }
                return;
            }
            Err(e) => return self.redis_failed(&failure::protocol(&e), now),
        }
        for item in items {
            self.incoming(item, now);
        }
        self.opened_if_complete(now);
    }

    fn incoming(&mut self, item: Incoming, now: u64) {
        match (&mut self.phase, item) {
            (
                Phase::Opening {
                    subscribed,
                    early,
                    replies,
                    too_large,
                    ..
                },
                item,
            ) => match item {
                Incoming::Subscribed => *subscribed = true,
                Incoming::Message(p) => early.push(p.into()),
                Incoming::Dropped => *too_large += 1,
                Incoming::Reply(tag, v) => replies.list.push((tag, Ok(v))),
            },
            (Phase::Identifying { .. }, Incoming::Reply(Tag::User, v)) => self.identified(v, now),
            (Phase::Live { .. }, Incoming::Message(payload)) => {
                self.live_message(payload.into(), now)
            }
            (Phase::Live { .. }, Incoming::Dropped) => self.overrun(1, "too large", now),
            (Phase::Live { .. }, Incoming::Reply(Tag::History, v)) => self.history_page(v, now),
            (
                Phase::Live {
                    ping_outstanding, ..
                },
                Incoming::Reply(Tag::Ping, _),
            ) => *ping_outstanding = false,
            (Phase::Live { .. }, Incoming::Reply(Tag::Result, v)) => self.result_read(Some(v), now),
            (Phase::Live { .. }, Incoming::Reply(Tag::User, v)) => self.user_read(Ok(v), now),
            _ => {}
        }
    }

    /// A live message: while the history is replayed, dropped or held by
    /// the replay; else admitted by the backlog (now, later, or given up
    /// for a catch-up), then delivered.
    fn live_message(&mut self, payload: Bytes, now: u64) {
        let Phase::Live {
            outbox,
            replay,
            backlog,
            ..
        } = &mut self.phase
        else {
            return;
        };
        if outbox.closed().is_some() {
            return;
        }
        if let Some(r) = replay.as_mut() {
            if let Err(dropped) = r.live(payload.into_vec(), &mut self.logs) {
                self.overrun(dropped, "replay backlog full", now);
            }
            return;
        }
        let progress = self.timers.progress();
        match backlog.offer(payload, outbox.pending().len(), &self.budget, now, progress) {
            Admit::Now(payload) => self.deliver(payload.into_vec(), now),
            Admit::Queued => {}
            Admit::Overflow { waiting, stalled } => self.catch_up(waiting, stalled, now),
        }
    }

    /// An admitted live message: sent, or held behind (or as) a
    /// `result_stored` waiting for the record's result.
    fn deliver(&mut self, payload: Vec<u8>, now: u64) {
        let fill = self.result_of.is_some();
        let Phase::Live { outbox, held, .. } = &mut self.phase else {
            return;
        };
        match held.offer(payload, fill) {
            Offer::Send(p) => send(outbox, &p, &self.channel, &mut self.logs),
            Offer::Held if held.bytes() > self.budget.outbox_bytes => {
                outbox.close(Close::SlowClient)
            }
            Offer::Held => {}
            Offer::Ask => self.ask_result(now),
        }
        self.first_event_at(now);
        self.closed_if(now);
    }

    /// The browser drained: waiting live messages that fit now go out.
    fn release_backlog(&mut self, now: u64) {
        loop {
            let Phase::Live {
                outbox,
                backlog,
                replay: None,
                ..
            } = &mut self.phase
            else {
                return;
            };
            if outbox.closed().is_some() {
                return;
            }
            match backlog.release(outbox.pending().len(), &self.budget) {
                Some(payload) => self.deliver(payload.into_vec(), now),
                None => return,
            }
        }
    }

    /// The backlog overflowed: its messages are given up. With history
    /// ids they are read again from the history, from the last id queued
    /// (the paged replay a resume uses), and the stream goes on as if
    /// nothing happened; a plain one (no history) is lost, and the browser
    /// is told ([`Self::overrun`]).
    ///
    /// A browser that is not reading (`stalled`) and lost a plain message
    /// is dropped as a slow client at once: there is nothing to flush to
    /// it, and its subscription should not outlive it.
    fn catch_up(&mut self, waiting: Vec<Bytes>, stalled: bool, now: u64) {
        let plain = waiting.iter().filter(|p| split_live(p).0.is_none()).count();
        let key = self.history_key.clone().filter(|_| plain == 0);
        let Phase::Live { outbox, replay, .. } = &mut self.phase else {
            return;
        };
        let Some(key) = key else {
            if stalled {
                outbox.close(Close::SlowClient);
            }
            return self.overrun(plain.max(1), "backlog full", now);
        };
        self.logs.push(log::line(
            "catch_up",
            &[
                ("channel", self.channel.as_str().into()),
                ("messages", waiting.len().into()),
                (
                    "bytes",
                    waiting.iter().map(|p| p.len()).sum::<usize>().into(),
                ),
            ],
        ));
        let fill = self.result_of.as_ref().map(|(id, _)| id.as_str());
        let mut r = Replay::catch_up(key, outbox.last_id(), self.budget, &self.channel, fill);
        for payload in waiting {
            // Each has an id: noted as dropped, never held.
            let _ = r.live(payload.into_vec(), &mut self.logs);
        }
        *replay = Some(Box::new(r));
        self.ask_page(now);
    }

    /// `dropped` live messages without a history id were given up: the
    /// browser gets a reconnectable end (`Close::Overrun`), an execution
    /// stream then opens with a fresh status event.
    fn overrun(&mut self, dropped: usize, reason: &'static str, now: u64) {
        let Phase::Live { outbox, .. } = &mut self.phase else {
            return;
        };
        self.logs.push(log::line(
            "messages_dropped",
            &[
                ("channel", self.channel.as_str().into()),
                ("messages", dropped.into()),
                ("reason", reason.into()),
            ],
        ));
        outbox.end(Close::Overrun, self.rules.retry_ms);
        self.closed_if(now);
    }

    /// Reads the execution record's `result` (a `result_stored` waits for it).
    fn ask_result(&mut self, now: u64) {
        if let Some((_, key)) = &self.result_of {
            let args = vec![b"HGET".to_vec(), key.clone(), b"result".to_vec()];
            self.read_aside(Tag::Result, args, now);
        }
    }

    /// A history page came back: replayed, then the next one asked or live.
    fn history_page(&mut self, reply: Value, now: u64) {
        let entries = match history::parse_range(reply) {
            Ok(entries) => entries,
            Err(e) => return self.redis_failed(&format!("history page: {e}"), now),
        };
        let Phase::Live {
            outbox,
            replay: Some(r),
            ..
        } = &mut self.phase
        else {
            return;
        };
        let paged = r.page(entries, outbox, &mut self.logs);
        self.paged(paged, now);
    }

    /// What the replay does after a page (or a result it waited for).
    fn paged(&mut self, paged: Paged, now: u64) {
        match paged {
            Paged::More => {}
            Paged::Result => self.ask_result(now),
            Paged::Done => {
                if let Phase::Live { replay, .. } = &mut self.phase {
                    *replay = None;
                }
            }
        }
        self.ask_page(now);
        self.first_event_at(now);
        self.closed_if(now);
    }

    /// Queues the next history page when the replay wants it.
    fn ask_page(&mut self, now: u64) {
        let Phase::Live {
            outbox,
            replay: Some(r),
            ..
        } = &mut self.phase
        else {
            return;
        };
        if r.wants_page(outbox) {
            let args = r.command();
            r.asked();
            self.read_in_slot(Tag::History, args, now);
        }
    }

    /// Records when the first event was queued (time to first event).
    fn first_event_at(&mut self, now: u64) {
        if let Phase::Live {
            outbox,
            first_event,
            ..
        } = &mut self.phase
        {
            if first_event.is_none() && outbox.events_sent() > 0 {
                *first_event = Some(now);
            }
        }
    }

    /// The record's `result` came back (`None`: it could not be read): the
    /// held `result_stored` goes out filled, then what waited behind it.
    fn result_read(&mut self, value: Option<Value>, now: u64) {
        let Phase::Live {
            outbox,
            held,
            replay,
            ..
        } = &mut self.phase
        else {
            return;
        };
        if let Some(r) = replay.as_mut().filter(|r| r.waiting()) {
            let result = value.as_ref().and_then(Value::as_str).map(str::to_string);
            let paged = r.result(result, outbox, &mut self.logs);
            return self.paged(paged, now);
        }
        let Some((first, rest)) = held.answered() else {
            return;
        };
        let id = self.result_of.as_ref().map_or("", |(id, _)| id.as_str());
        let result = value.as_ref().and_then(Value::as_str);
        let event = opening::filled(&first, result, id, &mut self.logs);
        send(outbox, &event, &self.channel, &mut self.logs);
        // Admitted before anything in the backlog: straight on.
        for payload in rest {
            self.deliver(payload, now);
        }
        self.first_event_at(now);
        self.closed_if(now);
    }

    /// The heartbeat's read of the user record: a user the store no longer
    /// knows as the one who opened the stream (inactive, gone, another id
    /// or role) is cut. A read that failed is not a verdict: the next
    /// heartbeat reads again.
    fn user_read(&mut self, reply: Result<Value, ApiError>, now: u64) {
        let (Some(opened), Ok(reply)) = (&self.stored, reply) else {
            return;
        };
        let Phase::Live { outbox, .. } = &mut self.phase else {
            return;
        };
        let now_known = opening::store_identity(&self.rules.who, reply, &mut self.logs);
        if now_known.as_ref().ok() != Some(opened) {
            self.logs.push(log::line(
                "user_revoked",
                &[("channel", self.channel.as_str().into())],
            ));
            outbox.end(Close::Revoked, self.rules.retry_ms);
        }
        self.closed_if(now);
    }

    /// A read whose key may live outside the channel's slot: on the
    /// stream's connection, on its own on Redis Cluster, or on the shared
    /// command connection ([`Wiring::Shared`]).
    fn read_aside(&mut self, tag: Tag, args: Vec<Vec<u8>>, now: u64) {
        if self.on_stream() {
            self.session.command_owned(tag, &args);
        } else {
            self.side_command(tag, args, now);
        }
    }

    /// A read in the channel's own slot (a later history page): on the
    /// stream's connection, or on the shared command connection
    /// ([`Wiring::Shared`]), whose answer comes back through
    /// [`StreamMachine::reply`] as [`StreamMachine::receive`]'s would.
    fn read_in_slot(&mut self, tag: Tag, args: Vec<Vec<u8>>, now: u64) {
        if self.wiring == Wiring::Shared {
            self.side_command(tag, args, now);
        } else {
            self.session.command_owned(tag, &args);
        }
    }

    /// [`Wiring::Shared`]: the stream's subscription on the instance's hub
    /// ended without the stream leaving. On Cluster, a `MOVED` within
    /// [`MAX_REDIRECTS`] is the node to join instead (returned); any other
    /// end fails the stream with its reason, as a lost connection.
    pub fn subscription_ended(&mut self, end: End, now: u64) -> Option<Moved> {
        let why = match end {
            End::Moved(to) if self.redirects < MAX_REDIRECTS => {
                self.redirects += 1;
                return Some(to);
            }
            End::Lost(why) if why.is_empty() => "subscription lost".to_string(),
            End::Lost(why) => format!("subscription lost: {why}"),
            End::Overflow => "subscription queue overflowed".into(),
            End::Moved(_) => failure::REDIRECTS.into(),
        };
        self.redis_failed(&why, now);
        None
    }

    /// The Redis connection failed (connect, write, read, closed).
    pub fn redis_failed(&mut self, detail: &str, now: u64) {
        match &mut self.phase {
            Phase::Opening { .. } => self.opening_failed(detail, now, false),
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

    /// Opening failed: 503, and a slot that may be held is given back, on
    /// the stream's connection if it still works, else on a fresh one.
    fn opening_failed(&mut self, detail: &str, now: u64, conn_works: bool) {
        let Phase::Opening { replies, .. } = &self.phase else {
            return;
        };
        // Shared: the acquire went out with the other commands once the
        // subscription was confirmed (and `side` was emptied then).
        let sent = match self.wiring {
            Wiring::Own => !self.cluster,
            Wiring::Shared => self.side.is_empty(),
        };
        self.slot_taken = self.slot.is_some() && replies.may_hold_slot(sent);
        let e = unavailable(&mut self.logs, detail);
        self.phase = Phase::Over;
        self.release_slot(now, conn_works && self.on_stream());
        self.events.push(Event::Refuse(e));
    }

    /// A side command handed out by [`StreamMachine::take_commands`] ran.
    pub fn command_done(&mut self, mut cmd: Command, now: u64) {
        self.logs.extend(cmd.logs());
        let tag = cmd.tag;
        let outcome = cmd.outcome();
        self.outcome(tag, outcome, now);
    }

    /// [`Wiring::Shared`]: a [`Request`]'s answer on the shared command
    /// connection, or why it failed (the connection logged it): a 503
    /// while opening, as a failed command of the stream's own.
    pub fn reply(&mut self, tag: Tag, answer: Result<Value, String>, now: u64) {
        let outcome = answer.map_err(|_| ApiError::service_unavailable(RETRY_AFTER_SECONDS));
        self.outcome(tag, outcome, now);
    }

    /// A command's outcome: a side command's or a [`Request`]'s.
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
                if *outstanding == 0 {
                    self.decide(now);
                }
            }
            (Phase::Identifying { .. }, Tag::User) => match outcome {
                Ok(v) => self.identified(v, now),
                Err(e) => self.redis_failed(&e.detail, now),
            },
            (Phase::Live { .. }, Tag::History) => match outcome {
                Ok(v) => self.history_page(v, now),
                Err(e) => self.redis_failed(&format!("history page: {}", e.detail), now),
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

    /// The pipeline is answered: on Cluster (and [`Wiring::Shared`]) the
    /// side commands go out now (the subscription is live, so nothing
    /// published is missed).
    fn opened_if_complete(&mut self, now: u64) {
        let (own, on_stream) = (self.wiring == Wiring::Own, self.on_stream());
        let Phase::Opening {
            subscribed: true,
            outstanding,
            ..
        } = &mut self.phase
        else {
            return;
        };
        if (own && self.session.awaiting_replies() > 0) || *outstanding > 0 {
            return;
        }
        if !on_stream && !self.side.is_empty() {
            *outstanding = self.side.len();
            for (tag, args) in std::mem::take(&mut self.side) {
                self.side_command(tag, args, now);
            }
            return;
        }
        self.decide(now);
    }

    /// A command off the stream's connection: a one-shot [`Command`] (p2
    /// on Cluster) or a [`Request`] on the shared command connection.
    fn side_command(&mut self, tag: Tag, args: Vec<Vec<u8>>, now: u64) {
        if self.wiring == Wiring::Shared {
            return self.requests.push(Request { tag, args });
        }
        let c = &self.command_cfg;
        let cmd = Command::to(&c.redis, c.cluster, c.timeout_ms, tag, args, now);
        self.commands.push(cmd);
    }

    /// Every reply is in: answer, or start the live phase.
    fn decide(&mut self, now: u64) {
        let Phase::Opening {
            plan,
            early,
            replies,
            too_large,
            ..
        } = std::mem::replace(&mut self.phase, Phase::Over)
        else {
            return;
        };
        let d = opening::decide(
            &self.rules,
            &plan,
            self.slot.is_some(),
            replies,
            &mut self.logs,
        );
        self.slot_taken = d.slot_taken;
        self.stored = d.stored.or(self.stored.take());
        let opened = match d.answer {
            Ok(opened) => opened,
            Err(e) => return self.refuse(e, now),
        };
        let mut outbox = opened.outbox;
        // The first page follows the first events (`retry:`, the status
        // snapshot or the replay session's status) queued by the decision.
        // With no history read, an empty page: a finished execution still
        // ends with its stored result.
        self.history_key = self.history_from.as_ref().map(|(key, _)| key.clone());
        let (key, after) = self.history_from.take().unwrap_or_default();
        let mut replay = Replay::new(key, after, self.budget, &self.channel);
        replay.execution(opened.fill, opened.finished);
        let paged = replay.page(opened.page.unwrap_or_default(), &mut outbox, &mut self.logs);
        self.timers.wrote(now);
        if self.stored.is_some() {
            self.timers.check_user(now);
        }
        self.phase = Phase::Live {
            first_event: (outbox.events_sent() > 0).then_some(now),
            outbox,
            started: now,
            ping_outstanding: false,
            replay: Some(Box::new(replay)),
            held: Held::default(),
            backlog: Backlog::default(),
            kind: plan.kind,
        };
        self.paged(paged, now);
        for payload in early {
            self.live_message(payload, now);
        }
        if too_large > 0 {
            self.overrun(too_large, "too large", now);
        }
        if let Phase::Live { outbox, .. } = &self.phase {
            self.logs.push(log::line(
                "stream_opened",
                &[
                    ("channel", self.channel.as_str().into()),
                    ("kind", plan.kind.name().into()),
                    ("queued_events", outbox.events_sent().into()),
                ],
            ));
        }
        self.events.push(Event::Start);
        self.closed_if(now);
    }

    /// Answers with `err` and gives a taken slot back.
    fn refuse(&mut self, err: ApiError, now: u64) {
        self.phase = Phase::Over;
        self.release_slot(now, self.on_stream());
        self.events.push(Event::Refuse(err));
    }

    /// Gives the slot back (best effort: the lease expires anyway): on the
    /// stream's connection (`on_stream`), else on its own (on Cluster
    /// through the slot key's owner).
    fn release_slot(&mut self, now: u64, on_stream: bool) {
        if !std::mem::take(&mut self.slot_taken) {
            return;
        }
        let Some(slot) = &self.slot else { return };
        let args = slot.release();
        if on_stream {
            self.session.command_owned(Tag::Release, &args);
        } else {
            self.side_command(Tag::Release, args, now);
        }
    }

    /// The body took `n` bytes of [`StreamMachine::pending`].
    pub fn body_took(&mut self, n: usize, now: u64) {
        if let Phase::Live { outbox, .. } = &mut self.phase {
            outbox.consume(n);
            if n > 0 {
                self.timers.wrote(now);
            }
            self.release_backlog(now);
            self.ask_page(now);
            self.closed_if(now);
        }
    }

    /// The body can no longer be written (the browser left).
    pub fn body_gone(&mut self, now: u64) {
        if let Phase::Live { outbox, .. } = &mut self.phase {
            outbox.close(Close::ClientGone);
            self.closed_if(now);
        }
    }

    /// The clock reached (or passed) [`StreamMachine::deadline`].
    pub fn handle_timeout(&mut self, now: u64) {
        let (outbox, ping_outstanding) = match &mut self.phase {
            Phase::Opening { deadline, .. } => {
                if now >= *deadline {
                    self.opening_failed(failure::SILENT, now, true);
                }
                return;
            }
            Phase::Identifying { deadline, .. } => {
                if now >= *deadline {
                    self.redis_failed(failure::SILENT, now);
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
                        self.session.command(Tag::Ping, &[b"PING"]);
                    }
                    self.renew_slot(now);
                }
            }
            Due::UserCheck => {
                if let Some(args) = self.user_lookup.clone() {
                    self.read_aside(Tag::User, args, now);
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
    fn renew_slot(&mut self, now: u64) {
        let Some(slot) = self.slot.as_ref().filter(|_| self.slot_taken) else {
            return;
        };
        let Some(args) = slot.renew() else { return };
        if self.on_stream() {
            self.session.command_owned(Tag::Renew, &args);
        } else {
            self.side_command(Tag::Renew, args, now);
        }
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
        self.release_slot(now, self.on_stream());
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

/// Queues a live message, or logs why it was skipped.
fn send(outbox: &mut Outbox, payload: &[u8], channel: &str, logs: &mut Vec<String>) {
    if let Err(skip) = outbox.message(payload) {
        logs.push(opening::skipped(channel, skip.reason(), payload.len()));
    }
}

/// A connection's session that reads this stream's history: entries
/// past the budget's `entry_bytes` are discarded unread.
fn session(target: &RedisTarget, budget: &StreamBudget) -> Session {
    let mut s = Session::handshake(target);
    s.limit_history_entries(budget.entry_bytes);
    s
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod shared_tests;

#[cfg(test)]
mod race_tests;
