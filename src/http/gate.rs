//! The request gate, one pure function: route → config → CORS preflight →
//! header budget → authentication, before anything touches Redis.
//!
//! A shell passes plain data (method, path, headers, wall clock, a config
//! loader) and gets back what to answer or what to serve, with the CORS
//! headers every answer carries and the log lines to print.

use crate::config::{Config, ConfigError};
use crate::http::answer::Answer;
use crate::http::auth::{token_from_headers, AuthError, Identity, Verifier};
use crate::http::error::ApiError;
use crate::http::routes::{self, Route};
use crate::log;
use crate::rules::limits;
use std::sync::Arc;

/// One request as the gate sees it.
pub struct Request<'a> {
    pub method: &'a str,
    /// The path without the query.
    pub path: &'a str,
    /// Every header as received (names in any case).
    pub headers: &'a [(&'a str, &'a [u8])],
    /// Wall-clock unix seconds (token `exp`/`nbf`).
    pub unix_now: i64,
}

/// What to do with the request.
pub enum Verdict {
    /// Answer with this error.
    Refuse(ApiError),
    /// A CORS preflight that passed: `204` with [`Decision::headers`].
    Preflight,
    /// Serve `route`. `who` is the verified caller (`None` for the routes
    /// that need no token: health, the OpenAPI document, the demo page, dev
    /// tokens).
    Serve {
        route: Route,
        cfg: Arc<Config>,
        who: Option<Identity>,
        last_event_id: Option<String>,
    },
}

/// What a request that passed the gate serves: the route, its config, the
/// verified caller and the browser's `Last-Event-ID`.
pub type Serve = (Route, Arc<Config>, Option<Identity>, Option<String>);

impl Verdict {
    /// The request to serve, or the answer that ends it at the gate (the
    /// refusal, or the passed preflight's `204`): one rule for every shell.
    pub fn into_serve(self) -> Result<Serve, Answer> {
        match self {
            Verdict::Refuse(e) => Err(Answer::from(&e)),
            Verdict::Preflight => Err(Answer::empty(204)),
            Verdict::Serve {
                route,
                cfg,
                who,
                last_event_id,
            } => Ok((route, cfg, who, last_event_id)),
        }
    }
}

/// The verdict with the headers every answer carries and the log lines.
pub struct Decision {
    pub verdict: Verdict,
    /// CORS headers for whatever answer is sent.
    pub headers: Vec<(&'static str, String)>,
    pub logs: Vec<String>,
    /// The configured `log_level` (`info` until the config is loaded).
    pub log_level: log::Level,
}

/// Runs the gate.
/// `load` gives the configuration (a p3 instance hands the one it keeps
/// for its requests).
pub fn admit<C: Into<Arc<Config>>>(
    req: &Request<'_>,
    load: impl FnOnce() -> Result<C, ConfigError>,
) -> Decision {
    let mut d = Decision {
        verdict: Verdict::Preflight,
        headers: Vec::new(),
        logs: Vec::new(),
        log_level: log::Level::Info,
    };
    d.verdict = match gate(req, load, &mut d) {
        Ok(v) => v,
        Err(e) => Verdict::Refuse(e),
    };
    d
}

fn gate<C: Into<Arc<Config>>>(
    req: &Request<'_>,
    load: impl FnOnce() -> Result<C, ConfigError>,
    d: &mut Decision,
) -> Result<Verdict, ApiError> {
    let route = routes::route(req.method, req.path)?;
    let cfg: Arc<Config> = load().map(Into::into).map_err(|e| {
        d.logs.push(log::line(
            "config_error",
            &[("detail", e.to_string().into())],
        ));
        ApiError::configuration(e.to_string())
    })?;
    d.log_level = cfg.log_level;
    if routes::dev_only(req.path) && !cfg.dev_mode {
        return Err(ApiError::not_found());
    }
    let origin = header(req, "origin");
    d.headers = cfg.cors.response_headers(origin);
    // Before preflights too: an OPTIONS is no way around the budget.
    let size = limits::header_bytes(req.headers.iter().copied());
    if size > cfg.limits.max_header_bytes {
        return Err(ApiError::headers_too_large(cfg.limits.max_header_bytes));
    }
    if let Route::Preflight(allow) = route {
        let requested = header(req, "access-control-request-method");
        d.headers = cfg.cors.preflight(origin, requested, allow)?;
        return Ok(Verdict::Preflight);
    }
    let public = matches!(
        route,
        Route::Health | Route::Ready | Route::OpenApi | Route::DemoPage | Route::DevToken
    );
    let who = if public {
        None
    } else {
        Some(authenticate(req, &cfg, &mut d.logs)?)
    };
    let last_event_id = header(req, "last-event-id").map(str::to_string);
    Ok(Verdict::Serve {
        route,
        cfg,
        who,
        last_event_id,
    })
}

/// The first value of header `name` that is UTF-8 text.
fn header<'a>(req: &Request<'a>, name: &str) -> Option<&'a str> {
    headers(req, name).next()
}

fn headers<'a, 'n>(req: &Request<'a>, name: &'n str) -> impl Iterator<Item = &'a str> + 'n
where
    'a: 'n,
{
    req.headers
        .iter()
        .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
        .filter_map(|(_, v)| std::str::from_utf8(v).ok())
}

/// Verifies the caller's JWT. Header values go to `auth` as bytes: it
/// decides which credential counts (Bearer first, conflicting ones refused).
fn authenticate(
    req: &Request<'_>,
    cfg: &Config,
    logs: &mut Vec<String>,
) -> Result<Identity, ApiError> {
    let raw = |name: &str| -> Vec<&[u8]> {
        req.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
            .collect()
    };
    token_from_headers(&raw("authorization"), &raw("cookie"))
        .and_then(|token| Verifier::new(cfg.auth.clone()).verify(token, req.unix_now))
        .map_err(|e| match e {
            AuthError::Missing => ApiError::authentication_required(),
            AuthError::Invalid(reason) => {
                logs.push(log::line("auth_failed", &[("reason", reason.into())]));
                ApiError::invalid_credentials()
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Source;
    use jwt_compact::alg::{Hs256, Hs256Key};
    use jwt_compact::{AlgorithmExt as _, Claims, Header};

    const NOW: i64 = 1_700_000_000;
    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn load(
        vars: &'static [(&'static str, &'static str)],
    ) -> impl FnOnce() -> Result<Config, ConfigError> {
        move || {
            Config::load(&Source(|name: &str| {
                if name == "jwt_secret" {
                    return Some(SECRET.into());
                }
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }))
        }
    }

    fn token(sub: &str) -> String {
        let mut custom = serde_json::Map::new();
        custom.insert("sub".into(), sub.into());
        custom.insert("role".into(), "user".into());
        let mut claims = Claims::new(custom);
        claims.expiration = chrono::DateTime::from_timestamp(NOW + 60, 0);
        Hs256
            .token(&Header::empty(), &claims, &Hs256Key::new(SECRET))
            .unwrap()
    }

    fn run(
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        vars: &'static [(&'static str, &'static str)],
    ) -> Decision {
        let headers: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
        let req = Request {
            method,
            path,
            headers: &headers,
            unix_now: NOW,
        };
        admit(&req, load(vars))
    }

    fn status(d: &Decision) -> u16 {
        match &d.verdict {
            Verdict::Refuse(e) => e.status,
            Verdict::Preflight => 204,
            Verdict::Serve { .. } => 200,
        }
    }

    #[test]
    fn route_comes_before_config() {
        let loads = std::cell::Cell::new(false);
        let req = Request {
            method: "GET",
            path: "/nope",
            headers: &[],
            unix_now: NOW,
        };
        let d = admit(&req, || {
            loads.set(true);
            Err::<Config, _>(ConfigError {
                variable: "x",
                problem: "bad".into(),
            })
        });
        assert_eq!(status(&d), 404);
        assert!(!loads.get());
        let req = Request {
            method: "GET",
            path: "/api/v1/events/health",
            headers: &[],
            unix_now: NOW,
        };
        let d = admit(&req, || {
            Err::<Config, _>(ConfigError {
                variable: "redis_url",
                problem: "bad".into(),
            })
        });
        assert_eq!(status(&d), 500);
        assert!(d.logs[0].contains("config_error"));
    }

    #[test]
    fn streams_need_a_valid_token_health_does_not() {
        let path = "/api/v1/events/executions/e1";
        assert_eq!(status(&run("GET", path, &[], &[])), 401);
        let d = run("GET", path, &[("authorization", "Bearer x.y.z")], &[]);
        assert_eq!(status(&d), 401);
        assert!(d.logs[0].contains("auth_failed"));
        let bearer = format!("Bearer {}", token("u1"));
        let d = run(
            "GET",
            path,
            &[("Authorization", &bearer), ("last-event-id", "5-1")],
            &[],
        );
        match d.verdict {
            Verdict::Serve {
                route,
                who,
                last_event_id,
                ..
            } => {
                assert_eq!(route, Route::ExecutionStream("e1".into()));
                assert_eq!(who.unwrap().user_id, "u1");
                assert_eq!(last_event_id.as_deref(), Some("5-1"));
            }
            _ => panic!("not served"),
        }
        let cookie = format!("access_token={}", token("u2"));
        assert_eq!(status(&run("GET", path, &[("cookie", &cookie)], &[])), 200);
        let d = run("GET", "/api/v1/events/health", &[], &[]);
        assert!(matches!(d.verdict, Verdict::Serve { who: None, .. }));
    }

    #[test]
    fn header_budget_and_dev_routes() {
        let big = "x".repeat(20_000);
        assert_eq!(
            status(&run(
                "GET",
                "/api/v1/events/health",
                &[("x-big", &big)],
                &[]
            )),
            431
        );
        assert_eq!(status(&run("GET", "/demo", &[], &[])), 404);
        assert_eq!(
            status(&run("GET", "/demo", &[], &[("dev_mode", "true")])),
            200
        );
    }

    #[test]
    fn cors_preflight_and_response_headers() {
        const ORIGINS: &[(&str, &str)] = &[("cors_allowed_origins", "https://app.example")];
        let d = run(
            "OPTIONS",
            "/api/v1/events/executions/e1",
            &[
                ("origin", "https://app.example"),
                ("access-control-request-method", "GET"),
            ],
            ORIGINS,
        );
        assert_eq!(status(&d), 204);
        assert!(d
            .headers
            .iter()
            .any(|(k, v)| *k == "access-control-allow-origin" && v == "https://app.example"));
        let d = run(
            "GET",
            "/api/v1/events/health",
            &[("origin", "https://app.example")],
            ORIGINS,
        );
        assert!(d
            .headers
            .iter()
            .any(|(k, _)| *k == "access-control-allow-origin"));
    }

    #[test]
    fn verdicts_become_the_answer_every_shell_sends() {
        let answer = |v: Verdict| v.into_serve().err().map(|a| (a.status, a.body));
        assert_eq!(answer(Verdict::Preflight), Some((204, Vec::new())));
        let refused = answer(Verdict::Refuse(ApiError::not_found())).unwrap();
        assert_eq!(refused.0, 404);
        assert_eq!(refused.1, ApiError::not_found().body());
        let d = run("GET", "/api/v1/events/health", &[], &[]);
        let (route, ..) = d.verdict.into_serve().ok().unwrap();
        assert_eq!(route, Route::Health);
    }
}
