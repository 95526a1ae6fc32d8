//! End-to-end test harness for the sse-gateway component, one module per
//! concern (everything is re-exported, so tests write `common::X`):
//!
//! - `gateway`: the component under test ([`component_wasm`]), the host
//!   binary ([`wasmtime_bin`]), [`GatewayBuilder`] / [`Gateway`] (the host
//!   serving it, its log captured to a file and printed when a test fails)
//!   and [`TestEnv`].
//! - `redis_server`: [`RedisServer`], a private `redis-server` on a free
//!   loopback port that can be stopped and restarted on the same port; Redis
//!   helpers, execution records, channel and history key names.
//! - [`jwt`]: hand-built compact JWS tokens (HS256, `alg: none`, anything;
//!   the testkit's signer, shared with the bench).
//! - `http`: [`HttpResponse`], [`get`], [`request`]: a small streaming
//!   HTTP/1.1 client (the testkit's incremental chunked decoder).
//! - `sse`: [`SseStream`], [`open_stream`] over the testkit's [`SseParser`].
//! - `spin`: the Spin CLI, the manifest `spin up` runs and the mapping of
//!   settings to `SPIN_VARIABLE_*` (the host is chosen by `SSE_GATEWAY_HOST`).
//! - `api`: route paths and wire-contract assertions (JSON errors, publish).
//! - `procs`: paths, log files, free ports, child processes.
//! - [`tls`]: a CA and certificates made in the test, TLS `redis-server`s
//!   and a `dnsmasq` resolver, for `rediss://` and host names.
//! - `otlp`: [`OtlpReceiver`], an OTLP/HTTP receiver for Spin's `wasi:otel` export.
//!
//! Everything has timeouts: no helper here can hang a test forever.

#![allow(dead_code)]

mod api;
pub mod fetch_client;
mod gateway;
pub mod host_stats;
pub mod hostile;
mod http;
pub mod jwt;
pub mod otlp;
pub mod p3;
mod procs;
mod redis_server;
pub mod replay_record;
mod spin;
mod sse;
pub mod stream_end;
pub mod tls;

pub use api::*;
pub use gateway::*;
pub use http::*;
pub use procs::*;
pub use redis_server::*;
pub use spin::*;
pub use sse::*;

#[cfg(test)]
mod harness_tests;
