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

/// Which host serves the component in this test run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Host {
    Wasmtime,
    Spin,
}

impl Host {
    pub fn name(self) -> &'static str {
        match self {
            Host::Wasmtime => "wasmtime",
            Host::Spin => "spin",
        }
    }
}

/// Which build it serves: p2 (one stream per instance; under Spin the
/// default build, under wasmtime the portable one) or p3 (many streams per
/// instance; `p3::p3_component`, `p3::p3_spin_component`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Build {
    P2,
    P3,
}

/// One pass of the e2e matrix, host × build, named by `SSE_GATEWAY_HOST`:
/// `wasmtime` (the default), `spin`, `p3-wasmtime`, `p3-spin`.
/// `scripts/test.sh` runs every e2e test binary once per pass. The
/// variable is read here only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pass {
    pub host: Host,
    pub build: Build,
}

impl Pass {
    pub const ALL: [Pass; 4] = [
        Pass {
            host: Host::Wasmtime,
            build: Build::P2,
        },
        Pass {
            host: Host::Spin,
            build: Build::P2,
        },
        Pass {
            host: Host::Wasmtime,
            build: Build::P3,
        },
        Pass {
            host: Host::Spin,
            build: Build::P3,
        },
    ];

    /// The pass `SSE_GATEWAY_HOST=name` selects (empty: the default).
    pub fn parse(name: &str) -> Result<Pass, String> {
        if name.is_empty() {
            return Ok(Pass::ALL[0]);
        }
        Pass::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| {
                let names: Vec<String> = Pass::ALL.iter().map(|p| p.name()).collect();
                format!(
                    "SSE_GATEWAY_HOST={name:?}: expected one of {}",
                    names.join(", ")
                )
            })
    }

    pub fn name(self) -> String {
        match self.build {
            Build::P2 => self.host.name().to_string(),
            Build::P3 => format!("p3-{}", self.host.name()),
        }
    }
}

/// This run's pass.
pub fn pass() -> Pass {
    static PASS: OnceLock<Pass> = OnceLock::new();
    *PASS.get_or_init(|| {
        let name = std::env::var("SSE_GATEWAY_HOST").unwrap_or_default();
        Pass::parse(&name).unwrap_or_else(|e| panic!("{e}"))
    })
}

/// This run's host (whichever build it serves).
pub fn host() -> Host {
    pass().host
}

/// For a test about one host only, whichever build: false (after one
/// printed line saying so) when this run serves the component with the
/// other host.
pub fn runs_on(only: Host, test: &str, why: &str) -> bool {
    if host() == only {
        return true;
    }
    println!(
        "[e2e] {test}: {} only ({why}); not run under {}",
        only.name(),
        host().name()
    );
    false
}

/// Path of the portable component. `SSE_GATEWAY_WASM` wins; otherwise
/// `scripts/build.sh portable` builds it once per test binary.
pub fn component_wasm() -> PathBuf {
    static WASM: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    if super::p3::p3_build() {
        return super::p3::p3_component();
    }
    built(&WASM, "SSE_GATEWAY_WASM", "portable")
}

/// Path of the default (Spin-variables) component. `SSE_GATEWAY_SPIN_WASM`
/// wins; otherwise `scripts/build.sh spin` builds it once per test binary
/// (into the path the shipped `spin.toml` names).
pub fn spin_component_wasm() -> PathBuf {
    static WASM: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    if super::p3::p3_build() {
        return super::p3::p3_spin_component();
    }
    built(&WASM, "SSE_GATEWAY_SPIN_WASM", "spin")
}

/// Path of the Spin build with `wasi:otel` (`scripts/build.sh otel`);
/// `SSE_GATEWAY_OTEL_WASM` wins.
pub fn otel_component_wasm() -> PathBuf {
    static WASM: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    built(&WASM, "SSE_GATEWAY_OTEL_WASM", "otel")
}

pub(super) fn built(cell: &OnceLock<Result<PathBuf, String>>, var: &str, variant: &str) -> PathBuf {
    let result = cell.get_or_init(|| {
        if let Some(path) = std::env::var_os(var) {
            let path = PathBuf::from(path);
            return if path.is_file() {
                Ok(path)
            } else {
                Err(format!("{var}={} is not a file", path.display()))
            };
        }
        build_component(variant)
    });
    match result {
        Ok(path) => path.clone(),
        Err(message) => panic!("{message}"),
    }
}

/// `scripts/build.sh VARIANT`: the one place that knows the cargo flags.
fn build_component(variant: &str) -> Result<PathBuf, String> {
    let started = Instant::now();
    let output = Command::new(crate_dir().join("scripts/build.sh"))
        .arg(variant)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("could not run scripts/build.sh {variant}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "scripts/build.sh {variant} failed ({}):\n--- stderr (tail) ---\n{}",
            output.status,
            tail(&String::from_utf8_lossy(&output.stderr), 12_000)
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let wasm = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
    if !wasm.is_file() {
        return Err(format!(
            "scripts/build.sh {variant} printed {:?}, which is not a file",
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
// Gateway (wasmtime serve or spin up)
// ---------------------------------------------------------------------------

pub struct GatewayBuilder {
    env: BTreeMap<String, String>,
    extra_args: Vec<String>,
    host: Option<Host>,
    spin_outbound: SpinOutbound,
    /// Environment of the host process itself (not a setting).
    host_env: Vec<(String, String)>,
    /// Under Spin, this component instead of the default build.
    spin_wasm: Option<PathBuf>,
    /// Under Spin, the app at this registry reference (`spin up --from`)
    /// instead of a manifest.
    spin_from: Option<String>,
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
            host: None,
            spin_outbound: SpinOutbound::default(),
            host_env: Vec::new(),
            spin_wasm: None,
            spin_from: None,
        }
    }

    /// A setting by its environment name; under Spin it becomes the
    /// application variable of the same name (see [`spin_variables`]).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.insert(key.to_string(), value.to_string());
        self
    }

    pub fn without_env(mut self, key: &str) -> Self {
        self.env.remove(key);
        self
    }

    /// Extra arguments for the host (`wasmtime serve` or `spin up`).
    pub fn arg(mut self, arg: &str) -> Self {
        self.extra_args.push(arg.to_string());
        self
    }

    /// Under Spin, one more `allowed_outbound_hosts` entry than the shipped
    /// manifest has (what an operator adds for the nodes of a Redis Cluster);
    /// wasmtime has no allowlist, so there it changes nothing.
    pub fn spin_allow_outbound(mut self, entry: &str) -> Self {
        self.spin_outbound.extra.push(entry.to_string());
        self
    }

    /// Under Spin, `allowed_outbound_hosts` replaced by `entries` (for the
    /// check that the allowlist really gates the connect).
    pub fn spin_only_outbound(mut self, entries: &[&str]) -> Self {
        self.spin_outbound.only = Some(entries.iter().map(|e| e.to_string()).collect());
        self
    }

    /// An environment variable of the host process (`OTEL_*` for Spin's
    /// exporter), not a gateway setting.
    pub fn host_env(mut self, key: &str, value: &str) -> Self {
        self.host_env.push((key.to_string(), value.to_string()));
        self
    }

    /// Under Spin, serve `wasm` (another build variant) instead of the
    /// default build.
    pub fn spin_wasm(mut self, wasm: PathBuf) -> Self {
        self.spin_wasm = Some(wasm);
        self
    }

    /// Under Spin, `spin up --from REFERENCE`: the app pushed to a registry
    /// (with its own manifest, so no allowlist change applies) instead of
    /// the shipped manifest. Registry options (`--insecure`, `--cache-dir`)
    /// go through [`GatewayBuilder::arg`].
    pub fn spin_from(mut self, reference: &str) -> Self {
        self.spin_from = Some(reference.to_string());
        self
    }

    /// Serve with `host` whatever `SSE_GATEWAY_HOST` says (host-specific
    /// test files).
    pub fn on(mut self, host: Host) -> Self {
        self.host = Some(host);
        self
    }

    pub fn start(self) -> Gateway {
        self.try_start()
            .unwrap_or_else(|e| panic!("could not start the gateway: {e}"))
    }

    /// Like [`GatewayBuilder::start`], but a host that refuses to start is
    /// an Err carrying its log.
    pub fn try_start(self) -> Result<Gateway, String> {
        let host = self.host.unwrap_or_else(host);
        let mut last_err = String::new();
        for _ in 0..4 {
            let port = free_port();
            let tag = unique_tag();
            let log_path = log_dir().join(format!("gateway-{port}-{tag}.log"));
            let spawned = match host {
                Host::Wasmtime => self.spawn_wasmtime(port, &log_path).map(|c| (c, None)),
                Host::Spin => {
                    let dir = e2e_dir().join("spin").join(format!("{port}-{tag}"));
                    self.spawn_spin(port, &log_path, &dir)
                        .map(|c| (c, Some(dir)))
                }
            };
            match spawned {
                Ok((child, spin_dir)) => {
                    return Ok(Gateway {
                        port,
                        child: Some(child),
                        log_path,
                        spin_dir,
                        host,
                    })
                }
                Err((message, retry)) => {
                    last_err = message;
                    if !retry {
                        break;
                    }
                }
            }
        }
        Err(last_err)
    }

    fn spawn_wasmtime(&self, port: u16, log_path: &Path) -> Result<Child, (String, bool)> {
        let wasmtime = wasmtime_bin();
        let wasm = component_wasm();
        let mut cmd = Command::new(&wasmtime);
        // `allow-ip-name-lookup`: Redis by name through the host's lookup.
        cmd.args(["serve", "-S", "cli", "-S", "inherit-network"]);
        cmd.args(["-S", "allow-ip-name-lookup"]);
        for (k, v) in &self.env {
            cmd.arg("--env").arg(format!("{k}={v}"));
        }
        cmd.args(&self.extra_args);
        cmd.args(super::p3::host_args(&self.extra_args));
        cmd.envs(self.host_env.iter().map(|(k, v)| (k, v)));
        cmd.arg("--addr")
            .arg(format!("127.0.0.1:{port}"))
            .arg(&wasm);
        let line = format!(
            "{} serve ... --addr 127.0.0.1:{port} {}",
            wasmtime.display(),
            wasm.display()
        );
        spawn_host(cmd, port, log_path, &line)
    }

    fn spawn_spin(&self, port: u16, log_path: &Path, dir: &Path) -> Result<Child, (String, bool)> {
        let spin = spin_bin().unwrap_or_else(|e| panic!("{e}"));
        let variables = spin_variables(&self.env).unwrap_or_else(|e| panic!("{e}"));
        fs::create_dir_all(dir).map_err(|e| (format!("create {}: {e}", dir.display()), false))?;
        let app = match &self.spin_from {
            Some(reference) => {
                let changed =
                    !self.spin_outbound.extra.is_empty() || self.spin_outbound.only.is_some();
                if changed || self.spin_wasm.is_some() {
                    let why = format!("spin up --from {reference} runs the pushed manifest as is");
                    return Err((why, false));
                }
                reference.clone()
            }
            None => {
                let wasm = self.spin_wasm.clone().unwrap_or_else(spin_component_wasm);
                let manifest =
                    spin_manifest(&wasm, &self.spin_outbound, dir).map_err(|e| (e, false))?;
                manifest.display().to_string()
            }
        };
        let mut cmd = Command::new(&spin);
        cmd.arg("up")
            .arg("-f")
            .arg(&app)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            // Spin's default per-app state (logs/) in a private directory:
            // component stderr goes there and to spin's own stderr (our log).
            .arg("--state-dir")
            .arg(dir.join("state"))
            .args(&self.extra_args)
            .args(super::p3::host_args(&self.extra_args));
        // Only the variables this test sets: none leak in from the caller.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("SPIN_VARIABLE_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(variables);
        cmd.envs(self.host_env.iter().map(|(k, v)| (k, v)));
        let line = format!("{} up -f {app} --listen 127.0.0.1:{port}", spin.display(),);
        spawn_host(cmd, port, log_path, &line)
    }
}

/// Start a host with its output in `log_path` and wait until it accepts
/// connections on `port`; Err((why, worth retrying on another port)).
fn spawn_host(
    mut cmd: Command,
    port: u16,
    log_path: &Path,
    line: &str,
) -> Result<Child, (String, bool)> {
    let log = File::create(log_path)
        .map_err(|e| (format!("create {}: {e}", log_path.display()), false))?;
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| (e.to_string(), false))?)
        .stderr(log);
    die_with_parent(&mut cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| (format!("spawn `{line}`: {e}"), false))?;
    let deadline = Instant::now() + GATEWAY_START_TIMEOUT;
    match wait_for_port(port, deadline, &mut child, log_path) {
        Ok(()) => Ok(child),
        Err(why) => {
            kill_tree(&mut Some(child));
            let log = fs::read_to_string(log_path).unwrap_or_default();
            let retry = log.contains("in use");
            Err((format!("`{line}` {why}; log:\n{}", tail(&log, 8000)), retry))
        }
    }
}

/// A running `wasmtime serve` or `spin up`; killed on Drop. If the test is
/// failing, its log (the host's and the component's stdout/stderr) is
/// printed.
pub struct Gateway {
    port: u16,
    child: Option<Child>,
    log_path: PathBuf,
    /// Under Spin: the manifest copy (if any) and the state directory.
    spin_dir: Option<PathBuf>,
    host: Host,
}

impl Gateway {
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn host(&self) -> Host {
        self.host
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The host's output: its own lines and the component's stdout/stderr
    /// (Spin prints component output to its stderr as well as to its log
    /// directory).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub fn stop(&mut self) {
        kill_tree(&mut self.child);
    }

    /// The process that runs the component while it runs: `wasmtime serve`,
    /// or the `spin trigger http` process `spin up` starts.
    pub fn pid(&self) -> Option<u32> {
        let pid = self.child.as_ref().map(Child::id)?;
        Some(children(pid).first().copied().unwrap_or(pid))
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        kill_tree(&mut self.child);
        if std::thread::panicking() {
            eprintln!(
                "----- gateway log ({}, {}) -----\n{}\n----- end of gateway log -----",
                self.host.name(),
                self.log_path.display(),
                tail(&self.log(), 20_000)
            );
        } else {
            // Keep target/e2e/logs for failing tests only.
            let _ = fs::remove_file(&self.log_path);
            if let Some(dir) = &self.spin_dir {
                let _ = fs::remove_dir_all(dir);
            }
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
