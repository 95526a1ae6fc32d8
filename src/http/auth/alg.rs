//! The algorithms a token may name ([`Alg`]) and their verification-only
//! jwt-compact implementations: HS256 with ring's HMAC, and RS256, ES256
//! and EdDSA whose signatures ring checks.

use super::keys::Material;
use jwt_compact::{Algorithm, AlgorithmSignature};
use std::borrow::Cow;
use std::fmt;

/// A JWS algorithm the gateway can verify. Names are the exact,
/// case-sensitive JOSE names (RFC 7518 §3.1, RFC 8037 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    /// HMAC-SHA256 with the shared secret ([`AuthConfig::hs256_secret`](super::AuthConfig::hs256_secret)).
    Hs256,
    /// RSASSA-PKCS1-v1_5 with SHA-256; RSA keys of 2048 to 4096 bits.
    Rs256,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// EdDSA with Ed25519 keys (`EdDSA`).
    EdDsa,
}

impl Alg {
    /// Every supported algorithm, in the order error messages list them.
    pub const ALL: [Alg; 4] = [Alg::Hs256, Alg::Rs256, Alg::Es256, Alg::EdDsa];

    /// The JOSE `alg` value.
    pub fn name(self) -> &'static str {
        match self {
            Alg::Hs256 => "HS256",
            Alg::Rs256 => "RS256",
            Alg::Es256 => "ES256",
            Alg::EdDsa => "EdDSA",
        }
    }

    /// The algorithm with exactly this JOSE name; `None` for anything else
    /// (`none`, `hs256`, `HS512`, ...).
    pub fn from_name(name: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|alg| alg.name() == name)
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// RS256, ES256 or EdDSA as a verification-only jwt-compact algorithm, so
/// jwt-compact's validator (the token's `alg` must be this name, then the
/// claims) applies to ring-verified signatures as to HS256.
pub(crate) struct PublicKeyAlg(pub(crate) Alg);

/// No signing key exists: the gateway only verifies.
pub(crate) enum NoSigningKey {}

/// A signature as the token carries it; its length is checked by ring.
pub(crate) struct RawSignature(pub(crate) Vec<u8>);

impl AlgorithmSignature for RawSignature {
    fn try_from_slice(slice: &[u8]) -> anyhow::Result<Self> {
        Ok(RawSignature(slice.to_vec()))
    }

    fn as_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.0)
    }
}

impl Algorithm for PublicKeyAlg {
    type SigningKey = NoSigningKey;
    type VerifyingKey = Material;
    type Signature = RawSignature;

    fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed(self.0.name())
    }

    fn sign(&self, signing_key: &NoSigningKey, _message: &[u8]) -> RawSignature {
        match *signing_key {}
    }

    fn verify_signature(&self, signature: &RawSignature, key: &Material, message: &[u8]) -> bool {
        key.alg() == self.0 && key.verifies(message, &signature.0)
    }
}

/// HS256 (HMAC-SHA256) with ring's HMAC: the SHA-256 the TLS stack links
/// anyway, so the component carries one SHA-256 and one HMAC. Verification
/// is ring's constant-time `hmac::verify`. Same name and signature length
/// (32 bytes, checked by jwt-compact before verification) as jwt-compact's
/// `Hs256`, so the same tokens are accepted and refused.
pub(crate) struct Hs256;

/// An HS256 secret of any length (HMAC hashes keys longer than a block).
pub(crate) struct Hs256Key(pub(crate) ring::hmac::Key);

impl Hs256Key {
    pub(crate) fn new(secret: impl AsRef<[u8]>) -> Self {
        Hs256Key(ring::hmac::Key::new(
            ring::hmac::HMAC_SHA256,
            secret.as_ref(),
        ))
    }
}

/// An HS256 signature: the 32-byte HMAC-SHA256 tag.
pub(crate) struct Hs256Signature(pub(crate) [u8; 32]);

impl AlgorithmSignature for Hs256Signature {
    const LENGTH: Option<std::num::NonZeroUsize> = std::num::NonZeroUsize::new(32);

    fn try_from_slice(slice: &[u8]) -> anyhow::Result<Self> {
        let tag = <[u8; 32]>::try_from(slice)
            .map_err(|_| anyhow::anyhow!("HS256 signature must be 32 bytes"))?;
        Ok(Hs256Signature(tag))
    }

    fn as_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.0)
    }
}

impl Algorithm for Hs256 {
    type SigningKey = Hs256Key;
    type VerifyingKey = Hs256Key;
    type Signature = Hs256Signature;

    fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed("HS256")
    }

    fn sign(&self, key: &Hs256Key, message: &[u8]) -> Hs256Signature {
        let tag = ring::hmac::sign(&key.0, message);
        let mut out = [0; 32];
        out.copy_from_slice(tag.as_ref());
        Hs256Signature(out)
    }

    fn verify_signature(&self, signature: &Hs256Signature, key: &Hs256Key, message: &[u8]) -> bool {
        ring::hmac::verify(&key.0, message, &signature.0).is_ok()
    }
}
