//! HS256 tokens minted by the load tool, in the form the gateway verifies
//! (`sub`, `role`, `iat`, `exp`), signed with the secret the servers get.

use sse_gateway_testkit::jwt::{claims, hs256};

/// A compact JWS for `sub` with `role`, valid for `ttl_seconds`.
pub fn mint(secret: &str, sub: &str, role: &str, ttl_seconds: i64) -> String {
    hs256(secret, &claims(sub, role, ttl_seconds))
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
