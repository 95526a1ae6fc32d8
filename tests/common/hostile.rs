//! Helpers for `tests/hostile.rs`: Redis connection
//! counters, tokens built from raw JSON text (to repeat keys, which a
//! `serde_json::Value` cannot hold) and raw requests.

use super::{jwt, send_raw_on, HttpResponse, RedisServer, SECRET};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A field of `INFO stats` (e.g. `total_connections_received`), read on
/// `con` so the reading itself opens no connection.
pub fn info_stat(con: &mut redis::Connection, field: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query(con)
        .expect("INFO stats");
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("INFO stats has no {field}: {info}"))
}

/// Every key and every pub/sub channel in Redis.
pub fn keys_and_channels(redis: &RedisServer) -> (Vec<String>, Vec<String>) {
    let mut con = redis.conn();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut con).unwrap();
    let channels: Vec<String> = redis::cmd("PUBSUB")
        .arg("CHANNELS")
        .query(&mut con)
        .unwrap();
    (keys, channels)
}

/// An HS256 token over raw header and payload JSON text, signed with the
/// gateway's secret.
pub fn raw_token(header: &str, payload: &str) -> String {
    let input = format!(
        "{}.{}",
        jwt::b64(header.as_bytes()),
        jwt::b64(payload.as_bytes())
    );
    let sig = jwt::hs256_sig(SECRET, &input);
    format!("{input}.{sig}")
}

/// `exp` an hour from now, for raw payloads.
pub fn exp() -> i64 {
    jwt::now() + 3600
}

/// A request head written byte for byte (`head` without the final blank
/// line), then `body`; the response head. The connection stays open, so a
/// body shorter than its `content-length` stays unfinished.
pub fn raw_request(addr: SocketAddr, head: &[u8], body: &[u8], timeout: Duration) -> HttpResponse {
    let stream = TcpStream::connect_timeout(&addr, timeout).expect("connect to the gateway");
    let mut raw = head.to_vec();
    raw.extend_from_slice(b"\r\n");
    raw.extend_from_slice(body);
    send_raw_on(stream, &raw, timeout).unwrap_or_else(|e| {
        panic!(
            "{:?}: {e}",
            String::from_utf8_lossy(&head[..head.len().min(60)])
        )
    })
}
