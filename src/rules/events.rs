//! Event rules: which Redis messages are valid events, which end a stream,
//! and the control events built from the execution record.
//!
//! Valid payloads are passed through byte for byte (producers' extra fields
//! reach the browser unchanged); only what the rules need is parsed.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// Execution event types after which the stream ends.
pub const TERMINAL_EVENT_TYPES: [&str; 4] = [
    "result_stored",
    "result_failed",
    "execution_failed",
    "execution_timeout",
];

/// Record statuses that mean the execution will publish nothing more.
pub const FINISHED_STATUSES: [&str; 5] = ["completed", "failed", "timeout", "cancelled", "error"];

/// Replay-session statuses that end a replay status stream.
pub const REPLAY_TERMINAL_STATUSES: [&str; 3] = ["completed", "failed", "cancelled"];

/// The kind of stream a message arrives on; each has its own rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// `sse:exec:{id}`: objects with `event_type`; terminal types end it.
    Execution,
    /// `sse:notif:{user}`: any JSON object; never ends.
    Notification,
    /// `sse:replay:{session}`: objects with `status`; finished statuses end it.
    Replay,
}

impl StreamKind {
    /// The kind's name in log lines and metric attributes.
    pub fn name(self) -> &'static str {
        match self {
            StreamKind::Execution => "execution",
            StreamKind::Notification => "notification",
            StreamKind::Replay => "replay",
        }
    }
}

/// Why a message was skipped (for the log line; never fatal to the stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Not UTF-8 or not a JSON object.
    NotJsonObject,
    /// An execution event without a string `event_type`.
    MissingEventType,
    /// A replay status without a string `status`.
    MissingStatus,
}

impl Skip {
    /// A short reason for logs.
    pub fn reason(self) -> &'static str {
        match self {
            Skip::NotJsonObject => "not a JSON object",
            Skip::MissingEventType => "no string event_type",
            Skip::MissingStatus => "no string status",
        }
    }
}

/// A message that passed the rules: the text to send and whether it ends the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted<'a> {
    /// The payload as published.
    pub json: &'a str,
    /// True when the stream closes after sending it.
    pub terminal: bool,
}

/// The one field each kind's rule reads; every other field is skipped
/// unread, whatever its type (found by the `publish_body` fuzz target: one
/// probe for both fields skipped execution events with a numeric `status`
/// and notifications with a numeric `event_type`).
#[derive(Deserialize)]
struct EventType<'a> {
    #[serde(borrow, default)]
    event_type: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Status<'a> {
    #[serde(borrow, default)]
    status: Option<Cow<'a, str>>,
}

/// Applies the stream kind's rules to one published payload.
pub fn classify(kind: StreamKind, payload: &[u8]) -> Result<Accepted<'_>, Skip> {
    let json = std::str::from_utf8(payload).map_err(|_| Skip::NotJsonObject)?;
    // serde would also read a struct from a JSON array; only objects are events.
    if !json.trim_start().starts_with('{') {
        return Err(Skip::NotJsonObject);
    }
    let bad = |_| Skip::NotJsonObject;
    let terminal = match kind {
        StreamKind::Execution => {
            let probe: EventType<'_> = serde_json::from_str(json).map_err(bad)?;
            let t = probe.event_type.ok_or(Skip::MissingEventType)?;
            TERMINAL_EVENT_TYPES.contains(&t.as_ref())
        }
        StreamKind::Replay => {
            let probe: Status<'_> = serde_json::from_str(json).map_err(bad)?;
            let s = probe.status.ok_or(Skip::MissingStatus)?;
            REPLAY_TERMINAL_STATUSES.contains(&s.as_ref())
        }
        StreamKind::Notification => {
            serde_json::from_str::<serde::de::IgnoredAny>(json).map_err(bad)?;
            false
        }
    };
    Ok(Accepted { json, terminal })
}

/// Checks a body posted to a publish route and returns the text to publish,
/// or what is wrong with it (a 400 detail). The body must be one JSON object
/// (UTF-8) with unique top-level keys; an execution event needs a string
/// `event_type`, and its `execution_id` must match the path (when absent it
/// is appended). What is published is the producer's bytes as sent, without
/// the surrounding whitespace: never re-serialized, so big integers, `1.10`,
/// key order and formatting reach subscribers unchanged.
pub fn prepare_publish(
    kind: StreamKind,
    body: &[u8],
    execution_id: Option<&str>,
) -> Result<String, String> {
    use crate::json::{object_fields, ObjectError};
    let text = std::str::from_utf8(body).map_err(|_| "body is not valid UTF-8".to_string())?;
    let text = text.trim_matches(crate::json::WHITESPACE);
    let reserved = crate::rules::history::ID_FIELD;
    let fields =
        object_fields(text, &[reserved, "event_type", "execution_id"]).map_err(|e| match e {
            ObjectError::NotJson(e) => format!("body is not valid JSON: {e}"),
            ObjectError::NotObject => "body must be a JSON object".to_string(),
            ObjectError::Duplicate(key) => format!("body repeats the top-level key {key:?}"),
        })?;
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    if field(reserved).is_some() {
        return Err(format!("field {reserved} is reserved"));
    }
    if kind != StreamKind::Execution {
        return Ok(text.to_string());
    }
    match field("event_type") {
        Some(serde_json::Value::String(t)) if !t.is_empty() => {}
        _ => return Err("event_type must be a non-empty string".into()),
    }
    let id = execution_id.unwrap_or_default();
    match field("execution_id") {
        None => {
            // A valid object ends with `}`; an execution event has at least
            // `event_type`, so the new member follows a comma.
            let open = &text[..text.len() - 1];
            let id = serde_json::Value::from(id);
            Ok(format!("{open},\"execution_id\":{id}}}"))
        }
        Some(serde_json::Value::String(given)) if given == id => Ok(text.to_string()),
        Some(_) => Err(format!("execution_id must be \"{id}\", as in the path")),
    }
}

/// The execution record (hash `exec:{id}`) as far as the gateway reads it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecutionRecord {
    /// Owner; only they (and admins) may stream it.
    pub user_id: String,
    /// `queued`, `running`, ..., or a finished status.
    pub status: String,
    /// ISO 8601 time of the last change.
    pub updated_at: String,
    /// The stored result as JSON text, when there is one.
    pub result: Option<String>,
}

impl ExecutionRecord {
    /// Builds the record from HGETALL pairs; `None` when the hash is absent.
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Option<Self> {
        if pairs.is_empty() {
            return None;
        }
        let mut rec = ExecutionRecord::default();
        for (k, v) in pairs {
            match k.as_str() {
                "user_id" => rec.user_id = v,
                "status" => rec.status = v,
                "updated_at" => rec.updated_at = v,
                "result" if !v.is_empty() => rec.result = Some(v),
                _ => {}
            }
        }
        Some(rec)
    }

    /// True when no more events will be published for it.
    pub fn is_finished(&self) -> bool {
        FINISHED_STATUSES.contains(&self.status.as_str())
    }
}

/// An execution event as the Python service serializes it: these six keys
/// in this order, `null` where a field does not apply (its browser client
/// and any typed client generated from its schema read them by name).
#[derive(Serialize)]
struct SnapshotEvent<'a> {
    event_type: &'static str,
    execution_id: &'a str,
    timestamp: Option<&'a str>,
    event_id: Option<&'a str>,
    status: Option<&'a str>,
    result: Option<serde_json::Value>,
}

impl<'a> SnapshotEvent<'a> {
    fn new(event_type: &'static str, execution_id: &'a str, rec: &'a ExecutionRecord) -> Self {
        let present = |s: &'a str| (!s.is_empty()).then_some(s);
        SnapshotEvent {
            event_type,
            execution_id,
            timestamp: present(&rec.updated_at),
            event_id: None,
            status: present(&rec.status),
            result: None,
        }
    }
}

/// The `status` control event every execution stream starts with:
/// `{"event_type":"status","execution_id":…,"timestamp":<updated_at>,
/// "event_id":null,"status":…,"result":null}`.
pub fn status_event(execution_id: &str, rec: &ExecutionRecord) -> String {
    serde_json::to_string(&SnapshotEvent::new("status", execution_id, rec)).unwrap_or_default()
}

/// For a finished execution with a stored result: the `result_stored` event a
/// late subscriber would otherwise have missed, in the same six-key shape. A
/// result that is not JSON is sent as a JSON string rather than dropped.
pub fn stored_result_event(execution_id: &str, rec: &ExecutionRecord) -> Option<String> {
    if !rec.is_finished() {
        return None;
    }
    let raw = rec.result.as_deref()?;
    let result = serde_json::from_str(raw).unwrap_or_else(|_| serde_json::Value::from(raw));
    let mut event = SnapshotEvent::new("result_stored", execution_id, rec);
    event.result = Some(result);
    serde_json::to_string(&event).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn exec(payload: &str) -> Result<bool, Skip> {
        classify(StreamKind::Execution, payload.as_bytes()).map(|a| a.terminal)
    }

    #[test]
    fn terminal_types_end_execution_streams() {
        for t in TERMINAL_EVENT_TYPES {
            assert_eq!(exec(&format!(r#"{{"event_type":"{t}"}}"#)), Ok(true), "{t}");
        }
        for t in ["execution_requested", "pod_running", "execution_completed"] {
            assert_eq!(
                exec(&format!(r#"{{"event_type":"{t}"}}"#)),
                Ok(false),
                "{t}"
            );
        }
    }

    #[test]
    fn payload_passes_through_unchanged() {
        let p = "{ \"event_type\":\"pod_running\", \"x\": {\"deep\": [1,2]} }";
        assert_eq!(
            classify(StreamKind::Execution, p.as_bytes()).unwrap().json,
            p
        );
    }

    #[test]
    fn escaped_event_type_is_read_correctly() {
        assert_eq!(exec(r#"{"event_type":"result\u005fstored"}"#), Ok(true));
    }

    #[test]
    fn junk_is_skipped_with_a_reason() {
        assert_eq!(exec("hello"), Err(Skip::NotJsonObject));
        assert_eq!(exec(r#"["event_type"]"#), Err(Skip::NotJsonObject));
        assert_eq!(exec(r#"{"event_type":"x""#), Err(Skip::NotJsonObject));
        assert_eq!(exec("{}"), Err(Skip::MissingEventType));
        assert_eq!(exec(r#"{"event_type":5}"#), Err(Skip::NotJsonObject));
        assert_eq!(
            classify(StreamKind::Execution, &[b'{', 0xff, b'}']),
            Err(Skip::NotJsonObject)
        );
    }

    #[test]
    fn only_the_kinds_own_field_is_read() {
        assert_eq!(
            exec(r#"{"event_type":"pod_running","status":5}"#),
            Ok(false)
        );
        let n = classify(StreamKind::Notification, br#"{"event_type":5,"status":[]}"#);
        assert_eq!(n.map(|a| a.terminal), Ok(false));
        let r = classify(
            StreamKind::Replay,
            br#"{"event_type":1,"status":"completed"}"#,
        );
        assert_eq!(r.map(|a| a.terminal), Ok(true));
    }

    #[test]
    fn replay_and_notification_rules() {
        let r = |p: &str| classify(StreamKind::Replay, p.as_bytes()).map(|a| a.terminal);
        assert_eq!(r(r#"{"session_id":"s","status":"running"}"#), Ok(false));
        for s in REPLAY_TERMINAL_STATUSES {
            assert_eq!(r(&format!(r#"{{"status":"{s}"}}"#)), Ok(true));
        }
        assert_eq!(r(r#"{"session_id":"s"}"#), Err(Skip::MissingStatus));
        let n = |p: &str| classify(StreamKind::Notification, p.as_bytes()).map(|a| a.terminal);
        assert_eq!(n(r#"{"title":"hi"}"#), Ok(false));
        assert_eq!(n("42"), Err(Skip::NotJsonObject));
    }

    fn record(status: &str, result: Option<&str>) -> ExecutionRecord {
        let mut pairs = vec![
            ("user_id".to_string(), "u1".to_string()),
            ("status".to_string(), status.to_string()),
            ("updated_at".to_string(), "2026-01-01T00:00:00Z".to_string()),
        ];
        if let Some(r) = result {
            pairs.push(("result".to_string(), r.to_string()));
        }
        ExecutionRecord::from_pairs(pairs).unwrap()
    }

    #[test]
    fn status_event_has_the_python_services_keys_in_its_order() {
        assert_eq!(
            status_event("e1", &record("running", Some("{}"))),
            r#"{"event_type":"status","execution_id":"e1","timestamp":"2026-01-01T00:00:00Z","event_id":null,"status":"running","result":null}"#
        );
        let bare = ExecutionRecord::from_pairs(vec![("user_id".into(), "u1".into())]).unwrap();
        assert_eq!(
            status_event("e\"2", &bare),
            r#"{"event_type":"status","execution_id":"e\"2","timestamp":null,"event_id":null,"status":null,"result":null}"#
        );
    }

    #[test]
    fn stored_result_only_for_finished_records() {
        assert_eq!(
            stored_result_event("e1", &record("running", Some("{}"))),
            None
        );
        assert_eq!(stored_result_event("e1", &record("completed", None)), None);
        let ev =
            stored_result_event("e1", &record("completed", Some(r#"{"exit_code":0}"#))).unwrap();
        assert_eq!(
            ev,
            r#"{"event_type":"result_stored","execution_id":"e1","timestamp":"2026-01-01T00:00:00Z","event_id":null,"status":"completed","result":{"exit_code":0}}"#
        );
        let ev = stored_result_event("e1", &record("failed", Some("not json"))).unwrap();
        let v: Value = serde_json::from_str(&ev).unwrap();
        assert_eq!(v["result"], "not json");
    }

    #[test]
    fn publish_bodies_are_checked_and_completed() {
        let ok = prepare_publish(
            StreamKind::Execution,
            br#"{"event_type":"a","z":1,"b":2}"#,
            Some("e1"),
        );
        assert_eq!(
            ok.unwrap(),
            r#"{"event_type":"a","z":1,"b":2,"execution_id":"e1"}"#
        );
        let same = prepare_publish(
            StreamKind::Execution,
            br#"{"execution_id":"e1","event_type":"a"}"#,
            Some("e1"),
        );
        assert_eq!(same.unwrap(), r#"{"execution_id":"e1","event_type":"a"}"#);
        for (body, why) in [
            (&b"nope"[..], "not valid JSON"),
            (b"[1]", "JSON object"),
            (b"{}", "event_type"),
            (br#"{"event_type":""}"#, "event_type"),
            (br#"{"event_type":3}"#, "event_type"),
            (br#"{"event_type":"a","execution_id":"e2"}"#, "execution_id"),
            (br#"{"event_type":"a","_sse_id":"1-1"}"#, "reserved"),
            (b"{\"event_type\":\"a\xff\"}", "UTF-8"),
        ] {
            let err = prepare_publish(StreamKind::Execution, body, Some("e1")).unwrap_err();
            assert!(err.contains(why), "{err}");
        }
        assert!(prepare_publish(StreamKind::Notification, b"{}", None).is_ok());
    }

    #[test]
    fn published_bytes_are_the_producers() {
        let body = "\n {\n \"event_type\" : \"a\",\n \"n\": 123456789012345678901234567890, \"v\": 1.10, \"z\": 1e400\n}\n";
        let out = prepare_publish(StreamKind::Execution, body.as_bytes(), Some("e1")).unwrap();
        assert_eq!(
            out,
            "{\n \"event_type\" : \"a\",\n \"n\": 123456789012345678901234567890, \"v\": 1.10, \"z\": 1e400\n,\"execution_id\":\"e1\"}"
        );
        let notif = r#"{"b":1,"a":2.50}"#;
        assert_eq!(
            prepare_publish(StreamKind::Notification, notif.as_bytes(), None).unwrap(),
            notif
        );
    }

    #[test]
    fn duplicate_top_level_keys_are_refused() {
        for body in [
            r#"{"event_type":"pod_running","event_type":"result_stored"}"#,
            r#"{"event_type":"a","execution_id":"e1","execution_id":"e2"}"#,
            r#"{"event_type":"a","x":1,"x":1}"#,
            r#"{"event_type":"a","_sse_id":"1-1","_sse_id":"1-1"}"#,
        ] {
            let err =
                prepare_publish(StreamKind::Execution, body.as_bytes(), Some("e1")).unwrap_err();
            assert!(err.contains("repeats"), "{body}: {err}");
        }
        let err = prepare_publish(StreamKind::Notification, br#"{"t":1,"t":2}"#, None);
        assert!(err.unwrap_err().contains("\"t\""));
    }

    #[test]
    fn absent_hash_is_no_record() {
        assert_eq!(ExecutionRecord::from_pairs(vec![]), None);
        assert!(record("timeout", None).is_finished());
        assert!(!record("queued", None).is_finished());
    }
}
