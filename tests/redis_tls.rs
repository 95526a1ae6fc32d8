//! Reaching Redis the way deployments do: by host name (the host's lookup,
//! or the gateway's own DNS-over-TCP lookup through `DNS_SERVER`, here a
//! real `dnsmasq`) and over TLS (`rediss://`, a real `redis-server
//! --tls-port` with a CA made in the test). Every failure a user can make
//! (wrong CA, wrong name, expired certificate, unknown name, dead
//! resolver) is a prompt 503 with a log line that says why, never a hang.
//! Every test runs under both hosts: under Spin (no host lookup) names go
//! through `DNS_SERVER` or the `localhost` rule, and the allowlist comes from
//! the shipped manifest's `redis_allowed_hosts` and `dns_server`.

mod common;

use common::tls::{Dnsmasq, Pki, TlsCluster, TlsRedis, TlsRedisOptions};
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

const EVENT: Duration = Duration::from_secs(10);
/// A failed connect must answer well within this (redis_timeout_ms is 3 s).
const PROMPT: Duration = Duration::from_secs(8);

/// Seeds an execution record through `con`; returns its id.
fn seed(con: &mut redis::Connection) -> String {
    let id = new_execution_id();
    redis::cmd("HSET")
        .arg(format!("exec:{id}"))
        .arg(&[
            "user_id",
            "u1",
            "status",
            "running",
            "updated_at",
            "2025-01-15T10:30:00Z",
        ])
        .query::<i64>(con)
        .unwrap();
    id
}

/// Opens the execution stream, checks the status event, publishes an event
/// through `con` once the gateway subscribed, and checks it arrives: the
/// whole path, both directions, over whatever transport the gateway uses.
fn stream_works(gw: &Gateway, con: &mut redis::Connection) {
    let id = seed(con);
    let token = jwt::token("u1", "user");
    let mut s = open_stream(
        gw.addr(),
        &exec_path(&id),
        &[("Authorization", &bearer(&token))],
    );
    let status = s.next_json(EVENT);
    assert_eq!(status["event_type"], "status", "{status}");
    assert_eq!(status["status"], "running", "{status}");
    let channel = exec_channel(&id);
    let deadline = Instant::now() + EVENT;
    loop {
        let (_, n): (String, i64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&channel)
            .query(con)
            .unwrap();
        if n == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "gateway never subscribed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let event = json!({"event_type": "pod_running", "execution_id": id, "n": 1});
    redis::cmd("PUBLISH")
        .arg(&channel)
        .arg(event.to_string())
        .query::<i64>(con)
        .unwrap();
    assert_eq!(s.next_json(EVENT), event);
}

/// Opens a stream that must fail: a prompt 503, and a log line containing
/// every one of `why`.
fn refused(gw: &Gateway, why: &[&str]) {
    let token = jwt::token("u1", "user");
    let started = Instant::now();
    let resp = get(
        gw.addr(),
        &exec_path(&new_execution_id()),
        &[("Authorization", &bearer(&token))],
    );
    expect_json_error(&resp, 503, "ServiceUnavailableError");
    assert!(
        started.elapsed() < PROMPT,
        "503 took {:?}",
        started.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = gw.log();
        let line = log
            .lines()
            .find(|l| l.contains("redis_unavailable") && why.iter().all(|w| l.contains(w)));
        if line.is_some() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no redis_unavailable log line with {why:?}:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A gateway for `url`, whose host is loopback by some name. Under Spin
/// the connect is checked by IP:port, so the shipped manifest's
/// `redis_allowed_hosts` allows 127.0.0.1 on the URL's port (the resolver is
/// allowed by `dns_server` itself); wasmtime has no allowlist and ignores it.
fn gateway(url: &str) -> GatewayBuilder {
    let port = url.rsplit(':').next().unwrap().trim_end_matches('/');
    GatewayBuilder::new(url).env("REDIS_ALLOWED_HOSTS", &format!("tcp://127.0.0.1:{port}"))
}

fn tls_gateway(url: &str, ca_pem: &str) -> GatewayBuilder {
    gateway(url).env("REDIS_TLS_CA_PEM", ca_pem)
}

// ---------------------------------------------------------------------------
// host names
// ---------------------------------------------------------------------------

#[test]
fn localhost_by_name() {
    let redis = RedisServer::start();
    let gw = gateway(&format!("redis://localhost:{}", redis.port())).start();
    stream_works(&gw, &mut redis.conn());
}

#[test]
fn name_from_the_configured_dns_server() {
    let redis = RedisServer::start();
    let dns = Dnsmasq::start(&[("redis.test", "127.0.0.1")]);
    let gw = gateway(&format!("redis://redis.test:{}", redis.port()))
        .env("DNS_SERVER", &dns.server())
        .start();
    stream_works(&gw, &mut redis.conn());
}

#[test]
fn unknown_names_are_a_clear_503() {
    let redis = RedisServer::start();
    let dns = Dnsmasq::start(&[("redis.test", "127.0.0.1")]);
    let gw = gateway(&format!("redis://nope.test:{}", redis.port()))
        .env("DNS_SERVER", &dns.server())
        .start();
    refused(&gw, &["resolve nope.test via DNS server 127.0.0.1:"]);
    // The host's own lookup: `.invalid` never resolves (RFC 6761).
    let gw = gateway(&format!("redis://no-such-host.invalid:{}", redis.port())).start();
    // Spin has no lookup: the log says how to get one.
    let why = match host() {
        Host::Wasmtime => "resolve no-such-host.invalid",
        Host::Spin => "set dns_server",
    };
    refused(&gw, &["resolve no-such-host.invalid", why]);
}

#[test]
fn a_dead_dns_server_is_a_clear_503() {
    let redis = RedisServer::start();
    let dead = free_port();
    // The `tcp://` form: under Spin the value is an allowlist entry too.
    let gw = gateway(&format!("redis://redis.test:{}", redis.port()))
        .env("DNS_SERVER", &format!("tcp://127.0.0.1:{dead}"))
        .start();
    refused(
        &gw,
        &["resolve redis.test via DNS server", "connection-refused"],
    );
}

// ---------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------

/// A TLS Redis whose certificate (signed by a fresh test CA) names `names`,
/// and a gateway that trusts that CA and reaches it as `localhost`.
fn localhost_tls(names: &[&str], expired: bool) -> (TlsRedis, Gateway) {
    let pki = Pki::new("sse-gateway test CA");
    let cert = pki.issue(names, expired);
    let redis = TlsRedis::start(&pki, &cert, TlsRedisOptions::default());
    let gw = tls_gateway(
        &format!("rediss://localhost:{}", redis.tls_port),
        &pki.ca_pem(),
    )
    .start();
    (redis, gw)
}

#[test]
fn tls_with_the_right_ca() {
    let (redis, gw) = localhost_tls(&["localhost"], false);
    stream_works(&gw, &mut redis.conn());
}

#[test]
fn tls_by_a_name_from_the_dns_server() {
    // The Spin path: own lookup, then SNI and verification by that name.
    let pki = Pki::new("sse-gateway test CA");
    let cert = pki.issue(&["redis.test"], false);
    let redis = TlsRedis::start(&pki, &cert, TlsRedisOptions::default());
    let dns = Dnsmasq::start(&[("redis.test", "127.0.0.1")]);
    let gw = tls_gateway(
        &format!("rediss://redis.test:{}", redis.tls_port),
        &pki.ca_pem(),
    )
    .env("DNS_SERVER", &dns.server())
    .start();
    stream_works(&gw, &mut redis.conn());
}

#[test]
fn tls_refuses_a_wrong_ca() {
    let pki = Pki::new("sse-gateway test CA");
    let cert = pki.issue(&["localhost"], false);
    let redis = TlsRedis::start(&pki, &cert, TlsRedisOptions::default());
    let url = format!("rediss://localhost:{}", redis.tls_port);
    let other = Pki::new("some other CA");
    let gw = tls_gateway(&url, &other.ca_pem()).start();
    refused(&gw, &["TLS handshake with localhost:", "UnknownIssuer"]);
    // Without a configured CA: the bundled web PKI roots, which do not know it.
    let gw = gateway(&url).start();
    refused(&gw, &["TLS handshake with localhost:", "UnknownIssuer"]);
}

#[test]
fn tls_refuses_a_certificate_for_another_name() {
    let (_redis, gw) = localhost_tls(&["redis.example.com"], false);
    refused(
        &gw,
        &["TLS handshake with localhost:", "not valid for name"],
    );
}

#[test]
fn tls_refuses_an_expired_certificate() {
    let (_redis, gw) = localhost_tls(&["localhost"], true);
    refused(
        &gw,
        &["TLS handshake with localhost:", "certificate expired"],
    );
}

#[test]
fn tls_to_a_plain_port_fails_promptly() {
    let redis = RedisServer::start();
    let pki = Pki::new("sse-gateway test CA");
    let gw = tls_gateway(
        &format!("rediss://localhost:{}", redis.port()),
        &pki.ca_pem(),
    )
    .start();
    refused(&gw, &["TLS handshake with localhost:"]);
}

#[test]
fn auth_over_tls() {
    let pki = Pki::new("sse-gateway test CA");
    let cert = pki.issue(&["localhost"], false);
    let password = "s3cret-over-tls";
    let opts = TlsRedisOptions {
        password: Some(password.into()),
        ..Default::default()
    };
    let redis = TlsRedis::start(&pki, &cert, opts);
    let url = format!("rediss://:{password}@localhost:{}", redis.tls_port);
    let gw = tls_gateway(&url, &pki.ca_pem()).start();
    stream_works(&gw, &mut redis.conn());
    let wrong = tls_gateway(
        &format!("rediss://:wrong@localhost:{}", redis.tls_port),
        &pki.ca_pem(),
    )
    .start();
    refused(&wrong, &[]);
    assert!(!gw.log().contains(password) && !wrong.log().contains("wrong@"));
}

#[test]
fn client_certificate_when_redis_asks_for_one() {
    let pki = Pki::new("sse-gateway test CA");
    let cert = pki.issue(&["localhost"], false);
    let client = pki.issue(&["sse-gateway"], false);
    let opts = TlsRedisOptions {
        require_client_cert: true,
        ..Default::default()
    };
    let redis = TlsRedis::start(&pki, &cert, opts);
    let url = format!("rediss://localhost:{}", redis.tls_port);
    let gw = tls_gateway(&url, &pki.ca_pem())
        .env("REDIS_TLS_CERT_PEM", &client.cert_pem)
        .env("REDIS_TLS_KEY_PEM", &client.key_pem)
        .start();
    stream_works(&gw, &mut redis.conn());
    assert!(!gw.log().contains("PRIVATE KEY"));
    // Without one, Redis refuses it (TLS 1.3: after the client's Finished,
    // so on the first read): a 503, not a hang.
    let gw = tls_gateway(&url, &pki.ca_pem()).start();
    refused(&gw, &["localhost:", "TLS", "CertificateRequired"]);
}

#[test]
fn tls_settings_without_rediss_are_a_config_error() {
    let redis = RedisServer::start();
    let pki = Pki::new("sse-gateway test CA");
    let gw = tls_gateway(&redis.url(), &pki.ca_pem()).start();
    let token = jwt::token("u1", "user");
    let resp = get(
        gw.addr(),
        &exec_path(&new_execution_id()),
        &[("Authorization", &bearer(&token))],
    );
    let body = expect_json_error_shape(&resp, 500);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("redis_tls_ca_pem"),
        "{body}"
    );
}

// ---------------------------------------------------------------------------
// Redis Cluster over TLS, nodes by name
// ---------------------------------------------------------------------------

/// Runs `cmd` on whichever node owns its key (the others answer MOVED).
fn on_owner<T: redis::FromRedisValue>(cluster: &TlsCluster, cmd: &redis::Cmd) -> (usize, T) {
    for (i, node) in cluster.nodes.iter().enumerate() {
        if let Ok(v) = cmd.query(&mut node.conn()) {
            return (i, v);
        }
    }
    panic!("no node accepted the command");
}

#[test]
fn tls_cluster_follows_moved_to_named_nodes() {
    let pki = Pki::new("sse-gateway test CA");
    let cert = pki.issue(&["localhost"], false);
    let cluster = TlsCluster::start(&pki, &cert);
    // An execution whose record and channel both live off the first node
    // (slots 0-5460), so the gateway must follow `MOVED localhost:<port>`.
    let id = loop {
        let id = new_execution_id();
        // Redis' own slot of a key (`CLUSTER KEYSLOT` answers on any node).
        let off_first = |k: String| {
            let slot: i64 = redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(k)
                .query(&mut cluster.nodes[0].conn())
                .expect("CLUSTER KEYSLOT");
            slot > 5460
        };
        if off_first(format!("exec:{id}")) && off_first(exec_channel(&id)) {
            break id;
        }
    };
    let mut hset = redis::cmd("HSET");
    hset.arg(format!("exec:{id}")).arg(&[
        "user_id",
        "u1",
        "status",
        "running",
        "updated_at",
        "2025-01-15T10:30:00Z",
    ]);
    let (owner, _): (usize, i64) = on_owner(&cluster, &hset);
    assert_ne!(owner, 0);
    let moved = redis::cmd("EXISTS")
        .arg(format!("exec:{id}"))
        .query::<i64>(&mut cluster.nodes[0].conn())
        .unwrap_err();
    let (node, _) = moved.redirect_node().expect("MOVED");
    assert!(node.starts_with("localhost:"), "MOVED names a host: {node}");
    let first = cluster.nodes[0].tls_port;
    // Under Spin every node's port is allowed (a range, end excluded).
    let ports = cluster.nodes.iter().map(|n| n.tls_port);
    let (lo, hi) = (ports.clone().min().unwrap(), ports.max().unwrap());
    let gw = tls_gateway(&format!("rediss://localhost:{first}"), &pki.ca_pem())
        .env("REDIS_CLUSTER", "true")
        .env(
            "REDIS_ALLOWED_HOSTS",
            &format!("tcp://127.0.0.1:{lo}..{}", hi + 1),
        )
        .start();
    let token = jwt::token("u1", "user");
    let mut s = open_stream(
        gw.addr(),
        &exec_path(&id),
        &[("Authorization", &bearer(&token))],
    );
    assert_eq!(s.next_json(EVENT)["status"], "running");
    let channel = exec_channel(&id);
    let mut numsub = redis::cmd("PUBSUB");
    numsub.arg("SHARDNUMSUB").arg(&channel);
    // Every node answers SHARDNUMSUB (for its own shards): sum them.
    let subscribers = || -> i64 {
        let per_node = cluster
            .nodes
            .iter()
            .map(|n| numsub.query::<(String, i64)>(&mut n.conn()));
        per_node.map(|r| r.unwrap().1).sum()
    };
    let deadline = Instant::now() + EVENT;
    while subscribers() != 1 {
        assert!(
            Instant::now() < deadline,
            "gateway never subscribed on the owner"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let event = json!({"event_type": "pod_running", "execution_id": id});
    let mut spublish = redis::cmd("SPUBLISH");
    spublish.arg(&channel).arg(event.to_string());
    let (_, receivers): (usize, i64) = on_owner(&cluster, &spublish);
    assert_eq!(receivers, 1);
    assert_eq!(s.next_json(EVENT), event);
}
