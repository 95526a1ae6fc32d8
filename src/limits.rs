//! Per-user stream slots in Redis and the request header and body budgets.
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
//! ([`InstanceLease`]: one `SET … PX` per heartbeat interval, whatever the
//! number of streams): their member names the lease key (`lease/member`),
//! and a member whose score has passed is kept, its score moved on, while
//! that key lives, dropped once it is gone. Their slot set lives as long
//! as a stream may (`max_stream_seconds`) plus a lease, so no renewal has
//! to touch it. Both kinds share one acquire script and may share a set.

use crate::config::Config;
use crate::error::ApiError;

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

/// What a browser refused by [`InstanceAdmission::take`] waits before
/// retrying.
pub const INSTANCE_RETRY_AFTER_SECONDS: u32 = 1;

/// What one `p3` instance takes on: `max_streams_per_instance` streams at
/// once, and new streams only while its memory is under
/// `retire_instance_memory_mib` (0: always).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceCapacity {
    pub max_streams: u64,
    pub retire_bytes: u64,
}

impl InstanceCapacity {
    pub fn of(cfg: &Config) -> InstanceCapacity {
        InstanceCapacity {
            max_streams: cfg.limits.max_streams_per_instance,
            retire_bytes: cfg.limits.retire_instance_memory_bytes,
        }
    }
}

/// The size of a wasm memory page, in which the shell reads its memory.
const WASM_PAGE_BYTES: u64 = 64 * 1024;

/// Per-instance admission (the `p3` build serves many streams per
/// instance). At `max_streams` the instance asks the host for no more
/// requests (the component model's `backpressure`: both hosts then start
/// or pick another instance, and the browser notices nothing); a request
/// that reaches it anyway is a 503 with `retry-after` and the
/// `instance_full` line. Below `max_streams` again, the pressure is lifted.
///
/// A wasm memory never shrinks, so an instance whose memory grew past
/// `retire_bytes` (stalled replays, a burst of large histories) retires: it
/// keeps serving its streams but sets the pressure for good, so it takes
/// no new one, and the host drops it, giving its memory back, once its
/// last stream ends. Without this a busy instance holds its peak forever.
#[derive(Debug, Default)]
pub struct InstanceAdmission {
    serving: usize,
    pressing: bool,
    retired: bool,
    log: Option<String>,
}

/// What the shell tells the host after an admission change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backpressure {
    /// No new requests for this instance (`backpressure.inc`).
    Set,
    /// New requests welcome again (`backpressure.dec`).
    Lift,
}

impl InstanceAdmission {
    /// One more stream, or the refusal and its log line. `memory_pages`:
    /// the instance's memory now.
    pub fn take(
        &mut self,
        cap: InstanceCapacity,
        memory_pages: u64,
    ) -> Result<Option<Backpressure>, (ApiError, String)> {
        if self.serving as u64 >= cap.max_streams {
            let line = crate::log::line(
                "instance_full",
                &[
                    ("streams", self.serving.into()),
                    ("limit", cap.max_streams.into()),
                ],
            );
            return Err((
                ApiError::service_unavailable(INSTANCE_RETRY_AFTER_SECONDS),
                line,
            ));
        }
        self.serving += 1;
        Ok(self.pressure(cap, memory_pages))
    }

    /// A stream left.
    pub fn give_back(&mut self, cap: InstanceCapacity, memory_pages: u64) -> Option<Backpressure> {
        self.serving = self.serving.saturating_sub(1);
        self.pressure(cap, memory_pages)
    }

    /// The `instance_retired` line, once, when the instance retires.
    pub fn take_log(&mut self) -> Option<String> {
        self.log.take()
    }

    /// The change to pass on, when the instance became full, stopped being
    /// full, or retired.
    fn pressure(&mut self, cap: InstanceCapacity, memory_pages: u64) -> Option<Backpressure> {
        let memory = memory_pages.saturating_mul(WASM_PAGE_BYTES);
        if !self.retired && cap.retire_bytes > 0 && memory >= cap.retire_bytes {
            self.retired = true;
            self.log = Some(crate::log::line(
                "instance_retired",
                &[
                    ("memory_bytes", memory.into()),
                    ("limit_bytes", cap.retire_bytes.into()),
                    ("streams", self.serving.into()),
                ],
            ));
        }
        let press = self.retired || self.serving as u64 >= cap.max_streams;
        if press == self.pressing {
            return None;
        }
        self.pressing = press;
        Some(if press {
            Backpressure::Set
        } else {
            Backpressure::Lift
        })
    }
}

/// A lease outlives three heartbeats, so a live holder never loses it
/// between renewals.
fn lease_ms(heartbeat_seconds: u64) -> u64 {
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
    /// ([`InstanceLease`]): its set outlives the longest stream.
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

/// The lease every stream of one p3 instance on one Redis lives by: one
/// key, set when a stream takes its slot and renewed by the instance's
/// subscription connection, whose liveness check it is
/// ([`crate::hub::Hub::renew_with`]: one command per heartbeat interval
/// for every stream, instead of a `PING`). An instance that dies stops
/// renewing; within one lease its key is gone and the next acquire of
/// each of its users drops their members.
pub struct InstanceLease;

impl InstanceLease {
    /// The lease key of the instance named `instance` (random per instance).
    pub fn key(instance: &str) -> String {
        format!("sse:instance:{instance}")
    }

    /// Whether streams under `cfg` on a shared-connection instance live by
    /// an instance lease: per-user limits on, one Redis (a Cluster script
    /// cannot reach another slot's key, so each stream renews its own).
    pub fn applies(cfg: &Config) -> bool {
        cfg.limits.max_streams_per_user > 0 && !cfg.redis_cluster
    }

    /// The renewal of `instance`'s lease under `cfg` (`SET key 1 PX
    /// lease`), sent every heartbeat interval; `None` where no instance
    /// lease applies.
    pub fn renewal(instance: &str, cfg: &Config) -> Option<Vec<Vec<u8>>> {
        let lease = lease_ms(cfg.heartbeat_seconds).to_string();
        let key = InstanceLease::key(instance);
        InstanceLease::applies(cfg).then(|| args(&["SET", &key, "1", "PX", &lease]))
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

    /// Room for `max` streams; no retirement.
    fn cap(max: u64) -> InstanceCapacity {
        InstanceCapacity {
            max_streams: max,
            retire_bytes: 0,
        }
    }

    #[test]
    fn a_full_instance_asks_for_no_more_requests_and_refuses_one_that_comes() {
        let mut a = InstanceAdmission::default();
        assert_eq!(a.take(cap(3), 1), Ok(None));
        assert_eq!(a.take(cap(3), 1), Ok(None));
        assert_eq!(
            a.take(cap(3), 1),
            Ok(Some(Backpressure::Set)),
            "full at the third"
        );
        let (e, line) = a.take(cap(3), 1).unwrap_err();
        assert_eq!(e.status, 503);
        assert!(e.headers.contains(&("retry-after", "1".to_string())));
        assert!(
            line.contains("instance_full") && line.contains("\"limit\":3"),
            "{line}"
        );
        assert_eq!(
            a.give_back(cap(3), 1),
            Some(Backpressure::Lift),
            "a place again"
        );
        assert_eq!(a.give_back(cap(3), 1), None);
        assert_eq!(a.take(cap(3), 1), Ok(None));
        assert_eq!(a.take(cap(3), 1), Ok(Some(Backpressure::Set)));
    }

    #[test]
    fn a_limit_of_one_sets_and_lifts_with_each_stream() {
        let mut a = InstanceAdmission::default();
        assert_eq!(a.take(cap(1), 1), Ok(Some(Backpressure::Set)));
        assert!(a.take(cap(1), 1).is_err());
        assert_eq!(a.give_back(cap(1), 1), Some(Backpressure::Lift));
        assert_eq!(a.give_back(cap(1), 1), None, "never below zero");
        assert_eq!(a.take(cap(1), 1), Ok(Some(Backpressure::Set)));
    }

    #[test]
    fn an_instance_whose_memory_grew_past_the_limit_takes_no_new_stream_for_good() {
        let cap = InstanceCapacity {
            max_streams: 10,
            retire_bytes: 4 * WASM_PAGE_BYTES,
        };
        let mut a = InstanceAdmission::default();
        assert_eq!(a.take(cap, 3), Ok(None), "under the limit");
        assert_eq!(a.take(cap, 3), Ok(None));
        assert_eq!(a.take_log(), None);
        // Its memory grew while it served; the next change notices.
        assert_eq!(a.give_back(cap, 4), Some(Backpressure::Set), "retired");
        let line = a.take_log().expect("the instance_retired line");
        assert!(
            line.contains("instance_retired")
                && line.contains("\"memory_bytes\":262144")
                && line.contains("\"streams\":1"),
            "{line}"
        );
        assert_eq!(a.take_log(), None, "said once");
        // A request already on its way is still served, not refused.
        assert_eq!(a.take(cap, 4), Ok(None));
        // Streams leaving never lift it: the host drops the instance, and
        // its memory, once the last one is gone.
        assert_eq!(a.give_back(cap, 4), None);
        assert_eq!(a.give_back(cap, 4), None);
        assert_eq!(a.take_log(), None);
    }

    #[test]
    fn a_retire_limit_of_zero_never_retires() {
        let cap = InstanceCapacity {
            max_streams: 2,
            retire_bytes: 0,
        };
        let mut a = InstanceAdmission::default();
        assert_eq!(a.take(cap, u64::MAX), Ok(None));
        assert_eq!(a.give_back(cap, u64::MAX), None);
        assert_eq!(a.take_log(), None);
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

    fn lease_cfg(cluster: bool, max: &str) -> Config {
        let cluster = if cluster { "true" } else { "false" };
        Config::load(&crate::config::Source(|name: &str| match name {
            "jwt_secret" => Some("s".repeat(32)),
            "redis_cluster" => Some(cluster.into()),
            "max_streams_per_user" => Some(max.into()),
            "heartbeat_seconds" => Some("15".into()),
            _ => None,
        }))
        .unwrap()
    }

    /// One `SET … PX lease` for the whole instance; none on Cluster or
    /// with per-user limits off.
    #[test]
    fn the_instance_lease_is_one_set() {
        assert_eq!(InstanceLease::renewal("i", &lease_cfg(true, "3")), None);
        assert_eq!(InstanceLease::renewal("i", &lease_cfg(false, "0")), None);
        let set = InstanceLease::renewal("i7", &lease_cfg(false, "3")).unwrap();
        let set: Vec<&[u8]> = set.iter().map(Vec::as_slice).collect();
        assert_eq!(
            set,
            [&b"SET"[..], b"sse:instance:i7", b"1", b"PX", b"50000"]
        );
    }

    #[test]
    fn header_budget_counts_names_and_values() {
        let h = [("cookie", &b"a=b"[..]), ("authorization", b"Bearer x")];
        assert_eq!(header_bytes(h), 6 + 3 + 13 + 8);
    }
}
