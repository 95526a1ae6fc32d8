//! What one p3 instance, serving many streams, decides for all of them:
//! which streams it takes ([`InstanceAdmission`]: its stream limit, and
//! retirement once its memory has grown) and the lease its streams' slots
//! live by ([`InstanceLease`]), and how long it serves requests with the
//! configuration it loaded ([`ConfigReuse`]). The p3 shell reads its
//! memory, loads the configuration and passes the answers to the host
//! (`backpressure`) and to the subscription connection (the renewal); it
//! decides none of it.

use crate::config::{Config, ConfigError};
use crate::http::error::ApiError;
use crate::rules::limits::{args, lease_ms};
use std::sync::Arc;

/// How long an instance serves requests with the configuration it loaded
/// before loading it again. Loading costs every open: the environment and
/// its parsing, or with Spin variables one host call per variable (41).
/// A changed value (a rotated key from a Spin variables provider) still
/// reaches a long-lived instance within this.
pub const CONFIG_REUSE_NS: u64 = 10 * 1_000_000_000;

/// The configuration an instance keeps across its requests
/// ([`CONFIG_REUSE_NS`]); every stream shares it.
#[derive(Default)]
pub struct ConfigReuse {
    kept: Option<(Arc<Config>, u64)>,
}

impl ConfigReuse {
    /// The kept configuration, unless it was loaded [`CONFIG_REUSE_NS`]
    /// or more before `now` (monotonic ns): then the shell loads it again.
    pub fn fresh(&self, now: u64) -> Option<Arc<Config>> {
        let (cfg, at) = self.kept.as_ref()?;
        (now.saturating_sub(*at) < CONFIG_REUSE_NS).then(|| cfg.clone())
    }

    /// Keeps what was loaded at `now`. A failed load keeps nothing, so
    /// each request reports the error until the configuration is fixed.
    pub fn keep(
        &mut self,
        loaded: Result<Config, ConfigError>,
        now: u64,
    ) -> Result<Arc<Config>, ConfigError> {
        self.kept = None;
        let cfg = Arc::new(loaded?);
        self.kept = Some((cfg.clone(), now));
        Ok(cfg)
    }
}

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

/// The lease every stream of one p3 instance on one Redis lives by: one
/// key, set when a stream takes its slot and renewed by the instance's
/// subscription connection, whose liveness check it is
/// ([`crate::redis::hub::Hub::renew_with`]: one command per heartbeat interval
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Result<Config, ConfigError> {
        Config::from_env(&[("JWT_SECRET".into(), "s".repeat(32))])
    }

    #[test]
    fn a_loaded_configuration_serves_until_the_reuse_time_has_passed() {
        let mut reuse = ConfigReuse::default();
        assert!(reuse.fresh(0).is_none(), "nothing loaded yet");
        let kept = reuse.keep(config(), 5).unwrap();
        let again = reuse.fresh(5 + CONFIG_REUSE_NS - 1).unwrap();
        assert!(
            Arc::ptr_eq(&kept, &again),
            "the same configuration, not a copy"
        );
        assert!(
            reuse.fresh(5 + CONFIG_REUSE_NS).is_none(),
            "stale: load again"
        );
    }

    #[test]
    fn a_failed_load_is_not_kept_and_drops_the_old_configuration() {
        let mut reuse = ConfigReuse::default();
        reuse.keep(config(), 0).unwrap();
        let bad = Config::from_env(&[("REDIS_URL".into(), "http://nope".into())]);
        assert!(reuse.keep(bad, 1).is_err());
        assert!(
            reuse.fresh(2).is_none(),
            "the next request loads (and reports) again"
        );
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
}
