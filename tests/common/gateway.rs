//! The component under test and the host that serves it.

use super::*;
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// HS256 secret the default gateway is started with.
pub const SECRET: &str = "e2e-test-secret-0123456789abcdef-0123456789abcdef";

/// How long a freshly started gateway may take to accept connections
/// (the first start compiles the component).
pub const GATEWAY_START_TIMEOUT: Duration = Duration::from_secs(60);

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
