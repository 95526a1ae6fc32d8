//! The stream routes: open a subscription (plus record and history reads in
//! the same pipeline), decide what to send first, then run the one shared
//! stream loop ([`pump`]) until the stream ends.

use super::body::{self, SseBody};
use super::net::Conn;
use super::{clock, log, unavailable, RETRY_AFTER_SECONDS};
use crate::auth::{Identity, Role};
use crate::config::Config;
use crate::error::ApiError;
use crate::events::{self, ExecutionRecord, StreamKind};
use crate::history::{self, EntryId};
use crate::resp::Value;
use crate::routes::valid_id;
use crate::session::{Incoming, Session, Tag};
use crate::stream::{Close, Stream};
use spin_sdk::http::ResponseOutparam;
use wasi::io::poll::poll;

/// Bytes queued for a browser that is not reading before its stream is
/// dropped: bounds memory per stream whatever Redis sends.
const MAX_OUTBOX: usize = 1024 * 1024;

/// How long a closed stream may take to flush its last bytes.
const CLOSE_FLUSH_MS: u64 = 5_000;

/// History entries replayed beyond `history_max_len`: approximate trimming
/// (`MAXLEN ~`) keeps up to one more macro node (100 entries) than asked.
const HISTORY_SLACK: u64 = 100;

/// What to read when opening a stream.
struct Plan {
    channel: String,
    /// `HGETALL` this key in the same pipeline (execution streams).
    record_key: Option<String>,
    /// Replay history: `None` no, `Some(None)` all, `Some(Some(id))` after id.
    history: Option<Option<EntryId>>,
}

/// A subscribed connection and what the pipeline returned.
struct Opened {
    conn: Conn,
    /// Live messages that arrived before the replies.
    early: Vec<Vec<u8>>,
    record: Option<Value>,
    history: Vec<(EntryId, Vec<u8>)>,
}

/// Connects, subscribes and reads record and history in one round trip.
fn open(cfg: &Config, plan: &Plan) -> Result<Opened, ApiError> {
    let mut session = Session::subscribe(&cfg.redis, &plan.channel);
    if let Some(key) = &plan.record_key {
        session.command(Tag::Record, &[b"HGETALL", key.as_bytes()]);
    }
    if let Some(after) = plan.history {
        let key = format!("{}{}", cfg.prefixes.history_key, plan.channel);
        let count = cfg.history.max_len + HISTORY_SLACK;
        session.command_owned(Tag::History, &history::range_command(&key, after, count));
    }
    let deadline = clock::after_ms(cfg.redis_timeout_ms);
    let mut conn = Conn::open(&cfg.redis, session, deadline).map_err(|e| unavailable(&e.0))?;
    let (mut subscribed, mut early, mut batch) = (false, Vec::new(), Vec::new());
    let (mut record, mut history) = (None, None);
    while !subscribed || conn.session.awaiting_replies() > 0 {
        conn.next_batch(&mut batch, deadline)
            .map_err(|e| unavailable(&e.0))?;
        for item in batch.drain(..) {
            match item {
                Incoming::Subscribed => subscribed = true,
                Incoming::Message(p) => early.push(p),
                Incoming::Reply(Tag::Record, v) => record = Some(v),
                Incoming::Reply(Tag::History, v) => history = Some(v),
                Incoming::Reply(..) => {}
            }
        }
    }
    let history = match history {
        Some(v) => history::parse_range(v).map_err(|e| unavailable(&e.to_string()))?,
        None => Vec::new(),
    };
    Ok(Opened {
        conn,
        early,
        record,
        history,
    })
}

/// A browser's `Last-Event-ID`; a malformed one counts as absent (logged).
fn resume_point(last_event_id: Option<&str>) -> Option<EntryId> {
    let raw = last_event_id?;
    let id = EntryId::parse(raw.trim());
    if id.is_none() {
        log("last_event_id_ignored", &[("length", &raw.len())]);
    }
    id
}

/// `GET /api/v1/events/executions/{id}`: ownership check on the record,
/// the status snapshot, history, then live events until a terminal one.
pub fn execution(
    cfg: &Config,
    who: &Identity,
    id: &str,
    last_event_id: Option<&str>,
    out: ResponseOutparam,
) {
    let plan = Plan {
        channel: format!("{}{}", cfg.prefixes.exec_channel, id),
        record_key: Some(format!("{}{}", cfg.prefixes.exec_key, id)),
        history: Some(resume_point(last_event_id)),
    };
    let mut opened = match open(cfg, &plan) {
        Ok(o) => o,
        Err(e) => return body::send_error(out, &e),
    };
    let record = match opened.record.take().map(Value::into_pairs) {
        Some(Ok(pairs)) => ExecutionRecord::from_pairs(pairs),
        _ => {
            log("redis_bad_record", &[("execution_id", &id)]);
            drop(opened.conn);
            let e = ApiError::service_unavailable(RETRY_AFTER_SECONDS);
            return body::send_error(out, &e);
        }
    };
    // Refusals release the subscription before answering.
    let Some(record) = record else {
        drop(opened.conn);
        return body::send_error(out, &ApiError::execution_not_found(id));
    };
    if record.user_id != who.user_id && who.role != Role::Admin {
        drop(opened.conn);
        return body::send_error(out, &ApiError::forbidden());
    }
    let mut stream = Stream::new(StreamKind::Execution, None, MAX_OUTBOX);
    stream.retry(cfg.retry_ms);
    stream.control(&events::status_event(id, &record), false);
    replay(&mut stream, &opened.history, &plan.channel);
    if record.is_finished() && stream.closed().is_none() {
        match events::stored_result_event(id, &record) {
            Some(result) => stream.control(&result, true),
            None => stream.close(Close::Terminal),
        }
    }
    serve(cfg, opened, stream, out, &plan.channel);
}

/// `GET /api/v1/events/notifications/stream`: the caller's notifications,
/// resumed from `Last-Event-ID` when given; never ends by itself.
pub fn notifications(
    cfg: &Config,
    who: &Identity,
    last_event_id: Option<&str>,
    out: ResponseOutparam,
) {
    if !valid_id(&who.user_id) {
        let e = ApiError::bad_request("the token's user id cannot name a notification channel");
        return body::send_error(out, &e);
    }
    let plan = Plan {
        channel: format!("{}{}", cfg.prefixes.notif_channel, who.user_id),
        record_key: None,
        history: resume_point(last_event_id).map(Some),
    };
    let stream = Stream::new(StreamKind::Notification, Some("notification"), MAX_OUTBOX);
    start(cfg, &plan, stream, out);
}

/// `GET /api/v1/events/replay/{session_id}/status`: admins only; ends when
/// the replay session completes, fails or is cancelled.
pub fn replay_status(
    cfg: &Config,
    who: &Identity,
    session_id: &str,
    last_event_id: Option<&str>,
    out: ResponseOutparam,
) {
    if who.role != Role::Admin {
        return body::send_error(out, &ApiError::forbidden());
    }
    let plan = Plan {
        channel: format!("{}{}", cfg.prefixes.replay_channel, session_id),
        record_key: None,
        history: resume_point(last_event_id).map(Some),
    };
    let stream = Stream::new(StreamKind::Replay, None, MAX_OUTBOX);
    start(cfg, &plan, stream, out);
}

/// Opens `plan` and serves `stream` after any history (streams with no
/// opening snapshot).
fn start(cfg: &Config, plan: &Plan, mut stream: Stream, out: ResponseOutparam) {
    let opened = match open(cfg, plan) {
        Ok(o) => o,
        Err(e) => return body::send_error(out, &e),
    };
    stream.retry(cfg.retry_ms);
    replay(&mut stream, &opened.history, &plan.channel);
    serve(cfg, opened, stream, out, &plan.channel);
}

fn replay(stream: &mut Stream, history: &[(EntryId, Vec<u8>)], channel: &str) {
    for (id, event) in history {
        if let Err(skip) = stream.event(Some(*id), event) {
            log_skip(channel, skip.reason(), event.len());
        }
    }
}

fn log_skip(channel: &str, reason: &str, bytes: usize) {
    log(
        "message_skipped",
        &[
            ("channel", &channel),
            ("reason", &reason),
            ("bytes", &bytes),
        ],
    );
}

fn deliver(stream: &mut Stream, payload: &[u8], channel: &str) {
    if let Err(skip) = stream.message(payload) {
        log_skip(channel, skip.reason(), payload.len());
    }
}

/// Starts the SSE response and runs the stream to its end; shared by every
/// stream route.
fn serve(cfg: &Config, opened: Opened, mut stream: Stream, out: ResponseOutparam, channel: &str) {
    let started = clock::now();
    let mut conn = opened.conn;
    for payload in &opened.early {
        deliver(&mut stream, payload, channel);
    }
    let close = match SseBody::start(out) {
        Ok(mut body) => pump(cfg, &mut conn, &mut stream, &mut body, channel),
        Err(_) => Close::ClientGone,
    };
    drop(conn);
    let millis = (clock::now() - started) / 1_000_000;
    log(
        "stream_closed",
        &[
            ("channel", &channel),
            ("reason", &close.reason()),
            ("events", &stream.events_sent()),
            ("duration_ms", &millis),
        ],
    );
}

/// The stream loop: waits at once on Redis, the heartbeat timer and (only
/// with bytes pending) the response body; idle streams block in `poll`.
fn pump(
    cfg: &Config,
    conn: &mut Conn,
    stream: &mut Stream,
    body: &mut SseBody,
    channel: &str,
) -> Close {
    let heartbeat_ns = cfg.heartbeat_seconds * 1_000_000_000;
    let mut idle_deadline = clock::now() + heartbeat_ns;
    let mut flush_deadline = None;
    let mut batch = Vec::new();
    loop {
        if !stream.pending().is_empty() {
            match body.write_some(stream.pending()) {
                Ok(n) => {
                    if n > 0 {
                        idle_deadline = clock::now() + heartbeat_ns;
                    }
                    stream.consume(n);
                }
                Err(_) => stream.close(Close::ClientGone),
            }
        }
        match stream.closed() {
            Some(why @ (Close::ClientGone | Close::SlowClient)) => return why,
            Some(why) if stream.finished() => return why,
            Some(why) => {
                let deadline =
                    *flush_deadline.get_or_insert_with(|| clock::after_ms(CLOSE_FLUSH_MS));
                if clock::now() >= deadline {
                    return why;
                }
            }
            None => {}
        }
        let timer = clock::timer_at(flush_deadline.unwrap_or(idle_deadline).min(idle_deadline));
        let readable = stream.closed().is_none().then(|| conn.readable());
        let writable = (!stream.pending().is_empty())
            .then(|| body.writable())
            .flatten();
        let mut set = vec![&timer];
        set.extend(readable.as_ref());
        set.extend(writable.as_ref());
        let ready = poll(&set);
        if readable.is_some() && ready.contains(&1) {
            match conn.read_available(&mut batch) {
                Ok(()) => {
                    for item in batch.drain(..) {
                        if let Incoming::Message(payload) = item {
                            deliver(stream, &payload, channel);
                        }
                    }
                }
                Err(e) => {
                    log("redis_lost", &[("channel", &channel), ("detail", &e.0)]);
                    stream.close(Close::RedisLost);
                }
            }
        }
        if clock::now() >= idle_deadline {
            stream.heartbeat();
            idle_deadline = clock::now() + heartbeat_ns;
        }
    }
}
