//! `result_stored` carries the result: filling it from the execution record.
//!
//! The Python service's producers publish `result_stored` with `result:
//! null`; its SSE layer re-reads the stored execution and fills `result`
//! before sending, and its browser client shows `ev.result`. The gateway
//! does the same, but splices the record's result into the event's bytes
//! instead of re-serializing it: every other byte stays as the producer sent
//! it (field order, spacing, numbers, unknown fields).
//!
//! Which `result` counts is the one `JSON.parse` would read: the last
//! top-level `result` member (keys compared after unescaping). A `result`
//! nested deeper, or inside a string, is not it.

use serde::de::IgnoredAny;
use std::borrow::Cow;

/// The event type whose `result` is filled.
pub const RESULT_STORED: &str = "result_stored";

/// What [`fill_result`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fill {
    /// Not a `result_stored` event (or not a JSON object), or its `result`
    /// is already set: send it as it is.
    Unchanged,
    /// The event with `result` filled in from the record.
    Filled(Vec<u8>),
    /// The event wants a result but the record holds none (absent, empty or
    /// JSON `null`): send it as it is.
    NoResult,
    /// The record's `result` is not JSON: the event is sent as it is
    /// (`result` stays missing or null) and the caller logs it.
    BadRecord,
}

/// True when `event` is a `result_stored` whose `result` is missing or
/// null: the stream must read the record's `result` before sending it.
pub fn needs_result(event: &[u8]) -> bool {
    scan(event).is_some_and(|top| top.wants_result())
}

/// Fills the `result` of a `result_stored` event whose `result` is missing
/// or null with `record_result` (the execution record's `result` field, JSON
/// text). Works on the event as published or on the live form with a
/// leading `_sse_id`.
pub fn fill_result(event: &[u8], record_result: Option<&str>) -> Fill {
    let Some(top) = scan(event) else {
        return Fill::Unchanged;
    };
    if !top.wants_result() {
        return Fill::Unchanged;
    }
    let raw = record_result.map(str::trim).unwrap_or_default();
    if raw.is_empty() || raw == "null" {
        return Fill::NoResult;
    }
    if serde_json::from_str::<IgnoredAny>(raw).is_err() {
        return Fill::BadRecord;
    }
    let mut out = Vec::with_capacity(event.len() + raw.len() + 12);
    match top.result {
        // `"result": null` → `"result": <raw>`, spacing around it kept.
        Some((start, end)) => {
            out.extend_from_slice(&event[..start]);
            out.extend_from_slice(raw.as_bytes());
            out.extend_from_slice(&event[end..]);
        }
        // No `result`: appended after the last member (or inside `{}`), so
        // whatever spacing preceded the closing brace stays.
        None => {
            let (at, sep) = match top.last_value_end {
                Some(end) => (end, ","),
                None => (top.open + 1, ""),
            };
            out.extend_from_slice(&event[..at]);
            out.extend_from_slice(sep.as_bytes());
            out.extend_from_slice(b"\"result\":");
            out.extend_from_slice(raw.as_bytes());
            out.extend_from_slice(&event[at..]);
        }
    }
    Fill::Filled(out)
}

/// What the top level of an event object holds, as byte offsets.
struct TopLevel {
    /// Offset of the opening `{`.
    open: usize,
    /// The last top-level `event_type`, when it is a string.
    event_type: Option<String>,
    /// Span of the last top-level `result` value.
    result: Option<(usize, usize)>,
    /// Whether that value is `null`.
    result_null: bool,
    /// End of the last member's value (`None` for `{}`).
    last_value_end: Option<usize>,
}

impl TopLevel {
    fn wants_result(&self) -> bool {
        self.event_type.as_deref() == Some(RESULT_STORED)
            && (self.result.is_none() || self.result_null)
    }
}

/// Scans a JSON object's top level; `None` unless `bytes` is one valid JSON
/// object (validated by serde first, so the scan below can trust the syntax).
fn scan(bytes: &[u8]) -> Option<TopLevel> {
    serde_json::from_slice::<IgnoredAny>(bytes).ok()?;
    let mut p = Cursor { bytes, at: 0 };
    p.skip_ws();
    let open = p.at;
    p.expect(b'{')?;
    let mut top = TopLevel {
        open,
        event_type: None,
        result: None,
        result_null: false,
        last_value_end: None,
    };
    loop {
        p.skip_ws();
        if p.peek()? == b'}' {
            return Some(top);
        }
        let key_start = p.at;
        p.skip_string()?;
        let key = unescape(&bytes[key_start..p.at])?;
        p.skip_ws();
        p.expect(b':')?;
        p.skip_ws();
        let start = p.at;
        p.skip_value()?;
        let value = &bytes[start..p.at];
        match key.as_ref() {
            "event_type" => {
                top.event_type = value
                    .first()
                    .filter(|b| **b == b'"')
                    .and_then(|_| unescape(value))
                    .map(Cow::into_owned);
            }
            "result" => {
                top.result = Some((start, p.at));
                top.result_null = value == b"null";
            }
            _ => {}
        }
        top.last_value_end = Some(p.at);
        p.skip_ws();
        if p.peek()? == b',' {
            p.at += 1;
        }
    }
}

/// A JSON string literal (quotes included) as text.
fn unescape(literal: &[u8]) -> Option<Cow<'_, str>> {
    let inner = literal.get(1..literal.len().checked_sub(1)?)?;
    if inner.contains(&b'\\') {
        serde_json::from_slice::<String>(literal)
            .ok()
            .map(Cow::Owned)
    } else {
        std::str::from_utf8(inner).ok().map(Cow::Borrowed)
    }
}

/// A position in JSON text already known to be valid.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn expect(&mut self, b: u8) -> Option<()> {
        (self.peek()? == b).then(|| self.at += 1)
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// From an opening quote to just past its closing quote.
    fn skip_string(&mut self) -> Option<()> {
        self.expect(b'"')?;
        loop {
            match self.peek()? {
                b'\\' => self.at += 2,
                b'"' => {
                    self.at += 1;
                    return Some(());
                }
                _ => self.at += 1,
            }
        }
    }

    /// One value: string, object or array (nesting counted, strings
    /// skipped whole), or a scalar up to the next delimiter.
    fn skip_value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.skip_string(),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.peek()? {
                        b'"' => {
                            self.skip_string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => depth -= 1,
                        _ => {}
                    }
                    self.at += 1;
                    if depth == 0 {
                        return Some(());
                    }
                }
            }
            _ => {
                while !matches!(
                    self.peek(),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                ) {
                    self.at += 1;
                }
                Some(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const R: &str = r#"{"stdout":"hi\n","exit_code":0,"resource_usage":{"cpu":[1,2]}}"#;

    fn filled(event: &str, record: Option<&str>) -> String {
        match fill_result(event.as_bytes(), record) {
            Fill::Filled(bytes) => String::from_utf8(bytes).unwrap(),
            other => panic!("{event}: {other:?}"),
        }
    }

    #[test]
    fn null_result_is_replaced_in_place() {
        assert_eq!(
            filled(
                r#"{"event_type":"result_stored","execution_id":"e1","result":null,"z":1}"#,
                Some(R)
            ),
            format!(r#"{{"event_type":"result_stored","execution_id":"e1","result":{R},"z":1}}"#)
        );
    }

    #[test]
    fn absent_result_is_appended_after_the_last_member() {
        assert_eq!(
            filled(
                r#"{"event_type":"result_stored","execution_id":"e1"}"#,
                Some(R)
            ),
            format!(r#"{{"event_type":"result_stored","execution_id":"e1","result":{R}}}"#)
        );
    }

    #[test]
    fn present_results_are_left_alone() {
        for result in [r#"{"a":1}"#, "false", "0", "\"\"", "{}", "[]", "\"null\""] {
            let ev = format!(r#"{{"event_type":"result_stored","result":{result}}}"#);
            assert_eq!(fill_result(ev.as_bytes(), Some(R)), Fill::Unchanged, "{ev}");
            assert!(!needs_result(ev.as_bytes()));
        }
    }

    #[test]
    fn only_result_stored_is_filled() {
        for ev in [
            r#"{"event_type":"execution_completed","result":null}"#,
            r#"{"event_type":"result_failed"}"#,
            r#"{"event_type":"result_stored_x","result":null}"#,
            r#"{"result":null}"#,
            r#"{"event_type":["result_stored"],"result":null}"#,
            r#"{"meta":{"event_type":"result_stored"},"result":null}"#,
            "{}",
        ] {
            assert_eq!(fill_result(ev.as_bytes(), Some(R)), Fill::Unchanged, "{ev}");
            assert!(!needs_result(ev.as_bytes()), "{ev}");
        }
    }

    #[test]
    fn not_json_objects_are_unchanged() {
        for ev in [
            &b"not json"[..],
            b"[\"event_type\",\"result_stored\"]",
            b"{\"event_type\":\"result_stored\"",
            b"{\"event_type\":\"result_stored\"} x",
            b"\"result_stored\"",
            b"",
            &[b'{', 0xff, b'}'],
        ] {
            assert_eq!(fill_result(ev, Some(R)), Fill::Unchanged, "{ev:?}");
            assert!(!needs_result(ev));
        }
    }

    #[test]
    fn whitespace_everywhere_is_kept() {
        let ev = "\n { \"event_type\" :\t\"result_stored\" ,\r\n \"result\" :  null  ,\n \"x\" : [ 1 , 2 ] \n}\n";
        assert_eq!(
            filled(ev, Some(R)),
            format!("\n {{ \"event_type\" :\t\"result_stored\" ,\r\n \"result\" :  {R}  ,\n \"x\" : [ 1 , 2 ] \n}}\n")
        );
        let ev = "{ \"event_type\" : \"result_stored\"  \n}";
        assert_eq!(
            filled(ev, Some(R)),
            format!("{{ \"event_type\" : \"result_stored\",\"result\":{R}  \n}}")
        );
    }

    #[test]
    fn nested_or_quoted_results_are_not_the_top_level_one() {
        let ev = r#"{"event_type":"result_stored","meta":{"result":null,"deep":[{"result":null}]},"note":"\"result\":null}"}"#;
        let got = filled(ev, Some(R));
        assert_eq!(
            got,
            format!(
                r#"{{"event_type":"result_stored","meta":{{"result":null,"deep":[{{"result":null}}]}},"note":"\"result\":null}}","result":{R}}}"#
            )
        );
        let v: Value = serde_json::from_str(&got).unwrap();
        assert_eq!(v["meta"]["result"], Value::Null);
        assert_eq!(v["result"]["exit_code"], 0);
    }

    #[test]
    fn escaped_keys_and_values_count() {
        let ev = r#"{"event_\u0074ype":"result\u005fstored","re\u0073ult":null}"#;
        assert_eq!(
            filled(ev, Some("1")),
            r#"{"event_\u0074ype":"result\u005fstored","re\u0073ult":1}"#
        );
        // `\"` inside a key does not end it early.
        let ev = r#"{"a\"result":null,"event_type":"result_stored"}"#;
        assert_eq!(
            filled(ev, Some("1")),
            r#"{"a\"result":null,"event_type":"result_stored","result":1}"#
        );
    }

    #[test]
    fn the_last_duplicate_is_the_one_json_parse_reads() {
        // JSON.parse keeps the last `result`: filling an earlier null would
        // not change what the browser sees.
        let ev = r#"{"event_type":"result_stored","result":null,"result":{"a":1}}"#;
        assert_eq!(fill_result(ev.as_bytes(), Some(R)), Fill::Unchanged);
        let ev = r#"{"event_type":"result_stored","result":{"a":1},"result":null}"#;
        assert_eq!(
            filled(ev, Some("2")),
            r#"{"event_type":"result_stored","result":{"a":1},"result":2}"#
        );
    }

    #[test]
    fn record_without_a_result_leaves_the_event_as_sent() {
        let ev = br#"{"event_type":"result_stored","result":null}"#;
        assert!(needs_result(ev));
        for record in [None, Some(""), Some("  "), Some("null"), Some(" null\n")] {
            assert_eq!(fill_result(ev, record), Fill::NoResult, "{record:?}");
        }
    }

    #[test]
    fn non_json_record_result_is_reported_and_left_null() {
        let ev = br#"{"event_type":"result_stored","result":null}"#;
        for record in ["not json", "{\"a\":", "{} {}", "nul", "'x'"] {
            assert_eq!(fill_result(ev, Some(record)), Fill::BadRecord, "{record}");
        }
    }

    #[test]
    fn record_result_is_trimmed_and_any_json_value_works() {
        let ev = r#"{"event_type":"result_stored"}"#;
        assert_eq!(
            filled(ev, Some("\n  {\n \"a\": 1\n}\n")),
            "{\"event_type\":\"result_stored\",\"result\":{\n \"a\": 1\n}}"
        );
        assert_eq!(
            filled(ev, Some("\"text\"")),
            r#"{"event_type":"result_stored","result":"text"}"#
        );
    }

    #[test]
    fn the_live_form_with_sse_id_is_filled_too() {
        let live = br#"{"_sse_id":"5-1","event_type":"result_stored","result":null}"#;
        let Fill::Filled(out) = fill_result(live, Some("7")) else {
            panic!("not filled");
        };
        let (id, event) = crate::rules::history::split_live(&out);
        assert_eq!(id, crate::rules::history::EntryId::parse("5-1"));
        assert_eq!(&*event, br#"{"event_type":"result_stored","result":7}"#);
    }

    #[test]
    fn filled_events_parse_to_the_event_plus_the_result() {
        let ev = json!({"event_type":"result_stored","execution_id":"e1","timestamp":"t","event_id":"x","status":"completed","result":null});
        let got = filled(&ev.to_string(), Some(R));
        let mut want = ev.clone();
        want["result"] = serde_json::from_str(R).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&got).unwrap(), want);
    }
}

/// Property tests: for any object, filling changes exactly the `result`
/// member and leaves every other byte where the producer put it.
#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "\\PC{0,8}".prop_map(Value::from),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::btree_map("(result|event_type|\\PC{0,6})", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn fill_changes_only_the_result(
            fields in proptest::collection::btree_map("(x|\\PC{0,6})", value(), 0..5),
            has_result in any::<bool>(),
            pretty in any::<bool>(),
            record in value(),
        ) {
            let mut obj: Map<String, Value> = fields.into_iter().filter(|(k, _)| k != "result" && k != "event_type").collect();
            obj.insert("event_type".into(), "result_stored".into());
            if has_result {
                obj.insert("result".into(), Value::Null);
            }
            let obj = Value::Object(obj);
            let text = if pretty { serde_json::to_string_pretty(&obj) } else { serde_json::to_string(&obj) }.unwrap();
            let raw = record.to_string();
            prop_assert!(needs_result(text.as_bytes()));
            match fill_result(text.as_bytes(), Some(&raw)) {
                Fill::NoResult => prop_assert!(record.is_null()),
                Fill::Filled(out) => {
                    let got: Value = serde_json::from_slice(&out).unwrap();
                    let mut want = obj.clone();
                    want["result"] = record.clone();
                    prop_assert_eq!(&got, &want);
                    // Bytes before and after the splice are the producer's.
                    let out = String::from_utf8(out).unwrap();
                    let prefix = out.bytes().zip(text.bytes()).take_while(|(a, b)| a == b).count();
                    let suffix = out.bytes().rev().zip(text.bytes().rev()).take_while(|(a, b)| a == b).count();
                    prop_assert!(prefix + suffix + raw.len() + 10 >= out.len());
                    prop_assert!(out.len() <= text.len() + raw.len() + 10);
                    prop_assert!(!needs_result(out.as_bytes()));
                }
                other => prop_assert!(false, "{:?}", other),
            }
        }

        #[test]
        fn any_bytes_are_answered(bytes in proptest::collection::vec(any::<u8>(), 0..64), record in "\\PC{0,12}") {
            let _ = needs_result(&bytes);
            if let Fill::Filled(out) = fill_result(&bytes, Some(&record)) {
                prop_assert!(serde_json::from_slice::<Value>(&out).is_ok());
            }
        }
    }
}
