//! Spin only: what the shipped `spin.toml` promises under a real `spin up`
//! (every test here serves the default build with Spin, whatever
//! `SSE_GATEWAY_HOST` says; `scripts/test.sh` runs this file in its Spin
//! pass). The black-box behaviour shared with wasmtime is checked by every
//! other e2e file under both hosts.

mod common;

use common::*;
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const EVENT: Duration = Duration::from_secs(10);

fn spin_gateway(redis_url: &str) -> GatewayBuilder {
    GatewayBuilder::new(redis_url).on(Host::Spin)
}

/// A stream opens on `gw`, gets its status event and the published terminal
/// event, then ends: the gateway talked to Redis.
fn stream_works(gw: &Gateway, redis: &RedisServer) {
    let rec = ExecRecord::new(&new_execution_id(), "alice", "running");
    redis.put_execution(&rec);
    let auth = bearer(&jwt::token("alice", "user"));
    let mut s = open_stream(gw.addr(), &exec_path(&rec.id), &[("Authorization", &auth)]);
    assert_eq!(s.next_json(EVENT)["event_type"], "status", "{}", gw.log());
    let ch = exec_channel(&rec.id);
    redis
        .wait_numsub(&ch, 1, EVENT)
        .unwrap_or_else(|n| panic!("never subscribed (NUMSUB {n}): {}", gw.log()));
    let done = json!({"event_type": "result_stored", "execution_id": rec.id});
    redis.publish(&ch, &done.to_string());
    assert_eq!(s.next_json(EVENT)["event_type"], "result_stored");
    s.expect_end(EVENT);
}

fn auth_calls(redis: &RedisServer) -> String {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut redis.conn())
        .unwrap();
    info.lines()
        .filter(|l| l.starts_with("cmdstat_auth:"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn spin_allowed_outbound_hosts_gates_the_redis_connect() {
    let redis = RedisServer::start();
    // The manifest allows another port on the same host: Spin must refuse
    // the connect, and the gateway answer 503 (never trap) and keep serving.
    let other = free_port();
    let gw = spin_gateway(&redis.url())
        .spin_only_outbound(&[&format!("tcp://127.0.0.1:{other}")])
        .start();
    let auth = bearer(&jwt::token("alice", "user"));
    for _ in 0..2 {
        let started = Instant::now();
        let resp = get(
            gw.addr(),
            &exec_path(&new_execution_id()),
            &[("Authorization", &auth)],
        );
        expect_json_error(&resp, 503, "ServiceUnavailableError");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
    let ready = get(gw.addr(), READY_PATH, &[]);
    assert_eq!(ready.status, 503, "readiness: {}", ready.text());
    assert_eq!(redis.numsub("sse:exec:x"), 0);
    let log = gw.log();
    assert!(
        !log.contains("wasm trap") && !log.contains("panicked"),
        "the component trapped: {log}"
    );
}

#[test]
fn spin_up_without_jwt_secret_refuses_to_start() {
    let redis = RedisServer::start();
    let err = match spin_gateway(&redis.url())
        .without_env("JWT_SECRET")
        .try_start()
    {
        Ok(gw) => panic!("spin up served without jwt_secret: {}", gw.log()),
        Err(e) => e,
    };
    assert!(
        err.contains("exited early") && err.contains("jwt_secret"),
        "spin up must exit naming jwt_secret: {err}"
    );
}

#[test]
fn spin_empty_redis_password_connects_without_auth() {
    let redis = RedisServer::start();
    // The shipped template builds redis://:@host:port/0 from the empty
    // default: no AUTH may be sent (this Redis has no password, so an
    // AUTH would fail the connection).
    let gw = spin_gateway(&redis.url()).start();
    stream_works(&gw, &redis);
    assert_eq!(auth_calls(&redis), "", "the gateway sent AUTH");
}

#[test]
fn spin_redis_password_authenticates() {
    let redis = RedisServer::start();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("s3 cr@t")
        .query(&mut redis.conn())
        .unwrap();
    let url = format!("redis://:s3%20cr%40t@127.0.0.1:{}", redis.port());
    let gw = spin_gateway(&url).start();
    // The helpers' own connections need the password now.
    let client = redis::Client::open(url.clone() + "/").unwrap();
    let mut con = client.get_connection().unwrap();
    let rec = ExecRecord::new(&new_execution_id(), "alice", "running");
    let _: i64 = redis::cmd("HSET")
        .arg(format!("exec:{}", rec.id))
        .arg("user_id")
        .arg("alice")
        .arg("status")
        .arg("running")
        .arg("updated_at")
        .arg(&rec.updated_at)
        .query(&mut con)
        .unwrap();
    let auth = bearer(&jwt::token("alice", "user"));
    let mut s = open_stream(gw.addr(), &exec_path(&rec.id), &[("Authorization", &auth)]);
    assert_eq!(s.next_json(EVENT)["event_type"], "status", "{}", gw.log());
}

/// The commands of the `nth` ```sh block of README.md's section `heading`.
fn readme_commands(heading: &str, nth: usize) -> Vec<String> {
    let readme = std::fs::read_to_string(crate_dir().join("README.md")).unwrap();
    let section = readme
        .split(&format!("\n## {heading}"))
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .unwrap_or_else(|| panic!("README.md has a \"{heading}\" section"));
    let block = section
        .split("```sh\n")
        .nth(nth)
        .and_then(|b| b.split("```").next())
        .unwrap_or_else(|| panic!("the {heading} section has ```sh block {nth}"));
    block
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn spin_readme_commands_work_word_for_word() {
    readme_commands_serve_a_healthy_gateway(readme_commands("Running on Spin", 1));
}

/// The same for the p3 build's manifest (issue 25 item 1): `spin build -f
/// spin-p3.toml` (a plain cargo build) then `spin up -f spin-p3.toml`.
#[test]
fn spin_p3_readme_commands_work_word_for_word() {
    if !p3::p3_build() {
        println!("[e2e] spin_p3_readme_commands_work_word_for_word: p3 Spin pass only");
        return;
    }
    let commands = readme_commands("The WASIp3 build", 2);
    assert!(commands[0].contains("spin-p3.toml"), "{commands:?}");
    readme_commands_serve_a_healthy_gateway(commands);
}

/// Runs `commands` (the last one, `spin up`, in the background) with the
/// README's fixed ports in a private network namespace; the gateway they
/// start must answer its readiness check with Redis reachable.
fn readme_commands_serve_a_healthy_gateway(commands: Vec<String>) {
    assert!(
        commands.iter().any(|c| c.contains("spin up")),
        "no `spin up` in {commands:?}"
    );
    // Only the last command may start the server (it is run in the
    // background); a `spin up` before it would never return.
    let last = commands.len() - 1;
    assert!(
        commands[last].contains("spin up")
            && !commands[..last].iter().any(|c| c.contains("spin up")),
        "the README's first Spin block must end with its one `spin up`: {commands:?}"
    );
    let spin = spin_bin().unwrap_or_else(|e| panic!("{e}"));
    // The README's fixed ports (Redis 6379, Spin 3000) in a private network
    // namespace, so nothing else on the machine is in the way.
    let mut script = String::from(
        "set -eu\nip link set lo up\n\
         redis-server --port 6379 --bind 127.0.0.1 --save '' --appendonly no --daemonize yes >/dev/null\n",
    );
    for (i, c) in commands.iter().enumerate() {
        if i == last {
            script.push_str(&format!("{c} &\nup=$!\n"));
        } else {
            script.push_str(&format!("{c}\n"));
        }
    }
    script.push_str(
        "for _ in $(seq 600); do\n\
           if out=$(curl -sf -m 2 http://127.0.0.1:3000/api/v1/events/health/ready); then break; fi\n\
           sleep 0.1\n\
         done\n\
         echo \"HEALTH $out\"\n\
         kill $up; wait $up || true\n\
         redis-cli -p 6379 shutdown nosave >/dev/null 2>&1 || true\n",
    );
    let path = format!(
        "{}:{}",
        spin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = |args: &[&str]| {
        Command::new("unshare")
            .args(args)
            // A hard bound: whatever the README says, this never hangs CI.
            .args(["timeout", "-k", "5", "300", "bash", "-c", &script])
            .current_dir(crate_dir())
            .env("PATH", &path)
            .env_remove("CARGO_TARGET_DIR")
            .stdin(Stdio::null())
            .output()
            .expect("run unshare")
    };
    // Root can unshare the network directly; others need a user namespace.
    let mut out = run(&["--net"]);
    if !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("unshare failed") {
        out = run(&["--net", "--map-root-user"]);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let health = stdout
        .lines()
        .find_map(|l| l.strip_prefix("HEALTH "))
        .unwrap_or_default();
    assert!(
        health.contains("\"redis\":\"ok\""),
        "README's Spin commands {commands:?} did not serve a healthy gateway: \
         health {health:?}\n--- stdout ---\n{stdout}\n--- stderr ---\n{}",
        tail(&stderr, 8000)
    );
}
