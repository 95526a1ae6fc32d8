//! Mints an HS256 development token for local runs:
//! `cargo run -q --example mint_token -- SECRET SUB [ROLE] [TTL_SECONDS]`.
//! For local development only; production tokens come from the backend.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: mint_token SECRET SUB [ROLE] [TTL_SECONDS]");
        std::process::exit(2);
    }
    let role = args.get(2).map(String::as_str).unwrap_or("user");
    let ttl: u64 = args.get(3).and_then(|t| t.parse().ok()).unwrap_or(3600);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let header = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = serde_json::json!({"sub": args[1], "role": role, "iat": now, "exp": now + ttl});
    let payload = B64.encode(claims.to_string());
    let signing_input = format!("{header}.{payload}");
    let mut mac = Hmac::<Sha256>::new_from_slice(args[0].as_bytes()).expect("any key length");
    mac.update(signing_input.as_bytes());
    println!(
        "{signing_input}.{}",
        B64.encode(mac.finalize().into_bytes())
    );
}
