//! One shared Redis subscription connection for many streams, as a sans-I/O
//! state machine (the `p3` build: one instance serves many streams).
//!
//! The hub counts subscribers per channel: the first one sends `SUBSCRIBE`
//! (`SSUBSCRIBE` on Cluster), the last one to leave sends `UNSUBSCRIBE`. Each
//! pushed message is queued, shared and not copied, for every subscriber of
//! its channel. A subscriber becomes *live* only when the server has
//! confirmed its channel's subscription: only then may its stream read the
//! record and history, so no event published in between can be missed.
//!
//! Failures stay small: a subscriber whose queue fills (its browser stopped
//! reading) is dropped alone; a connection that breaks tells every
//! subscriber, which end with a reconnectable close and resume with
//! `Last-Event-ID`. On Cluster there is one hub per shard; a channel the
//! node does not own comes back as `MOVED` and its subscribers are handed
//! to the shell to join the owner's hub.
//!
//! The shell writes [`Hub::take_outgoing`] to the socket, feeds what it
//! reads to [`Hub::receive`], and acts on the [`Notice`]s.

use crate::log;
use crate::redis::cluster::{parse_moved, Moved};
use crate::redis::failure;
use crate::redis::resp::{self, Decoder, PubSub, RespError, Value};
use crate::redis::session::{Session, MAX_REPLY_BYTES};
use crate::redis::target::RedisTarget;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// A subscriber's handle, unique for the hub's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubId(pub u64);

/// A published payload, shared by every subscriber it is queued for.
pub type Payload = Arc<[u8]>;

/// Something the shell must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The subscriber's channel is subscribed: read the record and history now.
    Live(SubId),
    /// Messages were queued for the subscriber: [`Hub::drain`] them.
    Ready(SubId),
    /// The subscriber's queue overflowed; it was removed (a slow browser).
    Overflow(SubId),
    /// The subscription is gone (connection lost, or the server ended it):
    /// the subscriber was removed and its stream should end reconnectably.
    Lost(SubId),
    /// Cluster: the channel lives on another node; the subscriber was removed
    /// and should join the hub for `to`.
    Moved(SubId, Moved),
}

/// Why an answer from the server is expected, in the order commands went out.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    /// A plain reply (`HELLO`, `SELECT`, `PING`).
    Reply,
    /// The instance lease's renewal standing in for `PING`: any answer
    /// proves Redis is there; an error is logged.
    Renewal,
    /// The confirmation push of (s)subscribe to this channel.
    Subscribe(Vec<u8>),
    /// The confirmation push of (s)unsubscribe from this channel.
    Unsubscribe(Vec<u8>),
}

#[derive(Debug, Default)]
struct Channel {
    subscribers: Vec<SubId>,
    /// `SUBSCRIBE`s sent and not yet confirmed. The channel is live only at
    /// zero: after SUBSCRIBE, UNSUBSCRIBE, SUBSCRIBE the first confirmation
    /// is followed by an unsubscription, so it must not count.
    subscribes_pending: u32,
    /// The server confirmed the latest `SUBSCRIBE` and no `UNSUBSCRIBE` is queued after it.
    live: bool,
}

struct Subscriber {
    channel: Vec<u8>,
    queue: VecDeque<Payload>,
    live: bool,
    /// Messages too large to decode since the last drain.
    dropped: usize,
}

/// Messages queued for one subscriber between the hub's read and its
/// stream taking them into its machine (whose backlog judges the browser),
/// past which its stream counts as starved and is dropped (the hub and the
/// other streams go on). A burst is read whole before any stream runs, so
/// this must hold a whole backlog's worth of messages: 1,024 cut 14 of 20
/// readers of 1,400 × 20 KB (28 MB, under the 32 MiB backlog). 16 bytes
/// per queued message (shared payloads).
pub const SUBSCRIBER_QUEUE: usize = 32_768;

/// How a subscription ended without its stream leaving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The connection broke or Redis ended the subscription (why, when the
    /// connection said): reconnectable.
    Lost(String),
    /// The stream fell [`SUBSCRIBER_QUEUE`] messages behind.
    Overflow,
    /// Cluster: the channel lives on this node; subscribe there.
    Moved(Moved),
}

/// The state of one subscription connection.
pub struct Hub {
    decoder: Decoder,
    outgoing: Vec<u8>,
    expected: VecDeque<Expect>,
    /// Commands that have asked for an answer, ever; the answered ones are
    /// `sent - expected.len()` (answers come in order).
    sent: u64,
    /// `sent` at the last liveness check: an answer to one of those still
    /// owed at the next check is a silent Redis.
    due: u64,
    channels: HashMap<Vec<u8>, Channel>,
    subscribers: HashMap<SubId, Subscriber>,
    next_id: u64,
    sharded: bool,
    max_queue: usize,
    notices: Vec<Notice>,
    /// Liveness: a `PING`, or the instance lease's `renewal` in its place
    /// (encoded once), every `ping_ns`; the next check is at `check_at`.
    renewal: Option<Vec<u8>>,
    ping_ns: u64,
    check_at: u64,
    logs: Vec<String>,
}

impl Hub {
    /// Queues the login (`HELLO 3`, `SELECT`) for a new connection, made
    /// at `now` (monotonic ns). `sharded` uses `SSUBSCRIBE` (Redis
    /// Cluster); Redis is asked for a `PING` every `ping_ns`
    /// ([`Hub::handle_timeout`]).
    pub fn new(target: &RedisTarget, sharded: bool, ping_ns: u64, now: u64) -> Hub {
        let mut login = Session::handshake(target);
        let expected: VecDeque<Expect> = (0..login.awaiting_replies())
            .map(|_| Expect::Reply)
            .collect();
        let sent = expected.len() as u64;
        Hub {
            decoder: Decoder::new(MAX_REPLY_BYTES),
            outgoing: login.take_outgoing(),
            expected,
            sent,
            due: 0,
            channels: HashMap::new(),
            subscribers: HashMap::new(),
            next_id: 0,
            sharded,
            max_queue: SUBSCRIBER_QUEUE,
            notices: Vec::new(),
            renewal: None,
            ping_ns: ping_ns.max(1),
            check_at: now.saturating_add(ping_ns.max(1)),
            logs: Vec::new(),
        }
    }

    /// Sends `command` instead of `PING` at each liveness check: the
    /// instance lease's renewal (the machine's `InstanceLease`), so
    /// one command per interval both proves Redis is there and keeps the
    /// lease of every stream this connection serves. Its failure (an
    /// error reply) is logged as `slot_renew_failed`; the connection goes on.
    pub fn renew_with(&mut self, command: &[Vec<u8>]) {
        let args: Vec<&[u8]> = command.iter().map(Vec::as_slice).collect();
        let mut encoded = Vec::new();
        resp::encode_command(&mut encoded, &args);
        self.renewal = Some(encoded);
    }

    /// Log lines to print.
    pub fn logs(&mut self) -> std::vec::Drain<'_, String> {
        self.logs.drain(..)
    }

    /// Adds a subscriber to `channel`. If the channel is already live the
    /// subscriber is live at once ([`Notice::Live`] is queued); otherwise a
    /// `SUBSCRIBE` goes out when it is the channel's first subscriber.
    pub fn join(&mut self, channel: &[u8]) -> SubId {
        let id = SubId(self.next_id);
        self.next_id += 1;
        let ch = self.channels.entry(channel.to_vec()).or_default();
        let first = ch.subscribers.is_empty();
        ch.subscribers.push(id);
        let live = ch.live;
        if first && !live {
            // A new channel, or one whose UNSUBSCRIBE is on its way: either
            // way only a fresh SUBSCRIBE makes it live.
            self.send_subscribe(channel);
        }
        self.subscribers.insert(
            id,
            Subscriber {
                channel: channel.to_vec(),
                queue: VecDeque::new(),
                dropped: 0,
                live,
            },
        );
        if live {
            self.notices.push(Notice::Live(id));
        }
        id
    }

    /// Removes a subscriber (its stream ended); the last one out of a
    /// channel sends `UNSUBSCRIBE`. Unknown ids are ignored.
    pub fn leave(&mut self, id: SubId) {
        if let Some(sub) = self.subscribers.remove(&id) {
            self.detach(id, &sub.channel);
        }
    }

    /// How many messages for `id` were too large to decode since the last
    /// call (its stream tells its browser; the connection goes on).
    pub fn take_dropped(&mut self, id: SubId) -> usize {
        self.subscribers
            .get_mut(&id)
            .map_or(0, |s| std::mem::take(&mut s.dropped))
    }

    /// Takes the messages queued for `id`, oldest first.
    pub fn drain(&mut self, id: SubId) -> Vec<Payload> {
        self.subscribers
            .get_mut(&id)
            .map(|s| s.queue.drain(..).collect())
            .unwrap_or_default()
    }

    /// Whether `id` is still subscribed and its channel confirmed.
    #[cfg(test)]
    pub fn is_live(&self, id: SubId) -> bool {
        self.subscribers.get(&id).is_some_and(|s| s.live)
    }

    /// Subscribers on this connection.
    pub fn subscribers(&self) -> usize {
        self.subscribers.len()
    }

    /// Channels this connection is (or is becoming) subscribed to.
    #[cfg(test)]
    pub fn channels(&self) -> usize {
        self.channels
            .values()
            .filter(|c| !c.subscribers.is_empty())
            .count()
    }

    /// When [`Hub::handle_timeout`] is due next.
    pub fn poll_timeout(&self) -> u64 {
        self.check_at
    }

    /// Liveness, at or after [`Hub::poll_timeout`]: an answer still owed
    /// to a command sent by the last check (its `PING`, a confirmation
    /// asked before it) means Redis is gone though TCP did not say so
    /// ([`failure::SILENT`]: the shell closes the connection and calls
    /// [`Hub::connection_lost`]); otherwise one more `PING` (or the renewal
    /// in its place) goes out. A confirmation asked since the last check is
    /// not due yet: a stream joining just before a check is no silence.
    pub fn handle_timeout(&mut self, now: u64) -> Result<(), &'static str> {
        if now < self.check_at {
            return Ok(());
        }
        let answered = self.sent - self.expected.len() as u64;
        if answered < self.due {
            return Err(failure::SILENT);
        }
        self.ping();
        self.due = self.sent;
        self.check_at = now.saturating_add(self.ping_ns);
        Ok(())
    }

    /// Queues the liveness command: on a subscribed RESP3 connection it is
    /// answered in order, so an answer still missing at the next check
    /// means Redis is gone.
    fn ping(&mut self) {
        let expect = match &self.renewal {
            Some(command) => {
                self.outgoing.extend_from_slice(command);
                Expect::Renewal
            }
            None => {
                resp::encode_command(&mut self.outgoing, &[b"PING"]);
                Expect::Reply
            }
        };
        self.expect(expect);
    }

    /// One more answer the server owes, in order.
    fn expect(&mut self, what: Expect) {
        self.expected.push_back(what);
        self.sent += 1;
    }

    /// Answers the server still owes (pings, confirmations).
    pub fn awaiting(&self) -> usize {
        self.expected.len()
    }

    /// Bytes to write to the socket now.
    pub fn take_outgoing(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.outgoing)
    }

    /// What happened since the last call.
    pub fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    /// Feeds bytes read from the socket. An error means the connection is
    /// unusable: the shell closes it and calls [`Hub::connection_lost`].
    pub fn receive(&mut self, bytes: &[u8]) -> Result<(), RespError> {
        self.decoder.feed(bytes);
        while let Some(value) = self.decoder.next()? {
            match value.into_pubsub() {
                Ok(PubSub::Message { channel, payload }) => self.deliver(&channel, payload),
                Ok(PubSub::Dropped { channel, .. }) => self.dropped(&channel),
                Ok(PubSub::Subscribed { channel, .. }) => self.confirmed(channel)?,
                Ok(PubSub::Unsubscribed { channel, .. }) => self.unsubscribed(channel),
                Err(Value::Push(_)) => {} // a push we don't act on (client tracking)
                Err(value) => self.reply(value)?,
            }
        }
        Ok(())
    }

    /// The connection broke (read/write error, timeout, protocol error):
    /// every subscriber gets [`Notice::Lost`] and the hub is empty. The shell
    /// starts a fresh hub for new streams.
    pub fn connection_lost(&mut self) {
        let mut ids: Vec<SubId> = self.subscribers.keys().copied().collect();
        ids.sort();
        self.notices.extend(ids.into_iter().map(Notice::Lost));
        self.subscribers.clear();
        self.channels.clear();
        self.expected.clear();
    }

    fn send_subscribe(&mut self, channel: &[u8]) {
        let verb: &[u8] = if self.sharded {
            b"SSUBSCRIBE"
        } else {
            b"SUBSCRIBE"
        };
        resp::encode_command(&mut self.outgoing, &[verb, channel]);
        self.expect(Expect::Subscribe(channel.to_vec()));
        if let Some(ch) = self.channels.get_mut(channel) {
            ch.subscribes_pending += 1;
        }
    }

    fn detach(&mut self, id: SubId, channel: &[u8]) {
        let Some(ch) = self.channels.get_mut(channel) else {
            return;
        };
        ch.subscribers.retain(|s| *s != id);
        if !ch.subscribers.is_empty() {
            return;
        }
        ch.live = false;
        let verb: &[u8] = if self.sharded {
            b"SUNSUBSCRIBE"
        } else {
            b"UNSUBSCRIBE"
        };
        resp::encode_command(&mut self.outgoing, &[verb, channel]);
        self.expect(Expect::Unsubscribe(channel.to_vec()));
    }

    fn deliver(&mut self, channel: &[u8], payload: Vec<u8>) {
        let Some(ch) = self.channels.get(channel) else {
            return;
        };
        let payload: Payload = payload.into();
        let mut overflowed = Vec::new();
        for id in &ch.subscribers {
            let Some(sub) = self.subscribers.get_mut(id) else {
                continue;
            };
            if sub.queue.len() >= self.max_queue {
                overflowed.push(*id);
                continue;
            }
            if sub.queue.is_empty() {
                self.notices.push(Notice::Ready(*id));
            }
            sub.queue.push_back(payload.clone());
        }
        for id in overflowed {
            self.leave(id);
            self.notices.push(Notice::Overflow(id));
        }
    }

    /// A message on `channel` was too large to decode: each subscriber is
    /// woken to hear it (it costs this channel's streams, not the rest).
    fn dropped(&mut self, channel: &[u8]) {
        let Some(ch) = self.channels.get(channel) else {
            return;
        };
        for id in &ch.subscribers {
            if let Some(sub) = self.subscribers.get_mut(id) {
                if sub.queue.is_empty() && sub.dropped == 0 {
                    self.notices.push(Notice::Ready(*id));
                }
                sub.dropped += 1;
            }
        }
    }

    /// A (s)subscribe confirmation: the oldest expected answer must be it.
    fn confirmed(&mut self, channel: Vec<u8>) -> Result<(), RespError> {
        match self.expected.pop_front() {
            Some(Expect::Subscribe(c)) if c == channel => {}
            other => {
                return Err(RespError::Unexpected(format!(
                    "subscribe confirmation out of order (expected {other:?})"
                )))
            }
        }
        let Some(ch) = self.channels.get_mut(&channel) else {
            return Ok(());
        };
        ch.subscribes_pending = ch.subscribes_pending.saturating_sub(1);
        if ch.subscribes_pending > 0 || ch.subscribers.is_empty() {
            return Ok(());
        }
        ch.live = true;
        for id in ch.subscribers.clone() {
            if let Some(sub) = self.subscribers.get_mut(&id) {
                if !sub.live {
                    sub.live = true;
                    self.notices.push(Notice::Live(id));
                }
            }
        }
        Ok(())
    }

    /// An (s)unsubscribe push: ours, or the server ending the subscription
    /// (Cluster moves a slot's shard channels with an unsolicited
    /// `sunsubscribe`); then the channel's subscribers are lost.
    fn unsubscribed(&mut self, channel: Vec<u8>) {
        if matches!(self.expected.front(), Some(Expect::Unsubscribe(c)) if *c == channel) {
            self.expected.pop_front();
            if let Some(ch) = self.channels.get(&channel) {
                if ch.subscribers.is_empty() && ch.subscribes_pending == 0 {
                    self.channels.remove(&channel);
                }
            }
            return;
        }
        let Some(ch) = self.channels.remove(&channel) else {
            return;
        };
        for id in ch.subscribers {
            self.subscribers.remove(&id);
            self.notices.push(Notice::Lost(id));
        }
    }

    /// A plain reply: a handshake or ping answer, or a refused subscription.
    fn reply(&mut self, value: Value) -> Result<(), RespError> {
        let expect = self
            .expected
            .pop_front()
            .ok_or_else(|| RespError::Unexpected("reply with no command pending".into()))?;
        match (expect, value) {
            (Expect::Reply, Value::Error(e)) => Err(RespError::Server(format!(
                "subscription connection refused ({}); Redis 6 or later and valid credentials are required",
                e.split_whitespace().next().unwrap_or("ERR")
            ))),
            (Expect::Reply, _) => Ok(()),
            (Expect::Renewal, Value::Error(e)) => {
                let detail = format!("lease renewal refused: {e}");
                let line = log::line("slot_renew_failed", &[("detail", detail.into())]);
                self.logs.push(line);
                Ok(())
            }
            (Expect::Renewal, _) => Ok(()),
            (Expect::Subscribe(channel), Value::Error(e)) => {
                self.refused(channel, &e);
                Ok(())
            }
            (expect, value) => Err(RespError::Unexpected(format!(
                "{value:?} where {expect:?} was expected"
            ))),
        }
    }

    /// The server refused a subscription: `MOVED` sends its subscribers to
    /// the owning node, any other error loses them.
    fn refused(&mut self, channel: Vec<u8>, error: &str) {
        let Some(ch) = self.channels.get_mut(&channel) else {
            return;
        };
        ch.subscribes_pending = ch.subscribes_pending.saturating_sub(1);
        if ch.subscribes_pending > 0 {
            return;
        }
        let ch = self.channels.remove(&channel).unwrap_or_default();
        let moved = parse_moved(error);
        for id in ch.subscribers {
            self.subscribers.remove(&id);
            self.notices.push(match &moved {
                Some(m) => Notice::Moved(id, m.clone()),
                None => Notice::Lost(id),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(password: Option<&str>) -> RedisTarget {
        RedisTarget::for_tests(password, 0)
    }

    /// A hub past its login, with the outgoing handshake discarded.
    fn hub(max_queue: usize) -> Hub {
        let mut h = Hub::new(&target(None), false, 1000, 0);
        h.max_queue = max_queue;
        assert_eq!(h.take_outgoing(), b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n");
        h.receive(b"%1\r\n+server\r\n+redis\r\n").unwrap();
        assert_eq!(h.awaiting(), 0);
        h
    }

    fn sub_ack(channel: &str, count: i64) -> String {
        format!(
            ">3\r\n+subscribe\r\n${}\r\n{channel}\r\n:{count}\r\n",
            channel.len()
        )
    }

    fn unsub_ack(channel: &str, count: i64) -> String {
        format!(
            ">3\r\n+unsubscribe\r\n${}\r\n{channel}\r\n:{count}\r\n",
            channel.len()
        )
    }

    fn message(channel: &str, payload: &str) -> String {
        format!(
            ">3\r\n+message\r\n${}\r\n{channel}\r\n${}\r\n{payload}\r\n",
            channel.len(),
            payload.len()
        )
    }

    fn wire(h: &mut Hub) -> String {
        String::from_utf8(h.take_outgoing()).unwrap()
    }

    fn texts(payloads: Vec<Payload>) -> Vec<String> {
        payloads
            .iter()
            .map(|p| String::from_utf8(p.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn first_join_subscribes_last_leave_unsubscribes() {
        let mut h = hub(8);
        let a = h.join(b"c");
        assert_eq!(wire(&mut h), "*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\nc\r\n");
        let b = h.join(b"c");
        assert_eq!(
            wire(&mut h),
            "",
            "a second subscriber shares the subscription"
        );
        h.leave(a);
        assert_eq!(wire(&mut h), "", "one subscriber is still there");
        h.leave(b);
        assert_eq!(wire(&mut h), "*2\r\n$11\r\nUNSUBSCRIBE\r\n$1\r\nc\r\n");
        assert_eq!(h.subscribers(), 0);
        assert_eq!(h.channels(), 0);
    }

    #[test]
    fn live_only_after_the_confirmation() {
        let mut h = hub(8);
        let a = h.join(b"c");
        assert!(!h.is_live(a));
        assert!(
            h.take_notices().is_empty(),
            "not live before the server confirms"
        );
        h.receive(sub_ack("c", 1).as_bytes()).unwrap();
        assert_eq!(h.take_notices(), vec![Notice::Live(a)]);
        assert!(h.is_live(a));
        // A later subscriber of a live channel is live at once, with no command.
        let b = h.join(b"c");
        assert_eq!(h.take_notices(), vec![Notice::Live(b)]);
        assert_eq!(
            wire(&mut h).len(),
            "*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\nc\r\n".len()
        );
    }

    #[test]
    fn messages_reach_only_their_channel_and_are_shared() {
        let mut h = hub(8);
        let a = h.join(b"c");
        let b = h.join(b"c");
        let other = h.join(b"d");
        h.receive(format!("{}{}", sub_ack("c", 1), sub_ack("d", 2)).as_bytes())
            .unwrap();
        h.take_notices();
        h.receive(
            format!(
                "{}{}{}",
                message("c", "1"),
                message("d", "x"),
                message("c", "2")
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(
            h.take_notices(),
            vec![Notice::Ready(a), Notice::Ready(b), Notice::Ready(other)],
            "one wake-up per subscriber, not per message"
        );
        let got_a = h.drain(a);
        let got_b = h.drain(b);
        assert!(
            Arc::ptr_eq(&got_a[0], &got_b[0]),
            "one payload, not a copy per stream"
        );
        assert_eq!(texts(got_a), ["1", "2"]);
        assert_eq!(texts(got_b), ["1", "2"]);
        assert_eq!(texts(h.drain(other)), ["x"]);
        assert!(h.drain(a).is_empty());
    }

    /// A message too large for the frame limit (anyone who may `PUBLISH`
    /// can send one) costs its own channel's subscribers, who are told,
    /// not the connection and every other stream on it.
    #[test]
    fn an_oversized_message_costs_its_channel_not_the_connection() {
        let mut h = hub(8);
        let victim = h.join(b"c");
        let other = h.join(b"d");
        h.receive(format!("{}{}", sub_ack("c", 1), sub_ack("d", 2)).as_bytes())
            .unwrap();
        h.take_notices();
        let huge = "x".repeat(crate::redis::session::MAX_REPLY_BYTES + 1);
        let bytes = format!("{}{}", message("c", &huge), message("d", "after"));
        for chunk in bytes.as_bytes().chunks(64 * 1024) {
            h.receive(chunk).unwrap();
        }
        assert_eq!(
            h.take_notices(),
            vec![Notice::Ready(victim), Notice::Ready(other)]
        );
        assert_eq!(h.take_dropped(victim), 1);
        assert!(h.drain(victim).is_empty());
        assert_eq!(h.take_dropped(other), 0);
        assert_eq!(texts(h.drain(other)), ["after"]);
        h.receive(message("c", "next").as_bytes()).unwrap();
        assert_eq!(texts(h.drain(victim)), ["next"], "still subscribed");
    }

    #[test]
    fn any_split_of_the_bytes_gives_the_same_result() {
        let all = format!(
            "{}{}{}",
            sub_ack("c", 1),
            message("c", "hello"),
            message("c", "world")
        );
        for cut in 0..all.len() {
            let mut h = hub(8);
            let a = h.join(b"c");
            h.receive(&all.as_bytes()[..cut]).unwrap();
            h.receive(&all.as_bytes()[cut..]).unwrap();
            assert!(h.is_live(a), "cut at {cut}");
            assert_eq!(texts(h.drain(a)), ["hello", "world"], "cut at {cut}");
        }
    }

    #[test]
    fn resubscribe_while_unsubscribing_waits_for_the_new_confirmation() {
        let mut h = hub(8);
        let a = h.join(b"c");
        h.receive(sub_ack("c", 1).as_bytes()).unwrap();
        h.leave(a);
        let b = h.join(b"c");
        assert_eq!(
            wire(&mut h),
            "*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\nc\r\n*2\r\n$11\r\nUNSUBSCRIBE\r\n$1\r\nc\r\n*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\nc\r\n"
        );
        h.take_notices();
        assert!(
            !h.is_live(b),
            "the queued UNSUBSCRIBE would end the old subscription"
        );
        h.receive(unsub_ack("c", 0).as_bytes()).unwrap();
        assert!(!h.is_live(b));
        h.receive(sub_ack("c", 1).as_bytes()).unwrap();
        assert_eq!(h.take_notices(), vec![Notice::Live(b)]);
        assert_eq!(h.awaiting(), 0);
    }

    #[test]
    fn two_subscribes_in_flight_count_the_last_one() {
        let mut h = hub(8);
        let a = h.join(b"c");
        h.leave(a); // UNSUBSCRIBE queued before any confirmation
        let b = h.join(b"c"); // and SUBSCRIBE again
        h.receive(sub_ack("c", 1).as_bytes()).unwrap();
        assert!(
            !h.is_live(b),
            "the first confirmation is followed by an unsubscribe"
        );
        h.receive(unsub_ack("c", 0).as_bytes()).unwrap();
        h.receive(sub_ack("c", 1).as_bytes()).unwrap();
        assert!(h.is_live(b));
    }

    #[test]
    fn a_slow_subscriber_is_dropped_alone() {
        let mut h = hub(2);
        let slow = h.join(b"c");
        let fast = h.join(b"c");
        wire(&mut h);
        h.receive(sub_ack("c", 1).as_bytes()).unwrap();
        h.take_notices();
        for i in 0..2 {
            h.receive(message("c", &i.to_string()).as_bytes()).unwrap();
            h.drain(fast);
        }
        h.take_notices();
        h.receive(message("c", "2").as_bytes()).unwrap();
        assert_eq!(
            h.take_notices(),
            vec![Notice::Ready(fast), Notice::Overflow(slow)]
        );
        assert!(!h.is_live(slow));
        assert_eq!(texts(h.drain(fast)), ["2"]);
        assert!(h.drain(slow).is_empty());
        assert_eq!(wire(&mut h), "", "the channel still has a subscriber");
        h.leave(slow); // the stream's own cleanup after the notice is harmless
        assert_eq!(h.subscribers(), 1);
    }

    #[test]
    fn the_last_slow_subscriber_releases_its_channel() {
        let mut h = hub(1);
        let a = h.join(b"c");
        h.receive(
            format!(
                "{}{}{}",
                sub_ack("c", 1),
                message("c", "1"),
                message("c", "2")
            )
            .as_bytes(),
        )
        .unwrap();
        assert!(h.take_notices().contains(&Notice::Overflow(a)));
        assert!(wire(&mut h).ends_with("*2\r\n$11\r\nUNSUBSCRIBE\r\n$1\r\nc\r\n"));
    }

    #[test]
    fn a_lost_connection_tells_every_subscriber() {
        let mut h = hub(8);
        let a = h.join(b"c");
        let b = h.join(b"d");
        h.receive(sub_ack("c", 1).as_bytes()).unwrap();
        h.take_notices();
        h.connection_lost();
        assert_eq!(h.take_notices(), vec![Notice::Lost(a), Notice::Lost(b)]);
        assert_eq!(h.subscribers(), 0);
        assert_eq!(h.channels(), 0);
        assert!(!h.is_live(a));
    }

    #[test]
    fn the_server_ending_a_subscription_loses_its_subscribers() {
        let mut h = hub(8);
        let a = h.join(b"c");
        let b = h.join(b"d");
        h.receive(format!("{}{}", sub_ack("c", 1), sub_ack("d", 2)).as_bytes())
            .unwrap();
        h.take_notices();
        h.receive(unsub_ack("c", 1).as_bytes()).unwrap();
        assert_eq!(h.take_notices(), vec![Notice::Lost(a)]);
        assert!(h.is_live(b));
    }

    #[test]
    fn sharded_uses_ssubscribe_and_follows_moved() {
        let mut h = Hub::new(&target(None), true, 1000, 0);
        h.take_outgoing();
        h.receive(b"%0\r\n").unwrap();
        let a = h.join(b"{x}c");
        let b = h.join(b"{x}c");
        assert_eq!(wire(&mut h), "*2\r\n$10\r\nSSUBSCRIBE\r\n$4\r\n{x}c\r\n");
        h.receive(b"-MOVED 16287 10.0.0.2:7001\r\n").unwrap();
        let to = Moved {
            slot: 16287,
            host: "10.0.0.2".into(),
            port: 7001,
        };
        assert_eq!(
            h.take_notices(),
            vec![Notice::Moved(a, to.clone()), Notice::Moved(b, to)]
        );
        assert_eq!(h.subscribers(), 0);
        let c = h.join(b"{y}d");
        assert_eq!(wire(&mut h), "*2\r\n$10\r\nSSUBSCRIBE\r\n$4\r\n{y}d\r\n");
        h.receive(b">3\r\n$10\r\nssubscribe\r\n$4\r\n{y}d\r\n:1\r\n>3\r\n$8\r\nsmessage\r\n$4\r\n{y}d\r\n$2\r\nhi\r\n")
            .unwrap();
        assert!(h.is_live(c));
        assert_eq!(texts(h.drain(c)), ["hi"]);
        h.leave(c);
        assert_eq!(wire(&mut h), "*2\r\n$12\r\nSUNSUBSCRIBE\r\n$4\r\n{y}d\r\n");
    }

    #[test]
    fn another_refusal_loses_the_subscribers() {
        let mut h = hub(8);
        let a = h.join(b"c");
        h.receive(b"-NOPERM no permissions to access the channel\r\n")
            .unwrap();
        assert_eq!(h.take_notices(), vec![Notice::Lost(a)]);
    }

    /// A `PING` per interval, answered in order; an answer still owed at
    /// the next check is a silent Redis.
    #[test]
    fn liveness_pings_each_interval_and_an_unanswered_check_fails() {
        let mut h = hub(8); // made at 0, pings every 1000 ns
        assert_eq!(h.poll_timeout(), 1000);
        let a = h.join(b"c");
        h.handle_timeout(999).unwrap();
        assert!(!wire(&mut h).contains("PING"), "not due yet");
        h.receive(sub_ack("c", 1).as_bytes()).unwrap();
        h.handle_timeout(1000).unwrap();
        assert!(wire(&mut h).ends_with("*1\r\n$4\r\nPING\r\n"));
        assert_eq!((h.awaiting(), h.poll_timeout()), (1, 2000));
        h.receive(b"+PONG\r\n").unwrap();
        assert_eq!(h.awaiting(), 0);
        assert!(h.is_live(a));
        h.handle_timeout(2005).unwrap();
        assert_eq!(h.poll_timeout(), 3005);
        assert_eq!(h.handle_timeout(3005), Err(failure::SILENT), "no PONG");
        // A confirmation still owed at the check after the one it was
        // asked before fails the same.
        let mut h = hub(8);
        h.join(b"c");
        h.handle_timeout(1000).unwrap();
        assert_eq!(h.handle_timeout(2000), Err(failure::SILENT));
    }

    /// Redis answers in order, each command `delay` after it went out; a
    /// stream joins (a `SUBSCRIBE`) at every instant of three intervals in
    /// turn. Whatever the instant, the connection is declared silent
    /// exactly when Redis takes longer than an interval to answer: a
    /// confirmation asked just before a check and not back yet is no
    /// sign of a silent Redis (with streams opening all the time one is
    /// almost always in flight, and the old rule then cut every stream of
    /// the instance).
    #[test]
    fn every_join_instant_and_answer_delay_is_silent_only_past_an_interval() {
        const PING: u64 = 4;
        for delay in 0..3 * PING {
            for join_at in 0..3 * PING {
                let mut h = Hub::new(&target(None), false, PING, 0);
                h.take_outgoing();
                h.receive(b"%1\r\n+server\r\n+redis\r\n").unwrap();
                // (due, answer) in send order: answers keep that order.
                let mut owed: VecDeque<(u64, String)> = VecDeque::new();
                let mut silent_at = None;
                for now in 0..6 * PING {
                    while owed.front().is_some_and(|(due, _)| *due <= now) {
                        let (_, answer) = owed.pop_front().unwrap();
                        h.receive(answer.as_bytes()).unwrap();
                    }
                    if now == join_at {
                        h.join(b"c");
                        // Not earlier than what went out before it.
                        let due = owed.back().map_or(0, |b| b.0).max(now + delay);
                        owed.push_back((due, sub_ack("c", 1)));
                    }
                    if now >= h.poll_timeout() {
                        if h.handle_timeout(now).is_err() {
                            silent_at = Some(now);
                            break;
                        }
                        let due = owed.back().map_or(0, |b| b.0).max(now + delay);
                        owed.push_back((due, "+PONG\r\n".into()));
                    }
                    h.take_outgoing();
                }
                assert_eq!(
                    silent_at.is_some(),
                    delay > PING,
                    "answers {delay} after the command, a join at {join_at}: silent at {silent_at:?}"
                );
            }
        }
    }

    /// With the instance lease, its renewal is the liveness check: one
    /// command per interval, `+OK` proves Redis is there, an error reply is
    /// logged and the connection goes on, no answer fails as a `PING`'s.
    #[test]
    fn the_lease_renewal_stands_in_for_ping() {
        let mut h = hub(8);
        let set = |k: &str| vec![b"SET".to_vec(), k.as_bytes().to_vec(), b"1".to_vec()];
        h.renew_with(&set("sse:instance:i7"));
        h.join(b"c");
        h.receive(sub_ack("c", 1).as_bytes()).unwrap();
        h.take_notices(); // live
        wire(&mut h);
        h.handle_timeout(1000).unwrap();
        let out = wire(&mut h);
        assert!(
            out.contains("sse:instance:i7") && !out.contains("PING"),
            "{out}"
        );
        h.receive(b"+OK\r\n").unwrap();
        h.handle_timeout(2000).unwrap();
        h.receive(b"-OOM command not allowed\r\n").unwrap();
        assert_eq!(h.awaiting(), 0, "answered: Redis is there");
        let logs: Vec<String> = h.logs().collect();
        assert_eq!(logs.len(), 1);
        assert!(logs[0].contains("slot_renew_failed") && logs[0].contains("OOM"));
        assert!(h.take_notices().is_empty(), "no subscriber lost");
        h.handle_timeout(3000).unwrap();
        assert_eq!(h.handle_timeout(4000), Err(failure::SILENT), "no answer");
    }

    #[test]
    fn login_failure_is_an_error_without_detail() {
        let mut h = Hub::new(&target(Some("secret-pw")), false, 1000, 0);
        assert!(String::from_utf8(h.take_outgoing())
            .unwrap()
            .contains("AUTH"));
        match h.receive(b"-WRONGPASS invalid username-password pair secret-pw\r\n") {
            Err(RespError::Server(msg)) => {
                assert!(msg.contains("WRONGPASS"));
                assert!(!msg.contains("secret-pw"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn confusion_is_an_error_not_a_guess() {
        let mut h = hub(8);
        assert!(h.receive(b"+OK\r\n").is_err(), "a reply nobody asked for");
        let mut h = hub(8);
        h.join(b"c");
        assert!(
            h.receive(sub_ack("zzz", 1).as_bytes()).is_err(),
            "a confirmation for a channel we did not subscribe"
        );
    }

    #[test]
    fn unknown_ids_and_channels_are_harmless() {
        let mut h = hub(8);
        h.leave(SubId(42));
        assert!(h.drain(SubId(42)).is_empty());
        h.receive(message("nobody", "x").as_bytes()).unwrap();
        h.receive(b">2\r\n+invalidate\r\n*1\r\n$1\r\nk\r\n")
            .unwrap();
        assert!(h.take_notices().is_empty());
    }
}
