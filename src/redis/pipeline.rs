//! One shared Redis command connection for many streams, sans-I/O (the
//! `p3` build: an instance's streams send their records, history pages,
//! slot scripts and identity reads here, while their subscriptions share
//! the [`crate::redis::hub::Hub`]).
//!
//! Commands are pipelined in the order they are sent; replies come back in
//! that order, each routed to the stream that asked. An error reply is that
//! command's answer alone (a 503 for its stream): the connection goes on.
//! A connection that breaks, or that stays silent for the timeout while a
//! command waits (since that command was written or since the last byte
//! read, whichever is later: a large page arriving slowly on a busy
//! instance is progress, not a wedge), fails every command in flight; the
//! shell then opens a fresh one for the next command, and for the pages
//! that never went out ([`Pipeline::take_unsent`]).
//!
//! History pages are the large replies (up to a page budget each, and a
//! stream that never reads still asks its first): at most [`PAGE_WINDOW`]
//! of them are in flight on a connection. The rest wait here, unsent and
//! with no deadline running, taken in turn across the users that asked
//! ([`owner_of`]), so one user's many replays delay another user's page
//! by one page each at most; every other command (opens, record reads,
//! lease renewals) is written at once, behind at most that window, and a
//! deep queue of pages never trips the overdue-command rule. On Redis Cluster there is one per node:
//! a command refused with `MOVED` comes back as a [`Redirect`] for the
//! shell to send on the owner's pipeline (a bounded number of times).

use crate::redis::cluster::Moved;
use crate::redis::failure::{self, MAX_REDIRECTS};
use crate::redis::resp::{RespError, Value};
use crate::redis::session::{Incoming, Session, Tag};
use crate::redis::target::RedisTarget;
use std::collections::VecDeque;

/// History pages in flight on one connection at most.
pub const PAGE_WINDOW: usize = 4;

/// The fairness key of the user `user_id` (pages are taken in turn
/// across these).
pub fn owner_of(user_id: &str) -> u64 {
    // FNV-1a: stable, cheap, no dependency; collisions only merge turns.
    user_id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// One command's answer, for the stream `K` that sent it: the reply, or
/// why it failed (already logged; the stream's machine answers a 503).
pub type Outcome<K> = (K, Tag, Result<Value, String>);

/// History pages a lost connection never sent (they waited for the
/// window): the next connection takes them ([`Pipeline::adopt`]), so a
/// late reply fails only what was in flight.
pub struct Unsent<K>(Vec<Waiting<K>>);

impl<K> Unsent<K> {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Cluster: a command to send again on the pipeline of `to`'s node.
pub struct Redirect<K> {
    pub key: K,
    pub to: Moved,
    cmd: Waiting<K>,
}

struct Waiting<K> {
    key: K,
    owner: u64,
    tag: Tag,
    deadline: u64,
    args: Vec<Vec<u8>>,
    redirects: usize,
}

/// Pages waiting for the window, in turn across owners: one queue per
/// owner, owners in round-robin order.
struct Turns<T> {
    owners: VecDeque<(u64, VecDeque<T>)>,
}

impl<T> Turns<T> {
    fn push(&mut self, owner: u64, item: T) {
        match self.owners.iter_mut().find(|(o, _)| *o == owner) {
            Some((_, q)) => q.push_back(item),
            None => self.owners.push_back((owner, VecDeque::from([item]))),
        }
    }

    /// The next owner's oldest item; that owner goes to the back.
    fn pop(&mut self) -> Option<T> {
        let (owner, mut q) = self.owners.pop_front()?;
        let item = q.pop_front();
        if !q.is_empty() {
            self.owners.push_back((owner, q));
        }
        item
    }

    fn len(&self) -> usize {
        self.owners.iter().map(|(_, q)| q.len()).sum()
    }

    fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        self.owners.drain(..).flat_map(|(_, q)| q)
    }
}

/// What a shared command connection is opened with.
#[derive(Clone)]
pub struct Options {
    /// Its node (on Cluster one pipeline per node).
    pub target: RedisTarget,
    /// Follow `MOVED` (see [`Pipeline::take_redirects`]).
    pub cluster: bool,
    /// Each command must be answered within this of being sent.
    pub timeout_ms: u64,
    /// History entries longer than this are discarded unread
    /// ([`Session::limit_history_entries`]): one stream's oversized
    /// history never resets the connection the others share.
    pub entry_bytes: usize,
}

/// The state of one shared command connection.
pub struct Pipeline<K> {
    session: Session,
    /// Who asked, in the order the commands went out, with their deadline
    /// (and, on Cluster, their arguments for a redirect).
    waiting: VecDeque<Waiting<K>>,
    /// History pages not sent yet (the window is full).
    pages: Turns<Waiting<K>>,
    /// History pages among `waiting`.
    pages_in_flight: usize,
    /// When the connection last read bytes (monotonic ns).
    heard: u64,
    timeout_ns: u64,
    cluster: bool,
    redirects: Vec<Redirect<K>>,
    logs: Vec<String>,
}

impl<K: Clone> Pipeline<K> {
    /// A connection to the options' node (login and database queued first).
    pub fn new(options: &Options) -> Pipeline<K> {
        let mut session = Session::handshake(&options.target);
        session.limit_history_entries(options.entry_bytes);
        Pipeline {
            session,
            waiting: VecDeque::new(),
            pages: Turns {
                owners: VecDeque::new(),
            },
            pages_in_flight: 0,
            heard: 0,
            timeout_ns: options.timeout_ms.saturating_mul(1_000_000),
            cluster: options.cluster,
            redirects: Vec::new(),
            logs: Vec::new(),
        }
    }

    /// Queues `args` for stream `key` of user `owner` ([`owner_of`]) at
    /// `now` (monotonic ns): sent at once, or (a history page past the
    /// window) when its turn comes.
    pub fn send(&mut self, key: K, owner: u64, tag: Tag, args: Vec<Vec<u8>>, now: u64) {
        self.queue(
            Waiting {
                key,
                owner,
                tag,
                deadline: 0,
                args,
                redirects: 0,
            },
            now,
        );
    }

    /// Sends a command another node's pipeline redirected here.
    pub fn resend(&mut self, r: Redirect<K>, now: u64) {
        self.queue(r.cmd, now);
    }

    fn queue(&mut self, w: Waiting<K>, now: u64) {
        if w.tag == Tag::History {
            if self.pages_in_flight >= PAGE_WINDOW {
                return self.pages.push(w.owner, w);
            }
            self.pages_in_flight += 1;
        }
        self.write(w, now);
    }

    /// Writes `w`; its answer is due `timeout_ms` from now.
    fn write(&mut self, mut w: Waiting<K>, now: u64) {
        self.session.command_owned(w.tag, &w.args);
        if !self.cluster {
            w.args = Vec::new(); // only a redirect needs them again
        }
        w.deadline = now.saturating_add(self.timeout_ns);
        self.waiting.push_back(w);
    }

    /// The answer of the oldest command in flight is in: if it was a page,
    /// the next page in turn goes out.
    fn answered(&mut self, now: u64) -> Option<Waiting<K>> {
        let w = self.waiting.pop_front()?;
        if w.tag == Tag::History {
            self.pages_in_flight -= 1;
            if let Some(next) = self.pages.pop() {
                self.pages_in_flight += 1;
                self.write(next, now);
            }
        }
        Some(w)
    }

    /// Cluster: commands refused with `MOVED`, for the owner's pipeline.
    pub fn take_redirects(&mut self) -> Vec<Redirect<K>> {
        std::mem::take(&mut self.redirects)
    }

    /// Bytes to write to the socket now.
    pub fn take_outgoing(&mut self) -> Vec<u8> {
        self.session.take_outgoing()
    }

    /// Whether bytes wait for [`Pipeline::take_outgoing`] (a reply let
    /// a page in turn out).
    pub fn has_outgoing(&self) -> bool {
        self.session.has_outgoing()
    }

    /// Commands still waiting for their reply (sent or in turn).
    pub fn waiting(&self) -> usize {
        self.waiting.len() + self.pages.len()
    }

    /// When the oldest command's answer is overdue (the connection silent
    /// for the timeout since it was written): then call
    /// [`Pipeline::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<u64> {
        let heard = self.heard.saturating_add(self.timeout_ns);
        self.waiting.front().map(|w| w.deadline.max(heard))
    }

    /// At or after [`Pipeline::poll_timeout`]: an overdue answer means the
    /// connection is wedged ([`failure::SILENT`]: the shell closes it, takes
    /// the unsent pages and calls [`Pipeline::failed`]).
    pub fn handle_timeout(&self, now: u64) -> Result<(), &'static str> {
        match self.poll_timeout() {
            Some(due) if now >= due => Err(failure::SILENT),
            _ => Ok(()),
        }
    }

    /// Bytes read from the socket at `now`: the answers they completed go
    /// to `answers`. An error means the connection is unusable (a protocol
    /// error, the login refused); every waiting command has then failed too.
    pub fn receive(
        &mut self,
        bytes: &[u8],
        now: u64,
        answers: &mut Vec<Outcome<K>>,
    ) -> Result<(), RespError> {
        if !bytes.is_empty() {
            self.heard = self.heard.max(now);
        }
        let mut feed = bytes;
        loop {
            let mut items = Vec::new();
            let result = self.session.receive(feed, &mut items);
            feed = &[];
            for item in items {
                if let Incoming::Reply(tag, value) = item {
                    if let Some(w) = self.answered(now) {
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
                    let Some(mut w) = self.answered(now) else {
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
                            let err = failure::logged(&mut self.logs, &detail);
                            answers.push((w.key, w.tag, Err(err)));
                        }
                    }
                }
                Err(e) => {
                    answers.extend(self.failed(&failure::protocol(&e)));
                    return Err(e);
                }
            }
        }
    }

    /// The pages still waiting for the window, never sent: take them
    /// before [`Pipeline::failed`] to send them on the next connection.
    pub fn take_unsent(&mut self) -> Unsent<K> {
        Unsent(self.pages.drain().collect())
    }

    /// Pages a lost connection never sent, queued here in their turns.
    pub fn adopt(&mut self, unsent: Unsent<K>, now: u64) {
        for w in unsent.0 {
            self.queue(w, now);
        }
    }

    /// The connection is gone (`detail` says why, logged once): every
    /// waiting command fails (503).
    pub fn failed(&mut self, detail: &str) -> Vec<Outcome<K>> {
        if self.waiting() == 0 {
            return Vec::new();
        }
        let e = failure::logged(&mut self.logs, detail);
        self.pages_in_flight = 0;
        let queued: Vec<Waiting<K>> = self.pages.drain().collect();
        self.waiting
            .drain(..)
            .chain(queued)
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

    /// A one-second timeout and no entry limit.
    fn options(password: Option<&str>, cluster: bool) -> Options {
        Options {
            target: RedisTarget::for_tests(password, 0),
            cluster,
            timeout_ms: 1000,
            entry_bytes: usize::MAX,
        }
    }

    fn args(words: &[&str]) -> Vec<Vec<u8>> {
        words.iter().map(|w| w.as_bytes().to_vec()).collect()
    }

    fn status(r: &Result<Value, String>) -> Result<Value, u16> {
        r.clone().map_err(|_| 503)
    }

    #[test]
    fn replies_go_to_who_asked_in_order_whatever_the_split() {
        let wire = "%1\r\n+server\r\n+redis\r\n:1\r\n-WRONGTYPE no\r\n$2\r\nhi\r\n";
        for cut in 0..wire.len() {
            let mut p: Pipeline<u32> = Pipeline::new(&options(None, false));
            p.send(7, 0, Tag::Acquire, args(&["EVAL", "x"]), 0);
            p.send(8, 0, Tag::Record, args(&["HGETALL", "k"]), 0);
            p.send(7, 0, Tag::History, args(&["XRANGE", "h"]), 0);
            let out = String::from_utf8(p.take_outgoing()).unwrap();
            assert!(out.starts_with("*2\r\n$5\r\nHELLO"), "{out}");
            assert!(out.find("EVAL").unwrap() < out.find("HGETALL").unwrap());
            let mut got = Vec::new();
            p.receive(&wire.as_bytes()[..cut], 0, &mut got).unwrap();
            p.receive(&wire.as_bytes()[cut..], 0, &mut got).unwrap();
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
            assert_eq!((p.waiting(), p.poll_timeout()), (0, None));
        }
    }

    /// The keys of the `XRANGE`s in `out` (each asks `XRANGE k<key> ...`).
    fn pages_sent(out: &[u8]) -> Vec<u32> {
        let out = String::from_utf8_lossy(out);
        out.split("XRANGE\r\n")
            .skip(1)
            .map(|rest| {
                let key = rest.lines().nth(1).unwrap();
                key.trim_start_matches('k').parse().unwrap()
            })
            .collect()
    }

    fn page_reply() -> &'static [u8] {
        b"*0\r\n"
    }

    /// A user with many replays (a stream each, never reading) fills the
    /// window; another user's page is sent after one more of theirs, and
    /// the other commands go out at once. Queued pages run no deadline.
    #[test]
    fn pages_wait_for_the_window_in_turn_across_users() {
        let (a, b) = (owner_of("mallory"), owner_of("victim"));
        assert_ne!(a, b);
        let mut p: Pipeline<u32> = Pipeline::new(&options(None, false));
        let mut got = Vec::new();
        p.receive(b"%0\r\n", 0, &mut got).unwrap(); // HELLO
        for k in 1..=10 {
            p.send(k, a, Tag::History, args(&["XRANGE", &format!("k{k}")]), 5);
        }
        p.send(99, b, Tag::History, args(&["XRANGE", "k99"]), 6);
        p.send(98, b, Tag::Record, args(&["HGETALL", "r"]), 7);
        let out = p.take_outgoing();
        assert_eq!(pages_sent(&out), vec![1, 2, 3, 4]);
        assert!(
            String::from_utf8_lossy(&out).contains("HGETALL"),
            "not held back"
        );
        assert_eq!(p.waiting(), 12);
        assert_eq!(p.poll_timeout(), Some(5 + 1_000_000_000));
        // Answers in the order sent; each page answered lets one more out.
        let mut order = Vec::new();
        let mut now = 100;
        let mut keys = Vec::new();
        for _ in 0..4 {
            p.receive(page_reply(), now, &mut got).unwrap();
            assert!(p.has_outgoing(), "the next page in turn");
            order.extend(pages_sent(&p.take_outgoing()));
            now += 1;
        }
        p.receive(b"%0\r\n", now, &mut got).unwrap(); // the record
        while p.waiting() > 0 {
            p.receive(page_reply(), now, &mut got).unwrap();
            order.extend(pages_sent(&p.take_outgoing()));
        }
        assert_eq!(order, vec![5, 99, 6, 7, 8, 9, 10]);
        keys.extend(got.iter().map(|(k, _, _)| *k));
        assert_eq!(keys, vec![1, 2, 3, 4, 98, 5, 99, 6, 7, 8, 9, 10]);
        // A page written late gets its deadline when written.
        let mut p: Pipeline<u32> = Pipeline::new(&options(None, false));
        p.receive(b"%0\r\n", 0, &mut Vec::new()).unwrap();
        for k in 1..=5 {
            p.send(k, a, Tag::History, args(&["XRANGE", "k"]), 0);
        }
        for _ in 0..4 {
            p.receive(page_reply(), 700, &mut Vec::new()).unwrap();
        }
        assert_eq!(
            p.poll_timeout(),
            Some(700 + 1_000_000_000),
            "the fifth, sent at 700"
        );
        // A lost connection fails what was in flight; the pages it never
        // sent go to the next connection, in their turns.
        let mut p: Pipeline<u32> = Pipeline::new(&options(None, false));
        for k in 1..=6 {
            p.send(k, a, Tag::History, args(&["XRANGE", &format!("k{k}")]), 0);
        }
        p.send(7, b, Tag::History, args(&["XRANGE", "k7"]), 0);
        let unsent = p.take_unsent();
        let failed: Vec<u32> = p.failed("late").iter().map(|(k, _, _)| *k).collect();
        assert_eq!(failed, vec![1, 2, 3, 4]);
        assert_eq!(p.waiting(), 0);
        let mut next: Pipeline<u32> = Pipeline::new(&options(None, false));
        next.adopt(unsent, 50);
        assert_eq!(pages_sent(&next.take_outgoing()), vec![5, 6, 7]);
        assert_eq!(next.poll_timeout(), Some(50 + 1_000_000_000));
        // Failing with nothing taken still fails every page.
        let mut p: Pipeline<u32> = Pipeline::new(&options(None, false));
        for k in 1..=6 {
            p.send(k, a, Tag::History, args(&["XRANGE", "k"]), 0);
        }
        assert_eq!(p.failed("gone").len(), 6);
    }

    #[test]
    fn a_refused_login_or_garbage_fails_everything_waiting() {
        let mut p: Pipeline<u32> = Pipeline::new(&options(Some("pw"), false));
        p.send(1, 0, Tag::Record, args(&["HGETALL", "k"]), 0);
        let mut got = Vec::new();
        assert!(p.receive(b"-WRONGPASS nope\r\n", 0, &mut got).is_err());
        assert_eq!(got.len(), 1);
        assert_eq!(status(&got[0].2), Err(503));
        assert!(
            p.logs().any(|l| !l.contains("pw")),
            "no credential in the log"
        );
        let mut p: Pipeline<u32> = Pipeline::new(&options(None, false));
        p.send(1, 0, Tag::Record, args(&["HGETALL", "k"]), 0);
        let mut got = Vec::new();
        assert!(p.receive(b"%0\r\n?garbage\r\n", 0, &mut got).is_err());
        assert_eq!((got.len(), p.waiting()), (1, 0));
    }

    #[test]
    fn the_oldest_command_sets_the_deadline_and_a_lost_connection_fails_all() {
        let mut p: Pipeline<u32> = Pipeline::new(&options(None, false));
        assert_eq!(p.poll_timeout(), None);
        p.send(1, 0, Tag::Renew, args(&["EVAL"]), 5);
        p.send(2, 0, Tag::Release, args(&["EVAL"]), 9);
        assert_eq!(p.poll_timeout(), Some(5 + 1_000_000_000));
        let failed = p.failed("gone");
        let keys: Vec<u32> = failed.iter().map(|(k, _, _)| *k).collect();
        assert_eq!(keys, vec![1, 2]);
        assert_eq!(p.waiting(), 0);
        assert_eq!(p.logs().count(), 1, "one line for the lost connection");
    }

    /// A large reply still arriving keeps the oldest command alive; a
    /// connection silent for the timeout is overdue whatever it read before.
    #[test]
    fn overdue_means_silent_for_the_timeout_not_a_slow_large_reply() {
        let s = 1_000_000_000;
        let mut p: Pipeline<u32> = Pipeline::new(&options(None, false));
        p.receive(b"%0\r\n", 0, &mut Vec::new()).unwrap(); // HELLO
        p.send(1, 0, Tag::History, args(&["XRANGE", "k"]), 0);
        p.send(2, 0, Tag::Record, args(&["HGETALL", "r"]), 0);
        assert_eq!(p.poll_timeout(), Some(s));
        let mut got = Vec::new();
        p.receive(b"*2\r\n$3\r\nab", s * 9 / 10, &mut got).unwrap();
        assert_eq!(
            p.poll_timeout(),
            Some(s * 19 / 10),
            "bytes of the page came"
        );
        p.receive(b"c\r\n", s * 18 / 10, &mut got).unwrap();
        assert_eq!(p.poll_timeout(), Some(s * 28 / 10));
        p.receive(b"$1\r\nd\r\n", s * 2, &mut got).unwrap();
        assert_eq!(got.len(), 1, "the page is answered");
        assert_eq!(
            p.poll_timeout(),
            Some(3 * s),
            "the record: silent since 2 s"
        );
        // Nothing heard: the deadline does not move.
        p.receive(b"", 5 * s, &mut got).unwrap();
        assert_eq!(p.poll_timeout(), Some(3 * s));
    }

    #[test]
    fn cluster_moved_is_a_bounded_redirect_with_the_same_command() {
        let mut p: Pipeline<u32> = Pipeline::new(&options(None, true));
        p.send(3, 0, Tag::Record, args(&["HGETALL", "k"]), 0);
        p.send(4, 0, Tag::Acquire, args(&["EVAL", "x"]), 0);
        p.take_outgoing();
        let mut got = Vec::new();
        p.receive(b"%0\r\n-MOVED 12 10.0.0.2:7001\r\n:1\r\n", 0, &mut got)
            .unwrap();
        assert_eq!(got.len(), 1, "the acquire's answer");
        let r = p.take_redirects();
        assert_eq!((r.len(), r[0].key, r[0].to.port), (1, 3, 7001));
        let mut owner: Pipeline<u32> = Pipeline::new(&options(None, true));
        let mut r = r;
        owner.resend(r.remove(0), 0);
        assert!(String::from_utf8(owner.take_outgoing())
            .unwrap()
            .ends_with("$7\r\nHGETALL\r\n$1\r\nk\r\n"));
        // Moved on and on: a 503 after MAX_REDIRECTS.
        let mut hops = 1;
        loop {
            let mut got = Vec::new();
            owner
                .receive(b"%0\r\n-MOVED 12 10.0.0.3:7002\r\n", 0, &mut got)
                .unwrap();
            if let Some(r) = owner.take_redirects().pop() {
                hops += 1;
                owner = Pipeline::new(&options(None, true));
                owner.resend(r, 0);
                continue;
            }
            assert_eq!(status(&got[0].2), Err(503));
            break;
        }
        assert_eq!(hops, MAX_REDIRECTS);
        // Off Cluster a MOVED is that command's 503.
        let mut p: Pipeline<u32> = Pipeline::new(&options(None, false));
        p.send(3, 0, Tag::Record, args(&["HGETALL", "k"]), 0);
        let mut got = Vec::new();
        p.receive(b"%0\r\n-MOVED 12 10.0.0.2:7001\r\n", 0, &mut got)
            .unwrap();
        assert!(p.take_redirects().is_empty());
        assert_eq!(status(&got[0].2), Err(503));
    }
}
