//! The Redis layer: RESP, one connection's protocol state (`session`), the
//! p3 instance's shared connections (`hub`, `pipeline`), dialing (`dial`,
//! `dns`, `tls`, `target`) and Cluster redirects, all sans-I/O with their
//! own timers. It never names the stream machine, the configuration or an
//! HTTP answer (tests/layers.rs).

pub mod cluster;
pub mod dial;
pub mod dns;
pub mod failure;
pub mod hub;
pub mod pipeline;
pub mod resp;
pub mod session;
pub mod target;
pub mod tls;
