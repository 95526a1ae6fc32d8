//! How an SSE body ended, as the Python service's fetch-based client tells
//! them apart: a terminal event finishes the body (last chunk: "done"),
//! every other end aborts it (no last chunk: a failed read, so it reconnects).

use super::{EndKind, Next, SseItem, SseStream};
use std::time::{Duration, Instant};

impl SseStream {
    /// Expect the body to be aborted (no final chunk) within `timeout`, with
    /// no further events (comments allowed). Returns the comments seen.
    pub fn expect_aborted(&mut self, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut comments = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Next::Item(SseItem::Comment(c)) => comments.push(c),
                Next::Item(SseItem::Event(e)) => {
                    panic!("expected the stream to be aborted, got another event {e:?}")
                }
                Next::End(EndKind::Abrupt(_)) => return comments,
                Next::End(EndKind::Clean) => panic!(
                    "a non-terminal end must abort the body (no last chunk), it ended cleanly"
                ),
                Next::Timeout => {
                    panic!("expected the stream to be aborted within {timeout:?}, it is still open")
                }
            }
        }
    }
}
