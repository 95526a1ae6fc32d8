//! Replaying a stream's history in pages, then going live.
//!
//! The subscription is live before the first page is read, so every event
//! published through the gateway (`XADD` then `PUBLISH`, atomically) is
//! either in a page already read, in a later page, or arrives live after
//! the last page. While pages are still being read a live message that
//! carries a history id is therefore dropped (the history will deliver it,
//! in order); once the history is over, live messages go through the
//! outbox's dedupe (ids at or before the last one read are dropped).
//!
//! The history is over when a page came back shorter than asked *and* no
//! dropped live message is newer than everything read. The second half
//! matters when the subscription and the pages travel on different
//! connections (the `p3` build's shared subscription and command
//! connection): a message published just after the last page's `XRANGE`
//! ran can then arrive before that page's reply. It was dropped, so its
//! entry (in the history since its `XADD` preceded its `PUBLISH`) is read
//! with one more page instead. On one connection (p2) that never happens:
//! a push that arrives before a reply was published before its `XRANGE`.
//! The same rule covers a message that arrives while the last page waits
//! for the record's result. A page asked after the dropped message
//! arrived ran after its `XADD`, so it holds the entry unless the entry
//! was trimmed or expired: such a page ends the history however short
//! (the rule of the earlier version, "an empty re-read ends it", lost a
//! message that overtook an empty page asked before it was published;
//! found by `race_tests`).
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
//! On an execution stream every page gets the result fill of the opening
//! ([`super::opening::filled`]): a `result_stored` that came without its
//! result gets the record's. The first page is read in the same pipeline
//! as the record; a later page may hold events newer than that read, so
//! when one of its `result_stored` events needs a result the record did
//! not have yet, the page waits ([`Paged::Result`]) while the machine reads
//! the record's `result` again, after the page (so at least as new). A
//! record that said finished at open is not read again: its result is final.
//! Held plain messages get the same fill when they are sent.
//!
//! An execution whose record says finished gets its stored result only
//! after the whole history: a terminal event on a later page ends the
//! stream there instead.

use super::opening::{filled, skipped, RecordResult};
use crate::config::StreamBudget;
use crate::rules::history::{self, split_live, Entry, EntryData, EntryId};
use crate::rules::outbox::{Close, Outbox};
use crate::rules::result_fill::needs_result;
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
    /// The browser's `Last-Event-ID`, until the first page (read from it,
    /// inclusive) came back: found there, it is real, and live messages
    /// at or before it are duplicates.
    resumed: Option<EntryId>,
    /// Entries of the page being replayed (and, after the last page, the
    /// held plain messages) not queued yet: waiting for the record's result.
    rest: VecDeque<(Option<EntryId>, EntryData)>,
    /// The page read was shorter than asked.
    last: bool,
    /// The newest history id among live messages dropped while pages were
    /// read: the history is not over while it is newer than `cursor`.
    dropped: Option<EntryId>,
    /// `dropped` when the page in flight was asked. Its entry was in the
    /// history by then (`XADD` precedes `PUBLISH`), so a page asked after
    /// the message arrived has it unless it was trimmed: only a message
    /// newer than that makes a short page read on, and the replay ends.
    dropped_at_ask: Option<EntryId>,
    /// Execution streams: the record's result as last read.
    fill: Option<RecordResult>,
    /// The record was read after the page being replayed (its result, if
    /// still missing, is missing for the whole page).
    fresh: bool,
    /// The record's result was asked and is not in yet.
    waiting: bool,
    /// The record said finished: its result will not change, so it is
    /// never read again.
    settled: bool,
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
    /// An event needs the execution record's `result`: read it and hand
    /// it to [`Replay::result`].
    Result,
}

impl Replay {
    /// A replay of `key` starting after `after` (all of it when `None`);
    /// the first page is the opening pipeline's `XRANGE`, from `after`
    /// inclusive. That entry, found, proves the browser's `Last-Event-ID`
    /// real, and only then do live messages at or before it count as
    /// duplicates: on the `p3` build a stream joins a subscription other
    /// streams hold, so a message published before it joined (one the
    /// browser saw on its last connection) can still reach it, after a
    /// first page that has nothing newer (`race_tests` found this; CI saw
    /// it as a duplicate). A bogus id (not in the history) silences
    /// nothing.
    pub fn new(key: String, after: Option<EntryId>, budget: StreamBudget, channel: &str) -> Replay {
        Replay {
            key,
            budget,
            cursor: after,
            read: None,
            asked: true,
            // `0-0` (no entry has it) asks for everything: no claim to check.
            resumed: after.filter(|id| *id != EntryId { ms: 0, seq: 0 }),
            rest: VecDeque::new(),
            last: false,
            dropped: None,
            dropped_at_ask: None,
            fill: None,
            fresh: true,
            waiting: false,
            settled: false,
            held: VecDeque::new(),
            held_bytes: 0,
            finished: None,
            channel: channel.to_string(),
        }
    }

    /// A catch-up after the live backlog overflowed: pages of `key` after
    /// `after` (the newest id the outbox queued), the first asked as soon
    /// as the browser drained to the low water. An execution stream's
    /// (`execution_id`) `result_stored` events are filled from a fresh
    /// read of the record, as on later pages of an opening replay.
    pub fn catch_up(
        key: String,
        after: Option<EntryId>,
        budget: StreamBudget,
        channel: &str,
        execution_id: Option<&str>,
    ) -> Replay {
        let mut r = Replay::new(key, after, budget, channel);
        (r.asked, r.resumed, r.fresh) = (false, None, false);
        r.fill = execution_id.map(|id| RecordResult {
            execution_id: id.to_string(),
            result: None,
        });
        r
    }

    /// An execution stream: `fill` (its record read with the first page)
    /// fills the `result_stored` events, and `finished` (set when the
    /// record says finished: its stored result event, if any) ends it.
    pub fn execution(&mut self, fill: Option<RecordResult>, finished: Option<Option<String>>) {
        self.fill = fill;
        self.settled = finished.is_some();
        self.finished = finished;
    }

    /// The `XRANGE` of the next page.
    pub fn command(&self) -> Vec<Vec<u8>> {
        history::range_command(&self.key, self.cursor, self.budget.page_entries)
    }

    /// Whether to ask for the next page now: none outstanding, the stream
    /// open and the browser has taken all but `low_water` bytes.
    pub fn wants_page(&self, outbox: &Outbox) -> bool {
        !self.asked
            && !self.last
            && self.rest.is_empty()
            && outbox.closed().is_none()
            && outbox.pending().len() <= self.budget.low_water
    }

    /// The record's result was asked ([`Paged::Result`]) and is not in yet.
    pub fn waiting(&self) -> bool {
        self.waiting
    }

    /// The next page was asked (its command queued on the connection).
    pub fn asked(&mut self) {
        self.asked = true;
        self.dropped_at_ask = self.dropped;
    }

    /// A page arrived: its entries go to the outbox in order. A page
    /// shorter than asked is the last; then held messages and (for a
    /// finished execution) the stored result follow.
    pub fn page(
        &mut self,
        mut entries: Vec<Entry>,
        outbox: &mut Outbox,
        logs: &mut Vec<String>,
    ) -> Paged {
        self.asked = false;
        self.last = (entries.len() as u64) < self.budget.page_entries;
        if let Some(at) = self.resumed.take() {
            if entries.first().is_some_and(|(id, _)| *id == at) {
                let _ = entries.remove(0);
                outbox.seen(at);
            } else {
                // Trimmed, expired or never there: what follows may not
                // be all the browser missed, and it is told so.
                outbox.unrecovered();
                logs.push(crate::log::line(
                    "resume_unrecovered",
                    &[("channel", self.channel.as_str().into())],
                ));
            }
        }
        for (id, _) in &entries {
            self.cursor = self.cursor.max(Some(*id));
            self.read = self.read.max(Some(*id));
        }
        self.rest
            .extend(entries.into_iter().map(|(id, event)| (Some(id), event)));
        self.replay(outbox, logs)
    }

    /// The record's `result` that [`Paged::Result`] asked for (`None`:
    /// none, or it could not be read): the page goes on with it.
    pub fn result(
        &mut self,
        result: Option<String>,
        outbox: &mut Outbox,
        logs: &mut Vec<String>,
    ) -> Paged {
        self.waiting = false;
        self.fresh = true;
        if let Some(fill) = self.fill.as_mut() {
            fill.result = result.or(fill.result.take());
        }
        self.replay(outbox, logs)
    }

    /// Queues what is left of the page (stopping at an event that needs a
    /// newer read of the record), then after the last page the held
    /// messages and the end.
    fn replay(&mut self, outbox: &mut Outbox, logs: &mut Vec<String>) -> Paged {
        loop {
            while let Some((id, event)) = self.rest.pop_front() {
                if outbox.closed().is_some() {
                    self.rest.clear();
                    break;
                }
                let event = match event {
                    Ok(event) => event,
                    Err(len) => {
                        // Longer than any event the publish script stores:
                        // passed over in its place, never read again.
                        if let Some(id) = id {
                            outbox.seen(id);
                        }
                        logs.push(skipped(&self.channel, "too large", len));
                        continue;
                    }
                };
                let event = match &self.fill {
                    Some(f)
                        if f.result.is_none()
                            && !self.fresh
                            && !self.settled
                            && needs_result(&event) =>
                    {
                        self.rest.push_front((id, Ok(event)));
                        self.waiting = true;
                        return Paged::Result;
                    }
                    Some(f) => filled(&event, f.result.as_deref(), &f.execution_id, logs),
                    None => event.as_slice().into(),
                };
                if let Err(skip) = outbox.event(id, &event) {
                    logs.push(skipped(&self.channel, skip.reason(), event.len()));
                }
            }
            // The next page (or the held messages) may be newer than the
            // record's last read.
            self.fresh = false;
            if self.last && self.dropped > self.cursor && self.dropped > self.dropped_at_ask {
                // A dropped live message is newer than the page and may
                // have been published after it ran: read on.
                self.last = false;
            }
            if outbox.closed().is_some() || (self.last && self.held.is_empty()) {
                self.finish(outbox);
                return Paged::Done;
            }
            if !self.last {
                return Paged::More;
            }
            self.held_bytes = 0;
            let held = std::mem::take(&mut self.held);
            self.rest.extend(held.into_iter().map(|p| (None, Ok(p))));
        }
    }

    /// A live message while pages are still read: one with a history id is
    /// dropped (a page has it or will: its id is kept so that a page that
    /// ran before it was published does not end the history), a plain one
    /// is held. `Err(1)`: a plain one past the hold budget, lost (the
    /// machine tells the browser, `Close::Overrun`).
    pub fn live(&mut self, payload: Vec<u8>, logs: &mut Vec<String>) -> Result<(), usize> {
        if let (Some(id), _) = split_live(&payload) {
            self.dropped = self.dropped.max(Some(id));
            return Ok(());
        }
        if self.held_bytes + payload.len() > self.budget.hold_bytes {
            logs.push(skipped(&self.channel, "replay backlog full", payload.len()));
            return Err(1);
        }
        self.held_bytes += payload.len();
        self.held.push_back(payload);
        Ok(())
    }

    /// The history is over: what was read counts as sent for the dedupe,
    /// then a finished execution's stored result.
    fn finish(&mut self, outbox: &mut Outbox) {
        if let Some(id) = self.read {
            outbox.seen(id);
        }
        self.held.clear();
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
