//! The native baseline: the gateway's own core (`routes`, `config`, `auth`,
//! `session`, `resp`, `stream`, `sse`, `events`, `history`) behind the same
//! HTTP stack `wasmtime serve` uses (hyper 1, HTTP/1.1, chunked body fed by
//! a 2-slot channel like wasmtime-wasi-http's outgoing body), with tokio
//! sockets instead of `wasi:sockets`.
//!
//! It mirrors `src/host/` (`mod.rs`, `streams.rs`, `net.rs`) step for step
//! so the wasm/native ratio measures the sandbox and not a different
//! design: config is loaded and validated, CORS headers and the header
//! budget applied and the JWT verified on every request; each stream opens
//! its own Redis connection and sends one pipeline (`HELLO 3`, `SUBSCRIBE`,
//! `XRANGE`, the slot `EVAL` when per-user limits are on, `HGETALL`); one
//! task per stream waits on Redis, one timer (heartbeat, token expiry,
//! lifetime, write stall) and, only with bytes pending, the body; every
//! heartbeat sends `PING` and renews the slot; closing gives the slot back
//! (`ZREM`) and writes one JSON log line. Not mirrored: Redis Cluster
//! (`redis_cluster=true` answers 501), the dev/demo routes (404) and the
//! `POST` publish routes (501): the benchmark publishes through Redis.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming as HyperIncoming;
use hyper::{Request, Response};
use sse_gateway::auth::{token_from_headers, AuthError, Identity, Role, Verifier};
use sse_gateway::config::{Config, Source, VARIABLES};
use sse_gateway::error::ApiError;
use sse_gateway::events::{self, ExecutionRecord, StreamKind};
use sse_gateway::history::{self, EntryId};
use sse_gateway::limits::{self, Slot};
use sse_gateway::resp::Value;
use sse_gateway::routes::{self, valid_id, Route};
use sse_gateway::session::{Incoming, Session, Tag};
use sse_gateway::stream::{Close, Stream};
use std::convert::Infallible;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Same constants as `src/host/streams.rs`.
const MAX_OUTBOX: usize = 1024 * 1024;
const CLOSE_FLUSH_MS: u64 = 5_000;
const HISTORY_SLACK: u64 = 100;
const RETRY_AFTER_SECONDS: u32 = 2;
/// Same as `src/host/net.rs`.
const READ_CHUNK: usize = 64 * 1024;

/// Runs the server until killed.
pub fn main(addr: SocketAddr) -> ! {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result: std::io::Result<()> = runtime.block_on(async move {
        // Only the variables the gateway reads, as `wasmtime serve --env`
        // gives the component.
        let env: Arc<Vec<(String, String)>> = Arc::new(
            std::env::vars()
                .filter(|(k, _)| {
                    VARIABLES
                        .iter()
                        .any(|v| v.eq_ignore_ascii_case(k) && k.to_ascii_uppercase() == *k)
                })
                .collect(),
        );
        let listener = TcpListener::bind(addr).await?;
        eprintln!("native baseline serving on http://{addr}/");
        loop {
            let (sock, _) = listener.accept().await?;
            let _ = sock.set_nodelay(true);
            let env = env.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let env = env.clone();
                    async move { Ok::<_, Infallible>(handle(req, &env).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(sock), service)
                    .await;
            });
        }
    });
    eprintln!("native baseline stopped: {result:?}");
    std::process::exit(1)
}

/// A response body: a complete JSON answer or an SSE stream.
pub enum GatewayBody {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Bytes>),
}

impl Body for GatewayBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            GatewayBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            GatewayBody::Stream(rx) => rx.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, GatewayBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

type Resp = Response<GatewayBody>;

/// `host::body::Responder`: the headers every answer carries (CORS).
#[derive(Default)]
struct Responder {
    common: Vec<(&'static str, String)>,
}

impl Responder {
    fn builder(&self, status: u16, extra: &[(&str, &str)]) -> hyper::http::response::Builder {
        let mut b = Response::builder().status(status);
        for (k, v) in extra
            .iter()
            .copied()
            .chain(self.common.iter().map(|(k, v)| (*k, v.as_str())))
        {
            b = b.header(k, v);
        }
        b
    }

    fn send(&self, status: u16, extra: &[(&str, &str)], body: Vec<u8>) -> Resp {
        self.builder(status, extra)
            .body(GatewayBody::Full(Some(Bytes::from(body))))
            .unwrap_or_else(|_| Response::new(GatewayBody::Full(None)))
    }

    fn error(&self, err: &ApiError) -> Resp {
        let mut extra: Vec<(&str, &str)> = vec![("content-type", "application/json")];
        extra.extend(err.headers.iter().map(|(k, v)| (*k, v.as_str())));
        self.send(err.status, &extra, err.body())
    }

    fn sse(&self, rx: mpsc::Receiver<Bytes>) -> Resp {
        self.builder(
            200,
            &[
                ("content-type", "text/event-stream"),
                ("cache-control", "no-cache"),
                ("x-accel-buffering", "no"),
            ],
        )
        .body(GatewayBody::Stream(rx))
        .unwrap_or_else(|_| Response::new(GatewayBody::Full(None)))
    }
}

/// One JSON log line on stderr, as `host::log` writes.
fn log(event: &str, fields: &[(&str, serde_json::Value)]) {
    let mut line = serde_json::Map::new();
    line.insert("event".into(), event.into());
    for (k, v) in fields {
        line.insert((*k).into(), v.clone());
    }
    eprintln!("{}", serde_json::Value::Object(line));
}

fn unavailable(detail: &str) -> ApiError {
    log("redis_unavailable", &[("detail", detail.into())]);
    ApiError::service_unavailable(RETRY_AFTER_SECONDS)
}

fn unix_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn header_values(req: &Request<HyperIncoming>, name: &str) -> Vec<String> {
    req.headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect()
}

/// `host::handle`.
async fn handle(req: Request<HyperIncoming>, env: &Arc<Vec<(String, String)>>) -> Resp {
    let mut out = Responder::default();
    let route = match routes::route(req.method().as_str(), req.uri().path()) {
        Ok(r) => r,
        Err(e) => return out.error(&e),
    };
    // Per request, as the component does: a copy of the environment, then
    // validation of every variable.
    let env: Vec<(String, String)> = env.as_ref().clone();
    let cfg = match Config::load(&Source(move |name: &str| {
        let upper = name.to_ascii_uppercase();
        env.iter()
            .find(|(k, _)| *k == upper)
            .map(|(_, v)| v.clone())
    })) {
        Ok(c) => c,
        Err(e) => {
            log("config_error", &[("detail", e.to_string().into())]);
            return out.error(&ApiError::configuration(e.to_string()));
        }
    };
    let origin = header_values(&req, "origin").into_iter().next();
    if let Route::Preflight(allow) = route {
        let requested = header_values(&req, "access-control-request-method");
        return match cfg.cors.preflight(
            origin.as_deref(),
            requested.first().map(String::as_str),
            allow,
        ) {
            Ok(headers) => {
                out.common.extend(headers);
                out.send(204, &[], Vec::new())
            }
            Err(e) => out.error(&e),
        };
    }
    out.common
        .extend(cfg.cors.response_headers(origin.as_deref()));
    let size = limits::header_bytes(
        req.headers()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_bytes())),
    );
    if size > cfg.limits.max_header_bytes {
        return out.error(&ApiError::headers_too_large(cfg.limits.max_header_bytes));
    }
    if matches!(route, Route::Health | Route::Ready) {
        return health(&cfg, &out).await;
    }
    if cfg.redis_cluster {
        return out.send(
            501,
            &[("content-type", "application/json")],
            br#"{"detail":"redis_cluster is not mirrored by the native baseline","type":"NotImplemented"}"#.to_vec(),
        );
    }
    let who = match authenticate(&req, &cfg) {
        Ok(w) => w,
        Err(e) => return out.error(&e),
    };
    let last_event_id = header_values(&req, "last-event-id").into_iter().next();
    let last = last_event_id.as_deref();
    match route {
        Route::ExecutionStream(id) => execution(cfg, who, &id, last, out).await,
        Route::NotificationStream => notifications(cfg, who, last, out).await,
        Route::ReplayStatus(id) => replay_status(cfg, who, &id, last, out).await,
        Route::PublishExecution(_) | Route::PublishNotification(_) => out.send(
            501,
            &[("content-type", "application/json")],
            br#"{"detail":"not served by the native baseline","type":"NotImplemented"}"#.to_vec(),
        ),
        _ => out.error(&ApiError::not_found()),
    }
}

/// `host::authenticate`.
fn authenticate(req: &Request<HyperIncoming>, cfg: &Config) -> Result<Identity, ApiError> {
    let raw = |name: &str| -> Vec<&[u8]> {
        req.headers()
            .get_all(name)
            .iter()
            .map(|v| v.as_bytes())
            .collect()
    };
    token_from_headers(&raw("authorization"), &raw("cookie"))
        .and_then(|token| Verifier::new(cfg.auth.clone()).verify(token, unix_seconds()))
        .map_err(|e| match e {
            AuthError::Missing => ApiError::authentication_required(),
            AuthError::Invalid(reason) => {
                log("auth_failed", &[("reason", reason.to_string().into())]);
                ApiError::invalid_credentials()
            }
        })
}

/// `host::net::Conn`: a tokio socket + the core's session state.
struct Conn {
    sock: TcpStream,
    session: Session,
    buf: Vec<u8>,
}

impl Conn {
    /// Connects within `deadline` and sends the queued handshake.
    async fn open(cfg: &Config, session: Session, deadline: Instant) -> Result<Conn, String> {
        let target = format!("{}:{}", cfg.redis.host, cfg.redis.port);
        let sock = tokio::time::timeout_at(deadline, TcpStream::connect(&target))
            .await
            .map_err(|_| format!("connect to {target} timed out"))?
            .map_err(|e| format!("connect to {target}: {e}"))?;
        let _ = sock.set_nodelay(true);
        let mut conn = Conn {
            sock,
            session,
            buf: vec![0; READ_CHUNK],
        };
        conn.flush().await?;
        Ok(conn)
    }

    async fn flush(&mut self) -> Result<(), String> {
        let bytes = self.session.take_outgoing();
        self.sock
            .write_all(&bytes)
            .await
            .map_err(|e| format!("write to redis: {e}"))
    }

    /// One read (what is available) decoded into `out`.
    async fn read_available(&mut self, out: &mut Vec<Incoming>) -> Result<(), String> {
        let n = self
            .sock
            .read(&mut self.buf)
            .await
            .map_err(|e| format!("read from redis: {e}"))?;
        if n == 0 {
            return Err("read from redis: connection closed".into());
        }
        self.session
            .receive(&self.buf[..n], out)
            .map_err(|e| format!("redis protocol: {e}"))
    }

    async fn next_batch(
        &mut self,
        out: &mut Vec<Incoming>,
        deadline: Instant,
    ) -> Result<(), String> {
        while out.is_empty() {
            tokio::time::timeout_at(deadline, self.read_available(out))
                .await
                .map_err(|_| "redis did not answer in time".to_string())??;
        }
        Ok(())
    }
}

struct Plan {
    channel: String,
    record_key: Option<String>,
    history: Option<Option<EntryId>>,
}

struct Opened {
    conn: Conn,
    early: Vec<Vec<u8>>,
    record: Option<Value>,
    history: Vec<(EntryId, Vec<u8>)>,
    slot: Option<Slot>,
}

/// `host::streams::random_member`.
fn random_member() -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(crate::stats::now_ns());
    format!("{:016x}", h.finish())
}

/// `host::streams::open` (single Redis, not cluster).
async fn open(cfg: &Config, who: &Identity, plan: &Plan) -> Result<Opened, ApiError> {
    let max = cfg.limits.max_streams_per_user;
    let slot = (max > 0).then(|| {
        let key = format!("{}{}", cfg.prefixes.slots_key, who.user_id);
        Slot::new(key, random_member(), cfg.heartbeat_seconds)
    });
    let mut session = Session::subscribe(&cfg.redis, &plan.channel, false);
    if let Some(after) = plan.history {
        let key = history::key(&cfg.prefixes.history_key, &plan.channel);
        let args = history::range_command(&key, after, cfg.history.max_len + HISTORY_SLACK);
        session.command_owned(Tag::History, &args);
    }
    if let Some(slot) = &slot {
        session.command_owned(Tag::Acquire, &slot.acquire(max));
    }
    if let Some(key) = &plan.record_key {
        session.command(Tag::Record, &[b"HGETALL", key.as_bytes()]);
    }
    let deadline = Instant::now() + Duration::from_millis(cfg.redis_timeout_ms);
    let mut conn = Conn::open(cfg, session, deadline)
        .await
        .map_err(|e| unavailable(&e))?;
    let (mut subscribed, mut early, mut replies) = (false, Vec::new(), Vec::new());
    let mut batch = Vec::new();
    loop {
        conn.next_batch(&mut batch, deadline)
            .await
            .map_err(|e| unavailable(&e))?;
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
    }
    let mut reply = |want: Tag| {
        let at = replies.iter().position(|(tag, _)| *tag == want)?;
        Some(replies.swap_remove(at).1)
    };
    let acquired = reply(Tag::Acquire).and_then(|v| v.as_int());
    let record = reply(Tag::Record);
    let hist = reply(Tag::History);
    if slot.is_some() && acquired != Some(1) {
        release(conn, None).await;
        log("stream_limit", &[("limit", max.into())]);
        return Err(ApiError::too_many_streams(max, RETRY_AFTER_SECONDS));
    }
    let history = match hist {
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

/// `host::streams::release`: `ZREM` the slot on the stream's connection,
/// then close it.
async fn release(mut conn: Conn, slot: Option<&Slot>) {
    if let Some(slot) = slot {
        conn.session.command_owned(Tag::Release, &slot.release());
        let _ = conn.flush().await;
    }
}

fn resume_point(last_event_id: Option<&str>) -> Option<EntryId> {
    let raw = last_event_id?;
    let id = EntryId::parse(raw.trim());
    if id.is_none() {
        log("last_event_id_ignored", &[("length", raw.len().into())]);
    }
    id
}

async fn execution(
    cfg: Config,
    who: Identity,
    id: &str,
    last: Option<&str>,
    out: Responder,
) -> Resp {
    let plan = Plan {
        channel: format!("{}{}", cfg.prefixes.exec_channel, id),
        record_key: Some(format!("{}{}", cfg.prefixes.exec_key, id)),
        history: Some(resume_point(last)),
    };
    let mut opened = match open(&cfg, &who, &plan).await {
        Ok(o) => o,
        Err(e) => return out.error(&e),
    };
    let record = match opened.record.take().map(Value::into_pairs) {
        Some(Ok(pairs)) => ExecutionRecord::from_pairs(pairs),
        _ => {
            log("redis_bad_record", &[("execution_id", id.into())]);
            release(opened.conn, opened.slot.as_ref()).await;
            return out.error(&ApiError::service_unavailable(RETRY_AFTER_SECONDS));
        }
    };
    let Some(record) = record else {
        release(opened.conn, opened.slot.as_ref()).await;
        return out.error(&ApiError::execution_not_found(id));
    };
    if record.user_id != who.user_id && who.role != Role::Admin {
        release(opened.conn, opened.slot.as_ref()).await;
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
    serve(cfg, who, opened, stream, out, plan.channel)
}

async fn notifications(cfg: Config, who: Identity, last: Option<&str>, out: Responder) -> Resp {
    if !valid_id(&who.user_id) {
        return out.error(&ApiError::bad_request(
            "the token's user id cannot name a notification channel",
        ));
    }
    let plan = Plan {
        channel: format!("{}{}", cfg.prefixes.notif_channel, who.user_id),
        record_key: None,
        history: resume_point(last).map(Some),
    };
    let stream = Stream::new(StreamKind::Notification, Some("notification"), MAX_OUTBOX);
    start(cfg, who, plan, stream, out).await
}

async fn replay_status(
    cfg: Config,
    who: Identity,
    session_id: &str,
    last: Option<&str>,
    out: Responder,
) -> Resp {
    if who.role != Role::Admin {
        return out.error(&ApiError::forbidden());
    }
    let plan = Plan {
        channel: format!("{}{}", cfg.prefixes.replay_channel, session_id),
        record_key: None,
        history: resume_point(last).map(Some),
    };
    let stream = Stream::new(StreamKind::Replay, None, MAX_OUTBOX);
    start(cfg, who, plan, stream, out).await
}

async fn start(cfg: Config, who: Identity, plan: Plan, mut stream: Stream, out: Responder) -> Resp {
    let opened = match open(&cfg, &who, &plan).await {
        Ok(o) => o,
        Err(e) => return out.error(&e),
    };
    stream.retry(cfg.retry_ms);
    replay(&mut stream, &opened.history, &plan.channel);
    serve(cfg, who, opened, stream, out, plan.channel)
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
            ("channel", channel.into()),
            ("reason", reason.into()),
            ("bytes", bytes.into()),
        ],
    );
}

fn deliver(stream: &mut Stream, payload: &[u8], channel: &str) {
    if let Err(skip) = stream.message(payload) {
        log_skip(channel, skip.reason(), payload.len());
    }
}

/// `host::streams::serve`: sends the `200` head and runs the stream loop
/// in its own task (the component runs it in its own instance).
fn serve(
    cfg: Config,
    who: Identity,
    opened: Opened,
    mut stream: Stream,
    out: Responder,
    channel: String,
) -> Resp {
    let started = Instant::now();
    let Opened {
        mut conn,
        early,
        slot,
        ..
    } = opened;
    for payload in &early {
        deliver(&mut stream, payload, &channel);
    }
    // wasmtime-wasi-http: `mpsc::channel(buffer_chunks + 1)`, 1 chunk.
    let (tx, rx) = mpsc::channel::<Bytes>(2);
    tokio::spawn(async move {
        let mut stream_loop = Loop::new(&cfg, &who, started);
        let close = stream_loop
            .run(&mut conn, slot.as_ref(), &mut stream, &tx, &channel)
            .await;
        release(conn, slot.as_ref()).await;
        log(
            "stream_closed",
            &[
                ("channel", channel.as_str().into()),
                ("reason", close.reason().into()),
                ("events", stream.events_sent().into()),
                ("duration_ms", (started.elapsed().as_millis() as u64).into()),
            ],
        );
    });
    out.sse(rx)
}

/// `host::streams::Loop`: the deadlines one stream lives by.
struct Loop {
    heartbeat: Duration,
    stall: Duration,
    retry_ms: u64,
    idle: Instant,
    lifetime: Instant,
    token: Instant,
    progress: Instant,
    flush: Option<Instant>,
    ping_outstanding: bool,
}

impl Loop {
    fn new(cfg: &Config, who: &Identity, started: Instant) -> Loop {
        let now = Instant::now();
        let token_left = (who.expires_at + cfg.auth.leeway_seconds - unix_seconds()).max(0);
        let far = |d: Duration| {
            now.checked_add(d)
                .unwrap_or(now + Duration::from_secs(86_400 * 365))
        };
        Loop {
            heartbeat: Duration::from_secs(cfg.heartbeat_seconds),
            stall: Duration::from_secs(cfg.limits.write_stall_seconds),
            retry_ms: cfg.retry_ms,
            idle: now + Duration::from_secs(cfg.heartbeat_seconds),
            lifetime: started
                .checked_add(Duration::from_secs(cfg.limits.max_stream_seconds))
                .unwrap_or_else(|| far(Duration::MAX)),
            token: far(Duration::from_secs(token_left as u64)),
            progress: now,
            flush: None,
            ping_outstanding: false,
        }
    }

    async fn run(
        &mut self,
        conn: &mut Conn,
        slot: Option<&Slot>,
        stream: &mut Stream,
        tx: &mpsc::Sender<Bytes>,
        channel: &str,
    ) -> Close {
        let mut batch = Vec::new();
        loop {
            self.write(stream, tx);
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
                next = next.min(self.progress + self.stall);
            }
            if let Some(flush) = self.flush {
                next = next.min(flush);
            }
            tokio::select! {
                r = conn.read_available(&mut batch), if open => self.read(r, &mut batch, stream, channel),
                _ = tokio::time::sleep_until(next) => {}
                _ = tx.reserve(), if pending => {}
            }
            self.tick(conn, slot, stream, channel).await;
        }
    }

    fn write(&mut self, stream: &mut Stream, tx: &mpsc::Sender<Bytes>) {
        if stream.pending().is_empty() {
            return;
        }
        match tx.try_reserve() {
            Ok(permit) => {
                let n = stream.pending().len();
                permit.send(Bytes::copy_from_slice(stream.pending()));
                let now = Instant::now();
                self.idle = now + self.heartbeat;
                self.progress = now;
                stream.consume(n);
            }
            Err(mpsc::error::TrySendError::Full(())) => {}
            Err(mpsc::error::TrySendError::Closed(())) => stream.close(Close::ClientGone),
        }
    }

    fn finished(&mut self, stream: &Stream) -> Option<Close> {
        match stream.closed()? {
            why @ (Close::ClientGone | Close::SlowClient) => Some(why),
            why if stream.finished() => Some(why),
            why => {
                let flush = *self
                    .flush
                    .get_or_insert_with(|| Instant::now() + Duration::from_millis(CLOSE_FLUSH_MS));
                (Instant::now() >= flush).then_some(why)
            }
        }
    }

    fn read(
        &mut self,
        r: Result<(), String>,
        batch: &mut Vec<Incoming>,
        stream: &mut Stream,
        channel: &str,
    ) {
        if let Err(e) = r {
            log(
                "redis_lost",
                &[("channel", channel.into()), ("detail", e.into())],
            );
            stream.end(Close::RedisLost, self.retry_ms);
            return;
        }
        for item in batch.drain(..) {
            match item {
                Incoming::Message(payload) => deliver(stream, &payload, channel),
                Incoming::Reply(Tag::Ping, _) => self.ping_outstanding = false,
                _ => {}
            }
        }
    }

    async fn tick(
        &mut self,
        conn: &mut Conn,
        slot: Option<&Slot>,
        stream: &mut Stream,
        channel: &str,
    ) {
        let now = Instant::now();
        if stream.closed().is_some() {
            return;
        }
        if !stream.pending().is_empty() && now >= self.progress + self.stall {
            stream.close(Close::SlowClient);
        } else if now >= self.token {
            stream.end(Close::TokenExpired, self.retry_ms);
        } else if now >= self.lifetime {
            stream.end(Close::Lifetime, self.retry_ms);
        } else if now >= self.idle {
            self.idle = now + self.heartbeat;
            stream.heartbeat();
            if self.ping_outstanding {
                log(
                    "redis_lost",
                    &[("channel", channel.into()), ("detail", "no PONG".into())],
                );
                stream.end(Close::RedisLost, self.retry_ms);
                return;
            }
            conn.session.command(Tag::Ping, &[b"PING"]);
            if let Some(slot) = slot {
                conn.session.command_owned(Tag::Renew, &slot.renew());
            }
            self.ping_outstanding = true;
            if let Err(e) = conn.flush().await {
                log(
                    "redis_lost",
                    &[("channel", channel.into()), ("detail", e.into())],
                );
                stream.end(Close::RedisLost, self.retry_ms);
            }
        }
    }
}

/// `host::publish::health`: one `PING` on a fresh connection.
async fn health(cfg: &Config, out: &Responder) -> Resp {
    let version = env!("CARGO_PKG_VERSION");
    let ok = async {
        let mut session = Session::handshake(&cfg.redis);
        session.command(Tag::Ping, &[b"PING"]);
        let deadline = Instant::now() + Duration::from_millis(cfg.redis_timeout_ms);
        let mut conn = Conn::open(cfg, session, deadline).await?;
        let mut batch = Vec::new();
        loop {
            conn.next_batch(&mut batch, deadline).await?;
            for item in batch.drain(..) {
                if let Incoming::Reply(Tag::Ping, v) = item {
                    return Ok::<bool, String>(v.as_str() == Some("PONG"));
                }
            }
        }
    }
    .await;
    if ok == Ok(true) {
        let reply = serde_json::json!({"status": "ok", "version": version, "redis": "ok"});
        out.send(
            200,
            &[("content-type", "application/json")],
            reply.to_string().into_bytes(),
        )
    } else {
        out.error(&ApiError::service_unavailable(RETRY_AFTER_SECONDS))
    }
}
