//! The deadlines one live stream lives by (monotonic ns) and their order.

use crate::config::Config;
use crate::rules::outbox::Close;

/// How long a closed stream may take to flush its last bytes.
pub const CLOSE_FLUSH_NS: u64 = 5_000_000_000;

const SECOND: u64 = 1_000_000_000;

/// How long an aborted body stays open after its last write: hosts drop
/// bytes they still hold when a response fails in the same turn
/// (`wasmtime serve`'s hyper, Spin), which would lose the `retry:` or
/// `token_expired` just flushed.
const ABORT_GRACE_NS: u64 = 200_000_000;

/// Until when a body that ends with an abort (not
/// [`Close::ends_cleanly`]) stays open, given its last write that took
/// bytes; `None`: abort now (nothing was written).
pub fn abort_at(last_write: Option<u64>) -> Option<u64> {
    last_write.map(|last| last.saturating_add(ABORT_GRACE_NS))
}

/// How a finished stream's body ends: the machine's call, so no shell
/// branches on why it closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEnd {
    /// The last chunk: the browser reads the response as complete.
    Clean,
    /// An error instead of the last chunk (both clients then reconnect),
    /// not before `until` ([`abort_at`]); `reason` for the host's log.
    Abort {
        until: Option<u64>,
        reason: &'static str,
    },
}

impl BodyEnd {
    /// The end for a stream closed for `why`, given its last write that
    /// took bytes.
    pub fn of(why: Close, last_write: Option<u64>) -> BodyEnd {
        if why.ends_cleanly() {
            BodyEnd::Clean
        } else {
            BodyEnd::Abort {
                until: abort_at(last_write),
                reason: why.reason(),
            }
        }
    }
}

/// What a passed deadline asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Nothing yet.
    Nothing,
    /// Bytes pending and the browser took none for `write_stall_seconds`.
    Stalled,
    /// The token ran out (`exp` + leeway).
    TokenExpired,
    /// `max_stream_seconds` passed.
    Lifetime,
    /// Idle for a heartbeat: `: ping`, Redis `PING` and the slot renewal.
    Heartbeat,
    /// A heartbeat since the user record was last read (user store on):
    /// read it again, however busy the stream is.
    UserCheck,
    /// Closed, and the last bytes took longer than [`CLOSE_FLUSH_NS`].
    FlushOver,
}

impl Due {
    /// The close a due deadline means, if any.
    pub fn close(self) -> Option<Close> {
        match self {
            Due::Stalled => Some(Close::SlowClient),
            Due::TokenExpired => Some(Close::TokenExpired),
            Due::Lifetime => Some(Close::Lifetime),
            Due::Nothing | Due::Heartbeat | Due::UserCheck | Due::FlushOver => None,
        }
    }
}

/// Heartbeat, token, lifetime, write stall and, once closed, the flush.
#[derive(Debug, Clone)]
pub struct Timers {
    heartbeat: u64,
    stall: u64,
    /// Next heartbeat (pushed back by every write).
    idle: u64,
    lifetime: u64,
    token: u64,
    /// The last time the browser took bytes (or the stream started).
    progress: u64,
    /// Set once closed: the last bytes must be out by then.
    flush: Option<u64>,
    /// Next read of the user record, when identity comes from the store.
    user_check: Option<u64>,
}

impl Timers {
    /// For a stream that starts at `now`, whose token is valid until
    /// `expires_at` (unix seconds) and the wall clock reads `unix_now`.
    pub fn new(cfg: &Config, expires_at: i64, unix_now: i64, now: u64) -> Timers {
        let secs = |s: u64| s.saturating_mul(SECOND);
        let token_left = expires_at
            .saturating_add(cfg.auth.leeway_seconds)
            .saturating_sub(unix_now)
            .max(0) as u64;
        Timers {
            heartbeat: secs(cfg.heartbeat_seconds),
            stall: secs(cfg.limits.write_stall_seconds),
            idle: now.saturating_add(secs(cfg.heartbeat_seconds)),
            lifetime: now.saturating_add(secs(cfg.limits.max_stream_seconds)),
            token: now.saturating_add(secs(token_left)),
            progress: now,
            flush: None,
            user_check: None,
        }
    }

    /// Re-read the user record every heartbeat from `now` on (not pushed
    /// back by writes, unlike the heartbeat itself).
    pub fn check_user(&mut self, now: u64) {
        self.user_check = Some(now.saturating_add(self.heartbeat));
    }

    /// When the browser last took bytes (or the stream went live).
    pub fn progress(&self) -> u64 {
        self.progress
    }

    /// The browser took bytes: the heartbeat and the stall clock restart.
    pub fn wrote(&mut self, now: u64) {
        self.idle = now.saturating_add(self.heartbeat);
        self.progress = now;
    }

    /// The stream closed at `now` with bytes possibly pending.
    pub fn closed(&mut self, now: u64) {
        self.flush.get_or_insert(now.saturating_add(CLOSE_FLUSH_NS));
    }

    /// The next instant something is due. Once closed only the flush
    /// deadline counts: the others are over, and a passed one must not
    /// wake the shell again and again.
    pub fn next(&self, pending: bool) -> u64 {
        if let Some(flush) = self.flush {
            return flush;
        }
        let mut next = self.idle.min(self.lifetime).min(self.token);
        next = next.min(self.user_check.unwrap_or(u64::MAX));
        if pending {
            next = next.min(self.progress.saturating_add(self.stall));
        }
        next
    }

    /// What is due at `now`, most final first: a stalled browser, the
    /// token, the lifetime, then the heartbeat (which is re-armed).
    pub fn due(&mut self, now: u64, pending: bool) -> Due {
        if let Some(flush) = self.flush {
            return if now >= flush {
                Due::FlushOver
            } else {
                Due::Nothing
            };
        }
        if pending && now >= self.progress.saturating_add(self.stall) {
            Due::Stalled
        } else if now >= self.token {
            Due::TokenExpired
        } else if now >= self.lifetime {
            Due::Lifetime
        } else if self.user_check.is_some_and(|at| now >= at) {
            self.check_user(now);
            Due::UserCheck
        } else if now >= self.idle {
            self.idle = now.saturating_add(self.heartbeat);
            Due::Heartbeat
        } else {
            Due::Nothing
        }
    }
}

/// How much earlier than the deadline a kept host timer may fire before
/// it is replaced (see [`rearm`]).
pub const EARLY_WAKE_NS: u64 = 1_000_000_000;

/// Whether a shell that keeps one host timer armed at `armed` (`None`:
/// none) must arm a new one for `deadline`. Arming and cancelling a host
/// timer on every delivery is costly (WASIp3: two task operations per
/// stream per event), so a deadline that moved a little later (each write
/// pushes the heartbeat back) keeps the armed timer, which fires early
/// once. A deadline earlier than it, or more than [`EARLY_WAKE_NS`] later
/// (the opening's 3 s timeout giving way to the live stream's heartbeat,
/// which otherwise woke every idle stream once), gets a new one.
pub fn rearm(armed: Option<u64>, deadline: u64) -> bool {
    armed.is_none_or(|at| at > deadline || deadline - at > EARLY_WAKE_NS)
}

#[cfg(test)]
mod rearm_tests {
    use super::*;

    #[test]
    fn a_kept_timer_fires_at_most_a_second_early() {
        assert!(rearm(None, 10));
        assert!(rearm(Some(20), 10), "an earlier deadline");
        assert!(!rearm(Some(10), 10));
        assert!(!rearm(Some(10), 10 + EARLY_WAKE_NS), "pushed back a little");
        assert!(
            rearm(Some(10), 11 + EARLY_WAKE_NS),
            "opening gave way to live"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_abort_waits_out_the_grace_after_the_last_write_only() {
        assert_eq!(abort_at(None), None, "nothing written: abort now");
        assert_eq!(abort_at(Some(5)), Some(5 + 200_000_000));
        assert_eq!(abort_at(Some(u64::MAX)), Some(u64::MAX));
        assert_eq!(BodyEnd::of(Close::Terminal, Some(5)), BodyEnd::Clean);
        assert_eq!(
            BodyEnd::of(Close::RedisLost, Some(5)),
            BodyEnd::Abort {
                until: Some(5 + 200_000_000),
                reason: Close::RedisLost.reason(),
            }
        );
    }
}
