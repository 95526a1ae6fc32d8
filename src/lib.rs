//! sse-gateway: streams Redis pub/sub events to browsers over Server-Sent Events.
//!
//! The crate is split into a functional core (plain Rust, unit-tested on the
//! host) and a thin WASI shell (`host`, compiled only for `wasm32`).
//! See ARCHITECTURE.md for the codemap.

pub mod auth;
pub mod cluster;
pub mod config;
pub mod cors;
pub mod error;
pub mod events;
pub mod history;
pub mod hub;
pub mod limits;
pub mod resp;
pub mod routes;
pub mod session;
pub mod sse;
pub mod stream;

#[cfg(target_arch = "wasm32")]
mod host;
