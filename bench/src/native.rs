//! The native baseline: the gateway's own core (the request gate and the
//! stream machine, `sse_gateway::http::gate` and `sse_gateway::machine`) pumped
//! from tokio behind the same HTTP stack `wasmtime serve` uses (hyper 1,
//! HTTP/1.1, chunked body fed by a 2-slot channel like wasmtime-wasi-http's
//! outgoing body), with tokio sockets instead of `wasi:sockets`.
//!
//! It decides nothing and copies nothing: the gate answers or admits each
//! request, and the machine owns each stream from its opening pipeline to
//! its close; this file moves their bytes and keeps their clock, as
//! `src/host/` does for the component. Not served: the dev/demo routes
//! (404) and the `POST` publish routes (501): the benchmark publishes
//! through Redis.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming as HyperIncoming;
use hyper::{Request, Response};
use sse_gateway::config::{Config, VARIABLES};
use sse_gateway::http::answer::{self, Answer, STREAM_HEADERS};
use sse_gateway::http::error::ApiError;
use sse_gateway::http::gate;
use sse_gateway::http::routes::Route;
use sse_gateway::machine::command::Io;
use sse_gateway::machine::own::OwnConnection;
use sse_gateway::machine::{Command, Event, Opening, Topic, READ_CHUNK};
use sse_gateway::redis::target::RedisTarget;
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

    /// The core's answer, as the component sends it.
    fn answer(&self, answer: Answer) -> Resp {
        print(answer.logs.iter().cloned());
        let extra: Vec<(&str, &str)> = answer
            .headers
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        self.send(answer.status, &extra, answer.body)
    }

    fn error(&self, err: &ApiError) -> Resp {
        self.answer(Answer::from(err))
    }

    fn sse(&self, rx: mpsc::Receiver<Bytes>) -> Resp {
        self.builder(200, &STREAM_HEADERS)
            .body(GatewayBody::Stream(rx))
            .unwrap_or_else(|_| Response::new(GatewayBody::Full(None)))
    }
}

/// Prints the core's log lines on stderr, as the component does.
fn print(lines: impl Iterator<Item = String>) {
    for line in lines {
        eprintln!("{line}");
    }
}

/// The machines' clock: monotonic ns since the first reading.
fn now() -> u64 {
    crate::stats::now_ns()
}

/// The tokio instant of machine time `ns`.
fn instant(ns: u64) -> Instant {
    let at_now = Instant::now();
    let now = now();
    if ns >= now {
        at_now + Duration::from_nanos(ns - now)
    } else {
        at_now - Duration::from_nanos((now - ns).min(at_now.elapsed().as_nanos() as u64))
    }
}

fn unix_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `host::handle`: the gate, then the route.
async fn handle(req: Request<HyperIncoming>, env: &Arc<Vec<(String, String)>>) -> Resp {
    let mut out = Responder::default();
    // Per request, as the component does: a copy of the environment, then
    // validation of every variable.
    let env: Vec<(String, String)> = env.as_ref().clone();
    let load = move || Config::from_env(&env);
    let headers: Vec<(&str, &[u8])> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_bytes()))
        .collect();
    let request = gate::Request {
        method: req.method().as_str(),
        path: req.uri().path(),
        headers: &headers,
        unix_now: unix_seconds(),
    };
    let decision = gate::admit(&request, load);
    print(decision.logs.into_iter());
    out.common.extend(decision.headers);
    let (route, cfg, who, last_event_id) = match decision.verdict.into_serve() {
        Ok(serve) => serve,
        Err(answer) => return out.answer(answer),
    };
    let Some(who) = who else {
        return match route {
            Route::Health => out.answer(answer::health()),
            Route::OpenApi => out.answer(answer::openapi()),
            Route::Ready => ready(&cfg, &out).await,
            _ => out.error(&ApiError::not_found()),
        };
    };
    if let Some(topic) = Topic::of(&route) {
        let opening = Opening {
            topic,
            last_event_id: last_event_id.as_deref(),
            member: random_member(),
            instance: None,
            now: now(),
            unix_now: unix_seconds(),
        };
        return serve(OwnConnection::open(&cfg, &who, opening), out).await;
    }
    match route {
        Route::PublishExecution(_) | Route::PublishNotification(_) => out.send(
            501,
            &[("content-type", "application/json")],
            br#"{"detail":"not served by the native baseline","type":"NotImplemented"}"#.to_vec(),
        ),
        _ => out.error(&ApiError::not_found()),
    }
}

/// A stream slot member unique to this stream.
fn random_member() -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now());
    format!("{:016x}", h.finish())
}

/// Connects within `deadline` (machine time).
async fn connect(target: &RedisTarget, deadline: u64) -> Result<TcpStream, String> {
    let addr = format!("{}:{}", target.host, target.port);
    let sock = tokio::time::timeout_at(instant(deadline), TcpStream::connect(&addr))
        .await
        .map_err(|_| format!("connect to {addr} timed out"))?
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    let _ = sock.set_nodelay(true);
    Ok(sock)
}

/// `host::redis::run`: one command to its outcome.
async fn run_command(mut cmd: Command) -> Command {
    let mut sock: Option<TcpStream> = None;
    let mut buf = vec![0; READ_CHUNK];
    loop {
        match cmd.next_io() {
            Io::Done => break,
            Io::Connect(target, by) => {
                sock = None;
                match connect(&target, by).await {
                    Ok(s) => sock = Some(s),
                    Err(e) => cmd.failed(&e),
                }
            }
            Io::Write(bytes) => match sock.as_mut() {
                Some(s) => {
                    if let Err(e) = s.write_all(&bytes).await {
                        cmd.failed(&format!("write to redis: {e}"));
                    }
                }
                None => cmd.failed("no connection"),
            },
            Io::Read(by) => match sock.as_mut() {
                Some(s) => match tokio::time::timeout_at(instant(by), s.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => cmd.receive(&buf[..n]),
                    Ok(Ok(_)) => cmd.failed("read from redis: connection closed"),
                    Ok(Err(e)) => cmd.failed(&format!("read from redis: {e}")),
                    Err(_) => cmd.failed(sse_gateway::redis::failure::SILENT),
                },
                None => cmd.failed("no connection"),
            },
        }
    }
    print(cmd.logs());
    cmd
}

/// `host::publish::ready`: `PING` through the one-shot command machine.
async fn ready(cfg: &Config, out: &Responder) -> Resp {
    let mut ping = run_command(Command::ping(cfg, now())).await;
    out.answer(answer::ready(ping.text()))
}

/// `host::pump`: one machine, its Redis connection and, once started, the
/// body channel.
struct Pump {
    m: OwnConnection,
    sock: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Pump {
    async fn connect_and_transmit(&mut self) {
        while let Some(target) = self.m.poll_connect() {
            self.sock = None;
            let deadline = self.m.connect_deadline(now());
            match connect(&target, deadline).await {
                Ok(s) => self.sock = Some(s),
                Err(e) => self.m.handle_redis_failure(&e, now()),
            }
        }
        let bytes = self.m.poll_transmit();
        if let (false, Some(s)) = (bytes.is_empty(), self.sock.as_mut()) {
            if let Err(e) = s.write_all(&bytes).await {
                self.m
                    .handle_redis_failure(&format!("write to redis: {e}"), now());
            }
        }
    }

    async fn run_commands(&mut self) {
        for cmd in self.m.poll_commands(now()) {
            let cmd = run_command(cmd).await;
            self.m.handle_command(cmd, now());
        }
    }

    /// One turn: I/O the machine queued, then its next event.
    async fn turn(&mut self) -> Option<Event> {
        self.connect_and_transmit().await;
        print(self.m.logs());
        let event = self.m.poll_event();
        if !matches!(event, Some(Event::Refuse(_))) {
            self.run_commands().await;
        }
        event.or_else(|| self.m.poll_event())
    }

    /// Writes what the body channel takes now.
    fn write(&mut self, tx: &mpsc::Sender<Bytes>) {
        if self.m.pending().is_empty() {
            return;
        }
        match tx.try_reserve() {
            Ok(permit) => {
                let n = self.m.pending().len();
                permit.send(Bytes::copy_from_slice(self.m.pending()));
                self.m.handle_body_took(n, now());
            }
            Err(mpsc::error::TrySendError::Full(())) => {}
            Err(mpsc::error::TrySendError::Closed(())) => self.m.handle_body_gone(now()),
        }
    }

    /// Waits for Redis (while the machine reads it), the body (only with
    /// bytes pending) or the next deadline, and feeds what happened.
    async fn wait(&mut self, tx: Option<&mpsc::Sender<Bytes>>) {
        let Some(deadline) = self.m.poll_timeout() else {
            return;
        };
        let reading = self.m.wants_redis();
        let pending = !self.m.pending().is_empty();
        let read = async {
            match self.sock.as_mut() {
                Some(s) if reading => s.read(&mut self.buf).await,
                _ => std::future::pending().await,
            }
        };
        let writable = async {
            match tx {
                Some(tx) if pending => drop(tx.reserve().await),
                _ => std::future::pending().await,
            }
        };
        let got = tokio::select! {
            r = read => Some(r),
            _ = tokio::time::sleep_until(instant(deadline)) => None,
            _ = writable => None,
        };
        match got {
            Some(Ok(n)) if n > 0 => self.m.handle_bytes(&self.buf[..n], now()),
            Some(Ok(_)) => self
                .m
                .handle_redis_failure("read from redis: connection closed", now()),
            Some(Err(e)) => self
                .m
                .handle_redis_failure(&format!("read from redis: {e}"), now()),
            None => {}
        }
        self.m.handle_timeout(now());
    }

    /// After the `200` head: runs the stream to its end in its own task.
    async fn live(mut self, tx: mpsc::Sender<Bytes>) {
        loop {
            if let Some(Event::Finished(_) | Event::Refuse(_)) = self.turn().await {
                break;
            }
            self.write(&tx);
            self.wait(Some(&tx)).await;
        }
        // The machine's last words: the slot given back.
        self.connect_and_transmit().await;
        self.run_commands().await;
        print(self.m.logs());
    }
}

/// Opens the stream; answers the refusal, or the `200` head with the body
/// fed by the stream's own task.
async fn serve(m: OwnConnection, out: Responder) -> Resp {
    let mut pump = Pump {
        m,
        sock: None,
        buf: vec![0; READ_CHUNK],
    };
    loop {
        match pump.turn().await {
            Some(Event::Refuse(e)) => {
                let resp = out.error(&e);
                tokio::spawn(async move {
                    pump.connect_and_transmit().await;
                    pump.run_commands().await;
                    print(pump.m.logs());
                });
                return resp;
            }
            Some(Event::Start) => {
                // wasmtime-wasi-http: `mpsc::channel(buffer_chunks + 1)`, 1 chunk.
                let (tx, rx) = mpsc::channel::<Bytes>(2);
                tokio::spawn(pump.live(tx));
                return out.sse(rx);
            }
            Some(Event::Finished(_)) => return out.error(&Event::unstarted()),
            None => pump.wait(None).await,
        }
    }
}
