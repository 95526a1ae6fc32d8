//! Per-user stream slots in Redis and the request header budget.
//!
//! A user's open streams are members of a sorted set scored by lease expiry
//! (Redis `TIME`, so instances with skewed clocks agree). A stream takes a
//! slot when it opens, renews its lease at every heartbeat and gives it back
//! when it closes; a crashed instance's slots simply expire. The key itself
//! expires with the longest lease, so idle users leave nothing behind.

/// Takes a slot. `KEYS[1]` slot set; `ARGV`: member, lease ms, max slots.
/// Returns 1 when taken, 0 when the user is at the limit.
pub const ACQUIRE_SCRIPT: &str = r#"local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], now + ARGV[2], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1"#;

/// Extends a held slot's lease. `KEYS[1]` slot set; `ARGV`: member, lease ms.
pub const RENEW_SCRIPT: &str = r#"local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZADD', KEYS[1], 'XX', now + ARGV[2], ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1"#;

/// A stream's slot: the set it lives in and its member name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// The user's slot set.
    pub key: String,
    /// This stream's unique member.
    pub member: String,
    /// Lease length in milliseconds.
    pub lease_ms: u64,
}

impl Slot {
    /// A slot for one stream; the lease outlives three heartbeats so a live
    /// stream never loses it between renewals.
    pub fn new(key: String, member: String, heartbeat_seconds: u64) -> Slot {
        Slot {
            key,
            member,
            lease_ms: heartbeat_seconds * 3_000 + 5_000,
        }
    }

    /// `EVAL` arguments that take the slot (at most `max` per user).
    pub fn acquire(&self, max: u64) -> Vec<Vec<u8>> {
        args(&[
            "EVAL",
            ACQUIRE_SCRIPT,
            "1",
            &self.key,
            &self.member,
            &self.lease_ms.to_string(),
            &max.to_string(),
        ])
    }

    /// `EVAL` arguments that renew the lease.
    pub fn renew(&self) -> Vec<Vec<u8>> {
        args(&[
            "EVAL",
            RENEW_SCRIPT,
            "1",
            &self.key,
            &self.member,
            &self.lease_ms.to_string(),
        ])
    }

    /// `ZREM` arguments that give the slot back.
    pub fn release(&self) -> Vec<Vec<u8>> {
        args(&["ZREM", &self.key, &self.member])
    }
}

fn args(parts: &[&str]) -> Vec<Vec<u8>> {
    parts.iter().map(|s| s.as_bytes().to_vec()).collect()
}

/// Bytes a request's headers take (names + values), for the header budget.
pub fn header_bytes<'a>(headers: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> usize {
    headers.into_iter().map(|(k, v)| k.len() + v.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_outlives_three_heartbeats() {
        let s = Slot::new("k".into(), "m".into(), 15);
        assert_eq!(s.lease_ms, 50_000);
        assert!(s.lease_ms > 3 * 15_000);
    }

    #[test]
    fn commands_name_key_member_and_bounds() {
        let s = Slot::new("sse:streams:u1".into(), "abc".into(), 1);
        let a = s.acquire(10);
        assert_eq!(a[0], b"EVAL");
        assert_eq!(a[2], b"1");
        assert_eq!(&a[3..], [&b"sse:streams:u1"[..], b"abc", b"8000", b"10"]);
        assert_eq!(
            s.release(),
            vec![
                b"ZREM".to_vec(),
                b"sse:streams:u1".to_vec(),
                b"abc".to_vec()
            ]
        );
        assert_eq!(&s.renew()[3..], [&b"sse:streams:u1"[..], b"abc", b"8000"]);
    }

    #[test]
    fn header_budget_counts_names_and_values() {
        let h = [("cookie", &b"a=b"[..]), ("authorization", b"Bearer x")];
        assert_eq!(header_bytes(h), 6 + 3 + 13 + 8);
    }
}
