//! CORS for browsers on other origins: an explicit allow-list, credentials
//! allowed (the `access_token` cookie), nothing allowed by default.

use crate::http::error::ApiError;

/// Methods and request headers a cross-origin browser may use.
const ALLOW_HEADERS: &str = "authorization, content-type, last-event-id";
/// How long a browser may cache a preflight answer, in seconds.
const MAX_AGE_SECONDS: &str = "600";

/// The configured allow-list of origins (`scheme://host[:port]`, exact match).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CorsPolicy {
    origins: Vec<String>,
}

impl CorsPolicy {
    /// Parses `cors_allowed_origins`: comma- or space-separated origins.
    /// `*` is refused: with credentials it would let any site read streams.
    pub fn parse(list: &str) -> Result<CorsPolicy, String> {
        let mut origins = Vec::new();
        for origin in list
            .split([',', ' '])
            .map(str::trim)
            .filter(|o| !o.is_empty())
        {
            if origin == "*" {
                return Err(
                    "must list origins explicitly (\"*\" is not allowed with credentials)".into(),
                );
            }
            let valid = (origin.starts_with("https://") || origin.starts_with("http://"))
                && !origin.ends_with('/')
                && origin.bytes().all(|b| b.is_ascii_graphic());
            if !valid {
                return Err(format!(
                    "has an invalid origin {origin:?} (want scheme://host[:port])"
                ));
            }
            origins.push(origin.to_ascii_lowercase());
        }
        Ok(CorsPolicy { origins })
    }

    fn allows(&self, origin: &str) -> bool {
        self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }

    /// Headers for an actual (non-preflight) response. Always `vary:
    /// origin` so caches keep answers for different origins apart.
    pub fn response_headers(&self, origin: Option<&str>) -> Vec<(&'static str, String)> {
        let mut h = vec![("vary", "origin".to_string())];
        if let Some(origin) = origin.filter(|o| self.allows(o)) {
            h.push(("access-control-allow-origin", origin.to_string()));
            h.push(("access-control-allow-credentials", "true".to_string()));
        }
        h
    }

    /// Answers a preflight (`OPTIONS` with `access-control-request-method`):
    /// the headers of a 204, or 403 when the origin or method is not allowed.
    pub fn preflight(
        &self,
        origin: Option<&str>,
        requested_method: Option<&str>,
        allow: &str,
    ) -> Result<Vec<(&'static str, String)>, ApiError> {
        let origin = origin
            .filter(|o| self.allows(o))
            .ok_or_else(ApiError::forbidden)?;
        let method_ok =
            requested_method.is_some_and(|m| allow.split(',').any(|a| a.trim() == m.trim()));
        if !method_ok {
            return Err(ApiError::method_not_allowed(allow));
        }
        Ok(vec![
            ("vary", "origin".to_string()),
            ("access-control-allow-origin", origin.to_string()),
            ("access-control-allow-credentials", "true".to_string()),
            ("access-control-allow-methods", allow.to_string()),
            ("access-control-allow-headers", ALLOW_HEADERS.to_string()),
            ("access-control-max-age", MAX_AGE_SECONDS.to_string()),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(h: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
        h.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn nothing_is_allowed_by_default() {
        let p = CorsPolicy::default();
        let h = p.response_headers(Some("https://app.example"));
        assert_eq!(header(&h, "access-control-allow-origin"), None);
        assert_eq!(header(&h, "vary"), Some("origin"));
        assert_eq!(
            p.preflight(Some("https://app.example"), Some("GET"), "GET")
                .unwrap_err()
                .status,
            403
        );
    }

    #[test]
    fn listed_origins_get_credentials() {
        let p = CorsPolicy::parse("https://app.example, http://localhost:5173").unwrap();
        let h = p.response_headers(Some("http://localhost:5173"));
        assert_eq!(
            header(&h, "access-control-allow-origin"),
            Some("http://localhost:5173")
        );
        assert_eq!(header(&h, "access-control-allow-credentials"), Some("true"));
        let h = p.response_headers(Some("https://evil.example"));
        assert_eq!(header(&h, "access-control-allow-origin"), None);
        assert_eq!(p.response_headers(None).len(), 1);
    }

    #[test]
    fn preflight_checks_origin_and_method() {
        let p = CorsPolicy::parse("https://app.example").unwrap();
        let h = p
            .preflight(Some("https://app.example"), Some("POST"), "GET, POST")
            .unwrap();
        assert_eq!(
            header(&h, "access-control-allow-methods"),
            Some("GET, POST")
        );
        assert!(header(&h, "access-control-allow-headers")
            .unwrap()
            .contains("last-event-id"));
        assert_eq!(
            p.preflight(Some("https://app.example"), Some("DELETE"), "GET, POST")
                .unwrap_err()
                .status,
            405
        );
        assert_eq!(
            p.preflight(None, Some("GET"), "GET").unwrap_err().status,
            403
        );
        // Method names are case-sensitive: `get` is not `GET`.
        assert_eq!(
            p.preflight(Some("https://app.example"), Some("get"), "GET")
                .unwrap_err()
                .status,
            405
        );
        assert_eq!(
            p.preflight(Some("https://app.example"), None, "GET")
                .unwrap_err()
                .status,
            405
        );
    }

    #[test]
    fn wildcards_and_junk_are_refused() {
        for bad in [
            "*",
            "app.example",
            "https://app.example/",
            "ftp://x",
            "https://a\u{7f}b",
        ] {
            assert!(CorsPolicy::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(CorsPolicy::parse("").unwrap(), CorsPolicy::default());
    }
}
