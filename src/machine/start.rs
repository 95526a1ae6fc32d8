//! How a stream starts: the user record read first where identity comes
//! from the user store, the plan, the join and the reads behind it, and
//! the decision once every reply is in (the rules themselves are
//! [`super::opening`]'s).

use super::*;

impl StreamMachine {
    /// A stream about to open, its Redis where `wiring` says: its first
    /// operations are queued for [`StreamMachine::poll_op`] (or a refusal
    /// that needs no Redis for [`StreamMachine::poll_event`]).
    pub fn open(wiring: Wiring, cfg: &Config, who: &Identity, req: Opening<'_>) -> StreamMachine {
        let mut logs = Vec::new();
        let resume = opening::resume_point(req.last_event_id, req.unix_now, &mut logs);
        let max = cfg.limits.max_streams_per_user;
        let leased = req
            .instance
            .filter(|_| wiring == Wiring::Shared && InstanceLease::applies(cfg));
        let slot = (max > 0).then(|| {
            let key = format!("{}{}", cfg.prefixes.slots_key, who.user_id);
            let slot = Slot::new(key, req.member, cfg.heartbeat_seconds);
            match leased {
                Some(i) => slot.under_lease(&InstanceLease::key(i), cfg.limits.max_stream_seconds),
                None => slot,
            }
        });
        let mut m = StreamMachine {
            phase: Phase::Over,
            channel: String::new(),
            cluster: cfg.redis_cluster,
            redirects: 0,
            slot,
            slot_taken: false,
            side: Vec::new(),
            history_from: None,
            history_key: None,
            budget: cfg.stream,
            ops: VecDeque::new(),
            events: Vec::new(),
            logs,
            timers: Timers::new(cfg, who.expires_at, req.unix_now, req.now),
            rules: opening::Rules {
                who: who.clone(),
                identified: None,
                max_streams: max,
                retry_ms: cfg.retry_ms,
            },
            result_of: None,
            user_lookup: None,
            stored: None,
            opened_at: req.now,
            wiring,
        };
        let deadline = req
            .now
            .saturating_add(cfg.redis_timeout_ms.saturating_mul(1_000_000));
        let lookup = opening::user_lookup(cfg, who);
        // The user store answers first: an unknown or inactive user is
        // refused before anything is subscribed or a slot is taken.
        if let Some(args) = &lookup {
            m.run(Tag::User, args.clone(), wiring == Wiring::Own);
            m.user_lookup = lookup;
            m.phase = Phase::Identifying {
                cfg: Box::new(cfg.clone()),
                topic: req.topic,
                resume,
                deadline,
            };
            return m;
        }
        m.plan(cfg, who, &req.topic, resume, deadline, false);
        m
    }

    /// Plans the stream and queues its pipeline: on a fresh session, or
    /// (`identified`: the user record was read first) on the one that read it.
    pub(super) fn plan(
        &mut self,
        cfg: &Config,
        who: &Identity,
        topic: &Topic,
        resume: Option<EntryId>,
        deadline: u64,
        identified: bool,
    ) {
        let mut plan = match Plan::new(cfg, who, topic, resume) {
            Ok(plan) => plan,
            Err(e) => {
                self.phase = Phase::Over;
                return self.events.push(Event::Refuse(e));
            }
        };
        if identified {
            plan.user_lookup = None;
        } else {
            self.user_lookup = plan.user_lookup.clone();
        }
        self.channel = plan.channel.clone();
        self.side = plan.side_commands(self.slot.as_ref(), cfg.limits.max_streams_per_user);
        let history = plan.history_command(cfg);
        self.history_from = plan.history_key(cfg);
        self.result_of = plan
            .execution_id
            .clone()
            .zip(plan.record_key.as_ref().map(|k| k.as_bytes().to_vec()));
        self.ops.push_back(Op::Join(self.channel.clone()));
        // Behind the join on the stream's own connection: the history read
        // (the channel's shard) and, off Cluster, the side commands.
        // Anything else waits for the subscription's confirmation.
        let mut outstanding = 0;
        if self.wiring == Wiring::Own {
            if let Some(args) = history {
                self.run(Tag::History, args, true);
                outstanding += 1;
            }
            if !self.cluster {
                for (tag, args) in std::mem::take(&mut self.side) {
                    self.run(tag, args, true);
                    outstanding += 1;
                }
            }
        } else {
            self.side.extend(history.map(|h| (Tag::History, h)));
        }
        self.phase = Phase::Opening {
            plan,
            deadline,
            subscribed: false,
            early: Vec::new(),
            too_large: 0,
            replies: Replies::default(),
            outstanding,
        };
    }

    /// The user record read first came back: refuse, or open the stream
    /// as the user the store knows.
    pub(super) fn identified(&mut self, reply: Value, now: u64) {
        let Phase::Identifying {
            cfg,
            topic,
            resume,
            deadline,
        } = std::mem::replace(&mut self.phase, Phase::Over)
        else {
            return;
        };
        match opening::store_identity(&self.rules.who, reply, &mut self.logs) {
            Err(e) => self.events.push(Event::Refuse(e)),
            Ok(who) => {
                self.stored = Some(who.clone());
                self.rules.identified = Some(who.clone());
                self.plan(&cfg, &who, &topic, resume, deadline, true);
                self.opened_if_complete(now);
            }
        }
    }

    /// Everything asked so far is answered and the subscription is
    /// confirmed: the commands that could not ride behind the join go out
    /// now (the subscription is live, so nothing published is missed),
    /// or, once they are answered too, the stream is decided.
    pub(super) fn opened_if_complete(&mut self, now: u64) {
        let Phase::Opening {
            subscribed: true,
            outstanding: 0,
            ..
        } = &mut self.phase
        else {
            return;
        };
        if self.side.is_empty() {
            return self.decide(now);
        }
        let side = std::mem::take(&mut self.side);
        if let Phase::Opening { outstanding, .. } = &mut self.phase {
            *outstanding = side.len();
        }
        for (tag, args) in side {
            self.run(tag, args, false);
        }
    }

    /// Every reply is in: answer, or start the live phase.
    pub(super) fn decide(&mut self, now: u64) {
        let Phase::Opening {
            plan,
            early,
            replies,
            too_large,
            ..
        } = std::mem::replace(&mut self.phase, Phase::Over)
        else {
            return;
        };
        let d = opening::decide(
            &self.rules,
            &plan,
            self.slot.is_some(),
            replies,
            &mut self.logs,
        );
        self.slot_taken = d.slot_taken;
        self.stored = d.stored.or(self.stored.take());
        let opened = match d.answer {
            Ok(opened) => opened,
            Err(e) => return self.refuse(e),
        };
        let mut outbox = opened.outbox;
        // The first page follows the first events (`retry:`, the status
        // snapshot or the replay session's status) queued by the decision.
        // With no history read, an empty page: a finished execution still
        // ends with its stored result.
        self.history_key = self.history_from.as_ref().map(|(key, _)| key.clone());
        let (key, after) = self.history_from.take().unwrap_or_default();
        let mut replay = Replay::new(key, after, self.budget, &self.channel);
        replay.execution(opened.fill, opened.finished);
        let paged = replay.page(opened.page.unwrap_or_default(), &mut outbox, &mut self.logs);
        self.timers.wrote(now);
        if self.stored.is_some() {
            self.timers.check_user(now);
        }
        self.phase = Phase::Live {
            first_event: (outbox.events_sent() > 0).then_some(now),
            outbox,
            started: now,
            ping_outstanding: false,
            replay: Some(Box::new(replay)),
            held: Held::default(),
            backlog: Backlog::default(),
            kind: plan.kind,
        };
        self.paged(paged, now);
        for payload in early {
            self.live_message(payload, now);
        }
        if too_large > 0 {
            self.overrun(too_large, "too large", now);
        }
        if let Phase::Live { outbox, .. } = &self.phase {
            self.logs.push(log::line(
                "stream_opened",
                &[
                    ("channel", self.channel.as_str().into()),
                    ("kind", plan.kind.name().into()),
                    ("queued_events", outbox.events_sent().into()),
                ],
            ));
        }
        self.events.push(Event::Start);
        self.closed_if(now);
    }

    /// Opening failed: 503, and a slot that may be held is given back, on
    /// the stream's connection if it still works, else on a fresh one.
    pub(super) fn opening_failed(&mut self, detail: &str, conn_works: bool) {
        let Phase::Opening { replies, .. } = &self.phase else {
            return;
        };
        // The acquire went out once `side` was emptied: behind the join,
        // or once the subscription was confirmed.
        let sent = self.side.is_empty();
        self.slot_taken = self.slot.is_some() && replies.may_hold_slot(sent);
        let e = unavailable(&mut self.logs, detail);
        self.phase = Phase::Over;
        self.release_slot(conn_works && self.on_stream());
        self.events.push(Event::Refuse(e));
    }

    /// Answers with `err` and gives a taken slot back.
    pub(super) fn refuse(&mut self, err: ApiError) {
        self.phase = Phase::Over;
        self.release_slot(self.on_stream());
        self.events.push(Event::Refuse(err));
    }
}
