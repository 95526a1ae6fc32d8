//! The native baseline: the gateway's own core (`routes`, `config`, `auth`,
//! `session`, `resp`, `stream`, `sse`, `events`, `history`) behind the same
//! HTTP stack `wasmtime serve` uses (hyper 1, HTTP/1.1, chunked body fed by
//! a 2-slot channel like wasmtime-wasi-http's outgoing body), with tokio
//! sockets instead of `wasi:sockets`.
//!
//! It mirrors `src/host/` step for step so the wasm/native ratio measures
//! the sandbox and not a different design: config is loaded and the JWT
//! verified on every request, each stream opens its own Redis connection
//! and sends one pipeline (`HELLO 3`, `SUBSCRIBE`, `HGETALL`, `XRANGE`),
//! one task per stream waits on Redis, the heartbeat timer and (only with
//! bytes pending) the body, and one JSON log line is written per closed
//! stream. The `POST` publish routes are not served (501): the benchmark
//! publishes through Redis.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming as HyperIncoming;
use hyper::{Request, Response};
use sse_gateway::auth::{token_from_headers, AuthError, Identity, Role, Verifier};
use sse_gateway::config::{Config, Source, VARIABLES};
use sse_gateway::error::ApiError;
use sse_gateway::events::{self, ExecutionRecord, StreamKind};
use sse_gateway::history::{self, EntryId};
use sse_gateway::resp::Value;
use sse_gateway::routes::{self, valid_id, Route};
use sse_gateway::session::{Incoming, Session, Tag};
use sse_gateway::stream::{Close, Stream};
use std::convert::Infallible;
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

fn respond(status: u16, headers: &[(&str, &str)], body: Vec<u8>) -> Resp {
    let mut b = Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(GatewayBody::Full(Some(Bytes::from(body))))
        .unwrap_or_else(|_| Response::new(GatewayBody::Full(None)))
}

fn send_error(err: &ApiError) -> Resp {
    let mut headers: Vec<(&str, &str)> = vec![("content-type", "application/json")];
    headers.extend(err.headers.iter().map(|(k, v)| (*k, v.as_str())));
    respond(err.status, &headers, err.body())
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

async fn handle(req: Request<HyperIncoming>, env: &Arc<Vec<(String, String)>>) -> Resp {
    let route = match routes::route(req.method().as_str(), req.uri().path()) {
        Ok(r) => r,
        Err(e) => return send_error(&e),
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
            return send_error(&ApiError::configuration(e.to_string()));
        }
    };
    if route == Route::Health {
        return health(&cfg).await;
    }
    let who = match authenticate(&req, &cfg) {
        Ok(w) => w,
        Err(e) => return send_error(&e),
    };
    let last_event_id = header_values(&req, "last-event-id").into_iter().next();
    let last = last_event_id.as_deref();
    match route {
        Route::ExecutionStream(id) => execution(cfg, &who, &id, last).await,
        Route::NotificationStream => notifications(cfg, &who, last).await,
        Route::ReplayStatus(id) => replay_status(cfg, &who, &id, last).await,
        Route::Health => health(&cfg).await,
        _ => respond(
            501,
            &[("content-type", "application/json")],
            br#"{"detail":"not served by the native baseline","type":"NotImplemented"}"#.to_vec(),
        ),
    }
}

fn header_values(req: &Request<HyperIncoming>, name: &str) -> Vec<String> {
    req.headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect()
}

fn authenticate(req: &Request<HyperIncoming>, cfg: &Config) -> Result<Identity, ApiError> {
    let authorization = header_values(req, "authorization");
    let cookies = header_values(req, "cookie");
    let cookie_refs: Vec<&str> = cookies.iter().map(String::as_str).collect();
    let token = token_from_headers(authorization.first().map(String::as_str), &cookie_refs)
        .ok_or_else(ApiError::authentication_required)?;
    Verifier::new(cfg.auth.clone())
        .verify(token, unix_seconds())
        .map_err(|e| match e {
            AuthError::Missing => ApiError::authentication_required(),
            AuthError::Invalid(reason) => {
                log("auth_failed", &[("reason", reason.to_string().into())]);
                ApiError::invalid_credentials()
            }
        })
}

/// A Redis connection: tokio socket + the core's session state.
struct Conn {
    sock: TcpStream,
    session: Session,
    buf: Vec<u8>,
}

impl Conn {
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
        let bytes = conn.session.take_outgoing();
        conn.sock
            .write_all(&bytes)
            .await
            .map_err(|e| format!("write to redis: {e}"))?;
        Ok(conn)
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

    async fn next_batch(&mut self, out: &mut Vec<Incoming>, deadline: Instant) -> Result<(), String> {
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
}

async fn open(cfg: &Config, plan: &Plan) -> Result<Opened, ApiError> {
    let mut session = Session::subscribe(&cfg.redis, &plan.channel);
    if let Some(key) = &plan.record_key {
        session.command(Tag::Record, &[b"HGETALL", key.as_bytes()]);
    }
    if let Some(after) = plan.history {
        let key = format!("{}{}", cfg.prefixes.history_key, plan.channel);
        let count = cfg.history.max_len + HISTORY_SLACK;
        session.command_owned(Tag::History, &history::range_command(&key, after, count));
    }
    let deadline = Instant::now() + Duration::from_millis(cfg.redis_timeout_ms);
    let mut conn = Conn::open(cfg, session, deadline)
        .await
        .map_err(|e| unavailable(&e))?;
    let (mut subscribed, mut early, mut batch) = (false, Vec::new(), Vec::new());
    let (mut record, mut hist) = (None, None);
    while !subscribed || conn.session.awaiting_replies() > 0 {
        conn.next_batch(&mut batch, deadline)
            .await
            .map_err(|e| unavailable(&e))?;
        for item in batch.drain(..) {
            match item {
                Incoming::Subscribed => subscribed = true,
                Incoming::Message(p) => early.push(p),
                Incoming::Reply(Tag::Record, v) => record = Some(v),
                Incoming::Reply(Tag::History, v) => hist = Some(v),
                Incoming::Reply(..) => {}
            }
        }
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
    })
}

fn resume_point(last_event_id: Option<&str>) -> Option<EntryId> {
    let raw = last_event_id?;
    let id = EntryId::parse(raw.trim());
    if id.is_none() {
        log("last_event_id_ignored", &[("length", raw.len().into())]);
    }
    id
}

async fn execution(cfg: Config, who: &Identity, id: &str, last: Option<&str>) -> Resp {
    let resume = resume_point(last);
    let plan = Plan {
        channel: format!("{}{}", cfg.prefixes.exec_channel, id),
        record_key: Some(format!("{}{}", cfg.prefixes.exec_key, id)),
        history: Some(resume),
    };
    let mut opened = match open(&cfg, &plan).await {
        Ok(o) => o,
        Err(e) => return send_error(&e),
    };
    let record = match opened.record.take().map(Value::into_pairs) {
        Some(Ok(pairs)) => ExecutionRecord::from_pairs(pairs),
        _ => {
            log("redis_bad_record", &[("execution_id", id.into())]);
            return send_error(&ApiError::service_unavailable(RETRY_AFTER_SECONDS));
        }
    };
    let Some(record) = record else {
        return send_error(&ApiError::execution_not_found(id));
    };
    if record.user_id != who.user_id && who.role != Role::Admin {
        return send_error(&ApiError::forbidden());
    }
    let mut stream = Stream::new(StreamKind::Execution, None, MAX_OUTBOX);
    stream.retry(cfg.retry_ms);
    stream.control(&events::status_event(id, &record), false);
    stream.resume_after(resume);
    replay(&mut stream, &opened.history, &plan.channel);
    if record.is_finished() && stream.closed().is_none() {
        match events::stored_result_event(id, &record) {
            Some(result) => stream.control(&result, true),
            None => stream.close(Close::Terminal),
        }
    }
    serve(cfg, opened, stream, plan.channel)
}

async fn notifications(cfg: Config, who: &Identity, last: Option<&str>) -> Resp {
    if !valid_id(&who.user_id) {
        return send_error(&ApiError::bad_request(
            "the token's user id cannot name a notification channel",
        ));
    }
    let resume = resume_point(last);
    let plan = Plan {
        channel: format!("{}{}", cfg.prefixes.notif_channel, who.user_id),
        record_key: None,
        history: resume.map(Some),
    };
    let stream = Stream::new(StreamKind::Notification, Some("notification"), MAX_OUTBOX);
    start(cfg, plan, resume, stream).await
}

async fn replay_status(cfg: Config, who: &Identity, session_id: &str, last: Option<&str>) -> Resp {
    if who.role != Role::Admin {
        return send_error(&ApiError::forbidden());
    }
    let resume = resume_point(last);
    let plan = Plan {
        channel: format!("{}{}", cfg.prefixes.replay_channel, session_id),
        record_key: None,
        history: resume.map(Some),
    };
    let stream = Stream::new(StreamKind::Replay, None, MAX_OUTBOX);
    start(cfg, plan, resume, stream).await
}

async fn start(cfg: Config, plan: Plan, resume: Option<EntryId>, mut stream: Stream) -> Resp {
    let opened = match open(&cfg, &plan).await {
        Ok(o) => o,
        Err(e) => return send_error(&e),
    };
    stream.retry(cfg.retry_ms);
    stream.resume_after(resume);
    replay(&mut stream, &opened.history, &plan.channel);
    serve(cfg, opened, stream, plan.channel)
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

/// Sends the `200` head and hands the stream to its own task.
fn serve(cfg: Config, opened: Opened, mut stream: Stream, channel: String) -> Resp {
    let started = Instant::now();
    let mut conn = opened.conn;
    for payload in &opened.early {
        deliver(&mut stream, payload, &channel);
    }
    // wasmtime-wasi-http: `mpsc::channel(buffer_chunks + 1)`, 1 chunk.
    let (tx, rx) = mpsc::channel::<Bytes>(2);
    tokio::spawn(async move {
        let close = pump(&cfg, &mut conn, &mut stream, &tx, &channel).await;
        drop(conn);
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
    Response::builder()
        .status(200)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .header("x-accel-buffering", "no")
        .body(GatewayBody::Stream(rx))
        .unwrap_or_else(|_| Response::new(GatewayBody::Full(None)))
}

/// `host::streams::pump` on tokio: Redis, the heartbeat timer and (only
/// with bytes pending) room in the body.
async fn pump(
    cfg: &Config,
    conn: &mut Conn,
    stream: &mut Stream,
    tx: &mpsc::Sender<Bytes>,
    channel: &str,
) -> Close {
    let heartbeat = Duration::from_secs(cfg.heartbeat_seconds);
    let mut idle_deadline = Instant::now() + heartbeat;
    let mut flush_deadline: Option<Instant> = None;
    let mut batch = Vec::new();
    loop {
        if !stream.pending().is_empty() {
            match tx.try_reserve() {
                Ok(permit) => {
                    let n = stream.pending().len();
                    permit.send(Bytes::copy_from_slice(stream.pending()));
                    idle_deadline = Instant::now() + heartbeat;
                    stream.consume(n);
                }
                Err(mpsc::error::TrySendError::Full(())) => {}
                Err(mpsc::error::TrySendError::Closed(())) => stream.close(Close::ClientGone),
            }
        }
        match stream.closed() {
            Some(why @ (Close::ClientGone | Close::SlowClient)) => return why,
            Some(why) if stream.finished() => return why,
            Some(why) => {
                let deadline = *flush_deadline
                    .get_or_insert_with(|| Instant::now() + Duration::from_millis(CLOSE_FLUSH_MS));
                if Instant::now() >= deadline {
                    return why;
                }
            }
            None => {}
        }
        let timer = flush_deadline.unwrap_or(idle_deadline).min(idle_deadline);
        let reading = stream.closed().is_none();
        let writing = !stream.pending().is_empty();
        tokio::select! {
            r = conn.read_available(&mut batch), if reading => match r {
                Ok(()) => {
                    for item in batch.drain(..) {
                        if let Incoming::Message(payload) = item {
                            deliver(stream, &payload, channel);
                        }
                    }
                }
                Err(e) => {
                    log("redis_lost", &[("channel", channel.into()), ("detail", e.into())]);
                    stream.close(Close::RedisLost);
                }
            },
            _ = tokio::time::sleep_until(timer) => {}
            _ = tx.reserve(), if writing => {}
        }
        if Instant::now() >= idle_deadline {
            stream.heartbeat();
            idle_deadline = Instant::now() + heartbeat;
        }
    }
}

async fn health(cfg: &Config) -> Resp {
    let version = "native-baseline";
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
        respond(
            200,
            &[("content-type", "application/json")],
            reply.to_string().into_bytes(),
        )
    } else {
        send_error(&ApiError::service_unavailable(RETRY_AFTER_SECONDS))
    }
}
