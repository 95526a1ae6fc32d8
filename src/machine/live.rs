//! A live stream: messages delivered, held behind a `result_stored` or
//! waiting in the backlog, the history replayed in pages and caught up
//! after an overflow, the record's result read, the user re-read.

use super::*;

impl StreamMachine {
    /// A live message: while the history is replayed, dropped or held by
    /// the replay; else admitted by the backlog (now, later, or given up
    /// for a catch-up), then delivered.
    pub(super) fn live_message(&mut self, payload: Bytes, now: u64) {
        let Phase::Live {
            outbox,
            replay,
            backlog,
            ..
        } = &mut self.phase
        else {
            return;
        };
        if outbox.closed().is_some() {
            return;
        }
        if let Some(r) = replay.as_mut() {
            if let Err(dropped) = r.live(payload.into_vec(), &mut self.logs) {
                self.overrun(dropped, "replay backlog full", now);
            }
            return;
        }
        let progress = self.timers.progress();
        match backlog.offer(payload, outbox.pending().len(), &self.budget, now, progress) {
            Admit::Now(payload) => self.deliver(payload.into_vec(), now),
            Admit::Queued => {}
            Admit::Overflow { waiting, stalled } => self.catch_up(waiting, stalled, now),
        }
    }

    /// An admitted live message: sent, or held behind (or as) a
    /// `result_stored` waiting for the record's result.
    pub(super) fn deliver(&mut self, payload: Vec<u8>, now: u64) {
        let fill = self.result_of.is_some();
        let Phase::Live { outbox, held, .. } = &mut self.phase else {
            return;
        };
        match held.offer(payload, fill) {
            Offer::Send(p) => send(outbox, &p, &self.channel, &mut self.logs),
            Offer::Held if held.bytes() > self.budget.outbox_bytes => {
                outbox.close(Close::SlowClient)
            }
            Offer::Held => {}
            Offer::Ask => self.ask_result(),
        }
        self.first_event_at(now);
        self.closed_if(now);
    }

    /// The browser drained: waiting live messages that fit now go out.
    pub(super) fn release_backlog(&mut self, now: u64) {
        loop {
            let Phase::Live {
                outbox,
                backlog,
                replay: None,
                ..
            } = &mut self.phase
            else {
                return;
            };
            if outbox.closed().is_some() {
                return;
            }
            match backlog.release(outbox.pending().len(), &self.budget) {
                Some(payload) => self.deliver(payload.into_vec(), now),
                None => return,
            }
        }
    }

    /// The backlog overflowed: its messages are given up. With history
    /// ids they are read again from the history, from the last id queued
    /// (the paged replay a resume uses), and the stream goes on as if
    /// nothing happened; a plain one (no history) is lost, and the browser
    /// is told ([`Self::overrun`]).
    ///
    /// A browser that is not reading (`stalled`) and lost a plain message
    /// is dropped as a slow client at once: there is nothing to flush to
    /// it, and its subscription should not outlive it.
    pub(super) fn catch_up(&mut self, waiting: Vec<Bytes>, stalled: bool, now: u64) {
        let plain = waiting.iter().filter(|p| split_live(p).0.is_none()).count();
        let key = self.history_key.clone().filter(|_| plain == 0);
        let Phase::Live { outbox, replay, .. } = &mut self.phase else {
            return;
        };
        let Some(key) = key else {
            if stalled {
                outbox.close(Close::SlowClient);
            }
            return self.overrun(plain.max(1), "backlog full", now);
        };
        self.logs.push(log::line(
            "catch_up",
            &[
                ("channel", self.channel.as_str().into()),
                ("messages", waiting.len().into()),
                (
                    "bytes",
                    waiting.iter().map(|p| p.len()).sum::<usize>().into(),
                ),
            ],
        ));
        let fill = self.result_of.as_ref().map(|(id, _)| id.as_str());
        let mut r = Replay::catch_up(key, outbox.last_id(), self.budget, &self.channel, fill);
        for payload in waiting {
            // Each has an id: noted as dropped, never held.
            let _ = r.live(payload.into_vec(), &mut self.logs);
        }
        *replay = Some(Box::new(r));
        self.ask_page();
    }

    /// `dropped` live messages without a history id were given up: the
    /// browser gets a reconnectable end (`Close::Overrun`), an execution
    /// stream then opens with a fresh status event.
    pub(super) fn overrun(&mut self, dropped: usize, reason: &'static str, now: u64) {
        let Phase::Live { outbox, .. } = &mut self.phase else {
            return;
        };
        self.logs.push(log::line(
            "messages_dropped",
            &[
                ("channel", self.channel.as_str().into()),
                ("messages", dropped.into()),
                ("reason", reason.into()),
            ],
        ));
        outbox.end(Close::Overrun, self.rules.retry_ms);
        self.closed_if(now);
    }

    /// Reads the execution record's `result` (a `result_stored` waits for it).
    pub(super) fn ask_result(&mut self) {
        if let Some((_, key)) = &self.result_of {
            let args = vec![b"HGET".to_vec(), key.clone(), b"result".to_vec()];
            self.read_aside(Tag::Result, args);
        }
    }

    /// A history page came back: replayed, then the next one asked or live.
    pub(super) fn history_page(&mut self, reply: Value, now: u64) {
        let entries = match history::parse_range(reply) {
            Ok(entries) => entries,
            Err(e) => return self.handle_redis_failure(&format!("history page: {e}"), now),
        };
        let Phase::Live {
            outbox,
            replay: Some(r),
            ..
        } = &mut self.phase
        else {
            return;
        };
        let paged = r.page(entries, outbox, &mut self.logs);
        self.paged(paged, now);
    }

    /// What the replay does after a page (or a result it waited for).
    pub(super) fn paged(&mut self, paged: Paged, now: u64) {
        match paged {
            Paged::More => {}
            Paged::Result => self.ask_result(),
            Paged::Done => {
                if let Phase::Live { replay, .. } = &mut self.phase {
                    *replay = None;
                }
            }
        }
        self.ask_page();
        self.first_event_at(now);
        self.closed_if(now);
    }

    /// Queues the next history page when the replay wants it.
    pub(super) fn ask_page(&mut self) {
        let Phase::Live {
            outbox,
            replay: Some(r),
            ..
        } = &mut self.phase
        else {
            return;
        };
        if r.wants_page(outbox) {
            let args = r.command();
            r.asked();
            self.read_on_shard(Tag::History, args);
        }
    }

    /// Records when the first event was queued (time to first event).
    pub(super) fn first_event_at(&mut self, now: u64) {
        if let Phase::Live {
            outbox,
            first_event,
            ..
        } = &mut self.phase
        {
            if first_event.is_none() && outbox.events_sent() > 0 {
                *first_event = Some(now);
            }
        }
    }

    /// The record's `result` came back (`None`: it could not be read): the
    /// held `result_stored` goes out filled, then what waited behind it.
    pub(super) fn result_read(&mut self, value: Option<Value>, now: u64) {
        let Phase::Live {
            outbox,
            held,
            replay,
            ..
        } = &mut self.phase
        else {
            return;
        };
        if let Some(r) = replay.as_mut().filter(|r| r.waiting()) {
            let result = value.as_ref().and_then(Value::as_str).map(str::to_string);
            let paged = r.result(result, outbox, &mut self.logs);
            return self.paged(paged, now);
        }
        let Some((first, rest)) = held.answered() else {
            return;
        };
        let id = self.result_of.as_ref().map_or("", |(id, _)| id.as_str());
        let result = value.as_ref().and_then(Value::as_str);
        let event = opening::filled(&first, result, id, &mut self.logs);
        send(outbox, &event, &self.channel, &mut self.logs);
        // Admitted before anything in the backlog: straight on.
        for payload in rest {
            self.deliver(payload, now);
        }
        self.first_event_at(now);
        self.closed_if(now);
    }

    /// The heartbeat's read of the user record: a user the store no longer
    /// knows as the one who opened the stream (inactive, gone, another id
    /// or role) is cut. A read that failed is not a verdict: the next
    /// heartbeat reads again.
    pub(super) fn user_read(&mut self, reply: Result<Value, ApiError>, now: u64) {
        let (Some(opened), Ok(reply)) = (&self.stored, reply) else {
            return;
        };
        let Phase::Live { outbox, .. } = &mut self.phase else {
            return;
        };
        let now_known = opening::store_identity(&self.rules.who, reply, &mut self.logs);
        if now_known.as_ref().ok() != Some(opened) {
            self.logs.push(log::line(
                "user_revoked",
                &[("channel", self.channel.as_str().into())],
            ));
            outbox.end(Close::Revoked, self.rules.retry_ms);
        }
        self.closed_if(now);
    }
}

/// Queues a live message, or logs why it was skipped.
fn send(outbox: &mut Outbox, payload: &[u8], channel: &str, logs: &mut Vec<String>) {
    if let Err(skip) = outbox.message(payload) {
        logs.push(opening::skipped(channel, skip.reason(), payload.len()));
    }
}
