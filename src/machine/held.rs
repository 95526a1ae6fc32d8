//! Live messages held back while a `result_stored` waits for the execution
//! record's `result` (read on the stream's own connection when the event
//! arrives). Everything after it waits too, so the browser sees the events
//! in the order they were published.

use crate::rules::result_fill::needs_result;
use std::collections::VecDeque;

/// What to do with a live message.
#[derive(Debug, PartialEq, Eq)]
pub enum Offer {
    /// Send it now.
    Send(Vec<u8>),
    /// Held behind an event that waits for its result.
    Held,
    /// Held, and it needs the record's result: read it.
    Ask,
}

/// The messages waiting for one record read.
#[derive(Debug, Default)]
pub struct Held {
    queue: VecDeque<Vec<u8>>,
    bytes: usize,
}

impl Held {
    /// A live message (as received, `_sse_id` and all). `fill` is false
    /// where no result is filled (notification and replay streams).
    pub fn offer(&mut self, payload: Vec<u8>, fill: bool) -> Offer {
        if !self.queue.is_empty() {
            self.push(payload);
            return Offer::Held;
        }
        if fill && needs_result(&payload) {
            self.push(payload);
            return Offer::Ask;
        }
        Offer::Send(payload)
    }

    fn push(&mut self, payload: Vec<u8>) {
        self.bytes += payload.len();
        self.queue.push_back(payload);
    }

    /// The read came back: the event that asked (to fill and send) and the
    /// ones behind it (to offer again, in order).
    pub fn answered(&mut self) -> Option<(Vec<u8>, Vec<Vec<u8>>)> {
        let first = self.queue.pop_front()?;
        self.bytes = 0;
        Some((first, self.queue.drain(..).collect()))
    }

    /// Bytes held (bounded like the outbox by the caller).
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NULL: &[u8] = br#"{"event_type":"result_stored","result":null}"#;

    #[test]
    fn a_result_stored_without_result_asks_and_holds_what_follows() {
        let mut h = Held::default();
        assert_eq!(
            h.offer(b"{\"event_type\":\"a\"}".to_vec(), true),
            Offer::Send(b"{\"event_type\":\"a\"}".to_vec())
        );
        assert_eq!(h.offer(NULL.to_vec(), true), Offer::Ask);
        assert_eq!(
            h.offer(b"{\"event_type\":\"b\"}".to_vec(), true),
            Offer::Held
        );
        assert_eq!(
            h.offer(NULL.to_vec(), true),
            Offer::Held,
            "one read at a time"
        );
        assert_eq!(h.bytes(), 2 * NULL.len() + 18);
        let (first, rest) = h.answered().unwrap();
        assert_eq!(first, NULL);
        assert_eq!(
            rest,
            vec![b"{\"event_type\":\"b\"}".to_vec(), NULL.to_vec()]
        );
        assert_eq!((h.bytes(), h.answered()), (0, None));
    }

    #[test]
    fn filled_results_and_other_streams_pass() {
        let mut h = Held::default();
        let set = br#"{"event_type":"result_stored","result":{"x":1}}"#.to_vec();
        assert_eq!(h.offer(set.clone(), true), Offer::Send(set));
        assert_eq!(h.offer(NULL.to_vec(), false), Offer::Send(NULL.to_vec()));
    }
}
