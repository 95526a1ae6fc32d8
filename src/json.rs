//! Strict reading of a JSON object's top level: a key given twice is
//! refused. `serde_json` keeps the last of duplicate keys (and a derived
//! struct refuses them), so two readers of the same bytes could disagree on
//! what `{"role":"user","role":"admin"}` means; the gateway accepts no such
//! token or published event.

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;
use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

/// Why a text is not a JSON object with unique top-level keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectError {
    /// Not JSON at all (serde_json's message, with line and column).
    NotJson(String),
    /// Valid JSON, but an array, string, number, ...
    NotObject,
    /// This top-level key appears more than once.
    Duplicate(String),
}

impl fmt::Display for ObjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObjectError::NotJson(e) => write!(f, "not valid JSON: {e}"),
            ObjectError::NotObject => f.write_str("not a JSON object"),
            ObjectError::Duplicate(key) => write!(f, "duplicate key {key:?}"),
        }
    }
}

/// JSON's own whitespace (RFC 8259 §2), nothing more.
pub const WHITESPACE: [char; 4] = [' ', '\t', '\n', '\r'];

/// Checks that `text` is one JSON object whose top-level keys are unique
/// (compared after unescaping, so `"a"` and `"\u0061"` are the same key),
/// and returns the values of the keys named in `pick`, in text order.
/// Values of other keys are skipped without being built.
pub fn object_fields(text: &str, pick: &[&str]) -> Result<Vec<(String, Value)>, ObjectError> {
    if !text.trim_start_matches(WHITESPACE).starts_with('{') {
        return Err(match serde_json::from_str::<IgnoredAny>(text) {
            Ok(_) => ObjectError::NotObject,
            Err(e) => ObjectError::NotJson(e.to_string()),
        });
    }
    let duplicate = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_str(text);
    let fields = Fields {
        pick,
        duplicate: &duplicate,
    }
    .deserialize(&mut de)
    .and_then(|fields| de.end().map(|()| fields));
    fields.map_err(|e| match duplicate.take() {
        Some(key) => ObjectError::Duplicate(key),
        None => ObjectError::NotJson(e.to_string()),
    })
}

struct Fields<'p> {
    pick: &'p [&'p str],
    duplicate: &'p RefCell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for Fields<'_> {
    type Value = Vec<(String, Value)>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Fields<'_> {
    type Value = Vec<(String, Value)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = HashSet::new();
        let mut picked = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if seen.contains(&key) {
                let e = de::Error::custom(format_args!("duplicate key {key:?}"));
                *self.duplicate.borrow_mut() = Some(key);
                return Err(e);
            }
            if self.pick.contains(&key.as_str()) {
                picked.push((key.clone(), map.next_value::<Value>()?));
            } else {
                map.next_value::<IgnoredAny>()?;
            }
            seen.insert(key);
        }
        Ok(picked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn picks_named_fields_in_text_order() {
        let got = object_fields(r#" {"b":[1,{"x":1}],"a":"s","c":1e400} "#, &["a", "b"]);
        assert_eq!(
            got,
            Ok(vec![
                ("b".into(), json!([1, {"x": 1}])),
                ("a".into(), json!("s"))
            ])
        );
        assert_eq!(object_fields("{}", &["a"]), Ok(vec![]));
    }

    #[test]
    fn duplicate_top_level_keys_are_refused_even_when_escaped() {
        for text in [
            r#"{"a":1,"a":2}"#,
            r#"{"a":1,"b":2,"a":1}"#,
            r#"{"event_type":"x","event\u005ftype":"y"}"#,
        ] {
            assert!(
                matches!(object_fields(text, &[]), Err(ObjectError::Duplicate(_))),
                "{text}"
            );
        }
        // Nested objects are the producer's business.
        assert!(object_fields(r#"{"a":{"x":1,"x":2}}"#, &[]).is_ok());
    }

    #[test]
    fn other_shapes_and_garbage() {
        assert_eq!(object_fields("[1]", &[]), Err(ObjectError::NotObject));
        assert_eq!(object_fields(" 42 ", &[]), Err(ObjectError::NotObject));
        for text in ["", "{", "{} x", "nope", "{\"a\":}", "{\"a\":1,}"] {
            assert!(
                matches!(object_fields(text, &[]), Err(ObjectError::NotJson(_))),
                "{text:?}"
            );
        }
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert_eq!(object_fields(&deep, &[]).ok(), None);
        // Skipped values are scanned without recursion, so depth costs no stack.
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(5000), "]".repeat(5000));
        assert_eq!(object_fields(&deep, &[]), Ok(vec![]));
    }
}
