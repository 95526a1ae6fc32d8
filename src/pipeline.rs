//! One shared Redis command connection for many streams, sans-I/O (the
//! `p3` build: an instance's streams send their records, history pages,
//! slot scripts and identity reads here, while their subscriptions share
//! the [`crate::hub::Hub`]).
//!
//! Commands are pipelined in the order they are sent; replies come back in
//! that order, each routed to the stream that asked. An error reply is that
//! command's answer alone (a 503 for its stream): the connection goes on.
//! A connection that breaks, or whose oldest command goes unanswered past
//! its deadline, fails every command still waiting; the shell then opens a
//! fresh one for the next command.

use crate::config::RedisTarget;
use crate::error::ApiError;
use crate::machine::command::unavailable;
use crate::resp::{RespError, Value};
use crate::session::{Incoming, Session, Tag};
use std::collections::VecDeque;

/// One command's answer, for the stream `K` that sent it.
pub type Answer<K> = (K, Tag, Result<Value, ApiError>);

/// The state of one shared command connection.
pub struct Pipeline<K> {
    session: Session,
    /// Who asked, in the order the commands went out, with their deadline.
    waiting: VecDeque<(K, Tag, u64)>,
    timeout_ns: u64,
    logs: Vec<String>,
}

impl<K: Clone> Pipeline<K> {
    /// A connection to `target` (login and database queued first); each
    /// command must be answered within `timeout_ms` of being sent.
    pub fn new(target: &RedisTarget, timeout_ms: u64) -> Pipeline<K> {
        Pipeline {
            session: Session::handshake(target),
            waiting: VecDeque::new(),
            timeout_ns: timeout_ms.saturating_mul(1_000_000),
            logs: Vec::new(),
        }
    }

    /// Queues `args` for stream `key`, sent at `now` (monotonic ns).
    pub fn send(&mut self, key: K, tag: Tag, args: &[Vec<u8>], now: u64) {
        self.session.command_owned(tag, args);
        let deadline = now.saturating_add(self.timeout_ns);
        self.waiting.push_back((key, tag, deadline));
    }

    /// Bytes to write to the socket now.
    pub fn take_outgoing(&mut self) -> Vec<u8> {
        self.session.take_outgoing()
    }

    /// Commands still waiting for their reply.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// When the oldest command's answer is overdue: the shell then calls
    /// [`Pipeline::failed`].
    pub fn deadline(&self) -> Option<u64> {
        self.waiting.front().map(|(_, _, d)| *d)
    }

    /// Bytes read from the socket: the answers they completed go to
    /// `answers`. An error means the connection is unusable (a protocol
    /// error, the login refused); every waiting command has then failed too.
    pub fn receive(&mut self, bytes: &[u8], answers: &mut Vec<Answer<K>>) -> Result<(), RespError> {
        let mut feed = bytes;
        loop {
            let mut items = Vec::new();
            let result = self.session.receive(feed, &mut items);
            feed = &[];
            for item in items {
                if let Incoming::Reply(tag, value) = item {
                    if let Some((key, _, _)) = self.waiting.pop_front() {
                        answers.push((key, tag, Ok(value)));
                    }
                }
            }
            match result {
                Ok(()) => return Ok(()),
                // An error reply to one of ours (not to the login: then
                // more replies than commands would still be pending); the
                // decoder keeps the bytes after it, so go on.
                Err(e @ (RespError::Server(_) | RespError::Moved(_)))
                    if self.session.awaiting_replies() < self.waiting.len() =>
                {
                    if let Some((key, tag, _)) = self.waiting.pop_front() {
                        let detail = format!("{tag:?} refused: {e}");
                        answers.push((key, tag, Err(unavailable(&mut self.logs, &detail))));
                    }
                }
                Err(e) => {
                    answers.extend(self.failed(&format!("redis protocol: {e}")));
                    return Err(e);
                }
            }
        }
    }

    /// The connection is gone (`detail` says why, logged once): every
    /// waiting command fails (503).
    pub fn failed(&mut self, detail: &str) -> Vec<Answer<K>> {
        if self.waiting.is_empty() {
            return Vec::new();
        }
        let e = unavailable(&mut self.logs, detail);
        self.waiting
            .drain(..)
            .map(|(key, tag, _)| (key, tag, Err(e.clone())))
            .collect()
    }

    /// Log lines to print.
    pub fn logs(&mut self) -> std::vec::Drain<'_, String> {
        self.logs.drain(..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(password: Option<&str>) -> RedisTarget {
        RedisTarget {
            host: "h".into(),
            port: 6379,
            username: None,
            password: password.map(Into::into),
            db: 0,
        }
    }

    fn args(words: &[&str]) -> Vec<Vec<u8>> {
        words.iter().map(|w| w.as_bytes().to_vec()).collect()
    }

    fn status(r: &Result<Value, ApiError>) -> Result<Value, u16> {
        r.clone().map_err(|e| e.status)
    }

    #[test]
    fn replies_go_to_who_asked_in_order_whatever_the_split() {
        let wire = "%1\r\n+server\r\n+redis\r\n:1\r\n-WRONGTYPE no\r\n$2\r\nhi\r\n";
        for cut in 0..wire.len() {
            let mut p: Pipeline<u32> = Pipeline::new(&target(None), 1000);
            p.send(7, Tag::Acquire, &args(&["EVAL", "x"]), 0);
            p.send(8, Tag::Record, &args(&["HGETALL", "k"]), 0);
            p.send(7, Tag::History, &args(&["XRANGE", "h"]), 0);
            let out = String::from_utf8(p.take_outgoing()).unwrap();
            assert!(out.starts_with("*2\r\n$5\r\nHELLO"), "{out}");
            assert!(out.find("EVAL").unwrap() < out.find("HGETALL").unwrap());
            let mut got = Vec::new();
            p.receive(&wire.as_bytes()[..cut], &mut got).unwrap();
            p.receive(&wire.as_bytes()[cut..], &mut got).unwrap();
            let got: Vec<_> = got.iter().map(|(k, t, r)| (*k, *t, status(r))).collect();
            assert_eq!(
                got,
                vec![
                    (7, Tag::Acquire, Ok(Value::Int(1))),
                    (8, Tag::Record, Err(503)),
                    (7, Tag::History, Ok(Value::Bulk(b"hi".to_vec()))),
                ],
                "cut at {cut}"
            );
            assert_eq!((p.waiting(), p.deadline()), (0, None));
        }
    }

    #[test]
    fn a_refused_login_or_garbage_fails_everything_waiting() {
        let mut p: Pipeline<u32> = Pipeline::new(&target(Some("pw")), 1000);
        p.send(1, Tag::Record, &args(&["HGETALL", "k"]), 0);
        let mut got = Vec::new();
        assert!(p.receive(b"-WRONGPASS nope\r\n", &mut got).is_err());
        assert_eq!(got.len(), 1);
        assert_eq!(status(&got[0].2), Err(503));
        assert!(
            p.logs().any(|l| !l.contains("pw")),
            "no credential in the log"
        );
        let mut p: Pipeline<u32> = Pipeline::new(&target(None), 1000);
        p.send(1, Tag::Record, &args(&["HGETALL", "k"]), 0);
        let mut got = Vec::new();
        assert!(p.receive(b"%0\r\n?garbage\r\n", &mut got).is_err());
        assert_eq!((got.len(), p.waiting()), (1, 0));
    }

    #[test]
    fn the_oldest_command_sets_the_deadline_and_a_lost_connection_fails_all() {
        let mut p: Pipeline<u32> = Pipeline::new(&target(None), 1000);
        assert_eq!(p.deadline(), None);
        p.send(1, Tag::Renew, &args(&["EVAL"]), 5);
        p.send(2, Tag::Release, &args(&["EVAL"]), 9);
        assert_eq!(p.deadline(), Some(5 + 1_000_000_000));
        let failed = p.failed("gone");
        let keys: Vec<u32> = failed.iter().map(|(k, _, _)| *k).collect();
        assert_eq!(keys, vec![1, 2]);
        assert_eq!(p.waiting(), 0);
        assert_eq!(p.logs().count(), 1, "one line for the lost connection");
    }
}
