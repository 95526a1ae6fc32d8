//! The command line: clap parses the flags, [`opts`] turns them into the
//! run's [`Opts`] (presets, derived targets, checks), kept apart from the
//! run so it is tested without starting anything.

use crate::{burst, redis, soak, HEARTBEAT_SECONDS, SECRET};
use clap::Parser;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// What one run does, after presets and derivations.
#[derive(Debug, Clone)]
pub struct Opts {
    pub name: String,
    pub steps: Vec<usize>,
    pub targets: Vec<String>,
    pub rate: f64,
    pub phase_s: f64,
    pub idle_s: f64,
    pub concurrency: usize,
    pub fanout_group: usize,
    pub fanout_rates: Vec<f64>,
    pub fanout_s: f64,
    pub wasm: Option<PathBuf>,
    pub wasmtime: Option<PathBuf>,
    pub out: PathBuf,
    pub url: Option<SocketAddr>,
    pub redis_url: Option<SocketAddr>,
    pub jwt_secret: String,
    pub server_pid: Option<u32>,
    pub hold_s: f64,
    pub wasmtime_args: Vec<String>,
    /// Host arguments for one target: (target, argument).
    pub target_args: Vec<(String, String)>,
    /// Host environment for one target: (target, key, value).
    pub target_env: Vec<(String, String, String)>,
    /// Another wasmtime binary for one target.
    pub target_wasmtime: Vec<(String, PathBuf)>,
    pub p3_wasm: Option<PathBuf>,
    pub nginx: Option<PathBuf>,
    /// Extra components served side by side: target `wasmtime-NAME`.
    pub variants: Vec<(String, PathBuf)>,
    /// Extra p3 components served side by side: target `p3.NAME`.
    pub p3_variants: Vec<(String, PathBuf)>,
    /// Soak mode (`--soak`) instead of the steps.
    pub soak: Option<soak::SoakOpts>,
    /// Burst mode (`--bursts`) instead of the steps.
    pub bursts: Option<BurstOpts>,
}

#[derive(Debug, Clone)]
pub struct BurstOpts {
    pub cases: Vec<burst::Case>,
    pub vias: Vec<redis::Via>,
    pub wait: Duration,
}

/// sse-bench: load benchmark for sse-gateway (see docs/PERFORMANCE.md)
#[derive(Parser, Debug)]
#[command(
    name = "sse-bench",
    after_help = "Other forms:\n  \
        sse-bench render <results.json>     re-write the .md and .png next to it\n  \
        sse-bench native-server --addr A    (internal: the native baseline)\n  \
        sse-bench fanout-once --url U --redis-url R --streams N [--events K]\n                                      \
        one event to N streams of a running gateway"
)]
struct Cli {
    /// Steps 100,1000,5000; 5 s phases (~3 minutes) [default]
    #[arg(long, conflicts_with = "full")]
    quick: bool,
    /// Steps 100,1000,2500,5000,9500; 10 s phases (~10 minutes); flags
    /// given beside it win
    #[arg(long)]
    full: bool,
    /// Stream counts, e.g. 100,1000,5000
    #[arg(long, value_name = "LIST")]
    steps: Option<String>,
    /// wasmtime,native[,spin] (spin when one is found: $SPIN, PATH,
    /// ../shared/spin/install.sh; the Spin build under spin.toml, or with
    /// --wasm that component configured by `spin up -e`); also spin-p3 (the
    /// p3 component under `spin up -f` a copy of spin-p3.toml, C = 256),
    /// p3 / p3-C (the WASIp3 build under wasmtime serve, C concurrent
    /// requests per instance, 256), nchan (nginx + nchan, messages in
    /// memory), nchan-redis (messages in the bench's Redis); nchan targets
    /// are skipped, with a line saying so, when nginx or the module is not
    /// installed
    #[arg(long, value_name = "LIST")]
    targets: Option<String>,
    /// These targets after the default ones (or --targets)
    #[arg(long, value_name = "LIST")]
    add_targets: Vec<String>,
    /// Serve p3 once per C in L (p3-16,p3-64,...) instead
    #[arg(long, value_name = "L")]
    p3_concurrency: Option<String>,
    /// The p3 component (default: $SSE_GATEWAY_P3_WASM, else scripts/build.sh p3)
    #[arg(long, value_name = "PATH")]
    p3_wasm: Option<PathBuf>,
    /// nginx binary (default: PATH, /usr/sbin/nginx)
    #[arg(long, value_name = "PATH")]
    nginx: Option<PathBuf>,
    /// Events/s published in the latency phase [default: 1000]
    #[arg(long, value_name = "N")]
    rate: Option<f64>,
    /// Latency phase length
    #[arg(long, value_name = "S")]
    phase_seconds: Option<f64>,
    /// Idle CPU window
    #[arg(long, value_name = "S")]
    idle_seconds: Option<f64>,
    /// Streams opening at once
    #[arg(long, value_name = "N", default_value_t = 100)]
    concurrency: usize,
    /// Streams sharing one execution id in fan-out
    #[arg(long, value_name = "N", default_value_t = 100)]
    fanout_group: usize,
    /// Offered deliveries/s, e.g. 5000,25000 (empty: no fan-out)
    #[arg(long, value_name = "L")]
    fanout_rates: Option<String>,
    /// Length of each fan-out rate
    #[arg(long, value_name = "S")]
    fanout_seconds: Option<f64>,
    /// Use this component instead of building it
    #[arg(long, value_name = "PATH")]
    wasm: Option<PathBuf>,
    /// wasmtime binary (default: $WASMTIME, the cached build, PATH)
    #[arg(long, value_name = "PATH")]
    wasmtime: Option<PathBuf>,
    /// Results directory (docs/bench)
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Results file name (quick / full)
    #[arg(long)]
    name: Option<String>,
    /// Also serve the component PATH as target wasmtime-N in the same run
    /// (A/B of a src change; repeatable), and as spin-N when
    /// --targets/--add-targets name spin
    #[arg(long, value_name = "N=PATH", value_parser = name_path)]
    compare: Vec<(String, PathBuf)>,
    /// Also serve the p3 component PATH as target p3.N (C = 256) in the
    /// same run (repeatable; N goes into execution ids: letters, digits, -
    /// _ . :), and as spin-p3.N when the targets name spin-p3
    #[arg(long, value_name = "N=PATH", value_parser = name_path)]
    compare_p3: Vec<(String, PathBuf)>,
    /// Extra `wasmtime serve` argument, every wasmtime target (repeat for each)
    #[arg(long, value_name = "A", allow_hyphen_values = true)]
    wasmtime_arg: Vec<String>,
    /// Extra host argument for target T only (repeatable), e.g.
    /// p3-16=--max-instance-reuse-count=128
    #[arg(long, value_name = "T=A", value_parser = target_arg)]
    target_arg: Vec<(String, String)>,
    /// Environment variable K=V for target T's host only (repeatable)
    #[arg(long, value_name = "T=K=V", value_parser = target_env)]
    target_env: Vec<(String, String, String)>,
    /// Another wasmtime binary for target T only (A/B of a host change,
    /// e.g. a locally patched wasmtime)
    #[arg(long, value_name = "T=PATH", value_parser = name_path)]
    target_wasmtime: Vec<(String, PathBuf)>,
    /// Keep each step's streams open S s before measuring (to inspect the
    /// server by hand: pmap, perf, smaps)
    #[arg(long, value_name = "S", default_value_t = 0.0)]
    hold_seconds: f64,
    /// Soak mode instead of steps: streams held for minutes with churn and
    /// a steady event rate; reports events lost or duplicated, Redis
    /// clients and slot sets at the end against the baseline, server RSS
    /// over time (writes docs/bench/soak-<target>.json)
    #[arg(long)]
    soak: bool,
    /// Soak: streams
    #[arg(long, value_name = "N", default_value_t = 5000)]
    soak_streams: usize,
    /// Soak: length in minutes
    #[arg(long, value_name = "T", default_value_t = 1.0)]
    soak_minutes: f64,
    /// Soak: percent of the streams reconnecting each second with Last-Event-ID
    #[arg(long, value_name = "P", default_value_t = 1.0)]
    soak_churn: f64,
    /// Soak: events/s published through the publish script
    #[arg(long, value_name = "N", default_value_t = 100.0)]
    soak_rate: f64,
    /// Soak: streams per execution
    #[arg(long, value_name = "N", default_value_t = 50)]
    soak_group: usize,
    /// Burst mode instead of steps: N readers of one execution, then K
    /// events of B bytes published at once (one Redis pipeline of PUBLISH);
    /// per reader the events received, the time to the last, early closes
    /// and their reason. Cases (default: 1,60,20000 20,300,20000
    /// 20,300,2000 and the neighbour 20,300,20000) in docs/bench/burst.*
    #[arg(long)]
    bursts: bool,
    /// A burst case N,K,B instead of the defaults (repeatable)
    #[arg(long, value_name = "N,K,B")]
    burst: Vec<String>,
    /// A case with one more reader of the execution that opens its stream
    /// and never reads (repeatable)
    #[arg(long, value_name = "N,K,B")]
    neighbour: Vec<String>,
    /// Each burst case also through the history publish script
    #[arg(long)]
    burst_script: bool,
    /// Wait for the readers at most S s after a burst
    #[arg(long, value_name = "S")]
    burst_wait: Option<f64>,
    /// Benchmark a running gateway (loopback only) instead; needs
    /// --redis-url; --jwt-secret (default: the bench's); --server-pid PID
    /// to read its memory and CPU
    #[arg(long, value_name = "URL", value_parser = loopback)]
    url: Option<SocketAddr>,
    /// The running gateway's Redis (loopback only)
    #[arg(long, value_name = "URL", value_parser = loopback)]
    redis_url: Option<SocketAddr>,
    /// The running gateway's HS256 secret
    #[arg(long, default_value = SECRET)]
    jwt_secret: String,
    /// The running gateway's process id
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
}

/// The run `args` (without the program name) ask for; `spin_found` adds
/// Spin to the default targets. Err(help or error text, whether an error).
pub fn parse(
    args: &[String],
    spin_found: bool,
    p3_wasm_env: Option<PathBuf>,
    out_default: PathBuf,
) -> Result<Opts, (String, bool)> {
    let argv = std::iter::once("sse-bench".to_string()).chain(args.iter().cloned());
    let cli = Cli::try_parse_from(argv).map_err(|e| {
        use clap::error::ErrorKind::{DisplayHelp, DisplayVersion};
        let is_error = !matches!(e.kind(), DisplayHelp | DisplayVersion);
        (e.render().to_string(), is_error)
    })?;
    opts(cli, spin_found, p3_wasm_env, out_default).map_err(|e| (e, true))
}

fn opts(
    cli: Cli,
    spin_found: bool,
    p3_wasm_env: Option<PathBuf>,
    out_default: PathBuf,
) -> Result<Opts, String> {
    let full = cli.full;
    let mut targets: Vec<String> = match &cli.targets {
        Some(t) => list(t)?,
        None => {
            let mut t = vec!["wasmtime".to_string(), "native".to_string()];
            if spin_found {
                t.push("spin".into());
            }
            t
        }
    };
    let mut added: Vec<String> = Vec::new();
    for a in &cli.add_targets {
        added.extend(list::<String>(a)?);
    }
    // Spin compare variants only when spin is asked for, not when it is
    // in the default targets because a Spin was found.
    let spin_named = cli.targets.is_some() && targets.iter().any(|t| t == "spin")
        || added.iter().any(|t| t == "spin");
    let preset = |quick: f64, full_value: f64| if full { full_value } else { quick };
    let mut o = Opts {
        name: if full { "full" } else { "quick" }.into(),
        steps: match &cli.steps {
            Some(s) => list(s)?,
            None if full => vec![100, 1000, 2500, 5000, 9500],
            None => vec![100, 1000, 5000],
        },
        targets: Vec::new(),
        rate: cli.rate.unwrap_or(1000.0),
        phase_s: cli.phase_seconds.unwrap_or(preset(5.0, 10.0)),
        idle_s: cli.idle_seconds.unwrap_or(preset(5.0, 10.0)),
        concurrency: cli.concurrency,
        fanout_group: cli.fanout_group,
        fanout_rates: match &cli.fanout_rates {
            Some(r) => list(r)?,
            None if full => vec![
                5_000.0, 10_000.0, 25_000.0, 50_000.0, 100_000.0, 150_000.0, 200_000.0,
            ],
            None => vec![10_000.0, 25_000.0, 50_000.0, 100_000.0],
        },
        fanout_s: cli.fanout_seconds.unwrap_or(preset(3.0, 5.0)),
        wasm: cli.wasm,
        wasmtime: cli.wasmtime,
        out: cli.out.unwrap_or(out_default),
        url: cli.url,
        redis_url: cli.redis_url,
        jwt_secret: cli.jwt_secret,
        server_pid: cli.server_pid,
        hold_s: cli.hold_seconds,
        wasmtime_args: cli.wasmtime_arg,
        target_args: cli.target_arg,
        target_env: cli.target_env,
        target_wasmtime: cli.target_wasmtime,
        p3_wasm: cli.p3_wasm.or(p3_wasm_env),
        nginx: cli.nginx,
        variants: cli.compare,
        p3_variants: cli.compare_p3,
        soak: None,
        bursts: None,
    };
    let mut cases = Vec::new();
    for c in &cli.burst {
        cases.push(burst::Case::parse(c, 0)?);
    }
    for c in &cli.neighbour {
        cases.push(burst::Case::parse(c, 1)?);
    }
    let bursts_on = cli.bursts || !cases.is_empty() || cli.burst_script || cli.burst_wait.is_some();
    if bursts_on {
        if cases.is_empty() {
            cases = burst::Case::defaults();
        }
        let mut vias = vec![redis::Via::Publish];
        if cli.burst_script {
            vias.push(redis::Via::Script);
        }
        let most = cases.iter().map(|c| c.readers + c.stalled);
        o.steps = vec![most.max().unwrap_or(1)];
        o.name = "burst".into();
        o.bursts = Some(BurstOpts {
            cases,
            vias,
            wait: Duration::from_secs_f64(cli.burst_wait.unwrap_or(10.0).clamp(0.1, 120.0)),
        });
    }
    if let Some(n) = cli.name {
        o.name = n;
    }
    if cli.soak {
        let soak = soak::SoakOpts {
            streams: cli.soak_streams,
            churn: (cli.soak_churn / 100.0).clamp(0.0, 1.0),
            rate: cli.soak_rate,
            seconds: (cli.soak_minutes * 60.0).clamp(10.0, 3600.0),
            group: cli.soak_group,
        };
        if soak.streams == 0 || soak.group == 0 || soak.rate <= 0.0 {
            return Err("--soak needs positive streams, group and rate".into());
        }
        // Reconnected streams linger on the server until its next write
        // (a heartbeat at most): room for them in the host's pools.
        let linger = soak.streams as f64 * soak.churn * (HEARTBEAT_SECONDS as f64 + 5.0);
        o.steps = vec![soak.streams + linger as usize];
        o.name = "soak".into();
        o.soak = Some(soak);
    }
    targets.extend(added);
    // Each compare variant's targets, at the end unless --targets already
    // placed them (which orders the report's columns).
    let mut variant_targets: Vec<String> = Vec::new();
    for (name, _) in &o.variants {
        variant_targets.push(format!("wasmtime-{name}"));
    }
    for (name, _) in &o.p3_variants {
        variant_targets.push(format!("p3.{name}"));
    }
    if spin_named && targets.iter().any(|t| t == "spin") {
        for (name, _) in &o.variants {
            variant_targets.push(format!("spin-{name}"));
        }
    }
    if targets.iter().any(|t| t == "spin-p3") {
        for (name, _) in &o.p3_variants {
            variant_targets.push(format!("spin-p3.{name}"));
        }
    }
    for t in variant_targets {
        if !targets.contains(&t) {
            targets.push(t);
        }
    }
    if let Some(l) = &cli.p3_concurrency {
        let each: Vec<usize> = list(l)?;
        let at = targets.iter().position(|t| t == "p3");
        let at = at.unwrap_or(targets.len());
        targets.retain(|t| t != "p3");
        let at = at.min(targets.len());
        targets.splice(at..at, each.iter().map(|c| format!("p3-{c}")));
    }
    if o.url.is_some() {
        if o.redis_url.is_none() {
            return Err("--url needs --redis-url (to create records and publish)".into());
        }
        targets = vec!["url".into()];
    }
    for t in &targets {
        let known = [
            "wasmtime",
            "native",
            "spin",
            "spin-p3",
            "url",
            "p3",
            "nchan",
            "nchan-redis",
        ];
        let variant = ["wasmtime-", "spin-", "spin-p3."]
            .iter()
            .any(|p| t.starts_with(p));
        if !known.contains(&t.as_str()) && !variant && p3_c(t).is_none() {
            return Err(format!("unknown target {t:?}"));
        }
    }
    o.targets = targets;
    if o.steps.is_empty() || o.steps.contains(&0) {
        return Err("--steps needs positive stream counts".into());
    }
    if !(o.rate > 0.0 && o.phase_s > 0.0 && o.idle_s >= 0.0 && o.fanout_s > 0.0) {
        return Err("rates and durations must be positive".into());
    }
    o.phase_s = o.phase_s.min(600.0);
    o.idle_s = o.idle_s.min(600.0);
    o.fanout_s = o.fanout_s.min(600.0);
    Ok(o)
}

/// A comma-separated list; empty items are skipped (`""` is no items).
pub fn list<T: std::str::FromStr>(s: &str) -> Result<Vec<T>, String> {
    s.split(',')
        .filter(|x| !x.trim().is_empty())
        .map(|x| x.trim().parse().map_err(|_| format!("bad list item {x:?}")))
        .collect()
}

/// A loopback `host:port` from a URL such as `http://127.0.0.1:3000/` or
/// `redis://localhost:6379`; anything not on this machine is refused.
pub fn loopback(url: &str) -> Result<SocketAddr, String> {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let hostport = rest.split('/').next().unwrap_or(rest);
    let hostport = hostport.rsplit('@').next().unwrap_or(hostport);
    let addr = hostport
        .to_socket_addrs()
        .map_err(|e| format!("{url}: {e}"))?
        .next()
        .ok_or_else(|| format!("{url}: no address"))?;
    let ok = match addr.ip() {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback(),
    };
    if !ok {
        return Err(format!(
            "{url} resolves to {addr}: only loopback targets are allowed"
        ));
    }
    Ok(addr)
}

/// `NAME=PATH` (`--compare`, `--compare-p3`, `--target-wasmtime`).
fn name_path(v: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = v.split_once('=').ok_or("needs NAME=PATH")?;
    Ok((name.to_string(), path.into()))
}

/// `TARGET=ARG` (`--target-arg`).
fn target_arg(v: &str) -> Result<(String, String), String> {
    let (t, a) = v.split_once('=').ok_or("needs TARGET=ARG")?;
    Ok((t.to_string(), a.to_string()))
}

/// `TARGET=KEY=VALUE` (`--target-env`).
fn target_env(v: &str) -> Result<(String, String, String), String> {
    let (t, kv) = v.split_once('=').ok_or("needs TARGET=KEY=VALUE")?;
    let (k, val) = kv.split_once('=').ok_or("needs TARGET=KEY=VALUE")?;
    Ok((t.to_string(), k.to_string(), val.to_string()))
}

/// The per-instance concurrency of a p3 target: `p3` (256) or `p3-C`
/// (`--compare-p3` variants `p3.NAME` too).
pub fn p3_c(target: &str) -> Option<usize> {
    let target = target.split_once('.').map_or(target, |(t, _)| t);
    match target.strip_prefix("p3") {
        Some("") => Some(256),
        Some(rest) => rest.strip_prefix('-')?.parse().ok().filter(|c| *c > 0),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Opts, (String, bool)> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        parse(&args, false, None, PathBuf::from("out"))
    }

    #[test]
    fn defaults_are_the_quick_preset() {
        let o = run(&[]).unwrap();
        assert_eq!(o.name, "quick");
        assert_eq!(o.steps, vec![100, 1000, 5000]);
        assert_eq!(o.targets, vec!["wasmtime", "native"]);
        assert_eq!((o.phase_s, o.idle_s, o.concurrency), (5.0, 5.0, 100));
        assert_eq!(o.fanout_rates.len(), 4);
        assert_eq!(o.jwt_secret, SECRET);
        let with_spin = parse(&[], true, None, PathBuf::from("out")).unwrap();
        assert_eq!(with_spin.targets, vec!["wasmtime", "native", "spin"]);
    }

    #[test]
    fn full_is_a_preset_that_explicit_flags_override_in_any_order() {
        let o = run(&["--full"]).unwrap();
        assert_eq!(
            (o.name.as_str(), o.steps.len(), o.phase_s),
            ("full", 5, 10.0)
        );
        let a = run(&["--steps", "300", "--full"]).unwrap();
        let b = run(&["--full", "--steps", "300"]).unwrap();
        assert_eq!((a.steps, b.steps), (vec![300], vec![300]));
        assert!(run(&["--quick", "--full"]).is_err());
    }

    #[test]
    fn an_empty_fanout_list_means_no_fanout() {
        let o = run(&["--fanout-rates", ""]).unwrap();
        assert!(o.fanout_rates.is_empty());
    }

    #[test]
    fn compare_variants_add_their_targets_and_spin_ones_only_when_spin_is_named() {
        let o = run(&[
            "--targets",
            "p3,spin-p3",
            "--compare-p3",
            "new=/x.wasm",
            "--compare",
            "a=/a.wasm",
        ])
        .unwrap();
        assert_eq!(
            o.targets,
            vec!["p3", "spin-p3", "wasmtime-a", "p3.new", "spin-p3.new"]
        );
        let defaults_with_spin = parse(
            &["--compare".into(), "a=/a.wasm".into()],
            true,
            None,
            PathBuf::from("out"),
        )
        .unwrap();
        assert!(!defaults_with_spin.targets.contains(&"spin-a".to_string()));
        let named = run(&["--targets", "spin", "--compare", "a=/a.wasm"]).unwrap();
        assert_eq!(named.targets, vec!["spin", "wasmtime-a", "spin-a"]);
    }

    #[test]
    fn per_target_host_settings_are_split_at_the_first_equals() {
        let o = run(&[
            "--target-env",
            "p3.pack=WASMTIME_QUEUE_WAIT_MS=10",
            "--target-wasmtime",
            "p3.pack=/opt/wasmtime",
            "--target-arg",
            "p3-16=--max-instance-reuse-count=128",
            "--wasmtime-arg",
            "-Sinherit-env",
        ])
        .unwrap();
        assert_eq!(
            o.target_env,
            vec![(
                "p3.pack".into(),
                "WASMTIME_QUEUE_WAIT_MS".into(),
                "10".into()
            )]
        );
        assert_eq!(
            o.target_wasmtime,
            vec![("p3.pack".into(), PathBuf::from("/opt/wasmtime"))]
        );
        assert_eq!(
            o.target_args,
            vec![("p3-16".into(), "--max-instance-reuse-count=128".into())]
        );
        assert_eq!(o.wasmtime_args, vec!["-Sinherit-env"]);
        assert!(run(&["--target-env", "p3=NOVALUE"]).is_err());
    }

    #[test]
    fn p3_concurrency_replaces_p3_in_place() {
        let o = run(&[
            "--targets",
            "wasmtime,p3,nchan",
            "--p3-concurrency",
            "16,64",
        ])
        .unwrap();
        assert_eq!(o.targets, vec!["wasmtime", "p3-16", "p3-64", "nchan"]);
        assert_eq!(p3_c("p3-16"), Some(16));
        assert_eq!(p3_c("p3.pack"), Some(256));
        assert_eq!(p3_c("p3-0"), None);
    }

    #[test]
    fn modes_set_their_steps_and_names() {
        let b = run(&["--burst", "20,300,2000", "--neighbour", "20,300,20000"]).unwrap();
        assert_eq!((b.name.as_str(), b.steps.clone()), ("burst", vec![21]));
        assert_eq!(b.bursts.unwrap().cases.len(), 2);
        let s = run(&["--soak", "--soak-streams", "100", "--soak-churn", "0"]).unwrap();
        assert_eq!((s.name.as_str(), s.steps.clone()), ("soak", vec![100]));
        assert!(run(&["--soak", "--soak-group", "0"]).is_err());
    }

    #[test]
    fn bad_input_is_an_error_and_help_is_not() {
        for bad in [
            &["--targets", "bogus"][..],
            &["--steps", "0"],
            &["--steps", "x"],
            &["--rate", "0"],
            &["--url", "http://127.0.0.1:1/"],
            &[
                "--url",
                "http://192.0.2.1:80/",
                "--redis-url",
                "redis://127.0.0.1:6379",
            ],
            &["--no-such-flag"],
        ] {
            let (_, is_error) = run(bad).expect_err(&format!("{bad:?}"));
            assert!(is_error, "{bad:?}");
        }
        let (help, is_error) = run(&["--help"]).unwrap_err();
        assert!(!is_error);
        assert!(help.contains("--target-wasmtime") && help.contains("fanout-once"));
        let o = run(&[
            "--url",
            "http://127.0.0.1:1/",
            "--redis-url",
            "redis://127.0.0.1:2",
        ])
        .unwrap();
        assert_eq!(o.targets, vec!["url"]);
    }
}
