//! JWT verification: turns a bearer token or `access_token` cookie into an
//! [`Identity`], or an [`AuthError`] the shell maps to a 401.
//!
//! Pure and host-testable: no clock access (the caller passes `now` as unix
//! seconds), no I/O. Signatures are checked with `jwt-compact`.
//!
//! The accepted algorithm is fixed by configuration and never taken from the
//! token, so `alg: none` and algorithm confusion (`HS512`, `RS256`, ... against
//! an HS256 secret) are refused. Only HS256 is implemented for now; keys live in
//! a private list of `VerifyKey`s so RS256/ES256/EdDSA keys picked by `kid`
//! can be added without changing [`Verifier::verify`].

use chrono::{DateTime, TimeDelta, Utc};
use jwt_compact::{
    alg::{Hs256, Hs256Key},
    AlgorithmExt as _, Claims, TimeOptions, UntrustedToken, ValidationError,
};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::fmt;

/// What the caller may do, from the role claim. `Admin` skips ownership
/// checks; `Service` may publish; everyone else is an ordinary `User`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Default: may stream only their own executions and notifications.
    User,
    /// Role claim `"admin"`: may stream any execution.
    Admin,
    /// Role claim `"service"`: a backend that may publish events.
    Service,
}

impl Role {
    /// Maps the role claim; anything but exactly `"admin"` or `"service"`
    /// (including a missing or non-string claim) is the least-privileged `User`.
    fn from_claim(value: Option<&Value>) -> Self {
        match value.and_then(Value::as_str) {
            Some("admin") => Role::Admin,
            Some("service") => Role::Service,
            _ => Role::User,
        }
    }
}

/// The verified caller, used for ownership checks and channel names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user claim (`sub` by default); an integer claim is rendered in decimal.
    pub user_id: String,
    /// From the role claim (`role` by default).
    pub role: Role,
    /// The token's `exp`, unix seconds, so a stream can end when the token does.
    pub expires_at: i64,
}

/// Why a request is not authenticated; both variants become a 401.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No token was sent: 401 `AuthenticationRequiredError`.
    Missing,
    /// A token was sent but is not acceptable: 401 `InvalidCredentialsError`.
    /// The reason is a fixed string for logs; it never contains the token or
    /// the secret.
    Invalid(&'static str),
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::Missing => f.write_str("authentication required"),
            AuthError::Invalid(reason) => write!(f, "invalid credentials: {reason}"),
        }
    }
}

impl std::error::Error for AuthError {}

/// Verification settings, read from gateway configuration.
#[derive(Clone)]
pub struct AuthConfig {
    /// Shared HS256 secret (the existing backend's). An empty secret accepts
    /// no token at all, since anyone could sign with it.
    pub hs256_secret: Vec<u8>,
    /// Required `iss` value; `None` skips the check.
    pub issuer: Option<String>,
    /// Required `aud` value (the token's `aud` may be a string or an array of
    /// strings containing it); `None` skips the check.
    pub audience: Option<String>,
    /// Clock skew tolerated for `exp` and `nbf`, in seconds; negative counts as 0.
    pub leeway_seconds: i64,
    /// Claim holding the user id (default `sub`).
    pub user_claim: String,
    /// Claim holding the role (default `role`).
    pub role_claim: String,
    /// Longer tokens are refused before any parsing (default 8192).
    pub max_token_bytes: usize,
}

impl AuthConfig {
    /// HS256 with `secret` and the defaults: no `iss`/`aud` check, 30 s
    /// leeway, `sub` and `role` claims, tokens up to 8192 bytes.
    pub fn hs256(secret: impl Into<Vec<u8>>) -> Self {
        AuthConfig {
            hs256_secret: secret.into(),
            issuer: None,
            audience: None,
            leeway_seconds: 30,
            user_claim: "sub".to_owned(),
            role_claim: "role".to_owned(),
            max_token_bytes: 8192,
        }
    }
}

/// Redacts the secret so configuration can be logged.
impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("hs256_secret", &"<redacted>")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway_seconds", &self.leeway_seconds)
            .field("user_claim", &self.user_claim)
            .field("role_claim", &self.role_claim)
            .field("max_token_bytes", &self.max_token_bytes)
            .finish()
    }
}

/// One accepted (algorithm, key) pair. The algorithm comes from here, never
/// from the token. Later variants (RS256/ES256/EdDSA from PEM or JWKS) will
/// carry an optional `kid` used to pick the key.
#[derive(Debug)]
enum VerifyKey {
    Hs256(Hs256Key),
}

/// Claims other than `exp`/`nbf`/`iat`, which jwt-compact parses itself.
type OtherClaims = Map<String, Value>;

/// Header fields jwt-compact does not model but we must look at.
#[derive(Debug, Clone, Deserialize)]
struct HeaderExtras {
    /// RFC 7515 §4.1.11: we understand no extensions, so any `crit` is refused.
    #[serde(default)]
    crit: Option<Value>,
}

impl VerifyKey {
    /// The `alg` header value this key accepts (exact, case-sensitive).
    fn algorithm(&self) -> &'static str {
        match self {
            VerifyKey::Hs256(_) => "HS256",
        }
    }

    /// Checks the signature and parses the claims.
    fn verify(
        &self,
        token: &UntrustedToken<'_, HeaderExtras>,
    ) -> Result<Claims<OtherClaims>, ValidationError> {
        match self {
            VerifyKey::Hs256(key) => Hs256
                .validator::<OtherClaims>(key)
                .validate(token)
                .map(|t| t.into_parts().1),
        }
    }
}

/// Verifies tokens against a fixed configuration; build once, share per request.
#[derive(Debug)]
pub struct Verifier {
    keys: Vec<VerifyKey>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: TimeDelta,
    user_claim: String,
    role_claim: String,
    max_token_bytes: usize,
}

impl Verifier {
    /// Prepares the keys once so each request only verifies.
    #[must_use]
    pub fn new(config: AuthConfig) -> Self {
        let mut keys = Vec::new();
        if !config.hs256_secret.is_empty() {
            keys.push(VerifyKey::Hs256(Hs256Key::new(&config.hs256_secret)));
        }
        let leeway_seconds = config.leeway_seconds.max(0);
        Verifier {
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
    /// so this stays pure). Checks, in order: size, structure, algorithm,
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
        let untrusted = UntrustedToken::<HeaderExtras>::try_from(token)
            .map_err(|_| AuthError::Invalid("malformed token"))?;
        if untrusted.header().other_fields.crit.is_some() {
            return Err(AuthError::Invalid("unsupported critical header"));
        }

        let mut candidates = self
            .keys
            .iter()
            .filter(|key| key.algorithm() == untrusted.algorithm())
            .peekable();
        if candidates.peek().is_none() {
            return Err(AuthError::Invalid("unexpected algorithm"));
        }
        let mut outcome = Err(AuthError::Invalid("bad signature"));
        for key in candidates {
            match key.verify(&untrusted) {
                Ok(claims) => {
                    outcome = Ok(claims);
                    break;
                }
                Err(ValidationError::MalformedClaims(_)) => {
                    outcome = Err(AuthError::Invalid("malformed claims"));
                }
                Err(_) => {}
            }
        }
        let claims = outcome?;

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
fn audience_matches(aud: Option<&Value>, expected: &str) -> bool {
    match aud {
        Some(Value::String(s)) => s == expected,
        Some(Value::Array(items)) => items.iter().any(|v| v.as_str() == Some(expected)),
        _ => false,
    }
}

/// A non-empty string, or an integer rendered in decimal (the existing backend
/// may issue numeric user ids). Floats, booleans, objects, null are refused.
fn user_id_from_claim(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// Pick the token from request headers: `Authorization: Bearer <t>` (scheme
/// case-insensitive) first, else the `access_token` cookie from any of the
/// `Cookie` header values (parse `a=b; access_token=xyz; c=d`, strip optional
/// surrounding double quotes). Empty values count as absent. The browser
/// client sends the cookie; API clients send the header.
pub fn token_from_headers<'a>(
    authorization: Option<&'a str>,
    cookies: &[&'a str],
) -> Option<&'a str> {
    if let Some(token) = authorization.and_then(bearer_token) {
        return Some(token);
    }
    cookies
        .iter()
        .flat_map(|header| header.split(';'))
        .filter_map(|pair| pair.split_once('='))
        .filter(|(name, _)| name.trim() == "access_token")
        .map(|(_, value)| strip_quotes(value.trim()).trim())
        .find(|value| !value.is_empty())
}

/// `Bearer <token>` with any scheme case; `None` for other schemes or no token.
fn bearer_token(header: &str) -> Option<&str> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(|c: char| c.is_ascii_whitespace())?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim();
    (!token.is_empty()).then_some(token)
}

fn strip_quotes(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jwt_compact::{
        alg::{Hs512, Hs512Key},
        Algorithm, AlgorithmSignature, Header, Renamed,
    };
    use serde_json::json;

    const SECRET: &[u8] = b"test-secret-for-the-sse-gateway-0123456789";
    const NOW: i64 = 1_700_000_000;

    fn verifier() -> Verifier {
        Verifier::new(AuthConfig::hs256(SECRET))
    }

    fn claims_of(payload: Value) -> Claims<OtherClaims> {
        Claims::new(payload.as_object().expect("object payload").clone())
    }

    fn sign(payload: Value) -> String {
        sign_with(SECRET, payload)
    }

    fn sign_with(secret: &[u8], payload: Value) -> String {
        Hs256
            .token(
                &Header::empty(),
                &claims_of(payload),
                &Hs256Key::new(secret),
            )
            .expect("sign")
    }

    fn b64url(data: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in data.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..=chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            }
        }
        out
    }

    /// `header.payload.` from raw JSON, no signature.
    fn unsigned(header: &str, payload: &str) -> String {
        format!(
            "{}.{}",
            b64url(header.as_bytes()),
            b64url(payload.as_bytes())
        )
    }

    /// Hand-built token with a real HMAC-SHA256 signature over the given bytes.
    fn hand_signed(header: &str, payload: &str) -> String {
        let signing_input = unsigned(header, payload);
        let sig = Hs256.sign(&Hs256Key::new(SECRET), signing_input.as_bytes());
        format!("{signing_input}.{}", b64url(&sig.as_bytes()))
    }

    fn signature_of(token: &str) -> &str {
        token.rsplit('.').next().expect("segment")
    }

    fn ok(v: &Verifier, token: &str) -> Identity {
        v.verify(token, NOW).expect("token should verify")
    }

    fn invalid(v: &Verifier, token: &str, reason: &'static str) {
        let err = v.verify(token, NOW).expect_err("token should be refused");
        assert_eq!(err, AuthError::Invalid(reason), "token: {token}");
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(std::str::from_utf8(SECRET).unwrap()));
        if token.len() > 8 {
            assert!(!shown.contains(token));
        }
    }

    fn valid_payload() -> Value {
        json!({"sub": "user-1", "exp": NOW + 600})
    }

    #[test]
    fn valid_token_gives_identity_with_roles() {
        let v = verifier();
        let id = ok(&v, &sign(valid_payload()));
        assert_eq!(
            id,
            Identity {
                user_id: "user-1".into(),
                role: Role::User,
                expires_at: NOW + 600
            }
        );
        let role = |r: Value| ok(&v, &sign(json!({"sub": "u", "exp": NOW + 60, "role": r}))).role;
        assert_eq!(role(json!("admin")), Role::Admin);
        assert_eq!(role(json!("service")), Role::Service);
        assert_eq!(role(json!("user")), Role::User);
        assert_eq!(role(json!("Admin")), Role::User);
        assert_eq!(role(json!("superuser")), Role::User);
        assert_eq!(role(json!(true)), Role::User);
        assert_eq!(role(json!(["admin"])), Role::User);
    }

    #[test]
    fn hand_built_hs256_token_verifies() {
        // Proves the test encoder, so the hand-built refusals below are meaningful.
        let token = hand_signed(
            r#"{"alg":"HS256","typ":"JWT"}"#,
            &format!(r#"{{"sub":"hand","exp":{}}}"#, NOW + 10),
        );
        assert_eq!(ok(&verifier(), &token).user_id, "hand");
    }

    #[test]
    fn wrong_secret_is_refused() {
        let token = sign_with(b"another-secret-of-similar-length-0123456", valid_payload());
        invalid(&verifier(), &token, "bad signature");
    }

    #[test]
    fn tampered_payload_is_refused() {
        let good = sign(valid_payload());
        let forged = format!(
            "{}.{}",
            unsigned(
                r#"{"alg":"HS256"}"#,
                &format!(r#"{{"sub":"user-1","exp":{},"role":"admin"}}"#, NOW + 600)
            ),
            signature_of(&good)
        );
        invalid(&verifier(), &forged, "bad signature");
    }

    #[test]
    fn empty_secret_accepts_nothing() {
        let v = Verifier::new(AuthConfig::hs256(Vec::new()));
        invalid(
            &v,
            &sign_with(b"", valid_payload()),
            "no verification key configured",
        );
    }

    #[test]
    fn expiry_and_leeway() {
        let v = verifier();
        invalid(
            &v,
            &sign(json!({"sub": "u", "exp": NOW - 31})),
            "token expired",
        );
        invalid(&v, &sign(json!({"sub": "u", "exp": 0})), "token expired");
        // Expired, but within the 30 s default leeway.
        assert_eq!(
            ok(&v, &sign(json!({"sub": "u", "exp": NOW - 30}))).expires_at,
            NOW - 30
        );
        ok(&v, &sign(json!({"sub": "u", "exp": NOW - 1})));

        let strict = Verifier::new(AuthConfig {
            leeway_seconds: 0,
            ..AuthConfig::hs256(SECRET)
        });
        invalid(
            &strict,
            &sign(json!({"sub": "u", "exp": NOW - 1})),
            "token expired",
        );
        ok(&strict, &sign(json!({"sub": "u", "exp": NOW})));

        let negative = Verifier::new(AuthConfig {
            leeway_seconds: -1000,
            ..AuthConfig::hs256(SECRET)
        });
        ok(&negative, &sign(json!({"sub": "u", "exp": NOW})));
        let huge = Verifier::new(AuthConfig {
            leeway_seconds: i64::MAX,
            ..AuthConfig::hs256(SECRET)
        });
        ok(&huge, &sign(json!({"sub": "u", "exp": 0})));
    }

    #[test]
    fn missing_or_malformed_exp_is_refused() {
        let v = verifier();
        invalid(&v, &sign(json!({"sub": "u"})), "missing exp");
        invalid(
            &v,
            &sign(json!({"sub": "u", "exp": "soon"})),
            "malformed claims",
        );
        invalid(
            &v,
            &sign(json!({"sub": "u", "exp": null})),
            "malformed claims",
        );
        invalid(
            &v,
            &sign(json!({"sub": "u", "exp": i64::MAX})),
            "malformed claims",
        );
    }

    #[test]
    fn nbf_in_the_future_is_refused() {
        let v = verifier();
        let p = |nbf: i64| sign(json!({"sub": "u", "exp": NOW + 600, "nbf": nbf}));
        invalid(&v, &p(NOW + 31), "token not yet valid");
        invalid(&v, &p(NOW + 3600), "token not yet valid");
        ok(&v, &p(NOW + 30));
        ok(&v, &p(NOW - 100));
        // Earliest representable date: must not overflow inside jwt-compact.
        ok(&v, &p(DateTime::<Utc>::MIN_UTC.timestamp()));
    }

    #[test]
    fn extreme_times_do_not_panic() {
        let v = verifier();
        let far = sign(json!({"sub": "u", "exp": DateTime::<Utc>::MAX_UTC.timestamp()}));
        ok(&v, &far);
        let token = sign(valid_payload());
        for now in [i64::MIN, i64::MAX] {
            assert_eq!(
                v.verify(&token, now),
                Err(AuthError::Invalid("clock out of range"))
            );
        }
        assert_eq!(
            v.verify(&token, 0).map(|id| id.user_id),
            Ok("user-1".to_owned())
        );
    }

    #[test]
    fn issuer_checked_only_when_configured() {
        let with_iss = sign(json!({"sub": "u", "exp": NOW + 60, "iss": "https://auth.example"}));
        let other_iss = sign(json!({"sub": "u", "exp": NOW + 60, "iss": "https://evil.example"}));
        let no_iss = sign(valid_payload());
        let v = Verifier::new(AuthConfig {
            issuer: Some("https://auth.example".into()),
            ..AuthConfig::hs256(SECRET)
        });
        ok(&v, &with_iss);
        invalid(&v, &other_iss, "issuer mismatch");
        invalid(&v, &no_iss, "issuer mismatch");
        let unconfigured = verifier();
        ok(&unconfigured, &other_iss);
        ok(&unconfigured, &no_iss);
    }

    #[test]
    fn audience_string_or_array() {
        let v = Verifier::new(AuthConfig {
            audience: Some("sse".into()),
            ..AuthConfig::hs256(SECRET)
        });
        let with = |aud: Value| sign(json!({"sub": "u", "exp": NOW + 60, "aud": aud}));
        ok(&v, &with(json!("sse")));
        ok(&v, &with(json!(["api", "sse"])));
        invalid(&v, &with(json!("api")), "audience mismatch");
        invalid(&v, &with(json!(["api", "web"])), "audience mismatch");
        invalid(&v, &with(json!([])), "audience mismatch");
        invalid(&v, &with(json!(7)), "audience mismatch");
        invalid(&v, &with(json!("SSE")), "audience mismatch");
        invalid(&v, &sign(valid_payload()), "audience mismatch");
        ok(&verifier(), &with(json!("api")));
    }

    #[test]
    fn alg_none_is_refused() {
        let v = verifier();
        let payload = format!(r#"{{"sub":"user-1","exp":{}}}"#, NOW + 600);
        let good = sign(valid_payload());
        for alg in ["none", "None", "NONE", "nOnE"] {
            let body = unsigned(&format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#), &payload);
            invalid(&v, &format!("{body}."), "unexpected algorithm");
            invalid(
                &v,
                &format!("{body}.{}", signature_of(&good)),
                "unexpected algorithm",
            );
        }
        // Header without any alg at all.
        invalid(
            &v,
            &format!("{}.", unsigned(r#"{"typ":"JWT"}"#, &payload)),
            "malformed token",
        );
    }

    #[test]
    fn other_algorithms_are_refused_even_with_the_same_secret() {
        let v = verifier();
        let hs512 = Hs512
            .token(
                &Header::empty(),
                &claims_of(valid_payload()),
                &Hs512Key::new(SECRET),
            )
            .unwrap();
        invalid(&v, &hs512, "unexpected algorithm");
        // Algorithm confusion: RS256 label, but an HMAC over the shared secret.
        for alg in ["RS256", "ES256", "EdDSA", "hs256", "HS384"] {
            let token = Renamed::new(Hs256, alg)
                .token(
                    &Header::empty(),
                    &claims_of(valid_payload()),
                    &Hs256Key::new(SECRET),
                )
                .unwrap();
            invalid(&v, &token, "unexpected algorithm");
        }
        let rs_header = hand_signed(
            r#"{"alg":"RS256","typ":"JWT"}"#,
            &format!(r#"{{"sub":"u","exp":{}}}"#, NOW + 60),
        );
        invalid(&v, &rs_header, "unexpected algorithm");
    }

    #[test]
    fn critical_header_is_refused() {
        let token = hand_signed(
            r#"{"alg":"HS256","crit":["b64"],"b64":false}"#,
            &format!(r#"{{"sub":"u","exp":{}}}"#, NOW + 60),
        );
        invalid(&verifier(), &token, "unsupported critical header");
    }

    #[test]
    fn garbage_is_refused() {
        let v = verifier();
        for token in [
            "",
            ".",
            "..",
            "...",
            "a.b.c",
            "a.b",
            "abc",
            "!!!.@@@.###",
            "eyJ.eyJ.sig",
            "eyJhbGciOiJIUzI1NiJ9",
            "Bearer eyJhbGciOiJIUzI1NiJ9.e30.",
            "\u{0}\u{1}.\u{ff}.é",
        ] {
            invalid(&v, token, "malformed token");
        }
        // Base64 of something that is not JSON, in the header.
        let not_json = format!("{}.{}.", b64url(b"not json"), b64url(b"{}"));
        invalid(&v, &not_json, "malformed token");
        // Valid header and signature over a payload that is not a JSON object.
        for payload in ["not json", "[1,2,3]", "42", "\"sub\"", "null", ""] {
            invalid(
                &v,
                &hand_signed(r#"{"alg":"HS256"}"#, payload),
                "malformed claims",
            );
        }
        // Well-formed header, empty claims and signature.
        invalid(&v, "eyJhbGciOiJIUzI1NiJ9..", "bad signature");
        // Truncated signature.
        let good = sign(valid_payload());
        invalid(&v, &good[..good.len() - 3], "bad signature");
        // Whitespace around an otherwise valid token.
        invalid(&v, &format!(" {good}"), "malformed token");
    }

    #[test]
    fn oversized_tokens_are_refused_without_parsing() {
        let v = verifier();
        invalid(&v, &"a".repeat(8193), "token too large");
        let big = sign(json!({"sub": "u", "exp": NOW + 60, "pad": "x".repeat(9000)}));
        invalid(&v, &big, "token too large");
        let good = sign(valid_payload());
        let small = Verifier::new(AuthConfig {
            max_token_bytes: good.len() - 1,
            ..AuthConfig::hs256(SECRET)
        });
        invalid(&small, &good, "token too large");
        let exact = Verifier::new(AuthConfig {
            max_token_bytes: good.len(),
            ..AuthConfig::hs256(SECRET)
        });
        ok(&exact, &good);
    }

    #[test]
    fn mutated_tokens_never_panic_or_pass() {
        let v = verifier();
        let good = sign(json!({"sub": "user-1", "exp": NOW + 600, "role": "user"}));
        let expected = ok(&v, &good);
        for len in 0..good.len() {
            assert!(v.verify(&good[..len], NOW).is_err(), "prefix {len}");
        }
        let bytes = good.as_bytes();
        for i in 0..bytes.len() {
            for replacement in [b'A', b'z', b'.', b'_', b'=', b'\xc3'] {
                let mut m = bytes.to_vec();
                m[i] = replacement;
                let Ok(s) = String::from_utf8(m) else {
                    continue;
                };
                // A change in the unused low bits of a segment's last char may
                // decode to the same bytes; anything else must fail.
                if let Ok(id) = v.verify(&s, NOW) {
                    assert_eq!(id, expected, "mutation at {i} accepted as someone else");
                }
            }
        }
    }

    #[test]
    fn custom_claim_names() {
        let v = Verifier::new(AuthConfig {
            user_claim: "user_id".into(),
            role_claim: "scope".into(),
            ..AuthConfig::hs256(SECRET)
        });
        let id = ok(
            &v,
            &sign(
                json!({"user_id": "u-9", "scope": "admin", "sub": "ignored", "role": "service", "exp": NOW + 60}),
            ),
        );
        assert_eq!(id.user_id, "u-9");
        assert_eq!(id.role, Role::Admin);
        // `sub` alone does not satisfy a custom user claim.
        invalid(&v, &sign(valid_payload()), "missing or invalid user claim");
    }

    #[test]
    fn user_claim_types() {
        let v = verifier();
        let with = |sub: Value| sign(json!({"sub": sub, "exp": NOW + 60}));
        assert_eq!(ok(&v, &with(json!(12345))).user_id, "12345");
        assert_eq!(ok(&v, &with(json!(-7))).user_id, "-7");
        assert_eq!(
            ok(&v, &with(json!(u64::MAX))).user_id,
            "18446744073709551615"
        );
        for bad in [
            json!(""),
            json!(1.5),
            json!(null),
            json!(true),
            json!({}),
            json!(["u"]),
        ] {
            invalid(&v, &with(bad), "missing or invalid user claim");
        }
        invalid(
            &v,
            &sign(json!({"exp": NOW + 60})),
            "missing or invalid user claim",
        );
    }

    #[test]
    fn config_debug_redacts_secret() {
        let shown = format!("{:?} {:?}", AuthConfig::hs256(SECRET), verifier());
        assert!(!shown.contains(std::str::from_utf8(SECRET).unwrap()));
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn defaults() {
        let c = AuthConfig::hs256("s");
        assert_eq!(c.hs256_secret, b"s");
        assert_eq!((c.issuer, c.audience), (None, None));
        assert_eq!(c.leeway_seconds, 30);
        assert_eq!(
            (c.user_claim.as_str(), c.role_claim.as_str()),
            ("sub", "role")
        );
        assert_eq!(c.max_token_bytes, 8192);
    }

    #[test]
    fn token_from_headers_bearer() {
        assert_eq!(
            token_from_headers(Some("Bearer abc.def.ghi"), &[]),
            Some("abc.def.ghi")
        );
        assert_eq!(token_from_headers(Some("bearer abc"), &[]), Some("abc"));
        assert_eq!(token_from_headers(Some("BEARER   abc  "), &[]), Some("abc"));
        assert_eq!(token_from_headers(Some("Bearer\tabc"), &[]), Some("abc"));
        assert_eq!(token_from_headers(Some("Bearer "), &[]), None);
        assert_eq!(token_from_headers(Some("Bearer"), &[]), None);
        assert_eq!(token_from_headers(Some("Basic dXNlcjpwYXNz"), &[]), None);
        assert_eq!(token_from_headers(Some("Bearerabc"), &[]), None);
        assert_eq!(token_from_headers(Some(""), &[]), None);
    }

    #[test]
    fn token_from_headers_cookie() {
        assert_eq!(
            token_from_headers(None, &["a=b; access_token=xyz; c=d"]),
            Some("xyz")
        );
        assert_eq!(token_from_headers(None, &["access_token=xyz"]), Some("xyz"));
        assert_eq!(
            token_from_headers(None, &["access_token=\"xyz\""]),
            Some("xyz")
        );
        assert_eq!(
            token_from_headers(None, &["a=b", "c=d;access_token=t2"]),
            Some("t2")
        );
        assert_eq!(
            token_from_headers(None, &["x_access_token=no; access_tokens=no"]),
            None
        );
        assert_eq!(
            token_from_headers(None, &["access_token=; access_token=later"]),
            Some("later")
        );
        assert_eq!(token_from_headers(None, &["access_token=\"\""]), None);
        assert_eq!(token_from_headers(None, &["access_token="]), None);
        assert_eq!(token_from_headers(None, &["garbage;;=;"]), None);
        // Base64 padding in a cookie value keeps its `=`.
        assert_eq!(
            token_from_headers(None, &["access_token=ab=="]),
            Some("ab==")
        );
        // A non-bearer Authorization header falls back to the cookie.
        assert_eq!(
            token_from_headers(Some("Basic Zm9v"), &["access_token=c"]),
            Some("c")
        );
        assert_eq!(
            token_from_headers(Some("Bearer "), &["access_token=c"]),
            Some("c")
        );
    }

    #[test]
    fn token_from_headers_precedence_and_absence() {
        assert_eq!(
            token_from_headers(Some("Bearer from-header"), &["access_token=from-cookie"]),
            Some("from-header")
        );
        assert_eq!(token_from_headers(None, &[]), None);
        assert_eq!(token_from_headers(None, &["session=1"]), None);
    }

    #[test]
    fn end_to_end_cookie_token_verifies() {
        let token = sign(json!({"sub": "42", "exp": NOW + 60, "role": "service"}));
        let cookie = format!("theme=dark; access_token={token}");
        let picked = token_from_headers(None, &[cookie.as_str()]).expect("token");
        assert_eq!(ok(&verifier(), picked).role, Role::Service);
        // Absent token is the caller's `Missing`, not `Invalid`.
        let missing = token_from_headers(None, &[])
            .ok_or(AuthError::Missing)
            .and_then(|t| verifier().verify(t, NOW));
        assert_eq!(missing, Err(AuthError::Missing));
    }
}
