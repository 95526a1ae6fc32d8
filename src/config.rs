//! Configuration: names, defaults and validation.
//!
//! Pure: values come from a lookup function that the shell backs with Spin
//! variables or WASI environment variables (see `host::config_source`).
//! Every variable has one lowercase name (the Spin variable); the portable
//! build reads the same name upper-cased from the environment.

use crate::http::auth::{AuthConfig, KeyPart};
use crate::http::cors::CorsPolicy;
use crate::redis::dns;
use crate::redis::target::{parse_redis_url, RedisTarget};
use crate::redis::tls::TlsClient;
use std::fmt;

/// Channel and key names, configurable so several deployments can share Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefixes {
    /// `sse:exec:` + execution id.
    pub exec_channel: String,
    /// `sse:notif:` + user id.
    pub notif_channel: String,
    /// `sse:replay:` + session id.
    pub replay_channel: String,
    /// `exec:` + execution id: the execution record hash.
    pub exec_key: String,
    /// `history:` + channel: the Redis Stream holding a channel's history.
    pub history_key: String,
    /// `sse:streams:` + user id: the sorted set of a user's open streams.
    pub slots_key: String,
    /// `replay:` + session id: the replay session record hash.
    pub replay_key: String,
    /// Unset by default. When set, `prefix` + the token's `sub` is the user
    /// record hash (`user_id`, `role`, `is_active`) that identity comes from.
    pub identity_key: Option<String>,
}

/// The capped per-channel history that makes resume gapless.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Approximate `MAXLEN` of each history stream.
    pub max_len: u64,
    /// Expiry of a history stream after its last event.
    pub ttl_seconds: u64,
}

/// The most bytes a Redis reply may take (the decoder's cap): one history
/// page, one live message and the execution record must each fit.
pub use crate::redis::session::MAX_REPLY_BYTES;

/// The largest `max_event_bytes` accepted: half the reply cap, so one
/// history entry (the event, its `execution_id` fill-in and RESP framing)
/// always fits in a reply with room to spare, whatever else is set.
pub const MAX_EVENT_BYTES_LIMIT: usize = MAX_REPLY_BYTES / 2;

/// Bytes one history entry may add to its event in an `XRANGE` reply:
/// RESP framing, the entry id, the `data` field name and the
/// `execution_id` the publish route fills in.
pub const ENTRY_OVERHEAD: usize = 512;

/// Bytes SSE framing may add to one event (`id:`, `event:`, `data: `, the
/// blank line); more only for events with many raw line breaks.
pub const FRAME_OVERHEAD: usize = 128;

/// What one history page may hold: its entry count is chosen so that a
/// page of the largest events fits in this many bytes (at least one entry).
pub const REPLAY_PAGE_BYTES: usize = 512 * 1024;

/// Memory one instance may give its streams' worst case (3 GiB of
/// wasm32's 4 GiB: the rest is the hub, the connections and allocator
/// slack).
pub const INSTANCE_STREAM_BYTES: usize = 3 << 30;

/// The most entries one history page asks for (small events).
pub const MAX_PAGE_ENTRIES: u64 = 100;

/// The next history page is asked once the browser's outbox holds at most
/// this many unsent bytes.
pub const REPLAY_LOW_WATER: usize = 64 * 1024;

/// The least outbox bound: unsent bytes beyond which live messages wait
/// in the stream's backlog instead of the outbox.
pub const MIN_OUTBOX_BYTES: usize = 1024 * 1024;

/// The least backlog bound: live messages waiting for a browser that lags
/// behind a burst, before they are caught up from the history (or, without
/// history ids, reported as dropped). Redis' own hard limit for a pub/sub
/// client (`client-output-buffer-limit pubsub 32mb 8mb 60`), so a p3
/// stream absorbs what a p2 stream's own connection would. Counted per
/// stream; on p3 the bytes are the hub's, held once for every stream of
/// the channel (`backlog::Bytes::Shared`).
pub const MIN_BACKLOG_BYTES: usize = 32 * 1024 * 1024;

/// The least budget for plain-`PUBLISH` messages held back while the
/// history is replayed.
pub const MIN_HOLD_BYTES: usize = 64 * 1024;

/// Per-stream memory bounds, derived from `max_event_bytes` at load time
/// so they agree with each other and with the reply cap (docs/LIMITS.md):
/// none depends on `history_max_len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamBudget {
    /// Entries per history page (`XRANGE ... COUNT k`):
    /// `k × (max_event_bytes + ENTRY_OVERHEAD) ≤ max(REPLAY_PAGE_BYTES, one entry)`.
    pub page_entries: u64,
    /// The next page is asked when the browser's unsent bytes are at most this.
    pub low_water: usize,
    /// Unsent bytes beyond which live messages wait in the backlog
    /// (at least two of the largest events, framed).
    pub outbox_bytes: usize,
    /// Bytes of live messages waiting in the backlog before the stream
    /// catches up from the history (at least four of the largest events).
    pub backlog_bytes: usize,
    /// Bytes of plain-`PUBLISH` messages held while the history is
    /// replayed (at least one of the largest events).
    pub hold_bytes: usize,
    /// The longest history entry a page reply keeps (the largest event
    /// plus [`ENTRY_OVERHEAD`]); a longer one is discarded unread and
    /// skipped, so no entry can make a page exceed the reply cap.
    pub entry_bytes: usize,
}

impl StreamBudget {
    /// The budget for events of at most `max_event` bytes.
    pub fn for_event(max_event: usize) -> StreamBudget {
        let entry = max_event + ENTRY_OVERHEAD;
        let page_entries = ((REPLAY_PAGE_BYTES / entry) as u64).clamp(1, MAX_PAGE_ENTRIES);
        StreamBudget {
            page_entries,
            low_water: REPLAY_LOW_WATER,
            outbox_bytes: MIN_OUTBOX_BYTES.max(2 * (max_event + FRAME_OVERHEAD)),
            backlog_bytes: MIN_BACKLOG_BYTES.max(4 * (max_event + FRAME_OVERHEAD)),
            hold_bytes: MIN_HOLD_BYTES.max(max_event + FRAME_OVERHEAD),
            entry_bytes: entry,
        }
    }

    /// The most bytes one page's reply can take.
    pub fn page_reply_bytes(&self, max_event: usize) -> usize {
        self.page_entries as usize * (max_event + ENTRY_OVERHEAD)
    }

    /// The most bytes one stream holds for its browser and Redis at once:
    /// a reply being decoded, the page parsed from it, the outbox (during
    /// replay at most the low water plus one framed page, live at most
    /// the outbox bound plus one event, and the live backlog behind it)
    /// and the held plain messages.
    pub fn stream_bytes(&self, max_event: usize) -> usize {
        self.steady_bytes(max_event) + self.backlog_bytes
    }

    /// [`StreamBudget::stream_bytes`] without the live backlog, which
    /// lasts only while its browser keeps reading (a stalled one is cut
    /// within [`crate::machine::backlog`]'s stall time) and on p3 is the
    /// hub's bytes, held once for every stream of the channel.
    pub fn steady_bytes(&self, max_event: usize) -> usize {
        let page = self.page_reply_bytes(max_event);
        let replay = self.low_water + page + self.page_entries as usize * FRAME_OVERHEAD;
        let live = self.outbox_bytes + max_event + FRAME_OVERHEAD;
        2 * page + replay.max(live) + self.hold_bytes
    }

    /// The default `max_streams_per_instance`: as many streams as
    /// [`INSTANCE_STREAM_BYTES`] holds at [`StreamBudget::steady_bytes`]
    /// each (1,530 at the default 64 KiB events, 127 at 4 MiB), so a
    /// full instance stays clear of wasm32's 4 GiB memory.
    pub fn instance_streams(&self, max_event: usize) -> u64 {
        (INSTANCE_STREAM_BYTES / self.steady_bytes(max_event)).max(1) as u64
    }
}

/// Bounds that keep one client from holding more than its share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Open streams per user at once (0 = no limit); kept in Redis.
    pub max_streams_per_user: u64,
    /// A stream's longest life (edge hosts cap request duration); the
    /// browser reconnects with `Last-Event-ID` and loses nothing.
    pub max_stream_seconds: u64,
    /// How long a browser may stop reading before its stream is dropped.
    pub write_stall_seconds: u64,
    /// Total bytes of request header names and values accepted.
    pub max_header_bytes: usize,
    /// How long a publish body may take to arrive (408 after), so a body
    /// that never completes can't hold an instance.
    pub max_body_seconds: u64,
    /// Streams one instance serves at once (the `p3` build; a p2 instance
    /// serves one): more get a 503 with `retry-after`, so an instance
    /// never takes on more than its memory holds
    /// ([`StreamBudget::instance_streams`]).
    pub max_streams_per_instance: u64,
    /// Memory past which a p3 instance takes no new stream, so the host
    /// drops it (and gives its memory back) once its streams end; 0: never
    /// (`retire_instance_memory_mib`, `machine::instance::InstanceAdmission`).
    pub retire_instance_memory_bytes: u64,
}

/// Everything a request needs, validated once per request. (`Clone`: a
/// stream that must read the user record before it can plan keeps a copy.)
#[derive(Clone)]
pub struct Config {
    /// Redis connection target.
    pub redis: RedisTarget,
    /// JWT verification settings.
    pub auth: AuthConfig,
    /// Idle time before a `: ping` comment.
    pub heartbeat_seconds: u64,
    /// Bound on connecting to Redis and on each command reply.
    pub redis_timeout_ms: u64,
    /// Redis Cluster: sharded pub/sub and `MOVED`-following routing.
    pub redis_cluster: bool,
    /// Key and channel prefixes.
    pub prefixes: Prefixes,
    /// History size and lifetime.
    pub history: HistoryLimits,
    /// Largest event body the publish routes accept.
    pub max_event_bytes: usize,
    /// Per-stream memory bounds derived from `max_event_bytes`.
    pub stream: StreamBudget,
    /// The `retry:` hint sent at the start of every stream.
    pub retry_ms: u64,
    /// Cross-origin browsers allowed to connect.
    pub cors: CorsPolicy,
    /// Per-client bounds.
    pub limits: Limits,
    /// Local development helpers (demo page, token minting). Off by default
    /// and in `spin.toml`: it lets anyone mint tokens.
    pub dev_mode: bool,
    /// Lines below this level are not printed (`log_level`).
    pub log_level: crate::log::Level,
}

/// A variable that is missing or malformed; its message names the variable
/// in both spellings so operators of either build find it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The Spin variable name (lowercase).
    pub variable: &'static str,
    /// What is wrong, without echoing secret values.
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "configuration variable {} (env {}) {}",
            self.variable,
            self.variable.to_ascii_uppercase(),
            self.problem
        )
    }
}

impl std::error::Error for ConfigError {}

fn err(variable: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        problem: problem.into(),
    }
}

/// How a variable is read, and its default (what `spin.toml` and the
/// README's table say it is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text with this default.
    Text(&'static str),
    /// Text with no default (unset is its own meaning: no issuer check, no
    /// TLS client certificate, ...).
    Optional,
    /// `true`/`1` or `false`/`0`; false by default.
    Flag,
    /// A whole number in `min..=max`.
    Number { default: u64, min: u64, max: u64 },
    /// A whole number in `min..=max` whose default the configuration
    /// derives (`max_streams_per_instance` from the stream budget).
    Derived { min: u64, max: u64 },
}

macro_rules! variables {
    ($($name:literal => $kind:expr,)*) => {
        /// Every variable the gateway reads. `spin.toml` must declare each
        /// one with the default [`kind_of`] gives (checked by
        /// `tests/spin_manifest.rs`); reading any other name is a bug.
        pub const VARIABLES: &[&str] = &[$($name),*];
        /// Each variable's kind, in [`VARIABLES`]' order: the one table of
        /// names, defaults and bounds that every read goes through.
        const KINDS: &[(&str, Kind)] = &[$(($name, $kind)),*];
    };
}

variables! {
    "redis_url" => Kind::Text("redis://127.0.0.1:6379"),
    "redis_timeout_ms" => Kind::Number { default: 3000, min: 10, max: 60_000 },
    "jwt_secret" => Kind::Optional,
    "jwt_algorithms" => Kind::Text("HS256"),
    "jwt_public_keys" => Kind::Optional,
    "jwt_jwks" => Kind::Optional,
    "jwt_issuer" => Kind::Optional,
    "jwt_audience" => Kind::Optional,
    "jwt_leeway_seconds" => Kind::Number { default: 30, min: 0, max: 3600 },
    "jwt_user_claim" => Kind::Text("sub"),
    "jwt_role_claim" => Kind::Text("role"),
    "heartbeat_seconds" => Kind::Number { default: 15, min: 1, max: 3600 },
    "exec_channel_prefix" => Kind::Text("sse:exec:"),
    "notif_channel_prefix" => Kind::Text("sse:notif:"),
    "replay_channel_prefix" => Kind::Text("sse:replay:"),
    "exec_key_prefix" => Kind::Text("exec:"),
    "history_key_prefix" => Kind::Text("history:"),
    "history_max_len" => Kind::Number { default: 1000, min: 1, max: 1_000_000 },
    "history_ttl_seconds" => Kind::Number { default: 86_400, min: 1, max: 30 * 86_400 },
    "max_event_bytes" => Kind::Number {
        default: 64 * 1024,
        min: 64,
        max: MAX_EVENT_BYTES_LIMIT as u64,
    },
    "retry_ms" => Kind::Number { default: 3000, min: 0, max: 600_000 },
    "cors_allowed_origins" => Kind::Text(""),
    "max_streams_per_user" => Kind::Number { default: 10, min: 0, max: 100_000 },
    "max_stream_seconds" => Kind::Number { default: 3600, min: 10, max: 7 * 86_400 },
    "write_stall_seconds" => Kind::Number { default: 30, min: 1, max: 3600 },
    "max_streams_per_instance" => Kind::Derived { min: 1, max: 100_000 },
    "retire_instance_memory_mib" => Kind::Number { default: 256, min: 0, max: 4096 },
    "max_header_bytes" => Kind::Number { default: 16 * 1024, min: 1024, max: 1024 * 1024 },
    "max_body_seconds" => Kind::Number { default: 10, min: 1, max: 3600 },
    "slots_key_prefix" => Kind::Text("sse:streams:"),
    "dev_mode" => Kind::Flag,
    "redis_cluster" => Kind::Flag,
    "dns_server" => Kind::Optional,
    "redis_tls_ca_pem" => Kind::Optional,
    "redis_tls_cert_pem" => Kind::Optional,
    "redis_tls_key_pem" => Kind::Optional,
    "replay_key_prefix" => Kind::Text("replay:"),
    "identity_key_prefix" => Kind::Optional,
    "log_level" => Kind::Text("info"),
}

/// How `name` is read; a name missing from the table is a bug.
pub fn kind_of(name: &str) -> Kind {
    KINDS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, k)| *k)
        .unwrap_or_else(|| panic!("{name} missing from VARIABLES"))
}

impl Kind {
    /// The default as written in `spin.toml` (`""`: unset, or derived).
    pub fn default_text(self) -> String {
        match self {
            Kind::Text(d) => d.to_string(),
            Kind::Optional | Kind::Derived { .. } => String::new(),
            Kind::Flag => "false".to_string(),
            Kind::Number { default, .. } => default.to_string(),
        }
    }
}

/// Reads variables by their lowercase name; empty values count as unset.
pub struct Source<F: Fn(&str) -> Option<String>>(pub F);

impl<F: Fn(&str) -> Option<String>> Source<F> {
    fn get(&self, name: &str) -> Option<String> {
        debug_assert!(VARIABLES.contains(&name), "{name} missing from VARIABLES");
        (self.0)(name).filter(|v| !v.trim().is_empty())
    }

    /// A text variable, or its default.
    fn text(&self, name: &'static str) -> String {
        self.get(name)
            .unwrap_or_else(|| kind_of(name).default_text())
    }

    fn flag(&self, name: &'static str) -> Result<bool, ConfigError> {
        match self.text(name).trim() {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err(err(name, "must be true or false")),
        }
    }

    /// A number variable, or its default (`derived` for [`Kind::Derived`]).
    fn number_or(&self, name: &'static str, derived: u64) -> Result<u64, ConfigError> {
        let (default, min, max) = match kind_of(name) {
            Kind::Number { default, min, max } => (default, min, max),
            Kind::Derived { min, max } => (derived, min, max),
            other => panic!("{name} is {other:?}, not a number"),
        };
        match self.get(name) {
            None => Ok(default),
            Some(v) => match v.trim().parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(n),
                _ => Err(err(
                    name,
                    format!("must be a whole number from {min} to {max}"),
                )),
            },
        }
    }

    fn number(&self, name: &'static str) -> Result<u64, ConfigError> {
        self.number_or(name, 0)
    }
}

impl Config {
    /// Loads from environment variables, each named as its variable
    /// upper-cased (`REDIS_URL`: `wasmtime serve --env`, the native
    /// server's process environment).
    pub fn from_env(env: &[(String, String)]) -> Result<Config, ConfigError> {
        Config::load(&Source(|name: &str| {
            let upper = name.to_ascii_uppercase();
            env.iter()
                .find(|(k, _)| *k == upper)
                .map(|(_, v)| v.clone())
        }))
    }

    /// Loads and validates every variable.
    pub fn load<F: Fn(&str) -> Option<String>>(src: &Source<F>) -> Result<Config, ConfigError> {
        let redis = load_redis(src)?;
        let algorithms = src.text("jwt_algorithms");
        let secret = src.get("jwt_secret").unwrap_or_default();
        let mut auth = load_keys(src, &algorithms, secret)?;
        auth.issuer = src.get("jwt_issuer");
        auth.audience = src.get("jwt_audience");
        auth.leeway_seconds = src.number("jwt_leeway_seconds")? as i64;
        auth.user_claim = src.text("jwt_user_claim");
        auth.role_claim = src.text("jwt_role_claim");
        let max_event_bytes = src.number("max_event_bytes")? as usize;
        let stream = StreamBudget::for_event(max_event_bytes);
        if stream.page_reply_bytes(max_event_bytes) > MAX_REPLY_BYTES {
            // Unreachable with the bounds above; kept so a change to them
            // can never make a stream unopenable unnoticed.
            return Err(err(
                "max_event_bytes",
                "makes a history page larger than a Redis reply may be",
            ));
        }
        Ok(Config {
            redis,
            auth,
            heartbeat_seconds: src.number("heartbeat_seconds")?,
            redis_timeout_ms: src.number("redis_timeout_ms")?,
            redis_cluster: src.flag("redis_cluster")?,
            prefixes: Prefixes {
                exec_channel: src.text("exec_channel_prefix"),
                notif_channel: src.text("notif_channel_prefix"),
                replay_channel: src.text("replay_channel_prefix"),
                exec_key: src.text("exec_key_prefix"),
                history_key: src.text("history_key_prefix"),
                slots_key: src.text("slots_key_prefix"),
                replay_key: src.text("replay_key_prefix"),
                identity_key: src.get("identity_key_prefix"),
            },
            history: HistoryLimits {
                max_len: src.number("history_max_len")?,
                ttl_seconds: src.number("history_ttl_seconds")?,
            },
            max_event_bytes,
            stream,
            retry_ms: src.number("retry_ms")?,
            cors: CorsPolicy::parse(&src.text("cors_allowed_origins"))
                .map_err(|p| err("cors_allowed_origins", p))?,
            limits: Limits {
                max_streams_per_user: src.number("max_streams_per_user")?,
                max_stream_seconds: src.number("max_stream_seconds")?,
                write_stall_seconds: src.number("write_stall_seconds")?,
                max_header_bytes: src.number("max_header_bytes")? as usize,
                max_body_seconds: src.number("max_body_seconds")?,
                max_streams_per_instance: src.number_or(
                    "max_streams_per_instance",
                    stream.instance_streams(max_event_bytes),
                )?,
                retire_instance_memory_bytes: src.number("retire_instance_memory_mib")? << 20,
            },
            dev_mode: src.flag("dev_mode")?,
            log_level: crate::log::Level::parse(&src.text("log_level"))
                .ok_or_else(|| err("log_level", "must be error, warn, info or debug"))?,
        })
    }
}

/// The Redis target with its TLS settings and resolver.
fn load_redis<F: Fn(&str) -> Option<String>>(src: &Source<F>) -> Result<RedisTarget, ConfigError> {
    let mut redis = parse_redis_url(&src.text("redis_url")).map_err(|p| err("redis_url", p))?;
    let ca = src.get("redis_tls_ca_pem");
    let cert = src.get("redis_tls_cert_pem");
    let key = src.get("redis_tls_key_pem");
    if redis.tls.is_some() {
        let tls = TlsClient::new(ca.as_deref(), cert.as_deref(), key.as_deref())
            .map_err(|e| err(e.variable, e.problem))?;
        redis.tls = Some(tls);
    } else if let Some(variable) = [
        ("redis_tls_ca_pem", &ca),
        ("redis_tls_cert_pem", &cert),
        ("redis_tls_key_pem", &key),
    ]
    .into_iter()
    .find_map(|(name, value)| value.is_some().then_some(name))
    {
        return Err(err(variable, "is set but redis_url is not rediss:// (TLS)"));
    }
    redis.dns_server = src
        .get("dns_server")
        .map(|s| dns::parse_server(&s).map_err(|p| err("dns_server", p)))
        .transpose()?;
    Ok(redis)
}

/// RFC 7518 §3.2: an HS256 key must be at least as long as the hash (256 bits).
pub const MIN_HS256_SECRET_BYTES: usize = 32;

/// Builds the verifier's keys: the HS256 secret (required while HS256 is
/// allowed) and public keys from PEM and JWKS text. Errors name the
/// variable at fault without echoing key material.
fn load_keys<F: Fn(&str) -> Option<String>>(
    src: &Source<F>,
    algorithms: &str,
    secret: String,
) -> Result<AuthConfig, ConfigError> {
    let hs256 = algorithms.split([',', ' ']).any(|a| a.trim() == "HS256");
    if hs256 && secret.is_empty() {
        return Err(err(
            "jwt_secret",
            "is not set (required while jwt_algorithms allows HS256)",
        ));
    }
    if hs256 && secret.len() < MIN_HS256_SECRET_BYTES {
        return Err(err(
            "jwt_secret",
            format!(
                "is shorter than {MIN_HS256_SECRET_BYTES} bytes: an HS256 key needs at least \
                 256 bits (RFC 7518 section 3.2); generate one with `openssl rand -base64 48`"
            ),
        ));
    }
    let pem = src.get("jwt_public_keys");
    let jwks = src.get("jwt_jwks");
    AuthConfig::hs256(secret.into_bytes())
        .with_keys(algorithms, pem.as_deref(), jwks.as_deref())
        .map_err(|e| {
            let variable = match e.part {
                KeyPart::Algorithms => "jwt_algorithms",
                KeyPart::Pem | KeyPart::Missing => "jwt_public_keys",
                KeyPart::Jwks => "jwt_jwks",
            };
            err(variable, e.problem)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load(&Source(move |k: &str| map.get(k).cloned()))
    }

    /// An HS256 secret of the minimum length.
    const LONG: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn defaults() {
        let c = load(&[("jwt_secret", LONG)]).unwrap();
        assert_eq!(c.redis.host, "127.0.0.1");
        assert_eq!(c.redis.port, 6379);
        assert_eq!(c.heartbeat_seconds, 15);
        assert_eq!(c.prefixes.exec_channel, "sse:exec:");
        assert_eq!(c.prefixes.exec_key, "exec:");
        assert_eq!(c.auth.user_claim, "sub");
        assert_eq!(c.auth.leeway_seconds, 30);
        assert_eq!(c.limits.max_body_seconds, 10);
    }

    /// Environment variables are the upper-cased names; other spellings
    /// are not read.
    #[test]
    fn the_environment_is_read_by_upper_case_names() {
        let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let c = Config::from_env(&env(&[
            ("JWT_SECRET", LONG),
            ("HEARTBEAT_SECONDS", "7"),
            ("heartbeat_seconds", "9"),
            ("Redis_Url", "redis://10.0.0.1:1"),
        ]))
        .unwrap();
        assert_eq!(c.heartbeat_seconds, 7);
        assert_eq!(c.redis.host, "127.0.0.1", "only REDIS_URL counts");
        assert!(Config::from_env(&env(&[("jwt_secret", LONG)])).is_err());
    }

    #[test]
    fn short_hs256_secrets_are_refused() {
        for short in ["s", "dev-secret-change-me", &LONG[1..]] {
            let e = load(&[("jwt_secret", short)]).err().unwrap();
            assert_eq!(e.variable, "jwt_secret", "{short}");
            assert!(e.to_string().contains("256 bits"), "{e}");
            assert!(
                short.len() < 4 || !e.to_string().contains(short),
                "secret echoed: {e}"
            );
        }
        // Without HS256 the secret is not used, so its length is no matter.
        let jwks = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k1","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
        let c = load(&[
            ("jwt_algorithms", "EdDSA"),
            ("jwt_jwks", jwks),
            ("jwt_secret", "s"),
        ]);
        assert!(c.is_ok());
    }

    #[test]
    fn max_body_seconds_is_bounded() {
        let c = load(&[("jwt_secret", LONG), ("max_body_seconds", "2")]).unwrap();
        assert_eq!(c.limits.max_body_seconds, 2);
        for bad in ["0", "3601", "x"] {
            let e = load(&[("jwt_secret", LONG), ("max_body_seconds", bad)])
                .err()
                .unwrap();
            assert_eq!(e.variable, "max_body_seconds");
        }
    }

    #[test]
    fn replay_and_identity_prefixes() {
        let c = load(&[("jwt_secret", LONG)]).unwrap();
        assert_eq!(c.prefixes.replay_key, "replay:");
        assert_eq!(c.prefixes.identity_key, None);
        let c = load(&[
            ("jwt_secret", LONG),
            ("replay_key_prefix", "rs:"),
            ("identity_key_prefix", "user:"),
        ])
        .unwrap();
        assert_eq!(c.prefixes.replay_key, "rs:");
        assert_eq!(c.prefixes.identity_key.as_deref(), Some("user:"));
        let c = load(&[("jwt_secret", LONG), ("identity_key_prefix", " ")]).unwrap();
        assert_eq!(c.prefixes.identity_key, None);
    }

    #[test]
    fn missing_secret_names_the_variable_in_both_spellings() {
        let e = load(&[]).err().unwrap();
        assert_eq!(e.variable, "jwt_secret");
        let msg = e.to_string();
        assert!(
            msg.contains("jwt_secret") && msg.contains("JWT_SECRET"),
            "{msg}"
        );
        let e = load(&[("jwt_secret", "  ")]).err().unwrap();
        assert_eq!(e.variable, "jwt_secret");
    }

    #[test]
    fn key_variables_are_named_in_errors() {
        let e = load(&[("jwt_algorithms", "RS256")]).err().unwrap();
        assert_eq!(e.variable, "jwt_public_keys", "{e}");
        let e = load(&[("jwt_algorithms", "RS256"), ("jwt_public_keys", "nope")])
            .err()
            .unwrap();
        assert_eq!(e.variable, "jwt_public_keys", "{e}");
        let e = load(&[("jwt_algorithms", "RS256"), ("jwt_jwks", "{")])
            .err()
            .unwrap();
        assert_eq!(e.variable, "jwt_jwks", "{e}");
        let e = load(&[("jwt_secret", LONG), ("jwt_algorithms", "HS256,none")])
            .err()
            .unwrap();
        assert_eq!(e.variable, "jwt_algorithms", "{e}");
        let e = load(&[("jwt_algorithms", "HS256,RS256")]).err().unwrap();
        assert_eq!(e.variable, "jwt_secret", "{e}");
        // Public keys only: no secret needed.
        let jwks = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k1","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
        assert!(load(&[("jwt_algorithms", "EdDSA"), ("jwt_jwks", jwks)]).is_ok());
    }

    #[test]
    fn invalid_numbers_are_refused() {
        for v in ["0", "-1", "abc", "99999"] {
            let e = load(&[("jwt_secret", LONG), ("heartbeat_seconds", v)])
                .err()
                .unwrap();
            assert_eq!(e.variable, "heartbeat_seconds", "{v}");
        }
        let c = load(&[("jwt_secret", LONG), ("heartbeat_seconds", "1")]).unwrap();
        assert_eq!(c.heartbeat_seconds, 1);
    }

    #[test]
    fn cors_and_limits() {
        let c = load(&[("jwt_secret", LONG)]).unwrap();
        assert_eq!(c.cors, CorsPolicy::default());
        let big = load(&[("jwt_secret", LONG), ("max_event_bytes", "4194304")]).unwrap();
        assert_eq!(big.limits.max_streams_per_instance, 127);
        assert_eq!(c.limits.max_streams_per_instance, 1530);
        assert_eq!(c.limits.retire_instance_memory_bytes, 256 << 20);
        let never = load(&[("jwt_secret", LONG), ("retire_instance_memory_mib", "0")]).unwrap();
        assert_eq!(never.limits.retire_instance_memory_bytes, 0);
        assert_eq!(c.limits.max_streams_per_user, 10);
        assert_eq!(c.limits.max_stream_seconds, 3600);
        let e = load(&[("jwt_secret", LONG), ("cors_allowed_origins", "*")])
            .err()
            .unwrap();
        assert_eq!(e.variable, "cors_allowed_origins");
    }

    #[test]
    fn stream_budget_agrees_with_the_reply_cap_for_every_event_size() {
        let c = load(&[("jwt_secret", LONG)]).unwrap();
        assert_eq!(c.stream, StreamBudget::for_event(65536));
        assert_eq!(c.stream.page_entries, 7);
        assert_eq!(c.stream.outbox_bytes, MIN_OUTBOX_BYTES);
        // Every accepted size: a page of its largest events fits a reply,
        // the outbox bound takes two of them, a held message fits, and
        // the total is bounded whatever history_max_len is.
        let mut sizes: Vec<usize> = (6..=22).map(|b| 1usize << b).collect();
        sizes.extend([64, 2048, 60_000, 65_536, 100_000, MAX_EVENT_BYTES_LIMIT]);
        for e in sizes
            .into_iter()
            .filter(|e| (64..=MAX_EVENT_BYTES_LIMIT).contains(e))
        {
            let b = StreamBudget::for_event(e);
            assert!(
                b.page_entries >= 1 && b.page_entries <= MAX_PAGE_ENTRIES,
                "{e}"
            );
            assert!(b.page_reply_bytes(e) <= MAX_REPLY_BYTES, "{e}");
            assert!(
                b.page_reply_bytes(e) <= REPLAY_PAGE_BYTES.max(e + ENTRY_OVERHEAD),
                "{e}"
            );
            assert!(b.outbox_bytes >= 2 * (e + FRAME_OVERHEAD), "{e}");
            assert!(
                b.outbox_bytes > b.low_water + b.page_reply_bytes(e).min(REPLAY_PAGE_BYTES),
                "{e}"
            );
            assert!(b.hold_bytes > e, "{e}");
            assert!(b.backlog_bytes >= b.outbox_bytes, "{e}");
            assert!(
                b.stream_bytes(e) <= 9 * MAX_REPLY_BYTES,
                "{e}: {}",
                b.stream_bytes(e)
            );
            let c = load(&[("jwt_secret", LONG), ("max_event_bytes", &e.to_string())]).unwrap();
            assert_eq!(c.stream, b);
        }
        // Most of it is the backlog, used only while a burst outruns the browser.
        assert!(StreamBudget::for_event(65536).stream_bytes(65536) < 36 * 1024 * 1024);
        for bad in ["63", &(MAX_EVENT_BYTES_LIMIT + 1).to_string(), "16777216"] {
            let e = load(&[("jwt_secret", LONG), ("max_event_bytes", bad)])
                .err()
                .unwrap();
            assert_eq!(e.variable, "max_event_bytes", "{bad}");
        }
    }

    #[test]
    fn a_bad_redis_url_names_its_variable() {
        let e = load(&[("jwt_secret", LONG), ("redis_url", "redis://h:99999")])
            .err()
            .unwrap();
        assert_eq!(e.variable, "redis_url");
    }

    #[test]
    fn tls_and_resolver() {
        let c = load(&[
            ("jwt_secret", LONG),
            ("redis_url", "rediss://:pw@cache.example:6380"),
        ])
        .unwrap();
        assert!(c.redis.tls.is_some());
        assert_eq!(
            (c.redis.host.as_str(), c.redis.port),
            ("cache.example", 6380)
        );
        assert_eq!(c.redis.dns_server, None);
        let c = load(&[("jwt_secret", LONG), ("dns_server", "tcp://10.96.0.10:53")]).unwrap();
        assert_eq!(c.redis.dns_server, Some("10.96.0.10:53".parse().unwrap()));
        assert!(c.redis.tls.is_none());
        let e = load(&[("jwt_secret", LONG), ("dns_server", "kube-dns")])
            .err()
            .unwrap();
        assert_eq!(e.variable, "dns_server");
        // TLS settings without TLS would be a false sense of security.
        let e = load(&[("jwt_secret", LONG), ("redis_tls_ca_pem", "x")])
            .err()
            .unwrap();
        assert_eq!(e.variable, "redis_tls_ca_pem");
        let e = load(&[
            ("jwt_secret", LONG),
            ("redis_url", "rediss://h"),
            ("redis_tls_ca_pem", "not pem"),
        ])
        .err()
        .unwrap();
        assert_eq!(e.variable, "redis_tls_ca_pem");
        let e = load(&[
            ("jwt_secret", LONG),
            ("redis_url", "rediss://h"),
            ("redis_tls_key_pem", "-----BEGIN PRIVATE KEY-----"),
        ])
        .err()
        .unwrap();
        assert_eq!(e.variable, "redis_tls_cert_pem");
        assert!(!e.to_string().contains("BEGIN"), "{e}");
    }
}
