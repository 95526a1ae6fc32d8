//! SSE framing: whatever the event name, id, data, comment or retry, the
//! frame parses back (with a browser-style parser) to exactly the events
//! that were framed, with the data's line breaks normalised to LF, and no
//! field a producer did not ask for.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sse_gateway::rules::sse::{encode_comment, encode_event, encode_retry, Event};
use sse_gateway_fuzz::{normalize_newlines, parse_sse};

#[derive(Debug, Arbitrary)]
struct Ev {
    event: Option<String>,
    id: Option<String>,
    data: String,
    comment: Option<String>,
}

#[derive(Debug, Arbitrary)]
struct Input {
    retry: Option<u64>,
    events: Vec<Ev>,
}

fuzz_target!(|input: Input| {
    let mut out = Vec::new();
    if let Some(ms) = input.retry {
        encode_retry(&mut out, ms);
    }
    for ev in &input.events {
        if let Some(c) = &ev.comment {
            encode_comment(&mut out, c);
        }
        encode_event(
            &mut out,
            &Event {
                event: ev.event.as_deref(),
                id: ev.id.as_deref(),
                data: &ev.data,
            },
        );
    }
    let text = std::str::from_utf8(&out).expect("frames are UTF-8");
    let parsed = parse_sse(text);
    assert_eq!(parsed.retry, input.retry, "retry");
    assert_eq!(
        parsed.events.len(),
        input.events.len(),
        "one dispatch per event: {text:?}"
    );

    let single = |s: &str| s.replace(['\r', '\n'], "");
    let mut last_id = String::new();
    let mut expected_fields = Vec::new();
    if input.retry.is_some() {
        expected_fields.push("retry".to_owned());
    }
    for (ev, got) in input.events.iter().zip(&parsed.events) {
        assert_eq!(got.data, normalize_newlines(&ev.data), "data of {text:?}");
        let name = ev.event.as_deref().map(single).unwrap_or_default();
        let name = if name.is_empty() {
            "message".to_owned()
        } else {
            name
        };
        assert_eq!(got.event_type, name, "event name of {text:?}");
        if let Some(id) = ev.id.as_deref().map(single) {
            // The standard ignores an id containing NUL (the previous one stays).
            if !id.contains('\0') {
                last_id = id;
            }
        }
        assert_eq!(got.last_event_id, last_id, "id of {text:?}");

        // Exactly the fields asked for, in encoding order; comments add none.
        if ev.event.is_some() {
            expected_fields.push("event".to_owned());
        }
        if ev.id.is_some() {
            expected_fields.push("id".to_owned());
        }
        let lines = normalize_newlines(&ev.data).split('\n').count();
        expected_fields.extend(std::iter::repeat_n("data".to_owned(), lines));
    }
    assert_eq!(parsed.fields, expected_fields, "fields of {text:?}");
});
