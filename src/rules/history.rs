//! The per-channel event history that makes delivery gapless.
//!
//! Publishing through the gateway runs [`PUBLISH_SCRIPT`]: one atomic Lua
//! script that appends the event to a capped Redis Stream (`XADD ... MAXLEN
//! ~ N`), refreshes its expiry and `PUBLISH`es it with the new entry id as a
//! leading `_sse_id` field. A stream subscribes first, then reads the
//! history after the browser's `Last-Event-ID` (`XRANGE`), then goes live
//! and drops live messages whose id it has already sent. Because the script
//! is atomic and one connection orders its replies, every event is sent
//! exactly once and in order. Plain `PUBLISH` producers still work: their
//! events have no id and are always delivered.

use crate::redis::resp::{RespError, Value};
use std::borrow::Cow;
use std::fmt;

/// A Redis Stream entry id (`<ms>-<seq>`), ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryId {
    /// Milliseconds part.
    pub ms: u64,
    /// Sequence within the millisecond.
    pub seq: u64,
}

impl EntryId {
    /// Parses `<ms>-<seq>`; anything else (a browser's malformed
    /// `Last-Event-ID`, a producer's odd field) is `None`.
    pub fn parse(s: &str) -> Option<EntryId> {
        let (ms, seq) = s.split_once('-')?;
        let digits =
            |p: &str| !p.is_empty() && p.len() <= 20 && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(seq) {
            return None;
        }
        Some(EntryId {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// The field the publish script puts first in the live message.
pub const ID_FIELD: &str = "_sse_id";

const ID_PREFIX: &[u8] = b"{\"_sse_id\":\"";

/// Atomic append + publish. `KEYS[1]` history stream; `ARGV`: channel,
/// event (a compact JSON object), approximate max length, TTL seconds,
/// optionally the publish command (`SPUBLISH` on Redis Cluster; default
/// `PUBLISH`) and the gateway's `max_event_bytes`: an event longer than
/// that plus [`crate::config::ENTRY_OVERHEAD`] (512: room for the
/// `execution_id` the POST route fills in) is refused with an error
/// reply and stored nowhere, so every entry fits a history page. Returns
/// the entry id. Producers in other languages may `EVAL` it as is.
pub const PUBLISH_SCRIPT: &str = r#"if ARGV[6] and #ARGV[2] > tonumber(ARGV[6]) + 512 then return redis.error_reply('ERR event larger than max_event_bytes') end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'data', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
local rest = string.sub(ARGV[2], 2)
local sep = ','
if string.match(rest, '^%s*}') then sep = '' end
redis.call(ARGV[5] or 'PUBLISH', ARGV[1], '{"_sse_id":"' .. id .. '"' .. sep .. rest)
return id"#;

/// The history stream of `channel`: `prefix{channel}`. The hash tag puts
/// it in the channel's cluster slot, so the publish script touches one
/// shard and the subscription connection can read it.
pub fn key(prefix: &str, channel: &str) -> String {
    format!("{prefix}{{{channel}}}")
}

/// The `EVAL` arguments that publish `event` (compact JSON object text);
/// `sharded` publishes with `SPUBLISH` (Redis Cluster).
pub fn publish_command(
    history_key: &str,
    channel: &str,
    event: &str,
    limits: crate::config::HistoryLimits,
    sharded: bool,
    max_event_bytes: usize,
) -> Vec<Vec<u8>> {
    [
        "EVAL",
        PUBLISH_SCRIPT,
        "1",
        history_key,
        channel,
        event,
        &limits.max_len.to_string(),
        &limits.ttl_seconds.to_string(),
        if sharded { "SPUBLISH" } else { "PUBLISH" },
        &max_event_bytes.to_string(),
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

/// `XRANGE` of the entries after `after` (all when `None`), at most `count`.
pub fn range_command(history_key: &str, after: Option<EntryId>, count: u64) -> Vec<Vec<u8>> {
    let start = match after {
        Some(id) => format!("({id}"),
        None => "-".to_string(),
    };
    range(history_key, &start, count)
}

/// `XRANGE` from `at` itself on: a resuming stream's first page, whose
/// first entry, when it is `at`, proves the browser's `Last-Event-ID` real.
pub fn range_from_command(history_key: &str, at: EntryId, count: u64) -> Vec<Vec<u8>> {
    range(history_key, &at.to_string(), count)
}

fn range(history_key: &str, start: &str, count: u64) -> Vec<Vec<u8>> {
    [
        "XRANGE",
        history_key,
        start,
        "+",
        "COUNT",
        &count.to_string(),
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

/// A history entry's event, or `Err(length)` for one too long to read
/// (discarded unread, [`crate::redis::session::Session::limit_history_entries`]):
/// the replay skips it, in its place.
pub type EntryData = Result<Vec<u8>, usize>;

/// One history entry of a page.
pub type Entry = (EntryId, EntryData);

/// Reads an `XRANGE` reply into entries; those without a `data` field or
/// with a malformed id are left out.
pub fn parse_range(reply: Value) -> Result<Vec<Entry>, RespError> {
    let entries = match reply {
        Value::Array(items) => items,
        Value::Nil => return Ok(Vec::new()),
        Value::Error(e) => return Err(RespError::Server(e)),
        other => return Err(RespError::Unexpected(format!("XRANGE reply {other:?}"))),
    };
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let Value::Array(mut parts) = entry else {
            continue;
        };
        if parts.len() != 2 {
            continue;
        }
        let fields = parts.pop();
        let id = parts
            .pop()
            .and_then(|v| v.as_str().and_then(EntryId::parse));
        let (Some(id), Some(Value::Array(fields))) = (id, fields) else {
            continue;
        };
        let mut it = fields.into_iter();
        while let (Some(name), Some(value)) = (it.next(), it.next()) {
            if name.as_bytes() == Some(b"data") {
                match value {
                    Value::Bulk(data) => out.push((id, Ok(data))),
                    Value::Skipped(len) => out.push((id, Err(len))),
                    _ => {}
                }
                break;
            }
        }
    }
    Ok(out)
}

/// Splits a live message into its history id and the event as published.
/// Messages from plain `PUBLISH` producers come back unchanged with no id.
pub fn split_live(payload: &[u8]) -> (Option<EntryId>, Cow<'_, [u8]>) {
    let Some(rest) = payload.strip_prefix(ID_PREFIX) else {
        return (None, Cow::Borrowed(payload));
    };
    let Some(end) = rest.iter().position(|b| *b == b'"') else {
        return (None, Cow::Borrowed(payload));
    };
    let Some(id) = std::str::from_utf8(&rest[..end])
        .ok()
        .and_then(EntryId::parse)
    else {
        return (None, Cow::Borrowed(payload));
    };
    let after = &rest[end + 1..];
    let body = after.strip_prefix(b",").unwrap_or(after);
    let mut event = Vec::with_capacity(body.len() + 1);
    event.push(b'{');
    event.extend_from_slice(body);
    (Some(id), Cow::Owned(event))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_parse_and_order() {
        let a = EntryId::parse("1700000000000-0").unwrap();
        let b = EntryId::parse("1700000000000-1").unwrap();
        let c = EntryId::parse("1700000000001-0").unwrap();
        assert!(a < b && b < c);
        assert_eq!(a.to_string(), "1700000000000-0");
        for bad in [
            "",
            "1",
            "1-",
            "-1",
            "1-2-3",
            "a-1",
            "1-b",
            " 1-2",
            "1-2 ",
            &"9".repeat(21),
        ] {
            assert_eq!(EntryId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn live_message_id_is_split_off() {
        let (id, ev) = split_live(br#"{"_sse_id":"5-1","event_type":"x","n":1}"#);
        assert_eq!(id, EntryId::parse("5-1"));
        assert_eq!(&*ev, br#"{"event_type":"x","n":1}"#);
        let (id, ev) = split_live(br#"{"_sse_id":"5-2"}"#);
        assert_eq!(id, EntryId::parse("5-2"));
        assert_eq!(&*ev, b"{}");
    }

    #[test]
    fn plain_publish_messages_pass_unchanged() {
        for p in [
            &br#"{"event_type":"x"}"#[..],
            br#"{"_sse_id":"nope","a":1}"#,
            br#"{"_sse_id":"1-1"#,
            b"not json",
        ] {
            let (id, ev) = split_live(p);
            assert_eq!((id, &*ev), (None, p));
        }
    }

    #[test]
    fn script_output_round_trips_through_split_live() {
        // What the Lua script builds, re-done here for a few events.
        for event in [r#"{"event_type":"a","x":[1,2]}"#, "{}", "{ }"] {
            let rest = &event[1..];
            let sep = if rest.trim_start().starts_with('}') {
                ""
            } else {
                ","
            };
            let live = format!("{{\"_sse_id\":\"9-3\"{sep}{rest}");
            let (id, ev) = split_live(live.as_bytes());
            assert_eq!(id, EntryId::parse("9-3"));
            assert_eq!(std::str::from_utf8(&ev).unwrap(), event);
            serde_json::from_str::<serde_json::Value>(&live).unwrap();
        }
    }

    #[test]
    fn history_key_shares_the_channel_slot() {
        let k = key("history:", "sse:exec:e1");
        assert_eq!(k, "history:{sse:exec:e1}");
        assert_eq!(
            crate::redis::cluster::key_slot(k.as_bytes()),
            crate::redis::cluster::key_slot(b"sse:exec:e1")
        );
    }

    #[test]
    fn range_commands() {
        let all = range_command("history:c", None, 10);
        assert_eq!(all[2], b"-");
        let after = range_command("history:c", EntryId::parse("7-2"), 10);
        let from = range_from_command("history:c", EntryId { ms: 7, seq: 2 }, 10);
        assert_eq!(from[2], b"7-2");
        assert_eq!(after[2], b"(7-2");
        assert_eq!(after[5], b"10");
    }

    #[test]
    fn the_scripts_cap_allows_the_entry_overhead() {
        let allowance = format!("tonumber(ARGV[6]) + {}", crate::config::ENTRY_OVERHEAD);
        assert!(PUBLISH_SCRIPT.contains(&allowance));
        let limits = crate::config::HistoryLimits {
            max_len: 10,
            ttl_seconds: 60,
        };
        let args = publish_command("h", "c", "{}", limits, false, 4096);
        assert_eq!(args.len(), 10, "EVAL, script, 1, key, 6 ARGV");
        assert_eq!(args[9], b"4096");
    }

    #[test]
    fn range_replies_parse_and_skip_junk() {
        let entry = |id: &str, fields: Vec<Value>| {
            Value::Array(vec![
                Value::Bulk(id.as_bytes().to_vec()),
                Value::Array(fields),
            ])
        };
        let reply = Value::Array(vec![
            entry(
                "1-0",
                vec![
                    Value::Bulk(b"data".to_vec()),
                    Value::Bulk(b"{\"a\":1}".to_vec()),
                ],
            ),
            entry(
                "bad",
                vec![Value::Bulk(b"data".to_vec()), Value::Bulk(b"{}".to_vec())],
            ),
            entry(
                "2-0",
                vec![Value::Bulk(b"other".to_vec()), Value::Bulk(b"x".to_vec())],
            ),
            Value::Int(3),
            entry(
                "3-0",
                vec![
                    Value::Bulk(b"k".to_vec()),
                    Value::Bulk(b"v".to_vec()),
                    Value::Bulk(b"data".to_vec()),
                    Value::Bulk(b"{\"b\":2}".to_vec()),
                ],
            ),
        ]);
        let got = parse_range(reply).unwrap();
        assert_eq!(
            got,
            vec![
                (EntryId::parse("1-0").unwrap(), Ok(b"{\"a\":1}".to_vec())),
                (EntryId::parse("3-0").unwrap(), Ok(b"{\"b\":2}".to_vec())),
            ]
        );
        assert_eq!(parse_range(Value::Nil).unwrap(), vec![]);
        assert!(parse_range(Value::Error("ERR x".into())).is_err());
    }
}

/// Property tests: entry ids round-trip and order like (ms, seq); live
/// messages split back into the id and the event as published.
#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    /// What the Lua publish script builds from an entry id and an event.
    fn published(id: &str, event: &str) -> String {
        let rest = &event[1..];
        let sep = if rest.trim_start().starts_with('}') {
            ""
        } else {
            ","
        };
        format!("{{\"_sse_id\":\"{id}\"{sep}{rest}")
    }

    proptest! {
        #[test]
        fn entry_ids_round_trip_and_order(a in any::<(u64, u64)>(), b in any::<(u64, u64)>()) {
            let (x, y) = (EntryId { ms: a.0, seq: a.1 }, EntryId { ms: b.0, seq: b.1 });
            prop_assert_eq!(EntryId::parse(&x.to_string()), Some(x));
            prop_assert_eq!(x.cmp(&y), a.cmp(&b));
        }

        #[test]
        fn parsed_ids_are_canonical_numbers(s in "[0-9]{0,22}-?[0-9]{0,22}|\\PC{0,12}") {
            if let Some(id) = EntryId::parse(&s) {
                let (ms, seq) = s.split_once('-').unwrap();
                prop_assert_eq!((id.ms, id.seq), (ms.parse::<u64>().unwrap(), seq.parse::<u64>().unwrap()));
                prop_assert_eq!(EntryId::parse(&id.to_string()), Some(id));
            }
        }

        #[test]
        fn script_output_splits_back_to_the_event(
            id in any::<(u64, u64)>(),
            fields in proptest::collection::btree_map("\\PC{0,8}", any::<i64>(), 0..5),
        ) {
            let id = EntryId { ms: id.0, seq: id.1 };
            let event = serde_json::to_string(&fields).unwrap();
            let live = published(&id.to_string(), &event);
            // Still a JSON object for plain subscribers.
            prop_assert!(serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&live).is_ok());
            let (got_id, got_event) = split_live(live.as_bytes());
            prop_assert_eq!(got_id, Some(id));
            prop_assert_eq!(&*got_event, event.as_bytes());
        }

        #[test]
        fn split_live_keeps_or_strips_exactly_the_prefix(payload in proptest::collection::vec(any::<u8>(), 0..40), tail in "[-0-9\",{} ]{0,12}") {
            for payload in [payload.clone(), [ID_PREFIX, tail.as_bytes(), &payload].concat()] {
                let (id, event) = split_live(&payload);
                match id {
                    None => prop_assert_eq!(&*event, payload.as_slice()),
                    Some(id) => {
                        let after = &payload[ID_PREFIX.len()..];
                        let end = after.iter().position(|b| *b == b'"').unwrap();
                        prop_assert_eq!(EntryId::parse(std::str::from_utf8(&after[..end]).unwrap()), Some(id));
                        let rest = &after[end + 1..];
                        let body = rest.strip_prefix(b",").unwrap_or(rest);
                        let expected = [b"{".as_slice(), body].concat();
                        prop_assert_eq!(&*event, expected.as_slice());
                    }
                }
            }
        }
    }
}
