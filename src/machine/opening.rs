//! Opening a stream: which commands go in the first pipeline, and how their
//! replies become the answer (429, 503, 404, 403) or the first bytes.
//!
//! Redis replies are data here; the decision is a plain function of them,
//! so every path (including the slot given back on each refusal) is tested
//! without a socket.

use super::command::unavailable;
use super::Topic;
use crate::config::Config;
use crate::http::auth::{AuthError, Identity, Role};
use crate::http::error::{ApiError, RETRY_AFTER_SECONDS};
use crate::http::identity;
use crate::http::routes::valid_id;
use crate::log;
use crate::redis::resp::Value;
use crate::redis::session::Tag;
use crate::rules::events::{self, ExecutionRecord, StreamKind};
use crate::rules::history::{self, EntryId};
use crate::rules::limits::Slot;
use crate::rules::outbox::Outbox;
use crate::rules::replay_status;
use crate::rules::result_fill::{self, Fill};

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
    /// The replay session id (replay streams: `record_key` is its record).
    pub session_id: Option<String>,
    /// The user record's `HGETALL` when identity comes from the user store.
    pub user_lookup: Option<Vec<Vec<u8>>>,
}

/// The user record to read for `who`, if identity comes from the user
/// store: `identity_key_prefix` set and a token that is not a service's
/// (publishers are not users, and the store can never grant `service`).
pub fn user_lookup(cfg: &Config, who: &Identity) -> Option<Vec<Vec<u8>>> {
    let prefix = cfg.prefixes.identity_key.as_deref()?;
    (who.role != Role::Service).then(|| identity::lookup_command(prefix, &who.user_id))
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
        let user_lookup = user_lookup(cfg, who);
        Ok(match topic {
            Topic::Execution(id) => Plan {
                channel: format!("{}{id}", p.exec_channel),
                record_key: Some(format!("{}{id}", p.exec_key)),
                history: Some(resume),
                kind: StreamKind::Execution,
                execution_id: Some(id.clone()),
                session_id: None,
                user_lookup,
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
                    session_id: None,
                    user_lookup,
                }
            }
            Topic::ReplayStatus(id) => {
                // With the user store the role is known only from its reply.
                if user_lookup.is_none() {
                    admin_only(who)?;
                }
                Plan {
                    channel: format!("{}{id}", p.replay_channel),
                    record_key: Some(format!("{}{id}", p.replay_key)),
                    history: resume.map(Some),
                    kind: StreamKind::Replay,
                    execution_id: None,
                    session_id: Some(id.clone()),
                    user_lookup,
                }
            }
        })
    }

    /// The history to replay, if any: its key and where to start.
    pub fn history_key(&self, cfg: &Config) -> Option<(String, Option<EntryId>)> {
        let after = self.history?;
        Some((
            history::key(&cfg.prefixes.history_key, &self.channel),
            after,
        ))
    }

    /// The `XRANGE` of the history's first page, if any (the next pages
    /// are asked from the live phase, [`super::replay`]). A resuming
    /// stream's starts at its `Last-Event-ID`, inclusive
    /// ([`super::replay::Replay::new`] says why).
    pub fn history_command(&self, cfg: &Config) -> Option<Vec<Vec<u8>>> {
        let (key, after) = self.history_key(cfg)?;
        let count = cfg.stream.page_entries;
        Some(match after {
            Some(at) => history::range_from_command(&key, at, count),
            None => history::range_command(&key, None, count),
        })
    }

    /// The commands whose keys live outside the channel's shard: on the
    /// stream's connection normally, on their own on Redis Cluster.
    pub fn side_commands(&self, slot: Option<&Slot>, max: u64) -> Vec<(Tag, Vec<Vec<u8>>)> {
        let mut side = Vec::new();
        if let Some(lookup) = &self.user_lookup {
            side.push((Tag::User, lookup.clone()));
        }
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
    /// The caller as the user store answered, when its record was read
    /// before the pipeline (store on): it decides instead of the token.
    pub identified: Option<Identity>,
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

/// A stream the replies let open.
pub struct Opened {
    /// `retry:` and the status snapshot, queued.
    pub outbox: Outbox,
    /// The history's first page, when a history was read.
    pub page: Option<Vec<history::Entry>>,
    /// Execution streams: what fills a replayed `result_stored` that came
    /// without its result (read in the same pipeline as the first page).
    pub fill: Option<RecordResult>,
    /// The execution is finished: its stored result event (if any), to
    /// send after the history unless a terminal event comes first.
    pub finished: Option<Option<String>>,
}

/// An execution and its record's `result` as last read: the fill of a
/// `result_stored` event that came without one ([`filled`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordResult {
    pub execution_id: String,
    pub result: Option<String>,
}

/// What the replies decide.
pub struct Decision {
    /// `Ok`: the stream goes on; `Err`: the answer.
    pub answer: Result<Opened, ApiError>,
    /// The slot was taken and must be given back (on refusal now, else at
    /// the stream's end).
    pub slot_taken: bool,
    /// The caller as the user store knew them at open (store on only): a
    /// later read that differs cuts the stream.
    pub stored: Option<Identity>,
}

/// Maps the opening replies to the answer: 503 for any Redis trouble, 401
/// for a user the store does not know as active, 429 without a slot, 404
/// without a record, 403 for another user's execution or a non-admin's
/// replay; otherwise the outbox with `retry:` and the first event (the
/// execution's status snapshot or the replay session's status), the
/// history's first page, what fills its `result_stored` events and (for a
/// finished execution) the stored result.
pub fn decide(
    rules: &Rules,
    plan: &Plan,
    slot_wanted: bool,
    mut replies: Replies,
    logs: &mut Vec<String>,
) -> Decision {
    let mut slot_taken = false;
    let mut stored = None;
    let answer = (|| {
        let acquired = match slot_wanted {
            true => {
                let v = replies.take(Tag::Acquire).unwrap_or(Ok(Value::Nil))?;
                slot_taken = v.as_int() == Some(1);
                slot_taken
            }
            false => true,
        };
        // Who the caller is comes before what they may do.
        let who = match replies.take(Tag::User) {
            Some(reply) => {
                let who = store_identity(&rules.who, reply?, logs)?;
                stored = Some(who.clone());
                who
            }
            None => rules
                .identified
                .clone()
                .unwrap_or_else(|| rules.who.clone()),
        };
        if !acquired {
            let max = rules.max_streams;
            logs.push(log::line("stream_limit", &[("limit", max.into())]));
            return Err(ApiError::too_many_streams(max, RETRY_AFTER_SECONDS));
        }
        if plan.kind == StreamKind::Replay {
            admin_only_as(&who, &rules.who.user_id)?;
        }
        let record = replies.take(Tag::Record).transpose()?;
        let page = match replies.take(Tag::History).transpose()? {
            Some(v) => {
                Some(history::parse_range(v).map_err(|e| unavailable(logs, &e.to_string()))?)
            }
            None => None,
        };
        let mut outbox = Outbox::new(plan.kind, event_name(plan.kind));
        outbox.retry(rules.retry_ms);
        let mut opened = Opened {
            outbox,
            page,
            fill: None,
            finished: None,
        };
        if let Some(id) = &plan.execution_id {
            let rec = check_record(&who, id, record, &mut opened.outbox, logs)?;
            opened.finished = rec
                .is_finished()
                .then(|| events::stored_result_event(id, &rec));
            opened.fill = Some(RecordResult {
                execution_id: id.clone(),
                result: rec.result,
            });
        } else if let Some(id) = &plan.session_id {
            replay_start(id, record, &mut opened.outbox, logs)?;
        }
        Ok(opened)
    })();
    Decision {
        answer,
        slot_taken,
        stored,
    }
}

/// A replay status stream is for admins only (403 naming the caller, as
/// the Python service does).
fn admin_only(who: &Identity) -> Result<(), ApiError> {
    admin_only_as(who, &who.user_id)
}

fn admin_only_as(who: &Identity, username: &str) -> Result<(), ApiError> {
    match who.role {
        Role::Admin => Ok(()),
        _ => Err(ApiError::admin_access_required(Some(username))),
    }
}

/// The caller from their user record: 503 if unreadable, 401 (logged with
/// the reason) for an unknown or inactive user.
pub fn store_identity(
    token: &Identity,
    reply: Value,
    logs: &mut Vec<String>,
) -> Result<Identity, ApiError> {
    let pairs = reply
        .into_pairs()
        .map_err(|e| unavailable(logs, &format!("user record: {e}")))?;
    identity::from_store(token, &pairs).map_err(|e| {
        let reason = match e {
            AuthError::Invalid(reason) => reason,
            AuthError::Missing => "no user",
        };
        logs.push(log::line("auth_failed", &[("reason", reason.into())]));
        ApiError::invalid_credentials()
    })
}

/// The replay session's current status as the first event: 404 without a
/// record, 503 if unreadable; a terminal status ends the stream there.
fn replay_start(
    id: &str,
    record: Option<Value>,
    outbox: &mut Outbox,
    logs: &mut Vec<String>,
) -> Result<(), ApiError> {
    let pairs = record
        .map(Value::into_pairs)
        .transpose()
        .map_err(|e| unavailable(logs, &format!("replay record: {e}")))?
        .unwrap_or_default();
    match replay_status::first_event(id, &pairs) {
        Ok(Some(start)) => {
            outbox.control(&start.json, start.terminal);
            Ok(())
        }
        Ok(None) => Err(ApiError::replay_session_not_found()),
        Err(detail) => Err(unavailable(logs, &detail)),
    }
}

/// `event` with a missing or null `result` of a `result_stored` filled from
/// the record's `result` (`record_result`); as it is otherwise, logged when
/// the record has no result or an unreadable one.
pub fn filled<'a>(
    event: &'a [u8],
    record_result: Option<&str>,
    execution_id: &str,
    logs: &mut Vec<String>,
) -> std::borrow::Cow<'a, [u8]> {
    let missing = |logs: &mut Vec<String>, what: &str| {
        logs.push(log::line(
            "result_not_filled",
            &[("execution_id", execution_id.into()), ("why", what.into())],
        ));
    };
    match result_fill::fill_result(event, record_result) {
        Fill::Filled(bytes) => bytes.into(),
        Fill::Unchanged => event.into(),
        Fill::NoResult => {
            missing(logs, "the record has no result");
            event.into()
        }
        Fill::BadRecord => {
            missing(logs, "the record's result is not JSON");
            event.into()
        }
    }
}

/// The record of execution `id`: 503 if unreadable, 404 if absent, 403 if
/// another user's. Queues the status snapshot and returns the record.
fn check_record(
    who: &Identity,
    id: &str,
    record: Option<Value>,
    outbox: &mut Outbox,
    logs: &mut Vec<String>,
) -> Result<ExecutionRecord, ApiError> {
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
    Ok(record)
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
