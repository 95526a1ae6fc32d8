//! An SSE parser and an open event stream over the HTTP client.

use super::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

// Each test crate uses only some of the harness (dead_code covers fns, not re-exports).
#[allow(unused_imports)]
pub use sse_gateway_testkit::sse::{SseEvent, SseItem, SseParser};

#[derive(Debug)]
pub enum Next {
    Item(SseItem),
    End(EndKind),
    Timeout,
}

/// An open event stream.
pub struct SseStream {
    pub resp: HttpResponse,
    parser: SseParser,
    /// Everything received so far, for failure messages.
    pub transcript: Vec<String>,
    label: String,
}

impl SseStream {
    pub fn new(resp: HttpResponse, label: &str) -> SseStream {
        SseStream {
            resp,
            parser: SseParser::new(),
            transcript: Vec::new(),
            label: label.to_string(),
        }
    }

    pub fn parser(&self) -> &SseParser {
        &self.parser
    }

    fn context(&self) -> String {
        format!(
            "[{}] received so far:\n  {}",
            self.label,
            self.transcript.join("\n  ")
        )
    }

    /// The next event or comment, the end of the body, or a timeout.
    pub fn next(&mut self, timeout: Duration) -> Next {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(item) = self.parser.pop() {
                self.transcript.push(format!("{item:?}"));
                return Next::Item(item);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.resp.read_body(left) {
                BodyRead::Data(d) => self.parser.feed(&d),
                BodyRead::End(end) => {
                    self.transcript.push(format!("<end: {end:?}>"));
                    return Next::End(end);
                }
                BodyRead::Timeout => return Next::Timeout,
            }
        }
    }

    /// The next event, skipping comments; panics on end or timeout.
    pub fn next_event(&mut self, timeout: Duration) -> SseEvent {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Next::Item(SseItem::Event(e)) => return e,
                Next::Item(SseItem::Comment(_)) => continue,
                Next::End(end) => panic!(
                    "expected an event but the stream ended ({end:?}); {}",
                    self.context()
                ),
                Next::Timeout => panic!(
                    "expected an event within {timeout:?} but none came; {}",
                    self.context()
                ),
            }
        }
    }

    /// The next event's data parsed as JSON.
    pub fn next_json(&mut self, timeout: Duration) -> serde_json::Value {
        let ev = self.next_event(timeout);
        serde_json::from_str(&ev.data).unwrap_or_else(|e| {
            panic!(
                "event data is not JSON ({e}): {:?}; {}",
                ev.data,
                self.context()
            )
        })
    }

    /// Expect the body to end cleanly within `timeout`, with no further
    /// events (comments are allowed). Returns the comments seen.
    pub fn expect_end(&mut self, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut comments = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Next::Item(SseItem::Comment(c)) => comments.push(c),
                Next::Item(SseItem::Event(e)) => panic!(
                    "expected the stream to end, got another event {e:?}; {}",
                    self.context()
                ),
                Next::End(EndKind::Clean) => return comments,
                Next::End(end) => panic!(
                    "the stream ended, but not cleanly: {end:?}; {}",
                    self.context()
                ),
                Next::Timeout => panic!(
                    "expected the stream to end within {timeout:?}, it is still open; {}",
                    self.context()
                ),
            }
        }
    }

    /// Expect the stream to stay open and silent (comments allowed) for `dur`.
    pub fn assert_open_for(&mut self, dur: Duration) -> Vec<String> {
        let deadline = Instant::now() + dur;
        let mut comments = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return comments;
            }
            match self.next(left) {
                Next::Item(SseItem::Comment(c)) => comments.push(c),
                Next::Item(SseItem::Event(e)) => panic!(
                    "expected no event while the stream stays open, got {e:?}; {}",
                    self.context()
                ),
                Next::End(end) => panic!(
                    "expected the stream to stay open, it ended ({end:?}); {}",
                    self.context()
                ),
                Next::Timeout => return comments,
            }
        }
    }

    /// Close the connection like a browser tab going away.
    pub fn disconnect(self) {
        self.resp.disconnect();
    }
}

/// Headers of a browser EventSource request with a Bearer token.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Open `GET path` as an event stream; panics (with the body) unless 200.
pub fn open_stream(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> SseStream {
    let mut all: Vec<(&str, &str)> = vec![
        ("Accept", "text/event-stream"),
        ("Cache-Control", "no-cache"),
    ];
    all.extend_from_slice(headers);
    let mut resp = send_get(addr, path, &all, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    if resp.status != 200 {
        let (body, _) = resp.read_to_end(Duration::from_secs(5));
        panic!(
            "GET {path}: expected 200, got {} {:?}; headers {:?}; body {:?}",
            resp.status,
            resp.reason,
            resp.headers,
            String::from_utf8_lossy(&body)
        );
    }
    SseStream::new(resp, path)
}
