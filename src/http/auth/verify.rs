//! Verifying one token ([`Verifier`]): its raw header and claims checked
//! before parsing (refused parameters, duplicate keys), the key its `kid`
//! and the configured algorithm pick, then `exp`/`nbf`/`iss`/`aud` and the
//! identity claims.

use super::alg::{Alg, Hs256, Hs256Key, PublicKeyAlg};
use super::config::AuthConfig;
use super::keys::{KeySet, PublicKey};
use super::{AuthError, Identity, Role};
use chrono::{DateTime, TimeDelta, Utc};
use jwt_compact::{AlgorithmExt as _, Claims, TimeOptions, UntrustedToken, ValidationError};
use serde_json::{Map, Value};
use std::fmt;

/// One accepted (algorithm, key) pair. The algorithm comes from here, never
/// from the token.
pub(crate) enum VerifyKey {
    Hs256(Hs256Key),
    Public(PublicKey),
}

impl fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyKey::Hs256(_) => f.write_str("HS256(<redacted>)"),
            VerifyKey::Public(key) => key.fmt(f),
        }
    }
}

/// Claims other than `exp`/`nbf`/`iat`, which jwt-compact parses itself.
pub(crate) type OtherClaims = Map<String, Value>;

/// Header parameters that make a token refused whatever their value (even
/// `null`): `crit` (RFC 7515 §4.1.11: we understand no extensions) and the
/// ones that embed or point at keys (`jwk`, `jku`, `x5c`, `x5u`), which are
/// never trusted: the key always comes from configuration.
pub(crate) const REFUSED_HEADER_PARAMS: [(&str, &str); 5] = [
    ("crit", "unsupported critical header"),
    ("jwk", "embedded or remote keys are not accepted"),
    ("jku", "embedded or remote keys are not accepted"),
    ("x5c", "embedded or remote keys are not accepted"),
    ("x5u", "embedded or remote keys are not accepted"),
];

/// One part of the compact token (0 header, 1 payload) as JSON text. It is
/// decoded again by jwt-compact, with the same strict unpadded base64url.
pub(crate) fn raw_part(token: &str, n: usize) -> Option<String> {
    use base64ct::{Base64UrlUnpadded, Encoding as _};
    let b64 = token.split('.').nth(n)?;
    String::from_utf8(Base64UrlUnpadded::decode_vec(b64).ok()?).ok()
}

/// Refuses a header holding any of [`REFUSED_HEADER_PARAMS`] or repeating a
/// key. Looks at the raw JSON: serde reads `"x5c": null` as an absent field,
/// and jwt-compact's `Header` consumes `jku`/`x5u` (found by the
/// `jwt_verify` fuzz target).
pub(crate) fn check_raw_header(token: &str) -> Result<(), AuthError> {
    use crate::json::{object_fields, ObjectError};
    let header = raw_part(token, 0).ok_or(AuthError::Invalid("malformed token"))?;
    let names = REFUSED_HEADER_PARAMS.map(|(name, _)| name);
    let found = object_fields(&header, &names).map_err(|e| match e {
        ObjectError::Duplicate(_) => AuthError::Invalid("duplicate key in token header"),
        _ => AuthError::Invalid("malformed token"),
    })?;
    match found.first() {
        Some((name, _)) => Err(AuthError::Invalid(
            REFUSED_HEADER_PARAMS
                .iter()
                .find(|(n, _)| n == name)
                .map_or("malformed token", |r| r.1),
        )),
        None => Ok(()),
    }
}

/// Refuses verified claims that repeat a key: serde keeps the last `role`
/// (`"role":"user","role":"admin"` read as admin) while a repeated `exp` is
/// refused, so no two readers could be trusted to see the same token.
pub(crate) fn check_raw_claims(token: &str) -> Result<(), AuthError> {
    use crate::json::{object_fields, ObjectError};
    let payload = raw_part(token, 1).ok_or(AuthError::Invalid("malformed claims"))?;
    match object_fields(&payload, &[]) {
        Ok(_) => Ok(()),
        Err(ObjectError::Duplicate(_)) => Err(AuthError::Invalid("duplicate key in token claims")),
        Err(_) => Err(AuthError::Invalid("malformed claims")),
    }
}

impl VerifyKey {
    /// The `alg` header value this key accepts (exact, case-sensitive).
    fn algorithm(&self) -> Alg {
        match self {
            VerifyKey::Hs256(_) => Alg::Hs256,
            VerifyKey::Public(key) => key.material.alg(),
        }
    }

    /// The key id; the HS256 secret has none.
    fn kid(&self) -> Option<&str> {
        match self {
            VerifyKey::Hs256(_) => None,
            VerifyKey::Public(key) => key.kid.as_deref(),
        }
    }

    /// Checks the signature and parses the claims. jwt-compact checks again
    /// that the token's `alg` is this key's algorithm.
    fn verify(&self, token: &UntrustedToken<'_>) -> Result<Claims<OtherClaims>, ValidationError> {
        let claims = match self {
            VerifyKey::Hs256(key) => Hs256.validator::<OtherClaims>(key).validate(token),
            VerifyKey::Public(key) => PublicKeyAlg(key.material.alg())
                .validator(&key.material)
                .validate(token),
        };
        claims.map(|t| t.into_parts().1)
    }
}

/// Verifies tokens against a fixed configuration; build once, share per request.
#[derive(Debug)]
pub struct Verifier {
    pub(crate) algorithms: Vec<Alg>,
    pub(crate) keys: Vec<VerifyKey>,
    pub(crate) issuer: Option<String>,
    pub(crate) audience: Option<String>,
    pub(crate) leeway: TimeDelta,
    pub(crate) user_claim: String,
    pub(crate) role_claim: String,
    pub(crate) max_token_bytes: usize,
}

impl Verifier {
    /// Prepares the keys once so each request only verifies. The HS256
    /// secret is used only when HS256 is allowed and the secret is not empty.
    #[must_use]
    pub fn new(config: AuthConfig) -> Self {
        let KeySet {
            algorithms,
            public_keys,
        } = config.keys;
        let mut keys = Vec::new();
        if algorithms.contains(&Alg::Hs256) && !config.hs256_secret.is_empty() {
            keys.push(VerifyKey::Hs256(Hs256Key::new(&config.hs256_secret)));
        }
        keys.extend(
            public_keys
                .into_iter()
                .filter(|key| algorithms.contains(&key.material.alg()))
                .map(VerifyKey::Public),
        );
        let leeway_seconds = config.leeway_seconds.max(0);
        Verifier {
            algorithms,
            keys,
            issuer: config.issuer,
            audience: config.audience,
            leeway: TimeDelta::try_seconds(leeway_seconds).unwrap_or(TimeDelta::MAX),
            user_claim: config.user_claim,
            role_claim: config.role_claim,
            max_token_bytes: config.max_token_bytes,
        }
    }

    /// Verify a compact JWS; `now` is unix seconds (the shell reads the clock,
    /// so this stays pure). Checks, in order: size, structure, header
    /// (`crit`, embedded or remote keys), algorithm allow-list, key by `kid`,
    /// signature, `exp` (required), `nbf`, `iss`/`aud` when configured, then
    /// the user claim. Never panics.
    ///
    /// # Errors
    ///
    /// Always [`AuthError::Invalid`] (a token was given), with a fixed reason
    /// for logs; [`AuthError::Missing`] is for callers that found no token.
    pub fn verify(&self, token: &str, now: i64) -> Result<Identity, AuthError> {
        if token.len() > self.max_token_bytes {
            return Err(AuthError::Invalid("token too large"));
        }
        if self.keys.is_empty() {
            return Err(AuthError::Invalid("no verification key configured"));
        }
        check_raw_header(token)?;
        let untrusted =
            UntrustedToken::new(token).map_err(|_| AuthError::Invalid("malformed token"))?;
        let header = untrusted.header();
        let alg = Alg::from_name(untrusted.algorithm())
            .filter(|alg| self.algorithms.contains(alg))
            .ok_or(AuthError::Invalid("unexpected algorithm"))?;

        let candidates: Vec<&VerifyKey> = match header.key_id.as_deref() {
            Some(kid) => {
                let named: Vec<&VerifyKey> =
                    self.keys.iter().filter(|k| k.kid() == Some(kid)).collect();
                if named.is_empty() {
                    return Err(AuthError::Invalid("unknown key id"));
                }
                named
            }
            None => self.keys.iter().collect(),
        };
        let mut candidates: Vec<&VerifyKey> = candidates
            .into_iter()
            .filter(|key| key.algorithm() == alg)
            .collect();
        // At most one signature check per token. Without a `kid`, the key of
        // its algorithm that has no `kid` either (a PEM key, the HS256
        // secret) is the one meant; failing that, the algorithm's only key.
        // Several candidates need a `kid`: a token must not make us try
        // every key (kids are unique, so a named key is one key).
        if header.key_id.is_none() && candidates.iter().any(|k| k.kid().is_none()) {
            candidates.retain(|k| k.kid().is_none());
        }
        let key = match candidates.as_slice() {
            [key] => *key,
            [] if header.key_id.is_some() => {
                return Err(AuthError::Invalid("key does not match algorithm"))
            }
            [] => return Err(AuthError::Invalid("no key for algorithm")),
            _ => {
                return Err(AuthError::Invalid(
                    "kid required: several keys fit the algorithm",
                ))
            }
        };
        let claims = key.verify(&untrusted).map_err(|e| match e {
            ValidationError::MalformedClaims(_) => AuthError::Invalid("malformed claims"),
            _ => AuthError::Invalid("bad signature"),
        })?;
        check_raw_claims(token)?;

        self.check_time(&claims, now)?;
        let expires_at = match claims.expiration {
            Some(exp) => exp.timestamp(),
            None => return Err(AuthError::Invalid("missing exp")),
        };
        if let Some(issuer) = &self.issuer {
            if claims.custom.get("iss").and_then(Value::as_str) != Some(issuer.as_str()) {
                return Err(AuthError::Invalid("issuer mismatch"));
            }
        }
        if let Some(audience) = &self.audience {
            if !audience_matches(claims.custom.get("aud"), audience) {
                return Err(AuthError::Invalid("audience mismatch"));
            }
        }
        let user_id = user_id_from_claim(claims.custom.get(&self.user_claim))
            .ok_or(AuthError::Invalid("missing or invalid user claim"))?;
        // The user id names Redis keys and channels (`sse:streams:<id>`,
        // `sse:notif:<id>`): the path ids' rule keeps globs, CR/LF, control
        // bytes and huge values out of them.
        if !crate::http::routes::valid_id(&user_id) {
            return Err(AuthError::Invalid("user id outside the id charset"));
        }
        let role = Role::from_claim(claims.custom.get(&self.role_claim));
        Ok(Identity {
            user_id,
            role,
            expires_at,
        })
    }

    /// `exp` (required) and `nbf` against a fixed `now`, with leeway.
    fn check_time(&self, claims: &Claims<OtherClaims>, now: i64) -> Result<(), AuthError> {
        let now: DateTime<Utc> =
            DateTime::from_timestamp(now, 0).ok_or(AuthError::Invalid("clock out of range"))?;
        let options = TimeOptions::new(self.leeway, move || now);
        claims
            .validate_expiration(&options)
            .map_err(|err| match err {
                ValidationError::NoClaim(_) => AuthError::Invalid("missing exp"),
                _ => AuthError::Invalid("token expired"),
            })?;
        // RFC 7519 4.1.4: not accepted *on or after* `exp` (+ leeway);
        // jwt-compact still accepts the exact second, when a stream would
        // already be ended by its expiry.
        if let Some(exp) = claims.expiration {
            if exp
                .checked_add_signed(self.leeway)
                .is_some_and(|end| now >= end)
            {
                return Err(AuthError::Invalid("token expired"));
            }
        }
        if let Some(not_before) = claims.not_before {
            // jwt-compact computes `nbf - leeway` unchecked, which panics near
            // the earliest representable date; such an `nbf` is long past anyway.
            if not_before.checked_sub_signed(self.leeway).is_some() {
                claims
                    .validate_maturity(&options)
                    .map_err(|_| AuthError::Invalid("token not yet valid"))?;
            }
        }
        Ok(())
    }
}

/// `aud` may be one string or an array of strings (RFC 7519 §4.1.3).
pub(crate) fn audience_matches(aud: Option<&Value>, expected: &str) -> bool {
    match aud {
        Some(Value::String(s)) => s == expected,
        Some(Value::Array(items)) => items.iter().any(|v| v.as_str() == Some(expected)),
        _ => false,
    }
}

/// A non-empty string, or an integer rendered in decimal (the existing backend
/// may issue numeric user ids). Floats, booleans, objects, null are refused.
pub(crate) fn user_id_from_claim(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}
