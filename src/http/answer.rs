//! Complete (non-stream) HTTP answers: status, headers, body and the log
//! lines they leave, built without I/O so the shell only sends them.

use crate::http::error::{ApiError, RETRY_AFTER_SECONDS};
use serde_json::json;

/// One answer, and the log lines to print once it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status code.
    pub status: u16,
    /// Headers of this answer (the shell adds the CORS headers every answer
    /// carries).
    pub headers: Vec<(&'static str, String)>,
    /// The whole body.
    pub body: Vec<u8>,
    /// Log lines (`log::line`) for the shell to print.
    pub logs: Vec<String>,
}

impl Answer {
    /// An answer with `body` of type `content_type`.
    pub fn new(status: u16, content_type: &str, body: Vec<u8>) -> Answer {
        Answer {
            status,
            headers: vec![("content-type", content_type.to_string())],
            body,
            logs: Vec::new(),
        }
    }

    /// A JSON body.
    pub fn json(status: u16, body: Vec<u8>) -> Answer {
        Answer::new(status, "application/json", body)
    }

    /// No body and no headers (a CORS preflight's `204`).
    pub fn empty(status: u16) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            logs: Vec::new(),
        }
    }

    /// A stream's `200` head; the body stays open (the machine's).
    pub fn stream_head() -> Answer {
        let mut head = Answer::empty(200);
        head.headers = STREAM_HEADERS.map(|(k, v)| (k, v.to_string())).to_vec();
        head
    }

    /// Adds a header.
    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Answer {
        self.headers.push((name, value.into()));
        self
    }

    /// Adds a log line.
    pub fn logged(mut self, line: String) -> Answer {
        self.logs.push(line);
        self
    }
}

impl From<&ApiError> for Answer {
    /// `{"detail", "type"}` JSON with the error's own headers.
    fn from(e: &ApiError) -> Answer {
        let mut answer = Answer::json(e.status, e.body());
        answer.headers.extend(e.headers.iter().cloned());
        answer
    }
}

impl From<Result<Answer, ApiError>> for Answer {
    fn from(result: Result<Answer, ApiError>) -> Answer {
        result.unwrap_or_else(|e| Answer::from(&e))
    }
}

/// The headers of a stream's `200` (the body stays open).
pub const STREAM_HEADERS: [(&str, &str); 3] = [
    ("content-type", "text/event-stream"),
    ("cache-control", "no-cache"),
    // nginx and alikes must pass events on, not buffer them.
    ("x-accel-buffering", "no"),
];

/// `GET /api/v1/events/health`: liveness from the instance alone (no Redis
/// I/O, no auth), so probes and the open internet can't make it dial Redis.
pub fn health() -> Answer {
    let body = json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")});
    Answer::json(200, body.to_string().into_bytes())
}

/// The OpenAPI 3.1 document of every route, the repository's
/// `openapi.json` as it is (`tests/openapi.rs` checks it against the router).
pub const OPENAPI_JSON: &str = include_str!("../../openapi.json");

/// `GET /api/v1/events/openapi.json`: the OpenAPI document, byte for byte
/// [`OPENAPI_JSON`] (no auth, no Redis I/O).
pub fn openapi() -> Answer {
    Answer::json(200, OPENAPI_JSON.as_bytes().to_vec())
}

/// `GET /api/v1/events/health/ready` from the reply to `PING`: 200 on
/// `PONG`, else 503 with `retry-after` (an unexpected reply is logged).
pub fn ready(pong: Result<String, ApiError>) -> Answer {
    let version = env!("CARGO_PKG_VERSION");
    let reply = match pong {
        Ok(pong) if pong == "PONG" => {
            let body = json!({"status": "ok", "version": version, "redis": "ok"});
            return Answer::json(200, body.to_string().into_bytes());
        }
        Ok(reply) => Some(reply),
        Err(_) => None,
    };
    let e = ApiError::service_unavailable(RETRY_AFTER_SECONDS);
    let body = json!({
        "status": "unavailable",
        "version": version,
        "redis": "unreachable",
        "detail": "Redis did not answer PING",
        "type": e.kind,
    });
    let mut answer = Answer::json(503, body.to_string().into_bytes())
        .with("retry-after", RETRY_AFTER_SECONDS.to_string());
    if let Some(reply) = reply {
        let line = crate::log::line("health_unexpected_reply", &[("reply", reply.into())]);
        answer = answer.logged(line);
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn body(a: &Answer) -> Value {
        serde_json::from_slice(&a.body).unwrap()
    }

    #[test]
    fn an_error_is_its_json_and_its_headers() {
        let a = Answer::from(&ApiError::service_unavailable(RETRY_AFTER_SECONDS));
        assert_eq!(a.status, 503);
        assert_eq!(a.headers[0], ("content-type", "application/json".into()));
        assert!(a.headers.iter().any(|(k, _)| *k == "retry-after"));
        assert_eq!(body(&a)["type"], "ServiceUnavailableError");
        let ok = Answer::from(Ok::<_, ApiError>(Answer::empty(204)));
        assert_eq!(ok, Answer::empty(204));
    }

    #[test]
    fn a_stream_head_is_not_buffered() {
        let head = Answer::stream_head();
        assert_eq!(head.status, 200);
        assert!(head
            .headers
            .contains(&("content-type", "text/event-stream".into())));
        assert!(head.headers.contains(&("x-accel-buffering", "no".into())));
    }

    #[test]
    fn health_needs_nothing() {
        let a = health();
        assert_eq!(a.status, 200);
        assert_eq!(body(&a)["status"], "ok");
        assert!(a.logs.is_empty());
    }

    #[test]
    fn the_openapi_document_is_the_files_bytes() {
        let a = openapi();
        assert_eq!(a.status, 200);
        assert_eq!(a.headers, vec![("content-type", "application/json".into())]);
        assert_eq!(a.body, OPENAPI_JSON.as_bytes());
        assert_eq!(body(&a)["openapi"], "3.1.0");
    }

    #[test]
    fn ready_only_on_pong() {
        let ok = ready(Ok("PONG".into()));
        assert_eq!((ok.status, body(&ok)["redis"].clone()), (200, "ok".into()));
        let down = ready(Err(ApiError::service_unavailable(RETRY_AFTER_SECONDS)));
        assert_eq!(down.status, 503);
        assert_eq!(body(&down)["redis"], "unreachable");
        let retry = ("retry-after", RETRY_AFTER_SECONDS.to_string());
        assert!(down.headers.contains(&retry));
        assert!(down.logs.is_empty(), "the failed command logged it");
        // Something other than PONG: unavailable, and the reply is logged.
        let odd = ready(Ok("LOADING".into()));
        assert_eq!(odd.status, 503);
        assert_eq!(odd.logs.len(), 1);
        assert!(odd.logs[0].contains("health_unexpected_reply") && odd.logs[0].contains("LOADING"));
    }
}
