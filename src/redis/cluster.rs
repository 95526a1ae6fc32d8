//! Redis Cluster routing: which slot a key or shard channel lives in, and
//! where a `MOVED` redirect points.
//!
//! The gateway does not keep a slot map (an instance lives for one request):
//! it sends each command to the configured node and follows `MOVED` to the
//! owner. Sharded pub/sub (`SSUBSCRIBE`/`SPUBLISH`) keeps each channel's
//! traffic on the shard that owns it, so fan-out scales with the cluster.

/// Number of hash slots in a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// CRC16/XMODEM (polynomial 0x1021, initial value 0): the checksum Redis
/// Cluster hashes keys with. Tests only: the gateway never computes a
/// slot (Redis says where a key lives with `MOVED`); the tests check that
/// a history key and its channel share one.
#[cfg(test)]
const CRC16: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_XMODEM);

/// The hash slot of a key or shard channel: CRC16 of its hash tag when it
/// has a non-empty one, else of the whole name.
#[cfg(test)]
pub fn key_slot(key: &[u8]) -> u16 {
    CRC16.checksum(hash_tag(key)) % SLOTS
}

/// What Redis hashes: the bytes between the first `{` and the first `}`
/// after it when there are any, else the whole key.
#[cfg(test)]
fn hash_tag(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|&b| b == b'{') else {
        return key;
    };
    let inner = &key[open + 1..];
    match inner.iter().position(|&b| b == b'}') {
        Some(len) if len > 0 => &inner[..len],
        _ => key,
    }
}

/// Where a `MOVED <slot> <host>:<port>` error sends the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    /// The slot that moved.
    pub slot: u16,
    /// The owner's host: an IP (IPv6 without brackets) or, with
    /// `cluster-preferred-endpoint-type hostname`, a name, resolved and
    /// verified (TLS) like the configured host. Empty: the same host as
    /// the node that answered (Redis 7 sends `:port` when it knows no
    /// endpoint to give).
    pub host: String,
    /// The owner's port.
    pub port: u16,
}

impl Moved {
    /// Points `target` at the slot's owner, keeping its TLS settings and
    /// resolver (every node is reached and verified like the first); an
    /// empty host keeps the host that answered.
    pub fn redirect(&self, target: &mut crate::redis::target::RedisTarget) {
        if !self.host.is_empty() {
            target.host.clone_from(&self.host);
        }
        target.port = self.port;
    }
}

/// Finds a `MOVED` redirect in an error text.
pub fn parse_moved(error: &str) -> Option<Moved> {
    parse_redirect(error, "MOVED ")
}

/// Finds an `ASK` redirect (a slot mid-migration) in an error text. It is
/// not followed: the request fails with 503 and the client retries.
pub fn parse_ask(error: &str) -> Option<Moved> {
    parse_redirect(error, "ASK ")
}

/// `<word><slot> <host>:<port>`, the shape both redirects share.
fn parse_redirect(error: &str, word: &str) -> Option<Moved> {
    let at = error.find(word)?;
    let mut parts = error[at + word.len()..].split_whitespace();
    let slot = parts.next()?.parse().ok()?;
    let endpoint = parts.next()?;
    let (host, port) = endpoint.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    // `?`: the node knows no endpoint for the owner (unknown-endpoint).
    if host == "?" || slot >= SLOTS {
        return None;
    }
    Some(Moved {
        slot,
        host: host.to_string(),
        port: port.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_is_xmodem() {
        // The check value Redis documents (cluster spec, appendix A).
        assert_eq!(CRC16.checksum(b"123456789"), 0x31C3);
        assert_eq!(CRC16.checksum(b""), 0);
    }

    #[test]
    fn slots_match_redis() {
        // Values from `CLUSTER KEYSLOT` on Redis 7.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"123456789"), 12739);
        assert_eq!(key_slot(b""), 0);
    }

    #[test]
    fn hash_tags() {
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"history:{sse:exec:e1}"), key_slot(b"sse:exec:e1"));
        // Empty tag or no closing brace: the whole key counts.
        assert_eq!(key_slot(b"foo{}{bar}"), 8363);
        assert_eq!(key_slot(b"foo{bar"), 15278);
        assert_eq!(key_slot(b"{a}{b}"), key_slot(b"a"));
    }

    #[test]
    fn moved_redirects() {
        assert_eq!(
            parse_moved("redis protocol: server error: MOVED 3999 127.0.0.1:6381"),
            Some(Moved {
                slot: 3999,
                host: "127.0.0.1".into(),
                port: 6381
            })
        );
        assert_eq!(
            parse_moved("MOVED 1 [::1]:7000").map(|m| m.host),
            Some("::1".to_string())
        );
        assert_eq!(
            parse_moved("MOVED 5 redis-2.redis.svc.cluster.local:6380").map(|m| (m.host, m.port)),
            Some(("redis-2.redis.svc.cluster.local".to_string(), 6380))
        );
        assert_eq!(
            parse_moved("MOVED 1 :7001").map(|m| m.host),
            Some(String::new())
        );
        assert_eq!(
            parse_ask("ASK 3999 127.0.0.1:6381"),
            Some(Moved {
                slot: 3999,
                host: "127.0.0.1".into(),
                port: 6381
            })
        );
        assert_eq!(parse_ask("MOVED 3999 127.0.0.1:6381"), None);
        for bad in [
            "ASK 3999 127.0.0.1:6381",
            "MOVED x h:1",
            "MOVED 99999 h:1",
            "MOVED 1 h",
            "MOVED 1 ?:7000",
        ] {
            assert_eq!(parse_moved(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_redirect_keeps_tls_and_the_resolver() {
        let mut t = crate::redis::target::parse_redis_url("rediss://:pw@redis.svc:6380").unwrap();
        t.dns_server = Some("10.96.0.10:53".parse().unwrap());
        let before = t.clone();
        parse_moved("MOVED 1 redis-2.svc:7001")
            .unwrap()
            .redirect(&mut t);
        assert_eq!((t.host.as_str(), t.port), ("redis-2.svc", 7001));
        assert_eq!((&t.tls, t.dns_server), (&before.tls, before.dns_server));
        assert_eq!(t.password, before.password);
        // `:port`: the node that answered, on another port.
        parse_moved("MOVED 1 :7002").unwrap().redirect(&mut t);
        assert_eq!((t.host.as_str(), t.port), ("redis-2.svc", 7002));
    }
}
