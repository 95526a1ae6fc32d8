//! Replaying a stream's history in pages, then going live.
//!
//! The subscription is live before the first page is read, so every event
//! published through the gateway (`XADD` then `PUBLISH`, atomically) is
//! either in a page already read, in a later page, or arrives live after
//! the last page. While pages are still being read a live message that
//! carries a history id is therefore dropped (the history will deliver it,
//! in order); once a page comes back shorter than asked the history is
//! over, and live messages go through the outbox's dedupe (ids at or
//! before the last one read are dropped).
//!
//! The next page (`XRANGE key (<last read> + COUNT k`, on the stream's own
//! connection) is asked only when the browser has taken the previous one
//! (its unsent bytes at most [`StreamBudget::low_water`]), so a stream holds
//! one page at a time whatever the history's length.
//!
//! Plain-`PUBLISH` messages (no id) have no history: one that arrives while
//! pages are read is held (up to [`StreamBudget::hold_bytes`]) and sent
//! right after the history, so the browser still sees history first, then
//! live. Beyond that budget it is skipped with a `message_skipped` log line
//! (reason `replay backlog full`): there is nothing to recover it from.
//!
//! An execution whose record says finished gets its stored result only
//! after the whole history: a terminal event on a later page ends the
//! stream there instead.

use super::opening::skipped;
use crate::config::StreamBudget;
use crate::history::{self, split_live, EntryId};
use crate::outbox::{Close, Outbox};
use std::collections::VecDeque;

/// One stream's history replay, from its first page to the switch to live.
pub struct Replay {
    key: String,
    budget: StreamBudget,
    /// Where the next page starts: the newest entry read, or where the
    /// replay started.
    cursor: Option<EntryId>,
    /// The newest entry read (sent or skipped). Only entries read count
    /// for the dedupe: the browser's `Last-Event-ID` may be ahead of
    /// everything (within the hour `opening::resume_point` allows) and
    /// must not silence live events.
    read: Option<EntryId>,
    /// A page was asked and its reply is not in yet.
    asked: bool,
    held: VecDeque<Vec<u8>>,
    held_bytes: usize,
    /// Set for a finished execution: its stored result event (if any),
    /// sent after the history unless a terminal event came first.
    finished: Option<Option<String>>,
    channel: String,
}

/// What a page did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paged {
    /// More pages to read.
    More,
    /// The history is over (or the stream closed): go live.
    Done,
}

impl Replay {
    /// A replay of `key` starting after `after` (all of it when `None`);
    /// the first page is the opening pipeline's `XRANGE`.
    pub fn new(
        key: String,
        after: Option<EntryId>,
        budget: StreamBudget,
        finished: Option<Option<String>>,
        channel: &str,
    ) -> Replay {
        Replay {
            key,
            budget,
            cursor: after,
            read: None,
            asked: true,
            held: VecDeque::new(),
            held_bytes: 0,
            finished,
            channel: channel.to_string(),
        }
    }

    /// The `XRANGE` of the next page.
    pub fn command(&self) -> Vec<Vec<u8>> {
        history::range_command(&self.key, self.cursor, self.budget.page_entries)
    }

    /// Whether to ask for the next page now: none outstanding, the stream
    /// open and the browser has taken all but `low_water` bytes.
    pub fn wants_page(&self, outbox: &Outbox) -> bool {
        !self.asked && outbox.closed().is_none() && outbox.pending().len() <= self.budget.low_water
    }

    /// The next page was asked (its command queued on the connection).
    pub fn asked(&mut self) {
        self.asked = true;
    }

    /// A page arrived: its entries go to the outbox in order. A page
    /// shorter than asked is the last; then held messages and (for a
    /// finished execution) the stored result follow.
    pub fn page(
        &mut self,
        entries: Vec<(EntryId, Vec<u8>)>,
        outbox: &mut Outbox,
        logs: &mut Vec<String>,
    ) -> Paged {
        self.asked = false;
        let last = (entries.len() as u64) < self.budget.page_entries;
        for (id, event) in entries {
            self.cursor = self.cursor.max(Some(id));
            self.read = self.read.max(Some(id));
            if let Err(skip) = outbox.replayed(Some(id), &event) {
                logs.push(skipped(&self.channel, skip.reason(), event.len()));
            }
        }
        if last || outbox.closed().is_some() {
            self.finish(outbox, logs);
            Paged::Done
        } else {
            Paged::More
        }
    }

    /// A live message while pages are still read: one with a history id is
    /// dropped (a page has it or will), a plain one is held.
    pub fn live(&mut self, payload: Vec<u8>, logs: &mut Vec<String>) {
        if split_live(&payload).0.is_some() {
            return;
        }
        if self.held_bytes + payload.len() > self.budget.hold_bytes {
            logs.push(skipped(&self.channel, "replay backlog full", payload.len()));
            return;
        }
        self.held_bytes += payload.len();
        self.held.push_back(payload);
    }

    /// The history is over: what was read counts as sent for the dedupe,
    /// held messages go out, then a finished execution's stored result.
    fn finish(&mut self, outbox: &mut Outbox, logs: &mut Vec<String>) {
        if let Some(id) = self.read {
            outbox.seen(id);
        }
        for payload in std::mem::take(&mut self.held) {
            if let Err(skip) = outbox.replayed(None, &payload) {
                logs.push(skipped(&self.channel, skip.reason(), payload.len()));
            }
        }
        self.held_bytes = 0;
        if outbox.closed().is_some() {
            return;
        }
        match self.finished.take() {
            Some(Some(result)) => outbox.control(&result, true),
            Some(None) => outbox.close(Close::Terminal),
            None => {}
        }
    }

    /// Bytes of held plain messages (for tests of the budget).
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }
}
