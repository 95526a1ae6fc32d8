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

use chrono::{DateTime, TimeDelta, Utc};
use jwt_compact::{
    jwk::JsonWebKey, Algorithm, AlgorithmExt as _, AlgorithmSignature, Claims, TimeOptions,
    UntrustedToken, ValidationError,
};
use pkcs1::der::Decode as _;
use serde::Deserialize;
use serde_json::{Map, Value};
use spki::{ObjectIdentifier, SubjectPublicKeyInfoRef};
use std::borrow::Cow;
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

/// A JWS algorithm the gateway can verify. Names are the exact,
/// case-sensitive JOSE names (RFC 7518 §3.1, RFC 8037 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    /// HMAC-SHA256 with the shared secret ([`AuthConfig::hs256_secret`]).
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

/// The accepted algorithms and the public keys, parsed once from
/// configuration. Build it with [`AuthConfig::hs256`] (HS256 only, no public
/// keys) and [`AuthConfig::with_keys`].
#[derive(Clone)]
pub struct KeySet {
    algorithms: Vec<Alg>,
    public_keys: Vec<PublicKey>,
}

impl KeySet {
    /// HS256 only, no public keys: the gateway's original configuration.
    fn hs256_only() -> Self {
        KeySet {
            algorithms: vec![Alg::Hs256],
            public_keys: Vec::new(),
        }
    }

    /// The allow-list, in configuration order.
    pub fn algorithms(&self) -> &[Alg] {
        &self.algorithms
    }

    /// Whether tokens signed with `alg` may be accepted (given a key).
    pub fn allows(&self, alg: Alg) -> bool {
        self.algorithms.contains(&alg)
    }

    /// How many public keys (PEM and JWKS) are configured.
    pub fn public_key_count(&self) -> usize {
        self.public_keys.len()
    }
}

/// Public keys are not secret, but only their algorithm and `kid` are
/// interesting in a log line.
impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("algorithms", &self.algorithms)
            .field("public_keys", &self.public_keys)
            .finish()
    }
}

/// One configured public key; `kid` comes from the JWKS entry or from a
/// `kid:` header line in the PEM block.
#[derive(Clone)]
struct PublicKey {
    kid: Option<String>,
    material: Material,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}(kid {:?})", self.material.alg(), self.kid)
    }
}

/// Parsed public key material, in the forms `ring` verifies; each kind
/// verifies exactly one algorithm.
#[derive(Clone)]
enum Material {
    /// Modulus and public exponent, big-endian without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// Uncompressed SEC1 point, `0x04 || x || y`.
    P256(Box<[u8; 65]>),
    /// The 32-byte encoded point, checked canonical and of large order.
    Ed25519([u8; 32]),
}

impl Material {
    fn alg(&self) -> Alg {
        match self {
            Material::Rsa { .. } => Alg::Rs256,
            Material::P256(_) => Alg::Es256,
            Material::Ed25519(_) => Alg::EdDsa,
        }
    }

    /// Key type for error messages ("an RSA key").
    fn kind(&self) -> &'static str {
        match self {
            Material::Rsa { .. } => "an RSA",
            Material::P256(_) => "an EC P-256",
            Material::Ed25519(_) => "an Ed25519",
        }
    }

    /// Whether `signature` is this key's signature of `message` under its
    /// one algorithm. ring re-checks the key itself on every call (RSA
    /// 2048-8192 bits, the EC point on the curve).
    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
        match self {
            Material::Rsa { n, e } => RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, signature)
                .is_ok(),
            Material::P256(point) => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &point[..])
                    .verify(message, signature)
                    .is_ok()
            }
            Material::Ed25519(key) => UnparsedPublicKey::new(&signature::ED25519, key)
                .verify(message, signature)
                .is_ok(),
        }
    }
}

/// RS256, ES256 or EdDSA as a verification-only jwt-compact algorithm, so
/// jwt-compact's validator (the token's `alg` must be this name, then the
/// claims) applies to ring-verified signatures as to HS256.
struct PublicKeyAlg(Alg);

/// No signing key exists: the gateway only verifies.
enum NoSigningKey {}

/// A signature as the token carries it; its length is checked by ring.
struct RawSignature(Vec<u8>);

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
pub(crate) struct Hs256Key(ring::hmac::Key);

impl Hs256Key {
    pub(crate) fn new(secret: impl AsRef<[u8]>) -> Self {
        Hs256Key(ring::hmac::Key::new(
            ring::hmac::HMAC_SHA256,
            secret.as_ref(),
        ))
    }
}

/// An HS256 signature: the 32-byte HMAC-SHA256 tag.
pub(crate) struct Hs256Signature([u8; 32]);

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
fn shown(text: &str) -> String {
    const MAX: usize = 40;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{:?}...", &text[..end]),
        None => format!("{text:?}"),
    }
}

/// The comma-separated allow-list; empty entries are ignored, duplicates
/// collapse, and at least one algorithm must remain.
fn parse_algorithms(list: &str) -> Result<Vec<Alg>, String> {
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

const OID_RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// RFC 7518 §3.3: RS256 keys must have at least 2048 bits.
const MIN_RSA_BITS: usize = 2048;
/// Larger moduli are refused: each costs more per verification, and no
/// issuer needs them (the limit the gateway has always had).
const MAX_RSA_BITS: usize = 4096;

/// Bit length of a big-endian number without leading zeros.
fn bits(be: &[u8]) -> usize {
    be.first()
        .map_or(0, |top| be.len() * 8 - top.leading_zeros() as usize)
}

/// An RSA key from its numbers (leading zero bytes allowed). `malformed` is
/// the caller's message for numbers no RSA key can have: ring's own rules
/// (odd modulus, odd exponent from 3 to 2^33 - 1) and at most 4096 bits,
/// checked here so a bad key is refused at startup, not at every token.
fn rsa_checked(n: &[u8], e: &[u8], malformed: &'static str) -> Result<Material, &'static str> {
    let strip = |x: &[u8]| -> Vec<u8> { x[x.iter().take_while(|b| **b == 0).count()..].to_vec() };
    let (n, e) = (strip(n), strip(e));
    let odd = |x: &[u8]| x.last().is_some_and(|b| b & 1 == 1);
    let e_too_small = e.len() == 1 && e[0] < 3;
    if !odd(&n) || !odd(&e) || e_too_small || bits(&e) > 33 || bits(&e) >= bits(&n) {
        return Err(malformed);
    }
    if bits(&n) > MAX_RSA_BITS {
        return Err(malformed);
    }
    if bits(&n) < MIN_RSA_BITS {
        return Err("RSA key shorter than 2048 bits");
    }
    Ok(Material::Rsa { n, e })
}

/// An RSA key from DER `RSAPublicKey` (PKCS#1), as SPKI wraps it too.
fn rsa_from_pkcs1(der: &[u8], malformed: &'static str) -> Result<Material, &'static str> {
    let key = pkcs1::RsaPublicKey::from_der(der).map_err(|_| malformed)?;
    rsa_checked(
        key.modulus.as_bytes(),
        key.public_exponent.as_bytes(),
        malformed,
    )
}

/// A P-256 point from its 32-byte coordinates. That it lies on the curve
/// is checked by ring at each verification: an off-curve key verifies no
/// token.
fn p256_from_xy(x: &[u8], y: &[u8]) -> Option<Material> {
    if x.len() != 32 || y.len() != 32 {
        return None;
    }
    let mut point = Box::new([0x04; 65]);
    point[1..33].copy_from_slice(x);
    point[33..].copy_from_slice(y);
    Some(Material::P256(point))
}

/// An Ed25519 key from its encoding; `wrong_length` is the caller's message
/// for anything but 32 bytes.
fn ed25519_checked(raw: &[u8], wrong_length: &'static str) -> Result<Material, &'static str> {
    let key: [u8; 32] = raw.try_into().map_err(|_| wrong_length)?;
    // Refuse non-canonical encodings and small-order points up front (ring
    // does not): a small-order key would accept forged signatures.
    ed25519_compact::PublicKey::new(key)
        .validate()
        .map_err(|_| "invalid Ed25519 public key (not a canonical point of large order)")?;
    Ok(Material::Ed25519(key))
}

/// Key material from DER `SubjectPublicKeyInfo`, by its algorithm OID.
fn material_from_spki(der: &[u8]) -> Result<Material, &'static str> {
    let spki = SubjectPublicKeyInfoRef::try_from(der)
        .map_err(|_| "malformed public key (not DER SubjectPublicKeyInfo)")?;
    let key = spki.subject_public_key.as_bytes();
    match spki.algorithm.oid {
        OID_RSA_ENCRYPTION => {
            const MALFORMED: &str = "malformed or out-of-range RSA public key";
            // RFC 3279 §2.3.1: the parameters are NULL.
            let null = spki::der::asn1::AnyRef::from(spki::der::asn1::Null);
            if spki.algorithm.parameters_any().ok() != Some(null) {
                return Err(MALFORMED);
            }
            rsa_from_pkcs1(key.ok_or(MALFORMED)?, MALFORMED)
        }
        OID_EC_PUBLIC_KEY => {
            if spki.algorithm.parameters_oid().ok() != Some(OID_P256) {
                return Err("EC key on an unsupported curve (only P-256, for ES256)");
            }
            match key {
                Some([0x04, xy @ ..]) if xy.len() == 64 => p256_from_xy(&xy[..32], &xy[32..]),
                _ => None,
            }
            .ok_or("malformed EC P-256 public key (expected an uncompressed point)")
        }
        OID_ED25519 => {
            if spki.algorithm.parameters.is_some() {
                return Err("malformed Ed25519 public key (unexpected parameters)");
            }
            let raw = key.ok_or("malformed Ed25519 public key")?;
            ed25519_checked(raw, "malformed Ed25519 public key (not 32 bytes)")
        }
        _ => Err("unsupported public key type (expected RSA, EC P-256 or Ed25519)"),
    }
}

/// Every PEM block in `text`; each must be a public key of an allowed algorithm.
fn parse_pem_keys(text: &str, algorithms: &[Alg]) -> Result<Vec<PublicKey>, String> {
    let blocks = pem::parse_many(text).map_err(|_| {
        "JWT public key PEM is malformed (check the BEGIN/END lines and the base64 body)".to_owned()
    })?;
    if blocks.is_empty() {
        return Err("JWT public key PEM holds no -----BEGIN PUBLIC KEY----- block".to_owned());
    }
    let mut keys = Vec::with_capacity(blocks.len());
    for (i, block) in blocks.iter().enumerate() {
        let n = i + 1;
        let material = match block.tag() {
            "PUBLIC KEY" => material_from_spki(block.contents()),
            "RSA PUBLIC KEY" => rsa_from_pkcs1(
                block.contents(),
                "malformed or out-of-range PKCS#1 RSA public key",
            ),
            tag if tag.ends_with("PRIVATE KEY") => Err(
                "a private key, not a public key: configure only the public half \
                 (openssl pkey -in KEY -pubout)",
            ),
            "CERTIFICATE" => Err("a certificate: configure its public key instead \
                 (openssl x509 -in CERT -pubkey -noout)"),
            _ => Err("not a public key: expected PUBLIC KEY or RSA PUBLIC KEY"),
        }
        .map_err(|why| {
            format!(
                "JWT public key PEM block {n} ({}): {why}",
                shown(block.tag())
            )
        })?;
        let alg = material.alg();
        if !algorithms.contains(&alg) {
            return Err(format!(
                "JWT public key PEM block {n} is {} key, but {alg} is not in the allowed \
                 JWT algorithms",
                material.kind()
            ));
        }
        let kid = match block.headers().get("kid").map(str::trim) {
            None => None,
            Some("") => return Err(format!("JWT public key PEM block {n}: empty kid header")),
            Some(kid) => Some(kid.to_owned()),
        };
        keys.push(PublicKey { kid, material });
    }
    Ok(keys)
}

/// The JWKS document's top level; entries are looked at one by one.
#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Value>,
}

/// The usable signing keys of a JWKS document (see [`AuthConfig::with_keys`]).
fn parse_jwks(text: &str, algorithms: &[Alg]) -> Result<Vec<PublicKey>, String> {
    let doc: Jwks = serde_json::from_str(text).map_err(|e| {
        format!(
            "JWKS is not a JSON object with a \"keys\" array (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    let mut keys = Vec::new();
    for (i, entry) in doc.keys.iter().enumerate() {
        let n = i + 1;
        let Some(fields) = entry.as_object() else {
            return Err(format!("JWKS key {n} is not a JSON object"));
        };
        let kid = match fields.get("kid") {
            None => None,
            Some(Value::String(kid)) if !kid.is_empty() => Some(kid.clone()),
            Some(_) => return Err(format!("JWKS key {n}: kid must be a non-empty string")),
        };
        let label = match &kid {
            Some(kid) => format!("JWKS key {n} (kid {})", shown(kid)),
            None => format!("JWKS key {n}"),
        };
        // Encryption keys and keys for other operations are not ours to use.
        if fields.get("use").is_some_and(|u| u != "sig") {
            continue;
        }
        if let Some(ops) = fields.get("key_ops") {
            let verify = ops
                .as_array()
                .is_some_and(|ops| ops.iter().any(|op| op == "verify"));
            if !verify {
                continue;
            }
        }
        let kty = fields.get("kty").and_then(Value::as_str);
        let crv = fields.get("crv").and_then(Value::as_str);
        let alg = match (kty, crv) {
            (Some("RSA"), _) => Alg::Rs256,
            (Some("EC"), Some("P-256")) => Alg::Es256,
            (Some("OKP"), Some("Ed25519")) => Alg::EdDsa,
            (Some("oct"), _) => {
                return Err(format!(
                    "{label} is a symmetric (oct) key: a shared secret must not be published \
                     in a JWKS; configure it as the HS256 secret"
                ))
            }
            (None, _) => return Err(format!("{label} has no kty")),
            // Other key types and curves (P-384, X25519, ...) are not supported.
            _ => continue,
        };
        match fields.get("alg") {
            None => {}
            Some(Value::String(name)) if name == alg.name() => {}
            // RS512, PS256, ... or an alg that does not fit the key type.
            Some(Value::String(_)) => continue,
            Some(_) => return Err(format!("{label}: alg must be a string")),
        }
        if !algorithms.contains(&alg) {
            continue;
        }
        if fields.contains_key("d") {
            return Err(format!(
                "{label} contains private key material (\"d\"): publish only public keys"
            ));
        }
        let jwk: JsonWebKey<'_> = serde_json::from_value(entry.clone())
            .map_err(|_| format!("{label}: malformed key (check its base64url fields)"))?;
        let material = match (alg, &jwk) {
            (
                Alg::Rs256,
                JsonWebKey::Rsa {
                    modulus,
                    public_exponent,
                    ..
                },
            ) => rsa_checked(
                modulus,
                public_exponent,
                "malformed or out-of-range RSA key",
            ),
            (Alg::Es256, JsonWebKey::EllipticCurve { x, y, .. }) => p256_from_xy(x, y)
                .ok_or("malformed EC P-256 key (x and y must be 32-byte coordinates)"),
            (Alg::EdDsa, JsonWebKey::KeyPair { x, .. }) => {
                ed25519_checked(x, "malformed Ed25519 key (x must be 32 bytes)")
            }
            _ => Err("malformed key"),
        }
        .map_err(|why| format!("{label}: {why}"))?;
        keys.push(PublicKey { kid, material });
    }
    if keys.is_empty() {
        return Err(format!(
            "JWKS has no signing key usable with the allowed JWT algorithms ({})",
            algorithms
                .iter()
                .map(|a| a.name())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(keys)
}

/// One accepted (algorithm, key) pair. The algorithm comes from here, never
/// from the token.
enum VerifyKey {
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
type OtherClaims = Map<String, Value>;

/// Header parameters that make a token refused whatever their value (even
/// `null`): `crit` (RFC 7515 §4.1.11: we understand no extensions) and the
/// ones that embed or point at keys (`jwk`, `jku`, `x5c`, `x5u`), which are
/// never trusted: the key always comes from configuration.
const REFUSED_HEADER_PARAMS: [(&str, &str); 5] = [
    ("crit", "unsupported critical header"),
    ("jwk", "embedded or remote keys are not accepted"),
    ("jku", "embedded or remote keys are not accepted"),
    ("x5c", "embedded or remote keys are not accepted"),
    ("x5u", "embedded or remote keys are not accepted"),
];

/// One part of the compact token (0 header, 1 payload) as JSON text. It is
/// decoded again by jwt-compact, with the same strict unpadded base64url.
fn raw_part(token: &str, n: usize) -> Option<String> {
    use base64ct::{Base64UrlUnpadded, Encoding as _};
    let b64 = token.split('.').nth(n)?;
    String::from_utf8(Base64UrlUnpadded::decode_vec(b64).ok()?).ok()
}

/// Refuses a header holding any of [`REFUSED_HEADER_PARAMS`] or repeating a
/// key. Looks at the raw JSON: serde reads `"x5c": null` as an absent field,
/// and jwt-compact's `Header` consumes `jku`/`x5u` (found by the
/// `jwt_verify` fuzz target).
fn check_raw_header(token: &str) -> Result<(), AuthError> {
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
fn check_raw_claims(token: &str) -> Result<(), AuthError> {
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
    algorithms: Vec<Alg>,
    keys: Vec<VerifyKey>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: TimeDelta,
    user_claim: String,
    role_claim: String,
    max_token_bytes: usize,
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

/// Picks the request's one credential from its raw header values.
///
/// - `Authorization: Bearer <t>` (scheme case-insensitive) comes first; when
///   one is present the cookie is not looked at, even if the bearer token
///   then fails to verify (no fallback: a request has one identity). Other
///   schemes (`Basic ...`) are ignored.
/// - Otherwise the `access_token` cookie, from any of the `Cookie` values
///   (`a=b; access_token=xyz; c=d`, optional surrounding double quotes).
///   Other cookies are never decoded, so a sibling site's cookie holding
///   bytes that are not UTF-8 changes nothing.
/// - Empty values count as absent. The same token sent twice is fine; two
///   different `access_token` cookies (say one planted for a parent domain)
///   or two different bearer tokens are refused rather than guessed
///   between, and so is a credential that is not UTF-8.
///
/// # Errors
///
/// [`AuthError::Missing`] when there is no credential at all, otherwise
/// [`AuthError::Invalid`] with a fixed reason.
pub fn token_from_headers<'a>(
    authorization: &[&'a [u8]],
    cookies: &[&'a [u8]],
) -> Result<&'a str, AuthError> {
    let bearers = authorization.iter().filter_map(|h| bearer_token(h));
    if let Some(token) = only_one(bearers, "conflicting bearer tokens")? {
        return Ok(token);
    }
    let values = cookies
        .iter()
        .flat_map(|header| header.split(|b| *b == b';'))
        .filter_map(|pair| {
            let eq = pair.iter().position(|b| *b == b'=')?;
            (pair[..eq].trim_ascii() == b"access_token").then(|| {
                let value = pair[eq + 1..].trim_ascii();
                strip_quotes(value).trim_ascii()
            })
        })
        .filter(|value| !value.is_empty());
    only_one(values, "conflicting access_token cookies")?.ok_or(AuthError::Missing)
}

/// The value all of `values` agree on (as UTF-8), `None` when there are none.
fn only_one<'a>(
    values: impl Iterator<Item = &'a [u8]>,
    conflict: &'static str,
) -> Result<Option<&'a str>, AuthError> {
    let mut picked: Option<&[u8]> = None;
    for value in values {
        match picked {
            Some(p) if p != value => return Err(AuthError::Invalid(conflict)),
            _ => picked = Some(value),
        }
    }
    picked
        .map(|v| std::str::from_utf8(v).map_err(|_| AuthError::Invalid("credential is not UTF-8")))
        .transpose()
}

/// `Bearer <token>` with any scheme case; `None` for other schemes or no token.
fn bearer_token(header: &[u8]) -> Option<&[u8]> {
    let header = header.trim_ascii();
    let split = header.iter().position(u8::is_ascii_whitespace)?;
    if !header[..split].eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let token = header[split..].trim_ascii();
    (!token.is_empty()).then_some(token)
}

fn strip_quotes(value: &[u8]) -> &[u8] {
    value
        .strip_prefix(b"\"")
        .and_then(|v| v.strip_suffix(b"\""))
        .unwrap_or(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    // Tokens are signed with jwt-compact's own HS256 (RustCrypto): an
    // issuer independent of the ring HS256 the verifier uses.
    use jwt_compact::{
        alg::{Hs256, Hs256Key, Hs512, Hs512Key},
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
            ok(&v, &sign(json!({"sub": "u", "exp": NOW - 29}))).expires_at,
            NOW - 29
        );
        invalid(
            &v,
            &sign(json!({"sub": "u", "exp": NOW - 30})),
            "token expired",
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
        // Not accepted on `exp` itself, as a stream ends at that second.
        invalid(
            &strict,
            &sign(json!({"sub": "u", "exp": NOW})),
            "token expired",
        );
        ok(&strict, &sign(json!({"sub": "u", "exp": NOW + 1})));

        let negative = Verifier::new(AuthConfig {
            leeway_seconds: -1000,
            ..AuthConfig::hs256(SECRET)
        });
        ok(&negative, &sign(json!({"sub": "u", "exp": NOW + 1})));
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

    /// `token_from_headers` on text headers.
    fn pick<'a>(authorization: Option<&'a str>, cookies: &[&'a str]) -> Result<&'a str, AuthError> {
        let auth: Vec<&[u8]> = authorization.iter().map(|a| a.as_bytes()).collect();
        let cookies: Vec<&[u8]> = cookies.iter().map(|c| c.as_bytes()).collect();
        token_from_headers(&auth, &cookies)
    }

    #[test]
    fn token_from_headers_bearer() {
        assert_eq!(pick(Some("Bearer abc.def.ghi"), &[]), Ok("abc.def.ghi"));
        assert_eq!(pick(Some("bearer abc"), &[]), Ok("abc"));
        assert_eq!(pick(Some("BEARER   abc  "), &[]), Ok("abc"));
        assert_eq!(pick(Some("Bearer\tabc"), &[]), Ok("abc"));
        for none in ["Bearer ", "Bearer", "Basic dXNlcjpwYXNz", "Bearerabc", ""] {
            assert_eq!(pick(Some(none), &[]), Err(AuthError::Missing), "{none:?}");
        }
    }

    #[test]
    fn token_from_headers_cookie() {
        assert_eq!(pick(None, &["a=b; access_token=xyz; c=d"]), Ok("xyz"));
        assert_eq!(pick(None, &["access_token=xyz"]), Ok("xyz"));
        assert_eq!(pick(None, &["access_token=\"xyz\""]), Ok("xyz"));
        assert_eq!(pick(None, &["a=b", "c=d;access_token=t2"]), Ok("t2"));
        assert_eq!(
            pick(None, &["x_access_token=no; access_tokens=no"]),
            Err(AuthError::Missing)
        );
        assert_eq!(
            pick(None, &["access_token=; access_token=later"]),
            Ok("later")
        );
        for none in ["access_token=\"\"", "access_token=", "garbage;;=;"] {
            assert_eq!(pick(None, &[none]), Err(AuthError::Missing), "{none:?}");
        }
        // Base64 padding in a cookie value keeps its `=`.
        assert_eq!(pick(None, &["access_token=ab=="]), Ok("ab=="));
        // A non-bearer Authorization header falls back to the cookie.
        assert_eq!(pick(Some("Basic Zm9v"), &["access_token=c"]), Ok("c"));
        assert_eq!(pick(Some("Bearer "), &["access_token=c"]), Ok("c"));
    }

    #[test]
    fn token_from_headers_precedence_and_absence() {
        assert_eq!(
            pick(Some("Bearer from-header"), &["access_token=from-cookie"]),
            Ok("from-header")
        );
        assert_eq!(pick(None, &[]), Err(AuthError::Missing));
        assert_eq!(pick(None, &["session=1"]), Err(AuthError::Missing));
    }

    #[test]
    fn foreign_cookies_are_never_decoded() {
        let cookies: [&[u8]; 2] = [b"theme=\xff\xfe; access_token=t", b"x\x80=\x81"];
        assert_eq!(token_from_headers(&[], &cookies), Ok("t"));
        let cookies: [&[u8]; 1] = [b"theme=\xff"];
        assert_eq!(token_from_headers(&[], &cookies), Err(AuthError::Missing));
        // A non-UTF-8 header that is not a bearer token is ignored too.
        let auth: [&[u8]; 1] = [b"Basic \xff"];
        assert_eq!(token_from_headers(&auth, &[b"access_token=t"]), Ok("t"));
    }

    #[test]
    fn our_credential_must_be_utf8() {
        let bad = AuthError::Invalid("credential is not UTF-8");
        let cookies: [&[u8]; 1] = [b"access_token=\xff\xfet"];
        assert_eq!(token_from_headers(&[], &cookies), Err(bad.clone()));
        let auth: [&[u8]; 1] = [b"Bearer \xc3\x28t"];
        assert_eq!(token_from_headers(&auth, &[]), Err(bad));
    }

    #[test]
    fn conflicting_credentials_are_refused_identical_ones_are_not() {
        let cookie_conflict = Err(AuthError::Invalid("conflicting access_token cookies"));
        assert_eq!(
            pick(None, &["access_token=a; access_token=b"]),
            cookie_conflict
        );
        assert_eq!(
            pick(None, &["access_token=a", "access_token=b"]),
            cookie_conflict
        );
        assert_eq!(
            pick(None, &["access_token=a; x=1", "access_token=\"a\""]),
            Ok("a")
        );
        // The bearer token wins without looking at conflicting cookies.
        assert_eq!(
            pick(Some("Bearer t"), &["access_token=a; access_token=b"]),
            Ok("t")
        );
        let auth: [&[u8]; 2] = [b"Bearer a", b"Bearer b"];
        assert_eq!(
            token_from_headers(&auth, &[]),
            Err(AuthError::Invalid("conflicting bearer tokens"))
        );
        let auth: [&[u8]; 2] = [b"Bearer a", b"bearer  a"];
        assert_eq!(token_from_headers(&auth, &[]), Ok("a"));
    }

    #[test]
    fn end_to_end_cookie_token_verifies() {
        let token = sign(json!({"sub": "42", "exp": NOW + 60, "role": "service"}));
        let cookie = format!("theme=dark; access_token={token}");
        let picked = pick(None, &[cookie.as_str()]).expect("token");
        assert_eq!(ok(&verifier(), picked).role, Role::Service);
    }

    #[test]
    fn repeated_keys_are_refused_in_header_and_claims() {
        let v = verifier();
        let exp = NOW + 600;
        for (header, payload, reason) in [
            (
                r#"{"alg":"HS256"}"#,
                format!(r#"{{"sub":"u","role":"user","role":"admin","exp":{exp}}}"#),
                "duplicate key in token claims",
            ),
            (
                r#"{"alg":"HS256"}"#,
                format!(r#"{{"sub":"victim","sub":"u","exp":{exp}}}"#),
                "duplicate key in token claims",
            ),
            (
                r#"{"alg":"HS256"}"#,
                format!(r#"{{"sub":"u","exp":{exp},"exp":{exp}}}"#),
                "malformed claims",
            ),
            (
                r#"{"alg":"HS256","alg":"HS256"}"#,
                format!(r#"{{"sub":"u","exp":{exp}}}"#),
                "duplicate key in token header",
            ),
            (
                r#"{"alg":"HS256","kid":"a","k\u0069d":"b"}"#,
                format!(r#"{{"sub":"u","exp":{exp}}}"#),
                "duplicate key in token header",
            ),
        ] {
            invalid(&v, &hand_signed(header, &payload), reason);
        }
        // Repeats inside a nested claim are not ours to judge.
        let nested = format!(r#"{{"sub":"u","exp":{exp},"ctx":{{"a":1,"a":2}}}}"#);
        assert_eq!(
            ok(&v, &hand_signed(r#"{"alg":"HS256"}"#, &nested)).user_id,
            "u"
        );
    }

    #[test]
    fn user_ids_outside_the_id_charset_are_refused() {
        let v = verifier();
        let long = "a".repeat(5000);
        for sub in [
            "a\r\nb",
            "*",
            "a\u{0}b",
            "a b",
            "user@example.com",
            "..",
            &long,
        ] {
            let token = sign(json!({"sub": sub, "exp": NOW + 60}));
            invalid(&v, &token, "user id outside the id charset");
        }
        let max = "u".repeat(crate::http::routes::MAX_ID_LEN);
        for sub in ["alice", "u-1_x.y:z", max.as_str()] {
            assert_eq!(
                ok(&v, &sign(json!({"sub": sub, "exp": NOW + 60}))).user_id,
                sub
            );
        }
    }
}

/// RS256, ES256 and EdDSA with keys from PEM and JWKS, and every way a token
/// or a configuration can try to get around the fixed algorithms.
#[cfg(test)]
mod key_tests {
    use super::*;
    use ed25519_compact::{KeyPair, SecretKey, Seed};
    use jwt_compact::alg::{Ed25519, Es256, Hs256, Hs256Key, Rsa, RsaPublicKey};
    use p256::ecdsa::SigningKey as P256Signer;
    use p256::pkcs8::DecodePrivateKey as _;
    use rsa::traits::PublicKeyParts as _;
    use rsa::RsaPrivateKey;
    use serde_json::json;
    use std::sync::OnceLock;

    const NOW: i64 = 1_700_000_000;
    const SECRET: &[u8] = b"test-secret-for-the-sse-gateway-0123456789";

    // Throwaway keys made with OpenSSL (see auth/testdata/README.md).
    const RSA_KEY: &str = include_str!("auth/testdata/rsa.key.pem");
    const RSA_PUB: &str = include_str!("auth/testdata/rsa.pub.pem");
    const RSA_PKCS1_PUB: &str = include_str!("auth/testdata/rsa.pkcs1.pub.pem");
    const RSA2_KEY: &str = include_str!("auth/testdata/rsa2.key.pem");
    const RSA2_PUB: &str = include_str!("auth/testdata/rsa2.pub.pem");
    const RSA1024_PUB: &str = include_str!("auth/testdata/rsa1024.pub.pem");
    const EC_KEY: &str = include_str!("auth/testdata/ec.key.pem");
    const EC_PUB: &str = include_str!("auth/testdata/ec.pub.pem");
    const EC2_KEY: &str = include_str!("auth/testdata/ec2.key.pem");
    const EC2_PUB: &str = include_str!("auth/testdata/ec2.pub.pem");
    const EC384_PUB: &str = include_str!("auth/testdata/ec384.pub.pem");
    const ED_KEY: &str = include_str!("auth/testdata/ed25519.key.pem");
    const ED_PUB: &str = include_str!("auth/testdata/ed25519.pub.pem");
    const ED2_KEY: &str = include_str!("auth/testdata/ed25519-2.key.pem");
    const ED2_PUB: &str = include_str!("auth/testdata/ed25519-2.pub.pem");

    fn der(pem_text: &str) -> Vec<u8> {
        pem::parse(pem_text).expect("test PEM").into_contents()
    }

    fn rsa_key(pem_text: &'static str) -> &'static RsaPrivateKey {
        static KEYS: OnceLock<[RsaPrivateKey; 2]> = OnceLock::new();
        let keys = KEYS.get_or_init(|| {
            let load = |p: &str| {
                use rsa::pkcs8::DecodePrivateKey as _;
                RsaPrivateKey::from_pkcs8_der(&der(p)).expect("RSA test key")
            };
            [load(RSA_KEY), load(RSA2_KEY)]
        });
        if pem_text == RSA_KEY {
            &keys[0]
        } else {
            &keys[1]
        }
    }

    fn ec_key(pem_text: &str) -> P256Signer {
        P256Signer::from_pkcs8_der(&der(pem_text)).expect("EC test key")
    }

    fn ed_key(pem_text: &str) -> SecretKey {
        let der = der(pem_text);
        let info = rsa::pkcs8::PrivateKeyInfo::try_from(der.as_slice()).expect("PKCS#8");
        // CurvePrivateKey ::= OCTET STRING: 0x04 0x20 then the 32-byte seed.
        let seed: [u8; 32] = info.private_key[2..].try_into().expect("seed");
        KeyPair::from_seed(Seed::new(seed)).sk
    }

    /// Which private key signs a test token.
    #[derive(Clone, Copy)]
    enum Signer {
        Hs(&'static [u8]),
        Rs(&'static str),
        Es(&'static str),
        Ed(&'static str),
    }

    fn b64url(data: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
    }

    /// A token over raw header and payload JSON, signed by `signer` whatever
    /// the header says (so headers can lie about `alg`).
    fn raw_token(signer: Signer, header: &str, payload: &str) -> String {
        let input = format!(
            "{}.{}",
            b64url(header.as_bytes()),
            b64url(payload.as_bytes())
        );
        let sig = match signer {
            Signer::Hs(secret) => Hs256
                .sign(&Hs256Key::new(secret), input.as_bytes())
                .as_bytes()
                .into_owned(),
            Signer::Rs(key) => Rsa::rs256()
                .sign(rsa_key(key), input.as_bytes())
                .as_bytes()
                .into_owned(),
            Signer::Es(key) => Es256
                .sign(&ec_key(key), input.as_bytes())
                .as_bytes()
                .into_owned(),
            Signer::Ed(key) => Ed25519
                .sign(&ed_key(key), input.as_bytes())
                .as_bytes()
                .into_owned(),
        };
        format!("{input}.{}", b64url(&sig))
    }

    fn alg_of(signer: Signer) -> &'static str {
        match signer {
            Signer::Hs(_) => "HS256",
            Signer::Rs(_) => "RS256",
            Signer::Es(_) => "ES256",
            Signer::Ed(_) => "EdDSA",
        }
    }

    /// A well-formed token: honest `alg`, optional `kid`, valid claims.
    fn token(signer: Signer, kid: Option<&str>) -> String {
        let mut header = json!({"alg": alg_of(signer), "typ": "JWT"});
        if let Some(kid) = kid {
            header["kid"] = json!(kid);
        }
        token_with_header(signer, &header)
    }

    fn token_with_header(signer: Signer, header: &Value) -> String {
        let payload = json!({"sub": "user-7", "exp": NOW + 600, "role": "admin"});
        raw_token(signer, &header.to_string(), &payload.to_string())
    }

    fn verifier(algorithms: &str, pem: Option<&str>, jwks: Option<&str>) -> Verifier {
        Verifier::new(config(SECRET, algorithms, pem, jwks))
    }

    fn config(
        secret: &[u8],
        algorithms: &str,
        pem: Option<&str>,
        jwks: Option<&str>,
    ) -> AuthConfig {
        AuthConfig::hs256(secret)
            .with_keys(algorithms, pem, jwks)
            .expect("valid key configuration")
    }

    fn config_error(
        secret: &[u8],
        algorithms: &str,
        pem: Option<&str>,
        jwks: Option<&str>,
    ) -> String {
        let err = AuthConfig::hs256(secret)
            .with_keys(algorithms, pem, jwks)
            .expect_err("configuration should be refused")
            .problem;
        // No key material in the message: no base64 line of any PEM given,
        // no long base64url run from a JWKS.
        for text in [pem.unwrap_or(""), jwks.unwrap_or("")] {
            for line in text
                .lines()
                .filter(|l| l.len() >= 16 && !l.starts_with("-----"))
            {
                assert!(!err.contains(line.trim()), "key material in {err:?}");
            }
        }
        assert!(
            !err.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                .any(|word| word.len() > 40),
            "long opaque run in {err:?}"
        );
        err
    }

    fn ok(v: &Verifier, token: &str) -> Identity {
        v.verify(token, NOW).expect("token should verify")
    }

    fn invalid(v: &Verifier, token: &str, reason: &'static str) {
        assert_eq!(
            v.verify(token, NOW),
            Err(AuthError::Invalid(reason)),
            "token {token}"
        );
    }

    /// A JWK for `public` built by hand from the key's numbers (independent
    /// of jwt-compact's own JWK code).
    fn rsa_jwk(public_pem: &str, kid: &str) -> Value {
        let key = RsaPublicKey::from_public_key_der_for_test(public_pem);
        json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
               "n": b64url(&key.n().to_bytes_be()), "e": b64url(&key.e().to_bytes_be())})
    }

    fn ec_jwk(public_pem: &str, kid: &str) -> Value {
        let Material::P256(point) = material_from_spki(&der(public_pem)).expect("EC key") else {
            panic!("not EC")
        };
        json!({"kty": "EC", "crv": "P-256", "kid": kid,
               "x": b64url(&point[1..33]), "y": b64url(&point[33..])})
    }

    fn ed_jwk(public_pem: &str, kid: &str) -> Value {
        let Material::Ed25519(key) = material_from_spki(&der(public_pem)).expect("Ed key") else {
            panic!("not Ed25519")
        };
        json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64url(&key)})
    }

    trait FromPem {
        fn from_public_key_der_for_test(pem_text: &str) -> Self;
    }

    impl FromPem for RsaPublicKey {
        fn from_public_key_der_for_test(pem_text: &str) -> Self {
            use rsa::pkcs8::DecodePublicKey as _;
            RsaPublicKey::from_public_key_der(&der(pem_text)).expect("RSA key")
        }
    }

    fn jwks(keys: &[Value]) -> String {
        json!({ "keys": keys }).to_string()
    }

    fn all_jwks() -> String {
        jwks(&[
            rsa_jwk(RSA_PUB, "rsa-1"),
            rsa_jwk(RSA2_PUB, "rsa-2"),
            ec_jwk(EC_PUB, "ec-1"),
            ed_jwk(ED_PUB, "ed-1"),
        ])
    }

    const ASYMMETRIC: &str = "RS256,ES256,EdDSA";

    #[test]
    fn each_algorithm_verifies_with_pem_keys() {
        let pem = [RSA_PUB, EC_PUB, ED_PUB].concat();
        let v = verifier(ASYMMETRIC, Some(&pem), None);
        for signer in [Signer::Rs(RSA_KEY), Signer::Es(EC_KEY), Signer::Ed(ED_KEY)] {
            let id = ok(&v, &token(signer, None));
            assert_eq!(
                id,
                Identity {
                    user_id: "user-7".into(),
                    role: Role::Admin,
                    expires_at: NOW + 600
                }
            );
            // A PEM key has no kid, so a token naming one finds no key.
            invalid(&v, &token(signer, Some("k")), "unknown key id");
        }
        // PKCS#1 "RSA PUBLIC KEY" works as well as SPKI.
        let pkcs1 = verifier("RS256", Some(RSA_PKCS1_PUB), None);
        ok(&pkcs1, &token(Signer::Rs(RSA_KEY), None));
        invalid(&pkcs1, &token(Signer::Rs(RSA2_KEY), None), "bad signature");
    }

    #[test]
    fn pem_blocks_may_carry_a_kid_header() {
        let with_kid = |pem_text: &str, kid: &str| {
            let body = pem_text
                .trim()
                .strip_prefix("-----BEGIN PUBLIC KEY-----\n")
                .expect("SPKI PEM");
            format!("-----BEGIN PUBLIC KEY-----\nkid: {kid}\n\n{body}\n")
        };
        let pem = [
            with_kid(RSA_PUB, "r1"),
            with_kid(RSA2_PUB, "r2"),
            ED_PUB.to_owned(),
        ]
        .concat();
        let v = verifier("RS256,EdDSA", Some(&pem), None);
        ok(&v, &token(Signer::Rs(RSA_KEY), Some("r1")));
        ok(&v, &token(Signer::Rs(RSA2_KEY), Some("r2")));
        invalid(&v, &token(Signer::Rs(RSA_KEY), Some("r2")), "bad signature");
        invalid(
            &v,
            &token(Signer::Rs(RSA_KEY), Some("r3")),
            "unknown key id",
        );
        // Without kid, two RS256 keys would both be tried: kid is required.
        invalid(
            &v,
            &token(Signer::Rs(RSA2_KEY), None),
            "kid required: several keys fit the algorithm",
        );
        ok(&v, &token(Signer::Ed(ED_KEY), None));
        assert!(
            format!("{:?}", config(SECRET, "RS256,EdDSA", Some(&pem), None).keys)
                .contains("RS256(kid Some(\"r2\"))")
        );
    }

    #[test]
    fn a_token_without_kid_costs_one_signature_check() {
        // A PEM key without kid beside a JWKS key with one: a token without
        // kid is meant for the keyless key, and only that one is tried.
        let v = verifier(
            "RS256",
            Some(RSA_PUB),
            Some(&jwks(&[rsa_jwk(RSA2_PUB, "rsa-2")])),
        );
        ok(&v, &token(Signer::Rs(RSA_KEY), None));
        invalid(&v, &token(Signer::Rs(RSA2_KEY), None), "bad signature");
        ok(&v, &token(Signer::Rs(RSA2_KEY), Some("rsa-2")));
        // One key with a kid: tokens without one still verify with it.
        let v = verifier("RS256", None, Some(&jwks(&[rsa_jwk(RSA_PUB, "rsa-1")])));
        ok(&v, &token(Signer::Rs(RSA_KEY), None));
        // Two candidates, keyless or not: the token must say which.
        let two = [RSA_PUB, RSA2_PUB].concat();
        let v = verifier("RS256", Some(&two), None);
        let kid_required = "kid required: several keys fit the algorithm";
        invalid(&v, &token(Signer::Rs(RSA_KEY), None), kid_required);
        let v = verifier("RS256", None, Some(&all_jwks()));
        invalid(&v, &token(Signer::Rs(RSA_KEY), None), kid_required);
    }

    #[test]
    fn each_algorithm_verifies_with_a_jwks() {
        let v = verifier(ASYMMETRIC, None, Some(&all_jwks()));
        for (signer, kid) in [
            (Signer::Rs(RSA_KEY), "rsa-1"),
            (Signer::Rs(RSA2_KEY), "rsa-2"),
            (Signer::Es(EC_KEY), "ec-1"),
            (Signer::Ed(ED_KEY), "ed-1"),
        ] {
            assert_eq!(ok(&v, &token(signer, Some(kid))).user_id, "user-7");
            // Without kid, only an algorithm with one key can be verified.
            match signer {
                Signer::Rs(_) => invalid(
                    &v,
                    &token(signer, None),
                    "kid required: several keys fit the algorithm",
                ),
                _ => assert_eq!(ok(&v, &token(signer, None)).user_id, "user-7"),
            }
        }
        // The kid picks the key: the right algorithm but another key fails.
        invalid(
            &v,
            &token(Signer::Rs(RSA_KEY), Some("rsa-2")),
            "bad signature",
        );
        invalid(
            &v,
            &token(Signer::Rs(RSA_KEY), Some("nope")),
            "unknown key id",
        );
        invalid(&v, &token(Signer::Rs(RSA_KEY), Some("")), "unknown key id");
    }

    #[test]
    fn jwks_from_jwt_compact_serialisation_also_loads() {
        // The same keys as another library would publish them.
        let Material::Ed25519(ed) = material_from_spki(&der(ED_PUB)).unwrap() else {
            panic!()
        };
        let ed = ed25519_compact::PublicKey::new(ed);
        let mut jwk = serde_json::to_value(JsonWebKey::from(&ed)).unwrap();
        jwk["kid"] = json!("ed");
        let rsa = RsaPublicKey::from_public_key_der_for_test(RSA_PUB);
        let mut rsa_jwk = serde_json::to_value(JsonWebKey::from(&rsa)).unwrap();
        rsa_jwk["x5t"] = json!("ignored-extra-field");
        let v = verifier(ASYMMETRIC, None, Some(&jwks(&[jwk, rsa_jwk])));
        ok(&v, &token(Signer::Ed(ED_KEY), Some("ed")));
        ok(&v, &token(Signer::Rs(RSA_KEY), None));
    }

    #[test]
    fn wrong_key_is_refused_for_every_algorithm() {
        let pem = [RSA_PUB, EC_PUB, ED_PUB].concat();
        let v = verifier(ASYMMETRIC, Some(&pem), None);
        for signer in [
            Signer::Rs(RSA2_KEY),
            Signer::Es(EC2_KEY),
            Signer::Ed(ED2_KEY),
        ] {
            invalid(&v, &token(signer, None), "bad signature");
        }
        let other = [RSA2_PUB, EC2_PUB, ED2_PUB].concat();
        let v2 = verifier(ASYMMETRIC, Some(&other), None);
        for signer in [Signer::Rs(RSA_KEY), Signer::Es(EC_KEY), Signer::Ed(ED_KEY)] {
            invalid(&v2, &token(signer, None), "bad signature");
        }
    }

    #[test]
    fn hs256_signed_with_a_public_key_is_refused() {
        // Algorithm confusion: the attacker uses the (public) verification key
        // as an HMAC secret and labels the token HS256.
        let jwks_text = all_jwks();
        for public in [RSA_PUB, RSA_PKCS1_PUB, EC_PUB, ED_PUB] {
            let as_secrets: [&'static [u8]; 3] = [
                public.as_bytes(),
                public.trim().as_bytes(),
                Box::leak(der(public).into_boxed_slice()),
            ];
            for fake_secret in as_secrets {
                let forged = token(Signer::Hs(fake_secret), None);
                let forged_kid = token(Signer::Hs(fake_secret), Some("rsa-1"));
                // HS256 not allowed at all.
                let asym = verifier(ASYMMETRIC, Some(&[RSA_PUB, EC_PUB, ED_PUB].concat()), None);
                invalid(&asym, &forged, "unexpected algorithm");
                invalid(&asym, &forged_kid, "unexpected algorithm");
                // HS256 allowed with the real shared secret: wrong secret.
                let mixed = verifier("HS256,RS256,ES256,EdDSA", None, Some(&jwks_text));
                invalid(&mixed, &forged, "bad signature");
                invalid(&mixed, &forged_kid, "key does not match algorithm");
                // HS256 allowed but no secret configured: no key at all.
                let no_secret = Verifier::new(config(
                    b"",
                    "HS256,RS256,ES256,EdDSA",
                    None,
                    Some(&jwks_text),
                ));
                invalid(&no_secret, &forged, "no key for algorithm");
                invalid(&no_secret, &forged_kid, "key does not match algorithm");
            }
        }
    }

    #[test]
    fn empty_secret_never_verifies_alongside_public_keys() {
        let v = Verifier::new(config(b"", "HS256,RS256", Some(RSA_PUB), None));
        invalid(&v, &token(Signer::Hs(b""), None), "no key for algorithm");
        ok(&v, &token(Signer::Rs(RSA_KEY), None));
        // And HS256 with a secret but not in the list: the secret is unused.
        let v = verifier("RS256", Some(RSA_PUB), None);
        invalid(&v, &token(Signer::Hs(SECRET), None), "unexpected algorithm");
    }

    #[test]
    fn hs256_and_public_keys_together() {
        let v = verifier("HS256,RS256,ES256,EdDSA", None, Some(&all_jwks()));
        ok(&v, &token(Signer::Hs(SECRET), None));
        ok(&v, &token(Signer::Rs(RSA_KEY), Some("rsa-1")));
        // The shared secret has no kid.
        invalid(
            &v,
            &token(Signer::Hs(SECRET), Some("rsa-1")),
            "key does not match algorithm",
        );
        invalid(&v, &token(Signer::Hs(SECRET), Some("hs")), "unknown key id");
    }

    #[test]
    fn alg_none_is_refused_with_public_keys() {
        let v = verifier(ASYMMETRIC, None, Some(&all_jwks()));
        let payload = json!({"sub": "user-7", "exp": NOW + 600}).to_string();
        let real = token(Signer::Rs(RSA_KEY), Some("rsa-1"));
        let real_sig = real.rsplit('.').next().unwrap();
        for alg in ["none", "None", "NONE"] {
            for kid in [None, Some("rsa-1")] {
                let mut header = json!({"alg": alg});
                if let Some(kid) = kid {
                    header["kid"] = json!(kid);
                }
                let unsigned = format!(
                    "{}.{}",
                    b64url(header.to_string().as_bytes()),
                    b64url(payload.as_bytes())
                );
                invalid(&v, &format!("{unsigned}."), "unexpected algorithm");
                invalid(
                    &v,
                    &format!("{unsigned}.{real_sig}"),
                    "unexpected algorithm",
                );
            }
        }
    }

    #[test]
    fn header_alg_must_match_the_key_type() {
        let v = verifier(ASYMMETRIC, None, Some(&all_jwks()));
        // A real signature by each key, relabelled with another algorithm
        // while naming that key: the key only verifies its own algorithm.
        let cases = [
            (Signer::Rs(RSA_KEY), "rsa-1", ["ES256", "EdDSA"]),
            (Signer::Es(EC_KEY), "ec-1", ["RS256", "EdDSA"]),
            (Signer::Ed(ED_KEY), "ed-1", ["RS256", "ES256"]),
        ];
        for (signer, kid, others) in cases {
            for alg in others {
                let forged = token_with_header(signer, &json!({"alg": alg, "kid": kid}));
                invalid(&v, &forged, "key does not match algorithm");
                // Without kid the other algorithm's one key is tried, and
                // fails; two RS256 keys need a kid.
                let forged = token_with_header(signer, &json!({"alg": alg}));
                let reason = if alg == "RS256" {
                    "kid required: several keys fit the algorithm"
                } else {
                    "bad signature"
                };
                invalid(&v, &forged, reason);
            }
            // Names that are not in the allow-list at all.
            for alg in [
                "RS384", "RS512", "PS256", "ES384", "ES256K", "Ed25519", "eddsa", "rs256", "HS256",
            ] {
                let forged = token_with_header(signer, &json!({"alg": alg, "kid": kid}));
                invalid(&v, &forged, "unexpected algorithm");
            }
        }
        // ES256 allowed, but only an RSA key configured.
        let rsa_only = verifier("RS256,ES256", Some(RSA_PUB), None);
        invalid(
            &rsa_only,
            &token(Signer::Es(EC_KEY), None),
            "no key for algorithm",
        );
    }

    #[test]
    fn embedded_or_remote_keys_are_refused() {
        let v = verifier(ASYMMETRIC, None, Some(&all_jwks()));
        // The attacker's own key, embedded, and a token it signed.
        let attacker_jwk = ec_jwk(EC2_PUB, "ec-1");
        let cases = [
            json!({"alg": "ES256", "jwk": attacker_jwk}),
            json!({"alg": "ES256", "kid": "ec-1", "jwk": attacker_jwk}),
            json!({"alg": "ES256", "jku": "https://evil.example/jwks.json"}),
            json!({"alg": "ES256", "kid": "ec-1", "jku": "https://evil.example/jwks.json"}),
            json!({"alg": "ES256", "x5u": "https://evil.example/cert.pem"}),
            json!({"alg": "ES256", "x5c": ["MIIB"]}),
        ];
        for header in &cases {
            invalid(
                &v,
                &token_with_header(Signer::Es(EC2_KEY), header),
                "embedded or remote keys are not accepted",
            );
        }
        // Found by the `jwt_verify` fuzz target: a parameter that is present
        // but null used to pass (serde reads null as absent). Refused too.
        let hs = verifier("HS256", None, None);
        for name in ["jwk", "jku", "x5c", "x5u"] {
            for value in [Value::Null, json!(""), json!([]), json!({})] {
                let mut header = json!({"alg": "HS256"});
                header[name] = value;
                invalid(
                    &hs,
                    &token_with_header(Signer::Hs(SECRET), &header),
                    "embedded or remote keys are not accepted",
                );
            }
        }
        for value in [Value::Null, json!([]), json!(["exp"])] {
            invalid(
                &hs,
                &token_with_header(Signer::Hs(SECRET), &json!({"alg": "HS256", "crit": value})),
                "unsupported critical header",
            );
        }
        // Look-alike names are just unknown parameters.
        ok(
            &hs,
            &token_with_header(
                Signer::Hs(SECRET),
                &json!({"alg": "HS256", "JKU": "x", "x5c ": null, "jwks": 1}),
            ),
        );
        // Refused even when the embedded key is the configured one and the
        // signature is good: the token never chooses its key.
        let honest = json!({"alg": "ES256", "kid": "ec-1", "jwk": ec_jwk(EC_PUB, "ec-1")});
        invalid(
            &v,
            &token_with_header(Signer::Es(EC_KEY), &honest),
            "embedded or remote keys are not accepted",
        );
        // Also for HS256.
        let hs = verifier("HS256", None, None);
        invalid(
            &hs,
            &token_with_header(Signer::Hs(SECRET), &json!({"alg": "HS256", "jku": "x"})),
            "embedded or remote keys are not accepted",
        );
        ok(
            &hs,
            &token_with_header(
                Signer::Hs(SECRET),
                &json!({"alg": "HS256", "x5t": b64url(&[7; 20])}),
            ),
        );
    }

    #[test]
    fn jwks_skips_keys_that_are_not_for_us() {
        let mut enc = rsa_jwk(RSA2_PUB, "enc");
        enc["use"] = json!("enc");
        let mut wrap = rsa_jwk(RSA2_PUB, "wrap");
        wrap.as_object_mut().unwrap().remove("use");
        wrap["key_ops"] = json!(["wrapKey"]);
        let mut ops = rsa_jwk(RSA2_PUB, "ops");
        ops.as_object_mut().unwrap().remove("use");
        ops["key_ops"] = json!(["verify"]);
        let mut rs512 = rsa_jwk(RSA2_PUB, "rs512");
        rs512["alg"] = json!("RS512");
        let mut lying = rsa_jwk(RSA2_PUB, "lying");
        lying["alg"] = json!("ES256");
        let p384 = json!({"kty": "EC", "crv": "P-384", "kid": "p384", "x": "AA", "y": "AA"});
        let x25519 = json!({"kty": "OKP", "crv": "X25519", "kid": "x", "x": "AA"});
        let unknown = json!({"kty": "XYZ", "kid": "xyz"});
        let doc = jwks(&[
            enc,
            wrap,
            ops,
            rs512,
            lying,
            p384,
            x25519,
            unknown,
            rsa_jwk(RSA_PUB, "good"),
            ec_jwk(EC_PUB, "ec-not-allowed"),
        ]);
        let cfg = config(SECRET, "RS256", None, Some(&doc));
        assert_eq!(cfg.keys.public_key_count(), 2, "{:?}", cfg.keys);
        let v = Verifier::new(cfg);
        ok(&v, &token(Signer::Rs(RSA_KEY), Some("good")));
        ok(&v, &token(Signer::Rs(RSA2_KEY), Some("ops")));
        for skipped in ["enc", "wrap", "rs512", "lying", "p384", "ec-not-allowed"] {
            invalid(
                &v,
                &token(Signer::Rs(RSA2_KEY), Some(skipped)),
                "unknown key id",
            );
        }
    }

    #[test]
    fn bad_key_configuration_is_refused_with_a_clear_message() {
        let cases: Vec<(&str, Option<String>, Option<String>, &str)> = vec![
            ("RS256,XS999", None, None, "unsupported JWT algorithm \"XS999\""),
            ("rs256", None, None, "case-sensitive"),
            ("HS256,none", None, None, "\"none\""),
            ("NONE", None, None, "\"none\""),
            (" , ,", None, None, "no JWT algorithm allowed"),
            ("", None, None, "no JWT algorithm allowed"),
            ("RS256", Some("not a pem".into()), None, "no -----BEGIN PUBLIC KEY----- block"),
            ("RS256", Some("-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n".into()), None, "malformed"),
            ("RS256", Some(RSA_PUB.replace("END PUBLIC", "END PRIVATE")), None, "malformed"),
            ("RS256", Some(RSA_KEY.into()), None, "a private key"),
            ("ES256", Some(EC_KEY.into()), None, "a private key"),
            ("RS256", Some("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into()), None, "a certificate"),
            ("RS256", Some("-----BEGIN FOO-----\nAAAA\n-----END FOO-----\n".into()), None, "PEM block 1 (\"FOO\"): not a public key"),
            ("RS256", Some(RSA1024_PUB.into()), None, "shorter than 2048 bits"),
            ("ES256", Some(EC384_PUB.into()), None, "only P-256"),
            ("RS256", Some("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".into()), None, "not DER SubjectPublicKeyInfo"),
            ("RS256", Some("-----BEGIN RSA PUBLIC KEY-----\nAAAA\n-----END RSA PUBLIC KEY-----\n".into()), None, "PKCS#1"),
            ("RS256", Some([RSA_PUB, EC_PUB].concat()), None, "PEM block 2 is an EC P-256 key, but ES256 is not in the allowed"),
            ("HS256", Some(ED_PUB.into()), None, "EdDSA is not in the allowed"),
            ("RS256", None, Some("{".into()), "JWKS is not a JSON object"),
            ("RS256", None, Some("[]".into()), "JWKS is not a JSON object"),
            ("RS256", None, Some(r#"{"keys": {}}"#.into()), "JWKS is not a JSON object"),
            ("RS256", None, Some(r#"{"keys": []}"#.into()), "JWKS has no signing key usable with the allowed JWT algorithms (RS256)"),
            ("RS256", None, Some(r#"{"keys": [7]}"#.into()), "JWKS key 1 is not a JSON object"),
            ("RS256", None, Some(r#"{"keys": [{"kid": "a"}]}"#.into()), "JWKS key 1 (kid \"a\") has no kty"),
            ("RS256", None, Some(r#"{"keys": [{"kty": "RSA", "kid": 5}]}"#.into()), "kid must be a non-empty string"),
            ("RS256", None, Some(r#"{"keys": [{"kty": "RSA", "alg": 5}]}"#.into()), "alg must be a string"),
            ("HS256", None, Some(r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"}]}"#.into()), "symmetric (oct) key"),
            ("RS256", None, Some(r#"{"keys": [{"kty": "RSA", "n": "!!", "e": "AQAB"}]}"#.into()), "JWKS key 1: malformed key"),
            ("RS256", None, Some(r#"{"keys": [{"kty": "RSA", "e": "AQAB"}]}"#.into()), "JWKS key 1: malformed key"),
            ("RS256", None, Some(r#"{"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}"#.into()), "malformed or out-of-range RSA key"),
            ("RS256", None, Some(jwks(&[rsa_jwk(RSA1024_PUB, "weak")])), "JWKS key 1 (kid \"weak\"): RSA key shorter than 2048 bits"),
            ("ES256", None, Some(r#"{"keys": [{"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"}]}"#.into()), "malformed EC P-256 key"),
            ("EdDSA", None, Some(r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}]}"#.into()), "x must be 32 bytes"),
            // The identity point: small order, could never verify anything.
            ("EdDSA", None, Some(r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}]}"#.into()), "large order"),
            ("RS256", None, Some(jwks(&[rsa_jwk(RSA_PUB, "a"), rsa_jwk(RSA2_PUB, "a")])), "JWT key id \"a\" is used by more than one key"),
            // Nothing that could verify a token.
            ("HS256", None, None, "no usable JWT verification key"),
        ];
        for (algorithms, pem, jwks, expected) in cases {
            let secret: &[u8] = if algorithms == "HS256" && pem.is_none() && jwks.is_none() {
                b""
            } else {
                SECRET
            };
            let err = config_error(secret, algorithms, pem.as_deref(), jwks.as_deref());
            assert!(
                err.contains(expected),
                "{algorithms} {pem:?} {jwks:?}: {err}"
            );
        }
        // A private key in a JWKS entry is refused, and its value not shown.
        let mut private = rsa_jwk(RSA_PUB, "p");
        private["d"] = json!("c2VjcmV0LXByaXZhdGUtZXhwb25lbnQtdGhhdC1tdXN0LW5vdC1iZS1sb2dnZWQ");
        let err = config_error(SECRET, "RS256", None, Some(&jwks(&[private])));
        assert!(err.contains("private key material"), "{err}");
        // Keys kept from an earlier call must still be allowed.
        let err = AuthConfig::hs256(SECRET)
            .with_keys("RS256", Some(RSA_PUB), None)
            .unwrap()
            .with_keys("HS256", None, None)
            .unwrap_err();
        assert_eq!(err.part, KeyPart::Algorithms);
        assert!(
            err.problem.contains("RS256 public key needs RS256"),
            "{err}"
        );
        // A kid shared between a PEM key and a JWKS key.
        let pem_kid = RSA_PUB.replace(
            "-----BEGIN PUBLIC KEY-----\n",
            "-----BEGIN PUBLIC KEY-----\nkid: rsa-1\n\n",
        );
        let err = config_error(SECRET, ASYMMETRIC, Some(&pem_kid), Some(&all_jwks()));
        assert!(
            err.contains("\"rsa-1\" is used by more than one key"),
            "{err}"
        );
        let empty_kid = RSA_PUB.replace(
            "-----BEGIN PUBLIC KEY-----\n",
            "-----BEGIN PUBLIC KEY-----\nkid: \n\n",
        );
        assert!(config_error(SECRET, "RS256", Some(&empty_kid), None).contains("empty kid"));
        // A long unknown algorithm name is cut short in the message.
        let err = config_error(SECRET, &"A".repeat(500), None, None);
        assert!(err.len() < 200, "{err}");
    }

    #[test]
    fn key_errors_name_the_input_at_fault() {
        let part = |secret: &[u8], algorithms: &str, pem: Option<&str>, jwks: Option<&str>| {
            AuthConfig::hs256(secret)
                .with_keys(algorithms, pem, jwks)
                .expect_err("configuration should be refused")
                .part
        };
        assert_eq!(part(SECRET, "HS256,none", None, None), KeyPart::Algorithms);
        assert_eq!(part(SECRET, "RS256", Some("nope"), None), KeyPart::Pem);
        assert_eq!(part(SECRET, "RS256", None, Some("{")), KeyPart::Jwks);
        assert_eq!(part(b"", "HS256", None, None), KeyPart::Missing);
        // A kid repeated across the two texts is blamed on the later one.
        let pem_kid = RSA_PUB.replace(
            "-----BEGIN PUBLIC KEY-----\n",
            "-----BEGIN PUBLIC KEY-----\nkid: rsa-1\n\n",
        );
        let twice = format!("{pem_kid}{pem_kid}");
        assert_eq!(part(SECRET, "RS256", Some(&twice), None), KeyPart::Pem);
        let both = part(SECRET, ASYMMETRIC, Some(&pem_kid), Some(&all_jwks()));
        assert_eq!(both, KeyPart::Jwks);
    }

    #[test]
    fn defaults_and_lenient_parsing() {
        let c = AuthConfig::hs256(SECRET);
        assert_eq!(c.keys.algorithms(), [Alg::Hs256]);
        assert_eq!(c.keys.public_key_count(), 0);
        let c = c
            .with_keys(" HS256 , RS256,,HS256 ", Some("  \n"), Some(""))
            .unwrap();
        assert_eq!(c.keys.algorithms(), [Alg::Hs256, Alg::Rs256]);
        assert!(c.keys.allows(Alg::Rs256) && !c.keys.allows(Alg::EdDsa));
        // Keys accumulate over calls.
        let c = c
            .with_keys("HS256,RS256", Some(RSA_PUB), None)
            .unwrap()
            .with_keys("RS256,EdDSA", Some(ED_PUB), None)
            .unwrap();
        assert_eq!(c.keys.public_key_count(), 2);
        assert_eq!(
            Alg::ALL.map(Alg::name),
            ["HS256", "RS256", "ES256", "EdDSA"]
        );
        for alg in Alg::ALL {
            assert_eq!(Alg::from_name(alg.name()), Some(alg));
            assert_eq!(alg.to_string(), alg.name());
        }
        assert_eq!(Alg::from_name("none"), None);
        assert_eq!(Alg::from_name("hs256"), None);
        // Text outside the PEM blocks is ignored.
        let noisy = format!("RSA key of the IdP:\n{RSA_PUB}\nand the old one\n{RSA2_PUB}");
        let c = config(SECRET, "RS256", Some(&noisy), None);
        assert_eq!(c.keys.public_key_count(), 2);
        let v = verifier(
            "RS256",
            Some(&format!("the IdP's key:\n{RSA2_PUB}\n(rotated)")),
            None,
        );
        ok(&v, &token(Signer::Rs(RSA2_KEY), None));
        // CRLF line ends (a PEM pasted from Windows) still parse.
        let v = verifier("EdDSA", Some(&ED_PUB.replace('\n', "\r\n")), None);
        ok(&v, &token(Signer::Ed(ED_KEY), None));
    }

    #[test]
    fn debug_output_shows_algorithms_and_kids_only() {
        let c = config(SECRET, "HS256,RS256,ES256,EdDSA", None, Some(&all_jwks()));
        let shown = format!("{c:?} {:?}", Verifier::new(c.clone()));
        assert!(shown.contains("RS256(kid Some(\"rsa-1\"))"), "{shown}");
        assert!(shown.contains("EdDSA(kid Some(\"ed-1\"))"), "{shown}");
        assert!(!shown.contains(std::str::from_utf8(SECRET).unwrap()));
        let n = rsa_jwk(RSA_PUB, "x")["n"].as_str().unwrap().to_owned();
        assert!(!shown.contains(&n[..20]));
    }

    #[test]
    fn claims_rules_apply_to_public_key_tokens() {
        let v = Verifier::new(AuthConfig {
            issuer: Some("https://idp.example".into()),
            audience: Some("sse".into()),
            ..config(SECRET, ASYMMETRIC, None, Some(&all_jwks()))
        });
        let signed = |payload: Value| {
            raw_token(
                Signer::Es(EC_KEY),
                r#"{"alg":"ES256","kid":"ec-1"}"#,
                &payload.to_string(),
            )
        };
        ok(
            &v,
            &signed(
                json!({"sub": "u", "exp": NOW + 60, "iss": "https://idp.example", "aud": ["sse"]}),
            ),
        );
        invalid(
            &v,
            &signed(
                json!({"sub": "u", "exp": NOW - 60, "iss": "https://idp.example", "aud": "sse"}),
            ),
            "token expired",
        );
        invalid(
            &v,
            &signed(json!({"sub": "u", "iss": "https://idp.example", "aud": "sse"})),
            "missing exp",
        );
        invalid(
            &v,
            &signed(json!({"sub": "u", "exp": NOW + 60, "iss": "https://other", "aud": "sse"})),
            "issuer mismatch",
        );
        invalid(
            &v,
            &signed(json!({"sub": "u", "exp": NOW + 60, "iss": "https://idp.example"})),
            "audience mismatch",
        );
        invalid(
            &v,
            &raw_token(Signer::Es(EC_KEY), r#"{"alg":"ES256"}"#, "[]"),
            "malformed claims",
        );
    }

    #[test]
    fn mutated_public_key_tokens_never_pass_as_someone_else() {
        let v = verifier(ASYMMETRIC, None, Some(&all_jwks()));
        for (signer, kid) in [
            (Signer::Rs(RSA_KEY), "rsa-1"),
            (Signer::Es(EC_KEY), "ec-1"),
            (Signer::Ed(ED_KEY), "ed-1"),
        ] {
            let good = token(signer, Some(kid));
            let expected = ok(&v, &good);
            // Every 3rd byte keeps the debug-build run short; the fuzz
            // target covers the rest.
            for i in (0..good.len()).step_by(3) {
                let mut m = good.clone().into_bytes();
                m[i] = if m[i] == b'A' { b'B' } else { b'A' };
                let s = String::from_utf8(m).unwrap();
                if let Ok(id) = v.verify(&s, NOW) {
                    assert_eq!(id, expected, "mutation at {i} accepted as someone else");
                }
            }
            for len in (0..good.len()).step_by(7) {
                assert!(v.verify(&good[..len], NOW).is_err(), "prefix {len}");
            }
        }
    }

    /// Found by the `jwt_verify` fuzz target: RFC 7519 lets a NumericDate be
    /// fractional, and jwt-compact accepts it, truncated toward zero. The
    /// stream then ends up to a second early, never late.
    #[test]
    fn fractional_exp_is_accepted_and_truncated() {
        let v = verifier("HS256", None, None);
        let signed = |payload: &str| raw_token(Signer::Hs(SECRET), r#"{"alg":"HS256"}"#, payload);
        let id = ok(
            &v,
            &signed(&format!(r#"{{"sub":"bb","exp":{}.99999}}"#, NOW + 60)),
        );
        assert_eq!(id.expires_at, NOW + 60);
        ok(&v, &signed(r#"{"sub":"bb","exp":39480013058.49999}"#));
        invalid(
            &v,
            &signed(&format!(r#"{{"sub":"u","exp":{}.5}}"#, NOW - 31)),
            "token expired",
        );
        invalid(
            &v,
            &signed(&format!(
                r#"{{"sub":"u","exp":{},"nbf":{}.9}}"#,
                NOW + 60,
                NOW + 31
            )),
            "token not yet valid",
        );
        invalid(
            &v,
            &signed(r#"{"sub":"u","exp":1e300}"#),
            "malformed claims",
        );
    }

    #[test]
    fn rsa_key_size_limits() {
        // 2048 is the floor (RFC 7518 §3.3); the rsa crate refuses > 4096.
        let key = RsaPublicKey::from_public_key_der_for_test(RSA_PUB);
        assert_eq!(key.n().bits(), 2048);
        let huge = json!({"kty": "RSA", "n": b64url(&[0xff; 1024]), "e": "AQAB"});
        let err = config_error(SECRET, "RS256", None, Some(&jwks(&[huge])));
        assert!(err.contains("out-of-range"), "{err}");
    }
}
