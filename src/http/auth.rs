//! JWT verification: turns a bearer token or `access_token` cookie into an
//! [`Identity`], or an [`AuthError`] the shell maps to a 401.
//!
//! Pure and host-testable: no clock access (the caller passes `now` as unix
//! seconds), no I/O. Tokens are parsed and checked with `jwt-compact`; the
//! public-key signatures are verified with `ring` (the TLS stack's crypto,
//! linked anyway) through a verification-only [`jwt_compact::Algorithm`].
//!
//! Accepted algorithms: HS256 with a shared secret, and RS256, ES256 (P-256)
//! and EdDSA (Ed25519) with public keys from configuration (PEM or a JWKS
//! document, see [`AuthConfig::with_keys`]). The allow-list is fixed by
//! configuration and never taken from the token, and each key verifies only
//! its own algorithm, so `alg: none` and algorithm confusion (an HS256 token
//! whose "secret" is a public key, `HS512`, an ES256 header against an RSA
//! key, ...) are refused. A token's `kid` picks the key; keys embedded in or
//! referenced by the token (`jwk`, `jku`, `x5u`, `x5c`) are never used, and
//! a token carrying any of those parameters (even as `null`) is refused.

use serde_json::Value;
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

mod alg;
mod config;
mod keys;
mod token;
mod verify;

pub use alg::Alg;
pub(crate) use alg::{Hs256, Hs256Key};
pub use config::{AuthConfig, KeyError, KeyPart};
pub use keys::KeySet;
pub use token::token_from_headers;
pub use verify::Verifier;

#[cfg(test)]
mod key_tests;
#[cfg(test)]
mod tests;
