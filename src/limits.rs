//! Per-user stream slots in Redis and the request header and body budgets.
//!
//! A user's open streams are members of a sorted set scored by lease expiry
//! (Redis `TIME`, so instances with skewed clocks agree). A stream takes a
//! slot when it opens, renews its lease at every heartbeat and gives it back
//! when it closes; a crashed instance's slots simply expire. The key itself
//! expires with the longest lease, so idle users leave nothing behind.

use crate::error::ApiError;

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

/// What a browser refused by [`admit_to_instance`] waits before retrying.
pub const INSTANCE_RETRY_AFTER_SECONDS: u32 = 1;

/// Per-instance admission (the `p3` build serves many streams per
/// instance): one more stream when `open` are already served, or the 503
/// (with `retry-after`: `EventSource` and the fetch client reconnect, and
/// the host may route the retry elsewhere) and its `instance_full` log
/// line. `max` is `max_streams_per_instance`, by default what the
/// instance's memory holds at each stream's worst case, so a full
/// instance refuses rather than traps and takes every stream with it.
pub fn admit_to_instance(open: usize, max: u64) -> Result<(), (ApiError, String)> {
    if (open as u64) < max {
        return Ok(());
    }
    let line = crate::log::line(
        "instance_full",
        &[("streams", open.into()), ("limit", max.into())],
    );
    Err((
        ApiError::service_unavailable(INSTANCE_RETRY_AFTER_SECONDS),
        line,
    ))
}

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

/// The length a request declares (its first `content-length` value), if
/// it is a number; the budget still counts the bytes that arrive.
pub fn content_length(values: &[Vec<u8>]) -> Option<u64> {
    let first = values.first()?;
    std::str::from_utf8(first).ok()?.trim().parse().ok()
}

/// A request body being read: at most `max_bytes` (413), and complete
/// before `deadline` (408), so neither a huge nor a never-ending body can
/// hold an instance. Times are the shell's monotonic nanoseconds.
#[derive(Debug)]
pub struct BodyBudget {
    max_bytes: usize,
    deadline: u64,
    max_seconds: u64,
    buf: Vec<u8>,
}

impl BodyBudget {
    /// Starts reading at `now`; a declared `content-length` over the limit
    /// is refused before any byte is read.
    pub fn new(
        declared: Option<u64>,
        max_bytes: usize,
        max_seconds: u64,
        now: u64,
    ) -> Result<BodyBudget, ApiError> {
        if declared.is_some_and(|n| n > max_bytes as u64) {
            return Err(ApiError::payload_too_large(max_bytes));
        }
        Ok(BodyBudget {
            max_bytes,
            deadline: now.saturating_add(max_seconds.saturating_mul(1_000_000_000)),
            max_seconds,
            buf: Vec::new(),
        })
    }

    /// The instant the whole body must have arrived by.
    pub fn deadline(&self) -> u64 {
        self.deadline
    }

    /// Takes bytes that arrived at `now`.
    pub fn push(&mut self, chunk: &[u8], now: u64) -> Result<(), ApiError> {
        self.buf.extend_from_slice(chunk);
        if self.buf.len() > self.max_bytes {
            return Err(ApiError::payload_too_large(self.max_bytes));
        }
        self.check_time(now)
    }

    /// 408 once the deadline has passed.
    pub fn check_time(&self, now: u64) -> Result<(), ApiError> {
        if now >= self.deadline {
            return Err(ApiError::request_timeout(self.max_seconds));
        }
        Ok(())
    }

    /// The complete body.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn declared_length_is_the_first_number() {
        let v = |items: &[&str]| {
            items
                .iter()
                .map(|s| s.as_bytes().to_vec())
                .collect::<Vec<_>>()
        };
        assert_eq!(content_length(&v(&[" 42 "])), Some(42));
        assert_eq!(content_length(&v(&["7", "9"])), Some(7));
        assert_eq!(content_length(&v(&[])), None);
        assert_eq!(content_length(&v(&["-1"])), None);
        assert_eq!(content_length(&v(&["12abc"])), None);
    }

    #[test]
    fn an_instance_admits_up_to_its_limit_then_503s_with_retry_after() {
        assert!(admit_to_instance(0, 1).is_ok());
        assert!(admit_to_instance(2, 3).is_ok());
        let (e, line) = admit_to_instance(3, 3).unwrap_err();
        assert_eq!(e.status, 503);
        assert!(e.headers.contains(&("retry-after", "1".to_string())));
        assert!(
            line.contains("instance_full") && line.contains("\"limit\":3"),
            "{line}"
        );
        assert!(admit_to_instance(4, 3).is_err());
    }

    #[test]
    fn body_budget_bounds_size_and_time() {
        assert_eq!(BodyBudget::new(Some(11), 10, 5, 0).unwrap_err().status, 413);
        let mut b = BodyBudget::new(Some(10), 10, 5, 7).unwrap();
        assert_eq!(b.deadline(), 7 + 5 * S);
        b.push(b"12345", S).unwrap();
        b.push(b"67890", 2 * S).unwrap();
        assert_eq!(b.finish(), b"1234567890");
        // A body that lies about its length is cut at the limit.
        let mut b = BodyBudget::new(Some(1), 10, 5, 0).unwrap();
        assert_eq!(b.push(&[0; 11], 0).unwrap_err().status, 413);
        // One byte, then silence.
        let mut b = BodyBudget::new(Some(100), 1000, 5, 0).unwrap();
        b.push(b"{", S).unwrap();
        assert!(b.check_time(5 * S - 1).is_ok());
        let e = b.check_time(5 * S).unwrap_err();
        assert_eq!((e.status, e.kind), (408, "RequestTimeoutError"));
        assert_eq!(b.push(b"}", 6 * S).unwrap_err().status, 408);
        // Huge limits saturate instead of wrapping.
        let b = BodyBudget::new(None, 10, u64::MAX, u64::MAX - 1).unwrap();
        assert_eq!(b.deadline(), u64::MAX);
    }

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
