//! A stream with a Redis connection of its own (the p2 shells, one
//! instance per stream): the core adapter that carries out a
//! [`StreamMachine`]'s operations ([`Wiring::Own`]) as one session's
//! bytes, follows that session's `MOVED` redirects while the stream
//! opens, and hands out the commands that cannot ride it as one-shot
//! [`Command`]s. The machine's rules are untouched by it.
//!
//! Pumping it (the machine's other calls pass straight through):
//! 1. [`OwnConnection::poll_connect`]: (re)connect to Redis there (dropping
//!    any previous connection), giving up at
//!    [`OwnConnection::connect_deadline`]; a failure goes to
//!    [`OwnConnection::handle_redis_failure`].
//! 2. Write [`OwnConnection::poll_transmit`]; what Redis sends goes to
//!    [`OwnConnection::handle_bytes`].
//! 3. Run each of [`OwnConnection::poll_commands`] with the same pump and
//!    hand it back to [`OwnConnection::handle_command`].
//! 4. After [`Event::Finished`], steps 1 to 3 once more (the slot given
//!    back), then drop the connection.

use super::{Command, Event, Op, Opening, Run, StreamMachine, Wiring};
use crate::config::Config;
use crate::http::auth::Identity;
use crate::redis::failure;
use crate::redis::resp::RespError;
use crate::redis::session::{Incoming, Session, Tag};
use crate::redis::target::RedisTarget;

/// A [`StreamMachine`] and the one connection it owns.
pub struct OwnConnection {
    m: StreamMachine,
    session: Option<Session>,
    /// The configured Redis (its login and database).
    base: RedisTarget,
    /// Where the session connects: `base`, or where a `MOVED` sent it.
    target: RedisTarget,
    cluster: bool,
    timeout_ms: u64,
    /// History entries longer than this are discarded unread.
    entry_bytes: usize,
    needs_connect: bool,
    /// While the stream opens: the channel joined on the session and the
    /// commands behind it (or the user record read before it), sent
    /// again on the node a `MOVED` names.
    joined: Option<String>,
    behind: Vec<(Tag, Vec<Vec<u8>>)>,
    /// Commands off the session, until the shell takes them.
    aside: Vec<Run>,
}

impl OwnConnection {
    /// A stream about to open (see [`StreamMachine::open`]).
    pub fn open(cfg: &Config, who: &Identity, req: Opening<'_>) -> OwnConnection {
        OwnConnection {
            m: StreamMachine::open(Wiring::Own, cfg, who, req),
            session: None,
            base: cfg.redis.clone(),
            target: cfg.redis.clone(),
            cluster: cfg.redis_cluster,
            timeout_ms: cfg.redis_timeout_ms,
            entry_bytes: cfg.stream.entry_bytes,
            needs_connect: false,
            joined: None,
            behind: Vec::new(),
            aside: Vec::new(),
        }
    }

    /// Where to (re)connect, once per needed connection: the first, and
    /// after a Cluster `MOVED` while opening.
    pub fn poll_connect(&mut self) -> Option<RedisTarget> {
        self.carry_out();
        std::mem::take(&mut self.needs_connect).then(|| self.target.clone())
    }

    /// When opening the connection [`OwnConnection::poll_connect`] asked for
    /// gives up (monotonic ns): the machine's deadline; one with none left
    /// is closing and gives up at once.
    pub fn connect_deadline(&self, now: u64) -> u64 {
        self.m.poll_timeout().unwrap_or(now)
    }

    /// Bytes to write to Redis now.
    pub fn poll_transmit(&mut self) -> Vec<u8> {
        self.carry_out();
        self.session
            .as_mut()
            .map(Session::take_outgoing)
            .unwrap_or_default()
    }

    /// Commands to run each on a fresh connection (Cluster side commands,
    /// or a slot given back once the stream's connection failed); they
    /// give up `redis_timeout_ms` after `now` (monotonic ns).
    pub fn poll_commands(&mut self, now: u64) -> Vec<Command> {
        self.carry_out();
        let (redis, cluster, timeout_ms) = (&self.base, self.cluster, self.timeout_ms);
        self.aside
            .drain(..)
            .map(|r| Command::to(redis, cluster, timeout_ms, r.tag, r.args, now))
            .collect()
    }

    /// A command handed out by [`OwnConnection::poll_commands`] ran.
    pub fn handle_command(&mut self, mut cmd: Command, now: u64) {
        self.m.logs.extend(cmd.logs());
        let tag = cmd.tag;
        let outcome = cmd.outcome();
        self.m.outcome(tag, outcome, now);
    }

    /// Bytes read from Redis.
    pub fn handle_bytes(&mut self, bytes: &[u8], now: u64) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let mut items = Vec::new();
        match session.receive(bytes, &mut items) {
            Ok(()) => {}
            Err(RespError::Moved(moved)) if self.cluster && self.m.starting() => {
                // The channel (or the user record) lives on another node:
                // the same commands go there, on a fresh connection.
                if let Some(to) = self.m.redirected(moved, now) {
                    to.redirect(&mut self.target);
                    let mut session = self.fresh(self.joined.clone().as_deref());
                    for (tag, args) in &self.behind {
                        session.command_owned(*tag, args);
                    }
                    self.session = Some(session);
                }
                return;
            }
            Err(e) => return self.m.handle_redis_failure(&failure::protocol(&e), now),
        }
        for item in items {
            match item {
                Incoming::Subscribed => self.m.handle_subscribed(now),
                Incoming::Message(payload) => self.m.handle_message(payload, now),
                Incoming::Dropped => self.m.handle_too_large(1, now),
                Incoming::Reply(tag, value) => self.m.outcome(tag, Ok(value), now),
            }
        }
    }

    /// Moves the machine's operations onto the session, or aside.
    fn carry_out(&mut self) {
        while let Some(op) = self.m.poll_op() {
            match op {
                Op::Join(channel) => {
                    match self.session.as_mut() {
                        // Logged in to read the user record first.
                        Some(s) => s.subscribe_now(&channel, self.cluster),
                        None => self.session = Some(self.fresh(Some(&channel))),
                    }
                    self.behind.clear();
                    self.joined = Some(channel);
                }
                Op::Run(run) if run.on_stream => {
                    if self.session.is_none() {
                        self.session = Some(self.fresh(None));
                    }
                    if let Some(s) = self.session.as_mut() {
                        s.command_owned(run.tag, &run.args);
                    }
                    if self.m.starting() {
                        self.behind.push((run.tag, run.args));
                    }
                }
                Op::Run(run) => self.aside.push(run),
            }
        }
    }

    /// A session for a new connection: logged in, and subscribed to
    /// `channel` if given.
    fn fresh(&mut self, channel: Option<&str>) -> Session {
        self.needs_connect = true;
        let mut s = match channel {
            Some(channel) => Session::subscribe(&self.base, channel, self.cluster),
            None => Session::handshake(&self.base),
        };
        s.limit_history_entries(self.entry_bytes);
        s
    }

    /// See [`StreamMachine::poll_event`].
    pub fn poll_event(&mut self) -> Option<Event> {
        self.m.poll_event()
    }

    /// See [`StreamMachine::logs`].
    pub fn logs(&mut self) -> std::vec::Drain<'_, String> {
        self.m.logs()
    }

    /// See [`StreamMachine::wants_redis`].
    pub fn wants_redis(&self) -> bool {
        self.m.wants_redis()
    }

    /// See [`StreamMachine::pending`].
    pub fn pending(&self) -> &[u8] {
        self.m.pending()
    }

    /// See [`StreamMachine::poll_timeout`].
    pub fn poll_timeout(&self) -> Option<u64> {
        self.m.poll_timeout()
    }

    /// See [`StreamMachine::handle_body_took`].
    pub fn handle_body_took(&mut self, n: usize, now: u64) {
        self.m.handle_body_took(n, now)
    }

    /// See [`StreamMachine::handle_body_gone`].
    pub fn handle_body_gone(&mut self, now: u64) {
        self.m.handle_body_gone(now)
    }

    /// See [`StreamMachine::handle_timeout`].
    pub fn handle_timeout(&mut self, now: u64) {
        self.m.handle_timeout(now)
    }

    /// The connection failed (connect, write, read, closed).
    pub fn handle_redis_failure(&mut self, detail: &str, now: u64) {
        self.m.handle_redis_failure(detail, now)
    }
}
