//! Live messages that arrived while the browser's outbox was full.
//!
//! A stream is never cut for a burst: a message is queued to the outbox
//! only while the outbox holds at most
//! [`StreamBudget::outbox_bytes`] unsent; the rest wait here, in order,
//! and go out as the browser drains. On the `p3` build the shared
//! subscription hands a stream a whole burst at once (p2 reads Redis a
//! chunk at a time), so this is where a burst waits; being slow is judged
//! over time (`write_stall_seconds`), never by bytes queued at one
//! instant.
//!
//! Past [`StreamBudget::backlog_bytes`] the waiting messages are given up
//! ([`Admit::Overflow`]): the machine then catches up from the history
//! (messages with a history id) or tells the browser what was lost.

use crate::config::StreamBudget;
use std::collections::VecDeque;

/// Messages waiting for room in the outbox.
#[derive(Default)]
pub struct Backlog {
    queue: VecDeque<Vec<u8>>,
    bytes: usize,
}

/// What becomes of a live message.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Room now and nothing waiting before it: queue it to the outbox.
    Now(Vec<u8>),
    /// Waits its turn.
    Queued,
    /// The backlog passed its bound: every waiting message, this one
    /// last, handed back to be caught up or reported.
    Overflow(Vec<Vec<u8>>),
}

impl Backlog {
    /// A live message, with `unsent` bytes in the outbox.
    pub fn offer(&mut self, payload: Vec<u8>, unsent: usize, budget: &StreamBudget) -> Admit {
        if self.queue.is_empty() && unsent <= budget.outbox_bytes {
            return Admit::Now(payload);
        }
        self.bytes += payload.len();
        self.queue.push_back(payload);
        if self.bytes > budget.backlog_bytes {
            self.bytes = 0;
            return Admit::Overflow(self.queue.drain(..).collect());
        }
        Admit::Queued
    }

    /// The oldest waiting message, if the outbox (`unsent` bytes) has
    /// room for it now.
    pub fn release(&mut self, unsent: usize, budget: &StreamBudget) -> Option<Vec<u8>> {
        if unsent > budget.outbox_bytes {
            return None;
        }
        let payload = self.queue.pop_front()?;
        self.bytes -= payload.len();
        Some(payload)
    }

    /// Bytes waiting.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget() -> StreamBudget {
        StreamBudget {
            outbox_bytes: 100,
            backlog_bytes: 250,
            ..StreamBudget::for_event(1000)
        }
    }

    #[test]
    fn a_burst_waits_in_order_and_drains_as_the_browser_reads() {
        let b = budget();
        let mut q = Backlog::default();
        assert_eq!(q.offer(vec![1; 80], 0, &b), Admit::Now(vec![1; 80]));
        assert_eq!(q.offer(vec![2; 80], 101, &b), Admit::Queued);
        // Room again, but the waiting one goes first.
        assert_eq!(q.offer(vec![3; 80], 0, &b), Admit::Queued);
        assert_eq!(q.bytes(), 160);
        assert_eq!(q.release(101, &b), None, "still full");
        assert_eq!(q.release(100, &b), Some(vec![2; 80]));
        assert_eq!(q.release(0, &b), Some(vec![3; 80]));
        assert_eq!(q.release(0, &b), None);
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn past_its_bound_everything_waiting_is_handed_back() {
        let b = budget();
        let mut q = Backlog::default();
        for n in 1..=3 {
            assert_eq!(q.offer(vec![n; 80], 500, &b), Admit::Queued);
        }
        let Admit::Overflow(all) = q.offer(vec![4; 80], 500, &b) else {
            panic!("320 bytes > 250");
        };
        assert_eq!(all.iter().map(|p| p[0]).collect::<Vec<_>>(), [1, 2, 3, 4]);
        assert_eq!(q.bytes(), 0);
        assert_eq!(q.release(0, &b), None, "empty after the overflow");
    }
}
