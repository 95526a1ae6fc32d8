//! RS256, ES256 and EdDSA with keys from PEM and JWKS, and every way a token
//! or a configuration can try to get around the fixed algorithms.

use super::keys::{material_from_spki, Material};
use super::*;
use ed25519_compact::{KeyPair, SecretKey, Seed};
use jwt_compact::alg::{Ed25519, Es256, Hs256, Hs256Key, Rsa, RsaPublicKey};
use jwt_compact::jwk::JsonWebKey;
use jwt_compact::{Algorithm, AlgorithmSignature};
use p256::ecdsa::SigningKey as P256Signer;
use p256::pkcs8::DecodePrivateKey as _;
use rsa::traits::PublicKeyParts as _;
use rsa::RsaPrivateKey;
use serde_json::json;
use std::sync::OnceLock;

const NOW: i64 = 1_700_000_000;
const SECRET: &[u8] = b"test-secret-for-the-sse-gateway-0123456789";

// Throwaway keys made with OpenSSL (see auth/testdata/README.md).
const RSA_KEY: &str = include_str!("testdata/rsa.key.pem");
const RSA_PUB: &str = include_str!("testdata/rsa.pub.pem");
const RSA_PKCS1_PUB: &str = include_str!("testdata/rsa.pkcs1.pub.pem");
const RSA2_KEY: &str = include_str!("testdata/rsa2.key.pem");
const RSA2_PUB: &str = include_str!("testdata/rsa2.pub.pem");
const RSA1024_PUB: &str = include_str!("testdata/rsa1024.pub.pem");
const EC_KEY: &str = include_str!("testdata/ec.key.pem");
const EC_PUB: &str = include_str!("testdata/ec.pub.pem");
const EC2_KEY: &str = include_str!("testdata/ec2.key.pem");
const EC2_PUB: &str = include_str!("testdata/ec2.pub.pem");
const EC384_PUB: &str = include_str!("testdata/ec384.pub.pem");
const ED_KEY: &str = include_str!("testdata/ed25519.key.pem");
const ED_PUB: &str = include_str!("testdata/ed25519.pub.pem");
const ED2_KEY: &str = include_str!("testdata/ed25519-2.key.pem");
const ED2_PUB: &str = include_str!("testdata/ed25519-2.pub.pem");

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

fn config(secret: &[u8], algorithms: &str, pem: Option<&str>, jwks: Option<&str>) -> AuthConfig {
    AuthConfig::hs256(secret)
        .with_keys(algorithms, pem, jwks)
        .expect("valid key configuration")
}

fn config_error(secret: &[u8], algorithms: &str, pem: Option<&str>, jwks: Option<&str>) -> String {
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
        &signed(json!({"sub": "u", "exp": NOW + 60, "iss": "https://idp.example", "aud": ["sse"]})),
    );
    invalid(
        &v,
        &signed(json!({"sub": "u", "exp": NOW - 60, "iss": "https://idp.example", "aud": "sse"})),
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
