//! What the machine's scenario files share: a clock origin, a
//! configuration from a few settings, a user, an opening request, and the
//! events read back out of SSE text.

use super::*;
use crate::config::Source;
use crate::http::auth::Role;

/// One second of the monotonic clock, in ns.
pub(super) const S: u64 = 1_000_000_000;
/// The wall clock the scenarios start at (Unix seconds).
pub(super) const UNIX: i64 = 1_700_000_000;

/// The configuration with `vars` set and a valid `jwt_secret`.
pub(super) fn cfg(vars: &[(&str, &str)]) -> Config {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::load(&Source(move |name: &str| {
        if name == "jwt_secret" {
            return Some("s".repeat(32));
        }
        vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }))
    .unwrap()
}

/// Identity from the user store (`user:<id>` records), heartbeat 1 s.
pub(super) fn store_cfg() -> Config {
    cfg(&[("identity_key_prefix", "user:"), ("heartbeat_seconds", "1")])
}

/// A user whose token is good for an hour.
pub(super) fn user(id: &str) -> Identity {
    Identity {
        user_id: id.into(),
        role: Role::User,
        expires_at: UNIX + 3600,
    }
}

/// A request for `topic` at time 0, as stream `m1` of no instance.
pub(super) fn opening(topic: Topic, last_event_id: Option<&str>) -> Opening<'_> {
    Opening {
        topic,
        last_event_id,
        member: "m1".into(),
        instance: None,
        now: 0,
        unix_now: UNIX,
    }
}

/// The events of SSE text, in order: (`id:`, then `n`, "resume" for the
/// recovery notice, or else `event_type`).
pub(super) fn events(sse: &str) -> Vec<(Option<String>, String)> {
    sse.split("\n\n")
        .filter_map(|block| {
            let data = block.lines().find_map(|l| l.strip_prefix("data: "))?;
            let id = block.lines().find_map(|l| l.strip_prefix("id: "));
            let v: serde_json::Value = serde_json::from_str(data).unwrap();
            let what = match (v.get("n"), v.get("recovered")) {
                (Some(n), _) => n.to_string(),
                (None, Some(_)) => "resume".to_string(),
                (None, None) => v["event_type"].as_str().unwrap().to_string(),
            };
            Some((id.map(str::to_string), what))
        })
        .collect()
}
