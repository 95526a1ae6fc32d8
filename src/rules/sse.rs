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
        // Byte search: CR and LF are ASCII, and this runs for every event.
        match s.bytes().position(|b| b == b'\r' || b == b'\n') {
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

/// Property tests: framed events survive a browser-style parser unchanged.
#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    /// One dispatched event as `EventSource` sees it.
    #[derive(Debug, PartialEq)]
    struct Dispatched {
        event_type: String,
        data: String,
        last_event_id: String,
    }

    /// The WHATWG "event stream interpretation" steps: lines end at CRLF,
    /// LF or CR; blank line dispatches; `:` starts a comment; one leading
    /// space is dropped from values; an `id` containing NUL is ignored;
    /// `retry` only with ASCII digits. Returns the events, the last retry and
    /// every field name seen (to catch injected fields).
    fn parse(stream: &str) -> (Vec<Dispatched>, Option<u64>, Vec<String>) {
        let (mut events, mut retry, mut fields) = (Vec::new(), None, Vec::new());
        let (mut data, mut event_type, mut last_id) = (String::new(), String::new(), String::new());
        let mut rest = stream;
        while let Some(end) = rest.find(['\r', '\n']) {
            let line = &rest[..end];
            rest = &rest[end
                + if rest[end..].starts_with("\r\n") {
                    2
                } else {
                    1
                }..];
            if line.is_empty() {
                if !data.is_empty() {
                    data.pop();
                    events.push(Dispatched {
                        event_type: if event_type.is_empty() {
                            "message".into()
                        } else {
                            event_type.clone()
                        },
                        data: std::mem::take(&mut data),
                        last_event_id: last_id.clone(),
                    });
                }
                event_type.clear();
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            fields.push(field.to_owned());
            match field {
                "event" => event_type = value.to_owned(),
                "data" => {
                    data.push_str(value);
                    data.push('\n');
                }
                "id" if !value.contains('\0') => last_id = value.to_owned(),
                "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                    retry = value.parse().ok()
                }
                _ => {}
            }
        }
        (events, retry, fields)
    }

    /// Text rich in line breaks, colons and spaces, and sometimes any text.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z :\r\n]{0,24}",
            "(\r\n|\r|\n|data: x|id: 1|event: e|:|\n\n| ){0,8}",
            any::<String>(),
        ]
    }

    fn event() -> impl Strategy<Value = (Option<String>, Option<String>, String, Option<String>)> {
        (
            proptest::option::of(text()),
            proptest::option::of(text()),
            text(),
            proptest::option::of(text()),
        )
    }

    proptest! {
        #[test]
        fn framed_events_round_trip(
            retry in proptest::option::of(any::<u64>()),
            events in proptest::collection::vec(event(), 0..6),
        ) {
            let mut out = Vec::new();
            if let Some(ms) = retry {
                encode_retry(&mut out, ms);
            }
            for (name, id, data, comment) in &events {
                if let Some(c) = comment {
                    encode_comment(&mut out, c);
                }
                encode_event(&mut out, &Event { event: name.as_deref(), id: id.as_deref(), data });
            }
            let stream = String::from_utf8(out).unwrap();
            let (got, got_retry, fields) = parse(&stream);
            prop_assert_eq!(got_retry, retry);
            prop_assert_eq!(got.len(), events.len(), "{:?}", stream);

            let one_line = |s: &str| s.replace(['\r', '\n'], "");
            let mut last_id = String::new();
            for ((name, id, data, _), got) in events.iter().zip(&got) {
                let browser_data = data.replace("\r\n", "\n").replace('\r', "\n");
                prop_assert_eq!(&got.data, &browser_data);
                let name = name.as_deref().map(one_line).unwrap_or_default();
                let name = if name.is_empty() { "message".to_owned() } else { name };
                prop_assert_eq!(&got.event_type, &name);
                if let Some(id) = id.as_deref().map(one_line) {
                    if !id.contains('\0') {
                        last_id = id;
                    }
                }
                prop_assert_eq!(&got.last_event_id, &last_id);
            }
            // Exactly the fields that were asked for, in encoding order.
            let mut want = Vec::new();
            if retry.is_some() {
                want.push("retry".to_owned());
            }
            for (name, id, data, _) in &events {
                if name.is_some() {
                    want.push("event".to_owned());
                }
                if id.is_some() {
                    want.push("id".to_owned());
                }
                let lines = data.replace("\r\n", "\n").replace('\r', "\n").split('\n').count();
                want.extend(std::iter::repeat_n("data".to_owned(), lines));
            }
            prop_assert_eq!(fields, want, "{:?}", stream);
        }

        #[test]
        fn comments_never_dispatch(text in text()) {
            let mut out = Vec::new();
            encode_comment(&mut out, &text);
            let (events, retry, fields) = parse(std::str::from_utf8(&out).unwrap());
            prop_assert!(events.is_empty() && retry.is_none() && fields.is_empty());
        }
    }
}
