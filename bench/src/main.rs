//! `sse-bench`: the sse-gateway load benchmark.
//!
//! ```text
//! cargo run --release --manifest-path bench/Cargo.toml -- --quick
//! cargo run --release --manifest-path bench/Cargo.toml -- --full
//! ```
//!
//! Builds the portable component, starts its own `redis-server`, the
//! component under `wasmtime serve` (and under `spin up` when `spin` is on
//! PATH), and a native baseline built on the same core (on request also
//! the WASIp3 build, `p3`, and nginx with nchan); opens N concurrent
//! SSE streams per step, publishes through Redis and measures latency,
//! throughput, time to first event, connection rate, memory and CPU. Writes
//! `docs/bench/<name>.{json,md,png}`. See docs/PERFORMANCE.md.

mod burst;
mod cli;
mod client;
mod fanout_once;
mod jwt;
mod native;
mod nchan;
mod procs;
mod redis;
mod report;
mod soak;
mod stats;

use cli::{p3_c, BurstOpts, Opts};
use report::{Fanout, Latency, OpenStats, Results, Run, Step};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

const SECRET: &str = "bench-secret-0123456789abcdef-0123456789abcdef";
const HEARTBEAT_SECONDS: u64 = 15;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ has a parent")
        .to_path_buf()
}

/// The component target `t` serves: its compare variant's (target
/// `{prefix}{NAME}`), else `given`, else `build` built; and whether it is
/// a variant (whose size and path the run's metadata does not record).
fn component(
    variants: &[(String, PathBuf)],
    prefix: &str,
    t: &str,
    given: &Option<PathBuf>,
    build: &str,
) -> Result<(PathBuf, bool), String> {
    let variant = variants
        .iter()
        .find(|(name, _)| t.strip_prefix(prefix) == Some(name.as_str()));
    Ok(match (variant, given) {
        (Some((_, path)), _) => (path.clone(), true),
        (None, Some(w)) => (w.clone(), false),
        (None, None) => (build_component(build)?, false),
    })
}

fn main() {
    stats::now_ns();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("native-server") => {
            let addr = args
                .iter()
                .position(|a| a == "--addr")
                .and_then(|i| args.get(i + 1))
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| die("native-server needs --addr 127.0.0.1:PORT"));
            native::main(addr)
        }
        Some("fanout-once") => {
            if let Err(e) = fanout_once::main(&args[1..]) {
                die(&e)
            }
        }
        Some("render") => {
            let path = args
                .get(1)
                .unwrap_or_else(|| die("render needs a results .json"));
            let text = std::fs::read_to_string(path).unwrap_or_else(|e| die(&e.to_string()));
            let r: Results = serde_json::from_str(&text).unwrap_or_else(|e| die(&e.to_string()));
            write_outputs(&r, Path::new(path).with_extension("").as_path());
        }
        _ => {
            let p3_wasm = std::env::var_os("SSE_GATEWAY_P3_WASM").map(PathBuf::from);
            let out = repo_root().join("docs").join("bench");
            let opts = match cli::parse(&args, find_spin().is_some(), p3_wasm, out) {
                Ok(o) => o,
                Err((text, is_error)) => {
                    if is_error {
                        eprint!("{text}");
                        std::process::exit(2);
                    }
                    print!("{text}");
                    return;
                }
            };
            install_cleanup();
            let code = match run(opts) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("error: {e}");
                    1
                }
            };
            procs::kill_all();
            std::process::exit(code);
        }
    }
}

fn die(msg: &str) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(2)
}

/// Children die with the tool: on panic (hook), on Ctrl-C / SIGTERM (a
/// thread waiting on the signals) and on SIGKILL (PDEATHSIG, see procs).
fn install_cleanup() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        procs::kill_all();
        default(info);
    }));
    std::thread::spawn(|| {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => return,
                };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            eprintln!("\ninterrupted: stopping redis and the servers");
            procs::kill_all();
            std::process::exit(130);
        });
    });
}

fn say(msg: impl AsRef<str>) {
    eprintln!(
        "[bench {:>7.1}s] {}",
        stats::now_ns() as f64 / 1e9,
        msg.as_ref()
    );
}

/// A server under test.
struct Server {
    name: String,
    addr: SocketAddr,
    pid: Option<u32>,
    child: Option<procs::Child>,
    kind: Kind,
    /// Streams this server can hold within the open-file limit.
    max_streams: usize,
}

/// How the tool feeds a server: the gateway (records and events through
/// Redis) or nchan (events POSTed to it).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Gateway,
    Nchan,
}

impl Server {
    /// The server `name` at `addr`, run by `child`.
    fn started(
        name: &str,
        addr: SocketAddr,
        child: procs::Child,
        kind: Kind,
        max: usize,
    ) -> Server {
        Server {
            name: name.to_string(),
            addr,
            pid: Some(child.pid),
            child: Some(child),
            kind,
            max_streams: max,
        }
    }

    fn check(&mut self) -> Result<(), String> {
        if let Some(c) = self.child.as_mut() {
            if let Some(status) = c.exited() {
                return Err(format!(
                    "{} exited ({status}):\n{}",
                    self.name,
                    c.log_tail(4000)
                ));
            }
        }
        Ok(())
    }
}

fn wait_healthy(server: &mut Server, timeout: Duration) -> Result<(), String> {
    if let Some(c) = server.child.as_mut() {
        procs::wait_listening(server.addr, timeout, c)?;
    }
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match procs::http_status(
            server.addr,
            "/api/v1/events/health/ready",
            Duration::from_secs(5),
        ) {
            Ok(200) => return Ok(()),
            other if std::time::Instant::now() > deadline => {
                return Err(format!("{} health check: {other:?}", server.name))
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
        server.check()?;
    }
}

/// `scripts/build.sh VARIANT` (`portable` or `spin`): the one place that
/// knows each build's cargo flags; it prints the component's path last.
fn build_component(variant: &str) -> Result<PathBuf, String> {
    say(format!(
        "building the {variant} component: scripts/build.sh {variant}"
    ));
    let out = Command::new(repo_root().join("scripts/build.sh"))
        .arg(variant)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("scripts/build.sh: {e}"))?;
    if !out.status.success() {
        return Err(format!("component build failed ({})", out.status));
    }
    let printed = String::from_utf8_lossy(&out.stdout);
    let wasm = PathBuf::from(printed.lines().last().unwrap_or_default().trim());
    if wasm.is_file() {
        Ok(wasm)
    } else {
        Err(format!(
            "scripts/build.sh {variant} printed {printed:?}, not a file"
        ))
    }
}

/// spin-p3.toml with its `source` set to `wasm` (an absolute path), in
/// `dir`: the manifest for a component configured by `spin up -e`. Its
/// Spin variables (the p3-spin build's) go unread by such a component; only
/// the allowlist's `redis_host`/`redis_port` and the required `jwt_secret`
/// must be set (the caller sets all three).
fn spin_env_manifest(root: &Path, wasm: &Path, dir: &Path) -> Result<PathBuf, String> {
    const SOURCE: &str = "source = \"target/p3-spin/wasm32-wasip2/release/sse_gateway.wasm\"";
    let shipped = root.join("spin-p3.toml");
    let text =
        std::fs::read_to_string(&shipped).map_err(|e| format!("{}: {e}", shipped.display()))?;
    if !text.contains(SOURCE) {
        return Err(format!("spin-p3.toml lacks `{SOURCE}`"));
    }
    let wasm = wasm
        .canonicalize()
        .map_err(|e| format!("{}: {e}", wasm.display()))?;
    let text = text.replacen(
        SOURCE,
        &format!("source = {:?}", wasm.display().to_string()),
        1,
    );
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let path = dir.join("spin.toml");
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// Spin as the tests find it: `$SPIN`, `spin` on PATH, or what
/// `../shared/spin/install.sh` (beside the clone) unpacks and prints.
fn find_spin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SPIN").map(PathBuf::from) {
        return p.is_file().then_some(p);
    }
    if let Some(p) = procs::which("spin") {
        return Some(p);
    }
    let install = repo_root().join("../shared/spin/install.sh");
    let out = Command::new(install).stdin(Stdio::null()).output().ok()?;
    let printed = String::from_utf8_lossy(&out.stdout);
    let p = PathBuf::from(printed.lines().last()?.trim());
    (out.status.success() && p.is_file()).then_some(p)
}

fn find_wasmtime(opt: &Option<PathBuf>) -> Option<PathBuf> {
    if let Some(p) = opt {
        return Some(p.clone());
    }
    if let Some(p) = std::env::var_os("WASMTIME") {
        return Some(p.into());
    }
    let home = std::env::var_os("HOME")?;
    let cache = std::env::var_os("SSE_GATEWAY_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(home).join(".cache/sse-gateway"));
    let cached = cache.join("wasmtime-48.0.8/bin/wasmtime");
    if cached.is_file() {
        return Some(cached);
    }
    procs::which("wasmtime")
}

/// The `wasmtime serve` pool and connection limits for `cap` concurrent
/// streams. One instance of this component uses 3–4 core instances (the
/// module plus canonical-ABI shim modules), 1 linear memory and 2
/// tables (the module's and the shims' indirect-call table): with
/// `pooling-total-tables` equal to the instance count, wasmtime 48 refused
/// instances past half of it ("maximum concurrent limit ... for tables").
fn wasmtime_limits(cap: usize) -> Vec<String> {
    let mut v = Vec::new();
    for (k, n) in [
        ("pooling-total-component-instances", cap),
        // 4, not 3, since the portable build grew a core instance: with
        // `cap * 3` a 1,200 cap stopped at exactly 900 streams ("maximum
        // concurrent limit of 3600 for core instances reached").
        ("pooling-total-core-instances", cap * 4),
        ("pooling-total-memories", cap),
        ("pooling-total-tables", cap * 2),
        ("pooling-total-stacks", cap),
    ] {
        v.push("-O".to_string());
        v.push(format!("{k}={n}"));
    }
    v.push("--max-concurrent-connections".into());
    v.push(cap.to_string());
    v.push("--max-concurrent-requests".into());
    v.push(cap.to_string());
    v
}

/// The `--target-arg` arguments for `target`.
/// `wasmtime serve` of `wasm` for `target` at `addr`: the host's limits
/// for this build, then every wasmtime argument and the target's own.
fn wasmtime_serve(
    wasmtime: &Path,
    limits: &[String],
    opts: &Opts,
    target: &str,
    redis_url: &str,
    addr: SocketAddr,
    wasm: &Path,
) -> Command {
    let mut cmd = Command::new(wasmtime);
    cmd.args(["serve", "-S", "cli", "-S", "inherit-network"])
        .args(limits)
        .args(&opts.wasmtime_args)
        .args(target_args(opts, target))
        .envs(target_env(opts, target))
        .args(["--env", &format!("REDIS_URL={redis_url}")])
        .args(["--env", &format!("JWT_SECRET={}", opts.jwt_secret)])
        .args(["--addr", &addr.to_string()])
        .arg(wasm);
    cmd
}

fn target_args<'a>(opts: &'a Opts, target: &'a str) -> impl Iterator<Item = &'a String> {
    opts.target_args
        .iter()
        .filter(move |(t, _)| t == target)
        .map(|(_, a)| a)
}

/// The `--target-env` variables for `target`'s host process.
fn target_env<'a>(
    opts: &'a Opts,
    target: &'a str,
) -> impl Iterator<Item = (&'a String, &'a String)> {
    opts.target_env
        .iter()
        .filter(move |(t, _, _)| t == target)
        .map(|(_, k, v)| (k, v))
}

/// `--target-wasmtime`'s binary for `target`, else the run's wasmtime.
fn target_wasmtime(opts: &Opts, target: &str) -> Option<PathBuf> {
    match opts.target_wasmtime.iter().find(|(t, _)| t == target) {
        Some((_, path)) => Some(path.clone()),
        None => find_wasmtime(&opts.wasmtime),
    }
}

fn command_line(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        let a = a.to_string_lossy();
        if a.contains(' ') || a.is_empty() {
            s.push_str(&format!(" '{a}'"));
        } else {
            s.push(' ');
            s.push_str(&a);
        }
    }
    s
}

/// The 1, 5 and 15 minute load averages.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn host_info(nofile: (u64, u64)) -> report::HostInfo {
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0);
    report::HostInfo {
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        mem_total_kib: mem,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
        nofile_soft: nofile.0,
        nofile_hard: nofile.1,
    }
}

struct Ctx {
    opts: Opts,
    redis: SocketAddr,
    redis_pid: Option<u32>,
    run_id: u64,
}

impl Ctx {
    /// A token for `user` (24 h).
    fn token(&self, user: &str, role: &str) -> String {
        jwt::mint(&self.opts.jwt_secret, user, role, 24 * 3600)
    }
}

fn run(opts: Opts) -> Result<(), String> {
    let started_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let nofile = procs::raise_nofile();
    let root = repo_root();
    let work = root.join("bench/target/run").join(&opts.name);
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let max_step = *opts.steps.iter().max().unwrap_or(&100);
    // A p2 stream holds 2 sockets in the server (browser + Redis); a p3 or
    // nchan stream 1 (instances share their Redis connections); every
    // stream 1 in the client (this process). Keep 100 spare.
    let cap1 = (nofile.1 as usize).saturating_sub(200);
    let cap2 = (nofile.1 as usize).saturating_sub(100) / 2;
    let mut notes = Vec::new();
    let steps: Vec<usize> = opts.steps.iter().copied().filter(|&n| n <= cap1).collect();
    if steps.len() < opts.steps.len() {
        notes.push(format!(
            "steps above {cap1} streams skipped: the open-file limit ({}) allows one socket per stream in the client",
            nofile.1
        ));
    }
    let cap = max_step.min(cap2) + 200;
    let cap_shared = max_step.min(cap1) + 200;
    let mut meta = report::Meta {
        mode: opts.name.clone(),
        started_unix,
        host: host_info(nofile),
        loadavg_start: loadavg(),
        redis: procs::first_line(&sse_gateway_testkit::redis_server::binary(), &["--version"]),
        settings: report::Settings {
            steps: steps.clone(),
            targets: opts.targets.clone(),
            rate_per_s: opts.rate,
            phase_seconds: opts.phase_s,
            idle_seconds: opts.idle_s,
            open_concurrency: opts.concurrency,
            fanout_group: opts.fanout_group,
            fanout_rates: opts.fanout_rates.clone(),
            fanout_seconds: opts.fanout_s,
            heartbeat_seconds: HEARTBEAT_SECONDS,
        },
        ..Default::default()
    };

    // Redis: our own, unless benchmarking a given URL.
    let mut children: Vec<procs::Child> = Vec::new();
    let (redis_addr, redis_pid) = match opts.redis_url {
        Some(a) => (a, None),
        None => {
            let (addr, child) = start_redis(&work, nofile, &mut meta)?;
            let pid = child.pid;
            children.push(child);
            (addr, Some(pid))
        }
    };
    // The servers under test.
    let caps = Caps {
        cap1,
        cap2,
        cap,
        cap_shared,
    };
    let launch = Launch {
        opts: &opts,
        caps,
        redis_addr,
        work: &work,
    };
    let mut servers: Vec<Server> = Vec::new();
    for target in &opts.targets {
        let port = procs::free_port().map_err(|e| e.to_string())?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        servers.extend(start_target(target, addr, launch, &mut meta, &mut notes)?);
    }
    if meta.wasmtime.is_empty() {
        meta.wasmtime = find_wasmtime(&opts.wasmtime)
            .map(|w| procs::first_line(&w, &["--version"]))
            .unwrap_or_default();
    }
    for s in &mut servers {
        wait_healthy(s, Duration::from_secs(120))?;
        say(format!("{} ready on http://{}/", s.name, s.addr));
    }

    let ctx = Ctx {
        redis: redis_addr,
        redis_pid,
        run_id: started_unix,
        opts: opts.clone(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    if let Some(so) = &opts.soak {
        let soaked = run_soak(&rt, &ctx, &mut servers, so);
        drop(servers);
        drop(children);
        return soaked;
    }
    let mut runs: Vec<Run> = servers
        .iter()
        .map(|s| Run {
            target: s.name.clone(),
            steps: Vec::new(),
        })
        .collect();
    let mut skipped: Vec<String> = Vec::new();
    let mut bursts: Vec<report::Burst> = Vec::new();
    let result: Result<(), String> = rt.block_on(async {
        // Warm-up: a few streams per server so first-request costs (lazy
        // init, page faults of the first instances) are not in step 1.
        for s in servers.iter_mut() {
            let _ = run_step(&ctx, s, 20, true).await?;
        }
        if let Some(b) = &opts.bursts {
            return run_bursts(&ctx, &mut servers, b, &mut bursts).await;
        }
        for &n in &steps {
            for (i, s) in servers.iter_mut().enumerate() {
                if n > s.max_streams {
                    let line = format!(
                        "{}: step {n} skipped: the open-file limit ({}) holds {} of its streams \
                         (2 sockets each in the server for p2 builds and the native baseline)",
                        s.name, nofile.1, s.max_streams
                    );
                    say(&line);
                    skipped.push(line);
                    continue;
                }
                say(format!("{}: step {n} streams", s.name));
                let step = run_step(&ctx, s, n, false).await?;
                say(format!(
                    "{}: {n} streams: held {}, open {:.0}/s, TTFE p50 {:.2} ms, latency p50 {:.2} p99 {:.2} max {:.2} ms, {:.1} µs CPU/event, {:.1} KiB/stream, idle {:.2}% CPU, fan-out {:.0}/s",
                    s.name,
                    step.held,
                    step.open.per_s,
                    step.open.ttfe.p50_ms,
                    step.latency.latency.p50_ms,
                    step.latency.latency.p99_ms,
                    step.latency.latency.max_ms,
                    step.latency.server_cpu_us_per_event,
                    step.rss_per_stream_kib,
                    step.idle.server_cpu_pct,
                    step.fanout.as_ref().map_or(0.0, |f| f.max_delivered_per_s),
                ));
                runs[i].steps.push(step);
                // Progress on disk after every step: a run stopped from
                // outside still leaves what it measured (`sse-bench render`).
                let snap = Results {
                    meta: meta.clone(),
                    runs: runs.clone(),
                    bursts: Vec::new(),
                };
                if let Ok(text) = serde_json::to_string_pretty(&snap) {
                    let _ = std::fs::write(work.join("progress.json"), text);
                }
            }
        }
        Ok(())
    });
    drop(servers);
    drop(children);
    meta.seconds_total = stats::now_ns() as f64 / 1e9;
    meta.notes = notes;
    meta.notes.extend(skipped);
    meta.loadavg_end = loadavg();
    meta.notes.push(if opts.bursts.is_some() {
        "Client (this tool: one thread for all streams), Redis and the server share the \
         same 2 CPUs: the readers of a burst are read by one thread, so the time to the last \
         event includes the tool's own reading."
            .into()
    } else {
        "Client (this tool: one thread for all streams plus a publisher thread), Redis and \
         the server share the same 2 CPUs; CPU shares per phase are in the details table."
            .into()
    });
    let results = Results { meta, runs, bursts };
    let partial = result.is_err();
    let base = opts.out.join(if partial {
        format!("{}-partial", opts.name)
    } else {
        opts.name.clone()
    });
    write_outputs(&results, &base);
    result
}

/// The run's own `redis-server` (no persistence, unlimited pub/sub
/// buffers, as many clients as the open-file limit allows), listening.
fn start_redis(
    work: &Path,
    nofile: (u64, u64),
    meta: &mut report::Meta,
) -> Result<(SocketAddr, procs::Child), String> {
    let port = procs::free_port().map_err(|e| e.to_string())?;
    let dir = work.join("redis");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let maxclients = (nofile.1 as usize).saturating_sub(64).clamp(1000, 100_000);
    let mut cmd = sse_gateway_testkit::redis_server::command(port, &dir);
    cmd.args([
        "--appendonly",
        "no",
        "--maxclients",
        &maxclients.to_string(),
        "--client-output-buffer-limit",
        "pubsub 0 0 0",
        "--tcp-backlog",
        "4096",
    ]);
    meta.commands.insert("redis".into(), command_line(&cmd));
    let mut child = procs::Child::spawn("redis-server", cmd, &work.join("redis.log"))
        .map_err(|e| format!("redis-server: {e} (apt-get install redis-server)"))?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    procs::wait_listening(addr, Duration::from_secs(10), &mut child)?;
    say(format!("redis-server on {addr} (maxclients {maxclients})"));
    Ok((addr, child))
}

/// How many streams the open-file limit lets each kind of server hold
/// (see [`run`]).
#[derive(Clone, Copy)]
struct Caps {
    /// Streams with one socket each in the server (p3, nchan).
    cap1: usize,
    /// Streams with two sockets each in the server (p2: browser + Redis).
    cap2: usize,
    /// A p2 host's instances (the largest step, bounded by `cap2`).
    cap: usize,
    /// A p3 host's connections (the largest step, bounded by `cap1`).
    cap_shared: usize,
}

/// What every server of a run is started with.
#[derive(Clone, Copy)]
struct Launch<'a> {
    opts: &'a Opts,
    caps: Caps,
    /// The run's Redis, which every server is pointed at.
    redis_addr: SocketAddr,
    /// The run's work directory (logs, state, configs).
    work: &'a Path,
}

impl Launch<'_> {
    fn redis_url(&self) -> String {
        format!("redis://{}", self.redis_addr)
    }
}

/// Starts `target` on `addr` (not yet healthy); `None` when it is
/// skipped (nchan not installed), with a note saying why.
fn start_target(
    target: &str,
    addr: SocketAddr,
    launch: Launch<'_>,
    meta: &mut report::Meta,
    notes: &mut Vec<String>,
) -> Result<Option<Server>, String> {
    let Launch {
        opts,
        caps,
        redis_addr,
        work,
    } = launch;
    let Caps {
        cap1,
        cap2,
        cap,
        cap_shared,
    } = caps;
    let redis_url = launch.redis_url();
    let server = match target {
        "url" => Server {
            name: "url".into(),
            addr: opts.url.expect("checked"),
            pid: opts.server_pid,
            child: None,
            kind: Kind::Gateway,
            max_streams: cap1,
        },
        t if t.starts_with("wasmtime") => {
            let wasmtime = target_wasmtime(opts, t)
                .ok_or("wasmtime not found: set WASMTIME or run scripts/tools.sh (see README)")?;
            meta.wasmtime = procs::first_line(&wasmtime, &["--version"]);
            let (wasm, variant) =
                component(&opts.variants, "wasmtime-", t, &opts.wasm, "portable")?;
            if !variant {
                meta.component_bytes = std::fs::metadata(&wasm).ok().map(|m| m.len());
                meta.component_path = Some(wasm.display().to_string());
            }
            let cmd = wasmtime_serve(
                &wasmtime,
                &wasmtime_limits(cap),
                opts,
                t,
                &redis_url,
                addr,
                &wasm,
            );
            meta.commands.insert(t.to_string(), command_line(&cmd));
            say(format!(
                "starting wasmtime serve for {t} (compiles the component)"
            ));
            let child = procs::Child::spawn(t, cmd, &work.join(format!("{t}.log")))
                .map_err(|e| format!("wasmtime: {e}"))?;
            Server::started(target, addr, child, Kind::Gateway, cap2)
        }
        t if p3_c(t).is_some() => {
            let c = p3_c(t).expect("checked");
            let wasmtime = target_wasmtime(opts, t)
                .ok_or("wasmtime not found: set WASMTIME or run scripts/tools.sh (see README)")?;
            let (wasm, variant) = component(&opts.p3_variants, "p3.", t, &opts.p3_wasm, "p3")?;
            if !variant {
                meta.p3_component_bytes = std::fs::metadata(&wasm).ok().map(|m| m.len());
                meta.p3_component_path = Some(wasm.display().to_string());
            }
            // The README's p3 flags: an instance takes new streams for
            // as long as it lives, C handlers at once.
            let limits = [
                "--max-instance-reuse-count".to_string(),
                "100000".to_string(),
                "--max-instance-concurrent-reuse-count".to_string(),
                c.to_string(),
                "--max-concurrent-connections".to_string(),
                cap_shared.to_string(),
            ];
            let cmd = wasmtime_serve(&wasmtime, &limits, opts, t, &redis_url, addr, &wasm);
            meta.commands.insert(t.to_string(), command_line(&cmd));
            say(format!("starting wasmtime serve for {t} (p3, C = {c})"));
            let child = procs::Child::spawn(t, cmd, &work.join(format!("{t}.log")))
                .map_err(|e| format!("wasmtime: {e}"))?;
            Server::started(target, addr, child, Kind::Gateway, cap1)
        }
        "nchan" | "nchan-redis" => {
            let (nginx, module) = match nchan::find(opts.nginx.as_deref()) {
                Ok(found) => found,
                Err(why) => {
                    let line = format!("target {target} skipped: {why}");
                    say(&line);
                    notes.push(line);
                    return Ok(None);
                }
            };
            let dir = work.join(target);
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let redis = (target == "nchan-redis").then_some(redis_addr);
            let conf = dir.join("nginx.conf");
            let text = nchan::config(&dir, &module, addr, redis, HEARTBEAT_SECONDS, cap1);
            std::fs::write(&conf, text).map_err(|e| format!("{}: {e}", conf.display()))?;
            let mut cmd = Command::new(&nginx);
            cmd.arg("-p")
                .arg(&dir)
                .arg("-c")
                .arg(&conf)
                .arg("-e")
                .arg(dir.join("error.log"))
                .args(target_args(opts, target));
            meta.nginx = procs::first_line(&nginx, &["-v"]);
            meta.commands.insert(target.to_string(), command_line(&cmd));
            say(format!("starting nginx + nchan for {target}"));
            let child = procs::Child::spawn(target, cmd, &work.join(format!("{target}.log")))
                .map_err(|e| format!("nginx: {e}"))?;
            Server::started(target, addr, child, Kind::Nchan, cap1)
        }
        "native" => {
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let mut cmd = Command::new(exe);
            cmd.args(["native-server", "--addr", &addr.to_string()])
                .env("REDIS_URL", &redis_url)
                .env("JWT_SECRET", &opts.jwt_secret);
            meta.commands.insert(
                "native".into(),
                format!("REDIS_URL={redis_url} JWT_SECRET=… {}", command_line(&cmd)),
            );
            let child = procs::Child::spawn("native baseline", cmd, &work.join("native.log"))
                .map_err(|e| format!("native baseline: {e}"))?;
            Server::started(target, addr, child, Kind::Gateway, cap2)
        }
        t if t == "spin" || t.starts_with("spin-") => start_spin(t, addr, launch, meta)?,
        _ => unreachable!("targets are checked"),
    };
    Ok(Some(server))
}

/// `spin up` for a Spin target: the default build under the shipped
/// spin.toml, or a component configured by the environment (the p3
/// build, a portable one) under spin-p3.toml pointed at it.
fn start_spin(
    t: &str,
    addr: SocketAddr,
    launch: Launch<'_>,
    meta: &mut report::Meta,
) -> Result<Server, String> {
    let Launch {
        opts,
        caps,
        redis_addr,
        work,
    } = launch;
    let Caps {
        cap1, cap2, cap, ..
    } = caps;
    let root = repo_root();
    let redis_url = launch.redis_url();
    let spin = find_spin().ok_or("no Spin found ($SPIN, PATH, ../shared/spin)")?;
    meta.spin = Some(procs::first_line(&spin, &["--version"]));
    let p3 = t == "spin-p3" || t.starts_with("spin-p3.");
    // The component configured by the environment (`-e`): the
    // p3 build, or a portable one (--wasm, --compare). Without
    // either, the Spin build under the shipped spin.toml.
    let env_wasm = if p3 {
        Some(component(&opts.p3_variants, "spin-p3.", t, &opts.p3_wasm, "p3")?.0)
    } else if t == "spin" && opts.wasm.is_none() {
        None
    } else {
        Some(component(&opts.variants, "spin-", t, &opts.wasm, "portable")?.0)
    };
    let state = if t == "spin" {
        "spin-state".to_string()
    } else {
        format!("{t}-state")
    };
    let mut cmd = Command::new(spin);
    cmd.arg("up");
    match &env_wasm {
        // The default build lands where the shipped spin.toml's
        // `source` points, so the manifest is used as is.
        None => {
            build_component("spin")?;
            cmd.arg("-f")
                .arg(root.join("spin.toml"))
                .env("SPIN_VARIABLE_JWT_SECRET", &opts.jwt_secret);
        }
        // spin-p3.toml with its `source` pointed at the
        // component, configured by the environment; of the
        // manifest's variables only the Redis allowlist is
        // used, and jwt_secret, required there, is set too.
        Some(wasm) => {
            let manifest = spin_env_manifest(&root, wasm, &work.join(t))?;
            cmd.arg("-f")
                .arg(manifest)
                .args(["-e", &format!("REDIS_URL={redis_url}")])
                .args(["-e", &format!("JWT_SECRET={}", opts.jwt_secret)])
                .env("SPIN_VARIABLE_JWT_SECRET", &opts.jwt_secret);
        }
    }
    if p3 {
        // The README's p3 flags, as for the p3 targets.
        cmd.args([
            "--max-instance-reuse-count",
            "100000",
            "--max-instance-concurrent-reuse-count",
            "256",
        ]);
    }
    cmd.args(["--listen", &addr.to_string()])
        // Spin's default per-instance log files, in the run's
        // work directory rather than the repo's .spin/.
        .arg("--state-dir")
        .arg(work.join(state))
        .args(target_args(opts, t))
        .envs(target_env(opts, t))
        .env("SPIN_VARIABLE_REDIS_HOST", redis_addr.ip().to_string())
        .env("SPIN_VARIABLE_REDIS_PORT", redis_addr.port().to_string())
        .env("SPIN_MAX_INSTANCE_COUNT", cap.to_string());
    meta.commands.insert(t.to_string(), command_line(&cmd));
    say(format!("starting spin up for {t}"));
    let child = procs::Child::spawn(t, cmd, &work.join(format!("{t}.log")))
        .map_err(|e| format!("spin: {e}"))?;
    let max = if p3 { cap1 } else { cap2 };
    Ok(Server::started(t, addr, child, Kind::Gateway, max))
}

/// Soak mode: each server in turn holds the streams for the soak's
/// length; its report is written as `soak-<target>.json`.
fn run_soak(
    rt: &tokio::runtime::Runtime,
    ctx: &Ctx,
    servers: &mut [Server],
    so: &soak::SoakOpts,
) -> Result<(), String> {
    let opts = &ctx.opts;
    let token = |user: &str| ctx.token(user, "admin");
    for s in servers.iter_mut() {
        say(format!("{}: soak, {} streams", s.name, so.streams));
        let r = rt.block_on(soak::run(
            &s.name, s.addr, ctx.redis, s.pid, so, &token, ctx.run_id,
        ))?;
        say(format!(
            "{}: soak {:.0}s: {} published, {} delivered, {} lost, {} duplicated, {} reconnects, {} failed opens {:?}; Redis clients {} -> {} (baseline {}), slots held at the end {}, settled in {:.1}s; RSS KiB {:?}",
            s.name, r.seconds, r.published, r.delivered, r.lost, r.duplicated, r.reconnects,
            r.failed_opens, r.open_errors, r.redis_clients_baseline, r.redis_clients_end,
            r.redis_clients_baseline, r.slots_end, r.settle_seconds, r.rss_kib
        ));
        let path = opts.out.join(format!("soak-{}.json", s.name));
        let _ = std::fs::create_dir_all(&opts.out);
        let text = serde_json::to_string_pretty(&r).map_err(|e| e.to_string())?;
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        say(format!("wrote {}", path.display()));
    }
    Ok(())
}

fn write_outputs(results: &Results, base: &Path) {
    if let Some(dir) = base.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let json = base.with_extension("json");
    let md = base.with_extension("md");
    let png = base.with_extension("png");
    match serde_json::to_string_pretty(results) {
        Ok(text) => {
            if let Err(e) = std::fs::write(&json, text + "\n") {
                eprintln!("error: {}: {e}", json.display());
            }
        }
        Err(e) => eprintln!("error: results to JSON: {e}"),
    }
    let mut text = report::markdown(results);
    // A burst run has no steps to plot.
    let plotted = results.runs.iter().any(|r| !r.steps.is_empty());
    if plotted {
        text.push_str(&format!(
            "\n![latency and memory per stream](./{})\n",
            png.file_name().and_then(|n| n.to_str()).unwrap_or("")
        ));
    }
    if let Err(e) = std::fs::write(&md, &text) {
        eprintln!("error: {}: {e}", md.display());
    }
    if plotted {
        match report::plot(results, &png) {
            Ok(true) => {}
            Ok(false) => eprintln!(
                "note: no TrueType font found (SSE_BENCH_FONT, fonts-dejavu-core): plot drawn without text"
            ),
            Err(e) => eprintln!("error: plot: {e}"),
        }
    }
    println!("{text}");
    say(format!(
        "wrote {}, {}{}",
        json.display(),
        md.display(),
        if plotted {
            format!(", {}", png.display())
        } else {
            String::new()
        }
    ));
}

/// CPU readings of the server, Redis and this tool at one instant.
struct Cpu {
    at: u64,
    server: u64,
    server_fine: u64,
    redis: u64,
    me: u64,
}

impl Cpu {
    fn now(ctx: &Ctx, server: &Server) -> Cpu {
        Cpu {
            at: stats::now_ns(),
            server: server.pid.map_or(0, procs::tree_cpu_us),
            server_fine: server.pid.map_or(0, procs::cpu_us_fine),
            redis: ctx.redis_pid.map_or(0, procs::cpu_us),
            me: procs::cpu_us(std::process::id()),
        }
    }

    /// (server, redis, me) CPU in percent of one core since `self`.
    fn pct(&self, later: &Cpu) -> (f64, f64, f64) {
        let wall_us = (later.at.saturating_sub(self.at) as f64 / 1e3).max(1.0);
        let p = |a: u64, b: u64| b.saturating_sub(a) as f64 * 100.0 / wall_us;
        (
            p(self.server, later.server),
            p(self.redis, later.redis),
            p(self.me, later.me),
        )
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

fn open_stats(rep: &client::OpenReport, requested: usize, cpu_us: u64) -> OpenStats {
    OpenStats {
        requested,
        opened: rep.opened,
        failed: rep.failed,
        errors: rep.errors.clone(),
        seconds: rep.seconds,
        per_s: rep.opened as f64 / rep.seconds.max(1e-9),
        ttfe: stats::summarize(rep.ttfe_ns.clone()),
        server_cpu_us_per_stream: cpu_us as f64 / rep.opened.max(1) as f64,
    }
}

fn exec_path(id: &str) -> String {
    format!("/api/v1/events/executions/{id}")
}

/// Publishes `count` events over `ids` at `rate`/s, waits for them to be
/// delivered (bounded), and measures latency, throughput and CPU.
#[allow(clippy::too_many_arguments)]
async fn measure(
    ctx: &Ctx,
    server: &Server,
    set: &client::StreamSet,
    ids: &[String],
    open_on: &[u64],
    rate: f64,
    count: u64,
    offered: f64,
) -> Result<Latency, String> {
    let shared = &set.shared;
    let _ = shared.take_samples();
    let r0 = shared.received.load(Ordering::Relaxed);
    let before = Cpu::now(ctx, server);
    let published = publish(ctx, server, ids, redis::Payload::Live, rate, count).await?;
    // Event `seq` goes to `ids[seq % len]`, which `open_on` streams hold.
    let expected: u64 = (0..published.commands)
        .map(|seq| open_on[(seq % ids.len() as u64) as usize])
        .sum();
    // Drain: until every expected delivery has arrived, at most 10 s.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while shared.received.load(Ordering::Relaxed) - r0 < expected
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let after = Cpu::now(ctx, server);
    let received = shared.received.load(Ordering::Relaxed) - r0;
    let last = shared
        .last_rx_ns
        .load(Ordering::Relaxed)
        .max(published.last_ns);
    let seconds = (last.saturating_sub(published.first_ns) as f64 / 1e9).max(1e-3);
    let (server_pct, redis_pct, me_pct) = before.pct(&after);
    let server_us = after.server.saturating_sub(before.server);
    Ok(Latency {
        rate_per_s: offered,
        seconds,
        published: published.commands,
        expected,
        publish_receivers: published.receivers,
        received,
        latency: stats::summarize(shared.take_samples()),
        delivered_per_s: received as f64 / seconds,
        server_cpu_us_per_event: server_us as f64 / received.max(1) as f64,
        server_cpu_pct: server_pct,
        redis_cpu_pct: redis_pct,
        client_cpu_pct: me_pct,
    })
}

/// Publishes `count` events over `ids` at `rate`/s to `server`: through
/// Redis for the gateway, by POST for nchan (where a terminal event is a
/// channel DELETE: nchan has no terminal event types).
async fn publish(
    ctx: &Ctx,
    server: &Server,
    ids: &[String],
    payload: redis::Payload,
    rate: f64,
    count: u64,
) -> Result<redis::Published, String> {
    let ids = ids.to_vec();
    let (redis, addr) = (ctx.redis, server.addr);
    match (server.kind, payload) {
        (Kind::Gateway, _) => {
            blocking(move || redis::publish(redis, &ids, payload, rate, count)).await
        }
        (Kind::Nchan, redis::Payload::Terminal) => {
            blocking(move || {
                nchan::delete(addr, &ids)?;
                Ok(redis::Published::default())
            })
            .await
        }
        (Kind::Nchan, _) => {
            blocking(move || nchan::publish(addr, &ids, payload, rate, count)).await
        }
    }
}

/// What a stream on each of `ids` needs before it opens: the execution
/// records (id, owner) in Redis for the gateway; for nchan a first event in
/// each channel, which is what its subscribers get first.
async fn prepare(ctx: &Ctx, server: &Server, records: Vec<(String, String)>) -> Result<(), String> {
    let (redis, addr) = (ctx.redis, server.addr);
    match server.kind {
        Kind::Gateway => blocking(move || redis::create_records(redis, &records)).await,
        Kind::Nchan => {
            let ids: Vec<String> = records.into_iter().map(|(id, _)| id).collect();
            blocking(move || nchan::prime(addr, &ids)).await
        }
    }
}

/// Streams open on each of `ids` (`of(i)`: the index in `ids` of stream i).
fn open_on(ids: usize, rep: &client::OpenReport, of: impl Fn(usize) -> usize) -> Vec<u64> {
    let mut v = vec![0u64; ids];
    for &i in &rep.opened_idx {
        v[of(i)] += 1;
    }
    v
}

/// Ends every stream of `set` with a terminal event on each of `ids`.
async fn close_set(
    ctx: &Ctx,
    server: &Server,
    set: client::StreamSet,
    ids: &[String],
) -> (f64, usize, usize) {
    let t0 = stats::now_ns();
    set.shared.ending.store(true, Ordering::Relaxed);
    let n = ids.len() as u64;
    let _ = publish(ctx, server, ids, redis::Payload::Terminal, f64::INFINITY, n).await;
    let dropped = set.shared.dropped.load(Ordering::Relaxed);
    let aborted = set.finish(Duration::from_secs(30)).await;
    ((stats::now_ns() - t0) as f64 / 1e9, aborted, dropped)
}

/// Every burst case, each way of publishing, servers alternating within
/// a case; each result lands in `out` as it is measured.
async fn run_bursts(
    ctx: &Ctx,
    servers: &mut [Server],
    b: &BurstOpts,
    out: &mut Vec<report::Burst>,
) -> Result<(), String> {
    let mut seq = 0;
    for case in &b.cases {
        for &via in &b.vias {
            for s in servers.iter_mut() {
                if via == redis::Via::Script && s.kind == Kind::Nchan {
                    continue;
                }
                seq += 1;
                let r = burst::run(ctx, s, *case, via, b.wait, seq).await?;
                let early = r.per_reader.iter().filter(|x| x.closed_early).count();
                let slowest = r
                    .per_reader
                    .iter()
                    .filter_map(|x| x.last_ms)
                    .fold(0.0, f64::max);
                say(format!(
                    "{}: burst {} × {} × {} B{} via {}: {} of {} readers got all, {} closed early, last event at {:.0} ms",
                    r.target,
                    r.readers,
                    r.events,
                    r.bytes,
                    if r.stalled > 0 { " +stalled" } else { "" },
                    r.via,
                    r.complete(),
                    r.readers,
                    early,
                    slowest,
                ));
                out.push(r);
            }
        }
    }
    Ok(())
}

/// One step: open `n` streams, idle, latency, close; then fan-out.
/// Waits until the shared Redis runs at most `QUIET` commands a second
/// (at most `SETTLE` long), so that what the previous target still does
/// right after its streams closed is not counted in this target's idle
/// Redis work. Work that starts later still can be (nginx + nchan with
/// Redis storage cleaned up 1,000 channels during the next target's idle
/// window once: docs/PERFORMANCE.md, "Side by side on both hosts").
/// Redis 7.0 counts commands per server, not per client.
async fn settle_redis(ctx: &Ctx, target: &str) {
    const QUIET: u64 = 20;
    const SETTLE: Duration = Duration::from_secs(60);
    let started = std::time::Instant::now();
    let mut last = redis::command_calls(ctx.redis).ok();
    while started.elapsed() < SETTLE {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = redis::command_calls(ctx.redis).ok();
        match last.zip(now) {
            Some((a, b)) if b.saturating_sub(a) <= QUIET => return,
            None => return,
            _ => last = now,
        }
    }
    say(format!(
        "{target}: Redis still busy after {} s; its idle Redis figure may count other clients",
        SETTLE.as_secs()
    ));
}

async fn run_step(ctx: &Ctx, server: &mut Server, n: usize, warmup: bool) -> Result<Step, String> {
    server.check()?;
    let o = &ctx.opts;
    let tag = format!(
        "{}-{}-{n}{}",
        ctx.run_id,
        server.name,
        if warmup { "w" } else { "" }
    );
    if !warmup {
        settle_redis(ctx, &server.name).await;
    }
    // One user per stream, owning its execution (the gateway's default
    // per-user limit is 10 streams).
    let ids: Vec<String> = (0..n).map(|i| format!("u{tag}-{i}")).collect();
    let streams = own_executions(ctx, server, &ids).await?;
    let ttfe_serial = if warmup {
        stats::Summary::default()
    } else {
        ttfe_alone(ctx, server, &tag).await?
    };
    let pid = server.pid;
    let base = Footprint::of(pid);
    let cpu0 = Cpu::now(ctx, server);
    let open_timeout = Duration::from_secs_f64(30.0 + n as f64 / 50.0);
    let (set, rep) = client::open_streams(server.addr, streams, o.concurrency, open_timeout).await;
    let cpu1 = Cpu::now(ctx, server);
    let open = open_stats(&rep, n, cpu1.server_fine.saturating_sub(cpu0.server_fine));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let held = Footprint::of(pid);
    // This server's Redis connections (every server of the run shares
    // the one Redis).
    let redis = ctx.redis;
    let ports = pid.map_or_else(Default::default, |p| procs::tcp_ports_to(p, redis.port()));
    let (redis_clients, redis_subscribers) =
        blocking(move || redis::clients(redis, &ports)).await?;
    let per_stream =
        |before: u64, after: u64| after.saturating_sub(before) as f64 / rep.opened.max(1) as f64;

    let mut step = Step {
        streams: n,
        ttfe_serial,
        rss_base_kib: base.rss_kib,
        rss_open_kib: held.rss_kib,
        rss_per_stream_kib: per_stream(base.rss_kib, held.rss_kib),
        private_per_stream_kib: per_stream(base.private_kib, held.private_kib),
        pss_per_stream_kib: per_stream(base.pss_kib, held.pss_kib),
        rss_growth: procs::rss_growth(&base.maps, &held.maps, 6),
        server_fds: pid.map_or(0, procs::tree_fd_count),
        redis_clients,
        redis_subscribers,
        ..Default::default()
    };
    if warmup {
        let (_, _, _) = close_set(ctx, server, set, &ids).await;
        step.open = open;
        return Ok(step);
    }

    if o.hold_s > 0.0 {
        say(format!(
            "{}: {} streams open, server pid {:?}; holding {} s",
            server.name, rep.opened, server.pid, o.hold_s
        ));
        tokio::time::sleep(Duration::from_secs_f64(o.hold_s.min(3600.0))).await;
    }
    step.idle = idle(ctx, server, &set).await;

    // Latency: `rate` events/s round-robin over the streams.
    if rep.opened > 0 {
        let count = (o.rate * o.phase_s).ceil() as u64;
        let on = open_on(ids.len(), &rep, |i| i);
        step.latency = measure(ctx, server, &set, &ids, &on, o.rate, count, o.rate).await?;
    }
    step.held = set.shared.alive.load(Ordering::Relaxed);
    let (close_s, aborted, dropped) = close_set(ctx, server, set, &ids).await;
    step.open = open;
    step.close_seconds = close_s;
    step.close_aborted = aborted;
    step.dropped = dropped;
    server.check()?;

    if !o.fanout_rates.is_empty() {
        step.fanout = Some(fanout(ctx, server, n, &tag, open_timeout).await?);
    }
    server.check()?;
    Ok(step)
}

/// What the server's process tree holds at one moment.
struct Footprint {
    rss_kib: u64,
    pss_kib: u64,
    private_kib: u64,
    maps: Vec<procs::Mapping>,
}

impl Footprint {
    fn of(pid: Option<u32>) -> Footprint {
        let (pss_kib, private_kib) = pid.map_or((0, 0), procs::pss_private_kib);
        Footprint {
            rss_kib: pid.map_or(0, procs::tree_rss_kib),
            pss_kib,
            private_kib,
            maps: pid.map(procs::smaps).unwrap_or_default(),
        }
    }
}

/// Executions `ids`, each owned by a user of its own; one stream request
/// (path, token) per execution.
async fn own_executions(
    ctx: &Ctx,
    server: &Server,
    ids: &[String],
) -> Result<Vec<(String, String)>, String> {
    let owner = |id: &str| format!("user-{id}");
    let records = ids.iter().map(|id| (id.clone(), owner(id))).collect();
    prepare(ctx, server, records).await?;
    Ok(ids
        .iter()
        .map(|id| (exec_path(id), ctx.token(&owner(id), "user")))
        .collect())
}

/// Time to first event with nothing else opening: 50 streams one at a
/// time (their own users and executions), ended before the step.
async fn ttfe_alone(ctx: &Ctx, server: &Server, tag: &str) -> Result<stats::Summary, String> {
    let ids: Vec<String> = (0..50).map(|i| format!("s{tag}-{i}")).collect();
    let streams = own_executions(ctx, server, &ids).await?;
    let (set, rep) = client::open_streams(server.addr, streams, 1, Duration::from_secs(60)).await;
    close_set(ctx, server, set, &ids).await;
    Ok(stats::summarize(rep.ttfe_ns))
}

/// Idle: every stream open, no events, for `idle_s` (CPU also over its
/// second half, once the heartbeats are spread).
async fn idle(ctx: &Ctx, server: &Server, set: &client::StreamSet) -> report::Idle {
    let half = Duration::from_secs_f64(ctx.opts.idle_s / 2.0);
    let heartbeats = || set.shared.heartbeats.load(Ordering::Relaxed);
    let calls = || redis::command_calls(ctx.redis).ok();
    let (hb0, r0, c0) = (heartbeats(), calls(), Cpu::now(ctx, server));
    tokio::time::sleep(half).await;
    let (hb_mid, c_mid) = (heartbeats(), Cpu::now(ctx, server));
    tokio::time::sleep(half).await;
    let (c1, r1, hb1) = (Cpu::now(ctx, server), calls(), heartbeats());
    report::Idle {
        seconds: (c1.at - c0.at) as f64 / 1e9,
        server_cpu_ms: c1.server.saturating_sub(c0.server) as f64 / 1e3,
        server_cpu_pct: c0.pct(&c1).0,
        heartbeats: hb1 - hb0,
        late_server_cpu_pct: Some(c_mid.pct(&c1).0),
        late_heartbeats: Some(hb1 - hb_mid),
        redis_commands: r0.zip(r1).map(|(a, b)| b.saturating_sub(a)),
    }
}

/// Fan-out: groups of `fanout_group` streams watching one execution each,
/// at each offered rate until one is not sustained.
async fn fanout(
    ctx: &Ctx,
    server: &mut Server,
    n: usize,
    tag: &str,
    open_timeout: Duration,
) -> Result<Fanout, String> {
    let o = &ctx.opts;
    let group = o.fanout_group.clamp(1, n);
    let groups = n.div_ceil(group);
    let fids: Vec<String> = (0..groups).map(|g| format!("f{tag}-{g}")).collect();
    let records = fids
        .iter()
        .map(|id| (id.clone(), format!("owner-{id}")))
        .collect();
    prepare(ctx, server, records).await?;
    // Watchers of a shared execution: admins (exempt from the ownership
    // check), one user each.
    let streams: Vec<(String, String)> = (0..n)
        .map(|i| {
            let user = format!("admin-{tag}-{i}");
            (exec_path(&fids[i % groups]), ctx.token(&user, "admin"))
        })
        .collect();
    let c0 = Cpu::now(ctx, server);
    let (set, rep) = client::open_streams(server.addr, streams, o.concurrency, open_timeout).await;
    let c1 = Cpu::now(ctx, server);
    let mut fan = Fanout {
        streams: rep.opened,
        group,
        open: open_stats(&rep, n, c1.server_fine.saturating_sub(c0.server_fine)),
        ..Default::default()
    };
    let on = open_on(groups, &rep, |i| i % groups);
    for &offered in &o.fanout_rates {
        let per_publish = (rep.opened as f64 / groups as f64).max(1.0);
        let rate = (offered / per_publish).max(1.0);
        let count = (rate * o.fanout_s).ceil() as u64;
        let l = measure(ctx, server, &set, &fids, &on, rate, count, offered).await?;
        // Sustained: everything Redis delivered arrived, at >= 90 % of
        // the offered rate, with p99 under a second.
        let ok = l.expected > 0
            && l.received >= l.expected
            && l.delivered_per_s >= 0.9 * offered.min(rate * per_publish)
            && l.latency.p99_ms < 1000.0;
        if l.received >= l.expected {
            fan.max_delivered_per_s = fan.max_delivered_per_s.max(l.delivered_per_s);
        }
        fan.ramp.push(l);
        if !ok {
            break;
        }
        server.check()?;
    }
    let (_, _, dropped) = close_set(ctx, server, set, &fids).await;
    fan.dropped = dropped;
    Ok(fan)
}
