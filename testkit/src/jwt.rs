//! Hand-built compact JWS tokens: HS256 as an issuer signs them, or any
//! header and claims at all (`alg: none`, algorithm confusion) for the
//! tests that must see them refused.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::time::{SystemTime, UNIX_EPOCH};

/// Unix seconds now.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Base64url without padding, as JWS segments are written.
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The HS256 signature segment of `signing_input` under `secret`.
pub fn hs256_sig(secret: &str, signing_input: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
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

/// The claims the gateway reads: `sub`, `role`, `iat` = now, `exp` =
/// now + `ttl_seconds`.
pub fn claims(sub: &str, role: &str, ttl_seconds: i64) -> Value {
    let now = now();
    json!({"sub": sub, "role": role, "iat": now, "exp": now + ttl_seconds})
}

/// `claims` signed HS256 with `secret`, header `{"alg":"HS256","typ":"JWT"}`.
pub fn hs256(secret: &str, claims: &Value) -> String {
    compact(&json!({"alg": "HS256", "typ": "JWT"}), claims, Some(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_three_segments_signed_over_the_first_two() {
        let token = hs256("s3cret", &claims("u1", "user", 60));
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let input = format!("{}.{}", parts[0], parts[1]);
        assert_eq!(parts[2], hs256_sig("s3cret", &input));
        assert_ne!(parts[2], hs256_sig("other", &input));
        let none = compact(&json!({"alg": "none"}), &claims("u1", "user", 60), None);
        assert!(none.ends_with('.'), "{none}");
    }
}
