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

#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(borrow, default)]
    event_type: Option<Cow<'a, str>>,
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
    let probe: Probe<'_> = serde_json::from_str(json).map_err(|_| Skip::NotJsonObject)?;
    let terminal = match kind {
        StreamKind::Execution => {
            let t = probe.event_type.ok_or(Skip::MissingEventType)?;
            TERMINAL_EVENT_TYPES.contains(&t.as_ref())
        }
        StreamKind::Replay => {
            let s = probe.status.ok_or(Skip::MissingStatus)?;
            REPLAY_TERMINAL_STATUSES.contains(&s.as_ref())
        }
        StreamKind::Notification => false,
    };
    Ok(Accepted { json, terminal })
}

/// Checks a body posted to a publish route and returns the compact JSON to
/// publish, or what is wrong with it (a 400 detail). An execution event
/// needs a string `event_type`; its `execution_id` must match the path and
/// is filled in when absent. Field order is kept.
pub fn prepare_publish(
    kind: StreamKind,
    body: &[u8],
    execution_id: Option<&str>,
) -> Result<String, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("body is not valid JSON: {e}"))?;
    let serde_json::Value::Object(mut event) = value else {
        return Err("body must be a JSON object".into());
    };
    if event.contains_key(crate::history::ID_FIELD) {
        return Err(format!("field {} is reserved", crate::history::ID_FIELD));
    }
    if kind == StreamKind::Execution {
        match event.get("event_type") {
            Some(serde_json::Value::String(t)) if !t.is_empty() => {}
            _ => return Err("event_type must be a non-empty string".into()),
        }
        let id = execution_id.unwrap_or_default();
        match event.get("execution_id") {
            None => {
                event.insert("execution_id".into(), id.into());
            }
            Some(serde_json::Value::String(given)) if given == id => {}
            Some(_) => return Err(format!("execution_id must be \"{id}\", as in the path")),
        }
    }
    serde_json::to_string(&event).map_err(|e| e.to_string())
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
        let pretty = prepare_publish(StreamKind::Notification, b"{\n \"t\": \"x\"\n}", None);
        assert_eq!(pretty.unwrap(), r#"{"t":"x"}"#);
        for (body, why) in [
            (&b"nope"[..], "not valid JSON"),
            (b"[1]", "JSON object"),
            (b"{}", "event_type"),
            (br#"{"event_type":""}"#, "event_type"),
            (br#"{"event_type":3}"#, "event_type"),
            (br#"{"event_type":"a","execution_id":"e2"}"#, "execution_id"),
            (br#"{"event_type":"a","_sse_id":"1-1"}"#, "reserved"),
        ] {
            let err = prepare_publish(StreamKind::Execution, body, Some("e1")).unwrap_err();
            assert!(err.contains(why), "{err}");
        }
        assert!(prepare_publish(StreamKind::Notification, b"{}", None).is_ok());
    }

    #[test]
    fn absent_hash_is_no_record() {
        assert_eq!(ExecutionRecord::from_pairs(vec![]), None);
        assert!(record("timeout", None).is_finished());
        assert!(!record("queued", None).is_finished());
    }
}
