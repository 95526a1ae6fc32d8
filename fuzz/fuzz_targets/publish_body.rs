//! Publish bodies: `prepare_publish` never panics on any bytes; what it
//! accepts is the producer's text as sent (trimmed; for an execution event
//! at most `,"execution_id":"<id>"` appended before the closing brace), a
//! JSON object with unique top-level keys that the stream side accepts
//! (`classify`) with the same terminal verdict, and that survives the
//! publish script's `_sse_id` insertion and `split_live` unchanged.
//!
//! Input: the first byte picks the stream kind (even: execution, odd:
//! notification); the rest is the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sse_gateway::json::{object_fields, WHITESPACE};
use sse_gateway::rules::events::{classify, prepare_publish, StreamKind, TERMINAL_EVENT_TYPES};
use sse_gateway::rules::history::split_live;

const ID: &str = "e-1";

/// What the publish script (`history::PUBLISH_SCRIPT`) sends on the channel.
fn as_published(event: &str) -> String {
    let rest = &event[1..];
    let sep = if rest.trim_start_matches(WHITESPACE).starts_with('}') {
        ""
    } else {
        ","
    };
    format!("{{\"_sse_id\":\"1-1\"{sep}{rest}")
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let kind = if selector % 2 == 0 {
        StreamKind::Execution
    } else {
        StreamKind::Notification
    };
    let Ok(out) = prepare_publish(kind, body, Some(ID)) else {
        return;
    };
    let sent = std::str::from_utf8(body)
        .expect("accepted bodies are UTF-8")
        .trim_matches(WHITESPACE);
    let fields = object_fields(&out, &["event_type", "execution_id", "_sse_id"])
        .expect("published text is an object with unique keys");
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    assert!(
        field("_sse_id").is_none(),
        "reserved field published: {out}"
    );
    if out != sent {
        assert_eq!(kind, StreamKind::Execution, "notification changed: {out}");
        let open = &sent[..sent.len() - 1];
        assert_eq!(out, format!("{open},\"execution_id\":\"{ID}\"}}"));
    }
    let accepted = classify(kind, out.as_bytes()).expect("the stream side accepts it");
    if kind == StreamKind::Execution {
        assert_eq!(field("execution_id").and_then(|v| v.as_str()), Some(ID));
        let t = field("event_type")
            .and_then(|v| v.as_str())
            .expect("event_type");
        assert!(!t.is_empty());
        assert_eq!(accepted.terminal, TERMINAL_EVENT_TYPES.contains(&t));
    }
    let published = as_published(&out);
    let (id, event) = split_live(published.as_bytes());
    assert!(id.is_some(), "history id lost: {published}");
    assert_eq!(&*event, out.as_bytes(), "split_live changed the event");
});
