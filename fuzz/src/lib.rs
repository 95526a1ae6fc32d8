//! Helpers shared by the fuzz targets: a browser-style SSE parser, RESP value
//! normalisation, and token signing with the unit tests' throwaway keys.

use sse_gateway::redis::resp::Value;

/// One event as a browser's `EventSource` dispatches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatched {
    pub event_type: String,
    pub data: String,
    pub last_event_id: String,
}

/// Everything a browser gets from a stream of SSE bytes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub events: Vec<Dispatched>,
    pub retry: Option<u64>,
    /// Field names seen, in order (comments excluded), to spot injection.
    pub fields: Vec<String>,
}

/// The WHATWG HTML "event stream interpretation" algorithm, followed step by
/// step: lines end at CRLF, LF or CR; a blank line dispatches; `:` starts a
/// comment; one space after the colon is dropped; `id` with NUL is ignored;
/// `retry` only with ASCII digits; an unterminated last event is discarded.
pub fn parse_sse(stream: &str) -> Parsed {
    let stream = stream.strip_prefix('\u{feff}').unwrap_or(stream);
    let mut out = Parsed::default();
    let mut data = String::new();
    let mut event_type = String::new();
    let mut last_event_id = String::new();
    let mut rest = stream;
    // A last line without terminator is incomplete and never processed.
    while let Some(end) = rest.find(['\r', '\n']) {
        let line = &rest[..end];
        let skip = if rest[end..].starts_with("\r\n") {
            2
        } else {
            1
        };
        rest = &rest[end + skip..];
        if line.is_empty() {
            if data.is_empty() {
                event_type.clear();
                continue;
            }
            if data.ends_with('\n') {
                data.pop();
            }
            out.events.push(Dispatched {
                event_type: if event_type.is_empty() {
                    "message".to_owned()
                } else {
                    std::mem::take(&mut event_type)
                },
                data: std::mem::take(&mut data),
                last_event_id: last_event_id.clone(),
            });
            event_type.clear();
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        out.fields.push(field.to_owned());
        match field {
            "event" => event_type = value.to_owned(),
            "data" => {
                data.push_str(value);
                data.push('\n');
            }
            "id" if !value.contains('\0') => last_event_id = value.to_owned(),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                out.retry = value.parse().ok().or(out.retry);
            }
            _ => {}
        }
    }
    out
}

/// `text` with every CRLF, CR and LF turned into LF: what a browser rebuilds
/// from the `data:` lines.
pub fn normalize_newlines(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n")
}

/// Values made comparable: a NaN double (unequal to itself) becomes text, so
/// two decodes of the same bytes compare equal.
pub fn normalized(values: Vec<Value>) -> Vec<Value> {
    values.into_iter().map(normalize).collect()
}

fn normalize(value: Value) -> Value {
    match value {
        Value::Map(entries) => Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (normalize(k), normalize(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(normalize).collect()),
        Value::Push(items) => Value::Push(items.into_iter().map(normalize).collect()),
        Value::Double(d) if d.is_nan() => Value::Simple("NaN".into()),
        other => other,
    }
}

/// Signing with the throwaway keys in `src/http/auth/testdata` (TEST ONLY).
pub mod keys {
    use base64::Engine as _;
    use ed25519_compact::{KeyPair, SecretKey, Seed};
    use jwt_compact::{
        alg::{Ed25519, Es256, Hs256, Hs256Key},
        Algorithm, AlgorithmSignature,
    };
    use p256::ecdsa::SigningKey as P256Signer;
    use rsa::RsaPrivateKey;
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};

    pub const SECRET: &[u8] = b"fuzz-secret-for-the-sse-gateway-0123456789";
    pub const OTHER_SECRET: &[u8] = b"another-secret-of-similar-length-987654321";

    macro_rules! testdata {
        ($file:literal) => {
            include_str!(concat!("../../src/http/auth/testdata/", $file))
        };
    }
    pub const RSA_PUB: &str = testdata!("rsa.pub.pem");
    pub const EC_PUB: &str = testdata!("ec.pub.pem");
    pub const ED_PUB: &str = testdata!("ed25519.pub.pem");

    fn der(text: &str) -> Vec<u8> {
        pem::parse(text).expect("test PEM").into_contents()
    }

    /// Private keys: index 0 is configured in the verifier, 1 is not.
    pub struct Keys {
        pub rsa: [RsaPrivateKey; 2],
        pub ec: [P256Signer; 2],
        pub ed: [SecretKey; 2],
    }

    pub fn keys() -> &'static Keys {
        static KEYS: OnceLock<Keys> = OnceLock::new();
        KEYS.get_or_init(|| {
            use p256::pkcs8::DecodePrivateKey as _;
            let rsa = |t: &str| {
                let mut key = RsaPrivateKey::from_pkcs8_der(&der(t)).expect("RSA");
                key.precompute().expect("CRT values");
                key
            };
            let ec = |t: &str| P256Signer::from_pkcs8_der(&der(t)).expect("EC");
            let ed = |t: &str| {
                let der = der(t);
                let info = rsa::pkcs8::PrivateKeyInfo::try_from(der.as_slice()).expect("PKCS#8");
                let seed: [u8; 32] = info.private_key[2..].try_into().expect("seed");
                KeyPair::from_seed(Seed::new(seed)).sk
            };
            Keys {
                rsa: [
                    rsa(testdata!("rsa.key.pem")),
                    rsa(testdata!("rsa2.key.pem")),
                ],
                ec: [ec(testdata!("ec.key.pem")), ec(testdata!("ec2.key.pem"))],
                ed: [
                    ed(testdata!("ed25519.key.pem")),
                    ed(testdata!("ed25519-2.key.pem")),
                ],
            }
        })
    }

    /// Which key signs: the algorithm and whether it is the configured key.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Signer {
        Hs256 { right: bool },
        Rs256 { right: bool },
        Es256 { right: bool },
        EdDsa { right: bool },
    }

    /// Weighted towards the cheap signers: under coverage instrumentation
    /// an RSA signature costs ~70 ms, an ECDSA one ~1 ms, an HMAC or Ed25519
    /// one well under that (RSA signing took 91% of the first campaign).
    impl<'a> arbitrary::Arbitrary<'a> for Signer {
        fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
            let n = u16::arbitrary(u)?;
            let right = n & 0x8000 == 0 || n & 0x4000 == 0;
            Ok(match n % 1024 {
                0..=575 => Signer::Hs256 { right },
                576..=959 => Signer::EdDsa { right },
                960..=1015 => Signer::Es256 { right },
                _ => Signer::Rs256 { right },
            })
        }

        fn size_hint(_depth: usize) -> (usize, Option<usize>) {
            (2, Some(2))
        }
    }

    impl Signer {
        pub fn alg(self) -> &'static str {
            match self {
                Signer::Hs256 { .. } => "HS256",
                Signer::Rs256 { .. } => "RS256",
                Signer::Es256 { .. } => "ES256",
                Signer::EdDsa { .. } => "EdDSA",
            }
        }

        pub fn right(self) -> bool {
            match self {
                Signer::Hs256 { right }
                | Signer::Rs256 { right }
                | Signer::Es256 { right }
                | Signer::EdDsa { right } => right,
            }
        }

        /// The kid the configured key has in the fuzz verifier (HS256: none).
        pub fn kid(self) -> Option<&'static str> {
            match self {
                Signer::Hs256 { .. } => None,
                Signer::Rs256 { .. } => Some("rsa-1"),
                Signer::Es256 { .. } => Some("ec-1"),
                Signer::EdDsa { .. } => Some("ed-1"),
            }
        }

        pub fn sign(self, input: &[u8]) -> Vec<u8> {
            let k = keys();
            let i = usize::from(!self.right());
            match self {
                Signer::Hs256 { right } => {
                    let secret = if right { SECRET } else { OTHER_SECRET };
                    Hs256
                        .sign(&Hs256Key::new(secret), input)
                        .as_bytes()
                        .into_owned()
                }
                // RS256 without blinding (what `Rsa::rs256().sign` does, minus
                // the random blinding that triples its cost): a fuzz key
                // needs no side-channel protection.
                Signer::Rs256 { .. } => {
                    // Inputs recur (corpus replays, mutations of other fields).
                    type Signatures = HashMap<(usize, Vec<u8>), Vec<u8>>;
                    static CACHE: Mutex<Option<Signatures>> = Mutex::new(None);
                    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
                    let cache = cache.get_or_insert_with(HashMap::new);
                    if cache.len() > 4096 {
                        cache.clear();
                    }
                    cache
                        .entry((i, input.to_vec()))
                        .or_insert_with(|| {
                            use sha2::Digest as _;
                            let digest = sha2::Sha256::digest(input);
                            k.rsa[i]
                                .sign(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &digest)
                                .expect("RSA sign")
                        })
                        .clone()
                }
                Signer::Es256 { .. } => Es256.sign(&k.ec[i], input).as_bytes().into_owned(),
                Signer::EdDsa { .. } => Ed25519.sign(&k.ed[i], input).as_bytes().into_owned(),
            }
        }
    }

    pub fn b64url(data: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
    }

    /// `header.payload.signature` over raw header and payload bytes.
    pub fn token(signer: Signer, header: &[u8], payload: &[u8]) -> String {
        let input = format!("{}.{}", b64url(header), b64url(payload));
        let sig = signer.sign(input.as_bytes());
        format!("{input}.{}", b64url(&sig))
    }

    /// PEM for the configured (index 0) keys, with kids as in [`Signer::kid`].
    pub fn pem_bundle() -> String {
        // kid header lines, as `AuthConfig::with_keys` reads them.
        [(RSA_PUB, "rsa-1"), (EC_PUB, "ec-1"), (ED_PUB, "ed-1")]
            .iter()
            .map(|(pem_text, kid)| {
                pem_text.replacen(
                    "-----BEGIN PUBLIC KEY-----\n",
                    &format!("-----BEGIN PUBLIC KEY-----\nkid: {kid}\n\n"),
                    1,
                )
            })
            .collect()
    }
}
