//! Server-Sent Events framing (WHATWG HTML, "server-sent events").
//!
//! Pure byte building: the shell writes whatever these functions append.
//! Payloads are never emitted raw: every line break in `data` starts a new
//! `data:` line, and single-line fields (`event`, `id`) lose their line
//! breaks, so a producer can't inject fields or end an event early.

/// One event to frame. `data` may hold any text, including line breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    /// `event:` name; `None` means the browser's default `message` event.
    pub event: Option<&'a str>,
    /// `id:` for `Last-Event-ID` resume; `None` for events with no history entry.
    pub id: Option<&'a str>,
    /// The payload, split into `data:` lines at CR, LF and CRLF.
    pub data: &'a str,
}

impl<'a> Event<'a> {
    /// A plain `message` event with no id.
    pub fn data(data: &'a str) -> Self {
        Event {
            event: None,
            id: None,
            data,
        }
    }
}

/// Appends one event, terminated by the blank line that dispatches it.
pub fn encode_event(out: &mut Vec<u8>, ev: &Event<'_>) {
    if let Some(name) = ev.event {
        single_line_field(out, b"event: ", name);
    }
    if let Some(id) = ev.id {
        single_line_field(out, b"id: ", id);
    }
    for line in split_lines(ev.data) {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
}

/// Appends a comment line; browsers ignore it, proxies see traffic (heartbeat).
pub fn encode_comment(out: &mut Vec<u8>, text: &str) {
    for line in split_lines(text) {
        out.extend_from_slice(b": ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
}

/// Appends a `retry:` hint telling the browser how soon to reconnect.
pub fn encode_retry(out: &mut Vec<u8>, millis: u64) {
    out.extend_from_slice(b"retry: ");
    out.extend_from_slice(millis.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}

/// Writes `prefix` + `value` with CR/LF removed: these fields are one line.
fn single_line_field(out: &mut Vec<u8>, prefix: &[u8], value: &str) {
    out.extend_from_slice(prefix);
    out.extend(value.bytes().filter(|b| *b != b'\r' && *b != b'\n'));
    out.push(b'\n');
}

/// Splits at CRLF, CR or LF, the three line ends an SSE parser accepts.
/// An empty string is one empty line, so empty data still dispatches.
fn split_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let s = rest?;
        match s.find(['\r', '\n']) {
            None => {
                rest = None;
                Some(s)
            }
            Some(i) => {
                let skip = if s[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&s[i + skip..]);
                Some(&s[..i])
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ev: Event<'_>) -> String {
        let mut out = Vec::new();
        encode_event(&mut out, &ev);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn single_line_data() {
        assert_eq!(
            frame(Event::data(r#"{"a":1}"#)),
            "data: {\"a\":1}\n\n".to_string()
        );
    }

    #[test]
    fn every_line_break_kind_starts_a_data_line() {
        assert_eq!(
            frame(Event::data("a\nb\r\nc\rd")),
            "data: a\ndata: b\ndata: c\ndata: d\n\n"
        );
    }

    #[test]
    fn trailing_newline_keeps_an_empty_data_line() {
        // The browser joins data lines with \n, so this round-trips "x\n".
        assert_eq!(frame(Event::data("x\n")), "data: x\ndata: \n\n");
        assert_eq!(frame(Event::data("")), "data: \n\n");
    }

    #[test]
    fn event_and_id_fields_cannot_inject_lines() {
        let ev = Event {
            event: Some("notifi\ncation"),
            id: Some("1-0\r\ndata: evil"),
            data: "{}",
        };
        assert_eq!(
            frame(ev),
            "event: notification\nid: 1-0data: evil\ndata: {}\n\n"
        );
    }

    #[test]
    fn comment_and_retry() {
        let mut out = Vec::new();
        encode_comment(&mut out, "ping");
        encode_retry(&mut out, 3000);
        assert_eq!(out, b": ping\n\nretry: 3000\n\n");
    }

    #[test]
    fn pretty_json_round_trips_through_a_browser_style_parser() {
        let json = "{\n  \"event_type\": \"pod_running\",\n  \"x\": [1,\n 2]\n}";
        let framed = frame(Event::data(json));
        let rebuilt: Vec<&str> = framed
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .collect();
        assert_eq!(rebuilt.join("\n"), json);
        assert!(!framed.contains("\n\n\n"));
    }
}
