//! Hand-built compact JWS tokens (HS256, `alg: none`, anything).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::time::{SystemTime, UNIX_EPOCH};

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn hs256_sig(secret: &str, signing_input: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(signing_input.as_bytes());
    b64(&mac.finalize().into_bytes())
}

/// Compact JWS from raw header and claims JSON, signed HS256 with
/// `secret` whatever the header says (None: empty signature).
pub fn compact(header: &Value, claims: &Value, secret: Option<&str>) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = secret.map(|s| hs256_sig(s, &input)).unwrap_or_default();
    format!("{input}.{sig}")
}

/// Standard claims: sub, role, iat = now, exp = now + 1 h.
pub fn claims(sub: &str, role: &str) -> Value {
    let now = now();
    json!({"sub": sub, "role": role, "iat": now, "exp": now + 3600})
}

pub fn hs256(secret: &str, claims: &Value) -> String {
    compact(&json!({"alg": "HS256", "typ": "JWT"}), claims, Some(secret))
}

/// A valid token for the default gateway secret.
pub fn token(sub: &str, role: &str) -> String {
    hs256(super::SECRET, &claims(sub, role))
}
