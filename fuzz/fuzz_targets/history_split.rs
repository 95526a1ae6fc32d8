//! History ids: `split_live` never panics; when it finds an id, the payload
//! really starts with `{"_sse_id":"<that id>"` and the event is `{` plus the
//! remainder (minus one separating comma); otherwise the payload is passed
//! through untouched. Entry ids parse back from their display form.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sse_gateway::rules::history::{split_live, EntryId};
use std::borrow::Cow;

#[derive(Debug, Arbitrary)]
enum Input {
    Payload(Vec<u8>),
    /// `{"_sse_id":"<id>"` + `rest`, the shape the publish script builds.
    Published {
        id: String,
        rest: Vec<u8>,
    },
    Id {
        ms: u64,
        seq: u64,
        text: String,
    },
}

fn check(payload: &[u8]) {
    const PREFIX: &[u8] = b"{\"_sse_id\":\"";
    let (id, event) = split_live(payload);
    match id {
        Some(id) => {
            let after = payload.strip_prefix(PREFIX).expect("prefix");
            let end = after
                .iter()
                .position(|b| *b == b'"')
                .expect("closing quote");
            let text = std::str::from_utf8(&after[..end]).expect("id text");
            assert_eq!(EntryId::parse(text), Some(id));
            let rest = &after[end + 1..];
            let body = rest.strip_prefix(b",").unwrap_or(rest);
            let mut expected = b"{".to_vec();
            expected.extend_from_slice(body);
            assert_eq!(&*event, expected.as_slice());
        }
        None => {
            assert!(matches!(event, Cow::Borrowed(_)));
            assert_eq!(&*event, payload);
        }
    }
}

fuzz_target!(|input: Input| match input {
    Input::Payload(bytes) => check(&bytes),
    Input::Published { id, rest } => {
        let mut payload = format!("{{\"_sse_id\":\"{id}\"").into_bytes();
        payload.extend_from_slice(&rest);
        check(&payload);
    }
    Input::Id { ms, seq, text } => {
        let id = EntryId { ms, seq };
        assert_eq!(EntryId::parse(&id.to_string()), Some(id));
        if let Some(parsed) = EntryId::parse(&text) {
            assert_eq!(EntryId::parse(&parsed.to_string()), Some(parsed));
            let (ms, seq) = text.split_once('-').expect("dash");
            assert_eq!(
                (parsed.ms, parsed.seq),
                (ms.parse().unwrap(), seq.parse().unwrap())
            );
        }
    }
});
