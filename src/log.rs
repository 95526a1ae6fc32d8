//! Log lines as data: the core says what happened, a shell prints it.
//!
//! One JSON object per line (`{"event": ..., fields...}`); callers pass no
//! tokens or secrets.

use serde_json::{Map, Value};

/// One JSON log line, ready for stderr.
pub fn line(event: &str, fields: &[(&str, Value)]) -> String {
    let mut obj = Map::new();
    obj.insert("event".into(), event.into());
    for (k, v) in fields {
        obj.insert((*k).into(), v.clone());
    }
    Value::Object(obj).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn event_first_then_fields() {
        let l = super::line(
            "stream_closed",
            &[("events", 3.into()), ("channel", "c".into())],
        );
        assert_eq!(l, r#"{"event":"stream_closed","events":3,"channel":"c"}"#);
    }
}
