//! Log lines as data: the core says what happened, a shell prints it.
//!
//! One JSON object per line (`{"event": ..., fields...}`); callers pass no
//! tokens or secrets. [`EVENTS`] is the schema: every event name and its
//! level (docs/OBSERVABILITY.md lists the fields; `telemetry` derives the
//! metrics from the same lines).

use serde_json::{Map, Value};

/// How much a deployment logs (`log_level`): a line is printed when its
/// event's level is at or above the configured one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    /// `error`, `warn`, `info` or `debug`.
    pub fn parse(text: &str) -> Option<Level> {
        match text.trim().to_ascii_lowercase().as_str() {
            "debug" => Some(Level::Debug),
            "info" => Some(Level::Info),
            "warn" => Some(Level::Warn),
            "error" => Some(Level::Error),
            _ => None,
        }
    }
}

/// Every log event and its level. Per-stream and per-request lines are
/// `info` or `debug`, so `log_level = "warn"` keeps only trouble.
pub const EVENTS: &[(&str, Level)] = &[
    ("config_error", Level::Error),
    ("redis_unavailable", Level::Error),
    ("redis_bad_record", Level::Error),
    ("auth_failed", Level::Warn),
    ("stream_limit", Level::Warn),
    ("instance_full", Level::Warn),
    ("instance_retired", Level::Warn),
    ("message_skipped", Level::Warn),
    ("messages_dropped", Level::Warn),
    ("catch_up", Level::Info),
    ("redis_lost", Level::Warn),
    ("redis_command_connection_lost", Level::Warn),
    ("redis_subscription_lost", Level::Warn),
    ("slot_renew_failed", Level::Warn),
    ("health_unexpected_reply", Level::Warn),
    ("result_not_filled", Level::Warn),
    ("user_revoked", Level::Info),
    ("stream_opened", Level::Info),
    ("stream_closed", Level::Info),
    ("last_event_id_ignored", Level::Info),
    ("resume_unrecovered", Level::Info),
    ("dev_token_minted", Level::Info),
    ("dev_execution_created", Level::Info),
    ("request", Level::Debug),
];

/// The level of event `name` (unknown names count as `info`).
pub fn level_of(name: &str) -> Level {
    EVENTS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(Level::Info, |(_, l)| *l)
}

/// Whether `line` (from [`line()`]) is printed at level `min`.
pub fn enabled(line: &str, min: Level) -> bool {
    level_of(event_of(line).unwrap_or("")) >= min
}

/// The event name of a line built by [`line()`] (it always comes first).
pub fn event_of(line: &str) -> Option<&str> {
    let rest = line.strip_prefix(r#"{"event":""#)?;
    rest.split('"').next()
}

/// One JSON log line, ready for stderr.
pub fn line(event: &str, fields: &[(&str, Value)]) -> String {
    let mut obj = Map::new();
    obj.insert("event".into(), event.into());
    for (k, v) in fields {
        obj.insert((*k).into(), v.clone());
    }
    Value::Object(obj).to_string()
}

/// The `request` line (debug): method, route template, status, and the
/// duration from `started` to `now` (monotonic ns) in milliseconds.
pub fn request(method: &str, route: &str, status: u16, started: u64, now: u64) -> String {
    let duration_ms = now.saturating_sub(started) / 1_000_000;
    line(
        "request",
        &[
            ("method", method.into()),
            ("route", route.into()),
            ("status", status.into()),
            ("duration_ms", duration_ms.into()),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_are_debug() {
        let l = request("GET", "/demo", 200, 5_000_000, 8_900_000);
        assert_eq!(
            l,
            r#"{"event":"request","method":"GET","route":"/demo","status":200,"duration_ms":3}"#
        );
        assert!(!enabled(&l, Level::Info));
    }

    #[test]
    fn event_first_then_fields() {
        let l = line(
            "stream_closed",
            &[("events", 3.into()), ("channel", "c".into())],
        );
        assert_eq!(l, r#"{"event":"stream_closed","events":3,"channel":"c"}"#);
        assert_eq!(event_of(&l), Some("stream_closed"));
    }

    #[test]
    fn warn_drops_per_stream_lines_and_keeps_trouble() {
        let opened = line("stream_opened", &[("kind", "execution".into())]);
        let lost = line("redis_lost", &[("detail", "x".into())]);
        let down = line("redis_unavailable", &[]);
        assert!(enabled(&opened, Level::Info));
        assert!(!enabled(&opened, Level::Warn));
        assert!(enabled(&lost, Level::Warn));
        assert!(!enabled(&lost, Level::Error));
        assert!(enabled(&down, Level::Error));
        assert!(!enabled(&line("request", &[]), Level::Info));
        assert!(enabled(&line("request", &[]), Level::Debug));
    }

    #[test]
    fn levels_parse() {
        assert_eq!(Level::parse(" WARN "), Some(Level::Warn));
        assert_eq!(Level::parse("debug"), Some(Level::Debug));
        assert_eq!(Level::parse("verbose"), None);
    }

    /// Every event the code logs is in [`EVENTS`] and in
    /// docs/OBSERVABILITY.md, and every listed event is still logged.
    #[test]
    fn every_logged_event_is_in_the_schema() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let docs = std::fs::read_to_string(root.join("docs/OBSERVABILITY.md")).unwrap();
        let mut logged = std::collections::BTreeSet::new();
        let mut dirs = vec![root.join("src")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                for call in ["log::line(", "log(", "line("] {
                    for part in text.split(call).skip(1) {
                        let part = part.trim_start();
                        if let Some(name) = part.strip_prefix('"').and_then(|p| p.split('"').next())
                        {
                            if name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                                logged.insert(name.to_string());
                            }
                        }
                    }
                }
            }
        }
        for name in &logged {
            assert!(
                EVENTS.iter().any(|(n, _)| n == name),
                "{name} is logged but not in log::EVENTS"
            );
        }
        for (name, _) in EVENTS {
            assert!(
                logged.contains(*name),
                "{name} is in EVENTS but never logged"
            );
            assert!(
                docs.contains(&format!("`{name}`")),
                "{name} is not documented in docs/OBSERVABILITY.md"
            );
        }
    }
}
