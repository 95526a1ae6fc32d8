//! sse-gateway: streams Redis pub/sub events to browsers over Server-Sent Events.
//!
//! The crate is split into a functional core (plain Rust, unit-tested on the
//! host) and a thin WASI shell (`host`, compiled only for `wasm32`).
//! See ARCHITECTURE.md for the codemap.

pub mod answer;
pub mod auth;
pub mod body;
pub mod cluster;
pub mod config;
pub mod cors;
pub mod dev;
pub mod dev_token;
pub mod dial;
pub mod dns;
pub mod error;
pub mod events;
pub mod failure;
pub mod gate;
pub mod history;
pub mod hub;
pub mod identity;
pub mod json;
pub mod limits;
pub mod log;
pub mod machine;
pub mod outbox;
pub mod pipeline;
pub mod replay;
pub mod resp;
pub mod result_fill;
pub mod routes;
pub mod session;
pub mod sse;
pub mod target;
pub mod telemetry;
pub mod tls;

#[cfg(all(target_arch = "wasm32", not(feature = "p3")))]
mod host;

#[cfg(all(target_arch = "wasm32", feature = "p3"))]
mod p3;

#[cfg(all(
    target_arch = "wasm32",
    feature = "p3",
    any(feature = "spin", feature = "portable")
))]
compile_error!("the p3 build is a build of its own: --no-default-features --features p3");
