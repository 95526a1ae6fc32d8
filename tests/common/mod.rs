//! End-to-end test harness for the sse-gateway component.
//!
//! - [`component_wasm`]: the portable build of the component (built once per
//!   test binary into `target/e2e`, or taken from `SSE_GATEWAY_WASM`).
//! - [`wasmtime_bin`]: the `wasmtime` CLI (`WASMTIME`, the cached build, or PATH).
//! - [`RedisServer`]: a private `redis-server` on a free loopback port that can
//!   be stopped and restarted on the same port.
//! - [`GatewayBuilder`] / [`Gateway`]: `wasmtime serve` running the component,
//!   its log captured to a file and printed when a test fails.
//! - [`jwt`]: hand-built compact JWS tokens (HS256, `alg: none`, anything).
//! - [`HttpResponse`], [`SseStream`], [`get`]: a small streaming HTTP/1.1
//!   client with an incremental chunked decoder and an SSE parser.
//!
//! Everything has timeouts: no helper here can hang a test forever.

#![allow(dead_code)]

pub mod p3;

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// HS256 secret the default gateway is started with.
pub const SECRET: &str = "e2e-test-secret-0123456789abcdef-0123456789abcdef";

/// How long a freshly started gateway may take to accept connections
/// (the first start compiles the component).
pub const GATEWAY_START_TIMEOUT: Duration = Duration::from_secs(60);

pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn e2e_dir() -> PathBuf {
    crate_dir().join("target").join("e2e")
}

fn log_dir() -> PathBuf {
    let dir = e2e_dir().join("logs");
    fs::create_dir_all(&dir).expect("create target/e2e/logs");
    dir
}

/// A process-unique tag: used for log file names.
fn unique_tag() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn tail(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

// ---------------------------------------------------------------------------
// Component and wasmtime
// ---------------------------------------------------------------------------

/// Path of the portable component. `SSE_GATEWAY_WASM` wins; otherwise the
/// crate is built once per test binary into `target/e2e` (a separate target
/// dir, so the build does not wait on the lock of the running `cargo test`).
pub fn component_wasm() -> PathBuf {
    static WASM: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let result = WASM.get_or_init(|| {
        if let Some(path) = std::env::var_os("SSE_GATEWAY_WASM") {
            let path = PathBuf::from(path);
            return if path.is_file() {
                Ok(path)
            } else {
                Err(format!("SSE_GATEWAY_WASM={} is not a file", path.display()))
            };
        }
        build_component()
    });
    match result {
        Ok(path) => path.clone(),
        Err(message) => panic!("{message}"),
    }
}

fn build_component() -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target_dir = e2e_dir();
    let started = Instant::now();
    let output = Command::new(&cargo)
        .current_dir(crate_dir())
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--no-default-features",
            "--features",
            "portable",
        ])
        .env("CARGO_TARGET_DIR", &target_dir)
        .env_remove("CARGO_BUILD_TARGET")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("could not run {:?} to build the component: {e}", cargo))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!(
            "building the component failed ({}):\n  CARGO_TARGET_DIR={} cargo build --release \
             --target wasm32-wasip2 --no-default-features --features portable\n\
             --- cargo stderr (tail) ---\n{}",
            output.status,
            target_dir.display(),
            tail(&stderr, 12_000)
        ));
    }
    let wasm = target_dir
        .join("wasm32-wasip2")
        .join("release")
        .join("sse_gateway.wasm");
    if !wasm.is_file() {
        return Err(format!(
            "cargo build succeeded but {} does not exist",
            wasm.display()
        ));
    }
    eprintln!(
        "[e2e] built {} in {:.1}s",
        wasm.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(wasm)
}

/// The wasmtime CLI: `WASMTIME`, else the cached build, else `wasmtime` on
/// PATH. A missing binary fails the test with a clear message.
pub fn wasmtime_bin() -> PathBuf {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let result = BIN.get_or_init(|| {
        let mut tried = Vec::new();
        if let Some(path) = std::env::var_os("WASMTIME") {
            let path = PathBuf::from(path);
            if path.is_file() {
                return Ok(path);
            }
            return Err(format!("WASMTIME={} is not a file", path.display()));
        }
        tried.push("$WASMTIME (unset)".to_string());
        if let Some(home) = std::env::var_os("HOME") {
            let cached =
                PathBuf::from(home).join(".cache/sse-gateway/wasmtime-48.0.8/bin/wasmtime");
            if cached.is_file() {
                return Ok(cached);
            }
            tried.push(cached.display().to_string());
        }
        if let Some(path) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&path) {
                let candidate = dir.join("wasmtime");
                if candidate.is_file() {
                    return Ok(candidate);
                }
            }
        }
        tried.push("wasmtime on PATH".to_string());
        Err(format!(
            "wasmtime not found (tried: {}). Install it with `cargo install wasmtime-cli --locked \
             --version 48.0.8 --no-default-features --features run,serve,wasi-http,cranelift,\
             component-model,component-model-async,pooling-allocator,parallel-compilation \
             --root ~/.cache/sse-gateway/wasmtime-48.0.8` or set WASMTIME",
            tried.join(", ")
        ))
    });
    match result {
        Ok(path) => path.clone(),
        Err(message) => panic!("{message}"),
    }
}

/// Kill the child when the thread that spawned it dies (a test thread that is
/// killed or a test binary that is interrupted leaves no orphans behind).
fn die_with_parent(cmd: &mut Command) {
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

// ---------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------

/// A loopback port nobody listens on right now, unique within this process.
/// Taken below the Linux ephemeral range so outgoing connections don't race
/// for it.
pub fn free_port() -> u16 {
    const LOW: u32 = 15_000;
    const SPAN: u32 = 17_000;
    static NEXT: OnceLock<AtomicU32> = OnceLock::new();
    let next = NEXT.get_or_init(|| AtomicU32::new((std::process::id() * 211) % SPAN));
    for _ in 0..SPAN {
        let port = (LOW + next.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port found");
}

fn wait_for_port(port: u16, deadline: Instant, child: &mut Child) -> Result<(), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited early with {status}"));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err("timed out waiting for the port to accept connections".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn kill_child(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

// ---------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------

/// A private `redis-server` on 127.0.0.1, killed on Drop.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    log_path: PathBuf,
    /// Set by [`RedisServer::start_persistent`]: a private directory holding
    /// an append-only file, so a restart (even after SIGKILL) keeps the data.
    data_dir: Option<PathBuf>,
}

impl RedisServer {
    /// Start on a free port (retrying on another port if it was taken).
    pub fn start() -> RedisServer {
        let mut last_err = String::new();
        for _ in 0..5 {
            let port = free_port();
            let mut server = RedisServer {
                port,
                child: None,
                log_path: log_dir().join(format!("redis-{port}-{}.log", unique_tag())),
                data_dir: None,
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(e) => last_err = e,
            }
        }
        panic!("could not start redis-server: {last_err}");
    }

    /// Like [`RedisServer::start`], but with an append-only file fsynced on
    /// every write in a private directory: [`RedisServer::stop`] (SIGKILL)
    /// then [`RedisServer::restart`] brings back every key written before.
    pub fn start_persistent() -> RedisServer {
        let mut last_err = String::new();
        for _ in 0..5 {
            let port = free_port();
            let tag = unique_tag();
            let data_dir = e2e_dir().join("redis-data").join(format!("{port}-{tag}"));
            if let Err(e) = fs::create_dir_all(&data_dir) {
                panic!("create {}: {e}", data_dir.display());
            }
            let mut server = RedisServer {
                port,
                child: None,
                log_path: log_dir().join(format!("redis-{port}-{tag}.log")),
                data_dir: Some(data_dir),
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(e) => last_err = e,
            }
        }
        panic!("could not start a persistent redis-server: {last_err}");
    }

    fn spawn(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "redis-server is already running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(|e| format!("open {}: {e}", self.log_path.display()))?;
        let mut cmd = Command::new(redis_server_bin());
        let (appendonly, dir) = match &self.data_dir {
            Some(dir) => ("yes", dir.clone()),
            None => ("no", std::env::temp_dir()),
        };
        cmd.args([
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            appendonly,
            "--appendfsync",
            "always",
            "--daemonize",
            "no",
            "--protected-mode",
            "no",
            "--dir",
        ])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log);
        die_with_parent(&mut cmd);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("spawn redis-server: {e} (is redis-server installed?)"))?;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "redis-server on port {} exited with {status}:\n{}",
                    self.port,
                    tail(
                        &fs::read_to_string(&self.log_path).unwrap_or_default(),
                        4000
                    )
                ));
            }
            if redis_ping(self.port) {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "redis-server on port {} never answered PING",
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kill the server (SIGKILL: connections drop like in a crash).
    pub fn stop(&mut self) {
        kill_child(&mut self.child);
    }

    /// Start it again on the same port (its data is gone: no persistence).
    pub fn restart(&mut self) {
        self.stop();
        let mut last = String::new();
        // The port is normally free at once; allow a short grace period.
        for _ in 0..20 {
            match self.spawn() {
                Ok(()) => return,
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "could not restart redis-server on port {}: {last}",
            self.port
        );
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// A fresh client connection (helpers open one per call: cheap on
    /// loopback and immune to restarts).
    pub fn conn(&self) -> redis::Connection {
        let client = redis::Client::open(format!("{}/", self.url())).expect("redis url");
        let con = client
            .get_connection_with_timeout(Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect to redis on port {}: {e}", self.port));
        con.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        con.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        con
    }

    /// HSET the execution record `exec:{id}`.
    pub fn put_execution(&self, rec: &ExecRecord) {
        let mut con = self.conn();
        let mut cmd = redis::cmd("HSET");
        cmd.arg(format!("exec:{}", rec.id))
            .arg("user_id")
            .arg(&rec.user_id)
            .arg("status")
            .arg(&rec.status)
            .arg("updated_at")
            .arg(&rec.updated_at);
        if let Some(result) = &rec.result {
            cmd.arg("result").arg(result);
        }
        cmd.query::<i64>(&mut con)
            .unwrap_or_else(|e| panic!("HSET exec:{}: {e}", rec.id));
    }

    /// PUBLISH; returns the number of receivers.
    pub fn publish(&self, channel: &str, payload: &str) -> i64 {
        self.publish_on(&mut self.conn(), channel, payload)
    }

    pub fn publish_on(&self, con: &mut redis::Connection, channel: &str, payload: &str) -> i64 {
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query::<i64>(con)
            .unwrap_or_else(|e| panic!("PUBLISH {channel}: {e}"))
    }

    /// `PUBSUB NUMSUB channel`.
    pub fn numsub(&self, channel: &str) -> i64 {
        self.numsub_on(&mut self.conn(), channel)
    }

    pub fn numsub_on(&self, con: &mut redis::Connection, channel: &str) -> i64 {
        let (_name, n): (String, i64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel)
            .query(con)
            .unwrap_or_else(|e| panic!("PUBSUB NUMSUB {channel}: {e}"));
        n
    }

    /// Poll `PUBSUB NUMSUB` until it equals `want`; Err(last seen) on timeout.
    pub fn wait_numsub(&self, channel: &str, want: i64, timeout: Duration) -> Result<(), i64> {
        let mut con = self.conn();
        let deadline = Instant::now() + timeout;
        loop {
            let n = self.numsub_on(&mut con, channel);
            if n == want {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(n);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

/// A plain Redis client subscribed to one channel with the `redis` crate
/// (what an existing PUBLISH consumer does); messages are collected by a
/// background thread. Unsubscribes when dropped.
pub struct RawSubscriber {
    channel: String,
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl RawSubscriber {
    /// The next message payload, or None after `timeout`.
    pub fn next_payload(&self, timeout: Duration) -> Option<Vec<u8>> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// The next message parsed as JSON; panics on timeout or non-JSON.
    pub fn next_json(&self, timeout: Duration) -> serde_json::Value {
        let payload = self.next_payload(timeout).unwrap_or_else(|| {
            panic!(
                "redis subscriber on {}: no message within {timeout:?}",
                self.channel
            )
        });
        serde_json::from_slice(&payload).unwrap_or_else(|e| {
            panic!(
                "redis subscriber on {}: message is not JSON ({e}): {:?}",
                self.channel,
                String::from_utf8_lossy(&payload)
            )
        })
    }
}

impl Drop for RawSubscriber {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl RedisServer {
    /// SUBSCRIBE `channel` with the `redis` crate; returns once Redis has
    /// confirmed the subscription.
    pub fn raw_subscribe(&self, channel: &str) -> RawSubscriber {
        let (tx, rx) = std::sync::mpsc::channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut con = self.conn();
        let ch = channel.to_string();
        let stop2 = stop.clone();
        std::thread::spawn(move || {
            let mut ps = con.as_pubsub();
            if let Err(e) = ps.subscribe(&ch) {
                let _ = ready_tx.send(Err(format!("SUBSCRIBE {ch}: {e}")));
                return;
            }
            let _ = ps.set_read_timeout(Some(Duration::from_millis(100)));
            let _ = ready_tx.send(Ok(()));
            while !stop2.load(Ordering::Relaxed) {
                match ps.get_message() {
                    Ok(msg) => {
                        if tx.send(msg.get_payload_bytes().to_vec()).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.is_timeout() => continue,
                    Err(_) => return,
                }
            }
        });
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("{e}"),
            Err(_) => panic!("SUBSCRIBE {channel}: no confirmation within 10 s"),
        }
        RawSubscriber {
            channel: channel.to_string(),
            rx,
            stop,
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        kill_child(&mut self.child);
        if let Some(dir) = &self.data_dir {
            let _ = fs::remove_dir_all(dir);
        }
        if !std::thread::panicking() {
            let _ = fs::remove_file(&self.log_path);
        }
    }
}

fn redis_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("REDIS_SERVER") {
        return PathBuf::from(p);
    }
    PathBuf::from("redis-server")
}

/// Raw RESP PING; true when the server answers +PONG.
pub fn redis_ping(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    while !got.ends_with(b"\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    got.starts_with(b"+PONG")
}

/// The execution record the API writes to `exec:{id}`.
#[derive(Clone, Debug)]
pub struct ExecRecord {
    pub id: String,
    pub user_id: String,
    pub status: String,
    pub updated_at: String,
    /// Stored result, as the JSON text kept in the hash.
    pub result: Option<String>,
}

impl ExecRecord {
    pub fn new(id: &str, user_id: &str, status: &str) -> ExecRecord {
        ExecRecord {
            id: id.to_string(),
            user_id: user_id.to_string(),
            status: status.to_string(),
            updated_at: "2025-01-15T10:30:00.123456+00:00".to_string(),
            result: None,
        }
    }

    pub fn with_result(mut self, json: &str) -> ExecRecord {
        self.result = Some(json.to_string());
        self
    }
}

/// A fresh UUID-v4-shaped execution id (unique per process and call).
pub fn new_execution_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut x = nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut next = || {
        // splitmix64
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let a = next();
    let b = next();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        (a >> 32) as u32,
        (a >> 16) as u16,
        (a as u16) & 0x0fff,
        (((b >> 48) as u16) & 0x3fff) | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

pub fn exec_channel(id: &str) -> String {
    format!("sse:exec:{id}")
}

pub fn notif_channel(user_id: &str) -> String {
    format!("sse:notif:{user_id}")
}

pub fn replay_channel(session_id: &str) -> String {
    format!("sse:replay:{session_id}")
}

/// The Redis Stream holding a channel's history (default `HISTORY_KEY_PREFIX`).
pub fn history_key(channel: &str) -> String {
    format!("history:{{{channel}}}")
}

/// A history id `<ms>-<seq>` as numbers; None if it is not one.
pub fn parse_history_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(ms) || !digits(seq) {
        return None;
    }
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

// ---------------------------------------------------------------------------
// Gateway (wasmtime serve)
// ---------------------------------------------------------------------------

pub struct GatewayBuilder {
    env: BTreeMap<String, String>,
    extra_args: Vec<String>,
}

impl GatewayBuilder {
    /// REDIS_URL=`redis_url`, JWT_SECRET=[`SECRET`].
    pub fn new(redis_url: &str) -> GatewayBuilder {
        let mut env = BTreeMap::new();
        env.insert("REDIS_URL".to_string(), redis_url.to_string());
        env.insert("JWT_SECRET".to_string(), SECRET.to_string());
        GatewayBuilder {
            env,
            extra_args: Vec::new(),
        }
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.insert(key.to_string(), value.to_string());
        self
    }

    pub fn without_env(mut self, key: &str) -> Self {
        self.env.remove(key);
        self
    }

    /// Extra `wasmtime serve` arguments (e.g. `-O pooling-...`).
    pub fn arg(mut self, arg: &str) -> Self {
        self.extra_args.push(arg.to_string());
        self
    }

    pub fn start(self) -> Gateway {
        let wasmtime = wasmtime_bin();
        let wasm = component_wasm();
        let mut last_err = String::new();
        for _ in 0..4 {
            let port = free_port();
            let log_path = log_dir().join(format!("gateway-{port}-{}.log", unique_tag()));
            match self.spawn(&wasmtime, &wasm, port, &log_path) {
                Ok(child) => {
                    return Gateway {
                        port,
                        child: Some(child),
                        log_path,
                    }
                }
                Err((message, retry)) => {
                    last_err = message;
                    if !retry {
                        break;
                    }
                }
            }
        }
        panic!("could not start the gateway: {last_err}");
    }

    fn spawn(
        &self,
        wasmtime: &Path,
        wasm: &Path,
        port: u16,
        log_path: &Path,
    ) -> Result<Child, (String, bool)> {
        let log = File::create(log_path)
            .map_err(|e| (format!("create {}: {e}", log_path.display()), false))?;
        let mut cmd = Command::new(wasmtime);
        cmd.args(["serve", "-S", "cli", "-S", "inherit-network"]);
        for (k, v) in &self.env {
            cmd.arg("--env").arg(format!("{k}={v}"));
        }
        cmd.args(&self.extra_args);
        cmd.arg("--addr")
            .arg(format!("127.0.0.1:{port}"))
            .arg(wasm)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| (e.to_string(), false))?)
            .stderr(log);
        die_with_parent(&mut cmd);
        let mut child = cmd
            .spawn()
            .map_err(|e| (format!("spawn {}: {e}", wasmtime.display()), false))?;
        let deadline = Instant::now() + GATEWAY_START_TIMEOUT;
        match wait_for_port(port, deadline, &mut child) {
            Ok(()) => Ok(child),
            Err(why) => {
                let _ = child.kill();
                let _ = child.wait();
                let log = fs::read_to_string(log_path).unwrap_or_default();
                let retry = log.contains("in use");
                Err((
                    format!(
                        "`{} serve ... --addr 127.0.0.1:{port} {}` {why}; log:\n{}",
                        wasmtime.display(),
                        wasm.display(),
                        tail(&log, 8000)
                    ),
                    retry,
                ))
            }
        }
    }
}

/// A running `wasmtime serve`; killed on Drop. If the test is failing, its
/// log (wasmtime's and the component's stdout/stderr) is printed.
pub struct Gateway {
    port: u16,
    child: Option<Child>,
    log_path: PathBuf,
}

impl Gateway {
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub fn stop(&mut self) {
        kill_child(&mut self.child);
    }

    /// The `wasmtime serve` process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        kill_child(&mut self.child);
        if std::thread::panicking() {
            eprintln!(
                "----- gateway log ({}) -----\n{}\n----- end of gateway log -----",
                self.log_path.display(),
                tail(&self.log(), 20_000)
            );
        } else {
            // Keep target/e2e/logs for failing tests only.
            let _ = fs::remove_file(&self.log_path);
        }
    }
}

/// A Redis server and a gateway pointed at it.
pub struct TestEnv {
    // Field order = drop order: the gateway goes first.
    pub gw: Gateway,
    pub redis: RedisServer,
}

impl TestEnv {
    pub fn start() -> TestEnv {
        Self::start_with(|b| b)
    }

    pub fn start_with(configure: impl FnOnce(GatewayBuilder) -> GatewayBuilder) -> TestEnv {
        let redis = RedisServer::start();
        let gw = configure(GatewayBuilder::new(&redis.url())).start();
        TestEnv { gw, redis }
    }
}

// ---------------------------------------------------------------------------
// JWT
// ---------------------------------------------------------------------------

pub mod jwt {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use hmac::{Hmac, Mac};
    use serde_json::{json, Value};
    use sha2::Sha256;
    use std::time::{SystemTime, UNIX_EPOCH};

    pub fn now() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    pub fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    pub fn hs256_sig(secret: &str, signing_input: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(signing_input.as_bytes());
        b64(&mac.finalize().into_bytes())
    }

    /// Compact JWS from raw header and claims JSON, signed HS256 with
    /// `secret` whatever the header says (None: empty signature).
    pub fn compact(header: &Value, claims: &Value, secret: Option<&str>) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = secret.map(|s| hs256_sig(s, &input)).unwrap_or_default();
        format!("{input}.{sig}")
    }

    /// Standard claims: sub, role, iat = now, exp = now + 1 h.
    pub fn claims(sub: &str, role: &str) -> Value {
        let now = now();
        json!({"sub": sub, "role": role, "iat": now, "exp": now + 3600})
    }

    pub fn hs256(secret: &str, claims: &Value) -> String {
        compact(&json!({"alg": "HS256", "typ": "JWT"}), claims, Some(secret))
    }

    /// A valid token for the default gateway secret.
    pub fn token(sub: &str, role: &str) -> String {
        hs256(super::SECRET, &claims(sub, role))
    }
}

// ---------------------------------------------------------------------------
// HTTP/1.1 client
// ---------------------------------------------------------------------------

/// How a response body ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndKind {
    /// Terminal chunk, full content-length, or EOF of a close-delimited body.
    Clean,
    /// Reset, EOF inside a chunked/length body, or a framing error.
    Abrupt(String),
}

#[derive(Debug)]
pub enum BodyRead {
    Data(Vec<u8>),
    End(EndKind),
    Timeout,
}

/// Incremental `transfer-encoding: chunked` decoder.
#[derive(Debug, Default)]
pub struct ChunkedDecoder {
    buf: Vec<u8>,
    state: ChunkState,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Feed raw bytes; returns the decoded payload available so far.
    pub fn feed(&mut self, input: &[u8]) -> Result<Vec<u8>, String> {
        self.buf.extend_from_slice(input);
        let mut out = Vec::new();
        let mut pos = 0;
        loop {
            match self.state {
                ChunkState::Done => {
                    // Bytes after the terminal chunk belong to the next
                    // response on the connection: keep them aside.
                    break;
                }
                ChunkState::Size => {
                    let Some(nl) = find_crlf(&self.buf[pos..]) else {
                        break;
                    };
                    let line = String::from_utf8_lossy(&self.buf[pos..pos + nl]).to_string();
                    pos += nl + 2;
                    let hex = line.split(';').next().unwrap_or("").trim();
                    let size = u64::from_str_radix(hex, 16)
                        .map_err(|_| format!("bad chunk size line {line:?}"))?;
                    self.state = if size == 0 {
                        ChunkState::Trailers
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(left) => {
                    let avail = (self.buf.len() - pos) as u64;
                    if avail == 0 {
                        break;
                    }
                    let take = avail.min(left) as usize;
                    out.extend_from_slice(&self.buf[pos..pos + take]);
                    pos += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left)
                    };
                }
                ChunkState::DataEnd => {
                    if self.buf.len() - pos < 2 {
                        break;
                    }
                    if &self.buf[pos..pos + 2] != b"\r\n" {
                        return Err("chunk data not followed by CRLF".into());
                    }
                    pos += 2;
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers => {
                    let Some(nl) = find_crlf(&self.buf[pos..]) else {
                        break;
                    };
                    let empty = nl == 0;
                    pos += nl + 2;
                    if empty {
                        self.state = ChunkState::Done;
                    }
                }
            }
        }
        self.buf.drain(..pos);
        Ok(out)
    }
}

fn find_crlf(bytes: &[u8]) -> Option<usize> {
    bytes.windows(2).position(|w| w == b"\r\n")
}

enum BodyMode {
    Chunked(ChunkedDecoder),
    Length(u64),
    UntilClose,
}

/// A response whose head has been read; the body is read incrementally.
pub struct HttpResponse {
    pub status: u16,
    pub reason: String,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    stream: TcpStream,
    raw: Vec<u8>,
    mode: BodyMode,
    end: Option<EndKind>,
}

impl fmt::Debug for HttpResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpResponse")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .finish()
    }
}

/// Send `GET path` with extra headers and read the response head.
pub fn send_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> io::Result<HttpResponse> {
    send_request(addr, "GET", path, headers, None, timeout)
}

/// Send `method path` with extra headers and, when `body` is Some, that body
/// with a `content-length`; read the response head. A server that answers
/// before reading the whole body (e.g. 413) may close its side while we are
/// still writing: the write error is then ignored and the answer read anyway.
pub fn send_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> io::Result<HttpResponse> {
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_nodelay(true)?;
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: sse-gateway-e2e\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(body) = body {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(req.as_bytes())?;
    let write_err = match body {
        Some(body) => stream.write_all(body).err(),
        None => None,
    };
    HttpResponse::read_head(stream, deadline).map_err(|e| match write_err {
        Some(w) => io::Error::new(
            e.kind(),
            format!("{e} (and writing the request body failed: {w})"),
        ),
        None => e,
    })
}

/// Write `raw`, a complete request byte for byte (e.g. with header values
/// that are not UTF-8), on an already connected `stream` and read the
/// response head.
pub fn send_raw_on(
    mut stream: TcpStream,
    raw: &[u8],
    timeout: Duration,
) -> io::Result<HttpResponse> {
    let deadline = Instant::now() + timeout;
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(raw)?;
    HttpResponse::read_head(stream, deadline)
}

/// Connect to `addr` and [`send_raw_on`].
pub fn send_raw(addr: SocketAddr, raw: &[u8], timeout: Duration) -> io::Result<HttpResponse> {
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    send_raw_on(stream, raw, timeout)
}

/// Read from `stream` with the time left until `deadline`.
/// Ok(Some(n)): n bytes (0 = EOF); Ok(None): timed out.
fn read_until_deadline(
    stream: &mut TcpStream,
    buf: &mut [u8],
    deadline: Instant,
) -> io::Result<Option<usize>> {
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        let left = (deadline - now).max(Duration::from_millis(1));
        stream.set_read_timeout(Some(left))?;
        match stream.read(buf) {
            Ok(n) => return Ok(Some(n)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

impl HttpResponse {
    fn read_head(mut stream: TcpStream, deadline: Instant) -> io::Result<HttpResponse> {
        let mut raw = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        let head_end = loop {
            if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            match read_until_deadline(&mut stream, &mut buf, deadline)? {
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "no complete response head in time (got {:?})",
                            String::from_utf8_lossy(&raw)
                        ),
                    ))
                }
                Some(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "connection closed before the response head (got {:?})",
                            String::from_utf8_lossy(&raw)
                        ),
                    ))
                }
                Some(n) => raw.extend_from_slice(&buf[..n]),
            }
        };
        let head = String::from_utf8_lossy(&raw[..head_end]).to_string();
        raw.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        if !version.starts_with("HTTP/1.") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line {status_line:?}"),
            ));
        }
        let status: u16 = parts.next().unwrap_or_default().parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line {status_line:?}"),
            )
        })?;
        let reason = parts.next().unwrap_or_default().to_string();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
            })
            .collect();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let mode = if header("transfer-encoding")
            .map(|v| v.to_ascii_lowercase().contains("chunked"))
            .unwrap_or(false)
        {
            BodyMode::Chunked(ChunkedDecoder::new())
        } else if let Some(len) = header("content-length") {
            BodyMode::Length(len.parse().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad content-length {len:?}"),
                )
            })?)
        } else if status == 204 || status == 304 {
            BodyMode::Length(0)
        } else {
            BodyMode::UntilClose
        };
        Ok(HttpResponse {
            status,
            reason,
            headers,
            stream,
            raw,
            mode,
            end: None,
        })
    }

    /// First value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn is_chunked(&self) -> bool {
        matches!(self.mode, BodyMode::Chunked(_))
    }

    /// The next piece of body, the end of the body, or a timeout.
    pub fn read_body(&mut self, timeout: Duration) -> BodyRead {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 16 * 1024];
        loop {
            if let Some(end) = &self.end {
                return BodyRead::End(end.clone());
            }
            // Decode what we already have.
            if !self.raw.is_empty() || matches!(self.mode, BodyMode::Length(0)) {
                let raw = std::mem::take(&mut self.raw);
                let data = match &mut self.mode {
                    BodyMode::Chunked(dec) => match dec.feed(&raw) {
                        Ok(data) => {
                            if dec.is_done() {
                                self.end = Some(EndKind::Clean);
                            }
                            data
                        }
                        Err(e) => {
                            self.end = Some(EndKind::Abrupt(format!("chunked framing: {e}")));
                            Vec::new()
                        }
                    },
                    BodyMode::Length(left) => {
                        let take = (*left as usize).min(raw.len());
                        *left -= take as u64;
                        if *left == 0 {
                            self.end = Some(EndKind::Clean);
                        }
                        raw[..take].to_vec()
                    }
                    BodyMode::UntilClose => raw,
                };
                if !data.is_empty() {
                    return BodyRead::Data(data);
                }
                if self.end.is_some() {
                    continue;
                }
            }
            match read_until_deadline(&mut self.stream, &mut buf, deadline) {
                Ok(None) => return BodyRead::Timeout,
                Ok(Some(0)) => {
                    self.end = Some(match self.mode {
                        BodyMode::UntilClose => EndKind::Clean,
                        BodyMode::Chunked(_) => {
                            EndKind::Abrupt("EOF before the terminal chunk".into())
                        }
                        BodyMode::Length(left) => {
                            EndKind::Abrupt(format!("EOF with {left} body bytes missing"))
                        }
                    });
                }
                Ok(Some(n)) => self.raw.extend_from_slice(&buf[..n]),
                Err(e) => self.end = Some(EndKind::Abrupt(format!("read error: {e}"))),
            }
        }
    }

    /// Read the whole body (at most `timeout`). Returns the bytes and how it
    /// ended (None: still open when the time ran out).
    pub fn read_to_end(&mut self, timeout: Duration) -> (Vec<u8>, Option<EndKind>) {
        let deadline = Instant::now() + timeout;
        let mut body = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_body(left) {
                BodyRead::Data(d) => body.extend_from_slice(&d),
                BodyRead::End(end) => return (body, Some(end)),
                BodyRead::Timeout => return (body, None),
            }
        }
    }

    /// Read the rest of the body (at most `timeout`) into a [`Response`].
    pub fn into_response(mut self, timeout: Duration) -> Response {
        let (body, end) = self.read_to_end(timeout);
        Response {
            status: self.status,
            headers: self.headers.clone(),
            body,
            end,
        }
    }

    /// Close the connection both ways (what a browser tab closing does).
    pub fn disconnect(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// A complete (non-streaming) response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// None when the body was still open after the read timeout.
    pub end: Option<EndKind>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): status {} headers {:?} body {:?}",
                self.status,
                self.headers,
                self.text()
            )
        })
    }
}

/// A plain GET: status, headers, body. An event stream is read for at most
/// one second (so a wrong 200 stream does not stall the test).
pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    request(addr, "GET", path, headers, None)
}

/// Any method, optional body (sent with `content-length`); the complete
/// response. An event stream is read for at most one second.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Response {
    let mut resp = send_request(addr, method, path, headers, body, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let streaming = resp
        .header("content-type")
        .map(|v| v.starts_with("text/event-stream"))
        .unwrap_or(false);
    let timeout = if streaming {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(15)
    };
    let (body, end) = resp.read_to_end(timeout);
    Response {
        status: resp.status,
        headers: resp.headers.clone(),
        body,
        end,
    }
}

/// `POST path` with a JSON (or any text) body, optionally with a Bearer token.
pub fn post_json(addr: SocketAddr, path: &str, token: Option<&str>, body: &str) -> Response {
    let auth = token.map(bearer);
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    request(addr, "POST", path, &headers, Some(body.as_bytes()))
}

/// An error answer of the wire contract: `status`, `content-type:
/// application/json`, a `type` equal to `error_type` and a non-empty string
/// `detail`. Returns the body.
pub fn expect_json_error(resp: &Response, status: u16, error_type: &str) -> serde_json::Value {
    let v = expect_json_error_shape(resp, status);
    assert_eq!(
        v["type"], error_type,
        "expected error type {error_type}; body {v}"
    );
    v
}

/// Like [`expect_json_error`] for answers whose `type` name is not fixed:
/// any non-empty string `type` is accepted.
pub fn expect_json_error_shape(resp: &Response, status: u16) -> serde_json::Value {
    assert_eq!(
        resp.status,
        status,
        "expected status {status}, got {} with headers {:?} and body {:?}",
        resp.status,
        resp.headers,
        resp.text()
    );
    let ct = resp.header("content-type").unwrap_or_default();
    assert!(
        ct.starts_with("application/json"),
        "error content-type must be application/json, got {ct:?} (status {}, body {:?})",
        resp.status,
        resp.text()
    );
    let v = resp.json();
    assert!(
        v["type"].as_str().is_some_and(|t| !t.is_empty()),
        "error body must have a non-empty string type: {v}"
    );
    assert!(
        v["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "error body must have a non-empty string detail: {v}"
    );
    v
}

/// A token that may publish (role `service`).
pub fn service_token() -> String {
    jwt::token("producer-1", "service")
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A successful publish: 202, JSON body with a history id `<ms>-<seq>`
/// close to now. Returns the id.
pub fn expect_accepted(resp: &Response, what: &str) -> String {
    assert_eq!(
        resp.status,
        202,
        "{what}: expected 202, got {} with headers {:?} and body {:?}",
        resp.status,
        resp.headers,
        resp.text()
    );
    let ct = resp.header("content-type").unwrap_or_default();
    assert!(
        ct.starts_with("application/json"),
        "{what}: 202 content-type must be application/json, got {ct:?}"
    );
    let v = resp.json();
    let id = v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: 202 body must have a string `id`: {v}"))
        .to_string();
    let (ms, _seq) = parse_history_id(&id)
        .unwrap_or_else(|| panic!("{what}: id {id:?} is not of the form <ms>-<seq>"));
    let now = now_ms();
    assert!(
        ms.abs_diff(now) < 60_000,
        "{what}: id {id:?} should carry the current time in ms (now {now})"
    );
    id
}

pub fn publish_exec(env: &TestEnv, id: &str, body: &serde_json::Value) -> String {
    let resp = post_json(
        env.gw.addr(),
        &exec_path(id),
        Some(&service_token()),
        &body.to_string(),
    );
    expect_accepted(&resp, &format!("POST {}", exec_path(id)))
}

pub fn publish_notif(env: &TestEnv, user: &str, body: &serde_json::Value) -> String {
    let resp = post_json(
        env.gw.addr(),
        &notif_path(user),
        Some(&service_token()),
        &body.to_string(),
    );
    expect_accepted(&resp, &format!("POST {}", notif_path(user)))
}

// ---------------------------------------------------------------------------
// SSE
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// `event:` field (None: a default "message" event).
    pub event: Option<String>,
    /// `data:` lines joined with "\n".
    pub data: String,
    /// How many `data:` lines the event had.
    pub data_lines: usize,
    /// `id:` field of this event, if it had one.
    pub id: Option<String>,
    /// `retry:` field of this event, if it had one.
    pub retry: Option<u64>,
}

impl SseEvent {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {:?}", self.data))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SseItem {
    Event(SseEvent),
    /// A comment line (`: ping` gives "ping"; one leading space stripped).
    Comment(String),
}

/// Incremental SSE parser per the WHATWG event-stream rules (lines end with
/// CRLF, LF or CR; blank line dispatches; events without data are not
/// dispatched), but comments are reported too.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    after_cr: bool,
    event: Option<String>,
    data: Vec<String>,
    id: Option<String>,
    retry: Option<u64>,
    items: VecDeque<SseItem>,
    /// Last `id:` seen on the stream.
    pub last_event_id: Option<String>,
    /// Last `retry:` seen on the stream.
    pub last_retry: Option<u64>,
    /// How many valid `retry:` fields the stream has carried so far.
    pub retry_lines: usize,
    /// The first non-empty line of the stream, verbatim (e.g. `retry: 3000`).
    pub first_nonempty_line: Option<String>,
    first_line: bool,
}

impl SseParser {
    pub fn new() -> Self {
        SseParser {
            first_line: true,
            ..Default::default()
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\r' => {
                    self.after_cr = true;
                    self.line_done();
                }
                b'\n' => self.line_done(),
                _ => self.line.push(b),
            }
        }
    }

    pub fn pop(&mut self) -> Option<SseItem> {
        self.items.pop_front()
    }

    fn line_done(&mut self) {
        let mut bytes = std::mem::take(&mut self.line);
        if self.first_line {
            self.first_line = false;
            if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
                bytes.drain(..3);
            }
        }
        let line = String::from_utf8_lossy(&bytes).to_string();
        if self.first_nonempty_line.is_none() && !line.is_empty() {
            self.first_nonempty_line = Some(line.clone());
        }
        if line.is_empty() {
            self.dispatch();
            return;
        }
        if let Some(comment) = line.strip_prefix(':') {
            let comment = comment.strip_prefix(' ').unwrap_or(comment);
            self.items.push_back(SseItem::Comment(comment.to_string()));
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f.to_string(), v.strip_prefix(' ').unwrap_or(v).to_string()),
            None => (line.clone(), String::new()),
        };
        match field.as_str() {
            "event" => self.event = Some(value),
            "data" => self.data.push(value),
            "id" if !value.contains('\0') => {
                self.id = Some(value.clone());
                self.last_event_id = Some(value);
            }
            "retry" if !value.is_empty() && value.bytes().all(|c| c.is_ascii_digit()) => {
                if let Ok(ms) = value.parse() {
                    self.retry = Some(ms);
                    self.last_retry = Some(ms);
                    self.retry_lines += 1;
                }
            }
            _ => {}
        }
    }

    fn dispatch(&mut self) {
        let event = self.event.take();
        let id = self.id.take();
        let retry = self.retry.take();
        let data = std::mem::take(&mut self.data);
        if data.is_empty() {
            return;
        }
        self.items.push_back(SseItem::Event(SseEvent {
            event,
            data_lines: data.len(),
            data: data.join("\n"),
            id,
            retry,
        }));
    }
}

#[derive(Debug)]
pub enum Next {
    Item(SseItem),
    End(EndKind),
    Timeout,
}

/// An open event stream.
pub struct SseStream {
    pub resp: HttpResponse,
    parser: SseParser,
    /// Everything received so far, for failure messages.
    pub transcript: Vec<String>,
    label: String,
}

impl SseStream {
    pub fn new(resp: HttpResponse, label: &str) -> SseStream {
        SseStream {
            resp,
            parser: SseParser::new(),
            transcript: Vec::new(),
            label: label.to_string(),
        }
    }

    pub fn parser(&self) -> &SseParser {
        &self.parser
    }

    fn context(&self) -> String {
        format!(
            "[{}] received so far:\n  {}",
            self.label,
            self.transcript.join("\n  ")
        )
    }

    /// The next event or comment, the end of the body, or a timeout.
    pub fn next(&mut self, timeout: Duration) -> Next {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(item) = self.parser.pop() {
                self.transcript.push(format!("{item:?}"));
                return Next::Item(item);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.resp.read_body(left) {
                BodyRead::Data(d) => self.parser.feed(&d),
                BodyRead::End(end) => {
                    self.transcript.push(format!("<end: {end:?}>"));
                    return Next::End(end);
                }
                BodyRead::Timeout => return Next::Timeout,
            }
        }
    }

    /// The next event, skipping comments; panics on end or timeout.
    pub fn next_event(&mut self, timeout: Duration) -> SseEvent {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Next::Item(SseItem::Event(e)) => return e,
                Next::Item(SseItem::Comment(_)) => continue,
                Next::End(end) => panic!(
                    "expected an event but the stream ended ({end:?}); {}",
                    self.context()
                ),
                Next::Timeout => panic!(
                    "expected an event within {timeout:?} but none came; {}",
                    self.context()
                ),
            }
        }
    }

    /// The next event's data parsed as JSON.
    pub fn next_json(&mut self, timeout: Duration) -> serde_json::Value {
        let ev = self.next_event(timeout);
        serde_json::from_str(&ev.data).unwrap_or_else(|e| {
            panic!(
                "event data is not JSON ({e}): {:?}; {}",
                ev.data,
                self.context()
            )
        })
    }

    /// Expect the body to end cleanly within `timeout`, with no further
    /// events (comments are allowed). Returns the comments seen.
    pub fn expect_end(&mut self, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut comments = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Next::Item(SseItem::Comment(c)) => comments.push(c),
                Next::Item(SseItem::Event(e)) => panic!(
                    "expected the stream to end, got another event {e:?}; {}",
                    self.context()
                ),
                Next::End(EndKind::Clean) => return comments,
                Next::End(end) => panic!(
                    "the stream ended, but not cleanly: {end:?}; {}",
                    self.context()
                ),
                Next::Timeout => panic!(
                    "expected the stream to end within {timeout:?}, it is still open; {}",
                    self.context()
                ),
            }
        }
    }

    /// Expect the stream to stay open and silent (comments allowed) for `dur`.
    pub fn assert_open_for(&mut self, dur: Duration) -> Vec<String> {
        let deadline = Instant::now() + dur;
        let mut comments = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return comments;
            }
            match self.next(left) {
                Next::Item(SseItem::Comment(c)) => comments.push(c),
                Next::Item(SseItem::Event(e)) => panic!(
                    "expected no event while the stream stays open, got {e:?}; {}",
                    self.context()
                ),
                Next::End(end) => panic!(
                    "expected the stream to stay open, it ended ({end:?}); {}",
                    self.context()
                ),
                Next::Timeout => return comments,
            }
        }
    }

    /// Close the connection like a browser tab going away.
    pub fn disconnect(self) {
        self.resp.disconnect();
    }
}

/// Headers of a browser EventSource request with a Bearer token.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Open `GET path` as an event stream; panics (with the body) unless 200.
pub fn open_stream(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> SseStream {
    let mut all: Vec<(&str, &str)> = vec![
        ("Accept", "text/event-stream"),
        ("Cache-Control", "no-cache"),
    ];
    all.extend_from_slice(headers);
    let mut resp = send_get(addr, path, &all, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    if resp.status != 200 {
        let (body, _) = resp.read_to_end(Duration::from_secs(5));
        panic!(
            "GET {path}: expected 200, got {} {:?}; headers {:?}; body {:?}",
            resp.status,
            resp.reason,
            resp.headers,
            String::from_utf8_lossy(&body)
        );
    }
    SseStream::new(resp, path)
}

pub fn exec_path(id: &str) -> String {
    format!("/api/v1/events/executions/{id}")
}

/// `GET`: the caller's notification stream.
pub const NOTIF_STREAM_PATH: &str = "/api/v1/events/notifications/stream";

/// `POST`: publish a notification to `user_id`.
pub fn notif_path(user_id: &str) -> String {
    format!("/api/v1/events/notifications/{user_id}")
}

/// `GET`: a replay session's status stream (admins).
pub fn replay_status_path(session_id: &str) -> String {
    format!("/api/v1/events/replay/{session_id}/status")
}

pub const HEALTH_PATH: &str = "/api/v1/events/health";

// ---------------------------------------------------------------------------
// Harness self-tests (no gateway needed)
// ---------------------------------------------------------------------------

#[cfg(test)]
mod harness_tests {
    use super::*;
    use std::thread;

    fn items(p: &mut SseParser) -> Vec<SseItem> {
        std::iter::from_fn(|| p.pop()).collect()
    }

    fn ev(data: &str, lines: usize) -> SseItem {
        SseItem::Event(SseEvent {
            event: None,
            data: data.into(),
            data_lines: lines,
            id: None,
            retry: None,
        })
    }

    #[test]
    fn sse_parser_fields_comments_and_multiline() {
        let mut p = SseParser::new();
        p.feed(b": ping\n\ndata: {\"a\":1}\n\nevent: notification\nid: 7\nretry: 3000\ndata: x\ndata:y\ndata:\n\n");
        p.feed(b"data:  two spaces\n\nretry: 500\n\n:no space\n");
        let got = items(&mut p);
        assert_eq!(
            got,
            vec![
                SseItem::Comment("ping".into()),
                ev("{\"a\":1}", 1),
                SseItem::Event(SseEvent {
                    event: Some("notification".into()),
                    data: "x\ny\n".into(),
                    data_lines: 3,
                    id: Some("7".into()),
                    retry: Some(3000),
                }),
                ev(" two spaces", 1),
                SseItem::Comment("no space".into()),
            ]
        );
        assert_eq!(p.last_retry, Some(500));
        assert_eq!(p.last_event_id.as_deref(), Some("7"));
    }

    #[test]
    fn sse_parser_counts_retry_lines() {
        let mut p = SseParser::new();
        p.feed(b"retry: 3000\n\ndata: x\n\nretry: nope\n\n: bye\nretry: 1500\n\n");
        assert_eq!(p.retry_lines, 2);
        assert_eq!(p.last_retry, Some(1500));
    }

    #[test]
    fn sse_parser_remembers_the_first_line_and_history_ids_parse() {
        let mut p = SseParser::new();
        p.feed(b"\n\nretry: 3000\n\ndata: x\n\n");
        assert_eq!(p.first_nonempty_line.as_deref(), Some("retry: 3000"));
        assert_eq!(
            parse_history_id("1732712345678-0"),
            Some((1732712345678, 0))
        );
        assert_eq!(parse_history_id("5-12"), Some((5, 12)));
        for bad in ["", "123", "1-2-3", "-1", "1-", "a-1", "1-b", " 1-2"] {
            assert_eq!(parse_history_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn request_sends_method_headers_and_body() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            while !req.ends_with(b"{\"a\":1}") {
                let n = s.read(&mut buf).unwrap();
                assert!(
                    n > 0,
                    "EOF before the body: {:?}",
                    String::from_utf8_lossy(&req)
                );
                req.extend_from_slice(&buf[..n]);
            }
            s.write_all(b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: 8\r\n\r\n{\"id\":1}")
                .unwrap();
            String::from_utf8(req).unwrap()
        });
        let r = post_json(addr, "/p", Some("tok"), "{\"a\":1}");
        assert_eq!(r.status, 202);
        assert_eq!(r.json()["id"], 1);
        let req = server.join().unwrap();
        assert!(req.starts_with("POST /p HTTP/1.1\r\n"), "{req}");
        assert!(req.contains("Authorization: Bearer tok\r\n"), "{req}");
        assert!(req.contains("Content-Length: 7\r\n"), "{req}");
    }

    #[test]
    fn sse_parser_handles_split_input_and_all_line_endings() {
        let text = b"data: a\r\ndata: b\r\n\r\ndata: c\rdata: d\r\rdata: e\n\n";
        // Feed one byte at a time: CRLF split across reads must not make an
        // extra blank line.
        let mut p = SseParser::new();
        for b in text.iter() {
            p.feed(std::slice::from_ref(b));
        }
        assert_eq!(
            items(&mut p),
            vec![ev("a\nb", 2), ev("c\nd", 2), ev("e", 1)]
        );
        // And an incomplete event is not dispatched.
        let mut p = SseParser::new();
        p.feed(b"data: never finished\n");
        assert!(p.pop().is_none());
    }

    #[test]
    fn chunked_decoder_incremental() {
        let body = b"7\r\ndata: x\r\n3;ext=1\r\n\n\n\n\r\n0\r\nTrailer: v\r\n\r\nNEXT";
        let mut whole = ChunkedDecoder::new();
        assert_eq!(whole.feed(body).unwrap(), b"data: x\n\n\n");
        assert!(whole.is_done());
        for split in 1..body.len() {
            let mut d = ChunkedDecoder::new();
            let mut out = d.feed(&body[..split]).unwrap();
            out.extend(d.feed(&body[split..]).unwrap());
            assert_eq!(out, b"data: x\n\n\n", "split at {split}");
            assert!(d.is_done(), "split at {split}");
        }
        let mut d = ChunkedDecoder::new();
        assert!(d.feed(b"zz\r\n").is_err());
        let mut d = ChunkedDecoder::new();
        assert!(d.feed(b"2\r\nabXY").is_err());
    }

    /// Serve canned bytes on a local socket, with pauses between pieces.
    fn canned_server(pieces: Vec<(Vec<u8>, u64)>, close: bool) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let mut req = Vec::new();
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    return;
                }
                req.extend_from_slice(&buf[..n]);
            }
            for (bytes, pause_ms) in pieces {
                thread::sleep(Duration::from_millis(pause_ms));
                if s.write_all(&bytes).is_err() {
                    return;
                }
            }
            if close {
                drop(s);
            } else {
                thread::sleep(Duration::from_secs(5));
            }
        });
        addr
    }

    #[test]
    fn sse_stream_over_chunked_http() {
        let head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        let addr = canned_server(
            vec![
                (head, 0),
                (b"1a\r\ndata: {\"event_type\":\"a\"}\n\n\r\n".to_vec(), 0),
                (b"8\r\n: ping\n\n\r\n".to_vec(), 300),
                (b"6\r\ndata: ".to_vec(), 0),
                (b"\r\n4\r\n1\n\nx\r\n".to_vec(), 50),
                (b"0\r\n\r\n".to_vec(), 0),
            ],
            false,
        );
        let mut s = open_stream(addr, "/x", &[]);
        assert_eq!(s.resp.header("Content-Type"), Some("text/event-stream"));
        assert!(s.resp.is_chunked());
        assert_eq!(s.next_json(Duration::from_secs(2))["event_type"], "a");
        assert!(matches!(s.next(Duration::from_millis(50)), Next::Timeout));
        assert!(matches!(
            s.next(Duration::from_secs(2)),
            Next::Item(SseItem::Comment(c)) if c == "ping"
        ));
        assert_eq!(s.next_event(Duration::from_secs(2)).data, "1");
        // "x" is an incomplete line at the terminal chunk: no event; clean end.
        s.expect_end(Duration::from_secs(2));
    }

    #[test]
    fn abrupt_end_and_plain_get() {
        let head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\ndata:".to_vec();
        let addr = canned_server(vec![(head, 0)], true);
        let mut resp = send_get(addr, "/", &[], Duration::from_secs(2)).unwrap();
        let (body, end) = resp.read_to_end(Duration::from_secs(2));
        assert_eq!(body, b"data:");
        assert!(matches!(end, Some(EndKind::Abrupt(_))), "{end:?}");

        let addr = canned_server(
            vec![(
                b"HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: 13\r\n\r\n{\"detail\":1}\n"
                    .to_vec(),
                0,
            )],
            false,
        );
        let r = get(addr, "/", &[]);
        assert_eq!(r.status, 401);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.json()["detail"], 1);
        assert_eq!(r.end, Some(EndKind::Clean));

        let addr = canned_server(vec![(b"HTTP/1.1 500 X\r\n\r\nbye".to_vec(), 0)], true);
        let r = get(addr, "/", &[]);
        assert_eq!(
            (r.status, r.text().as_str(), r.end),
            (500, "bye", Some(EndKind::Clean))
        );
    }

    #[test]
    fn jwt_hs256_matches_reference_vector() {
        // RFC 7515 appendix A.1 uses a binary key; check our HMAC against the
        // well-known jwt.io example instead (secret "your-256-bit-secret").
        let header = r#"{"alg":"HS256","typ":"JWT"}"#;
        let claims = r#"{"sub":"1234567890","name":"John Doe","iat":1516239022}"#;
        let input = format!(
            "{}.{}",
            jwt::b64(header.as_bytes()),
            jwt::b64(claims.as_bytes())
        );
        assert_eq!(
            format!("{input}.{}", jwt::hs256_sig("your-256-bit-secret", &input)),
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
        );
        let t = jwt::token("u1", "user");
        assert_eq!(t.split('.').count(), 3);
    }

    #[test]
    fn execution_ids_are_unique_uuids() {
        let ids: std::collections::HashSet<String> =
            (0..1000).map(|_| new_execution_id()).collect();
        assert_eq!(ids.len(), 1000);
        for id in ids.iter().take(20) {
            let parts: Vec<&str> = id.split('-').collect();
            assert_eq!(
                parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
                vec![8, 4, 4, 4, 12],
                "{id}"
            );
            assert!(id.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
        }
    }

    #[test]
    fn redis_server_start_stop_restart_and_helpers() {
        let mut r = RedisServer::start();
        let port = r.port();
        assert!(redis_ping(port));
        let id = new_execution_id();
        r.put_execution(&ExecRecord::new(&id, "alice", "running").with_result("{\"x\":1}"));
        let mut con = r.conn();
        let rec: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
            .arg(format!("exec:{id}"))
            .query(&mut con)
            .unwrap();
        assert_eq!(rec["user_id"], "alice");
        assert_eq!(rec["result"], "{\"x\":1}");

        // A subscriber shows up in NUMSUB and receives PUBLISH.
        let ch = exec_channel(&id);
        let mut sub = TcpStream::connect(("127.0.0.1", port)).unwrap();
        sub.write_all(format!("SUBSCRIBE {ch}\r\n").as_bytes())
            .unwrap();
        r.wait_numsub(&ch, 1, Duration::from_secs(5)).unwrap();
        assert_eq!(r.publish(&ch, "hello"), 1);
        drop(sub);
        r.wait_numsub(&ch, 0, Duration::from_secs(5)).unwrap();

        // The redis-crate subscriber gets messages in order, and leaves.
        let raw = r.raw_subscribe(&ch);
        assert_eq!(r.numsub(&ch), 1);
        r.publish(&ch, "{\"a\":1}");
        r.publish(&ch, "plain");
        assert_eq!(
            raw.next_json(Duration::from_secs(5)),
            serde_json::json!({"a": 1})
        );
        assert_eq!(
            raw.next_payload(Duration::from_secs(5)).as_deref(),
            Some(&b"plain"[..])
        );
        assert_eq!(raw.next_payload(Duration::from_millis(100)), None);
        drop(raw);
        r.wait_numsub(&ch, 0, Duration::from_secs(5)).unwrap();

        r.stop();
        assert!(!redis_ping(port));
        r.restart();
        assert_eq!(r.port(), port);
        assert!(redis_ping(port));
        drop(r);
        assert!(!redis_ping(port));
    }
}
