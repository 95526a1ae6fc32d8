//! Opening a stream: which commands go in the first pipeline, and how their
//! replies become the answer (429, 503, 404, 403) or the first bytes.
//!
//! Redis replies are data here; the decision is a plain function of them,
//! so every path (including the slot given back on each refusal) is tested
//! without a socket.

use super::command::{unavailable, RETRY_AFTER_SECONDS};
use super::Topic;
use crate::auth::{Identity, Role};
use crate::config::Config;
use crate::error::ApiError;
use crate::events::{self, ExecutionRecord, StreamKind};
use crate::history::{self, EntryId};
use crate::limits::Slot;
use crate::log;
use crate::outbox::{Close, Outbox};
use crate::resp::Value;
use crate::routes::valid_id;
use crate::session::Tag;

/// Bytes queued for a browser that is not reading before its stream is
/// dropped: bounds memory per stream whatever Redis sends.
pub const MAX_OUTBOX: usize = 1024 * 1024;

/// History entries replayed beyond `history_max_len`: approximate trimming
/// (`MAXLEN ~`) keeps up to one more macro node (100 entries) than asked.
const HISTORY_SLACK: u64 = 100;

/// A `Last-Event-ID` more than this far ahead of the gateway's wall clock
/// names no entry Redis has made (entry ids are Redis' ms clock): ignored.
const FUTURE_SLACK_MS: u64 = 3_600_000;

/// What to read when opening a stream.
pub struct Plan {
    pub channel: String,
    /// `HGETALL` this key in the same pipeline (execution streams).
    pub record_key: Option<String>,
    /// Replay history: `None` no, `Some(None)` all, `Some(Some(id))` after id.
    pub history: Option<Option<EntryId>>,
    pub kind: StreamKind,
    /// The execution id (execution streams: the status snapshot names it).
    pub execution_id: Option<String>,
}

impl Plan {
    /// The plan for `topic`, or the refusal that needs no Redis (a replay
    /// status for a non-admin, a user id that cannot name a channel).
    pub fn new(
        cfg: &Config,
        who: &Identity,
        topic: &Topic,
        resume: Option<EntryId>,
    ) -> Result<Plan, ApiError> {
        let p = &cfg.prefixes;
        Ok(match topic {
            Topic::Execution(id) => Plan {
                channel: format!("{}{id}", p.exec_channel),
                record_key: Some(format!("{}{id}", p.exec_key)),
                history: Some(resume),
                kind: StreamKind::Execution,
                execution_id: Some(id.clone()),
            },
            Topic::Notifications => {
                if !valid_id(&who.user_id) {
                    return Err(ApiError::bad_request(
                        "the token's user id cannot name a notification channel",
                    ));
                }
                Plan {
                    channel: format!("{}{}", p.notif_channel, who.user_id),
                    record_key: None,
                    history: resume.map(Some),
                    kind: StreamKind::Notification,
                    execution_id: None,
                }
            }
            Topic::ReplayStatus(id) => {
                if who.role != Role::Admin {
                    return Err(ApiError::forbidden());
                }
                Plan {
                    channel: format!("{}{id}", p.replay_channel),
                    record_key: None,
                    history: resume.map(Some),
                    kind: StreamKind::Replay,
                    execution_id: None,
                }
            }
        })
    }

    /// The `XRANGE` of the history to replay, if any. (Paged replay would
    /// ask for the first page here and the next one from the live phase.)
    pub fn history_command(&self, cfg: &Config) -> Option<Vec<Vec<u8>>> {
        let after = self.history?;
        let key = history::key(&cfg.prefixes.history_key, &self.channel);
        Some(history::range_command(
            &key,
            after,
            cfg.history.max_len + HISTORY_SLACK,
        ))
    }

    /// The commands whose keys live outside the channel's slot: on the
    /// stream's connection normally, on their own on Redis Cluster.
    pub fn side_commands(&self, slot: Option<&Slot>, max: u64) -> Vec<(Tag, Vec<Vec<u8>>)> {
        let mut side = Vec::new();
        if let Some(slot) = slot {
            side.push((Tag::Acquire, slot.acquire(max)));
        }
        if let Some(key) = &self.record_key {
            side.push((
                Tag::Record,
                vec![b"HGETALL".to_vec(), key.as_bytes().to_vec()],
            ));
        }
        side
    }
}

/// A browser's `Last-Event-ID`. A malformed one, or one no entry can have
/// (ahead of the wall clock, which includes ids an exclusive `XRANGE`
/// start cannot take), counts as absent and is logged.
pub fn resume_point(raw: Option<&str>, unix_now: i64, logs: &mut Vec<String>) -> Option<EntryId> {
    let raw = raw?;
    let horizon = (unix_now.max(0) as u64).saturating_mul(1000) + FUTURE_SLACK_MS;
    let id = EntryId::parse(raw.trim()).filter(|id| id.ms <= horizon);
    if id.is_none() {
        logs.push(log::line(
            "last_event_id_ignored",
            &[("length", raw.len().into())],
        ));
    }
    id
}

/// What the decision needs besides the replies.
pub struct Rules {
    /// The verified caller (ownership check).
    pub who: Identity,
    /// `max_streams_per_user` (for the 429).
    pub max_streams: u64,
    /// The `retry:` hint that starts every stream.
    pub retry_ms: u64,
}

/// The replies of the opening pipeline (and, on Cluster, of the side commands).
#[derive(Default)]
pub struct Replies {
    pub list: Vec<(Tag, Result<Value, ApiError>)>,
}

impl Replies {
    /// Whether the slot may be held when opening fails half-way: taken if
    /// the acquire said 1, unknown (so given back) if its reply is missing
    /// and it was `sent`.
    pub fn may_hold_slot(&self, sent: bool) -> bool {
        match self.list.iter().find(|(tag, _)| *tag == Tag::Acquire) {
            Some((_, Ok(v))) => v.as_int() == Some(1),
            Some((_, Err(_))) => false,
            None => sent,
        }
    }

    fn take(&mut self, want: Tag) -> Option<Result<Value, ApiError>> {
        let at = self.list.iter().position(|(tag, _)| *tag == want)?;
        Some(self.list.swap_remove(at).1)
    }
}

/// What the replies decide.
pub struct Decision {
    /// `Ok`: the stream goes on with this outbox; `Err`: the answer.
    pub answer: Result<Outbox, ApiError>,
    /// The slot was taken and must be given back (on refusal now, else at
    /// the stream's end).
    pub slot_taken: bool,
}

/// Maps the opening replies to the answer: 503 for any Redis trouble, 429
/// without a slot, 404 without a record, 403 for another user's execution;
/// otherwise the outbox with `retry:`, the status snapshot, the history and
/// (for a finished execution) the stored result.
pub fn decide(
    rules: &Rules,
    plan: &Plan,
    slot_wanted: bool,
    mut replies: Replies,
    logs: &mut Vec<String>,
) -> Decision {
    let mut slot_taken = false;
    let answer = (|| {
        if slot_wanted {
            let acquired = replies.take(Tag::Acquire).unwrap_or(Ok(Value::Nil))?;
            if acquired.as_int() != Some(1) {
                let max = rules.max_streams;
                logs.push(log::line("stream_limit", &[("limit", max.into())]));
                return Err(ApiError::too_many_streams(max, RETRY_AFTER_SECONDS));
            }
            slot_taken = true;
        }
        let record = replies.take(Tag::Record).transpose()?;
        let history = match replies.take(Tag::History).transpose()? {
            Some(v) => history::parse_range(v).map_err(|e| unavailable(logs, &e.to_string()))?,
            None => Vec::new(),
        };
        let mut outbox = Outbox::new(plan.kind, event_name(plan.kind), MAX_OUTBOX);
        outbox.retry(rules.retry_ms);
        let finished = match &plan.execution_id {
            Some(id) => Some(check_record(&rules.who, id, record, &mut outbox, logs)?),
            None => None,
        };
        for (entry, event) in &history {
            if let Err(skip) = outbox.event(Some(*entry), event) {
                logs.push(skipped(&plan.channel, skip.reason(), event.len()));
            }
        }
        if let (Some(Some(result)), None) = (finished, outbox.closed()) {
            match result {
                Some(result) => outbox.control(&result, true),
                None => outbox.close(Close::Terminal),
            }
        }
        Ok(outbox)
    })();
    Decision { answer, slot_taken }
}

/// The record of execution `id`: 503 if unreadable, 404 if absent, 403 if
/// another user's. Queues the status snapshot; returns `Some(result)` when
/// the execution is finished (its stored result event, if any).
fn check_record(
    who: &Identity,
    id: &str,
    record: Option<Value>,
    outbox: &mut Outbox,
    logs: &mut Vec<String>,
) -> Result<Option<Option<String>>, ApiError> {
    let record = match record.map(Value::into_pairs) {
        Some(Ok(pairs)) => ExecutionRecord::from_pairs(pairs),
        _ => {
            logs.push(log::line(
                "redis_bad_record",
                &[("execution_id", id.into())],
            ));
            return Err(ApiError::service_unavailable(RETRY_AFTER_SECONDS));
        }
    };
    let Some(record) = record else {
        return Err(ApiError::execution_not_found(id));
    };
    if record.user_id != who.user_id && who.role != Role::Admin {
        return Err(ApiError::forbidden());
    }
    outbox.control(&events::status_event(id, &record), false);
    Ok(record
        .is_finished()
        .then(|| events::stored_result_event(id, &record)))
}

/// The SSE `event:` name of every message of a kind (`None`: `message`).
fn event_name(kind: StreamKind) -> Option<&'static str> {
    match kind {
        StreamKind::Notification => Some("notification"),
        StreamKind::Execution | StreamKind::Replay => None,
    }
}

/// The log line of a message that broke the stream's rules.
pub fn skipped(channel: &str, reason: &str, bytes: usize) -> String {
    log::line(
        "message_skipped",
        &[
            ("channel", channel.into()),
            ("reason", reason.into()),
            ("bytes", bytes.into()),
        ],
    )
}
