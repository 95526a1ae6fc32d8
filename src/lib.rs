//! sse-gateway: streams Redis pub/sub events to browsers over Server-Sent Events.
//!
//! The crate is split into a functional core (plain Rust, unit-tested on the
//! host) and a thin WASI shell (`host`, compiled only for `wasm32`).
//! See ARCHITECTURE.md for the codemap.

pub mod config;
pub mod http;
pub mod json;
pub mod log;
pub mod machine;
pub mod redis;
pub mod rules;
pub mod telemetry;

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
