//! The verification settings read from configuration ([`AuthConfig`]):
//! the HS256 secret, the algorithm allow-list and the keys, with errors
//! that never quote a whole key.

use super::alg::Alg;
use super::keys::{parse_jwks, parse_pem_keys, KeySet};
use std::fmt;

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
    /// Accepted algorithms and public keys (default: HS256 only); set with
    /// [`AuthConfig::with_keys`].
    pub keys: KeySet,
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
            keys: KeySet::hs256_only(),
        }
    }

    /// Sets the accepted algorithms and adds public keys from config text.
    ///
    /// - `algorithms`: comma-separated allow-list of exact JOSE names from
    ///   `HS256`, `RS256`, `ES256`, `EdDSA` (spaces around names are
    ///   ignored). It replaces the current list; `none` is never accepted.
    /// - `pem`: zero or more PEM blocks, concatenated: `PUBLIC KEY` (SPKI:
    ///   RSA, EC P-256 or Ed25519) or `RSA PUBLIC KEY` (PKCS#1). A block may
    ///   carry a key id as an RFC 1421 header line, `kid: <id>` followed by a
    ///   blank line, before the base64 body; otherwise its `kid` is `None`.
    /// - `jwks`: a JWKS document, `{"keys": [...]}` with `RSA`, `EC`
    ///   (`P-256`) and `OKP` (`Ed25519`) keys. Entries for other uses (`use`
    ///   not `sig`, `key_ops` without `verify`), other curves or algorithms
    ///   (`alg` other than the key type's), or algorithms not in the allow-list
    ///   are skipped; a JWKS with no usable key at all is an error.
    ///
    /// A blank `pem` or `jwks` counts as absent. Keys are picked by the
    /// token's `kid` when it has one, so a key without a `kid` (the HS256
    /// secret, a PEM key without a `kid:` line) verifies only tokens without
    /// one. A token without `kid` is checked against the one key of its
    /// algorithm without a `kid` (or, when there is none, its algorithm's
    /// only key); when several keys fit, it must name one (each token costs
    /// at most one signature check). Calling this again
    /// replaces the allow-list and adds more keys.
    ///
    /// # Errors
    ///
    /// A message for the operator, naming the variable part and the key's
    /// position or `kid` but never key material: an unknown algorithm, bad
    /// PEM or JSON, a private key or certificate where a public key belongs,
    /// an RSA key under 2048 bits, an unsupported curve, a symmetric key in
    /// the JWKS, a PEM key whose algorithm is not allowed, a `kid` used
    /// twice, or a configuration that could verify no token at all (no
    /// public key, and HS256 not allowed or its secret empty).
    pub fn with_keys(
        mut self,
        algorithms: &str,
        pem: Option<&str>,
        jwks: Option<&str>,
    ) -> Result<AuthConfig, KeyError> {
        let algorithms = parse_algorithms(algorithms).map_err(KeyPart::Algorithms.with())?;
        let mut public_keys = std::mem::take(&mut self.keys.public_keys);
        if let Some(key) = public_keys
            .iter()
            .find(|key| !algorithms.contains(&key.material.alg()))
        {
            return Err(KeyPart::Algorithms.error(format!(
                "a configured {} public key needs {} in the allowed JWT algorithms",
                key.material.alg(),
                key.material.alg()
            )));
        }
        let earlier = public_keys.len();
        if let Some(text) = pem.filter(|t| !t.trim().is_empty()) {
            public_keys.extend(parse_pem_keys(text, &algorithms).map_err(KeyPart::Pem.with())?);
        }
        let from_pem = public_keys.len();
        if let Some(text) = jwks.filter(|t| !t.trim().is_empty()) {
            public_keys.extend(parse_jwks(text, &algorithms).map_err(KeyPart::Jwks.with())?);
        }
        // Keys of earlier calls were checked then, so a repeated kid belongs
        // to the text the later key came from.
        for (i, key) in public_keys.iter().enumerate().skip(earlier) {
            if let Some(kid) = &key.kid {
                if public_keys[..i].iter().any(|k| k.kid.as_ref() == Some(kid)) {
                    let part = if i < from_pem {
                        KeyPart::Pem
                    } else {
                        KeyPart::Jwks
                    };
                    return Err(part.error(format!(
                        "JWT key id {} is used by more than one key",
                        shown(kid)
                    )));
                }
            }
        }
        let hs256_usable = algorithms.contains(&Alg::Hs256) && !self.hs256_secret.is_empty();
        if !hs256_usable && public_keys.is_empty() {
            return Err(KeyPart::Missing.error(
                "no usable JWT verification key: HS256 needs a non-empty secret, \
                 RS256/ES256/EdDSA need public keys (PEM or JWKS)",
            ));
        }
        self.keys = KeySet {
            algorithms,
            public_keys,
        };
        Ok(self)
    }
}

/// Which input of [`AuthConfig::with_keys`] an error is about, so the
/// caller can name the variable that holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPart {
    /// The algorithm allow-list.
    Algorithms,
    /// The PEM text of public keys.
    Pem,
    /// The JWKS document.
    Jwks,
    /// No input can verify a token: neither a usable secret nor a public key.
    Missing,
}

impl KeyPart {
    fn error(self, problem: impl Into<String>) -> KeyError {
        KeyError {
            part: self,
            problem: problem.into(),
        }
    }

    fn with(self) -> impl FnOnce(String) -> KeyError {
        move |problem| self.error(problem)
    }
}

/// A refused key configuration: the input at fault and a message for the
/// operator that never holds key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    /// The input at fault.
    pub part: KeyPart,
    /// What is wrong with it.
    pub problem: String,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problem)
    }
}

impl std::error::Error for KeyError {}

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
            .field("keys", &self.keys)
            .finish()
    }
}

/// A configuration value quoted for an error message, cut short so a pasted
/// key can't end up in a log line.
pub(crate) fn shown(text: &str) -> String {
    const MAX: usize = 40;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{:?}...", &text[..end]),
        None => format!("{text:?}"),
    }
}

/// The comma-separated allow-list; empty entries are ignored, duplicates
/// collapse, and at least one algorithm must remain.
pub(crate) fn parse_algorithms(list: &str) -> Result<Vec<Alg>, String> {
    let mut algorithms = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if name.eq_ignore_ascii_case("none") {
            return Err("JWT algorithm \"none\" (unsigned tokens) is never accepted".to_owned());
        }
        let alg = Alg::from_name(name).ok_or_else(|| {
            format!(
                "unsupported JWT algorithm {}: use a comma-separated list of HS256, RS256, \
                 ES256, EdDSA (case-sensitive)",
                shown(name)
            )
        })?;
        if !algorithms.contains(&alg) {
            algorithms.push(alg);
        }
    }
    if algorithms.is_empty() {
        return Err(
            "no JWT algorithm allowed: list at least one of HS256, RS256, ES256, EdDSA".to_owned(),
        );
    }
    Ok(algorithms)
}
