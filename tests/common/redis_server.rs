//! A private `redis-server`, Redis client helpers, the records the API
//! writes and the channel and key names the gateway uses.

use super::*;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
        let (appendonly, dir) = match &self.data_dir {
            Some(dir) => ("yes", dir.clone()),
            None => ("no", std::env::temp_dir()),
        };
        let mut cmd = sse_gateway_testkit::redis_server::command(self.port, &dir);
        cmd.args(["--appendonly", appendonly, "--appendfsync", "always"])
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

    /// Freeze the server (SIGSTOP): its connections stay open and nothing
    /// is answered, as when Redis hangs or a network path drops packets
    /// silently. [`RedisServer::thaw`] resumes it.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Resume a frozen server (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, which: &str) {
        let pid = self.child.as_ref().expect("redis-server running").id();
        let status = std::process::Command::new("kill")
            .args([which, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {which} {pid}");
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

    /// Lets Redis buffer any amount for its pub/sub clients (its default
    /// cuts one 32 MB behind): a test of what the gateway does with a
    /// burst it cannot keep up with must see the gateway's rule, not
    /// Redis' cut, which comes first on a loaded machine.
    pub fn unlimited_pubsub_buffers(&self) {
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("client-output-buffer-limit")
            .arg("pubsub 0 0 0")
            .query::<()>(&mut self.conn())
            .expect("CONFIG SET client-output-buffer-limit");
    }

    /// HSET the execution record `exec:{id}`.
    pub fn put_execution(&self, rec: &ExecRecord) {
        put_execution_on(&mut self.conn(), rec);
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
    /// Under the p3 build `want` streams may share one subscription per
    /// instance ([`super::p3::numsub_matches`]).
    pub fn wait_numsub(&self, channel: &str, want: i64, timeout: Duration) -> Result<(), i64> {
        let mut con = self.conn();
        let deadline = Instant::now() + timeout;
        loop {
            let n = self.numsub_on(&mut con, channel);
            if super::p3::numsub_matches(n, want) {
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

/// HSET the execution record `exec:{id}` on `con` (a thread that holds
/// its own connection: [`RedisServer::put_execution`] opens one).
pub fn put_execution_on(con: &mut redis::Connection, rec: &ExecRecord) {
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
    cmd.query::<i64>(con)
        .unwrap_or_else(|e| panic!("HSET exec:{}: {e}", rec.id));
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
