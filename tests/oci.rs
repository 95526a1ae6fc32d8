//! The OCI package (docs/DEPLOY.md, "Release: the OCI package"):
//! `scripts/package.sh` pushes the default and the p3 app to a registry
//! (here Debian's `docker-registry` on loopback, plain HTTP, storage in a
//! private directory), and `spin up --from` serves each from there with
//! its settings from `SPIN_VARIABLE_*`: a browser-side stream sees an event
//! published to Redis and one published through the gateway.
//!
//! Spin only, and once per suite: it pushes and serves both builds, so it
//! runs in the Spin pass of the default build (`SSE_GATEWAY_HOST=spin`) and
//! says so in one printed line in the other passes.

mod common;

use common::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const EVENT: Duration = Duration::from_secs(10);
const WASM_LAYER: &str = "application/vnd.wasm.content.layer.v1+wasm";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// True in the run that serves the default build under Spin.
fn in_the_spin_pass(test: &str) -> bool {
    if !runs_on(
        Host::Spin,
        test,
        "Spin's registry client and `spin up --from`",
    ) {
        return false;
    }
    if common::p3::p3_build() {
        println!(
            "[e2e] {test}: runs in the Spin pass of the default build (it pushes and serves \
             both builds); not run again under p3-spin"
        );
        return false;
    }
    true
}

/// A private `docker-registry` (Debian's package: distribution 2.8) on a
/// free loopback port, plain HTTP, no auth, storage in its own directory;
/// killed and removed on Drop.
struct Registry {
    port: u16,
    child: Option<Child>,
    dir: PathBuf,
    log_path: PathBuf,
}

impl Registry {
    fn start() -> Registry {
        let bin = registry_bin();
        let mut last_err = String::new();
        for _ in 0..5 {
            let port = free_port();
            let dir = e2e_dir()
                .join("registry")
                .join(format!("{port}-{}", unique_tag()));
            fs::create_dir_all(dir.join("data")).expect("create the registry's directory");
            let config = format!(
                "version: 0.1\n\
                 log:\n  level: warn\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: 127.0.0.1:{port}\n  secret: e2e-only\n",
                dir.join("data").display()
            );
            fs::write(dir.join("config.yml"), config).expect("write config.yml");
            let log_path = log_dir().join(format!("registry-{port}-{}.log", unique_tag()));
            let log = fs::File::create(&log_path).expect("create the registry log");
            let mut cmd = Command::new(&bin);
            cmd.arg("serve")
                .arg(dir.join("config.yml"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log);
            die_with_parent(&mut cmd);
            let child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
            let mut registry = Registry {
                port,
                child: Some(child),
                dir,
                log_path,
            };
            match registry.wait_ready() {
                Ok(()) => return registry,
                Err(e) => last_err = e,
            }
        }
        panic!("could not start docker-registry: {last_err}");
    }

    /// `GET /v2/` answers 200 (the API is up), or the process exited.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(format!("exited with {status}: {}", self.log()));
            }
            if std::net::TcpStream::connect(self.addr()).is_ok()
                && get(self.addr(), "/v2/", &[]).status == 200
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("/v2/ never answered: {}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// A JSON document the registry serves (`/v2/...`), 200 required.
    fn json(&self, path: &str) -> Value {
        let resp = get(self.addr(), path, &[("Accept", OCI_MANIFEST)]);
        assert_eq!(resp.status, 200, "GET {path}: {}", resp.text());
        serde_json::from_str(&resp.text())
            .unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {}", resp.text()))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        kill_tree(&mut self.child);
        if std::thread::panicking() {
            eprintln!(
                "----- docker-registry log -----\n{}",
                tail(&self.log(), 8000)
            );
        } else {
            let _ = fs::remove_file(&self.log_path);
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Debian's `docker-registry` (scripts/tools.sh installs it).
fn registry_bin() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join("docker-registry"))
        .find(|p| p.is_file())
        .expect(
            "docker-registry not found: install Debian's docker-registry package \
             (scripts/tools.sh does)",
        )
}

fn sha256_file(path: &Path) -> String {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let hex: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// The one wasm layer `reference` holds on `registry` (repository and tag).
fn pushed_wasm_digest(registry: &Registry, repository: &str, tag: &str) -> String {
    let manifest = registry.json(&format!("/v2/{repository}/manifests/{tag}"));
    let wasm: Vec<&Value> = manifest["layers"]
        .as_array()
        .unwrap_or_else(|| panic!("{repository}:{tag}: no layers: {manifest}"))
        .iter()
        .filter(|l| l["mediaType"] == WASM_LAYER)
        .collect();
    assert_eq!(
        wasm.len(),
        1,
        "{repository}:{tag}: one wasm layer: {manifest}"
    );
    wasm[0]["digest"].as_str().unwrap().to_string()
}

/// What a browser does with the served app: readiness through Redis, an
/// execution stream with a token signed here that sees an event published
/// to Redis and one published through the gateway (with its history id),
/// and the routes the manifest sends to the gateway beside `/api/v1/events`.
fn serves_streams(gw: &Gateway, redis: &RedisServer, what: &str) {
    let ready = get(gw.addr(), READY_PATH, &[]);
    assert_eq!(ready.status, 200, "{what}: readiness {}", ready.text());
    assert_eq!(ready.json()["redis"], "ok", "{what}");

    let rec = ExecRecord::new(&new_execution_id(), "alice", "running");
    redis.put_execution(&rec);
    let auth = bearer(&jwt::token("alice", "user"));
    let mut s = open_stream(gw.addr(), &exec_path(&rec.id), &[("Authorization", &auth)]);
    assert_eq!(
        s.next_json(EVENT)["event_type"],
        "status",
        "{what}: {}",
        gw.log()
    );
    let ch = exec_channel(&rec.id);
    redis
        .wait_numsub(&ch, 1, EVENT)
        .unwrap_or_else(|n| panic!("{what}: never subscribed (NUMSUB {n}): {}", gw.log()));
    let running = json!({"event_type": "pod_running", "execution_id": rec.id});
    assert_eq!(redis.publish(&ch, &running.to_string()), 1, "{what}");
    assert_eq!(s.next_json(EVENT), running, "{what}");

    let done = json!({"event_type": "result_stored", "execution_id": rec.id});
    let resp = post_json(
        gw.addr(),
        &exec_path(&rec.id),
        Some(&service_token()),
        &done.to_string(),
    );
    let id = expect_accepted(&resp, what);
    let ev = s.next_event(EVENT);
    assert_eq!(ev.id.as_deref(), Some(id.as_str()), "{what}");
    assert_eq!(ev.json(), done, "{what}");
    s.expect_end(EVENT);

    // Spin answers a path no trigger routes with an empty 404; these come
    // from the gateway, so the pushed app routes them to it.
    let admin = get(
        gw.addr(),
        "/api/v1/admin/events/replay/r-1/status",
        &[("Authorization", &auth)],
    );
    expect_json_error(&admin, 403, "AdminAccessRequiredError");
    expect_json_error(&get(gw.addr(), "/demo", &[]), 404, "NotFoundError");
}

#[test]
fn packages_pushed_by_package_sh_run_with_spin_up_from() {
    if !in_the_spin_pass("packages_pushed_by_package_sh_run_with_spin_up_from") {
        return;
    }
    let spin = spin_bin().unwrap_or_else(|e| panic!("{e}"));
    let registry = Registry::start();
    // Spin's registry cache in the registry's private directory: nothing
    // comes from (or is left in) ~/.cache/spin.
    let cache = registry.dir.join("spin-cache");
    let tag = format!("e2e-{}", unique_tag());
    let reference = format!("127.0.0.1:{}/sse-gateway:{tag}", registry.port);
    let p3_reference = format!("127.0.0.1:{}/sse-gateway-p3:{tag}", registry.port);

    // The release step as documented, plus `--insecure`: this registry
    // speaks plain HTTP (Spin's `--insecure` means HTTP, not unverified TLS).
    let out = Command::new(crate_dir().join("scripts/package.sh"))
        .arg(&reference)
        .arg("--insecure")
        .arg("--cache-dir")
        .arg(&cache)
        .env("SPIN", &spin)
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/package.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "scripts/package.sh {reference} --insecure failed ({}):\n{}\n{}",
        out.status,
        stdout,
        tail(&stderr, 8000)
    );
    let printed: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        printed,
        [reference.as_str(), p3_reference.as_str()],
        "package.sh prints the two references it pushed"
    );
    let catalog = registry.json("/v2/_catalog");
    for repository in ["sse-gateway", "sse-gateway-p3"] {
        assert!(
            catalog["repositories"]
                .as_array()
                .is_some_and(|r| r.iter().any(|n| n == repository)),
            "{repository} not in the registry: {catalog}"
        );
    }
    // Each reference holds its own build: the file its manifest's `source`
    // names, byte for byte (the layer digest is the file's sha256).
    let built = [
        (
            "sse-gateway",
            "target/wasm32-wasip2/release/sse_gateway.wasm",
        ),
        (
            "sse-gateway-p3",
            "target/p3-spin/wasm32-wasip2/release/sse_gateway.wasm",
        ),
    ];
    for (repository, file) in built {
        assert_eq!(
            pushed_wasm_digest(&registry, repository, &tag),
            sha256_file(&crate_dir().join(file)),
            "{repository}:{tag} does not hold {file}"
        );
    }

    // Each app from the registry, nothing local: `spin up --from REF`.
    let p3_flags = [
        "--max-instance-reuse-count",
        "100000",
        "--max-instance-concurrent-reuse-count",
        "256",
    ];
    for (app, flags) in [(&reference, &[][..]), (&p3_reference, &p3_flags[..])] {
        let redis = RedisServer::start();
        let mut builder = GatewayBuilder::new(&redis.url())
            .on(Host::Spin)
            .spin_from(app)
            .arg("--insecure")
            .arg("--cache-dir")
            .arg(cache.to_str().unwrap());
        for flag in flags {
            builder = builder.arg(flag);
        }
        let gw = builder.start();
        serves_streams(&gw, &redis, app);
    }
}
