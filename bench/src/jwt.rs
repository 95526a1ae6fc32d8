//! HS256 tokens minted by the load tool, in the form the gateway verifies
//! (`sub`, `role`, `iat`, `exp`), signed with the secret the servers get.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A compact JWS for `sub` with `role`, valid for `ttl_seconds`.
pub fn mint(secret: &str, sub: &str, role: &str, ttl_seconds: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let header = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims =
        serde_json::json!({"sub": sub, "role": role, "iat": now, "exp": now + ttl_seconds});
    let payload = B64.encode(claims.to_string());
    let signing_input = format!("{header}.{payload}");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(signing_input.as_bytes());
    format!(
        "{signing_input}.{}",
        B64.encode(mac.finalize().into_bytes())
    )
}

#[cfg(test)]
mod tests {
    use sse_gateway::http::auth::{AuthConfig, Role, Verifier};

    #[test]
    fn the_gateway_core_accepts_minted_tokens() {
        let token = super::mint("s3cret", "bench-user", "user", 600);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let who = Verifier::new(AuthConfig::hs256(b"s3cret".to_vec()))
            .verify(&token, now)
            .unwrap();
        assert_eq!(who.user_id, "bench-user");
        assert_eq!(who.role, Role::User);
    }
}
