//! The OpenAPI document (`openapi.json`, served at
//! `GET /api/v1/events/openapi.json`) against the code: every documented
//! operation is routed by `routes::route` to the route it documents, every
//! route the router serves is documented (a new `Route` variant does not
//! compile here until it names its operation, and a path the router answers
//! must match a documented path), the methods and `allow` lists, which
//! routes need a token and which exist only with `dev_mode`, the id charset,
//! every error `type` of `src/http/error.rs` and every SSE event name and comment
//! the outbox writes.
//!
//! No `mod common;`: it needs no gateway, so the suite runs it once.

use serde_json::Value;
use sse_gateway::config::{Config, Source};
use sse_gateway::http::gate::{self, Verdict};
use sse_gateway::http::routes::{self, Route, MAX_ID_LEN};
use sse_gateway::rules::outbox::{Close, Outbox};
use std::collections::{BTreeMap, BTreeSet};

const DOC: &str = sse_gateway::http::answer::OPENAPI_JSON;

/// The methods an OpenAPI path item can hold, as the router spells them.
const METHODS: [&str; 8] = [
    "GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE",
];

/// Which operations document a route. The match is exhaustive: a variant
/// added to `Route` does not compile here until it names its operations,
/// and [`every_route_is_documented`] then wants them in the document.
macro_rules! documented {
    ($($route:pat => [$($op:literal),*]),* $(,)?) => {
        fn operations_of(route: &Route) -> &'static [&'static str] {
            match route {
                $($route => &[$($op),*],)*
            }
        }
        const EVERY_OPERATION: &[&str] = &[$($($op,)*)*];
    };
}

documented! {
    Route::ExecutionStream(_) => ["execution_events_api_v1_events_executions__execution_id__get"],
    Route::PublishExecution(_) => ["publish_execution_event_api_v1_events_executions__execution_id__post"],
    Route::NotificationStream => ["notification_stream_api_v1_events_notifications_stream_get"],
    Route::PublishNotification(_) => ["publish_notification_api_v1_events_notifications__user_id__post"],
    Route::ReplayStatus(_) => [
        "stream_replay_status_api_v1_admin_events_replay__session_id__status_get",
        "stream_replay_status_api_v1_events_replay__session_id__status_get"
    ],
    Route::Health => ["liveness_api_v1_events_health_get"],
    Route::Ready => ["readiness_api_v1_events_health_ready_get"],
    Route::OpenApi => ["openapi_api_v1_events_openapi_json_get"],
    Route::DemoPage => ["demo_page_demo_get"],
    Route::DevToken => ["dev_token_api_v1_events_dev_token_post"],
    Route::DevExecution => ["dev_execution_api_v1_events_dev_executions_post"],
    // `OPTIONS` on every documented path (the document's CORS section).
    Route::Preflight(_) => [],
}

fn doc() -> Value {
    serde_json::from_str(DOC).expect("openapi.json is JSON")
}

/// The value a local `$ref` (`#/a/b`) points at.
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let pointer = r
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("not local: {r}"));
            let target = doc
                .pointer(pointer)
                .unwrap_or_else(|| panic!("$ref {r} points at nothing"));
            resolve(doc, target)
        }
        None => v,
    }
}

/// One documented operation.
struct Op<'a> {
    template: &'a str,
    method: String,
    id: &'a str,
    op: &'a Value,
    item: &'a Value,
}

fn operations(doc: &Value) -> Vec<Op<'_>> {
    let mut out = Vec::new();
    for (template, item) in doc["paths"].as_object().expect("paths") {
        for m in METHODS {
            if let Some(op) = item.get(m.to_ascii_lowercase()) {
                let id = op["operationId"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{m} {template} has no operationId"));
                out.push(Op {
                    template,
                    method: m.to_string(),
                    id,
                    op,
                    item,
                });
            }
        }
    }
    out
}

/// The path with each `{param}` replaced by the parameter's `example`.
fn concrete(doc: &Value, op: &Op<'_>) -> String {
    let mut path = op.template.to_string();
    let params = op.op["parameters"].as_array().cloned().unwrap_or_default();
    for p in &params {
        let p = resolve(doc, p);
        if p["in"] == "path" {
            let name = p["name"].as_str().unwrap();
            let example = p["example"]
                .as_str()
                .unwrap_or_else(|| panic!("path parameter {name} of {} needs an example", op.id));
            assert!(routes::valid_id(example), "{name} example {example:?}");
            path = path.replace(&format!("{{{name}}}"), example);
        }
    }
    assert!(
        !path.contains('{'),
        "{}: undocumented parameter in {path}",
        op.id
    );
    path
}

/// The methods a path item documents, as `allow` lists them.
fn documented_methods(item: &Value) -> BTreeSet<String> {
    METHODS
        .iter()
        .filter(|m| item.get(m.to_ascii_lowercase()).is_some())
        .map(|m| m.to_string())
        .collect()
}

fn method_set(allow: &str) -> BTreeSet<String> {
    allow.split(',').map(|m| m.trim().to_string()).collect()
}

#[test]
fn the_document_is_openapi_3_1_of_this_version() {
    let doc = doc();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(DOC.ends_with('\n'), "one final newline");
}

#[test]
fn every_ref_resolves() {
    fn walk(doc: &Value, v: &Value) {
        match v {
            Value::Object(map) => {
                if map.contains_key("$ref") {
                    resolve(doc, v);
                }
                map.values().for_each(|x| walk(doc, x));
            }
            Value::Array(items) => items.iter().for_each(|x| walk(doc, x)),
            _ => {}
        }
    }
    let doc = doc();
    walk(&doc, &doc);
}

#[test]
fn every_documented_operation_is_routed_to_the_route_it_documents() {
    let doc = doc();
    let mut ids = BTreeSet::new();
    for op in operations(&doc) {
        assert!(ids.insert(op.id), "operationId {} twice", op.id);
        let path = concrete(&doc, &op);
        for p in [path.clone(), format!("{path}/")] {
            let route = routes::route(&op.method, &p)
                .unwrap_or_else(|e| panic!("{} {p} ({}): {e:?}", op.method, op.id));
            assert!(
                operations_of(&route).contains(&op.id),
                "{} {p} is routed to {route:?}, documented as {}",
                op.method,
                op.id
            );
        }
    }
}

#[test]
fn every_route_is_documented() {
    let doc = doc();
    let documented: BTreeSet<&str> = operations(&doc).iter().map(|op| op.id).collect();
    let routed: BTreeSet<&str> = EVERY_OPERATION.iter().copied().collect();
    assert_eq!(
        routed, documented,
        "the operations the routes name (left) and those openapi.json has (right)"
    );
}

/// `OPTIONS` is a preflight naming exactly the documented methods, every
/// other method a 405 whose `allow` names them, and methods are
/// case-sensitive. A path that fits two templates has both's methods
/// (`/notifications/stream`: `GET` the caller's stream, `POST` a publish to
/// the user named `stream`).
#[test]
fn methods_and_allow_lists_are_the_documented_ones() {
    let doc = doc();
    let mut seen = BTreeSet::new();
    for op in operations(&doc) {
        if !seen.insert(op.template) {
            continue;
        }
        let path = concrete(&doc, &op);
        let methods: BTreeSet<String> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(t, _)| fits(t, &path))
            .flat_map(|(_, item)| documented_methods(item))
            .collect();
        for m in METHODS.iter().chain(&["CONNECT", "get", "Post", "options"]) {
            let got = routes::route(m, &path);
            if methods.contains(*m) {
                assert!(
                    matches!(&got, Ok(r) if !matches!(r, Route::Preflight(_))),
                    "{m} {path}: {got:?}"
                );
            } else if *m == "OPTIONS" {
                match got {
                    Ok(Route::Preflight(allow)) => {
                        assert_eq!(method_set(allow), methods, "OPTIONS {path}")
                    }
                    other => panic!("OPTIONS {path}: {other:?}"),
                }
            } else {
                let e = got.expect_err(&format!("{m} {path} is not documented"));
                assert_eq!(e.status, 405, "{m} {path}");
                let allow = e.headers.iter().find(|(k, _)| *k == "allow");
                let allow = allow.map(|(_, v)| v.as_str()).unwrap_or_default();
                assert_eq!(method_set(allow), methods, "{m} {path}: allow");
            }
        }
    }
}

/// Does `path` fit `template` (`{param}` is one segment)?
fn fits(template: &str, path: &str) -> bool {
    let path = path.strip_suffix('/').unwrap_or(path);
    let t: Vec<&str> = template.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| *t == *p || (t.starts_with('{') && !p.is_empty()))
}

/// The router's side: every path it answers as known (served, 400 for an
/// id, 405) is documented. The paths tried are built from every string
/// literal in `src/http/routes.rs`, so a route arm with a new word is tried.
#[test]
fn every_path_the_router_knows_is_documented() {
    let doc = doc();
    let templates: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let source = include_str!("../src/http/routes.rs");
    let source = source.split("#[cfg(test)]").next().unwrap();
    let literals: Vec<&str> = source.split('"').skip(1).step_by(2).collect();
    let prefixes: BTreeSet<&str> = literals
        .iter()
        .filter(|l| l.starts_with('/'))
        .copied()
        .collect();
    let mut words: BTreeSet<&str> = literals
        .iter()
        .flat_map(|l| l.split('/'))
        .filter(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_graphic()))
        .collect();
    words.insert("x");
    let words: Vec<&str> = words.into_iter().collect();
    assert!(words.contains(&"executions") && words.contains(&"openapi.json"));
    let mut tails = vec![String::new()];
    let mut last = vec![String::new()];
    for _ in 0..4 {
        let next: Vec<String> = last
            .iter()
            .flat_map(|t| words.iter().map(move |w| format!("{t}{w}/")))
            .collect();
        tails.extend(next.iter().cloned());
        last = next;
    }
    let mut tried = 0;
    for prefix in &prefixes {
        for tail in &tails {
            let path = if prefix.ends_with('/') {
                format!("{prefix}{}", tail.trim_end_matches('/'))
            } else if tail.is_empty() {
                prefix.to_string()
            } else {
                continue;
            };
            for m in ["GET", "POST", "OPTIONS"] {
                tried += 1;
                let known = match routes::route(m, &path) {
                    Ok(_) => true,
                    Err(e) => e.status != 404,
                };
                if known {
                    assert!(
                        templates.iter().any(|t| fits(t, &path)),
                        "{m} {path} is answered by the router ({:?}) and not in openapi.json",
                        routes::route(m, &path)
                    );
                }
            }
        }
    }
    assert!(tried > 10_000, "{tried}");
}

/// `x-dev-only` is exactly `routes::dev_only`, and the gate agrees: a
/// `dev_mode` path is a 404 without `dev_mode`.
#[test]
fn dev_only_paths_are_marked() {
    let doc = doc();
    for op in operations(&doc) {
        let path = concrete(&doc, &op);
        let marked = op.item.get("x-dev-only") == Some(&Value::Bool(true));
        assert_eq!(routes::dev_only(&path), marked, "{path}: x-dev-only");
        let off = admit(&op.method, &path, false);
        if marked {
            assert!(
                matches!(off, Verdict::Refuse(e) if e.status == 404),
                "{path}"
            );
            assert!(op.op["description"]
                .as_str()
                .unwrap()
                .starts_with("Development only"));
        } else {
            assert!(
                !matches!(off, Verdict::Refuse(e) if e.status == 404),
                "{path}"
            );
        }
    }
}

const SECRET: &str = "0123456789abcdef0123456789abcdef";

/// The gate's verdict on a request without credentials.
fn admit(method: &str, path: &str, dev_mode: bool) -> Verdict {
    let req = gate::Request {
        method,
        path,
        headers: &[],
        unix_now: 1_700_000_000,
    };
    let load = move || {
        Config::load(&Source(move |name: &str| match name {
            "jwt_secret" => Some(SECRET.to_string()),
            "dev_mode" => Some(dev_mode.to_string()),
            _ => None,
        }))
    };
    gate::admit(&req, load).verdict
}

/// `security: []` exactly where the gate serves a request without a
/// token; every other operation names both credentials and documents the
/// 401.
#[test]
fn security_is_what_the_gate_asks_for() {
    let doc = doc();
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(
        (&schemes["cookie"]["in"], &schemes["cookie"]["name"]),
        (&Value::from("cookie"), &Value::from("access_token"))
    );
    for op in operations(&doc) {
        let path = concrete(&doc, &op);
        let security = op.op["security"]
            .as_array()
            .unwrap_or_else(|| panic!("{}: state its security, [] for none", op.id));
        let responses = &op.op["responses"];
        match admit(&op.method, &path, true) {
            Verdict::Serve { who: None, .. } => {
                assert!(security.is_empty(), "{} needs no token", op.id);
                assert!(responses.get("401").is_none(), "{}", op.id);
            }
            Verdict::Refuse(e) if e.status == 401 => {
                let names: BTreeSet<&str> = security
                    .iter()
                    .flat_map(|s| s.as_object().unwrap().keys().map(String::as_str))
                    .collect();
                assert_eq!(names, BTreeSet::from(["bearer", "cookie"]), "{}", op.id);
                assert_eq!(
                    resolve(&doc, &responses["401"]),
                    &doc["components"]["responses"]["Unauthenticated"],
                    "{}",
                    op.id
                );
            }
            Verdict::Refuse(e) => panic!("{}: {e:?}", op.id),
            Verdict::Preflight | Verdict::Serve { .. } => panic!("{}", op.id),
        }
    }
}

/// Every operation documents the refusals every request can get (431, 500),
/// every one with an id in its path the 400, and every stream the 429 and
/// 503; streams are exactly the routes the machine streams, with
/// `Last-Event-ID`.
#[test]
fn streams_and_common_refusals_are_documented() {
    let doc = doc();
    for op in operations(&doc) {
        let path = concrete(&doc, &op);
        let route = routes::route(&op.method, &path).unwrap();
        let responses = &op.op["responses"];
        for status in ["431", "500"] {
            assert!(responses.get(status).is_some(), "{}: {status}", op.id);
        }
        if op.template.contains('{') {
            assert!(responses.get("400").is_some(), "{}: 400", op.id);
        }
        let ok = responses
            .as_object()
            .unwrap()
            .iter()
            .find(|(s, _)| s.starts_with('2'))
            .map(|(_, r)| resolve(&doc, r))
            .unwrap_or_else(|| panic!("{}: no 2xx", op.id));
        let streams = ok["content"].get("text/event-stream").is_some();
        let topic = sse_gateway::machine::Topic::of(&route);
        assert_eq!(streams, topic.is_some(), "{}: text/event-stream", op.id);
        if streams {
            for status in ["401", "429", "503"] {
                assert!(responses.get(status).is_some(), "{}: {status}", op.id);
            }
            let headers: Vec<&str> = op.op["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| resolve(&doc, p))
                .filter(|p| p["in"] == "header")
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            assert_eq!(headers, ["Last-Event-ID"], "{}", op.id);
            let head = &ok["headers"];
            assert_eq!(
                resolve(&doc, &head["Cache-Control"])["schema"]["const"],
                "no-cache"
            );
            assert_eq!(
                resolve(&doc, &head["X-Accel-Buffering"])["schema"]["const"],
                "no"
            );
        }
    }
}

/// `(status, type)` of every `ApiError` constructor in `src/http/error.rs`.
fn error_types() -> Vec<(u16, String)> {
    let source = include_str!("../src/http/error.rs");
    let source = source.split("#[cfg(test)]").next().unwrap();
    let mut out = Vec::new();
    for call in source.split("Self::new(").skip(1) {
        let mut parts = call.splitn(3, ',');
        let status = parts.next().unwrap().trim();
        let Ok(status) = status.parse::<u16>() else {
            continue; // the definition of `new` itself
        };
        let kind = parts.next().unwrap().trim().trim_matches('"').to_string();
        out.push((status, kind));
    }
    assert!(out.len() >= 14, "{out:?}");
    out
}

/// Every schema a response points at, with the response's status when it
/// is an operation's (`None` for the shared `components.responses`).
fn response_schemas(doc: &Value) -> Vec<(Option<String>, String)> {
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r.clone());
                }
                map.values().for_each(|x| refs(x, out));
            }
            Value::Array(items) => items.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    let mut add = |status: Option<&str>, response: &Value| {
        let mut found = Vec::new();
        refs(&resolve(doc, response)["content"], &mut found);
        for r in found {
            out.push((status.map(str::to_string), r));
        }
    };
    for op in operations(doc) {
        for (status, r) in op.op["responses"].as_object().unwrap() {
            add(Some(status), r);
        }
    }
    for r in doc["components"]["responses"].as_object().unwrap().values() {
        add(None, r);
    }
    out
}

#[test]
fn every_error_type_is_documented_with_its_status() {
    let doc = doc();
    let schemas = &doc["components"]["schemas"];
    let enumerated: BTreeSet<&str> = schemas["ErrorType"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let from_code = error_types();
    let named: BTreeSet<&str> = from_code
        .iter()
        .map(|(_, k)| k.as_str())
        .filter(|k| !k.is_empty())
        .collect();
    assert_eq!(
        named, enumerated,
        "src/http/error.rs (left), ErrorType (right)"
    );
    let used = response_schemas(&doc);
    for (status, kind) in &from_code {
        let name = if kind.is_empty() {
            "ReplaySessionNotFound"
        } else {
            kind.as_str()
        };
        let schema = &schemas[name];
        let reference = format!("#/components/schemas/{name}");
        let in_responses: Vec<&Option<String>> = used
            .iter()
            .filter(|(_, r)| *r == reference)
            .map(|(s, _)| s)
            .collect();
        assert!(!in_responses.is_empty(), "no response carries {name}");
        for s in in_responses.iter().copied().flatten() {
            assert_eq!(s, &status.to_string(), "{name} documented as a {s}");
        }
        if kind.is_empty() {
            assert!(schema["properties"].get("type").is_none());
        } else {
            assert_eq!(schema["properties"]["type"]["const"], *kind);
            let description = schema["description"].as_str().unwrap();
            assert!(description.starts_with(&format!("{status}:")), "{name}");
        }
    }
}

/// Each `Close` once; exhaustive, so a new way to end a stream is checked.
fn every_close() -> Vec<Close> {
    let all = [
        Close::Terminal,
        Close::ClientGone,
        Close::SlowClient,
        Close::Overrun,
        Close::RedisLost,
        Close::TokenExpired,
        Close::Lifetime,
        Close::Revoked,
    ];
    for c in all {
        match c {
            Close::Terminal
            | Close::ClientGone
            | Close::SlowClient
            | Close::Overrun
            | Close::RedisLost
            | Close::TokenExpired
            | Close::Lifetime
            | Close::Revoked => {}
        }
    }
    all.to_vec()
}

/// Every named event and comment the outbox writes (ends, resume notice,
/// heartbeat) is in every stream's `x-sse`, with the end it documents.
#[test]
fn every_sse_event_and_comment_is_documented() {
    use sse_gateway::rules::events::StreamKind;
    let doc = doc();
    let mut streams = 0;
    for op in operations(&doc) {
        let Some(media) =
            resolve(&doc, &op.op["responses"]["200"])["content"].get("text/event-stream")
        else {
            continue;
        };
        streams += 1;
        let sse = &media["x-sse"];
        assert!(sse["retry"].as_str().unwrap().contains("retry:"));
        let events: BTreeMap<&str, &Value> = sse["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["event"].as_str().unwrap(), e))
            .collect();
        let comments: BTreeMap<&str, &Value> = sse["comments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["comment"].as_str().unwrap(), c))
            .collect();
        for e in sse["events"].as_array().unwrap() {
            resolve(&doc, &e["data"]);
        }
        let mut written = Vec::new();
        for close in every_close() {
            let mut o = Outbox::new(StreamKind::Execution, None);
            o.end(close, 1000);
            written.push((
                Some(close),
                String::from_utf8(o.pending().to_vec()).unwrap(),
            ));
        }
        let mut o = Outbox::new(StreamKind::Execution, None);
        o.unrecovered();
        o.heartbeat();
        written.push((None, String::from_utf8(o.pending().to_vec()).unwrap()));
        for (close, text) in written {
            let end = close.map(|c| {
                if c.ends_cleanly() {
                    "finished"
                } else {
                    "aborted"
                }
            });
            for line in text.lines() {
                if let Some(name) = line.strip_prefix("event: ") {
                    let e = events
                        .get(name)
                        .unwrap_or_else(|| panic!("{}: event {name} undocumented", op.id));
                    if let Some(end) = end {
                        assert_eq!(e["end"], end, "{}: event {name}", op.id);
                    }
                } else if let Some(comment) = line.strip_prefix(": ") {
                    let c = comments
                        .get(comment)
                        .unwrap_or_else(|| panic!("{}: comment {comment:?} undocumented", op.id));
                    if let Some(end) = end {
                        assert_eq!(c["end"], end, "{}: comment {comment}", op.id);
                    }
                }
            }
        }
        // The unnamed events' data is the media type's schema.
        let unnamed: Vec<&Value> = sse["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["event"] == "message" || e["event"] == "notification")
            .map(|e| &e["data"])
            .collect();
        let schema = resolve(&doc, &media["schema"]);
        let members: BTreeSet<String> = match schema.get("anyOf") {
            Some(any) => any
                .as_array()
                .unwrap()
                .iter()
                .map(Value::to_string)
                .collect(),
            None => BTreeSet::from([media["schema"].to_string()]),
        };
        let unnamed: BTreeSet<String> = unnamed.into_iter().map(Value::to_string).collect();
        assert_eq!(members, unnamed, "{}: schema vs unnamed events", op.id);
    }
    assert_eq!(streams, 4, "execution, notification, replay and its alias");
}

/// The `Id` schema is `routes::valid_id`: the charset byte by byte, the
/// lengths and the "not only dots" rule.
#[test]
fn the_id_schema_is_the_routers_charset() {
    let doc = doc();
    let id = &doc["components"]["schemas"]["Id"];
    let pattern = id["pattern"].as_str().unwrap();
    let class = pattern
        .strip_prefix("^[")
        .and_then(|p| p.strip_suffix("]+$"))
        .unwrap_or_else(|| panic!("pattern {pattern} is not ^[...]+$"));
    let mut allowed = BTreeSet::new();
    let chars: Vec<char> = class.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if i + 2 < chars.len() && chars[i + 1] == '-' {
            allowed.extend(chars[i]..=chars[i + 2]);
            i += 3;
        } else {
            allowed.insert(chars[i]);
            i += 1;
        }
    }
    for c in (0u32..0x250).filter_map(char::from_u32) {
        let s = format!("a{c}");
        assert_eq!(
            routes::valid_id(&s),
            allowed.contains(&c),
            "{c:?} (U+{:04X})",
            c as u32
        );
    }
    assert_eq!(id["minLength"], 1);
    assert!(!routes::valid_id(""));
    assert_eq!(id["maxLength"], MAX_ID_LEN);
    assert!(routes::valid_id(&"a".repeat(MAX_ID_LEN)));
    assert!(!routes::valid_id(&"a".repeat(MAX_ID_LEN + 1)));
    assert_eq!(id["not"]["pattern"], "^\\.+$");
    for dots in [".", "..", "..."] {
        assert!(!routes::valid_id(dots));
    }
    assert!(routes::valid_id(".a.") && routes::valid_id("a.."));
    // Dev tokens' `sub` uses the same charset.
    let sub = &doc["components"]["schemas"]["DevTokenRequest"]["properties"]["sub"];
    assert_eq!(sub["pattern"], pattern);
}
