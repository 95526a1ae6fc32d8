//! The JSON error answers of the wire contract.
//!
//! Every refusal the gateway makes goes through [`ApiError`], so status
//! codes, `type` names and bodies stay what the existing browser client
//! expects (`{"detail": "...", "type": "..."}`).

use serde::Serialize;

/// Seconds a client should wait before retrying after a 503 (Redis trouble).
pub const RETRY_AFTER_SECONDS: u32 = 2;

/// An HTTP error answer: status, machine-readable type, human detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status code.
    pub status: u16,
    /// The `type` field clients switch on.
    pub kind: &'static str,
    /// The `detail` field shown to people; never holds a token or secret.
    pub detail: String,
    /// Extra headers (`allow` on 405, `retry-after` on 503).
    pub headers: Vec<(&'static str, String)>,
}

#[derive(Serialize)]
struct Body<'a> {
    detail: &'a str,
    /// Left out when empty: FastAPI's own `HTTPException` answers (the
    /// replay route's 404) carry no `type`, and the gateway answers alike.
    #[serde(rename = "type", skip_serializing_if = "str::is_empty")]
    kind: &'a str,
}

impl ApiError {
    fn new(status: u16, kind: &'static str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            detail: detail.into(),
            headers: Vec::new(),
        }
    }

    /// 401: the request carried no token at all.
    pub fn authentication_required() -> Self {
        Self::new(401, "AuthenticationRequiredError", "Not authenticated")
    }

    /// 401: a token was sent but did not verify, has expired, or names a
    /// user the user store does not know or has deactivated (the reason
    /// stays in logs).
    pub fn invalid_credentials() -> Self {
        Self::new(401, "InvalidCredentialsError", "Invalid credentials")
    }

    /// 403: authenticated, but the stream belongs to someone else.
    pub fn forbidden() -> Self {
        Self::new(403, "ForbiddenError", "Access denied")
    }

    /// 403: an admin route and a caller who is not an admin. Like the
    /// Python service, the detail names the caller when it is known
    /// (`Admin access required for user 'alice'`).
    pub fn admin_access_required(username: Option<&str>) -> Self {
        let detail = match username {
            Some(name) => format!("Admin access required for user '{name}'"),
            None => "Admin access required".to_string(),
        };
        Self::new(403, "AdminAccessRequiredError", detail)
    }

    /// 404: no execution record under that id.
    pub fn execution_not_found(id: &str) -> Self {
        Self::new(
            404,
            "ExecutionNotFoundError",
            format!("Execution '{id}' not found"),
        )
    }

    /// 404: no replay session record under that id. The Python service
    /// raises a bare `HTTPException` here, so the body has no `type`.
    pub fn replay_session_not_found() -> Self {
        Self::new(404, "", "Replay session not found")
    }

    /// 404: no route at that path.
    pub fn not_found() -> Self {
        Self::new(404, "NotFoundError", "Not found")
    }

    /// 405: the path exists, the method does not; `allow` lists what does.
    pub fn method_not_allowed(allow: &str) -> Self {
        let mut e = Self::new(405, "MethodNotAllowedError", "Method not allowed");
        e.headers.push(("allow", allow.to_string()));
        e
    }

    /// 400: malformed input, with what is wrong.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(400, "ValidationError", detail)
    }

    /// 408: a request body did not arrive within `max_body_seconds`.
    pub fn request_timeout(seconds: u64) -> Self {
        Self::new(
            408,
            "RequestTimeoutError",
            format!("Request body not received within {seconds} s"),
        )
    }

    /// 413: a published event over `max_event_bytes`.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            413,
            "PayloadTooLargeError",
            format!("Event body exceeds {limit} bytes"),
        )
    }

    /// 429: the user already has `max_streams_per_user` streams open.
    pub fn too_many_streams(max: u64, retry_after_seconds: u32) -> Self {
        let mut e = Self::new(
            429,
            "TooManyStreamsError",
            format!("At most {max} streams may be open at once"),
        );
        e.headers
            .push(("retry-after", retry_after_seconds.to_string()));
        e
    }

    /// 431: request headers over `max_header_bytes`.
    pub fn headers_too_large(limit: usize) -> Self {
        Self::new(
            431,
            "RequestHeaderFieldsTooLargeError",
            format!("Request headers exceed {limit} bytes"),
        )
    }

    /// 503: Redis could not be reached or answered garbage.
    pub fn service_unavailable(retry_after_seconds: u32) -> Self {
        let mut e = Self::new(
            503,
            "ServiceUnavailableError",
            "Event service temporarily unavailable",
        );
        e.headers
            .push(("retry-after", retry_after_seconds.to_string()));
        e
    }

    /// 500: the deployment is misconfigured; the detail names the variable.
    pub fn configuration(detail: impl Into<String>) -> Self {
        Self::new(500, "ConfigurationError", detail)
    }

    /// The JSON body.
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&Body {
            detail: &self.detail,
            kind: self.kind,
        })
        .unwrap_or_else(|_| b"{}".to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_the_contract_shape() {
        let v: serde_json::Value = serde_json::from_slice(&ApiError::forbidden().body()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"detail": "Access denied", "type": "ForbiddenError"})
        );
    }

    /// The exact bytes the Python service sends, so its browser client and
    /// anything matching on them keep working.
    #[test]
    fn texts_are_the_python_services() {
        let body = |e: ApiError| (e.status, String::from_utf8(e.body()).unwrap());
        assert_eq!(
            body(ApiError::authentication_required()),
            (
                401,
                r#"{"detail":"Not authenticated","type":"AuthenticationRequiredError"}"#.into()
            )
        );
        assert_eq!(
            body(ApiError::invalid_credentials()),
            (
                401,
                r#"{"detail":"Invalid credentials","type":"InvalidCredentialsError"}"#.into()
            )
        );
        assert_eq!(
            body(ApiError::execution_not_found("e-1")),
            (
                404,
                r#"{"detail":"Execution 'e-1' not found","type":"ExecutionNotFoundError"}"#.into()
            )
        );
        assert_eq!(
            body(ApiError::replay_session_not_found()),
            (404, r#"{"detail":"Replay session not found"}"#.into())
        );
        assert_eq!(
            body(ApiError::admin_access_required(None)),
            (
                403,
                r#"{"detail":"Admin access required","type":"AdminAccessRequiredError"}"#.into()
            )
        );
        assert_eq!(
            body(ApiError::admin_access_required(Some("al\"ice"))),
            (
                403,
                r#"{"detail":"Admin access required for user 'al\"ice'","type":"AdminAccessRequiredError"}"#.into()
            )
        );
        assert_eq!(
            body(ApiError::forbidden()),
            (
                403,
                r#"{"detail":"Access denied","type":"ForbiddenError"}"#.into()
            )
        );
    }

    #[test]
    fn detail_is_json_escaped() {
        let e = ApiError::bad_request("bad \"id\"\n");
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(v["detail"], "bad \"id\"\n");
    }

    #[test]
    fn method_not_allowed_names_allowed_methods() {
        let e = ApiError::method_not_allowed("GET");
        assert_eq!(e.status, 405);
        assert_eq!(e.headers, vec![("allow", "GET".to_string())]);
    }
}
