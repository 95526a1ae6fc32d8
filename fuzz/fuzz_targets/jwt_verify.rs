//! JWT verification never panics, and never accepts a token that is not
//! signed by a configured key for the algorithm that key is configured for:
//! arbitrary strings, and arbitrary header/payload bytes (raw, or built from
//! fuzzed fields) signed by configured keys, by other keys, or relabelled.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};
use sse_gateway::http::auth::{AuthConfig, Verifier};
use sse_gateway_fuzz::keys::{pem_bundle, token, Signer, SECRET};
use std::sync::OnceLock;

const NOW: i64 = 1_700_000_000;

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| {
        let config = AuthConfig::hs256(SECRET)
            .with_keys("HS256,RS256,ES256,EdDSA", Some(&pem_bundle()), None)
            .expect("fuzz key config");
        Verifier::new(config)
    })
}

#[derive(Debug, Arbitrary)]
enum Alg {
    Signer,
    Other(String),
    Pick(u8),
}

#[derive(Debug, Arbitrary)]
enum Kid {
    None,
    Signer,
    Other(String),
    Pick(u8),
}

#[derive(Debug, Arbitrary)]
enum Claim {
    Int(i64),
    Near(i16),
    Str(String),
    Bool(bool),
    Null,
    Float(f64),
}

#[derive(Debug, Arbitrary)]
struct Built {
    signer: Signer,
    alg: Alg,
    kid: Kid,
    extra_header: Vec<(String, Claim)>,
    sub: Option<Claim>,
    exp: Option<Claim>,
    nbf: Option<Claim>,
    extra_claims: Vec<(String, Claim)>,
    /// Flip one byte of the finished token at this position.
    flip: Option<(u16, u8)>,
}

#[derive(Debug, Arbitrary)]
enum Input {
    Raw(String),
    Signed {
        signer: Signer,
        header: Vec<u8>,
        payload: Vec<u8>,
    },
    Built(Built),
}

const ALGS: [&str; 12] = [
    "HS256", "RS256", "ES256", "EdDSA", "none", "HS512", "RS384", "PS256", "ES384", "hs256", "",
    "NONE",
];
const KIDS: [&str; 5] = ["rsa-1", "ec-1", "ed-1", "", "rsa-2"];
const HEADER_NAMES: [&str; 7] = ["jku", "jwk", "x5u", "x5c", "crit", "typ", "x5t"];

fn claim(c: &Claim) -> Value {
    match c {
        Claim::Int(i) => json!(i),
        Claim::Near(d) => json!(NOW + i64::from(*d)),
        Claim::Str(s) => json!(s),
        Claim::Bool(b) => json!(b),
        Claim::Null => Value::Null,
        Claim::Float(f) => json!(f),
    }
}

/// What a correct verifier may accept: the header parses, names the
/// signer's algorithm, no key by reference or embedded, no `crit`, and a
/// kid (if any) that names the signer's key.
fn acceptable_header(signer: Signer, header: &[u8]) -> bool {
    let Ok(Value::Object(h)) = serde_json::from_slice::<Value>(header) else {
        return false;
    };
    let forbidden = ["jku", "jwk", "x5u", "x5c", "crit"];
    h.get("alg") == Some(&json!(signer.alg()))
        && !forbidden.iter().any(|f| h.contains_key(*f))
        && match h.get("kid") {
            None => true,
            Some(kid) => signer.kid().is_some_and(|k| kid == k),
        }
}

fn check(signer: Option<Signer>, header: &[u8], payload: &[u8], token: &str) {
    let result = verifier().verify(token, NOW);
    let Ok(id) = result else { return };
    let signer = signer.expect("an unsigned (fuzzer-made) token was accepted");
    assert!(
        signer.right(),
        "a token signed by an unconfigured key was accepted"
    );
    assert!(
        acceptable_header(signer, header),
        "header {:?}",
        String::from_utf8_lossy(header)
    );
    let claims: Map<String, Value> =
        serde_json::from_slice(payload).expect("claims are a JSON object");
    // RFC 7519 NumericDate may be fractional: jwt-compact truncates it
    // toward zero (found by this target; see fuzz/README.md).
    let exp = match claims.get("exp").expect("exp") {
        Value::Number(n) => n
            .as_i64()
            .unwrap_or_else(|| n.as_f64().expect("number") as i64),
        other => panic!("exp {other:?} accepted"),
    };
    assert_eq!(id.expires_at, exp);
    assert!(exp >= NOW - 30, "expired token accepted");
    let sub = claims.get("sub").expect("sub");
    let expected_sub = match sub {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    assert_eq!(id.user_id, expected_sub);
}

fuzz_target!(|input: Input| match input {
    Input::Raw(s) => check(None, b"", b"", &s),
    Input::Signed {
        signer,
        header,
        payload,
    } => {
        check(
            Some(signer),
            &header,
            &payload,
            &token(signer, &header, &payload),
        );
    }
    Input::Built(b) => {
        let mut header = Map::new();
        let alg = match &b.alg {
            Alg::Signer => b.signer.alg().to_owned(),
            Alg::Other(s) => s.clone(),
            Alg::Pick(i) => ALGS[usize::from(*i) % ALGS.len()].to_owned(),
        };
        header.insert("alg".into(), json!(alg));
        match &b.kid {
            Kid::None => {}
            Kid::Signer => {
                if let Some(kid) = b.signer.kid() {
                    header.insert("kid".into(), json!(kid));
                }
            }
            Kid::Other(s) => {
                header.insert("kid".into(), json!(s));
            }
            Kid::Pick(i) => {
                header.insert("kid".into(), json!(KIDS[usize::from(*i) % KIDS.len()]));
            }
        }
        for (i, (name, value)) in b.extra_header.iter().enumerate().take(4) {
            let name = if i % 2 == 0 {
                HEADER_NAMES[name.len() % HEADER_NAMES.len()].to_owned()
            } else {
                name.clone()
            };
            header.insert(name, claim(value));
        }
        let mut claims = Map::new();
        for (name, value) in [("sub", &b.sub), ("exp", &b.exp), ("nbf", &b.nbf)] {
            if let Some(value) = value {
                claims.insert(name.into(), claim(value));
            }
        }
        for (name, value) in b.extra_claims.iter().take(4) {
            claims.insert(name.clone(), claim(value));
        }
        let header = serde_json::to_vec(&header).unwrap();
        let payload = serde_json::to_vec(&claims).unwrap();
        let mut token = token(b.signer, &header, &payload);
        if let Some((at, byte)) = b.flip {
            let mut bytes = token.into_bytes();
            let at = usize::from(at) % bytes.len();
            bytes[at] = byte;
            match String::from_utf8(bytes) {
                Ok(t) => token = t,
                Err(_) => return,
            }
            // A flipped token may still verify only if it decodes to the same
            // bytes (unused low bits of a base64url character).
            if let Ok(id) = verifier().verify(&token, NOW) {
                let original = sse_gateway_fuzz::keys::token(b.signer, &header, &payload);
                let again = verifier()
                    .verify(&original, NOW)
                    .expect("original verifies too");
                assert_eq!(id, again);
            }
            return;
        }
        check(Some(b.signer), &header, &payload, &token);
    }
});
