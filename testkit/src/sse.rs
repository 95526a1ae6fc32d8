//! An incremental Server-Sent Events parser per the WHATWG event-stream
//! rules (lines end with CRLF, LF or CR; a blank line dispatches; an event
//! without data is not dispatched), reporting comments too: the gateway's
//! heartbeats and close reasons are comments.

use std::collections::VecDeque;

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
    /// A first line's byte-order mark has been looked for.
    past_first_line: bool,
}

impl SseParser {
    pub fn new() -> Self {
        SseParser::default()
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
        if !self.past_first_line {
            self.past_first_line = true;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn items(p: &mut SseParser) -> Vec<SseItem> {
        std::iter::from_fn(|| p.pop()).collect()
    }

    fn ev(data: &str, lines: usize) -> SseItem {
        SseItem::Event(SseEvent {
            event: None,
            data: data.into(),
            data_lines: lines,
            id: None,
            retry: None,
        })
    }

    #[test]
    fn fields_comments_and_multiline() {
        let mut p = SseParser::new();
        p.feed(b": ping\n\ndata: {\"a\":1}\n\nevent: notification\nid: 7\nretry: 3000\ndata: x\ndata:y\ndata:\n\n");
        p.feed(b"data:  two spaces\n\nretry: 500\n\n:no space\n");
        let got = items(&mut p);
        assert_eq!(
            got,
            vec![
                SseItem::Comment("ping".into()),
                ev("{\"a\":1}", 1),
                SseItem::Event(SseEvent {
                    event: Some("notification".into()),
                    data: "x\ny\n".into(),
                    data_lines: 3,
                    id: Some("7".into()),
                    retry: Some(3000),
                }),
                ev(" two spaces", 1),
                SseItem::Comment("no space".into()),
            ]
        );
        assert_eq!(p.last_retry, Some(500));
        assert_eq!(p.last_event_id.as_deref(), Some("7"));
    }

    #[test]
    fn counts_retry_lines() {
        let mut p = SseParser::new();
        p.feed(b"retry: 3000\n\ndata: x\n\nretry: nope\n\n: bye\nretry: 1500\n\n");
        assert_eq!(p.retry_lines, 2);
        assert_eq!(p.last_retry, Some(1500));
    }

    #[test]
    fn remembers_the_first_line() {
        let mut p = SseParser::new();
        p.feed(b"\n\nretry: 3000\n\ndata: x\n\n");
        assert_eq!(p.first_nonempty_line.as_deref(), Some("retry: 3000"));
    }

    #[test]
    fn handles_split_input_and_all_line_endings() {
        let text = b"data: a\r\ndata: b\r\n\r\ndata: c\rdata: d\r\rdata: e\n\n";
        // Feed one byte at a time: CRLF split across reads must not make an
        // extra blank line.
        let mut p = SseParser::new();
        for b in text.iter() {
            p.feed(std::slice::from_ref(b));
        }
        assert_eq!(
            items(&mut p),
            vec![ev("a\nb", 2), ev("c\nd", 2), ev("e", 1)]
        );
        // And an incomplete event is not dispatched.
        let mut p = SseParser::new();
        p.feed(b"data: never finished\n");
        assert!(p.pop().is_none());
    }

    #[test]
    fn a_byte_order_mark_is_skipped_on_the_first_line_only() {
        let mut p = SseParser::new();
        p.feed("\u{feff}data: a\n\n\u{feff}data: b\n\n".as_bytes());
        assert_eq!(items(&mut p), vec![ev("a", 1)]);
    }
}
