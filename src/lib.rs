//! sse-gateway: streams Redis pub/sub events to browsers over Server-Sent Events.
//!
//! The crate is split into a functional core (plain Rust, unit-tested on the
//! host) and a thin WASI shell (`host`, compiled only for `wasm32`).
//! See ARCHITECTURE.md for the codemap.

pub mod answer;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod cors;
pub mod dev;
pub mod dev_token;
pub mod dial;
pub mod dns;
pub mod error;
pub mod events;
pub mod gate;
pub mod history;
pub mod identity;
pub mod json;
pub mod limits;
pub mod log;
pub mod machine;
pub mod outbox;
pub mod replay;
pub mod resp;
pub mod result_fill;
pub mod routes;
pub mod session;
pub mod sse;
pub mod telemetry;
pub mod tls;

#[cfg(target_arch = "wasm32")]
mod host;
