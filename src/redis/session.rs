//! The Redis side of one stream, as a sans-I/O state machine.
//!
//! One connection per stream speaks RESP3 (`HELLO 3`), so ordinary commands
//! (`HGETALL`) still work after `SUBSCRIBE` and the record can be read
//! *after* subscribing: no event published in between is lost. The whole
//! handshake goes out as one pipeline (one round trip); replies come back in
//! order and pub/sub pushes may interleave with them.
//!
//! The shell moves bytes: it writes [`Session::take_outgoing`] to the socket
//! and feeds what it reads to [`Session::receive`].

use crate::redis::resp::{self, Decoder, PubSub, RespError, Value};
use crate::redis::target::RedisTarget;
use std::collections::VecDeque;

/// Why a command was sent, so its reply can be routed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    /// `HELLO 3 [AUTH user pass]`.
    Hello,
    /// `SELECT db`.
    Select,
    /// `HGETALL` of the execution record.
    Record,
    /// `XRANGE` of the channel's history.
    History,
    /// The publish script (`EVAL`).
    Publish,
    /// `PING` (health checks, liveness of a subscribed connection).
    Ping,
    /// Taking a per-user stream slot.
    Acquire,
    /// Renewing a slot's lease.
    Renew,
    /// Giving a slot back.
    Release,
    /// A one-shot command on its own connection.
    Command,
    /// `HGETALL` of the caller's user record (`identity_key_prefix`).
    User,
    /// `HGET` of the execution record's `result` (a `result_stored` to fill).
    Result,
}

/// What the connection produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A reply to the command sent with this tag (handshake replies that
    /// succeed are swallowed; failures become [`RespError::Server`]).
    Reply(Tag, Value),
    /// The server confirmed the subscription: events now flow.
    Subscribed,
    /// A message published on the subscribed channel.
    Message(Vec<u8>),
    /// A message on the channel too large for the frame limit, discarded
    /// unread (the connection goes on).
    Dropped,
}

/// The most bytes buffered for one incomplete reply (a record with a large
/// stored result fits; a broken server can't make us grow without bound).
pub const MAX_REPLY_BYTES: usize = 8 * 1024 * 1024;

/// One stream's Redis connection state.
pub struct Session {
    decoder: Decoder,
    /// The longest history entry a page's reply may hold; longer ones
    /// are discarded unread ([`Session::limit_history_entries`]).
    history_entry: usize,
    pending: VecDeque<Tag>,
    outgoing: Vec<u8>,
    channel: Vec<u8>,
}

impl Session {
    /// Queues the handshake: login, database, `SUBSCRIBE channel` (or
    /// `SSUBSCRIBE`, sharded pub/sub on Redis Cluster).
    pub fn subscribe(target: &RedisTarget, channel: &str, sharded: bool) -> Session {
        let mut s = Session::handshake(target);
        let verb: &[u8] = if sharded { b"SSUBSCRIBE" } else { b"SUBSCRIBE" };
        resp::encode_command(&mut s.outgoing, &[verb, channel.as_bytes()]);
        s.channel = channel.as_bytes().to_vec();
        s
    }

    /// Subscribes a connection that is already logged in (a stream that
    /// had to read something first to know its channel).
    pub fn subscribe_now(&mut self, channel: &str, sharded: bool) {
        let verb: &[u8] = if sharded { b"SSUBSCRIBE" } else { b"SUBSCRIBE" };
        resp::encode_command(&mut self.outgoing, &[verb, channel.as_bytes()]);
        self.channel = channel.as_bytes().to_vec();
    }

    /// Queues the login and database selection only (for plain commands).
    pub fn handshake(target: &RedisTarget) -> Session {
        let mut s = Session {
            decoder: Decoder::new(MAX_REPLY_BYTES),
            history_entry: usize::MAX,
            pending: VecDeque::new(),
            outgoing: Vec::new(),
            channel: Vec::new(),
        };
        match &target.password {
            Some(pass) => {
                let user = target.username.as_deref().unwrap_or("default");
                s.command(
                    Tag::Hello,
                    &[b"HELLO", b"3", b"AUTH", user.as_bytes(), pass.as_bytes()],
                )
            }
            None => s.command(Tag::Hello, &[b"HELLO", b"3"]),
        }
        if target.db != 0 {
            s.command(Tag::Select, &[b"SELECT", target.db.to_string().as_bytes()]);
        }
        s
    }

    /// History entries longer than `bytes` (`max_event_bytes` plus the
    /// entry's overhead: only a producer that bypassed the publish
    /// script's cap writes one) are discarded unread from `XRANGE`
    /// replies, so a page of them can never exceed the reply cap and
    /// reset a connection other streams share; the replay skips them.
    pub fn limit_history_entries(&mut self, bytes: usize) {
        self.history_entry = bytes;
    }

    /// Queues one command whose reply will come back with `tag`.
    pub fn command(&mut self, tag: Tag, args: &[&[u8]]) {
        resp::encode_command(&mut self.outgoing, args);
        self.pending.push_back(tag);
    }

    /// [`Session::command`] for arguments built at run time.
    pub fn command_owned(&mut self, tag: Tag, args: &[Vec<u8>]) {
        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        self.command(tag, &args);
    }

    /// Bytes to write to the socket now.
    pub fn take_outgoing(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.outgoing)
    }

    /// Whether bytes wait for [`Session::take_outgoing`].
    pub fn has_outgoing(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// Commands still waiting for their reply.
    pub fn awaiting_replies(&self) -> usize {
        self.pending.len()
    }

    /// Feeds bytes read from the socket and returns what they completed.
    /// An error means the connection is unusable and must be closed.
    pub fn receive(&mut self, bytes: &[u8], out: &mut Vec<Incoming>) -> Result<(), RespError> {
        self.decoder.feed(bytes);
        loop {
            // The next reply frame is this command's (pushes may come
            // first; they are not bound by it).
            self.decoder.limit_bulk(match self.pending.front() {
                Some(Tag::History) => self.history_entry,
                _ => usize::MAX,
            });
            let Some(value) = self.decoder.next()? else {
                break;
            };
            // Moved, not copied: this runs for every event.
            let value = match value.into_pubsub() {
                Ok(push) => {
                    match push {
                        PubSub::Message { channel, payload } if channel == self.channel => {
                            out.push(Incoming::Message(payload))
                        }
                        PubSub::Dropped { channel, .. } if channel == self.channel => {
                            out.push(Incoming::Dropped)
                        }
                        PubSub::Subscribed { channel, .. } if channel == self.channel => {
                            out.push(Incoming::Subscribed)
                        }
                        // Other channels or unsubscribe notices: not ours to act on.
                        _ => {}
                    }
                    continue;
                }
                Err(value) => value,
            };
            if matches!(value, Value::Push(_)) {
                // A push we don't act on (e.g. client tracking) is not a
                // reply: it must not consume a pending command.
                continue;
            }
            // A (S)SUBSCRIBE refused with `MOVED` has no pending tag.
            let tag = self.pending.pop_front();
            match (tag, value) {
                (tag, Value::Error(e)) => return Err(server_error(tag, e)),
                (None, _) => {
                    return Err(RespError::Unexpected(
                        "reply with no command pending".into(),
                    ))
                }
                (Some(Tag::Hello | Tag::Select), _) => {}
                (Some(tag), value) => out.push(Incoming::Reply(tag, value)),
            }
        }
        Ok(())
    }
}

/// A server error reply, typed: Cluster redirects become
/// [`RespError::Moved`] and [`RespError::Ask`] (a slot mid-migration, not
/// followed). The text is logged, so a login failure's is kept generic:
/// nothing credential-shaped reaches a log line.
fn server_error(tag: Option<Tag>, err: String) -> RespError {
    let redirect = match err.split_once(' ') {
        Some(("MOVED", _)) => crate::redis::cluster::parse_moved(&err).map(RespError::Moved),
        Some(("ASK", _)) => crate::redis::cluster::parse_ask(&err).map(RespError::Ask),
        _ => None,
    };
    if let Some(redirect) = redirect {
        return redirect;
    }
    RespError::Server(match tag {
        Some(Tag::Hello) => format!(
            "HELLO 3 refused ({}); Redis 6 or later and valid credentials are required",
            err.split_whitespace().next().unwrap_or("ERR")
        ),
        _ => err,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(password: Option<&str>, db: u32) -> RedisTarget {
        RedisTarget::for_tests(password, db)
    }

    fn feed_all(s: &mut Session, bytes: &[u8]) -> Result<Vec<Incoming>, RespError> {
        let mut out = Vec::new();
        s.receive(bytes, &mut out)?;
        Ok(out)
    }

    #[test]
    fn handshake_is_one_pipeline() {
        let mut s = Session::subscribe(&target(Some("pw"), 2), "sse:exec:1", false);
        s.command(Tag::Record, &[b"HGETALL", b"exec:1"]);
        let wire = String::from_utf8(s.take_outgoing()).unwrap();
        assert_eq!(
            wire,
            "*5\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$4\r\nAUTH\r\n$7\r\ndefault\r\n$2\r\npw\r\n\
             *2\r\n$6\r\nSELECT\r\n$1\r\n2\r\n\
             *2\r\n$9\r\nSUBSCRIBE\r\n$10\r\nsse:exec:1\r\n\
             *2\r\n$7\r\nHGETALL\r\n$6\r\nexec:1\r\n"
        );
        assert!(s.take_outgoing().is_empty());
        assert_eq!(s.awaiting_replies(), 3);
    }

    #[test]
    fn no_password_no_select() {
        let mut s = Session::subscribe(&target(None, 0), "c", false);
        let wire = String::from_utf8(s.take_outgoing()).unwrap();
        assert!(wire.starts_with("*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n*2\r\n$9\r\nSUBSCRIBE"));
    }

    #[test]
    fn sharded_subscription() {
        let mut s = Session::subscribe(&target(None, 0), "c", true);
        let wire = String::from_utf8(s.take_outgoing()).unwrap();
        assert!(
            wire.ends_with("*2\r\n$10\r\nSSUBSCRIBE\r\n$1\r\nc\r\n"),
            "{wire}"
        );
        let got = feed_all(
            &mut s,
            b"%0\r\n>3\r\n$10\r\nssubscribe\r\n$1\r\nc\r\n:1\r\n>3\r\n$8\r\nsmessage\r\n$1\r\nc\r\n$2\r\nhi\r\n",
        )
        .unwrap();
        assert_eq!(
            got,
            vec![Incoming::Subscribed, Incoming::Message(b"hi".to_vec())]
        );
    }

    #[test]
    fn replies_and_pushes_are_routed() {
        let mut s = Session::subscribe(&target(None, 0), "c", false);
        s.command(Tag::Record, &[b"HGETALL", b"k"]);
        let hello = "%1\r\n+server\r\n+redis\r\n";
        let sub = ">3\r\n+subscribe\r\n$1\r\nc\r\n:1\r\n";
        let early = ">3\r\n+message\r\n$1\r\nc\r\n$2\r\nhi\r\n";
        let other = ">3\r\n+message\r\n$1\r\nd\r\n$2\r\nno\r\n";
        let record = "%1\r\n$6\r\nstatus\r\n$7\r\nrunning\r\n";
        let all = format!("{hello}{sub}{early}{other}{record}");
        // Any split of the bytes gives the same result.
        for cut in 0..all.len() {
            let mut s2 = Session::subscribe(&target(None, 0), "c", false);
            s2.command(Tag::Record, &[b"HGETALL", b"k"]);
            let mut got = feed_all(&mut s2, &all.as_bytes()[..cut]).unwrap();
            got.extend(feed_all(&mut s2, &all.as_bytes()[cut..]).unwrap());
            assert_eq!(got.len(), 3, "cut at {cut}");
        }
        let got = feed_all(&mut s, all.as_bytes()).unwrap();
        assert_eq!(got[0], Incoming::Subscribed);
        assert_eq!(got[1], Incoming::Message(b"hi".to_vec()));
        match &got[2] {
            Incoming::Reply(Tag::Record, v) => {
                assert_eq!(
                    v.clone().into_pairs().unwrap(),
                    vec![("status".to_string(), "running".to_string())]
                )
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(s.awaiting_replies(), 0);
    }

    #[test]
    fn login_failure_is_an_error_without_detail() {
        let mut s = Session::subscribe(&target(Some("secret-pw"), 0), "c", false);
        let e = feed_all(
            &mut s,
            b"-WRONGPASS invalid username-password pair secret-pw\r\n",
        )
        .unwrap_err();
        match e {
            RespError::Server(msg) => {
                assert!(msg.contains("WRONGPASS"));
                assert!(!msg.contains("secret-pw"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn moved_is_a_typed_error() {
        let mut s = Session::subscribe(&target(None, 0), "c", true);
        let e = feed_all(&mut s, b"+OK\r\n-MOVED 3999 10.0.0.2:7001\r\n").unwrap_err();
        assert_eq!(
            e,
            RespError::Moved(crate::redis::cluster::Moved {
                slot: 3999,
                host: "10.0.0.2".into(),
                port: 7001
            })
        );
        let mut s = Session::subscribe(&target(None, 0), "c", true);
        let e = feed_all(&mut s, b"+OK\r\n-ASK 3999 10.0.0.2:7001\r\n").unwrap_err();
        assert!(
            matches!(e, RespError::Ask(ref to) if to.slot == 3999),
            "{e:?}"
        );
        assert_eq!(e.to_string(), "Redis error: ASK 3999 10.0.0.2:7001");
    }

    #[test]
    fn garbage_and_unsolicited_replies_are_errors() {
        let mut s = Session::subscribe(&target(None, 0), "c", false);
        assert!(feed_all(&mut s, b"+OK\r\n+OK\r\n").is_err());
        let mut s = Session::subscribe(&target(None, 0), "c", false);
        assert!(matches!(
            feed_all(&mut s, b"?garbage\r\n"),
            Err(RespError::Protocol(_))
        ));
    }
}
