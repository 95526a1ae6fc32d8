//! What the e2e tests (`tests/common`) and the benchmark (`bench/`) both
//! need of the real parts, written once: HS256 tokens in the form the
//! gateway verifies ([`jwt`]), and what a host process costs, read from
//! `/proc` ([`proc_stats`]).

pub mod jwt;
pub mod proc_stats;
