//! Development tokens (`dev_mode` only): what a token request may ask for
//! and the token minted for it; `dev::token` builds the answer around it.

use crate::config::Config;
use crate::http::auth::{Hs256, Hs256Key};
use crate::http::error::ApiError;
use crate::http::routes::valid_id;
use chrono::{DateTime, Utc};
use jwt_compact::{AlgorithmExt as _, Claims, Header};
use serde_json::{Map, Value as Json};

/// How long a development token is valid.
pub const TOKEN_TTL_SECONDS: i64 = 3600;

/// The user a token is minted for when the request names none.
const DEFAULT_SUB: &str = "demo-user";

/// Parses the token request: `(sub, role)`.
pub fn token_request(body: &[u8]) -> Result<(String, String), ApiError> {
    let fields: Map<String, Json> = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        serde_json::from_slice(body)
            .map_err(|_| ApiError::bad_request("body must be a JSON object"))?
    };
    let text = |name: &str, default: &str| match fields.get(name) {
        None | Some(Json::Null) => Ok(default.to_string()),
        Some(Json::String(s)) => Ok(s.clone()),
        Some(_) => Err(ApiError::bad_request(format!("{name} must be a string"))),
    };
    let sub = text("sub", DEFAULT_SUB)?;
    if !valid_id(&sub) || sub.len() > 64 {
        return Err(ApiError::bad_request(
            "sub: use 1 to 64 characters from A-Z a-z 0-9 - _ . :",
        ));
    }
    let role = text("role", "user")?;
    if role != "user" {
        return Err(ApiError::bad_request(
            "role: dev tokens are minted for role \"user\" only",
        ));
    }
    Ok((sub, role))
}

/// Signs the token with the configured claim names, `iss` and `aud`.
pub fn mint(cfg: &Config, sub: &str, role: &str, now: i64) -> Result<String, ApiError> {
    let mut custom = Map::new();
    custom.insert(cfg.auth.user_claim.clone(), sub.into());
    custom.insert(cfg.auth.role_claim.clone(), role.into());
    if let Some(iss) = &cfg.auth.issuer {
        custom.insert("iss".into(), iss.as_str().into());
    }
    if let Some(aud) = &cfg.auth.audience {
        custom.insert("aud".into(), aud.as_str().into());
    }
    let at = |secs: i64| DateTime::<Utc>::from_timestamp(secs, 0);
    let mut claims = Claims::new(custom);
    claims.issued_at = at(now);
    claims.expiration = at(now + TOKEN_TTL_SECONDS);
    if claims.expiration.is_none() {
        return Err(ApiError::configuration("wall clock out of range"));
    }
    let key = Hs256Key::new(&cfg.auth.hs256_secret);
    Hs256
        .token(&Header::empty().with_token_type("JWT"), &claims, &key)
        .map_err(|e| ApiError::configuration(format!("could not sign a dev token: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Source;

    #[test]
    fn only_user_tokens_for_valid_ids() {
        assert_eq!(
            token_request(b" ").unwrap(),
            ("demo-user".into(), "user".into())
        );
        assert_eq!(
            token_request(br#"{"sub":"a-1"}"#).unwrap(),
            ("a-1".into(), "user".into())
        );
        for bad in [
            &br#"{"role":"admin"}"#[..],
            br#"{"sub":"a b"}"#,
            br#"{"sub":1}"#,
            b"[]",
        ] {
            assert_eq!(token_request(bad).unwrap_err().status, 400);
        }
    }

    #[test]
    fn minted_tokens_verify() {
        let cfg = Config::load(&Source(|k: &str| {
            (k == "jwt_secret").then(|| "0123456789abcdef0123456789abcdef".to_string())
        }))
        .unwrap();
        let now = 1_700_000_000;
        let token = mint(&cfg, "a-1", "user", now).unwrap();
        let who = crate::http::auth::Verifier::new(cfg.auth.clone())
            .verify(&token, now)
            .unwrap();
        assert_eq!(
            (who.user_id.as_str(), who.expires_at),
            ("a-1", now + TOKEN_TTL_SECONDS)
        );
    }
}
