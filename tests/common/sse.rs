//! An SSE parser and an open event stream over the HTTP client.

use super::*;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// `event:` field (None: a default "message" event).
    pub event: Option<String>,
    /// `data:` lines joined with "\n".
    pub data: String,
    /// How many `data:` lines the event had.
    pub data_lines: usize,
    /// `id:` field of this event, if it had one.
    pub id: Option<String>,
    /// `retry:` field of this event, if it had one.
    pub retry: Option<u64>,
}

impl SseEvent {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {:?}", self.data))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SseItem {
    Event(SseEvent),
    /// A comment line (`: ping` gives "ping"; one leading space stripped).
    Comment(String),
}

/// Incremental SSE parser per the WHATWG event-stream rules (lines end with
/// CRLF, LF or CR; blank line dispatches; events without data are not
/// dispatched), but comments are reported too.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    after_cr: bool,
    event: Option<String>,
    data: Vec<String>,
    id: Option<String>,
    retry: Option<u64>,
    items: VecDeque<SseItem>,
    /// Last `id:` seen on the stream.
    pub last_event_id: Option<String>,
    /// Last `retry:` seen on the stream.
    pub last_retry: Option<u64>,
    /// How many valid `retry:` fields the stream has carried so far.
    pub retry_lines: usize,
    /// The first non-empty line of the stream, verbatim (e.g. `retry: 3000`).
    pub first_nonempty_line: Option<String>,
    first_line: bool,
}

impl SseParser {
    pub fn new() -> Self {
        SseParser {
            first_line: true,
            ..Default::default()
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\r' => {
                    self.after_cr = true;
                    self.line_done();
                }
                b'\n' => self.line_done(),
                _ => self.line.push(b),
            }
        }
    }

    pub fn pop(&mut self) -> Option<SseItem> {
        self.items.pop_front()
    }

    fn line_done(&mut self) {
        let mut bytes = std::mem::take(&mut self.line);
        if self.first_line {
            self.first_line = false;
            if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
                bytes.drain(..3);
            }
        }
        let line = String::from_utf8_lossy(&bytes).to_string();
        if self.first_nonempty_line.is_none() && !line.is_empty() {
            self.first_nonempty_line = Some(line.clone());
        }
        if line.is_empty() {
            self.dispatch();
            return;
        }
        if let Some(comment) = line.strip_prefix(':') {
            let comment = comment.strip_prefix(' ').unwrap_or(comment);
            self.items.push_back(SseItem::Comment(comment.to_string()));
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f.to_string(), v.strip_prefix(' ').unwrap_or(v).to_string()),
            None => (line.clone(), String::new()),
        };
        match field.as_str() {
            "event" => self.event = Some(value),
            "data" => self.data.push(value),
            "id" if !value.contains('\0') => {
                self.id = Some(value.clone());
                self.last_event_id = Some(value);
            }
            "retry" if !value.is_empty() && value.bytes().all(|c| c.is_ascii_digit()) => {
                if let Ok(ms) = value.parse() {
                    self.retry = Some(ms);
                    self.last_retry = Some(ms);
                    self.retry_lines += 1;
                }
            }
            _ => {}
        }
    }

    fn dispatch(&mut self) {
        let event = self.event.take();
        let id = self.id.take();
        let retry = self.retry.take();
        let data = std::mem::take(&mut self.data);
        if data.is_empty() {
            return;
        }
        self.items.push_back(SseItem::Event(SseEvent {
            event,
            data_lines: data.len(),
            data: data.join("\n"),
            id,
            retry,
        }));
    }
}

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
