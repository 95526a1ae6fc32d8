//! The gateway on a real three-node Redis Cluster (`REDIS_CLUSTER=true`):
//! sharded pub/sub on each channel's owner, commands routed by `MOVED`,
//! history and resume, per-user slots.

mod common;

use common::*;
use serde_json::json;
use sse_gateway::redis::cluster::parse_moved;
use std::fs;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const EVENT: Duration = Duration::from_secs(10);

/// Three `redis-server --cluster-enabled yes` nodes joined with
/// `redis-cli --cluster create`, killed on drop.
struct Cluster {
    ports: Vec<u16>,
    children: Vec<Child>,
    dir: PathBuf,
}

/// A port whose cluster bus port (+10000) is free too.
fn cluster_port() -> u16 {
    loop {
        let p = free_port();
        if TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok() {
            return p;
        }
    }
}

impl Cluster {
    fn start() -> Cluster {
        let dir = crate_dir().join("target/e2e/cluster").join(format!(
            "{}-{}",
            std::process::id(),
            cluster_port()
        ));
        fs::create_dir_all(&dir).unwrap();
        let mut cluster = Cluster {
            ports: Vec::new(),
            children: Vec::new(),
            dir,
        };
        for _ in 0..3 {
            let port = cluster_port();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "5000"])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&cluster.dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server runs");
            cluster.children.push(child);
            cluster.ports.push(port);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for &port in &cluster.ports {
            while !redis_ping(port) {
                assert!(Instant::now() < deadline, "node {port} did not start");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let nodes: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli runs");
        assert!(
            out.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        for &port in &cluster.ports {
            loop {
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query(&mut cluster.conn(port))
                    .unwrap();
                if info.contains("cluster_state:ok") {
                    break;
                }
                assert!(Instant::now() < deadline, "cluster not ok: {info}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        cluster
    }

    fn conn(&self, port: u16) -> redis::Connection {
        redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .unwrap()
            .get_connection()
            .unwrap()
    }

    /// The node owning `key` (or shard channel), found by following MOVED.
    fn owner(&self, key: &str) -> u16 {
        let port = self.ports[0];
        let reply: redis::RedisResult<i64> =
            redis::cmd("EXISTS").arg(key).query(&mut self.conn(port));
        match reply {
            Ok(_) => port,
            Err(e) => {
                // The redis crate reformats the reply; rebuild Redis' own text.
                let (node, slot) = e.redirect_node().unwrap_or_else(|| panic!("{e}"));
                let moved = parse_moved(&format!("MOVED {slot} {node}")).unwrap();
                assert_eq!(moved.slot, slot);
                moved.port
            }
        }
    }

    fn put_execution(&self, rec: &ExecRecord) {
        let key = format!("exec:{}", rec.id);
        let _: () = redis::cmd("HSET")
            .arg(&key)
            .arg("user_id")
            .arg(&rec.user_id)
            .arg("status")
            .arg(&rec.status)
            .arg("updated_at")
            .arg(&rec.updated_at)
            .query(&mut self.conn(self.owner(&key)))
            .unwrap();
    }

    fn shard_numsub(&self, channel: &str) -> i64 {
        let reply: (String, i64) = redis::cmd("PUBSUB")
            .arg("SHARDNUMSUB")
            .arg(channel)
            .query(&mut self.conn(self.owner(channel)))
            .unwrap();
        reply.1
    }

    fn gateway(&self, extra: &[(&str, &str)]) -> Gateway {
        let mut b = GatewayBuilder::new(&format!("redis://127.0.0.1:{}", self.ports[0]))
            .env("REDIS_CLUSTER", "true")
            .env("HEARTBEAT_SECONDS", "1");
        for (k, v) in extra {
            b = b.env(k, v);
        }
        // Under Spin the shipped allowlist names redis_host:redis_port only;
        // an operator lists every node (README, "Running on Spin").
        for port in &self.ports[1..] {
            b = b.spin_allow_outbound(&format!("tcp://127.0.0.1:{port}"));
        }
        b.start()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn bearer(sub: &str, role: &str) -> String {
    format!("Bearer {}", jwt::token(sub, role))
}

fn open(gw: &Gateway, id: &str, user: &str, last_event_id: Option<&str>) -> SseStream {
    let auth = bearer(user, "user");
    let mut headers = vec![("Authorization", auth.as_str())];
    if let Some(l) = last_event_id {
        headers.push(("Last-Event-ID", l));
    }
    open_stream(
        gw.addr(),
        &format!("/api/v1/events/executions/{id}"),
        &headers,
    )
}

fn post(gw: &Gateway, id: &str, body: &serde_json::Value) -> String {
    let resp = post_json(
        gw.addr(),
        &format!("/api/v1/events/executions/{id}"),
        Some(&jwt::token("producer", "service")),
        &body.to_string(),
    );
    expect_accepted(&resp, "cluster publish")
}

/// Three executions whose channels live on three different shards.
fn spread_executions(cluster: &Cluster, user: &str) -> Vec<ExecRecord> {
    // Exactly one per shard: the user's stream limit (10) must not be hit.
    let mut recs = Vec::new();
    let mut owners = std::collections::BTreeSet::new();
    for _ in 0..200 {
        let rec = ExecRecord::new(&new_execution_id(), user, "running");
        if owners.insert(cluster.owner(&exec_channel(&rec.id))) {
            recs.push(rec);
        }
        if owners.len() == 3 {
            return recs;
        }
    }
    panic!("channels never spread over 3 shards");
}

#[test]
fn streams_on_every_shard_get_posted_and_spublished_events() {
    let cluster = Cluster::start();
    let gw = cluster.gateway(&[]);
    let recs = spread_executions(&cluster, "alice");
    let mut streams = Vec::new();
    for rec in &recs {
        cluster.put_execution(rec);
        let mut s = open(&gw, &rec.id, "alice", None);
        assert_eq!(s.next_json(EVENT)["event_type"], "status", "{}", gw.log());
        streams.push(s);
    }
    for rec in &recs {
        let ch = exec_channel(&rec.id);
        let deadline = Instant::now() + EVENT;
        while cluster.shard_numsub(&ch) != 1 {
            assert!(Instant::now() < deadline, "no sharded subscriber on {ch}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    for (rec, s) in recs.iter().zip(&mut streams) {
        let id = post(&gw, &rec.id, &json!({"event_type": "pod_running", "n": 1}));
        let ev = s.next_event(EVENT);
        assert_eq!(ev.id.as_deref(), Some(id.as_str()));
        assert_eq!(ev.json()["n"], 1);
        // A plain SPUBLISH producer on the owning shard reaches the stream too.
        let ch = exec_channel(&rec.id);
        let _: i64 = redis::cmd("SPUBLISH")
            .arg(&ch)
            .arg(json!({"event_type": "pod_running", "n": 2}).to_string())
            .query(&mut cluster.conn(cluster.owner(&ch)))
            .unwrap();
        let ev = s.next_event(EVENT);
        assert_eq!((ev.id.as_deref(), ev.json()["n"].clone()), (None, json!(2)));
        post(&gw, &rec.id, &json!({"event_type": "result_stored"}));
        assert_eq!(s.next_json(EVENT)["event_type"], "result_stored");
        s.expect_end(EVENT);
    }
    for rec in &recs {
        let ch = exec_channel(&rec.id);
        let deadline = Instant::now() + EVENT;
        while cluster.shard_numsub(&ch) != 0 {
            assert!(Instant::now() < deadline, "subscription on {ch} kept");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn history_and_resume_work_across_shards() {
    let cluster = Cluster::start();
    let gw = cluster.gateway(&[]);
    for rec in spread_executions(&cluster, "bob") {
        cluster.put_execution(&rec);
        let ids: Vec<String> = (0..3)
            .map(|n| post(&gw, &rec.id, &json!({"event_type": "tick", "n": n})))
            .collect();
        let mut s = open(&gw, &rec.id, "bob", Some(&ids[0]));
        assert_eq!(s.next_json(EVENT)["event_type"], "status");
        for (n, id) in ids.iter().enumerate().skip(1) {
            let ev = s.next_event(EVENT);
            assert_eq!(ev.id.as_deref(), Some(id.as_str()));
            assert_eq!(ev.json()["n"], n);
        }
        s.assert_open_for(Duration::from_millis(200));
    }
}

#[test]
fn per_user_stream_limit_holds_on_a_cluster() {
    let cluster = Cluster::start();
    let gw = cluster.gateway(&[("MAX_STREAMS_PER_USER", "1")]);
    let recs = spread_executions(&cluster, "carol");
    for rec in &recs {
        cluster.put_execution(rec);
    }
    let mut first = open(&gw, &recs[0].id, "carol", None);
    assert_eq!(first.next_json(EVENT)["event_type"], "status");
    let auth = bearer("carol", "user");
    let second = get(
        gw.addr(),
        &format!("/api/v1/events/executions/{}", recs[1].id),
        &[("Authorization", &auth)],
    );
    expect_json_error(&second, 429, "TooManyStreamsError");
    assert!(second.header("retry-after").is_some());
}

#[test]
fn the_user_store_is_read_first_on_its_own_shard() {
    // The user record's slot is one node; each execution channel another:
    // the stream reads the user where it lives, then subscribes on the
    // channel's owner, with a history to replay and the store's user id
    // owning the record.
    let cluster = Cluster::start();
    let gw = cluster.gateway(&[("IDENTITY_KEY_PREFIX", "user:")]);
    let _: i64 = redis::cmd("HSET")
        .arg("user:dave")
        .arg(&["user_id", "u-42", "role", "user", "is_active", "true"])
        .query(&mut cluster.conn(cluster.owner("user:dave")))
        .unwrap();
    for rec in spread_executions(&cluster, "u-42") {
        cluster.put_execution(&rec);
        let first = post(&gw, &rec.id, &json!({"event_type": "tick", "n": 0}));
        let mut s = open(&gw, &rec.id, "dave", None);
        assert_eq!(s.next_json(EVENT)["event_type"], "status", "{}", gw.log());
        let ev = s.next_event(EVENT);
        assert_eq!(ev.id.as_deref(), Some(first.as_str()), "{}", gw.log());
        let ch = exec_channel(&rec.id);
        let deadline = Instant::now() + EVENT;
        while cluster.shard_numsub(&ch) != 1 {
            assert!(Instant::now() < deadline, "no sharded subscriber on {ch}");
            std::thread::sleep(Duration::from_millis(50));
        }
        post(&gw, &rec.id, &json!({"event_type": "result_stored"}));
        assert_eq!(s.next_json(EVENT)["event_type"], "result_stored");
        s.expect_end(EVENT);
    }
}
