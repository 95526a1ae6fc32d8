//! The browser side: many concurrent SSE streams over plain HTTP/1.1 on
//! tokio sockets, each a task that records time to first event and the
//! publish → receive latency of every event carrying `"ts"`.

use crate::stats::now_ns;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;

/// Counters shared by every stream of one set.
#[derive(Default)]
pub struct Shared {
    /// Latency (ns) of each received event that carried `"ts"`.
    pub samples: Mutex<Vec<u64>>,
    /// Events received that carried `"ts"`.
    pub received: AtomicU64,
    /// `now_ns` of the last such event.
    pub last_rx_ns: AtomicU64,
    /// Streams currently open (response 200 seen, not yet ended).
    pub alive: AtomicUsize,
    /// Streams the server ended while `ending` was false (errors).
    pub dropped: AtomicUsize,
    /// Streams that ended after `ending` was set.
    pub ended: AtomicUsize,
    /// Set before the tool ends the streams on purpose.
    pub ending: AtomicBool,
    /// `: ping` comments received.
    pub heartbeats: AtomicU64,
    /// Each stream's own view, in the order given to [`open_streams`].
    pub streams: Vec<StreamView>,
}

/// One stream's events and end, for scenarios that judge streams one by
/// one (bench/src/burst.rs) rather than in sum.
#[derive(Default)]
pub struct StreamView {
    /// Events received that carried `"ts"`.
    pub received: AtomicU64,
    /// `now_ns` of the last such event.
    pub last_rx_ns: AtomicU64,
    /// How the stream ended: [`END_OPEN`], [`END_CLEAN`] or [`END_CUT`].
    pub end: AtomicU8,
    /// The last comment other than `ping` (a server's close reason).
    pub note: Mutex<Option<String>>,
}

/// [`StreamView::end`]: still open.
pub const END_OPEN: u8 = 0;
/// Ended with the body's last chunk (or, without chunks, by the close).
pub const END_CLEAN: u8 = 1;
/// Cut off: the connection closed or failed mid-body.
pub const END_CUT: u8 = 2;

impl StreamView {
    fn update(&self, reader: &SseReader) {
        self.received.store(reader.received, Ordering::Relaxed);
        self.last_rx_ns.store(reader.last_rx_ns, Ordering::Relaxed);
        if reader.note.is_some() {
            *self.note.lock().unwrap_or_else(|p| p.into_inner()) = reader.note.clone();
        }
    }
}

impl Shared {
    /// Takes the latency samples collected so far.
    pub fn take_samples(&self) -> Vec<u64> {
        std::mem::take(&mut *self.samples.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// A set of open streams.
pub struct StreamSet {
    pub shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl StreamSet {
    /// Waits up to `timeout` for every stream to end, then aborts the rest;
    /// returns how many had to be aborted.
    pub async fn finish(self, timeout: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.shared.alive.load(Ordering::Relaxed) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = self.shared.alive.load(Ordering::Relaxed);
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
        left
    }
}

/// How opening a set went.
#[derive(Debug, Default)]
pub struct OpenReport {
    pub opened: usize,
    pub failed: usize,
    /// Failure reasons and counts.
    pub errors: BTreeMap<String, usize>,
    /// Wall time of the whole open phase.
    pub seconds: f64,
    /// Time to first event of each opened stream (ns): from the start of
    /// the TCP connect to the first complete SSE event.
    pub ttfe_ns: Vec<u64>,
    /// Index (in the order given) of each stream that opened: the tool
    /// counts expected deliveries per execution id from these, since a
    /// `PUBLISH` reply counts subscription connections (the p3 build
    /// shares one per instance) and nchan is not behind Redis at all.
    pub opened_idx: Vec<usize>,
}

/// Opens one stream per (path, token), at most `concurrency` in flight.
pub async fn open_streams(
    addr: SocketAddr,
    streams: Vec<(String, String)>,
    concurrency: usize,
    phase_timeout: Duration,
) -> (StreamSet, OpenReport) {
    let n = streams.len();
    let shared = Arc::new(Shared {
        streams: (0..n).map(|_| StreamView::default()).collect(),
        ..Shared::default()
    });
    let sem = Arc::new(Semaphore::new(concurrency.max(1)));
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, Result<u64, String>)>();
    let started = now_ns();
    let mut tasks = Vec::with_capacity(n);
    for (idx, (path, token)) in streams.into_iter().enumerate() {
        let request = request(addr, &path, &token);
        let (sem, tx, shared) = (sem.clone(), tx.clone(), shared.clone());
        tasks.push(tokio::spawn(async move {
            let Ok(permit) = sem.acquire_owned().await else {
                return;
            };
            let t0 = now_ns();
            let opened = tokio::time::timeout(
                Duration::from_secs(30),
                open_one(addr, request.as_bytes(), &shared),
            )
            .await
            .unwrap_or_else(|_| Err("timeout before first event".into()));
            drop(permit);
            match opened {
                Ok((sock, reader)) => {
                    let _ = tx.send((idx, Ok(now_ns() - t0)));
                    read_rest(sock, reader, &shared, idx).await;
                }
                Err(e) => {
                    let _ = tx.send((idx, Err(e)));
                }
            }
        }));
    }
    drop(tx);
    let mut report = OpenReport::default();
    let deadline = tokio::time::Instant::now() + phase_timeout;
    while report.opened + report.failed < n {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some((idx, Ok(ttfe)))) => {
                report.opened += 1;
                report.ttfe_ns.push(ttfe);
                report.opened_idx.push(idx);
            }
            Ok(Some((_, Err(e)))) => {
                report.failed += 1;
                *report.errors.entry(e).or_default() += 1;
            }
            Ok(None) => break,
            Err(_) => {
                let missing = n - report.opened - report.failed;
                report.failed += missing;
                *report
                    .errors
                    .entry("open phase timed out".into())
                    .or_default() += missing;
                break;
            }
        }
    }
    report.seconds = (now_ns() - started) as f64 / 1e9;
    (StreamSet { shared, tasks }, report)
}

/// The GET of one stream at `path`, `token` in the cookie.
fn request(addr: SocketAddr, path: &str, token: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\
         Cache-Control: no-cache\r\nCookie: access_token={token}\r\n\r\n"
    )
}

/// Opens one stream up to its first event and hands back the socket,
/// which the caller holds and never reads: a browser tab that stalled
/// (its receive window fills, then the server's send buffer).
pub async fn open_stalled(addr: SocketAddr, path: &str, token: &str) -> Result<TcpStream, String> {
    let request = request(addr, path, token);
    let unshared = Shared::default();
    let opened = open_one(addr, request.as_bytes(), &unshared);
    match tokio::time::timeout(Duration::from_secs(30), opened).await {
        Ok(Ok((sock, _))) => Ok(sock),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("timeout before first event".into()),
    }
}

async fn open_one(
    addr: SocketAddr,
    request: &[u8],
    shared: &Shared,
) -> Result<(TcpStream, SseReader), String> {
    let mut sock = connect(addr)
        .await
        .map_err(|e| format!("connect: {}", e.kind()))?;
    let _ = sock.set_nodelay(true);
    sock.write_all(request)
        .await
        .map_err(|e| format!("write: {}", e.kind()))?;
    let mut reader = SseReader::default();
    let mut buf = [0u8; 4096];
    while reader.events == 0 {
        let n = sock
            .read(&mut buf)
            .await
            .map_err(|e| format!("read: {}", e.kind()))?;
        if n == 0 {
            return Err(match reader.status {
                0 => "closed before response".to_string(),
                200 => "closed before first event".to_string(),
                s => format!("status {s}"),
            });
        }
        reader.feed(&buf[..n], shared)?;
        if reader.status != 0 && reader.status != 200 {
            return Err(format!("status {}", reader.status));
        }
    }
    shared.alive.fetch_add(1, Ordering::Relaxed);
    Ok((sock, reader))
}

/// Loopback source addresses the client spreads its connections over.
const SOURCES: u8 = 16;

/// A connection to `addr` from one of 127.0.0.2 … 127.0.0.17 in turn
/// (`IP_BIND_ADDRESS_NO_PORT`: the port is picked at connect, per source
/// address). From the one 127.0.0.1 the kernel's search for a free
/// ephemeral port grew with every connection held or in TIME_WAIT to the
/// same server: at 19,000 streams the tool spent 7 s of system time
/// opening them, and the open rate it reported was its own.
async fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    use std::os::fd::AsRawFd;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    if !addr.is_ipv4() {
        return TcpStream::connect(addr).await;
    }
    let socket = tokio::net::TcpSocket::new_v4()?;
    let one: libc::c_int = 1;
    // SAFETY: setsockopt on a socket this function owns, with an int.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let n = NEXT.fetch_add(1, Ordering::Relaxed) % SOURCES as usize;
    socket.bind(SocketAddr::from(([127, 0, 0, 2 + n as u8], 0)))?;
    socket.connect(addr).await
}

async fn read_rest(mut sock: TcpStream, mut reader: SseReader, shared: &Shared, idx: usize) {
    let mut buf = [0u8; 4096];
    let view = &shared.streams[idx];
    // A comment before the first event (nchan's `: hi`) is no close reason.
    reader.note = None;
    view.update(&reader);
    let clean = loop {
        match sock.read(&mut buf).await {
            // A body without chunked framing (nchan's EventSource) ends
            // where the connection does.
            Ok(0) => break reader.done || !reader.chunked,
            Err(_) => break reader.done,
            Ok(n) => {
                let fed = reader.feed(&buf[..n], shared);
                view.update(&reader);
                if fed.is_err() {
                    break false;
                }
                if reader.done {
                    break true;
                }
            }
        }
    };
    view.end
        .store(if clean { END_CLEAN } else { END_CUT }, Ordering::Relaxed);
    shared.alive.fetch_sub(1, Ordering::Relaxed);
    if shared.ending.load(Ordering::Relaxed) && clean {
        shared.ended.fetch_add(1, Ordering::Relaxed);
    } else {
        shared.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// Incremental HTTP/1.1 response head + chunked body + SSE parser, its
/// own rather than the testkit's: it stamps each event's arrival as its
/// blank line is read and keeps no event, so the load client's cost per
/// event (thousands of streams on two cores) stays out of the latency
/// it measures.
#[derive(Default)]
pub struct SseReader {
    head: Vec<u8>,
    head_done: bool,
    /// The body is chunked (the gateway); else it runs to the close.
    pub chunked: bool,
    chunk: Chunk,
    size_line: Vec<u8>,
    line: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
    /// Complete SSE events seen.
    pub events: u64,
    /// Of those, the ones carrying `"ts"`, and `now_ns` of the last.
    pub received: u64,
    pub last_rx_ns: u64,
    /// The last comment other than `ping` (the gateway's close reason for
    /// ends a browser may retry, nchan's `410 Gone`).
    pub note: Option<String>,
    /// Response status, 0 until the head is read.
    pub status: u16,
    /// The body ended cleanly (last chunk).
    pub done: bool,
}

#[derive(Default, Clone, Copy)]
enum Chunk {
    #[default]
    Size,
    Data(usize),
    DataEnd(u8),
    Trailer,
}

impl SseReader {
    /// Feeds bytes read from the socket.
    pub fn feed(&mut self, bytes: &[u8], shared: &Shared) -> Result<(), String> {
        if self.head_done {
            return if self.status == 200 {
                self.body(bytes, shared)
            } else {
                Ok(())
            };
        }
        self.head.extend_from_slice(bytes);
        let Some(end) = self.head.windows(4).position(|w| w == b"\r\n\r\n") else {
            if self.head.len() > 16 * 1024 {
                return Err("response head too large".into());
            }
            return Ok(());
        };
        let head = String::from_utf8_lossy(&self.head[..end]).to_ascii_lowercase();
        self.status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(1);
        self.chunked = head.contains("transfer-encoding: chunked");
        self.head_done = true;
        let rest = std::mem::take(&mut self.head).split_off(end + 4);
        if self.status != 200 {
            return Ok(());
        }
        self.body(&rest, shared)
    }

    fn body(&mut self, mut bytes: &[u8], shared: &Shared) -> Result<(), String> {
        if !self.chunked {
            self.sse(bytes, shared);
            return Ok(());
        }
        while !bytes.is_empty() {
            match self.chunk {
                Chunk::Size => {
                    let nl = bytes.iter().position(|&b| b == b'\n');
                    let take = nl.map_or(bytes.len(), |i| i + 1);
                    self.size_line.extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    if nl.is_some() {
                        let text = String::from_utf8_lossy(&self.size_line);
                        let hex = text.trim().split(';').next().unwrap_or("");
                        let n = usize::from_str_radix(hex, 16)
                            .map_err(|_| format!("bad chunk size {text:?}"))?;
                        self.size_line.clear();
                        self.chunk = if n == 0 {
                            Chunk::Trailer
                        } else {
                            Chunk::Data(n)
                        };
                    }
                }
                Chunk::Data(left) => {
                    let take = left.min(bytes.len());
                    let (now, rest) = bytes.split_at(take);
                    self.sse(now, shared);
                    bytes = rest;
                    self.chunk = if take == left {
                        Chunk::DataEnd(2)
                    } else {
                        Chunk::Data(left - take)
                    };
                }
                Chunk::DataEnd(left) => {
                    bytes = &bytes[1..];
                    self.chunk = if left == 1 {
                        Chunk::Size
                    } else {
                        Chunk::DataEnd(1)
                    };
                }
                Chunk::Trailer => {
                    self.done = true;
                    return Ok(());
                }
            }
        }
        if matches!(self.chunk, Chunk::Trailer) {
            self.done = true;
        }
        Ok(())
    }

    fn sse(&mut self, bytes: &[u8], shared: &Shared) {
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            if b == b'\n' {
                self.line.extend_from_slice(&bytes[start..i]);
                self.line_end(shared);
                start = i + 1;
            }
        }
        self.line.extend_from_slice(&bytes[start..]);
    }

    fn line_end(&mut self, shared: &Shared) {
        let mut line = std::mem::take(&mut self.line);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.is_empty() {
            if self.has_data {
                self.dispatch(shared);
            }
        } else if let Some(rest) = line.strip_prefix(b"data:") {
            if self.has_data {
                self.data.push(b'\n');
            }
            self.data
                .extend_from_slice(rest.strip_prefix(b" ").unwrap_or(rest));
            self.has_data = true;
        } else if let Some(text) = line.strip_prefix(b":") {
            shared.heartbeats.fetch_add(1, Ordering::Relaxed);
            let text = String::from_utf8_lossy(text);
            if text.trim() != "ping" {
                self.note = Some(text.trim().to_string());
            }
        }
        line.clear();
        self.line = line;
    }

    fn dispatch(&mut self, shared: &Shared) {
        self.events += 1;
        if let Some(ts) = find_ts(&self.data) {
            let now = now_ns();
            shared
                .samples
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(now.saturating_sub(ts));
            shared.received.fetch_add(1, Ordering::Relaxed);
            shared.last_rx_ns.fetch_max(now, Ordering::Relaxed);
            self.received += 1;
            self.last_rx_ns = now;
        }
        self.data.clear();
        self.has_data = false;
    }
}

/// The number after `"ts":` in an event's JSON.
fn find_ts(data: &[u8]) -> Option<u64> {
    let at = data.windows(5).position(|w| w == b"\"ts\":")? + 5;
    let digits = &data[at..];
    let end = digits
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_split(wire: &[u8], cut: usize) -> (SseReader, Shared) {
        let shared = Shared::default();
        let mut r = SseReader::default();
        r.feed(&wire[..cut], &shared).unwrap();
        r.feed(&wire[cut..], &shared).unwrap();
        (r, shared)
    }

    #[test]
    fn chunked_sse_split_anywhere() {
        let body = "retry: 3000\n\ndata: {\"event_type\":\"status\"}\n\n: ping\n\n\
                    data: {\"event_type\":\"pod_running\",\"ts\":5}\n\n";
        let mut wire = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                        transfer-encoding: chunked\r\n\r\n"
            .to_vec();
        for part in [&body[..20], &body[20..]] {
            wire.extend_from_slice(format!("{:x}\r\n{part}\r\n", part.len()).as_bytes());
        }
        wire.extend_from_slice(b"0\r\n\r\n");
        for cut in 0..wire.len() {
            let (r, shared) = feed_split(&wire, cut);
            assert_eq!(r.status, 200);
            assert_eq!(r.events, 2, "cut {cut}");
            assert!(r.done, "cut {cut}");
            assert_eq!(shared.received.load(Ordering::Relaxed), 1);
            assert_eq!(shared.heartbeats.load(Ordering::Relaxed), 1);
        }
    }

    #[test]
    fn nchan_eventsource_without_chunks() {
        // nchan: no chunked framing, a `: hi` comment first, `id:` lines.
        let wire = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n\
                     Connection: keep-alive\r\n\r\n: hi\n\nid: 1796182455:0\n\
                     data: {\"event_type\":\"status\"}\n\nid: 1796182455:1\n\
                     data: {\"event_type\":\"pod_running\",\"ts\":5}\n\n:410: 410 Gone\n\n";
        for cut in 0..wire.len() {
            let (r, shared) = feed_split(wire, cut);
            assert_eq!(r.status, 200);
            assert!(!r.chunked);
            assert_eq!(r.events, 2, "cut {cut}");
            assert!(!r.done, "the end is the connection's close");
            assert_eq!(shared.received.load(Ordering::Relaxed), 1);
            assert_eq!(shared.heartbeats.load(Ordering::Relaxed), 2);
            assert_eq!(r.received, 1);
            if cut < wire.len() - 3 {
                assert_eq!(r.note.as_deref(), Some("410: 410 Gone"), "cut {cut}");
            }
        }
    }

    #[test]
    fn error_status_is_reported() {
        let shared = Shared::default();
        let mut r = SseReader::default();
        r.feed(
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}",
            &shared,
        )
        .unwrap();
        assert_eq!(r.status, 404);
        assert_eq!(r.events, 0);
    }

    #[test]
    fn ts_is_found() {
        assert_eq!(find_ts(br#"{"a":1,"ts":123456,"b":2}"#), Some(123456));
        assert_eq!(find_ts(br#"{"ts":9}"#), Some(9));
        assert_eq!(find_ts(br#"{"a":1}"#), None);
    }
}
