//! The demo producer: plays simulated executions for the demo page.
//!
//! `POST /api/v1/events/dev/executions` (dev_mode only) creates the record
//! `exec:{id}` and pushes the id on the Redis list `demo:jobs`. This program
//! takes ids from that list (`BRPOP`, blocking: it does nothing while idle)
//! and publishes a realistic event sequence for each through the gateway's
//! publish API, with a `service` token it mints itself from `JWT_SECRET`:
//!
//! `execution_requested` → `execution_queued` → `pod_created` → `pod_running`
//! → `execution_completed` → `result_stored` (with stdout, exit code and
//! resource usage), 0.5–1 s apart, updating the record's `status`,
//! `updated_at` and finally `result`; then a notification to the owner.
//!
//! A POST that fails (gateway restarting, Redis briefly away) is retried for
//! up to `DEMO_RETRY_SECONDS`; when a request may have been processed before
//! the connection broke, the history stream is checked for the event's
//! `event_id` first, so nothing is published twice.
//!
//! Exits on Ctrl-C, when Redis is unreachable for `DEMO_GIVE_UP_SECONDS`
//! or when the gateway has not answered for that long while idle.
//!
//! Environment (same names as the gateway's portable build where shared):
//! `GATEWAY_URL` (`http://127.0.0.1:3000`), `REDIS_URL`
//! (`redis://127.0.0.1:6379`), `JWT_SECRET` (required), `JWT_ISSUER`,
//! `JWT_AUDIENCE`, `JWT_USER_CLAIM` (`sub`), `JWT_ROLE_CLAIM` (`role`),
//! `EXEC_KEY_PREFIX` (`exec:`), `EXEC_CHANNEL_PREFIX` (`sse:exec:`),
//! `NOTIF_CHANNEL_PREFIX` (`sse:notif:`), `HISTORY_KEY_PREFIX` (`history:`),
//! `DEMO_QUEUE` (`demo:jobs`), `DEMO_STEP_MS` (`500-1000`),
//! `DEMO_RETRY_SECONDS` (`30`), `DEMO_GIVE_UP_SECONDS` (`30`).
//! It talks to a single Redis node (no cluster redirects).
//!
//! Run: `JWT_SECRET=... cargo run --example demo_producer`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Longest idle wait in one `BRPOP`, seconds.
const IDLE_WAIT_SECONDS: u64 = 5;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_string())
}

fn env_opt(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn log(msg: impl AsRef<str>) {
    println!("[demo-producer {}] {}", iso(now_millis()), msg.as_ref());
}

struct Settings {
    host: String,
    port: u16,
    redis_url: String,
    secret: String,
    issuer: Option<String>,
    audience: Option<String>,
    user_claim: String,
    role_claim: String,
    exec_key: String,
    exec_channel: String,
    notif_channel: String,
    history_key: String,
    queue: String,
    step_ms: (u64, u64),
    retry: Duration,
    give_up: Duration,
}

impl Settings {
    fn from_env() -> Result<Settings, String> {
        let url = env_or("GATEWAY_URL", "http://127.0.0.1:3000");
        let authority = url
            .strip_prefix("http://")
            .ok_or("GATEWAY_URL must start with http://")?
            .trim_end_matches('/');
        if authority.contains('/') {
            return Err("GATEWAY_URL must be http://host[:port] without a path".into());
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (
                h.to_string(),
                p.parse().map_err(|_| "GATEWAY_URL has a bad port")?,
            ),
            None => (authority.to_string(), 80),
        };
        let step = env_or("DEMO_STEP_MS", "500-1000");
        let step_ms = match step.split_once('-') {
            Some((a, b)) => (a.trim().parse(), b.trim().parse()),
            None => (step.trim().parse(), step.trim().parse()),
        };
        let step_ms = match step_ms {
            (Ok(a), Ok(b)) if a <= b && b <= 60_000 => (a, b),
            _ => return Err("DEMO_STEP_MS must be MIN-MAX milliseconds (e.g. 500-1000)".into()),
        };
        let seconds = |name: &str| -> Result<Duration, String> {
            env_or(name, "30")
                .parse()
                .map(Duration::from_secs)
                .map_err(|_| format!("{name} must be whole seconds"))
        };
        Ok(Settings {
            host,
            port,
            redis_url: env_or("REDIS_URL", "redis://127.0.0.1:6379"),
            secret: env_opt("JWT_SECRET").ok_or("JWT_SECRET is not set")?,
            issuer: env_opt("JWT_ISSUER"),
            audience: env_opt("JWT_AUDIENCE"),
            user_claim: env_or("JWT_USER_CLAIM", "sub"),
            role_claim: env_or("JWT_ROLE_CLAIM", "role"),
            exec_key: env_or("EXEC_KEY_PREFIX", "exec:"),
            exec_channel: env_or("EXEC_CHANNEL_PREFIX", "sse:exec:"),
            notif_channel: env_or("NOTIF_CHANNEL_PREFIX", "sse:notif:"),
            history_key: env_or("HISTORY_KEY_PREFIX", "history:"),
            queue: env_or("DEMO_QUEUE", "demo:jobs"),
            step_ms,
            retry: seconds("DEMO_RETRY_SECONDS")?,
            give_up: seconds("DEMO_GIVE_UP_SECONDS")?,
        })
    }
}

fn main() {
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("demo_producer: {e}");
            std::process::exit(2);
        }
    };
    let mut producer = Producer {
        redis: None,
        rng: Rng::seeded(),
        s: settings,
    };
    log(format!(
        "waiting for jobs on {} (gateway http://{}:{}, Redis {})",
        producer.s.queue, producer.s.host, producer.s.port, producer.s.redis_url
    ));
    std::process::exit(producer.run());
}

struct Producer {
    s: Settings,
    redis: Option<redis::Connection>,
    rng: Rng,
}

/// How one HTTP attempt ended.
enum Attempt {
    /// The gateway answered with this status and body.
    Answered(u16, String),
    /// No connection: the request certainly was not processed.
    NotSent(String),
    /// The connection broke after the request was (maybe) sent.
    Unknown(String),
}

impl Producer {
    /// The main loop; returns the exit code.
    fn run(&mut self) -> i32 {
        let mut gateway_down_since: Option<Instant> = None;
        loop {
            let job = match self.next_job() {
                Ok(job) => job,
                Err(e) => {
                    log(format!("Redis unreachable for too long ({e}); exiting"));
                    return 1;
                }
            };
            match job {
                Some(id) => {
                    gateway_down_since = None;
                    if let Err(e) = self.play(&id) {
                        log(format!("{id}: gave up: {e}"));
                        let _ = self.hset(&id, &[("status", "error")]);
                    }
                }
                None => {
                    // Idle: make sure the gateway is still there.
                    match self.request("GET", "/api/v1/events/health", None, None) {
                        Attempt::Answered(..) => gateway_down_since = None,
                        Attempt::NotSent(e) | Attempt::Unknown(e) => {
                            let since = *gateway_down_since.get_or_insert_with(Instant::now);
                            if since.elapsed() >= self.s.give_up {
                                log(format!("gateway unreachable for too long ({e}); exiting"));
                                return 0;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Connects to Redis, retrying until `give_up`.
    fn redis(&mut self) -> Result<&mut redis::Connection, String> {
        if self.redis.is_none() {
            let client = redis::Client::open(self.s.redis_url.as_str())
                .map_err(|e| format!("bad REDIS_URL: {e}"))?;
            let started = Instant::now();
            let conn = loop {
                match client.get_connection_with_timeout(Duration::from_secs(2)) {
                    Ok(c) => break c,
                    Err(e) if started.elapsed() < self.s.give_up => {
                        let _ = e;
                        std::thread::sleep(Duration::from_millis(500));
                    }
                    Err(e) => return Err(e.to_string()),
                }
            };
            conn.set_read_timeout(Some(Duration::from_secs(IDLE_WAIT_SECONDS + 5)))
                .map_err(|e| e.to_string())?;
            self.redis = Some(conn);
        }
        Ok(self.redis.as_mut().expect("just set"))
    }

    /// Runs one Redis command, reconnecting once if the connection broke.
    fn redis_cmd<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> Result<T, String> {
        for attempt in 0..2 {
            let conn = self.redis()?;
            match cmd.query::<T>(conn) {
                Ok(v) => return Ok(v),
                Err(e) if attempt == 0 && (e.is_io_error() || e.is_connection_dropped()) => {
                    self.redis = None;
                }
                Err(e) => {
                    if e.is_io_error() || e.is_connection_dropped() {
                        self.redis = None;
                    }
                    return Err(e.to_string());
                }
            }
        }
        unreachable!("the loop returns")
    }

    /// Waits up to `IDLE_WAIT_SECONDS` for a job id.
    fn next_job(&mut self) -> Result<Option<String>, String> {
        let mut cmd = redis::cmd("BRPOP");
        cmd.arg(&self.s.queue).arg(IDLE_WAIT_SECONDS);
        let started = Instant::now();
        loop {
            match self.redis_cmd::<Option<(String, String)>>(&cmd) {
                Ok(job) => return Ok(job.map(|(_, id)| id)),
                Err(e) if started.elapsed() < self.s.give_up => {
                    log(format!("Redis: {e}; retrying"));
                    std::thread::sleep(Duration::from_secs(1));
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn hset(&mut self, id: &str, fields: &[(&str, &str)]) -> Result<(), String> {
        let mut cmd = redis::cmd("HSET");
        cmd.arg(format!("{}{id}", self.s.exec_key));
        for (k, v) in fields {
            cmd.arg(*k).arg(*v);
        }
        cmd.arg("updated_at").arg(iso(now_millis()));
        self.redis_cmd::<i64>(&cmd).map(drop)
    }

    fn pause(&mut self) {
        let (lo, hi) = self.s.step_ms;
        let ms = lo + self.rng.below(hi - lo + 1);
        std::thread::sleep(Duration::from_millis(ms));
    }

    /// Plays one execution from queued to result, then notifies the owner.
    fn play(&mut self, id: &str) -> Result<(), String> {
        let key = format!("{}{id}", self.s.exec_key);
        let owner: Option<String> = self.redis_cmd(redis::cmd("HGET").arg(&key).arg("user_id"))?;
        let Some(owner) = owner else {
            return Err(format!("no execution record {key}"));
        };
        log(format!("{id}: started (owner {owner})"));
        let started = now_millis();
        let short: String = id.chars().rev().take(6).collect::<String>();
        let pod = format!("exec-{short}-{:05x}", self.rng.below(0xfffff));
        let node = format!("worker-{}", 1 + self.rng.below(3));
        let primes = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29];
        let stdout = format!(
            "execution {id}\ncomputing the first {} primes...\n{}\ndone\n",
            primes.len(),
            primes.map(|p| p.to_string()).join(" ")
        );
        let steps: [(&str, &str, Value); 5] = [
            (
                "execution_requested",
                "queued",
                json!({"language": "python", "command": "python main.py", "requested_by": owner}),
            ),
            (
                "execution_queued",
                "queued",
                json!({"queue": "default", "position": 1}),
            ),
            (
                "pod_created",
                "scheduled",
                json!({"pod_name": pod, "namespace": "executions", "node": node}),
            ),
            (
                "pod_running",
                "running",
                json!({"pod_name": pod, "image": "python:3.12-slim"}),
            ),
            ("execution_completed", "running", json!({"exit_code": 0})),
        ];
        for (event_type, status, extra) in steps {
            self.pause();
            self.hset(id, &[("status", status)])?;
            let mut event = self.event(id, event_type, extra);
            if event_type == "execution_completed" {
                event["duration_ms"] = json!(now_millis().saturating_sub(started));
            }
            self.publish_execution(id, &event)?;
        }
        self.pause();
        let wall = now_millis().saturating_sub(started) as f64 / 1000.0;
        let result = json!({
            "status": "completed",
            "exit_code": 0,
            "stdout": stdout,
            "stderr": "",
            "resource_usage": {
                "cpu_seconds": 0.31 + self.rng.below(20) as f64 / 100.0,
                "memory_peak_mb": 38 + self.rng.below(24),
                "wall_seconds": (wall * 100.0).round() / 100.0,
            },
        });
        let event = self.event(
            id,
            "result_stored",
            json!({"status": "completed", "result": result}),
        );
        // Publish first, then mark the record finished: a browser that
        // reconnects in between gets the event from history, never a record
        // that says "completed" without its terminal event.
        self.publish_execution(id, &event)?;
        self.hset(
            id,
            &[("status", "completed"), ("result", &result.to_string())],
        )?;
        let note = json!({
            "event_id": event_id(&mut self.rng),
            "title": format!("Execution {id} finished"),
            "body": format!("Exit code 0 after {wall:.1} s"),
            "level": "success",
            "execution_id": id,
            "timestamp": iso(now_millis()),
        });
        let channel = format!("{}{owner}", self.s.notif_channel);
        self.publish(
            &format!("/api/v1/events/notifications/{owner}"),
            &channel,
            &note,
        )?;
        log(format!("{id}: finished, {owner} notified"));
        Ok(())
    }

    fn event(&mut self, id: &str, event_type: &str, extra: Value) -> Value {
        let mut event = json!({
            "event_type": event_type,
            "execution_id": id,
            "event_id": event_id(&mut self.rng),
            "timestamp": iso(now_millis()),
        });
        if let (Some(map), Value::Object(extra)) = (event.as_object_mut(), extra) {
            map.extend(extra);
        }
        event
    }

    fn publish_execution(&mut self, id: &str, event: &Value) -> Result<(), String> {
        let channel = format!("{}{id}", self.s.exec_channel);
        self.publish(&format!("/api/v1/events/executions/{id}"), &channel, event)
    }

    /// POSTs one event, retrying until it is published exactly once.
    fn publish(&mut self, path: &str, channel: &str, event: &Value) -> Result<(), String> {
        let body = event.to_string();
        let marker = format!(
            "\"event_id\":{}",
            serde_json::to_string(&event["event_id"]).unwrap_or_default()
        );
        let started = Instant::now();
        let mut delay = Duration::from_millis(200);
        let mut maybe_sent = false;
        loop {
            if maybe_sent && self.in_history(channel, &marker)? {
                log(format!(
                    "{path}: already published before the connection broke"
                ));
                return Ok(());
            }
            let token = self.service_token();
            let problem = match self.request("POST", path, Some(&token), Some(&body)) {
                Attempt::Answered(code, reply) if (200..300).contains(&code) => {
                    let id = serde_json::from_str::<Value>(&reply)
                        .ok()
                        .and_then(|v| v["id"].as_str().map(str::to_string))
                        .unwrap_or_default();
                    log(format!(
                        "{} {} -> {code} (id {id})",
                        event["event_type"].as_str().unwrap_or("notification"),
                        channel
                    ));
                    return Ok(());
                }
                Attempt::Answered(code, reply) if code >= 500 => {
                    maybe_sent = true;
                    format!("HTTP {code}: {reply}")
                }
                Attempt::Answered(code, reply) => {
                    return Err(format!("{path}: HTTP {code}: {reply}"));
                }
                Attempt::NotSent(e) => e,
                Attempt::Unknown(e) => {
                    maybe_sent = true;
                    e
                }
            };
            if started.elapsed() >= self.s.retry {
                return Err(format!("{path}: {problem}"));
            }
            log(format!("{path}: {problem}; retrying in {delay:?}"));
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }

    /// Whether an event carrying `marker` is already in the channel's history.
    fn in_history(&mut self, channel: &str, marker: &str) -> Result<bool, String> {
        // Same name as the gateway's `history::key`: prefix + `{channel}`.
        let key = format!("{}{{{channel}}}", self.s.history_key);
        let entries: Vec<(String, Vec<String>)> = self.redis_cmd(
            redis::cmd("XREVRANGE")
                .arg(key)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(100),
        )?;
        Ok(entries
            .iter()
            .any(|(_, fields)| fields.iter().any(|f| f.contains(marker))))
    }

    /// A short-lived HS256 `service` token (same secret as the gateway).
    fn service_token(&self) -> String {
        let now = now_millis() / 1000;
        let mut claims = serde_json::Map::new();
        claims.insert(self.s.user_claim.clone(), "demo-producer".into());
        claims.insert(self.s.role_claim.clone(), "service".into());
        claims.insert("iat".into(), now.into());
        claims.insert("exp".into(), (now + 300).into());
        if let Some(iss) = &self.s.issuer {
            claims.insert("iss".into(), iss.as_str().into());
        }
        if let Some(aud) = &self.s.audience {
            claims.insert("aud".into(), aud.as_str().into());
        }
        let header = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = B64.encode(Value::Object(claims).to_string());
        let input = format!("{header}.{payload}");
        let mut mac = Hmac::<Sha256>::new_from_slice(self.s.secret.as_bytes()).expect("any key");
        mac.update(input.as_bytes());
        format!("{input}.{}", B64.encode(mac.finalize().into_bytes()))
    }

    /// One HTTP/1.1 request on a fresh connection (`Connection: close`).
    fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Attempt {
        let addrs: Vec<SocketAddr> = match (self.s.host.as_str(), self.s.port).to_socket_addrs() {
            Ok(a) => a.collect(),
            Err(e) => return Attempt::NotSent(format!("resolve {}: {e}", self.s.host)),
        };
        let mut stream = None;
        let mut last = String::from("no address");
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = format!("connect {addr}: {e}"),
            }
        }
        let Some(mut stream) = stream else {
            return Attempt::NotSent(last);
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
        let body = body.unwrap_or("");
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}:{}\r\nConnection: close\r\n",
            self.s.host, self.s.port
        );
        if let Some(t) = token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        if method == "POST" {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        head.push_str(body);
        if let Err(e) = stream.write_all(head.as_bytes()) {
            return Attempt::Unknown(format!("write: {e}"));
        }
        let mut reply = Vec::new();
        if let Err(e) = stream.take(1 << 20).read_to_end(&mut reply) {
            return Attempt::Unknown(format!("read: {e}"));
        }
        let text = String::from_utf8_lossy(&reply);
        let code = text.split(' ').nth(1).and_then(|c| c.parse::<u16>().ok());
        match code {
            Some(code) => {
                let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
                let chunked = head
                    .to_ascii_lowercase()
                    .contains("transfer-encoding: chunked");
                let body = if chunked {
                    dechunk(body)
                } else {
                    body.to_string()
                };
                Attempt::Answered(code, body.trim().to_string())
            }
            None => Attempt::Unknown("no HTTP status line in the reply".into()),
        }
    }
}

/// Decodes a complete `Transfer-Encoding: chunked` body (best effort: the
/// body is only logged).
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = size.split(';').next().unwrap_or("").trim();
        let Ok(n) = usize::from_str_radix(size, 16) else {
            break;
        };
        if n == 0 || after.len() < n || !after.is_char_boundary(n) {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].strip_prefix("\r\n").unwrap_or(&after[n..]);
    }
    out
}

/// A small xorshift generator: delays and demo values, nothing secret.
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Rng((t ^ (u64::from(std::process::id()) << 32)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

fn event_id(rng: &mut Rng) -> String {
    format!("evt-{:016x}", rng.next())
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Unix milliseconds as ISO 8601 UTC (`2024-05-01T12:00:00.123Z`).
fn iso(millis: u64) -> String {
    let secs = millis / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        millis % 1000
    )
}
