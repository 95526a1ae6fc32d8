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
//! (messages with a history id) or tells the browser what was lost. A
//! browser that took no byte for [`STALLED_NS`] while messages waited is
//! not reading: its bound is the outbox bound, so a stalled reader holds
//! what it held before the backlog existed, until `write_stall_seconds`
//! ends it.

use crate::config::StreamBudget;
use std::collections::VecDeque;
use std::ops::Deref;
use std::sync::Arc;

/// A live message's bytes: owned (a p2 stream's own connection) or shared
/// with the other subscribers of its channel (the p3 hub), so a burst that
/// waits for many browsers of one channel is held once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bytes {
    Owned(Vec<u8>),
    Shared(Arc<[u8]>),
}

impl Bytes {
    /// The bytes as a vector (free when owned).
    pub fn into_vec(self) -> Vec<u8> {
        match self {
            Bytes::Owned(v) => v,
            Bytes::Shared(rc) => rc.to_vec(),
        }
    }
}

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Owned(v) => v,
            Bytes::Shared(rc) => rc,
        }
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Bytes {
        Bytes::Owned(v)
    }
}

impl From<Arc<[u8]>> for Bytes {
    fn from(rc: Arc<[u8]>) -> Bytes {
        Bytes::Shared(rc)
    }
}

impl From<&[u8]> for Bytes {
    fn from(b: &[u8]) -> Bytes {
        Bytes::Owned(b.to_vec())
    }
}

impl<const N: usize> From<&[u8; N]> for Bytes {
    fn from(b: &[u8; N]) -> Bytes {
        Bytes::Owned(b.to_vec())
    }
}

/// How long a browser may take no byte, with messages waiting, before
/// it counts as not reading (the backlog then shrinks to the outbox bound).
/// Two seconds: a reading browser on a lossy link can wait out a TCP
/// retransmission timeout (1 s and more), and 500 ms cut a reading test
/// client starved of CPU in the full suite.
pub const STALLED_NS: u64 = 2_000_000_000;

/// Messages waiting for room in the outbox.
#[derive(Default)]
pub struct Backlog {
    queue: VecDeque<Bytes>,
    bytes: usize,
    /// When the oldest waiting message was queued (monotonic ns).
    since: u64,
}

/// What becomes of a live message.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Room now and nothing waiting before it: queue it to the outbox.
    Now(Bytes),
    /// Waits its turn.
    Queued,
    /// The backlog passed its bound: every waiting message, this one
    /// last, handed back to be caught up or reported.
    /// `stalled`: the browser is not reading ([`STALLED_NS`]).
    Overflow { waiting: Vec<Bytes>, stalled: bool },
}

impl Backlog {
    /// A live message at `now`, with `unsent` bytes in the outbox and the
    /// browser's last progress (bytes taken) at `progress`.
    pub fn offer(
        &mut self,
        payload: Bytes,
        unsent: usize,
        budget: &StreamBudget,
        now: u64,
        progress: u64,
    ) -> Admit {
        if self.queue.is_empty() && unsent <= budget.outbox_bytes {
            return Admit::Now(payload);
        }
        if self.queue.is_empty() {
            self.since = now;
        }
        self.bytes += payload.len();
        self.queue.push_back(payload);
        let stalled = now.saturating_sub(progress.max(self.since)) > STALLED_NS;
        let bound = if stalled {
            budget.outbox_bytes
        } else {
            budget.backlog_bytes
        };
        if self.bytes > bound {
            self.bytes = 0;
            let waiting = self.queue.drain(..).collect();
            return Admit::Overflow { waiting, stalled };
        }
        Admit::Queued
    }

    /// The oldest waiting message, if the outbox (`unsent` bytes) has
    /// room for it now.
    pub fn release(&mut self, unsent: usize, budget: &StreamBudget) -> Option<Bytes> {
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

    fn bb(byte: u8, n: usize) -> Bytes {
        Bytes::Owned(vec![byte; n])
    }

    #[test]
    fn a_burst_waits_in_order_and_drains_as_the_browser_reads() {
        let b_ = budget();
        let b = &b_;
        let mut q = Backlog::default();
        assert_eq!(q.offer(bb(1, 80), 0, b, 0, 0), Admit::Now(bb(1, 80)));
        assert_eq!(q.offer(bb(2, 80), 101, b, 0, 0), Admit::Queued);
        // Room again, but the waiting one goes first.
        assert_eq!(q.offer(bb(3, 80), 0, b, 0, 0), Admit::Queued);
        assert_eq!(q.bytes(), 160);
        assert_eq!(q.release(101, b), None, "still full");
        assert_eq!(q.release(100, b), Some(bb(2, 80)));
        assert_eq!(q.release(0, b), Some(bb(3, 80)));
        assert_eq!(q.release(0, b), None);
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn past_its_bound_everything_waiting_is_handed_back() {
        let b_ = budget();
        let b = &b_;
        let mut q = Backlog::default();
        for n in 1..=3 {
            assert_eq!(q.offer(bb(n, 80), 500, b, 0, 0), Admit::Queued);
        }
        let Admit::Overflow {
            waiting: all,
            stalled: false,
        } = q.offer(bb(4, 80), 500, b, 0, 0)
        else {
            panic!("320 bytes > 250");
        };
        assert_eq!(all.iter().map(|p| p[0]).collect::<Vec<_>>(), [1, 2, 3, 4]);
        let shared: Arc<[u8]> = Arc::from(&[9u8; 3][..]);
        let one = Bytes::from(shared.clone());
        assert_eq!(Arc::strong_count(&shared), 2, "held once, not copied");
        assert_eq!(one.into_vec(), vec![9; 3]);
        assert_eq!(q.bytes(), 0);
        assert_eq!(q.release(0, b), None, "empty after the overflow");
    }

    #[test]
    fn a_browser_that_takes_nothing_keeps_only_the_outbox_bound_waiting() {
        let b_ = budget();
        let b = &b_;
        let mut q = Backlog::default();
        // Idle for a long time, then a burst: not stalled, the clock
        // starts with the first waiting message.
        let t = 100 * STALLED_NS;
        assert_eq!(q.offer(bb(1, 80), 500, b, t, 0), Admit::Queued);
        assert_eq!(q.offer(bb(2, 80), 500, b, t + STALLED_NS, 0), Admit::Queued);
        // No byte taken for longer than STALLED_NS: 160 > the outbox bound.
        let late = t + STALLED_NS + 1;
        assert!(matches!(
            q.offer(bb(3, 80), 500, b, late, 0),
            Admit::Overflow { stalled: true, .. }
        ));
        // Progress keeps the larger bound.
        assert_eq!(q.offer(bb(4, 80), 500, b, late, late), Admit::Queued);
        assert_eq!(q.offer(bb(5, 80), 500, b, late, late), Admit::Queued);
    }
}
