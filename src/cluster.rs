//! Redis Cluster routing: which slot a key or shard channel lives in, and
//! where a `MOVED` redirect points.
//!
//! The gateway does not keep a slot map (an instance lives for one request):
//! it sends each command to the configured node and follows `MOVED` to the
//! owner. Sharded pub/sub (`SSUBSCRIBE`/`SPUBLISH`) keeps each channel's
//! traffic on the shard that owns it, so fan-out scales with the cluster.

/// Number of hash slots in a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// The hash slot of a key or shard channel (CRC16/XMODEM of the hash tag
/// `{...}` when there is a non-empty one, else of the whole name): the
/// well-kept implementation from `redis-protocol`.
pub use redis_protocol::redis_keyslot as key_slot;

/// Where a `MOVED <slot> <host>:<port>` error sends the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    /// The slot that moved.
    pub slot: u16,
    /// The owner's host (IPv6 without brackets).
    pub host: String,
    /// The owner's port.
    pub port: u16,
}

/// Finds a `MOVED` redirect in an error text. `ASK` (a slot mid-migration)
/// is not followed: the request fails with 503 and the client retries.
pub fn parse_moved(error: &str) -> Option<Moved> {
    let at = error.find("MOVED ")?;
    let mut parts = error[at + 6..].split_whitespace();
    let slot = parts.next()?.parse().ok()?;
    let endpoint = parts.next()?;
    let (host, port) = endpoint.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || slot >= SLOTS {
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
        for bad in [
            "ASK 3999 127.0.0.1:6381",
            "MOVED x h:1",
            "MOVED 99999 h:1",
            "MOVED 1 h",
            "MOVED 1 :1",
        ] {
            assert_eq!(parse_moved(bad), None, "{bad}");
        }
    }
}
