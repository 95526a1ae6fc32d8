//! What the e2e tests (`tests/common`) and the benchmark (`bench/`) both
//! need of the real parts, written once: HS256 tokens in the form the
//! gateway verifies ([`jwt`]), children that die with their parent
//! ([`child`]), what a host process costs, read from
//! `/proc` ([`proc_stats`]), the `redis-server` they start
//! ([`redis_server`]), and reading a stream as a client does: the
//! chunked body ([`chunked`]) and the events in it ([`sse`]).

pub mod child;
pub mod chunked;
pub mod jwt;
pub mod proc_stats;
pub mod redis_server;
pub mod sse;
