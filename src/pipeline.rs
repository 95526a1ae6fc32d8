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
//! fresh one for the next command. On Redis Cluster there is one per node:
//! a command refused with `MOVED` comes back as a [`Redirect`] for the
//! shell to send on the owner's pipeline (a bounded number of times).

use crate::cluster::Moved;
use crate::config::RedisTarget;
use crate::error::ApiError;
use crate::machine::command::{unavailable, MAX_REDIRECTS};
use crate::resp::{RespError, Value};
use crate::session::{Incoming, Session, Tag};
use std::collections::VecDeque;

/// One command's answer, for the stream `K` that sent it.
pub type Answer<K> = (K, Tag, Result<Value, ApiError>);

/// Cluster: a command to send again on the pipeline of `to`'s node.
pub struct Redirect<K> {
    pub key: K,
    pub to: Moved,
    cmd: Waiting<K>,
}

struct Waiting<K> {
    key: K,
    tag: Tag,
    deadline: u64,
    args: Vec<Vec<u8>>,
    redirects: usize,
}

/// The state of one shared command connection.
pub struct Pipeline<K> {
    session: Session,
    /// Who asked, in the order the commands went out, with their deadline
    /// (and, on Cluster, their arguments for a redirect).
    waiting: VecDeque<Waiting<K>>,
    timeout_ns: u64,
    cluster: bool,
    redirects: Vec<Redirect<K>>,
    logs: Vec<String>,
}

impl<K: Clone> Pipeline<K> {
    /// A connection to `target` (login and database queued first); each
    /// command must be answered within `timeout_ms` of being sent.
    /// `cluster`: follow `MOVED` (see [`Pipeline::take_redirects`]).
    /// History entries longer than `entry_bytes` are discarded unread
    /// ([`Session::limit_history_entries`]): one stream's oversized
    /// history never resets the connection the others share.
    pub fn new(
        target: &RedisTarget,
        cluster: bool,
        timeout_ms: u64,
        entry_bytes: usize,
    ) -> Pipeline<K> {
        let mut session = Session::handshake(target);
        session.limit_history_entries(entry_bytes);
        Pipeline {
            session,
            waiting: VecDeque::new(),
            timeout_ns: timeout_ms.saturating_mul(1_000_000),
            cluster,
            redirects: Vec::new(),
            logs: Vec::new(),
        }
    }

    /// Queues `args` for stream `key`, sent at `now` (monotonic ns).
    pub fn send(&mut self, key: K, tag: Tag, args: Vec<Vec<u8>>, now: u64) {
        let deadline = now.saturating_add(self.timeout_ns);
        self.queue(Waiting {
            key,
            tag,
            deadline,
            args,
            redirects: 0,
        });
    }

    /// Sends a command another node's pipeline redirected here.
    pub fn resend(&mut self, r: Redirect<K>) {
        self.queue(r.cmd);
    }

    fn queue(&mut self, mut w: Waiting<K>) {
        self.session.command_owned(w.tag, &w.args);
        if !self.cluster {
            w.args = Vec::new(); // only a redirect needs them again
        }
        self.waiting.push_back(w);
    }

    /// Cluster: commands refused with `MOVED`, for the owner's pipeline.
    pub fn take_redirects(&mut self) -> Vec<Redirect<K>> {
        std::mem::take(&mut self.redirects)
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
        self.waiting.front().map(|w| w.deadline)
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
                    if let Some(w) = self.waiting.pop_front() {
                        answers.push((w.key, tag, Ok(value)));
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
                    let Some(mut w) = self.waiting.pop_front() else {
                        continue;
                    };
                    match e {
                        RespError::Moved(to) if self.cluster && w.redirects < MAX_REDIRECTS => {
                            w.redirects += 1;
                            let key = w.key.clone();
                            self.redirects.push(Redirect { key, to, cmd: w });
                        }
                        e => {
                            let detail = format!("{:?} refused: {e}", w.tag);
                            let err = unavailable(&mut self.logs, &detail);
                            answers.push((w.key, w.tag, Err(err)));
                        }
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
            .map(|w| (w.key, w.tag, Err(e.clone())))
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
        RedisTarget::for_tests(password, 0)
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
            let mut p: Pipeline<u32> = Pipeline::new(&target(None), false, 1000, usize::MAX);
            p.send(7, Tag::Acquire, args(&["EVAL", "x"]), 0);
            p.send(8, Tag::Record, args(&["HGETALL", "k"]), 0);
            p.send(7, Tag::History, args(&["XRANGE", "h"]), 0);
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
        let mut p: Pipeline<u32> = Pipeline::new(&target(Some("pw")), false, 1000, usize::MAX);
        p.send(1, Tag::Record, args(&["HGETALL", "k"]), 0);
        let mut got = Vec::new();
        assert!(p.receive(b"-WRONGPASS nope\r\n", &mut got).is_err());
        assert_eq!(got.len(), 1);
        assert_eq!(status(&got[0].2), Err(503));
        assert!(
            p.logs().any(|l| !l.contains("pw")),
            "no credential in the log"
        );
        let mut p: Pipeline<u32> = Pipeline::new(&target(None), false, 1000, usize::MAX);
        p.send(1, Tag::Record, args(&["HGETALL", "k"]), 0);
        let mut got = Vec::new();
        assert!(p.receive(b"%0\r\n?garbage\r\n", &mut got).is_err());
        assert_eq!((got.len(), p.waiting()), (1, 0));
    }

    #[test]
    fn the_oldest_command_sets_the_deadline_and_a_lost_connection_fails_all() {
        let mut p: Pipeline<u32> = Pipeline::new(&target(None), false, 1000, usize::MAX);
        assert_eq!(p.deadline(), None);
        p.send(1, Tag::Renew, args(&["EVAL"]), 5);
        p.send(2, Tag::Release, args(&["EVAL"]), 9);
        assert_eq!(p.deadline(), Some(5 + 1_000_000_000));
        let failed = p.failed("gone");
        let keys: Vec<u32> = failed.iter().map(|(k, _, _)| *k).collect();
        assert_eq!(keys, vec![1, 2]);
        assert_eq!(p.waiting(), 0);
        assert_eq!(p.logs().count(), 1, "one line for the lost connection");
    }

    #[test]
    fn cluster_moved_is_a_bounded_redirect_with_the_same_command() {
        let mut p: Pipeline<u32> = Pipeline::new(&target(None), true, 1000, usize::MAX);
        p.send(3, Tag::Record, args(&["HGETALL", "k"]), 0);
        p.send(4, Tag::Acquire, args(&["EVAL", "x"]), 0);
        p.take_outgoing();
        let mut got = Vec::new();
        p.receive(b"%0\r\n-MOVED 12 10.0.0.2:7001\r\n:1\r\n", &mut got)
            .unwrap();
        assert_eq!(got.len(), 1, "the acquire's answer");
        let r = p.take_redirects();
        assert_eq!((r.len(), r[0].key, r[0].to.port), (1, 3, 7001));
        let mut owner: Pipeline<u32> = Pipeline::new(&target(None), true, 1000, usize::MAX);
        let mut r = r;
        owner.resend(r.remove(0));
        assert!(String::from_utf8(owner.take_outgoing())
            .unwrap()
            .ends_with("$7\r\nHGETALL\r\n$1\r\nk\r\n"));
        // Moved on and on: a 503 after MAX_REDIRECTS.
        let mut hops = 1;
        loop {
            let mut got = Vec::new();
            owner
                .receive(b"%0\r\n-MOVED 12 10.0.0.3:7002\r\n", &mut got)
                .unwrap();
            if let Some(r) = owner.take_redirects().pop() {
                hops += 1;
                owner = Pipeline::new(&target(None), true, 1000, usize::MAX);
                owner.resend(r);
                continue;
            }
            assert_eq!(status(&got[0].2), Err(503));
            break;
        }
        assert_eq!(hops, MAX_REDIRECTS);
        // Off Cluster a MOVED is that command's 503.
        let mut p: Pipeline<u32> = Pipeline::new(&target(None), false, 1000, usize::MAX);
        p.send(3, Tag::Record, args(&["HGETALL", "k"]), 0);
        let mut got = Vec::new();
        p.receive(b"%0\r\n-MOVED 12 10.0.0.2:7001\r\n", &mut got)
            .unwrap();
        assert!(p.take_redirects().is_empty());
        assert_eq!(status(&got[0].2), Err(503));
    }
}
