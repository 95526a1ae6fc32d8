//! One command on a fresh Redis connection, sans-I/O: the handshake and the
//! command in one pipeline, the reply, and on Redis Cluster the `MOVED`
//! redirects to the key's owner.
//!
//! Every shell runs it with the same loop: ask [`Command::next_io`] and do
//! what it says (connect, write, read until a deadline), reporting what it
//! read to [`Command::receive`] and any failure to [`Command::failed`],
//! until [`Io::Done`]. The order (reconnect after a redirect, write
//! before reading) is the core's, once.

use crate::config::Config;
use crate::http::error::{ApiError, RETRY_AFTER_SECONDS};
use crate::redis::failure;
use crate::redis::resp::{RespError, Value};
use crate::redis::session::{Incoming, Session, Tag};
use crate::redis::target::RedisTarget;

pub use crate::redis::failure::MAX_REDIRECTS;

/// Logs a Redis failure and gives the 503 the client sees.
pub(crate) fn unavailable(logs: &mut Vec<String>, detail: &str) -> ApiError {
    failure::logged(logs, detail);
    ApiError::service_unavailable(RETRY_AFTER_SECONDS)
}

/// What the shell does next for a [`Command`].
#[derive(Debug, PartialEq, Eq)]
pub enum Io {
    /// Drop any connection and open one to this target, giving up at the
    /// deadline (monotonic ns); a failure goes to [`Command::failed`].
    Connect(RedisTarget, u64),
    /// Write these bytes on the connection (a failure: [`Command::failed`]).
    Write(Vec<u8>),
    /// Read until the deadline: bytes to [`Command::receive`], a failure to
    /// [`Command::failed`], the deadline passed to `failed` with
    /// [`failure::SILENT`].
    Read(u64),
    /// The outcome is known ([`Command::outcome`]).
    Done,
}

/// One command and, once it is over, its outcome.
pub struct Command {
    pub(crate) tag: Tag,
    args: Vec<Vec<u8>>,
    base: RedisTarget,
    target: RedisTarget,
    cluster: bool,
    session: Session,
    redirects: usize,
    needs_connect: bool,
    deadline: u64,
    outcome: Option<Result<Value, ApiError>>,
    logs: Vec<String>,
}

impl Command {
    /// `args` for `cfg`'s Redis, answered within `redis_timeout_ms` of `now`
    /// (monotonic ns).
    pub fn new(cfg: &Config, args: Vec<Vec<u8>>, now: u64) -> Command {
        Command::tagged(cfg, Tag::Command, args, now)
    }

    pub(crate) fn tagged(cfg: &Config, tag: Tag, args: Vec<Vec<u8>>, now: u64) -> Command {
        let (redis, cluster) = (&cfg.redis, cfg.redis_cluster);
        Command::to(redis, cluster, cfg.redis_timeout_ms, tag, args, now)
    }

    /// [`Command::new`] from the parts of the config it needs.
    pub(crate) fn to(
        redis: &RedisTarget,
        cluster: bool,
        timeout_ms: u64,
        tag: Tag,
        args: Vec<Vec<u8>>,
        now: u64,
    ) -> Command {
        let mut session = Session::handshake(redis);
        session.command_owned(tag, &args);
        Command {
            tag,
            args,
            base: redis.clone(),
            target: redis.clone(),
            cluster,
            session,
            redirects: 0,
            needs_connect: true,
            deadline: now.saturating_add(timeout_ms.saturating_mul(1_000_000)),
            outcome: None,
            logs: Vec::new(),
        }
    }

    /// `PING` (health).
    pub fn ping(cfg: &Config, now: u64) -> Command {
        Command::tagged(cfg, Tag::Ping, vec![b"PING".to_vec()], now)
    }

    /// What to do next: a connection to open (the first, and after each
    /// redirect), bytes to write, a reply to read, or nothing more.
    pub fn next_io(&mut self) -> Io {
        if self.done() {
            Io::Done
        } else if std::mem::take(&mut self.needs_connect) {
            Io::Connect(self.target.clone(), self.deadline)
        } else if self.session.has_outgoing() {
            Io::Write(self.session.take_outgoing())
        } else {
            Io::Read(self.deadline)
        }
    }

    /// Tests: what the command writes once connected.
    #[cfg(test)]
    pub(crate) fn transmit(&mut self) -> Vec<u8> {
        loop {
            match self.next_io() {
                Io::Connect(..) => {}
                Io::Write(bytes) => return bytes,
                Io::Read(_) | Io::Done => return Vec::new(),
            }
        }
    }

    /// True once the outcome is known.
    pub fn done(&self) -> bool {
        self.outcome.is_some()
    }

    /// Bytes read from the connection.
    pub fn receive(&mut self, bytes: &[u8]) {
        if self.done() {
            return;
        }
        let mut items = Vec::new();
        match self.session.receive(bytes, &mut items) {
            Ok(()) => {
                for item in items {
                    if let Incoming::Reply(tag, value) = item {
                        if tag == self.tag {
                            self.outcome = Some(Ok(value));
                        }
                    }
                }
            }
            Err(RespError::Moved(moved)) if self.cluster && self.redirects < MAX_REDIRECTS => {
                self.redirects += 1;
                moved.redirect(&mut self.target);
                self.session = Session::handshake(&self.base);
                self.session.command_owned(self.tag, &self.args);
                self.needs_connect = true;
            }
            Err(RespError::Moved(_)) if self.cluster => self.failed(failure::REDIRECTS),
            Err(e) => self.failed(&failure::protocol(&e)),
        }
    }

    /// The connection failed (connect, write, read, or the deadline passed).
    pub fn failed(&mut self, detail: &str) {
        if !self.done() {
            self.outcome = Some(Err(unavailable(&mut self.logs, detail)));
        }
    }

    /// The reply, or the 503 to answer (logged).
    pub fn outcome(&mut self) -> Result<Value, ApiError> {
        self.outcome
            .take()
            .unwrap_or_else(|| Err(unavailable(&mut self.logs, "command not run")))
    }

    /// The reply as an integer; anything else is a logged 503.
    pub fn int(&mut self) -> Result<i64, ApiError> {
        match self.outcome()? {
            Value::Int(n) => Ok(n),
            other => Err(unavailable(
                &mut self.logs,
                &format!("{:?} replied {other:?}", self.tag),
            )),
        }
    }

    /// The reply as text (a publish id, `PONG`); anything else is a logged 503.
    pub fn text(&mut self) -> Result<String, ApiError> {
        let reply = self.outcome()?;
        match reply.as_str() {
            Some(s) => Ok(s.to_string()),
            None => Err(unavailable(
                &mut self.logs,
                &format!("{:?} replied {reply:?}", self.tag),
            )),
        }
    }

    /// Log lines to print.
    pub fn logs(&mut self) -> std::vec::Drain<'_, String> {
        self.logs.drain(..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Source;

    fn cfg(cluster: bool) -> Config {
        let cluster = if cluster { "true" } else { "false" };
        Config::load(&Source(|name: &str| match name {
            "jwt_secret" => Some("s".repeat(32)),
            "redis_cluster" => Some(cluster.into()),
            _ => None,
        }))
        .unwrap()
    }

    fn connect(c: &mut Command) -> RedisTarget {
        match c.next_io() {
            Io::Connect(target, _) => target,
            other => panic!("expected a connect, got {other:?}"),
        }
    }

    fn write(c: &mut Command) -> Vec<u8> {
        match c.next_io() {
            Io::Write(bytes) => bytes,
            other => panic!("expected a write, got {other:?}"),
        }
    }

    /// Connect, write the handshake and command at once, read until the
    /// reply is whole; the deadline is the one `redis_timeout_ms` set.
    #[test]
    fn one_round_trip() {
        let mut c = Command::ping(&cfg(false), 7);
        assert_eq!(connect(&mut c).port, 6379);
        assert!(write(&mut c).ends_with(b"*1\r\n$4\r\nPING\r\n"));
        let due = 7 + 3000 * 1_000_000;
        assert_eq!(c.next_io(), Io::Read(due));
        c.receive(b"%1\r\n+server\r\n+redis\r\n+PO");
        assert_eq!(c.next_io(), Io::Read(due), "not whole yet");
        c.receive(b"NG\r\n");
        assert_eq!(c.next_io(), Io::Done);
        assert_eq!(c.text().unwrap(), "PONG");
        // A read past the deadline, as every shell reports it.
        let mut c = Command::ping(&cfg(false), 0);
        connect(&mut c);
        write(&mut c);
        c.failed(failure::SILENT);
        assert_eq!(c.next_io(), Io::Done);
        assert_eq!(c.outcome().unwrap_err().status, 503);
        assert!(c.logs().next().unwrap().contains(failure::SILENT));
    }

    #[test]
    fn cluster_follows_moved_a_bounded_number_of_times() {
        let mut c = Command::ping(&cfg(true), 0);
        connect(&mut c);
        write(&mut c);
        for n in 0..MAX_REDIRECTS {
            c.receive(format!("+OK\r\n-MOVED 1 10.0.0.{n}:7000\r\n").as_bytes());
            let to = connect(&mut c);
            assert_eq!(
                (to.host.as_str(), to.port),
                (format!("10.0.0.{n}").as_str(), 7000)
            );
            assert!(
                write(&mut c).ends_with(b"$4\r\nPING\r\n"),
                "same command again"
            );
        }
        c.receive(b"+OK\r\n-MOVED 1 10.0.0.9:7000\r\n");
        assert!(c.done());
        assert_eq!(c.outcome().unwrap_err().status, 503);
        assert!(c
            .logs()
            .next()
            .unwrap()
            .contains("too many cluster redirects"));
    }

    #[test]
    fn moved_off_cluster_and_failures_are_503() {
        let mut c = Command::ping(&cfg(false), 0);
        connect(&mut c);
        c.receive(b"+OK\r\n-MOVED 1 10.0.0.1:7000\r\n");
        assert_eq!(c.next_io(), Io::Done, "no redirect off Cluster");
        assert_eq!(c.outcome().unwrap_err().status, 503);
        let mut c = Command::ping(&cfg(false), 0);
        c.failed("connect refused");
        assert_eq!(c.int().unwrap_err().status, 503);
    }
}
