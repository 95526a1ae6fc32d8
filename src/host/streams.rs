//! The stream routes: open a subscription (plus record and history reads in
//! the same pipeline), decide what to send first, then run the one shared
//! stream loop ([`Loop`]) until the stream ends.

use super::body::{Responder, SseBody};
use super::net::Conn;
use super::{clock, log, redis, unavailable, RETRY_AFTER_SECONDS};
use crate::auth::{Identity, Role};
use crate::config::Config;
use crate::error::ApiError;
use crate::events::{self, ExecutionRecord, StreamKind};
use crate::history::{self, EntryId};
use crate::limits::Slot;
use crate::resp::Value;
use crate::routes::valid_id;
use crate::session::{Incoming, Session, Tag};
use crate::stream::{Close, Stream};
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
    /// The caller's stream slot, when per-user limits are on.
    slot: Option<Slot>,
}

/// Connects, takes a stream slot, subscribes and reads record and history,
/// all in one round trip. On Redis Cluster the subscription (sharded) and
/// the history (same slot) go to the channel's shard, and the record and
/// slot commands, whose keys live elsewhere, follow once subscribed.
fn open(cfg: &Config, who: &Identity, plan: &Plan) -> Result<Opened, ApiError> {
    let cluster = cfg.redis_cluster;
    let max = cfg.limits.max_streams_per_user;
    let slot = (max > 0).then(|| {
        let key = format!("{}{}", cfg.prefixes.slots_key, who.user_id);
        Slot::new(key, random_member(), cfg.heartbeat_seconds)
    });
    let mut side: Vec<(Tag, Vec<Vec<u8>>)> = Vec::new();
    if let Some(slot) = &slot {
        side.push((Tag::Acquire, slot.acquire(max)));
    }
    if let Some(key) = &plan.record_key {
        side.push((
            Tag::Record,
            vec![b"HGETALL".to_vec(), key.as_bytes().to_vec()],
        ));
    }
    let history_cmd = plan.history.map(|after| {
        let key = history::key(&cfg.prefixes.history_key, &plan.channel);
        history::range_command(&key, after, cfg.history.max_len + HISTORY_SLACK)
    });
    let make = || {
        let mut session = Session::subscribe(&cfg.redis, &plan.channel, cluster);
        if let Some(args) = &history_cmd {
            session.command_owned(Tag::History, args);
        }
        if !cluster {
            for (tag, args) in &side {
                session.command_owned(*tag, args);
            }
        }
        session
    };
    let deadline = clock::after_ms(cfg.redis_timeout_ms);
    let (mut conn, mut batch) = redis::connect(cfg, make, deadline).map_err(|e| unavailable(&e))?;
    let (mut subscribed, mut early, mut replies) = (false, Vec::new(), Vec::new());
    loop {
        for item in batch.drain(..) {
            match item {
                Incoming::Subscribed => subscribed = true,
                Incoming::Message(p) => early.push(p),
                Incoming::Reply(tag, v) => replies.push((tag, v)),
            }
        }
        if subscribed && conn.session.awaiting_replies() == 0 {
            break;
        }
        conn.next_batch(&mut batch, deadline)
            .map_err(|e| unavailable(&e.0))?;
    }
    if cluster {
        for (tag, args) in &side {
            replies.push((*tag, redis::command(cfg, *tag, args)?));
        }
    }
    let mut reply = |want: Tag| {
        let at = replies.iter().position(|(tag, _)| *tag == want)?;
        Some(replies.swap_remove(at).1)
    };
    let acquired = reply(Tag::Acquire).and_then(|v| v.as_int());
    let record = reply(Tag::Record);
    let history = reply(Tag::History);
    if slot.is_some() && acquired != Some(1) {
        release(cfg, conn, None);
        log("stream_limit", &[("limit", &max)]);
        return Err(ApiError::too_many_streams(max, RETRY_AFTER_SECONDS));
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
        slot,
    })
}

/// A member name unique to this stream (slot sets are shared by instances).
fn random_member() -> String {
    format!("{:016x}", wasi::random::random::get_random_u64())
}

/// Gives the slot back (best effort: the lease expires anyway) and closes
/// the connection, which releases the subscription.
fn release(cfg: &Config, mut conn: Conn, slot: Option<&Slot>) {
    let Some(slot) = slot else {
        return;
    };
    if cfg.redis_cluster {
        drop(conn);
        let _ = redis::command(cfg, Tag::Release, &slot.release());
    } else {
        conn.session.command_owned(Tag::Release, &slot.release());
        let _ = conn.flush();
    }
}

/// Renews the slot's lease: on the stream's own connection, or on a
/// cluster through the slot key's owner.
fn renew(cfg: &Config, conn: &mut Conn, slot: &Slot) {
    if cfg.redis_cluster {
        if let Err(e) = redis::command(cfg, Tag::Renew, &slot.renew()) {
            log("slot_renew_failed", &[("detail", &e.detail)]);
        }
    } else {
        conn.session.command_owned(Tag::Renew, &slot.renew());
    }
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
    out: Responder,
) {
    let plan = Plan {
        channel: format!("{}{}", cfg.prefixes.exec_channel, id),
        record_key: Some(format!("{}{}", cfg.prefixes.exec_key, id)),
        history: Some(resume_point(last_event_id)),
    };
    let mut opened = match open(cfg, who, &plan) {
        Ok(o) => o,
        Err(e) => return out.error(&e),
    };
    let record = match opened.record.take().map(Value::into_pairs) {
        Some(Ok(pairs)) => ExecutionRecord::from_pairs(pairs),
        _ => {
            log("redis_bad_record", &[("execution_id", &id)]);
            release(cfg, opened.conn, opened.slot.as_ref());
            let e = ApiError::service_unavailable(RETRY_AFTER_SECONDS);
            return out.error(&e);
        }
    };
    // Refusals release the subscription before answering.
    let Some(record) = record else {
        release(cfg, opened.conn, opened.slot.as_ref());
        return out.error(&ApiError::execution_not_found(id));
    };
    if record.user_id != who.user_id && who.role != Role::Admin {
        release(cfg, opened.conn, opened.slot.as_ref());
        return out.error(&ApiError::forbidden());
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
    serve(cfg, who, opened, stream, out, &plan.channel);
}

/// `GET /api/v1/events/notifications/stream`: the caller's notifications,
/// resumed from `Last-Event-ID` when given; never ends by itself.
pub fn notifications(cfg: &Config, who: &Identity, last_event_id: Option<&str>, out: Responder) {
    if !valid_id(&who.user_id) {
        let e = ApiError::bad_request("the token's user id cannot name a notification channel");
        return out.error(&e);
    }
    let plan = Plan {
        channel: format!("{}{}", cfg.prefixes.notif_channel, who.user_id),
        record_key: None,
        history: resume_point(last_event_id).map(Some),
    };
    let stream = Stream::new(StreamKind::Notification, Some("notification"), MAX_OUTBOX);
    start(cfg, who, &plan, stream, out);
}

/// `GET /api/v1/events/replay/{session_id}/status`: admins only; ends when
/// the replay session completes, fails or is cancelled.
pub fn replay_status(
    cfg: &Config,
    who: &Identity,
    session_id: &str,
    last_event_id: Option<&str>,
    out: Responder,
) {
    if who.role != Role::Admin {
        return out.error(&ApiError::forbidden());
    }
    let plan = Plan {
        channel: format!("{}{}", cfg.prefixes.replay_channel, session_id),
        record_key: None,
        history: resume_point(last_event_id).map(Some),
    };
    let stream = Stream::new(StreamKind::Replay, None, MAX_OUTBOX);
    start(cfg, who, &plan, stream, out);
}

/// Opens `plan` and serves `stream` after any history (streams with no
/// opening snapshot).
fn start(cfg: &Config, who: &Identity, plan: &Plan, mut stream: Stream, out: Responder) {
    let opened = match open(cfg, who, plan) {
        Ok(o) => o,
        Err(e) => return out.error(&e),
    };
    stream.retry(cfg.retry_ms);
    replay(&mut stream, &opened.history, &plan.channel);
    serve(cfg, who, opened, stream, out, &plan.channel);
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
fn serve(
    cfg: &Config,
    who: &Identity,
    opened: Opened,
    mut stream: Stream,
    out: Responder,
    channel: &str,
) {
    let started = clock::now();
    let Opened {
        mut conn,
        early,
        slot,
        ..
    } = opened;
    for payload in &early {
        deliver(&mut stream, payload, channel);
    }
    log(
        "stream_opened",
        &[
            ("channel", &channel),
            ("queued_events", &stream.events_sent()),
        ],
    );
    let close = match out.sse() {
        Ok(mut body) => {
            let mut stream_loop = Loop::new(cfg, who, started);
            let close = stream_loop.run(&mut conn, slot.as_ref(), &mut stream, &mut body, channel);
            if close == Close::Terminal && stream.pending().is_empty() {
                body.finish();
            }
            close
        }
        Err(_) => Close::ClientGone,
    };
    release(cfg, conn, slot.as_ref());
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

/// The deadlines one stream lives by (monotonic ns).
struct Loop<'a> {
    cfg: &'a Config,
    heartbeat_ns: u64,
    stall_ns: u64,
    retry_ms: u64,
    /// Next heartbeat (pushed back by every write).
    idle: u64,
    /// `max_stream_seconds` after the stream started.
    lifetime: u64,
    /// When the token stops being valid (`exp` + leeway).
    token: u64,
    /// The last time the browser took bytes.
    progress: u64,
    /// Set once closed: how long the last bytes may take.
    flush: Option<u64>,
    /// A liveness `PING` is waiting for its reply.
    ping_outstanding: bool,
}

impl<'a> Loop<'a> {
    fn new(cfg: &'a Config, who: &Identity, started: u64) -> Loop<'a> {
        let secs = |s: u64| s.saturating_mul(1_000_000_000);
        let now = clock::now();
        let token_left = (who.expires_at + cfg.auth.leeway_seconds - clock::unix_seconds()).max(0);
        Loop {
            cfg,
            heartbeat_ns: secs(cfg.heartbeat_seconds),
            stall_ns: secs(cfg.limits.write_stall_seconds),
            retry_ms: cfg.retry_ms,
            idle: now + secs(cfg.heartbeat_seconds),
            lifetime: started.saturating_add(secs(cfg.limits.max_stream_seconds)),
            token: now.saturating_add(secs(token_left as u64)),
            progress: now,
            flush: None,
            ping_outstanding: false,
        }
    }

    /// Waits at once on Redis, one timer (the nearest deadline) and, only
    /// with bytes pending, the response body; an idle stream blocks in
    /// `poll`. Returns why the stream ended.
    fn run(
        &mut self,
        conn: &mut Conn,
        slot: Option<&Slot>,
        stream: &mut Stream,
        body: &mut SseBody,
        channel: &str,
    ) -> Close {
        // One subscription for the stream's life: re-subscribing every turn
        // costs two host calls per event.
        let redis_ready = conn.readable();
        loop {
            self.write(stream, body);
            if let Some(why) = self.finished(stream) {
                return why;
            }
            let open = stream.closed().is_none();
            let pending = !stream.pending().is_empty();
            let mut next = self.idle;
            if open {
                next = next.min(self.lifetime).min(self.token);
            }
            if pending {
                next = next.min(self.progress.saturating_add(self.stall_ns));
            }
            if let Some(flush) = self.flush {
                next = next.min(flush);
            }
            let timer = clock::timer_at(next);
            let writable = pending.then(|| body.writable()).flatten();
            let mut set = vec![&timer];
            if open {
                set.push(&redis_ready);
            }
            set.extend(writable.as_ref());
            let ready = poll(&set);
            if open && ready.contains(&1) {
                self.read(conn, stream, channel);
            }
            self.tick(conn, slot, stream, channel);
        }
    }

    fn write(&mut self, stream: &mut Stream, body: &mut SseBody) {
        if stream.pending().is_empty() {
            return;
        }
        match body.write_some(stream.pending()) {
            Ok(0) => {}
            Ok(n) => {
                let now = clock::now();
                self.idle = now + self.heartbeat_ns;
                self.progress = now;
                stream.consume(n);
            }
            Err(_) => stream.close(Close::ClientGone),
        }
    }

    fn finished(&mut self, stream: &Stream) -> Option<Close> {
        match stream.closed()? {
            why @ (Close::ClientGone | Close::SlowClient) => Some(why),
            why if stream.finished() => Some(why),
            why => {
                let flush = *self
                    .flush
                    .get_or_insert_with(|| clock::after_ms(CLOSE_FLUSH_MS));
                (clock::now() >= flush).then_some(why)
            }
        }
    }

    fn read(&mut self, conn: &mut Conn, stream: &mut Stream, channel: &str) {
        let mut batch = Vec::new();
        if let Err(e) = conn.read_available(&mut batch) {
            log("redis_lost", &[("channel", &channel), ("detail", &e.0)]);
            stream.end(Close::RedisLost, self.retry_ms);
            return;
        }
        for item in batch {
            match item {
                Incoming::Message(payload) => deliver(stream, &payload, channel),
                Incoming::Reply(Tag::Ping, _) => self.ping_outstanding = false,
                _ => {}
            }
        }
    }

    /// Timer work: heartbeat (with a Redis liveness check and slot
    /// renewal), stalled browser, token expiry, lifetime.
    fn tick(&mut self, conn: &mut Conn, slot: Option<&Slot>, stream: &mut Stream, channel: &str) {
        let now = clock::now();
        if stream.closed().is_some() {
            return;
        }
        if !stream.pending().is_empty() && now >= self.progress.saturating_add(self.stall_ns) {
            stream.close(Close::SlowClient);
        } else if now >= self.token {
            stream.end(Close::TokenExpired, self.retry_ms);
        } else if now >= self.lifetime {
            stream.end(Close::Lifetime, self.retry_ms);
        } else if now >= self.idle {
            self.idle = now + self.heartbeat_ns;
            stream.heartbeat();
            if self.ping_outstanding {
                log(
                    "redis_lost",
                    &[("channel", &channel), ("detail", &"no PONG")],
                );
                stream.end(Close::RedisLost, self.retry_ms);
                return;
            }
            conn.session.command(Tag::Ping, &[b"PING"]);
            if let Some(slot) = slot {
                renew(self.cfg, conn, slot);
            }
            self.ping_outstanding = true;
            if let Err(e) = conn.flush() {
                log("redis_lost", &[("channel", &channel), ("detail", &e.0)]);
                stream.end(Close::RedisLost, self.retry_ms);
            }
        }
    }
}
