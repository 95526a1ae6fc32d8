//! Asymmetric JWT keys end to end: RS256, ES256 and EdDSA tokens signed by
//! OpenSSL (an independent signer), verified by the component with keys from
//! `JWT_PUBLIC_KEYS` (PEM, `kid:` headers) and `JWT_JWKS`; and the attacks
//! that must stay 401: algorithm confusion, `alg: none`, unknown `kid`,
//! wrong key type, algorithms not allowed by config.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use common::*;
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

const EVENT: Duration = Duration::from_secs(10);

fn testdata(name: &str) -> PathBuf {
    crate_dir().join("src/http/auth/testdata").join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(testdata(name)).expect("test key")
}

fn openssl(args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl runs");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// DER `ECDSA-Sig-Value` (SEQUENCE of two INTEGERs) → JOSE `r || s`.
fn der_to_jose(der: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 2; // SEQUENCE tag + short length (an ES256 signature is < 128 bytes)
    for _ in 0..2 {
        assert_eq!(der[i], 0x02, "INTEGER");
        let len = der[i + 1] as usize;
        let int = &der[i + 2..i + 2 + len];
        let int = &int[int.len().saturating_sub(32)..];
        out.extend(std::iter::repeat_n(0, 32 - int.len()));
        out.extend_from_slice(int);
        i += 2 + len;
    }
    out
}

/// Signs `header.claims` with a private key file, as an identity provider would.
fn sign(alg: &str, key_file: &str, header: &Value, claims: &Value) -> String {
    sign_with(alg, &testdata(key_file), header, claims)
}

/// [`sign`] with a key file anywhere.
fn sign_with(alg: &str, key: &std::path::Path, header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let key = key.to_str().unwrap();
    let sig = match alg {
        "RS256" => openssl(&["dgst", "-sha256", "-sign", key], input.as_bytes()),
        "ES256" => der_to_jose(&openssl(
            &["dgst", "-sha256", "-sign", key],
            input.as_bytes(),
        )),
        "EdDSA" => {
            let file = crate_dir().join("target/e2e").join(format!(
                "jws-{}-{}",
                std::process::id(),
                new_execution_id()
            ));
            std::fs::write(&file, &input).unwrap();
            let sig = openssl(
                &[
                    "pkeyutl",
                    "-sign",
                    "-rawin",
                    "-inkey",
                    key,
                    "-in",
                    file.to_str().unwrap(),
                ],
                b"",
            );
            let _ = std::fs::remove_file(file);
            sig
        }
        other => panic!("no signer for {other}"),
    };
    format!("{input}.{}", B64.encode(sig))
}

/// An RSA key no gateway is configured with, made by OpenSSL for this run.
fn fresh_rsa_key() -> PathBuf {
    let dir = crate_dir().join("target/e2e/keys");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!(
        "rsa-{}-{}.pem",
        std::process::id(),
        new_execution_id()
    ));
    openssl(
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            path.to_str().unwrap(),
        ],
        b"",
    );
    path
}

fn claims(sub: &str) -> Value {
    json!({"sub": sub, "role": "user", "iat": jwt::now(), "exp": jwt::now() + 600})
}

/// PEM with a `kid:` header line (RFC 1421 style) before the base64 body.
fn with_kid(pem: &str, kid: &str) -> String {
    let mut lines = pem.lines();
    let begin = lines.next().unwrap();
    let rest: Vec<&str> = lines.collect();
    format!("{begin}\nkid: {kid}\n\n{}\n", rest.join("\n"))
}

/// A JWK for an Ed25519 public key: the raw key is the SPKI's last 32 bytes.
fn ed25519_jwk(pub_pem_file: &str, kid: &str) -> Value {
    let der = openssl(
        &["pkey", "-pubin", "-outform", "DER"],
        read(pub_pem_file).as_bytes(),
    );
    json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": B64.encode(&der[der.len() - 32..])})
}

/// A JWK for an RSA public key (modulus from OpenSSL, exponent 65537).
fn rsa_jwk(pub_pem_file: &str, kid: &str) -> Value {
    let text = String::from_utf8(openssl(
        &["rsa", "-pubin", "-noout", "-modulus"],
        read(pub_pem_file).as_bytes(),
    ))
    .unwrap();
    let hex = text.trim().strip_prefix("Modulus=").unwrap();
    let n: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    json!({"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig", "n": B64.encode(n), "e": "AQAB"})
}

/// A gateway accepting RS256 (PEM, no kid), ES256 (PEM, kid `ec-1`) and
/// EdDSA + a second RSA key from a JWKS; HS256 stays allowed.
fn gateway() -> TestEnv {
    let pem = format!(
        "{}{}",
        read("rsa.pub.pem"),
        with_kid(&read("ec.pub.pem"), "ec-1")
    );
    let jwks =
        json!({"keys": [ed25519_jwk("ed25519.pub.pem", "ed-1"), rsa_jwk("rsa2.pub.pem", "rsa-2")]});
    TestEnv::start_with(|b| {
        b.env("JWT_ALGORITHMS", "HS256,RS256,ES256,EdDSA")
            .env("JWT_PUBLIC_KEYS", &pem)
            .env("JWT_JWKS", &jwks.to_string())
    })
}

fn stream_status(env: &TestEnv, token: &str, user: &str) -> u16 {
    let rec = ExecRecord::new(&new_execution_id(), user, "running");
    env.redis.put_execution(&rec);
    let auth = format!("Bearer {token}");
    let resp = get(
        env.gw.addr(),
        &format!("/api/v1/events/executions/{}", rec.id),
        &[("Authorization", &auth)],
    );
    resp.status
}

#[test]
fn each_algorithm_verifies_with_its_configured_key() {
    let env = gateway();
    let cases = [
        (
            "RS256",
            "rsa.key.pem",
            json!({"alg": "RS256", "typ": "JWT"}),
        ),
        (
            "ES256",
            "ec.key.pem",
            json!({"alg": "ES256", "kid": "ec-1"}),
        ),
        (
            "EdDSA",
            "ed25519.key.pem",
            json!({"alg": "EdDSA", "kid": "ed-1"}),
        ),
        (
            "RS256",
            "rsa2.key.pem",
            json!({"alg": "RS256", "kid": "rsa-2"}),
        ),
    ];
    for (alg, key, header) in cases {
        let user = format!("u-{}", alg.to_lowercase());
        let token = sign(alg, key, &header, &claims(&user));
        let rec = ExecRecord::new(&new_execution_id(), &user, "running");
        env.redis.put_execution(&rec);
        let auth = format!("Bearer {token}");
        let mut s = open_stream(
            env.gw.addr(),
            &format!("/api/v1/events/executions/{}", rec.id),
            &[("Authorization", &auth)],
        );
        let status = s.next_json(EVENT);
        assert_eq!(
            status["event_type"],
            "status",
            "{alg} with {key}: {}",
            env.gw.log()
        );
        assert_eq!(status["execution_id"], rec.id.as_str());
    }
    // HS256 keeps working beside them.
    assert_eq!(
        stream_status(&env, &jwt::token("hs-user", "user"), "hs-user"),
        200
    );
}

#[test]
fn forgeries_and_confusions_are_401() {
    let env = gateway();
    let c = claims("mallory");
    let rsa_pub_pem = read("rsa.pub.pem");
    let attacks: Vec<(&str, String)> = vec![
        // HMAC keyed with the public key text: the classic confusion.
        (
            "HS256 signed with the RSA public key",
            jwt::hs256(&rsa_pub_pem, &c),
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                B64.encode(r#"{"alg":"none"}"#),
                B64.encode(c.to_string())
            ),
        ),
        (
            "unknown kid",
            sign(
                "EdDSA",
                "ed25519.key.pem",
                &json!({"alg": "EdDSA", "kid": "nope"}),
                &c,
            ),
        ),
        // Right key id, wrong key type for the header's algorithm.
        (
            "ES256 header on an RSA kid",
            sign(
                "ES256",
                "ec.key.pem",
                &json!({"alg": "ES256", "kid": "rsa-2"}),
                &c,
            ),
        ),
        (
            "kid of another key",
            sign(
                "EdDSA",
                "ed25519-2.key.pem",
                &json!({"alg": "EdDSA", "kid": "ed-1"}),
                &c,
            ),
        ),
        (
            "RS256 by an unknown key",
            sign_with("RS256", &fresh_rsa_key(), &json!({"alg": "RS256"}), &c),
        ),
        (
            "embedded jwk header",
            sign(
                "EdDSA",
                "ed25519-2.key.pem",
                &json!({"alg": "EdDSA", "jwk": ed25519_jwk("ed25519-2.pub.pem", "x")}),
                &c,
            ),
        ),
    ];
    for (what, token) in attacks {
        eprintln!("attack: {what}");
        let rec = ExecRecord::new(&new_execution_id(), "mallory", "running");
        env.redis.put_execution(&rec);
        let auth = format!("Bearer {token}");
        let resp = get(
            env.gw.addr(),
            &format!("/api/v1/events/executions/{}", rec.id),
            &[("Authorization", &auth)],
        );
        let body = expect_json_error(&resp, 401, "InvalidCredentialsError");
        assert!(!body.to_string().contains(&token), "{what}: token echoed");
    }
}

#[test]
fn algorithms_not_allowed_by_config_are_401() {
    // Default config: HS256 only, no public keys.
    let env = TestEnv::start();
    let token = sign(
        "RS256",
        "rsa.key.pem",
        &json!({"alg": "RS256"}),
        &claims("u1"),
    );
    assert_eq!(stream_status(&env, &token, "u1"), 401);
    // EdDSA only: HS256 tokens are refused even with the right secret.
    let jwks = json!({"keys": [ed25519_jwk("ed25519.pub.pem", "ed-1")]});
    let env = TestEnv::start_with(|b| {
        b.env("JWT_ALGORITHMS", "EdDSA")
            .env("JWT_JWKS", &jwks.to_string())
    });
    assert_eq!(stream_status(&env, &jwt::token("u1", "user"), "u1"), 401);
    let ed = sign(
        "EdDSA",
        "ed25519.key.pem",
        &json!({"alg": "EdDSA", "kid": "ed-1"}),
        &claims("u1"),
    );
    assert_eq!(stream_status(&env, &ed, "u1"), 200);
}

#[test]
fn bad_key_config_is_a_500_naming_the_variable() {
    for (var, value, name) in [
        (
            "JWT_PUBLIC_KEYS",
            "-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n",
            "jwt_public_keys",
        ),
        ("JWT_PUBLIC_KEYS", &read("rsa.key.pem"), "jwt_public_keys"),
        ("JWT_JWKS", "{\"keys\": 5}", "jwt_jwks"),
        ("JWT_ALGORITHMS", "HS256,none", "jwt_algorithms"),
    ] {
        let env = TestEnv::start_with(|b| b.env("JWT_ALGORITHMS", "HS256,RS256").env(var, value));
        let resp = get(env.gw.addr(), "/api/v1/events/health", &[]);
        let body = expect_json_error(&resp, 500, "ConfigurationError");
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains(name), "{var}: {detail}");
        assert!(
            !detail.contains("MII"),
            "{var}: key material in the error: {detail}"
        );
    }
}

/// A token without `kid` costs one signature check: it is meant for the
/// key of its algorithm that has no `kid` (here the RS256 PEM key), and is
/// not tried against every other RS256 key; with several candidates it must
/// name one (issue 15).
#[test]
fn a_token_without_kid_is_not_tried_against_every_key() {
    let env = gateway();
    let no_kid = |key: &str| sign("RS256", key, &json!({"alg": "RS256"}), &claims("u-kid"));
    assert_eq!(stream_status(&env, &no_kid("rsa.key.pem"), "u-kid"), 200);
    // Signed by the JWKS key `rsa-2` but naming none: refused.
    assert_eq!(stream_status(&env, &no_kid("rsa2.key.pem"), "u-kid"), 401);
    // Two RS256 keys, neither with a kid: tokens must say which, and can't.
    let two = format!("{}{}", read("rsa.pub.pem"), read("rsa2.pub.pem"));
    let env = TestEnv::start_with(|b| {
        b.env("JWT_ALGORITHMS", "RS256")
            .env("JWT_PUBLIC_KEYS", &two)
    });
    assert_eq!(stream_status(&env, &no_kid("rsa.key.pem"), "u-kid"), 401);
    assert!(
        env.gw.log().contains("kid required"),
        "no auth_failed line naming the rule:\n{}",
        env.gw.log()
    );
}
