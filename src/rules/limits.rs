//! Per-user stream slots in Redis and the request header budget.
//!
//! A user's open streams are members of a sorted set scored by lease expiry
//! (Redis `TIME`, so instances with skewed clocks agree). A stream takes a
//! slot when it opens and gives it back when it closes; a crashed
//! instance's slots expire with their lease. The key itself expires with
//! the longest lease, so idle users leave nothing behind.
//!
//! Two kinds of lease. A p2 stream (one per instance) and every stream on
//! Redis Cluster renew their own at every heartbeat ([`Slot::renew`]). The
//! streams of a p3 instance on one Redis share their instance's lease
//! (`machine::instance::InstanceLease`: one `SET … PX` per heartbeat interval, whatever the
//! number of streams): their member names the lease key (`lease/member`),
//! and a member whose score has passed is kept, its score moved on, while
//! that key lives, dropped once it is gone. Their slot set lives as long
//! as a stream may (`max_stream_seconds`) plus a lease, so no renewal has
//! to touch it. Both kinds share one acquire script and may share a set.

/// Takes a slot. `KEYS[1]` slot set, `KEYS[2]` (instance leases only) the
/// instance's lease key, refreshed here; `ARGV`: member, lease ms, max
/// slots, the set's lifetime ms. Returns 1 when taken, 0 when the user is
/// at the limit. Passed members go, unless they name a lease key that
/// still exists (on one Redis only: Cluster members name none).
pub const ACQUIRE_SCRIPT: &str = r#"local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
if KEYS[2] then redis.call('SET', KEYS[2], '1', 'PX', ARGV[2]) end
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
  local lease = string.match(m, '^(.+)/[^/]*$')
  if lease and redis.call('EXISTS', lease) == 1 then
    redis.call('ZADD', KEYS[1], now + ARGV[2], m)
  else
    redis.call('ZREM', KEYS[1], m)
  end
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], now + ARGV[2], ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[4]) then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
return 1"#;

/// Extends a held slot's lease. `KEYS[1]` slot set; `ARGV`: member, lease ms.
pub const RENEW_SCRIPT: &str = r#"local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZADD', KEYS[1], 'XX', now + ARGV[2], ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1"#;

/// A lease outlives three heartbeats, so a live holder never loses it
/// between renewals.
pub(crate) fn lease_ms(heartbeat_seconds: u64) -> u64 {
    heartbeat_seconds * 3_000 + 5_000
}

/// A stream's slot: the set it lives in and its member name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// The user's slot set.
    pub key: String,
    /// This stream's unique member (`lease/member` under an instance lease).
    pub member: String,
    /// Lease length in milliseconds.
    pub lease_ms: u64,
    /// How long the set lives after this acquire (ms).
    set_ms: u64,
    /// The instance's lease key, when the stream lives by it.
    lease: Option<String>,
}

impl Slot {
    /// A slot for one stream that renews its own lease.
    pub fn new(key: String, member: String, heartbeat_seconds: u64) -> Slot {
        let lease_ms = lease_ms(heartbeat_seconds);
        Slot {
            key,
            member,
            lease_ms,
            set_ms: lease_ms,
            lease: None,
        }
    }

    /// A slot that lives by the instance lease `lease_key`
    /// (`machine::instance::InstanceLease`): its set outlives the longest stream.
    pub fn under_lease(mut self, lease_key: &str, max_stream_seconds: u64) -> Slot {
        self.member = format!("{lease_key}/{}", self.member);
        self.set_ms = max_stream_seconds * 1000 + self.lease_ms;
        self.lease = Some(lease_key.to_string());
        self
    }

    /// `EVAL` arguments that take the slot (at most `max` per user).
    pub fn acquire(&self, max: u64) -> Vec<Vec<u8>> {
        let mut keys = vec![self.key.as_str()];
        keys.extend(self.lease.as_deref());
        let (n, lease, max, set) = (
            keys.len().to_string(),
            self.lease_ms.to_string(),
            max.to_string(),
            self.set_ms.to_string(),
        );
        let mut parts = vec!["EVAL", ACQUIRE_SCRIPT, &n];
        parts.extend(keys);
        parts.extend([self.member.as_str(), &lease, &max, &set]);
        args(&parts)
    }

    /// `EVAL` arguments that renew the lease at a heartbeat; none when the
    /// instance's lease covers it.
    pub fn renew(&self) -> Option<Vec<Vec<u8>>> {
        self.lease.is_none().then(|| {
            args(&[
                "EVAL",
                RENEW_SCRIPT,
                "1",
                &self.key,
                &self.member,
                &self.lease_ms.to_string(),
            ])
        })
    }

    /// `ZREM` arguments that give the slot back.
    pub fn release(&self) -> Vec<Vec<u8>> {
        args(&["ZREM", &self.key, &self.member])
    }
}

pub(crate) fn args(parts: &[&str]) -> Vec<Vec<u8>> {
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
        assert_eq!(
            &a[3..],
            [&b"sse:streams:u1"[..], b"abc", b"8000", b"10", b"8000"]
        );
        assert_eq!(
            s.release(),
            vec![
                b"ZREM".to_vec(),
                b"sse:streams:u1".to_vec(),
                b"abc".to_vec()
            ]
        );
        let renew = s.renew().expect("its own lease");
        assert_eq!(&renew[3..], [&b"sse:streams:u1"[..], b"abc", b"8000"]);
        // Under the instance's lease: the member names it, the acquire
        // refreshes it, the set outlives the longest stream, no renewal.
        let s = s.under_lease("sse:instance:i7", 3600);
        let a = s.acquire(10);
        assert_eq!(a[2], b"2");
        let rest: Vec<&[u8]> = a[3..].iter().map(Vec::as_slice).collect();
        assert_eq!(
            rest,
            [
                &b"sse:streams:u1"[..],
                b"sse:instance:i7",
                b"sse:instance:i7/abc",
                b"8000",
                b"10",
                b"3608000"
            ]
        );
        assert_eq!(s.release()[2], b"sse:instance:i7/abc");
        assert_eq!(s.renew(), None);
    }

    #[test]
    fn header_budget_counts_names_and_values() {
        let h = [("cookie", &b"a=b"[..]), ("authorization", b"Bearer x")];
        assert_eq!(header_bytes(h), 6 + 3 + 13 + 8);
    }
}
