//! The WASI shell: the HTTP entry point and the I/O loop of a stream.
//!
//! Everything here moves bytes between the host and the core modules
//! (`routes`, `auth`, `session`, `stream`); decisions are made there.
//! One request = one component instance, so the loop may block in
//! `wasi:io/poll` without starving anything else.

mod body;
mod clock;
mod config_source;
mod net;

use crate::auth::{token_from_headers, AuthError, Identity, Role, Verifier};
use crate::config::Config;
use crate::error::ApiError;
use crate::events::{self, ExecutionRecord, StreamKind};
use crate::resp::Value;
use crate::routes::{self, Route};
use crate::session::{Incoming, Session, Tag};
use crate::stream::{Close, Stream};
use body::SseBody;
use net::Conn;
use spin_sdk::http::{IncomingRequest, Method, ResponseOutparam};
use wasi::io::poll::poll;

/// Bytes queued for a browser that is not reading before its stream is
/// dropped: bounds memory per stream whatever Redis sends.
const MAX_OUTBOX: usize = 1024 * 1024;

/// How long a closed stream may take to flush its last bytes.
const CLOSE_FLUSH_MS: u64 = 5_000;

/// Seconds a client should wait before retrying after a 503.
const RETRY_AFTER_SECONDS: u32 = 2;

#[spin_sdk::http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    let path_and_query = req.path_with_query().unwrap_or_default();
    let path = path_and_query.split('?').next().unwrap_or("");
    let route = match routes::route(method_name(&req.method()), path) {
        Ok(r) => r,
        Err(e) => return body::send_error(out, &e),
    };
    let cfg = match config_source::load() {
        Ok(c) => c,
        Err(e) => {
            log("config_error", &[("detail", &e.to_string())]);
            return body::send_error(out, &ApiError::configuration(e.to_string()));
        }
    };
    let who = match authenticate(&req, &cfg) {
        Ok(who) => who,
        Err(e) => return body::send_error(out, &e),
    };
    match route {
        Route::ExecutionStream(id) => execution_stream(&cfg, &who, &id, out),
        _ => body::send_error(out, &ApiError::not_found()),
    }
}

fn method_name(m: &Method) -> &str {
    match m {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Connect => "CONNECT",
        Method::Options => "OPTIONS",
        Method::Trace => "TRACE",
        Method::Patch => "PATCH",
        Method::Other(s) => s,
    }
}

/// Header values as text; a value that is not UTF-8 is ignored.
fn header_values(req: &IncomingRequest, name: &str) -> Vec<String> {
    req.headers()
        .get(name)
        .into_iter()
        .filter_map(|v| String::from_utf8(v).ok())
        .collect()
}

/// Verifies the caller's JWT before anything touches Redis.
fn authenticate(req: &IncomingRequest, cfg: &Config) -> Result<Identity, ApiError> {
    let authorization = header_values(req, "authorization");
    let cookies = header_values(req, "cookie");
    let cookie_refs: Vec<&str> = cookies.iter().map(String::as_str).collect();
    let token = token_from_headers(authorization.first().map(String::as_str), &cookie_refs)
        .ok_or_else(ApiError::authentication_required)?;
    let verifier = Verifier::new(cfg.auth.clone());
    verifier
        .verify(token, clock::unix_seconds())
        .map_err(|e| match e {
            AuthError::Missing => ApiError::authentication_required(),
            AuthError::Invalid(reason) => {
                log("auth_failed", &[("reason", &reason)]);
                ApiError::invalid_credentials()
            }
        })
}

/// A subscribed connection, with what arrived before the caller was ready.
struct Subscription {
    conn: Conn,
    /// Messages published after `SUBSCRIBE` and before the stream started.
    early: Vec<Vec<u8>>,
    /// The reply to the extra command, if one was sent.
    reply: Option<Value>,
}

/// Connects, subscribes to `channel` and, in the same pipeline, sends
/// `command` (whose reply is returned); fails with 503 on any Redis trouble.
fn subscribe(
    cfg: &Config,
    channel: &str,
    command: Option<&[&[u8]]>,
) -> Result<Subscription, ApiError> {
    let unavailable = |detail: String| {
        log("redis_unavailable", &[("detail", &detail)]);
        ApiError::service_unavailable(RETRY_AFTER_SECONDS)
    };
    let mut session = Session::subscribe(&cfg.redis, channel);
    if let Some(args) = command {
        session.command(Tag::Record, args);
    }
    let deadline = clock::after_ms(cfg.redis_timeout_ms);
    let mut conn = Conn::open(&cfg.redis, session, deadline).map_err(|e| unavailable(e.0))?;
    let (mut subscribed, mut early, mut reply, mut batch) = (false, Vec::new(), None, Vec::new());
    while !subscribed || (command.is_some() && reply.is_none()) {
        conn.next_batch(&mut batch, deadline)
            .map_err(|e| unavailable(e.0))?;
        for item in batch.drain(..) {
            match item {
                Incoming::Subscribed => subscribed = true,
                Incoming::Message(p) => early.push(p),
                Incoming::Reply(_, v) => reply = Some(v),
            }
        }
    }
    Ok(Subscription { conn, early, reply })
}

/// `GET /api/v1/events/executions/{id}`: ownership check on the record,
/// then the status snapshot, then live events until a terminal one.
fn execution_stream(cfg: &Config, who: &Identity, id: &str, out: ResponseOutparam) {
    let channel = format!("{}{}", cfg.prefixes.exec_channel, id);
    let key = format!("{}{}", cfg.prefixes.exec_key, id);
    let sub = match subscribe(cfg, &channel, Some(&[b"HGETALL", key.as_bytes()])) {
        Ok(s) => s,
        Err(e) => return body::send_error(out, &e),
    };
    let pairs = match sub.reply.map(Value::into_pairs) {
        Some(Ok(p)) => p,
        _ => {
            log("redis_bad_record", &[("execution_id", &id)]);
            return body::send_error(out, &ApiError::service_unavailable(RETRY_AFTER_SECONDS));
        }
    };
    let Some(record) = ExecutionRecord::from_pairs(pairs) else {
        return body::send_error(out, &ApiError::execution_not_found(id));
    };
    if record.user_id != who.user_id && who.role != Role::Admin {
        return body::send_error(out, &ApiError::forbidden());
    }
    let mut stream = Stream::new(StreamKind::Execution, None, MAX_OUTBOX);
    stream.control(&events::status_event(id, &record), false);
    if record.is_finished() {
        match events::stored_result_event(id, &record) {
            Some(result) => stream.control(&result, true),
            None => stream.close(Close::Terminal),
        }
    }
    serve(cfg, sub.conn, sub.early, stream, out, &channel);
}

/// Starts the SSE response and runs the stream to its end; shared by every
/// stream route.
fn serve(
    cfg: &Config,
    mut conn: Conn,
    early: Vec<Vec<u8>>,
    mut stream: Stream,
    out: ResponseOutparam,
    channel: &str,
) {
    let started = clock::now();
    for payload in early {
        deliver(&mut stream, &payload, channel);
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

fn deliver(stream: &mut Stream, payload: &[u8], channel: &str) {
    if let Err(skip) = stream.message(payload) {
        log(
            "message_skipped",
            &[
                ("channel", &channel),
                ("reason", &skip.reason()),
                ("bytes", &payload.len()),
            ],
        );
    }
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

/// One JSON log line on stderr. Callers pass no tokens or secrets.
fn log(event: &str, fields: &[(&str, &dyn LogValue)]) {
    let mut line = serde_json::Map::new();
    line.insert("event".into(), event.into());
    for (k, v) in fields {
        line.insert((*k).into(), v.to_json());
    }
    eprintln!("{}", serde_json::Value::Object(line));
}

/// Values a log line can carry.
trait LogValue {
    fn to_json(&self) -> serde_json::Value;
}

impl LogValue for &str {
    fn to_json(&self) -> serde_json::Value {
        (*self).into()
    }
}

impl LogValue for String {
    fn to_json(&self) -> serde_json::Value {
        self.as_str().into()
    }
}

impl LogValue for u64 {
    fn to_json(&self) -> serde_json::Value {
        (*self).into()
    }
}

impl LogValue for usize {
    fn to_json(&self) -> serde_json::Value {
        (*self).into()
    }
}
