//! The rules below the stream machine: what an event is and which are
//! terminal, SSE framing, the outbox, the history's ids and scripts, the
//! stored result's filling, per-user limits, identity from the user store
//! and the replay status stream. Plain functions and values: no I/O, no
//! connection.

pub mod events;
pub mod history;
pub mod limits;
pub mod outbox;
pub mod replay_status;
pub mod result_fill;
pub mod sse;
