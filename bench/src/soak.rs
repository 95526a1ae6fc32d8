//! Soak mode: N streams held for T minutes while events are published at a
//! set rate through the publish script (history + `PUBLISH`, as the API
//! does) and a share of the streams reconnects every second with
//! `Last-Event-ID`. Every stream checks that it sees each event of its
//! execution exactly once and in order across its reconnections; at the
//! end Redis' client count and the per-user slot sets must be back to
//! where they were, and the server's RSS is sampled throughout.

use crate::redis::Redis;
use crate::stats::now_ns;
use sse_gateway::redis::resp::Value;
use sse_gateway_testkit::chunked::ChunkedDecoder;
use sse_gateway_testkit::sse::{SseEvent, SseItem, SseParser};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// The publish script the gateway runs for `POST` (README, "producers").
const PUBLISH_SCRIPT: &str = sse_gateway::rules::history::PUBLISH_SCRIPT;

#[derive(Debug, Clone)]
pub struct SoakOpts {
    pub streams: usize,
    /// Share of the streams that reconnect each second (0.01 = 1 %).
    pub churn: f64,
    /// Events per second over all executions.
    pub rate: f64,
    pub seconds: f64,
    /// Streams per execution.
    pub group: usize,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct SoakReport {
    pub target: String,
    pub streams: usize,
    pub executions: usize,
    pub seconds: f64,
    pub churn_per_s: f64,
    pub rate_per_s: f64,
    pub published: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub reconnects: u64,
    pub failed_opens: u64,
    pub open_errors: Vec<String>,
    /// Redis clients before the streams opened, and after they all closed.
    pub redis_clients_baseline: usize,
    pub redis_clients_end: usize,
    /// Slots held in all `sse:streams:*` sets at the end.
    pub slots_end: u64,
    /// Seconds after the last close until both were back.
    pub settle_seconds: f64,
    /// (seconds since start, server RSS KiB).
    pub rss_kib: Vec<(f64, u64)>,
}

/// One stream's view: the next `n` it expects, and what went wrong.
#[derive(Default)]
struct Tally {
    delivered: AtomicU64,
    lost: AtomicU64,
    duplicated: AtomicU64,
    reconnects: AtomicU64,
    failed_opens: AtomicU64,
    alive: AtomicUsize,
    errors: std::sync::Mutex<Vec<String>>,
}

struct StreamState {
    expected: AtomicU64,
    last_id: std::sync::Mutex<Option<String>>,
    reconnect: Notify,
}

pub async fn run(
    target: &str,
    addr: SocketAddr,
    redis: SocketAddr,
    pid: Option<u32>,
    o: &SoakOpts,
    token: &(dyn Fn(&str) -> String + Sync),
    run_id: u64,
) -> Result<SoakReport, String> {
    let executions = o.streams.div_ceil(o.group.max(1)).max(1);
    let execs: Vec<String> = (0..executions)
        .map(|e| format!("soak-{run_id}-{target}-{e}"))
        .collect();
    let records: Vec<(String, String)> =
        execs.iter().map(|e| (e.clone(), "owner".into())).collect();
    crate::redis::create_records(redis, &records).map_err(|e| format!("records: {e}"))?;
    let mut admin = Redis::connect(redis).map_err(|e| e.to_string())?;
    let baseline = client_count(&mut admin)?;
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let started = now_ns();
    let mut states = Vec::new();
    let mut tasks = Vec::new();
    // Open the streams 100 at a time.
    let sem = Arc::new(tokio::sync::Semaphore::new(100));
    for i in 0..o.streams {
        let exec = execs[i % executions].clone();
        let state = Arc::new(StreamState {
            expected: AtomicU64::new(0),
            last_id: std::sync::Mutex::new(None),
            reconnect: Notify::new(),
        });
        states.push((i % executions, state.clone()));
        // Each stream its own user (slots are per user), admin so it may
        // watch the execution.
        let cookie = token(&format!("soak{i}"));
        let (tally, stop, sem) = (tally.clone(), stop.clone(), sem.clone());
        tasks.push(tokio::spawn(async move {
            stream_task(addr, exec, cookie, state, tally, stop, sem).await
        }));
    }
    // Wait for them to open (or fail).
    let open_deadline = now_ns() + 120_000_000_000;
    let opened = |t: &Tally| {
        t.alive.load(Ordering::Relaxed) + t.failed_opens.load(Ordering::Relaxed) as usize
    };
    while opened(&tally) < o.streams && now_ns() < open_deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let opened_at = now_ns();
    eprintln!(
        "[soak {target}] {} streams open in {:.1}s ({} failed); publishing {} events/s over {executions} executions for {:.0}s, {:.1} % reconnecting each second",
        tally.alive.load(Ordering::Relaxed),
        (opened_at - started) as f64 / 1e9,
        tally.failed_opens.load(Ordering::Relaxed),
        o.rate,
        o.seconds,
        o.churn * 100.0
    );
    // Publisher thread.
    let published: Arc<Vec<AtomicU64>> =
        Arc::new((0..executions).map(|_| AtomicU64::new(0)).collect());
    let pub_stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (execs, published, pub_stop) = (execs.clone(), published.clone(), pub_stop.clone());
        let rate = o.rate;
        std::thread::spawn(move || publish_loop(redis, &execs, rate, &published, &pub_stop))
    };
    // Churn and RSS samples, once a second.
    let mut report = SoakReport {
        target: target.to_string(),
        streams: o.streams,
        executions,
        churn_per_s: o.churn,
        rate_per_s: o.rate,
        ..Default::default()
    };
    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ run_id;
    let per_tick = (o.streams as f64 * o.churn).round() as usize;
    let sample_every = ((o.seconds / 60.0).ceil() as u64).max(1);
    let mut tick = 0u64;
    while (now_ns() - opened_at) as f64 / 1e9 < o.seconds {
        tokio::time::sleep(Duration::from_secs(1)).await;
        tick += 1;
        for _ in 0..per_tick {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            states[(rng % states.len() as u64) as usize]
                .1
                .reconnect
                .notify_one();
        }
        if tick.is_multiple_of(sample_every) {
            if let Some(pid) = pid {
                report.rss_kib.push((
                    (now_ns() - opened_at) as f64 / 1e9,
                    crate::procs::tree_rss_kib(pid),
                ));
            }
        }
    }
    pub_stop.store(true, Ordering::Relaxed);
    publisher
        .join()
        .map_err(|_| "publisher panicked")?
        .map_err(|e| format!("publisher: {e}"))?;
    let finals: Vec<u64> = published
        .iter()
        .map(|p| p.load(Ordering::Relaxed))
        .collect();
    report.published = finals.iter().sum();
    // Let every stream catch up (30 s at most), then close them all.
    let catch_up = now_ns() + 30_000_000_000;
    while now_ns() < catch_up
        && states
            .iter()
            .any(|(e, s)| s.expected.load(Ordering::Relaxed) < finals[*e])
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    report.seconds = (now_ns() - opened_at) as f64 / 1e9;
    stop.store(true, Ordering::Relaxed);
    for (_, s) in &states {
        s.reconnect.notify_one();
    }
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    for (e, s) in &states {
        let got = s.expected.load(Ordering::Relaxed);
        if got < finals[*e] {
            tally.lost.fetch_add(finals[*e] - got, Ordering::Relaxed);
        }
    }
    // Redis back to baseline: the gateway notices a closed browser at its
    // next write (a heartbeat at most), then drops its connection and slot.
    let closed_at = now_ns();
    loop {
        report.redis_clients_end = client_count(&mut admin)?;
        report.slots_end = slots_held(&mut admin)?;
        let done = report.redis_clients_end <= baseline && report.slots_end == 0;
        if done || now_ns() - closed_at > 60_000_000_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    report.settle_seconds = (now_ns() - closed_at) as f64 / 1e9;
    report.redis_clients_baseline = baseline;
    report.delivered = tally.delivered.load(Ordering::Relaxed);
    report.lost = tally.lost.load(Ordering::Relaxed);
    report.duplicated = tally.duplicated.load(Ordering::Relaxed);
    report.reconnects = tally.reconnects.load(Ordering::Relaxed);
    report.failed_opens = tally.failed_opens.load(Ordering::Relaxed);
    report.open_errors = tally.errors.lock().unwrap().clone();
    Ok(report)
}

fn client_count(r: &mut Redis) -> Result<usize, String> {
    let cmd = vec![b"CLIENT".to_vec(), b"LIST".to_vec()];
    match r.pipeline(&[cmd]).map_err(|e| e.to_string())?.pop() {
        Some(Value::Bulk(b)) => Ok(b.split(|c| *c == b'\n').filter(|l| !l.is_empty()).count()),
        other => Err(format!("CLIENT LIST: {other:?}")),
    }
}

fn slots_held(r: &mut Redis) -> Result<u64, String> {
    let script = "local n = 0 for _, k in ipairs(redis.call('KEYS', ARGV[1])) do n = n + redis.call('ZCARD', k) end return n";
    let cmd: Vec<Vec<u8>> = ["EVAL", script, "0", "sse:streams:*"]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
    match r.pipeline(&[cmd]).map_err(|e| e.to_string())?.pop() {
        Some(Value::Int(n)) => Ok(n.max(0) as u64),
        other => Err(format!("slot count: {other:?}")),
    }
}

/// Publishes `rate` events/s round-robin over `execs` through the publish
/// script, in batches every 10 ms; counts what each execution got.
fn publish_loop(
    redis: SocketAddr,
    execs: &[String],
    rate: f64,
    published: &[AtomicU64],
    stop: &AtomicBool,
) -> Result<(), String> {
    let mut r = Redis::connect(redis).map_err(|e| e.to_string())?;
    let start = std::time::Instant::now();
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let due = (start.elapsed().as_secs_f64() * rate) as u64;
        let mut cmds = Vec::new();
        let mut whom = Vec::new();
        while sent < due && cmds.len() < 1000 {
            let e = (sent % execs.len() as u64) as usize;
            let n = published[e].load(Ordering::Relaxed)
                + whom.iter().filter(|w| **w == e).count() as u64;
            let channel = format!("sse:exec:{}", execs[e]);
            let key = format!("history:{{{channel}}}");
            let event = format!(
                r#"{{"event_type":"tick","execution_id":"{}","n":{n}}}"#,
                execs[e]
            );
            cmds.push(
                [
                    "EVAL",
                    PUBLISH_SCRIPT,
                    "1",
                    &key,
                    &channel,
                    &event,
                    "1000",
                    "3600",
                    "PUBLISH",
                ]
                .iter()
                .map(|s| s.as_bytes().to_vec())
                .collect(),
            );
            whom.push(e);
            sent += 1;
        }
        if !cmds.is_empty() {
            for (reply, e) in r
                .pipeline(&cmds)
                .map_err(|e| e.to_string())?
                .into_iter()
                .zip(whom)
            {
                if let Value::Error(err) = reply {
                    return Err(err);
                }
                published[e].fetch_add(1, Ordering::Relaxed);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// One browser: (re)connects with `Last-Event-ID`, checks each event's `n`.
async fn stream_task(
    addr: SocketAddr,
    exec: String,
    token: String,
    state: Arc<StreamState>,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    sem: Arc<tokio::sync::Semaphore>,
) {
    let mut first = true;
    while !stop.load(Ordering::Relaxed) {
        let last = state.last_id.lock().unwrap().clone();
        let mut request = format!(
            "GET /api/v1/events/executions/{exec} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\nCookie: access_token={token}\r\n"
        );
        if let Some(id) = &last {
            request += &format!("Last-Event-ID: {id}\r\n");
        }
        request += "\r\n";
        let permit = sem.clone().acquire_owned().await.ok();
        let sock = match TcpStream::connect(addr).await {
            Ok(mut s) => match s.write_all(request.as_bytes()).await {
                Ok(()) => Some(s),
                Err(_) => None,
            },
            Err(_) => None,
        };
        drop(permit);
        let Some(mut sock) = sock else {
            fail(&tally, "connect".into());
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        if !first {
            tally.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        let mut reader = Reader::default();
        let mut buf = vec![0u8; 16 * 1024];
        let mut counted = false;
        loop {
            tokio::select! {
                _ = state.reconnect.notified() => break,
                r = sock.read(&mut buf) => match r {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if let Err(e) = reader.feed(&buf[..n], &state, &tally) {
                            fail(&tally, e);
                            break;
                        }
                        if reader.status == 200 && !counted {
                            counted = true;
                            if first {
                                tally.alive.fetch_add(1, Ordering::Relaxed);
                                first = false;
                            }
                        }
                    }
                }
            }
        }
        drop(sock);
        if !counted && !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

fn fail(tally: &Tally, e: String) {
    tally.failed_opens.fetch_add(1, Ordering::Relaxed);
    let mut errors = tally.errors.lock().unwrap();
    if errors.len() < 10 {
        errors.push(e);
    }
}

/// HTTP/1.1 head, then the chunked body and its events as the tests read
/// them (the testkit's decoder and parser).
#[derive(Default)]
struct Reader {
    head: Vec<u8>,
    status: u16,
    body: ChunkedDecoder,
    events: SseParser,
}

impl Reader {
    fn feed(&mut self, bytes: &[u8], state: &StreamState, tally: &Tally) -> Result<(), String> {
        let rest;
        let body = if self.status == 0 {
            self.head.extend_from_slice(bytes);
            let Some(end) = self.head.windows(4).position(|w| w == b"\r\n\r\n") else {
                return Ok(());
            };
            let head = String::from_utf8_lossy(&self.head[..end]).to_string();
            self.status = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(1);
            if self.status != 200 {
                return Err(format!("status {}", self.status));
            }
            rest = self.head.split_off(end + 4);
            &rest[..]
        } else {
            bytes
        };
        self.events.feed(&self.body.feed(body)?);
        while let Some(item) = self.events.pop() {
            if let SseItem::Event(event) = item {
                Self::event(event, state, tally);
            }
        }
        Ok(())
    }

    /// Counts one event carrying `"n"` against the next one expected.
    fn event(event: SseEvent, state: &StreamState, tally: &Tally) {
        let Some(id) = event.id else { return };
        let n = serde_json::from_str::<serde_json::Value>(&event.data)
            .ok()
            .and_then(|v| v["n"].as_u64());
        let Some(n) = n else { return };
        tally.delivered.fetch_add(1, Ordering::Relaxed);
        let want = state.expected.load(Ordering::Relaxed);
        if n < want {
            tally.duplicated.fetch_add(1, Ordering::Relaxed);
        } else {
            if n > want {
                tally.lost.fetch_add(n - want, Ordering::Relaxed);
            }
            state.expected.store(n + 1, Ordering::Relaxed);
            *state.last_id.lock().unwrap() = Some(id);
        }
    }
}
