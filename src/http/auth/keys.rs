//! Public keys: the set configuration allows ([`KeySet`]) and reading them
//! from PEM (SPKI, PKCS#1) or a JWKS document, with each key's size and
//! curve checked before it can verify anything.

use super::alg::Alg;
use super::config::shown;
use jwt_compact::jwk::JsonWebKey;
use pkcs1::der::Decode as _;
use serde::Deserialize;
use serde_json::Value;
use spki::{ObjectIdentifier, SubjectPublicKeyInfoRef};
use std::fmt;

/// The accepted algorithms and the public keys, parsed once from
/// configuration. Build it with [`AuthConfig::hs256`](super::AuthConfig::hs256) (HS256 only, no public
/// keys) and [`AuthConfig::with_keys`](super::AuthConfig::with_keys).
#[derive(Clone)]
pub struct KeySet {
    pub(crate) algorithms: Vec<Alg>,
    pub(crate) public_keys: Vec<PublicKey>,
}

impl KeySet {
    /// HS256 only, no public keys: the gateway's original configuration.
    pub(crate) fn hs256_only() -> Self {
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
    #[cfg(test)]
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
pub(crate) struct PublicKey {
    pub(crate) kid: Option<String>,
    pub(crate) material: Material,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}(kid {:?})", self.material.alg(), self.kid)
    }
}

/// Parsed public key material, in the forms `ring` verifies; each kind
/// verifies exactly one algorithm.
#[derive(Clone)]
pub(crate) enum Material {
    /// Modulus and public exponent, big-endian without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// Uncompressed SEC1 point, `0x04 || x || y`.
    P256(Box<[u8; 65]>),
    /// The 32-byte encoded point, checked canonical and of large order.
    Ed25519([u8; 32]),
}

impl Material {
    pub(crate) fn alg(&self) -> Alg {
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
    pub(crate) fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
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

pub(crate) const OID_RSA_ENCRYPTION: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
pub(crate) const OID_EC_PUBLIC_KEY: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
pub(crate) const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
pub(crate) const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// RFC 7518 §3.3: RS256 keys must have at least 2048 bits.
pub(crate) const MIN_RSA_BITS: usize = 2048;
/// Larger moduli are refused: each costs more per verification, and no
/// issuer needs them (the limit the gateway has always had).
pub(crate) const MAX_RSA_BITS: usize = 4096;

/// Bit length of a big-endian number without leading zeros.
pub(crate) fn bits(be: &[u8]) -> usize {
    be.first()
        .map_or(0, |top| be.len() * 8 - top.leading_zeros() as usize)
}

/// An RSA key from its numbers (leading zero bytes allowed). `malformed` is
/// the caller's message for numbers no RSA key can have: ring's own rules
/// (odd modulus, odd exponent from 3 to 2^33 - 1) and at most 4096 bits,
/// checked here so a bad key is refused at startup, not at every token.
pub(crate) fn rsa_checked(
    n: &[u8],
    e: &[u8],
    malformed: &'static str,
) -> Result<Material, &'static str> {
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
pub(crate) fn rsa_from_pkcs1(
    der: &[u8],
    malformed: &'static str,
) -> Result<Material, &'static str> {
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
pub(crate) fn p256_from_xy(x: &[u8], y: &[u8]) -> Option<Material> {
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
pub(crate) fn ed25519_checked(
    raw: &[u8],
    wrong_length: &'static str,
) -> Result<Material, &'static str> {
    let key: [u8; 32] = raw.try_into().map_err(|_| wrong_length)?;
    // Refuse non-canonical encodings and small-order points up front (ring
    // does not): a small-order key would accept forged signatures.
    ed25519_compact::PublicKey::new(key)
        .validate()
        .map_err(|_| "invalid Ed25519 public key (not a canonical point of large order)")?;
    Ok(Material::Ed25519(key))
}

/// Key material from DER `SubjectPublicKeyInfo`, by its algorithm OID.
pub(crate) fn material_from_spki(der: &[u8]) -> Result<Material, &'static str> {
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
pub(crate) fn parse_pem_keys(text: &str, algorithms: &[Alg]) -> Result<Vec<PublicKey>, String> {
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
pub(crate) struct Jwks {
    pub(crate) keys: Vec<Value>,
}

/// The usable signing keys of a JWKS document (see [`AuthConfig::with_keys`](super::AuthConfig::with_keys)).
pub(crate) fn parse_jwks(text: &str, algorithms: &[Alg]) -> Result<Vec<PublicKey>, String> {
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
