//! One stream's browser side: the outbox of framed SSE bytes and the rules
//! applied to each message, heartbeat or control event, and when to stop.
//!
//! Every stream route (executions, notifications, replay status) fills the
//! same [`Outbox`] from [`crate::machine::StreamMachine`]; only the
//! [`StreamKind`] and the opening events differ.

use crate::rules::events::{classify, Skip, StreamKind};
use crate::rules::history::{split_live, EntryId};
use crate::rules::sse::{self, Event};

/// Why a stream ended (for the log line and for tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// A terminal event was sent.
    Terminal,
    /// The browser went away (a write failed).
    ClientGone,
    /// The browser took no bytes for `write_stall_seconds` (or the
    /// last bytes could not be flushed in time).
    SlowClient,
    /// Live messages had to be dropped that no history can give back
    /// (plain `PUBLISH`, more than the backlog holds): the browser is told
    /// and reconnects (an execution stream then starts with a fresh
    /// status event).
    Overrun,
    /// The Redis connection broke, sent garbage or stopped answering.
    RedisLost,
    /// The caller's token expired; reconnecting needs a fresh one.
    TokenExpired,
    /// `max_stream_seconds` passed; the browser reconnects and resumes.
    Lifetime,
    /// The user store no longer has the caller as an active user
    /// (`identity_key_prefix`): reconnecting would be refused.
    Revoked,
}

impl Close {
    /// A short reason for logs.
    pub fn reason(self) -> &'static str {
        match self {
            Close::Terminal => "terminal event",
            Close::ClientGone => "client disconnected",
            Close::SlowClient => "client stopped reading",
            Close::Overrun => "events dropped",
            Close::RedisLost => "redis connection lost",
            Close::TokenExpired => "token expired",
            Close::Lifetime => "max stream duration",
            Close::Revoked => "user inactive",
        }
    }

    /// Whether the response body is finished (HTTP/1.1: its last chunk)
    /// rather than aborted. A fetch-based client (the Python service's)
    /// reads a clean end as "done" and reconnects only after a failed read,
    /// so only the ends after which coming back is pointless are clean: a
    /// terminal event, and a user the store deactivated. The machine reports
    /// these only once every queued byte was written.
    pub fn ends_cleanly(self) -> bool {
        matches!(self, Close::Terminal | Close::Revoked)
    }
}

/// The browser side of one stream: an outbox of framed bytes plus the rules.
pub struct Outbox {
    kind: StreamKind,
    event_name: Option<&'static str>,
    outbox: Vec<u8>,
    sent: usize,
    closed: Option<Close>,
    events: u64,
    /// The newest history id sent: live messages at or before it were
    /// already delivered from history. (The browser's `Last-Event-ID` only
    /// chooses where the history read starts: a real one is older than any
    /// live message, and a bogus future one must not silence the stream.)
    last_id: Option<EntryId>,
}

impl Outbox {
    /// `event_name` is the SSE `event:` field for every message (`None` for
    /// the default `message`). The outbox itself is unbounded: the machine
    /// queues a live message only while it holds at most
    /// [`crate::config::StreamBudget::outbox_bytes`] (`machine::backlog`),
    /// and history pages only below the low water.
    pub fn new(kind: StreamKind, event_name: Option<&'static str>) -> Self {
        Outbox {
            kind,
            event_name,
            outbox: Vec::new(),
            sent: 0,
            closed: None,
            events: 0,
            last_id: None,
        }
    }

    /// Queues the `retry:` hint (how soon the browser reconnects).
    pub fn retry(&mut self, millis: u64) {
        sse::encode_retry(&mut self.outbox, millis);
    }

    /// Sends an event the gateway built itself (status snapshot, stored
    /// result).
    pub fn control(&mut self, json: &str, terminal: bool) {
        self.push(None, json);
        if terminal {
            self.close(Close::Terminal);
        }
    }

    /// A live message from the channel: its history id (if it was published
    /// through the gateway) is split off and deduplicated against history.
    pub fn message(&mut self, payload: &[u8]) -> Result<(), Skip> {
        let (id, event) = split_live(payload);
        self.event(id, &event)
    }

    /// An event with its history id (`None` for plain `PUBLISH` producers,
    /// whose events are always sent): live, or a history entry replayed.
    /// Applies the stream's rules and queues it; ids at or before the last
    /// one sent are dropped as duplicates. Skipped messages leave the
    /// stream as it was; the caller logs the reason.
    pub fn event(&mut self, id: Option<EntryId>, payload: &[u8]) -> Result<(), Skip> {
        if self.closed.is_some() {
            return Ok(());
        }
        if let (Some(id), Some(last)) = (id, self.last_id) {
            if id <= last {
                return Ok(());
            }
        }
        let accepted = classify(self.kind, payload)?;
        if id.is_some() {
            self.last_id = id;
        }
        self.push(id, accepted.json);
        if accepted.terminal {
            self.close(Close::Terminal);
        }
        Ok(())
    }

    /// History up to `id` has been read (sent or skipped): live messages
    /// at or before it are duplicates.
    pub fn seen(&mut self, id: EntryId) {
        self.last_id = self.last_id.max(Some(id));
    }

    /// The browser's `Last-Event-ID` is not in the history (trimmed,
    /// expired, or never there; `0-0`, "from the start", is no claim): the
    /// replay that follows cannot be proven complete. A named event, so `EventSource`'s `onmessage` and clients
    /// that dispatch on `event_type` pass it by (as Centrifugo's
    /// `recovered: false`).
    pub fn unrecovered(&mut self) {
        let ev = Event {
            event: Some("resume"),
            id: None,
            data: r#"{"recovered":false}"#,
        };
        sse::encode_event(&mut self.outbox, &ev);
    }

    /// The newest history id queued: where a catch-up reads on from.
    pub fn last_id(&self) -> Option<EntryId> {
        self.last_id
    }

    /// Queues a `: ping` comment so proxies keep the connection and a gone
    /// browser is noticed at this write.
    pub fn heartbeat(&mut self) {
        if self.closed.is_none() {
            sse::encode_comment(&mut self.outbox, "ping");
        }
    }

    fn push(&mut self, id: Option<EntryId>, json: &str) {
        if self.closed.is_some() {
            return;
        }
        let id_text = id.map(|id| id.to_string());
        let ev = Event {
            event: self.event_name,
            id: id_text.as_deref(),
            data: json,
        };
        sse::encode_event(&mut self.outbox, &ev);
        self.events += 1;
    }

    /// Marks the stream closed; the first reason wins. Bytes already queued
    /// are still flushed (a terminal event must reach the browser).
    pub fn close(&mut self, why: Close) {
        self.closed.get_or_insert(why);
    }

    /// Ends a live stream for a reason the browser should hear about: a
    /// `retry:` hint and a comment for reconnectable ends, and a
    /// `token_expired` event (ignored by `onmessage` handlers) when only a
    /// new token helps.
    pub fn end(&mut self, why: Close, retry_ms: u64) {
        if self.closed.is_some() {
            return;
        }
        match why {
            Close::TokenExpired => {
                let ev = Event {
                    event: Some("token_expired"),
                    id: None,
                    data: r#"{"detail":"token expired"}"#,
                };
                sse::encode_event(&mut self.outbox, &ev);
            }
            Close::Revoked => {
                let ev = Event {
                    event: Some("access_revoked"),
                    id: None,
                    data: r#"{"detail":"Invalid credentials"}"#,
                };
                sse::encode_event(&mut self.outbox, &ev);
            }
            Close::Lifetime | Close::RedisLost | Close::Overrun => {
                sse::encode_retry(&mut self.outbox, retry_ms);
                sse::encode_comment(&mut self.outbox, why.reason());
            }
            Close::Terminal | Close::ClientGone | Close::SlowClient => {}
        }
        self.close(why);
    }

    /// Why the stream is closed, if it is.
    pub fn closed(&self) -> Option<Close> {
        self.closed
    }

    /// Bytes queued and not yet written.
    pub fn pending(&self) -> &[u8] {
        &self.outbox[self.sent..]
    }

    /// Records that the shell wrote `n` bytes of [`Outbox::pending`].
    /// Sent bytes are dropped once they are at least half the buffer, so a
    /// reader that always lags a little keeps the buffer near its backlog,
    /// not its history; each byte is moved O(1) times amortised. Once
    /// everything is sent the buffer itself goes: an idle stream holds
    /// none (a p3 instance's streams share its memory, and a replayed
    /// history's capacity would otherwise stay with its stream for good).
    pub fn consume(&mut self, n: usize) {
        self.sent = (self.sent + n).min(self.outbox.len());
        if self.sent == self.outbox.len() {
            self.outbox = Vec::new();
            self.sent = 0;
        } else if self.sent >= self.outbox.len() - self.sent {
            self.outbox.drain(..self.sent);
            self.sent = 0;
        }
    }

    /// Bytes held, sent or not (for tests of the compaction rule).
    pub fn held(&self) -> usize {
        self.outbox.len()
    }

    /// True when closed and everything queued has been written.
    pub fn finished(&self) -> bool {
        self.closed.is_some() && self.pending().is_empty()
    }

    /// Events queued so far (for the close log line).
    pub fn events_sent(&self) -> u64 {
        self.events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &Outbox) -> &str {
        std::str::from_utf8(s.pending()).unwrap()
    }

    #[test]
    fn execution_stream_ends_after_terminal_and_ignores_later_messages() {
        let mut s = Outbox::new(StreamKind::Execution, None);
        s.control(r#"{"event_type":"status"}"#, false);
        s.message(br#"{"event_type":"pod_running"}"#).unwrap();
        assert_eq!(s.closed(), None);
        s.message(br#"{"event_type":"result_stored"}"#).unwrap();
        assert_eq!(s.closed(), Some(Close::Terminal));
        s.message(br#"{"event_type":"late"}"#).unwrap();
        s.heartbeat();
        assert_eq!(
            text(&s),
            "data: {\"event_type\":\"status\"}\n\n\
             data: {\"event_type\":\"pod_running\"}\n\n\
             data: {\"event_type\":\"result_stored\"}\n\n"
        );
        assert!(!s.finished(), "terminal event still to be written");
        let n = s.pending().len();
        s.consume(n);
        assert!(s.finished());
        assert_eq!(s.events_sent(), 3);
    }

    /// An idle stream holds no buffer: none before its first event, and
    /// none once a large replay has been written.
    #[test]
    fn a_drained_outbox_gives_its_buffer_back() {
        let mut s = Outbox::new(StreamKind::Execution, None);
        assert_eq!(s.outbox.capacity(), 0);
        let big = format!(
            r#"{{"event_type":"pod_running","pad":"{}"}}"#,
            "x".repeat(100_000)
        );
        s.message(big.as_bytes()).unwrap();
        let half = s.pending().len() / 2;
        s.consume(half);
        assert!(s.outbox.capacity() > 0, "half written: still held");
        let rest = s.pending().len();
        s.consume(rest);
        assert_eq!((s.held(), s.outbox.capacity()), (0, 0));
        s.heartbeat();
        assert_eq!(
            text(&s),
            ": ping\n\n",
            "the next write starts a fresh buffer"
        );
    }

    #[test]
    fn skipped_messages_leave_no_trace() {
        let mut s = Outbox::new(StreamKind::Execution, None);
        assert_eq!(s.message(b"not json"), Err(Skip::NotJsonObject));
        assert_eq!(s.message(b"{}"), Err(Skip::MissingEventType));
        assert!(s.pending().is_empty());
        assert_eq!(s.closed(), None);
    }

    #[test]
    fn notifications_are_named_and_never_terminal() {
        let mut s = Outbox::new(StreamKind::Notification, Some("notification"));
        s.message(br#"{"event_type":"result_stored"}"#).unwrap();
        assert_eq!(s.closed(), None);
        assert_eq!(
            text(&s),
            "event: notification\ndata: {\"event_type\":\"result_stored\"}\n\n"
        );
    }

    #[test]
    fn partial_writes_keep_order() {
        let mut s = Outbox::new(StreamKind::Execution, None);
        s.message(br#"{"event_type":"a"}"#).unwrap();
        s.consume(5);
        s.heartbeat();
        assert_eq!(text(&s), " {\"event_type\":\"a\"}\n\n: ping\n\n");
    }

    #[test]
    fn history_then_live_sends_each_event_once_in_order() {
        let mut s = Outbox::new(StreamKind::Execution, None);
        let id = |n: u64| EntryId { ms: 100, seq: n };
        s.retry(3000);
        // Live messages 2 and 3 raced the history read, which returned 1..=3.
        for n in 1..=3 {
            s.event(
                Some(id(n)),
                format!(r#"{{"event_type":"t","n":{n}}}"#).as_bytes(),
            )
            .unwrap();
        }
        s.message(br#"{"_sse_id":"100-2","event_type":"t","n":2}"#)
            .unwrap();
        s.message(br#"{"_sse_id":"100-3","event_type":"t","n":3}"#)
            .unwrap();
        s.message(br#"{"_sse_id":"100-4","event_type":"t","n":4}"#)
            .unwrap();
        s.message(br#"{"event_type":"plain"}"#).unwrap();
        assert_eq!(
            text(&s),
            "retry: 3000\n\n\
             id: 100-1\ndata: {\"event_type\":\"t\",\"n\":1}\n\n\
             id: 100-2\ndata: {\"event_type\":\"t\",\"n\":2}\n\n\
             id: 100-3\ndata: {\"event_type\":\"t\",\"n\":3}\n\n\
             id: 100-4\ndata: {\"event_type\":\"t\",\"n\":4}\n\n\
             data: {\"event_type\":\"plain\"}\n\n"
        );
    }

    #[test]
    fn skipped_event_does_not_advance_the_resume_point() {
        let mut s = Outbox::new(StreamKind::Execution, None);
        assert!(s.event(Some(EntryId { ms: 9, seq: 0 }), b"{}").is_err());
        s.event(Some(EntryId { ms: 8, seq: 0 }), br#"{"event_type":"a"}"#)
            .unwrap();
        assert_eq!(s.events_sent(), 1);
    }

    #[test]
    fn ends_tell_the_browser_why() {
        let mut s = Outbox::new(StreamKind::Execution, None);
        s.end(Close::Lifetime, 1000);
        assert_eq!(text(&s), "retry: 1000\n\n: max stream duration\n\n");
        assert_eq!(s.closed(), Some(Close::Lifetime));
        s.end(Close::TokenExpired, 1000);
        assert_eq!(s.closed(), Some(Close::Lifetime), "first reason wins");
        let mut s = Outbox::new(StreamKind::Notification, Some("notification"));
        s.end(Close::TokenExpired, 1000);
        assert_eq!(
            text(&s),
            "event: token_expired\ndata: {\"detail\":\"token expired\"}\n\n"
        );
    }

    #[test]
    fn a_reader_that_always_lags_a_little_keeps_memory_bounded() {
        let mut s = Outbox::new(StreamKind::Notification, None);
        for n in 0..10_000 {
            s.message(format!(r#"{{"event_type":"t","n":{n}}}"#).as_bytes())
                .unwrap();
            // The browser takes all but the last 10 bytes every time.
            let lag = s.pending().len().saturating_sub(10);
            s.consume(lag);
            assert!(s.held() < 200, "outbox holds {} bytes at {n}", s.held());
        }
        assert_eq!(s.closed(), None);
        assert!(text(&s).ends_with("}\n\n"));
    }

    #[test]
    fn seen_ids_are_duplicates_and_no_amount_of_bytes_closes() {
        let mut s = Outbox::new(StreamKind::Execution, None);
        let big = format!(r#"{{"event_type":"a","pad":"{}"}}"#, "x".repeat(1 << 20));
        s.event(Some(EntryId { ms: 1, seq: 0 }), big.as_bytes())
            .unwrap();
        s.seen(EntryId { ms: 5, seq: 0 });
        s.seen(EntryId { ms: 2, seq: 0 });
        assert_eq!(s.last_id(), Some(EntryId { ms: 5, seq: 0 }));
        s.message(br#"{"_sse_id":"5-0","event_type":"dup"}"#)
            .unwrap();
        assert_eq!(s.events_sent(), 1, "5-0 was read from history");
        s.message(br#"{"_sse_id":"5-1","event_type":"b"}"#).unwrap();
        s.heartbeat();
        assert_eq!(s.events_sent(), 2);
        assert_eq!(
            s.closed(),
            None,
            "bytes alone never close: the stall rule does"
        );
    }

    #[test]
    fn an_overrun_tells_the_browser_to_reconnect() {
        let mut s = Outbox::new(StreamKind::Execution, None);
        s.end(Close::Overrun, 1000);
        assert_eq!(text(&s), "retry: 1000\n\n: events dropped\n\n");
        assert!(!Close::Overrun.ends_cleanly());
    }
}
