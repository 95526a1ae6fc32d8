//! Routing: method + path to a [`Route`], with ids checked before they can
//! reach a Redis key or channel name.

use crate::http::error::ApiError;

/// Where a request goes. Ids are validated ([`valid_id`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /api/v1/events/executions/{id}`: one execution's stream.
    ExecutionStream(String),
    /// `GET /api/v1/events/notifications/stream`: the caller's notifications.
    NotificationStream,
    /// `GET /api/v1/admin/events/replay/{session_id}/status` (the Python
    /// service's path) or its alias `/api/v1/events/replay/{session_id}/status`:
    /// admins only.
    ReplayStatus(String),
    /// `POST /api/v1/events/executions/{id}`: publish (service tokens).
    PublishExecution(String),
    /// `POST /api/v1/events/notifications/{user_id}`: publish (service
    /// tokens), for any user id, `stream` included: the method tells it from
    /// the notification stream.
    PublishNotification(String),
    /// `GET /api/v1/events/health`: liveness, no auth, no Redis I/O.
    Health,
    /// `GET /api/v1/events/health/ready`: readiness (Redis answers `PING`), no auth.
    Ready,
    /// `GET /api/v1/events/openapi.json`: this API's OpenAPI document
    /// (`openapi.json`, compiled in), no auth.
    OpenApi,
    /// `OPTIONS` on a known path: a CORS preflight; holds the path's methods.
    Preflight(&'static str),
    /// `GET /demo`: the demo page (only with `dev_mode`).
    DemoPage,
    /// `POST /api/v1/events/dev/token`: a local development token (only with `dev_mode`).
    DevToken,
    /// `POST /api/v1/events/dev/executions`: start a simulated execution (only with `dev_mode`).
    DevExecution,
}

/// The longest id accepted in a path segment.
pub const MAX_ID_LEN: usize = 128;

/// Ids become part of Redis keys and channel names, so only a safe charset
/// passes: ASCII letters, digits, `-`, `_`, `.`, `:` (no glob characters,
/// whitespace, CR/LF or control bytes), 1 to [`MAX_ID_LEN`] bytes, and not
/// only dots (`.` and `..` are path segments to every proxy on the way).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && !id.bytes().all(|b| b == b'.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

fn id(segment: &str, what: &str) -> Result<String, ApiError> {
    if valid_id(segment) {
        Ok(segment.to_string())
    } else {
        Err(ApiError::bad_request(format!(
            "invalid {what}: use 1 to {MAX_ID_LEN} characters from A-Z a-z 0-9 - _ . : (not only dots)"
        )))
    }
}

/// True for the paths that exist only with `dev_mode` (the demo page and
/// the dev helpers): without it they are 404 for every method, preflights
/// included. `path` excludes the query string.
pub fn dev_only(path: &str) -> bool {
    let path = path.strip_suffix('/').unwrap_or(path);
    matches!(
        path,
        "/demo" | "/api/v1/events/dev/token" | "/api/v1/events/dev/executions"
    )
}

/// Maps a request to a route; unknown paths are 404, known paths with the
/// wrong method 405 with `allow`. `path` excludes the query string. Methods
/// are case-sensitive (RFC 9110 §9.1): `get` is not `GET`.
pub fn route(method: &str, path: &str) -> Result<Route, ApiError> {
    let is = |m: &str| method == m;
    if path == "/demo" || path == "/demo/" {
        return match () {
            _ if is("GET") => Ok(Route::DemoPage),
            _ if is("OPTIONS") => Ok(Route::Preflight("GET")),
            _ => Err(ApiError::method_not_allowed("GET")),
        };
    }
    if let Some(rest) = path.strip_prefix("/api/v1/admin/events/") {
        return admin_route(method, rest);
    }
    let rest = path
        .strip_prefix("/api/v1/events/")
        .ok_or_else(ApiError::not_found)?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let segments: Vec<&str> = rest.split('/').collect();
    let (allow, matched) = match segments.as_slice() {
        ["dev", "token"] => ("POST", is("POST").then_some(Ok(Route::DevToken))),
        ["dev", "executions"] => ("POST", is("POST").then_some(Ok(Route::DevExecution))),
        ["health"] => ("GET", is("GET").then_some(Ok(Route::Health))),
        ["health", "ready"] => ("GET", is("GET").then_some(Ok(Route::Ready))),
        ["openapi.json"] => ("GET", is("GET").then_some(Ok(Route::OpenApi))),
        ["notifications", "stream"] if is("GET") => {
            ("GET, POST", Some(Ok(Route::NotificationStream)))
        }
        ["executions", x] => (
            "GET, POST",
            if is("GET") {
                Some(id(x, "execution id").map(Route::ExecutionStream))
            } else if is("POST") {
                Some(id(x, "execution id").map(Route::PublishExecution))
            } else {
                None
            },
        ),
        ["notifications", x] => (
            if *x == "stream" { "GET, POST" } else { "POST" },
            is("POST").then(|| id(x, "user id").map(Route::PublishNotification)),
        ),
        ["replay", x, "status"] => (
            "GET",
            is("GET").then(|| id(x, "session id").map(Route::ReplayStatus)),
        ),
        _ => return Err(ApiError::not_found()),
    };
    if is("OPTIONS") {
        return Ok(Route::Preflight(allow));
    }
    matched.unwrap_or_else(|| Err(ApiError::method_not_allowed(allow)))
}

/// Under `/api/v1/admin/events/`: only the replay status stream (the
/// Python service's admin path; its other admin routes are not the gateway's).
fn admin_route(method: &str, rest: &str) -> Result<Route, ApiError> {
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let segments: Vec<&str> = rest.split('/').collect();
    let ["replay", x, "status"] = segments.as_slice() else {
        return Err(ApiError::not_found());
    };
    match method {
        "GET" => id(x, "session id").map(Route::ReplayStatus),
        "OPTIONS" => Ok(Route::Preflight("GET")),
        _ => Err(ApiError::method_not_allowed("GET")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_stream_and_publish() {
        assert_eq!(
            route("GET", "/api/v1/events/executions/abc-123"),
            Ok(Route::ExecutionStream("abc-123".into()))
        );
        assert_eq!(
            route("POST", "/api/v1/events/executions/abc-123"),
            Ok(Route::PublishExecution("abc-123".into()))
        );
        assert_eq!(
            route("GET", "/api/v1/events/executions/abc/"),
            Ok(Route::ExecutionStream("abc".into()))
        );
    }

    #[test]
    fn other_routes() {
        assert_eq!(route("GET", "/api/v1/events/health"), Ok(Route::Health));
        assert_eq!(
            route("GET", "/api/v1/events/health/ready"),
            Ok(Route::Ready)
        );
        assert_eq!(
            route("GET", "/api/v1/events/notifications/stream"),
            Ok(Route::NotificationStream)
        );
        assert_eq!(
            route("POST", "/api/v1/events/notifications/u1"),
            Ok(Route::PublishNotification("u1".into()))
        );
        assert_eq!(
            route("GET", "/api/v1/events/replay/s-1/status"),
            Ok(Route::ReplayStatus("s-1".into()))
        );
        assert_eq!(
            route("GET", "/api/v1/events/openapi.json"),
            Ok(Route::OpenApi)
        );
        assert_eq!(
            route("POST", "/api/v1/events/openapi.json")
                .unwrap_err()
                .headers,
            vec![("allow", "GET".to_string())]
        );
    }

    #[test]
    fn replay_status_at_the_python_services_admin_path_and_its_alias() {
        for p in [
            "/api/v1/admin/events/replay/s-1/status",
            "/api/v1/admin/events/replay/s-1/status/",
            "/api/v1/events/replay/s-1/status",
        ] {
            assert_eq!(
                route("GET", p),
                Ok(Route::ReplayStatus("s-1".into())),
                "{p}"
            );
            assert_eq!(route("OPTIONS", p), Ok(Route::Preflight("GET")), "{p}");
        }
        let e = route("POST", "/api/v1/admin/events/replay/s-1/status").unwrap_err();
        assert_eq!(
            (e.status, e.headers),
            (405, vec![("allow", "GET".to_string())])
        );
        for p in [
            "/api/v1/admin/events/replay/s-1",
            "/api/v1/admin/events/browse",
            "/api/v1/admin/events/replay//status/x",
            "/api/v1/admin/events/",
            "/api/v1/admin/replay/s-1/status",
        ] {
            assert_eq!(route("GET", p).unwrap_err().status, 404, "{p}");
        }
        for bad in ["a*b", "..", "a%20b"] {
            let p = format!("/api/v1/admin/events/replay/{bad}/status");
            assert_eq!(route("GET", &p).unwrap_err().status, 400, "{bad}");
        }
    }

    #[test]
    fn demo_and_dev_routes() {
        assert_eq!(route("GET", "/demo"), Ok(Route::DemoPage));
        assert_eq!(route("POST", "/demo").unwrap_err().status, 405);
        assert_eq!(
            route("POST", "/api/v1/events/dev/token"),
            Ok(Route::DevToken)
        );
        assert_eq!(
            route("POST", "/api/v1/events/dev/executions"),
            Ok(Route::DevExecution)
        );
        assert_eq!(
            route("GET", "/api/v1/events/dev/token").unwrap_err().status,
            405
        );
    }

    #[test]
    fn a_user_named_stream_can_be_published_to() {
        assert_eq!(
            route("POST", "/api/v1/events/notifications/stream"),
            Ok(Route::PublishNotification("stream".into()))
        );
        assert_eq!(
            route("GET", "/api/v1/events/notifications/stream"),
            Ok(Route::NotificationStream)
        );
        let e = route("DELETE", "/api/v1/events/notifications/stream").unwrap_err();
        assert_eq!(e.headers, vec![("allow", "GET, POST".to_string())]);
        assert_eq!(
            route("OPTIONS", "/api/v1/events/notifications/stream"),
            Ok(Route::Preflight("GET, POST"))
        );
    }

    #[test]
    fn methods_are_case_sensitive() {
        for (m, p) in [
            ("get", "/api/v1/events/health"),
            ("Get", "/api/v1/events/executions/x"),
            ("post", "/api/v1/events/executions/x"),
            ("get", "/demo"),
            ("get", "/api/v1/admin/events/replay/s-1/status"),
            ("options", "/api/v1/admin/events/replay/s-1/status"),
        ] {
            assert_eq!(route(m, p).unwrap_err().status, 405, "{m} {p}");
        }
        assert_eq!(
            route("options", "/api/v1/events/health")
                .unwrap_err()
                .status,
            405
        );
    }

    #[test]
    fn dev_paths_are_known() {
        for p in [
            "/demo",
            "/demo/",
            "/api/v1/events/dev/token",
            "/api/v1/events/dev/executions/",
        ] {
            assert!(dev_only(p), "{p}");
        }
        for p in [
            "/api/v1/events/health",
            "/demo/x",
            "/api/v1/events/dev",
            "/",
        ] {
            assert!(!dev_only(p), "{p}");
        }
    }

    #[test]
    fn unknown_paths_are_404() {
        for p in [
            "/",
            "/api/v1/events",
            "/api/v1/events/executions",
            "/api/v1/events/executions/a/b",
            "/api/v2/events/health",
            "/api/v1/events/replay/x",
        ] {
            assert_eq!(route("GET", p).unwrap_err().status, 404, "{p}");
        }
    }

    #[test]
    fn wrong_method_is_405_with_allow() {
        let e = route("DELETE", "/api/v1/events/executions/x").unwrap_err();
        assert_eq!(e.status, 405);
        assert_eq!(e.headers, vec![("allow", "GET, POST".to_string())]);
        let e = route("POST", "/api/v1/events/health").unwrap_err();
        assert_eq!(e.headers, vec![("allow", "GET".to_string())]);
        let e = route("GET", "/api/v1/events/notifications/u1").unwrap_err();
        assert_eq!(e.headers, vec![("allow", "POST".to_string())]);
    }

    #[test]
    fn options_is_a_preflight_naming_the_methods() {
        assert_eq!(
            route("OPTIONS", "/api/v1/events/executions/x"),
            Ok(Route::Preflight("GET, POST"))
        );
        assert_eq!(
            route("OPTIONS", "/api/v1/events/health"),
            Ok(Route::Preflight("GET"))
        );
        assert_eq!(route("OPTIONS", "/nope").unwrap_err().status, 404);
    }

    #[test]
    fn hostile_ids_are_400() {
        let long = "a".repeat(MAX_ID_LEN + 1);
        for bad in [
            "a*b", "a?", "[x]", "a%0d", "a b", "é", &long, "a\r\nb", ".", "..",
        ] {
            let p = format!("/api/v1/events/executions/{bad}");
            assert_eq!(route("GET", &p).unwrap_err().status, 400, "{bad:?}");
        }
        let max = "a".repeat(MAX_ID_LEN);
        assert!(route("GET", &format!("/api/v1/events/executions/{max}")).is_ok());
    }

    #[test]
    fn empty_id_segment_is_400() {
        // "/executions/" strips to "executions" → 404; "/executions//" has an empty id.
        assert_eq!(
            route("GET", "/api/v1/events/executions//")
                .unwrap_err()
                .status,
            400
        );
    }
}

/// Property tests: every valid id round-trips through `route`; nothing that
/// reaches a route carries an id outside the safe charset.
#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn good_id() -> impl Strategy<Value = String> {
        "[A-Za-z0-9._:-]{1,128}".prop_filter("not only dots", |s| !s.bytes().all(|b| b == b'.'))
    }

    fn carried_id(r: &Route) -> Option<&str> {
        match r {
            Route::ExecutionStream(id)
            | Route::PublishExecution(id)
            | Route::ReplayStatus(id)
            | Route::PublishNotification(id) => Some(id),
            _ => None,
        }
    }

    proptest! {
        #[test]
        fn valid_ids_round_trip(id in good_id(), slash in any::<bool>()) {
            prop_assert!(valid_id(&id));
            let end = if slash { "/" } else { "" };
            let p = |path: String| format!("/api/v1/events/{path}{end}");
            prop_assert_eq!(route("GET", &p(format!("executions/{id}"))), Ok(Route::ExecutionStream(id.clone())));
            prop_assert_eq!(route("POST", &p(format!("executions/{id}"))), Ok(Route::PublishExecution(id.clone())));
            prop_assert_eq!(route("GET", &p(format!("replay/{id}/status"))), Ok(Route::ReplayStatus(id.clone())));
            prop_assert_eq!(route("GET", &format!("/api/v1/admin/events/replay/{id}/status{end}")), Ok(Route::ReplayStatus(id.clone())));
            prop_assert_eq!(route("POST", &p(format!("notifications/{id}"))), Ok(Route::PublishNotification(id.clone())));
        }

        #[test]
        fn unsafe_ids_are_400(id in "[^/]{1,130}".prop_filter("invalid", |s| !valid_id(s))) {
            let e = route("GET", &format!("/api/v1/events/executions/{id}")).unwrap_err();
            prop_assert_eq!(e.status, 400);
        }

        #[test]
        fn any_request_is_answered_and_ids_are_safe(method in "\\PC{0,8}|GET|POST|OPTIONS", path in "(/api/v1/events/|/api/v1/admin/events/)?(executions/|replay/|notifications/)?\\PC{0,40}") {
            match route(&method, &path) {
                Ok(r) => {
                    if let Some(id) = carried_id(&r) {
                        prop_assert!(valid_id(id), "{:?}", id);
                    }
                }
                Err(e) => prop_assert!(matches!(e.status, 400 | 404 | 405)),
            }
        }
    }
}
