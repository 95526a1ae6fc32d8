//! The replay status stream's first event, from the session record.
//!
//! The Python service answers `GET /api/v1/admin/events/replay/{id}/status`
//! by reading the replay session and sending its current status first (and
//! nothing more when that status is already terminal), then the updates
//! published on `sse:replay:{id}`. The gateway reads the record from the
//! hash `replay:{session_id}` that the API keeps (prefix
//! `replay_key_prefix`): every field a string, `errors` a JSON array.

use crate::rules::events::REPLAY_TERMINAL_STATUSES;
use serde::Serialize;

/// The first event of a replay status stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayStart {
    /// The session's current status as the Python service sends it.
    pub json: String,
    /// The status is `completed`, `failed` or `cancelled`: nothing follows.
    pub terminal: bool,
}

/// The Python service's replay status payload: these keys in this order.
#[derive(Serialize)]
struct Payload<'a> {
    session_id: &'a str,
    status: &'a str,
    total_events: u64,
    replayed_events: u64,
    failed_events: u64,
    skipped_events: u64,
    replay_id: &'a str,
    created_at: Option<&'a str>,
    started_at: Option<&'a str>,
    completed_at: Option<&'a str>,
    errors: serde_json::Value,
}

/// Builds the first event from the `HGETALL replay:{session_id}` pairs.
/// `Ok(None)`: no such session (404). `Err`: the record is unreadable (what
/// is wrong, for the log line; never the values). Absent counters are 0,
/// absent times `null`, absent `errors` `[]`.
pub fn first_event(
    session_id: &str,
    pairs: &[(String, String)],
) -> Result<Option<ReplayStart>, String> {
    if pairs.is_empty() {
        return Ok(None);
    }
    let field = |name: &str| {
        pairs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.trim().is_empty())
    };
    let status = field("status").ok_or("replay record has no status")?;
    let count = |name: &'static str| -> Result<u64, String> {
        field(name).map_or(Ok(0), |v| {
            v.trim()
                .parse()
                .map_err(|_| format!("replay record {name} is not a whole number"))
        })
    };
    let errors = field("errors").unwrap_or("[]").trim();
    let errors = serde_json::from_str::<serde_json::Value>(errors)
        .ok()
        .filter(serde_json::Value::is_array)
        .ok_or("replay record errors is not a JSON array")?;
    let payload = Payload {
        session_id: field("session_id").unwrap_or(session_id),
        status,
        total_events: count("total_events")?,
        replayed_events: count("replayed_events")?,
        failed_events: count("failed_events")?,
        skipped_events: count("skipped_events")?,
        replay_id: field("replay_id").unwrap_or_default(),
        created_at: field("created_at"),
        started_at: field("started_at"),
        completed_at: field("completed_at"),
        errors,
    };
    let json = serde_json::to_string(&payload).map_err(|e| e.to_string())?;
    Ok(Some(ReplayStart {
        json,
        terminal: REPLAY_TERMINAL_STATUSES.contains(&status),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::events::{classify, StreamKind};

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn full_record_in_the_python_services_shape() {
        let rec = pairs(&[
            ("status", "running"),
            ("session_id", "s-1"),
            ("total_events", "10"),
            ("replayed_events", "4"),
            ("failed_events", "1"),
            ("skipped_events", "0"),
            ("replay_id", "r-9"),
            ("created_at", "2026-01-01T00:00:00Z"),
            ("started_at", "2026-01-01T00:00:01Z"),
            (
                "errors",
                r#"[{"timestamp":"2026-01-01T00:00:02Z","error":"boom","event_id":"ev1"}]"#,
            ),
        ]);
        let start = first_event("s-1", &rec).unwrap().unwrap();
        assert_eq!(
            start.json,
            r#"{"session_id":"s-1","status":"running","total_events":10,"replayed_events":4,"failed_events":1,"skipped_events":0,"replay_id":"r-9","created_at":"2026-01-01T00:00:00Z","started_at":"2026-01-01T00:00:01Z","completed_at":null,"errors":[{"timestamp":"2026-01-01T00:00:02Z","error":"boom","event_id":"ev1"}]}"#
        );
        assert!(!start.terminal);
        // The stream's own rules accept it, with the same verdict.
        assert_eq!(
            classify(StreamKind::Replay, start.json.as_bytes()).map(|a| a.terminal),
            Ok(false)
        );
    }

    #[test]
    fn sparse_record_gets_defaults() {
        let start = first_event("s-2", &pairs(&[("status", "scheduled")]))
            .unwrap()
            .unwrap();
        assert_eq!(
            start.json,
            r#"{"session_id":"s-2","status":"scheduled","total_events":0,"replayed_events":0,"failed_events":0,"skipped_events":0,"replay_id":"","created_at":null,"started_at":null,"completed_at":null,"errors":[]}"#
        );
    }

    #[test]
    fn terminal_statuses_end_the_stream_at_once() {
        for (status, terminal) in [
            ("completed", true),
            ("failed", true),
            ("cancelled", true),
            ("running", false),
            ("paused", false),
            ("created", false),
            ("preview", false),
            ("Completed", false),
        ] {
            let start = first_event("s", &pairs(&[("status", status)]))
                .unwrap()
                .unwrap();
            assert_eq!(start.terminal, terminal, "{status}");
        }
    }

    #[test]
    fn missing_session_is_none() {
        assert_eq!(first_event("s", &[]), Ok(None));
    }

    #[test]
    fn unreadable_records_are_errors_naming_the_field() {
        for (list, field) in [
            (&[("total_events", "3")][..], "status"),
            (&[("status", " ")], "status"),
            (
                &[("status", "running"), ("total_events", "-1")],
                "total_events",
            ),
            (
                &[("status", "running"), ("failed_events", "x")],
                "failed_events",
            ),
            (&[("status", "running"), ("errors", "{}")], "errors"),
            (&[("status", "running"), ("errors", "[")], "errors"),
        ] {
            let err = first_event("s", &pairs(list)).unwrap_err();
            assert!(err.contains(field), "{list:?}: {err}");
        }
    }

    #[test]
    fn text_fields_are_json_escaped() {
        let start = first_event(
            "s",
            &pairs(&[("status", "running"), ("replay_id", "a\"b\n")]),
        )
        .unwrap()
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&start.json).unwrap();
        assert_eq!(v["replay_id"], "a\"b\n");
    }
}
