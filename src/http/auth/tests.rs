//! Verifying HS256 tokens: claims, times, roles, refusals.

use super::verify::OtherClaims;
use super::*;
use chrono::{DateTime, Utc};
// Tokens are signed with jwt-compact's own HS256 (RustCrypto): an
// issuer independent of the ring HS256 the verifier uses.
use jwt_compact::{
    alg::{Hs256, Hs256Key, Hs512, Hs512Key},
    Algorithm, AlgorithmExt, AlgorithmSignature, Claims, Header, Renamed,
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
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
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
