//! Results: the JSON model, the Markdown tables and the PNG plot.

use crate::stats::Summary;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Results {
    pub meta: Meta,
    pub runs: Vec<Run>,
    /// Burst and stalled-neighbour scenarios (`--bursts`).
    #[serde(default)]
    pub bursts: Vec<Burst>,
}

/// One burst: K events of B bytes published at once to N readers of one
/// execution (and, for the neighbour case, one more that never reads).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Burst {
    pub target: String,
    /// `PUBLISH`, `publish script` or `POST` (nchan).
    pub via: String,
    pub readers: usize,
    pub events: u64,
    pub bytes: usize,
    /// Extra readers of the execution that open and never read.
    pub stalled: usize,
    pub opened: usize,
    pub open_errors: BTreeMap<String, usize>,
    /// The wait for the readers after the publish, at most.
    pub wait_seconds: f64,
    /// From the publish to the end of the wait (all had K, or the bound).
    pub seconds: f64,
    /// Each reader that opened.
    pub per_reader: Vec<BurstReader>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BurstReader {
    /// Burst events received.
    pub received: u64,
    /// From the publish to the last of them (ms), if any came.
    pub last_ms: Option<f64>,
    /// The server ended the stream before the tool did.
    pub closed_early: bool,
    /// …with its body's last chunk (else cut off mid-body).
    pub clean: bool,
    /// The last comment before the end other than `ping` (a close reason).
    pub note: Option<String>,
}

impl Burst {
    /// Readers that got every event.
    pub fn complete(&self) -> usize {
        self.per_reader
            .iter()
            .filter(|r| r.received >= self.events)
            .count()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Meta {
    pub mode: String,
    pub started_unix: u64,
    pub seconds_total: f64,
    pub host: HostInfo,
    pub wasmtime: String,
    pub redis: String,
    pub spin: Option<String>,
    pub component_path: Option<String>,
    pub component_bytes: Option<u64>,
    /// The WASIp3 component (targets `p3`, `p3-C`).
    #[serde(default)]
    pub p3_component_path: Option<String>,
    #[serde(default)]
    pub p3_component_bytes: Option<u64>,
    /// `nginx -v` (targets `nchan`, `nchan-redis`).
    #[serde(default)]
    pub nginx: String,
    /// Load average (1, 5, 15 min) at the start and the end of the run:
    /// the machine is shared, so only ratios within one run compare.
    #[serde(default)]
    pub loadavg_start: String,
    #[serde(default)]
    pub loadavg_end: String,
    pub settings: Settings,
    /// The exact command lines of the servers under test.
    pub commands: BTreeMap<String, String>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HostInfo {
    pub cpus: usize,
    pub mem_total_kib: u64,
    pub kernel: String,
    pub nofile_soft: u64,
    pub nofile_hard: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Settings {
    pub steps: Vec<usize>,
    pub targets: Vec<String>,
    pub rate_per_s: f64,
    pub phase_seconds: f64,
    pub idle_seconds: f64,
    pub open_concurrency: usize,
    pub fanout_group: usize,
    pub fanout_rates: Vec<f64>,
    pub fanout_seconds: f64,
    pub heartbeat_seconds: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Run {
    pub target: String,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Step {
    pub streams: usize,
    pub open: OpenStats,
    /// Time to first event of streams opened one at a time (no queueing).
    pub ttfe_serial: Summary,
    /// Streams still open, without error, when the tool ended them.
    pub held: usize,
    /// Streams that closed on their own (errors) during the step.
    pub dropped: usize,
    pub rss_base_kib: u64,
    pub rss_open_kib: u64,
    pub rss_per_stream_kib: f64,
    /// Growth of the server's private memory (USS: Private_Clean +
    /// Private_Dirty) per opened stream.
    pub private_per_stream_kib: f64,
    /// Growth of the server's PSS per opened stream.
    pub pss_per_stream_kib: f64,
    /// The server mappings whose resident size grew most while the streams
    /// opened (size = virtual size of the mapping).
    pub rss_growth: Vec<crate::procs::Mapping>,
    pub server_fds: usize,
    /// Redis client connections (all, and those holding a subscription)
    /// with the step's streams open, the tool's own not counted.
    #[serde(default)]
    pub redis_clients: usize,
    #[serde(default)]
    pub redis_subscribers: usize,
    pub idle: Idle,
    pub latency: Latency,
    pub fanout: Option<Fanout>,
    pub close_seconds: f64,
    pub close_aborted: usize,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OpenStats {
    pub requested: usize,
    pub opened: usize,
    pub failed: usize,
    pub errors: BTreeMap<String, usize>,
    pub seconds: f64,
    pub per_s: f64,
    pub ttfe: Summary,
    pub server_cpu_us_per_stream: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Idle {
    pub seconds: f64,
    pub server_cpu_ms: f64,
    /// Percent of one core.
    pub server_cpu_pct: f64,
    pub heartbeats: u64,
    /// The window's second half alone: the p3 build's streams each wake
    /// once a few seconds after opening (a timer armed while opening
    /// fires early, then re-arms), which the first half holds.
    #[serde(default)]
    pub late_server_cpu_pct: Option<f64>,
    #[serde(default)]
    pub late_heartbeats: Option<u64>,
    /// Commands Redis ran in the window, scripts' inner commands included
    /// (`INFO commandstats`): the Redis work idle streams cost.
    #[serde(default)]
    pub redis_commands: Option<u64>,
}

impl Idle {
    /// Redis commands per held stream per heartbeat interval while idle.
    pub fn redis_per_stream_beat(&self, held: usize, heartbeat_seconds: u64) -> Option<f64> {
        let beats = self.seconds / heartbeat_seconds.max(1) as f64;
        let n = self.redis_commands?;
        (held > 0 && beats > 0.0).then(|| n as f64 / held as f64 / beats)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latency {
    pub rate_per_s: f64,
    pub seconds: f64,
    pub published: u64,
    /// Deliveries expected: for each event sent, the streams open on its
    /// execution id (counted by the client: a `PUBLISH` reply counts
    /// subscription connections, which p3 instances share).
    pub expected: u64,
    /// Sum of the publish replies (Redis: receiving connections; nchan:
    /// active subscribers), for reference.
    #[serde(default)]
    pub publish_receivers: u64,
    pub received: u64,
    pub latency: Summary,
    pub delivered_per_s: f64,
    pub server_cpu_us_per_event: f64,
    pub server_cpu_pct: f64,
    pub redis_cpu_pct: f64,
    pub client_cpu_pct: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Fanout {
    pub streams: usize,
    /// Streams per shared execution id.
    pub group: usize,
    pub open: OpenStats,
    pub ramp: Vec<Latency>,
    pub max_delivered_per_s: f64,
    pub dropped: usize,
}

fn f1(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// The highest fan-out delivery rate whose p99 stayed within `p99_ms` and
/// where every event arrived.
pub fn fanout_within(f: &Fanout, p99_ms: f64) -> f64 {
    f.ramp
        .iter()
        .filter(|l| l.received >= l.expected && l.latency.p99_ms <= p99_ms)
        .map(|l| l.delivered_per_s)
        .fold(0.0, f64::max)
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "–".into()
    }
}

/// The fan-out ramp's highest delivery rate where every event arrived, and
/// the p99 there.
fn fanout_top(p: &Step) -> Option<&Latency> {
    p.fanout
        .as_ref()?
        .ramp
        .iter()
        .rev()
        .find(|l| l.expected > 0 && l.received >= l.expected)
}

/// p99 of the fan-out at offered rate `rate`, if every event arrived there.
fn fanout_p99_at(p: &Step, rate: f64) -> Option<f64> {
    let l = p
        .fanout
        .as_ref()?
        .ramp
        .iter()
        .find(|l| l.rate_per_s == rate)?;
    (l.expected > 0 && l.received >= l.expected).then_some(l.latency.p99_ms)
}

/// The figures issue 16 compares, per target and step.
struct Figures {
    held: usize,
    rss: f64,
    private: f64,
    opens: f64,
    ttfe_p50: f64,
    p99: f64,
    fan_max: f64,
    fan_p99: f64,
    fan_tight: f64,
    idle_pct: f64,
    heartbeats: u64,
    late_idle: String,
    redis: usize,
    redis_sub: usize,
    fds: usize,
}

fn figures(p: &Step) -> Figures {
    let top = fanout_top(p);
    Figures {
        held: p.held,
        rss: p.rss_per_stream_kib,
        private: p.private_per_stream_kib,
        opens: p.open.per_s,
        ttfe_p50: p.open.ttfe.p50_ms,
        p99: p.latency.latency.p99_ms,
        fan_max: top.map_or(0.0, |l| l.delivered_per_s),
        fan_p99: top.map_or(0.0, |l| l.latency.p99_ms),
        fan_tight: p.fanout.as_ref().map_or(0.0, |f| fanout_within(f, 50.0)),
        idle_pct: p.idle.server_cpu_pct,
        heartbeats: p.idle.heartbeats,
        late_idle: match (p.idle.late_server_cpu_pct, p.idle.late_heartbeats) {
            (Some(c), Some(h)) => format!("{} ({h})", f1(c)),
            _ => "–".into(),
        },
        redis: p.redis_clients,
        redis_sub: p.redis_subscribers,
        fds: p.server_fds,
    }
}

/// The side-by-side section (issue 16): the p3 build, the p2 build, the
/// native baseline and nchan at each step, the ratios p3 ÷ nchan and
/// p3 ÷ p2, and the p3 targets reached or not. Empty without a p3 target.
fn side_by_side(r: &Results, s: &mut String) {
    let p3: Vec<&Run> = r
        .runs
        .iter()
        .filter(|x| x.target.starts_with("p3"))
        .collect();
    if p3.is_empty() {
        return;
    }
    let mut steps: Vec<usize> = r
        .runs
        .iter()
        .flat_map(|x| x.steps.iter().map(|p| p.streams))
        .collect();
    steps.sort_unstable();
    steps.dedup();
    let rate = r.meta.settings.rate_per_s;
    let conc = r.meta.settings.open_concurrency;
    let _ = writeln!(
        s,
        "\n## Side by side\n\n\
         Per-stream memory is the server's VmRSS growth ÷ streams opened (private = USS growth); \
         TTFE with {conc} opening at once; p99 publish → client at {rate} events/s; fan-out: the \
         highest offered rate where every event arrived, its p99, and the highest with p99 ≤ 50 ms; \
         Redis: client connections with the streams open (all / holding a subscription).\n\n\
         | streams | target | held | RSS KiB/stream | private KiB/stream | opens/s | TTFE p50 ms | \
         p99 ms | fan-out delivered/s | fan-out p99 ms | fan-out/s at p99 ≤ 50 ms | idle CPU % \
         (heartbeats in the window) | idle CPU %, 2nd half (heartbeats) | Redis conns | server fds |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|---:|"
    );
    for &n in &steps {
        for run in &r.runs {
            let Some(p) = run.steps.iter().find(|p| p.streams == n) else {
                continue;
            };
            let f = figures(p);
            let _ = writeln!(
                s,
                "| {n} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} ({}) | {} | {} / {} | {} |",
                run.target,
                f.held,
                f1(f.rss),
                f1(f.private),
                f1(f.opens),
                f1(f.ttfe_p50),
                f1(f.p99),
                f1(f.fan_max),
                f1(f.fan_p99),
                f1(f.fan_tight),
                f1(f.idle_pct),
                f.heartbeats,
                f.late_idle,
                f.redis,
                f.redis_sub,
                f.fds,
            );
        }
    }
    let refs: Vec<&Run> = ["nchan", "nchan-redis", "wasmtime"]
        .iter()
        .filter_map(|t| r.runs.iter().find(|x| x.target == *t))
        .collect();
    if !refs.is_empty() {
        s.push_str(
            "\nRatios at the same step (below 1 is less for the p3 build: better for memory, \
             latency, TTFE and idle CPU; worse for opens/s and fan-out rates). Fan-out p99 is \
             compared at the highest offered rate where both delivered every event (shown).\n\n\
             | streams | ratio | RSS/stream | private/stream | opens/s | TTFE p50 | p99 | \
             fan-out delivered/s | fan-out p99 (at offered/s) | fan-out/s at p99 ≤ 50 ms | idle CPU |\n\
             |---:|---|---:|---:|---:|---:|---:|---:|---|---:|---:|\n",
        );
        for &n in &steps {
            for a in &p3 {
                let Some(pa) = a.steps.iter().find(|p| p.streams == n) else {
                    continue;
                };
                for b in &refs {
                    let label = format!("{} ÷ {}", a.target, b.target);
                    let Some(pb) = b.steps.iter().find(|p| p.streams == n) else {
                        let _ = writeln!(
                            s,
                            "| {n} | {label} | {} has no {n}-stream step | | | | | | | | |",
                            b.target
                        );
                        continue;
                    };
                    let (fa, fb) = (figures(pa), figures(pb));
                    let common = r.meta.settings.fanout_rates.iter().rev().find(|&&x| {
                        fanout_p99_at(pa, x).is_some() && fanout_p99_at(pb, x).is_some()
                    });
                    let fan_p99 = match common {
                        Some(&x) => format!(
                            "{} (at {})",
                            ratio(
                                fanout_p99_at(pa, x).unwrap_or(0.0),
                                fanout_p99_at(pb, x).unwrap_or(0.0)
                            ),
                            f1(x)
                        ),
                        None => "–".into(),
                    };
                    let idle = if fb.idle_pct == 0.0 && fa.idle_pct == 0.0 {
                        "both 0".to_string()
                    } else {
                        ratio(fa.idle_pct, fb.idle_pct)
                    };
                    let _ = writeln!(
                        s,
                        "| {n} | {label} | {} | {} | {} | {} | {} | {} | {fan_p99} | {} | {idle} |",
                        ratio(fa.rss, fb.rss),
                        ratio(fa.private, fb.private),
                        ratio(fa.opens, fb.opens),
                        ratio(fa.ttfe_p50, fb.ttfe_p50),
                        ratio(fa.p99, fb.p99),
                        ratio(fa.fan_max, fb.fan_max),
                        ratio(fa.fan_tight, fb.fan_tight),
                    );
                }
            }
        }
    }
    s.push_str(
        "\nIssue 16's targets for the p3 build, per p3 target (each figure from the step \
         it is about; – where the run had no such step):\n\n\
         | target | check | measured | reached |\n|---|---|---|---|\n",
    );
    for a in &p3 {
        let at = |n: usize| a.steps.iter().find(|p| p.streams == n);
        let largest = a.steps.iter().max_by_key(|p| p.streams);
        let mut row = |check: &str, measured: Option<String>, ok: Option<bool>| {
            let _ = writeln!(
                s,
                "| {} | {check} | {} | {} |",
                a.target,
                measured.unwrap_or_else(|| "–".into()),
                match ok {
                    Some(true) => "yes",
                    Some(false) => "**no**",
                    None => "–",
                }
            );
        };
        let big = largest.map(figures);
        let n_big = largest.map_or(0, |p| p.streams);
        row(
            "≤ 32 KiB host RSS per stream (largest step)",
            big.as_ref()
                .map(|f| format!("{} KiB at {n_big}", f1(f.rss))),
            big.as_ref().map(|f| f.rss <= 32.0),
        );
        row(
            "≥ 19,000 streams held by one host process",
            big.as_ref().map(|f| format!("{} held of {n_big}", f.held)),
            big.as_ref().map(|f| f.held >= 19_000),
        );
        row(
            "Redis connections ≤ streams ÷ 8 (largest step)",
            big.as_ref()
                .map(|f| format!("{} for {} streams", f.redis, f.held)),
            big.as_ref().map(|f| f.redis * 8 <= f.held.max(1)),
        );
        let best_open = a.steps.iter().map(|p| p.open.per_s).fold(0.0, f64::max);
        row(
            "≥ 5,000 new streams/s (best step)",
            Some(format!("{}/s", f1(best_open))),
            Some(best_open >= 5000.0),
        );
        let t = at(1000).or(largest);
        let n_t = t.map_or(0, |p| p.streams);
        let t = t.map(figures);
        row(
            &format!("TTFE p50 ≤ 20 ms with {conc} opening at once ({n_t}-stream step)"),
            t.as_ref().map(|f| format!("{} ms", f1(f.ttfe_p50))),
            t.as_ref().map(|f| f.ttfe_p50 <= 20.0),
        );
        for (n, lim) in [(1000usize, 1.0f64), (10_000, 2.0)] {
            let f = at(n).map(figures);
            row(
                &format!("p99 ≤ {lim} ms at {n} streams, {rate} events/s"),
                f.as_ref().map(|f| format!("{} ms", f1(f.p99))),
                f.as_ref().map(|f| f.p99 <= lim),
            );
        }
        let best_fan = a
            .steps
            .iter()
            .map(|p| figures(p).fan_tight)
            .fold(0.0, f64::max);
        row(
            "fan-out ≥ 100,000 delivered/s at p99 ≤ 50 ms (best step; within 5 % of 100,000/s offered counts)",
            Some(format!("{}/s", f1(best_fan))),
            Some(best_fan >= 0.95 * 100_000.0),
        );
        let idle_max = a
            .steps
            .iter()
            .map(|p| p.idle.server_cpu_pct)
            .fold(0.0, f64::max);
        let late_max = a
            .steps
            .iter()
            .filter_map(|p| p.idle.late_server_cpu_pct)
            .fold(0.0, f64::max);
        row(
            "idle CPU 0 (every step; judged on the window's second half, heartbeats in it shown above)",
            Some(format!(
                "whole window ≤ {} %, second half ≤ {} % of a core",
                f1(idle_max),
                f1(late_max)
            )),
            Some(late_max < 0.05),
        );
    }
}

/// The Markdown report.
pub fn markdown(r: &Results) -> String {
    let m = &r.meta;
    let mut s = String::new();
    let _ = writeln!(s, "# sse-gateway benchmark ({})\n", m.mode);
    let _ = writeln!(
        s,
        "Host: {} CPUs, {} MiB RAM, Linux {}, open files {} (hard {}). \
         wasmtime: {}. Redis: {}.{} Component: {} bytes. Total wall time {:.0} s.\n",
        m.host.cpus,
        m.host.mem_total_kib / 1024,
        m.host.kernel,
        m.host.nofile_soft,
        m.host.nofile_hard,
        m.wasmtime,
        m.redis,
        m.spin
            .as_ref()
            .map(|v| format!(" spin: {v}."))
            .unwrap_or_default(),
        m.component_bytes
            .map(|b| b.to_string())
            .unwrap_or_else(|| "n/a".into()),
        m.seconds_total,
    );
    if r.runs.iter().any(|run| !run.steps.is_empty()) {
        steps(r, &mut s);
    }
    bursts(r, &mut s);
    if !m.notes.is_empty() {
        s.push_str("\nNotes:\n\n");
        for n in &m.notes {
            let _ = writeln!(s, "- {n}");
        }
    }
    s
}

/// The tables of the steps (open, idle, latency, fan-out, memory) and the
/// side-by-side ratios.
fn steps(r: &Results, s: &mut String) {
    let m = &r.meta;
    let st = &m.settings;
    let _ = writeln!(
        s,
        "Streams are execution streams (`GET /api/v1/events/executions/{{id}}`, one id \
         per stream, HS256 cookie); latency: {} events/s published round-robin over them \
         for {} s; idle CPU over {} s; {} streams opening at once; fan-out: groups of \
         {} streams sharing one execution id, offered delivery rates {:?}/s for {} s each. \
         Heartbeat {} s.\n",
        st.rate_per_s,
        st.phase_seconds,
        st.idle_seconds,
        st.open_concurrency,
        st.fanout_group,
        st.fanout_rates,
        st.fanout_seconds,
        st.heartbeat_seconds
    );
    s.push_str(
        "| target | streams | held | opened/s | TTFE p50 / p99 ms | TTFE alone p50 ms | latency p50 / p99 / max ms | \
         delivered/s | server CPU µs/event | RSS KiB/stream | private KiB/stream | idle CPU % | idle Redis commands/stream/heartbeat | fan-out max delivered/s (p99 ≤ 50 ms) |\n",
    );
    s.push_str("|---|---:|---:|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---|\n");
    for run in &r.runs {
        for p in &run.steps {
            let l = &p.latency;
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} / {} | {} | {} / {} / {} | {} | {} | {} | {} | {} | {} | {} |",
                run.target,
                p.streams,
                p.held,
                f1(p.open.per_s),
                f1(p.open.ttfe.p50_ms),
                f1(p.open.ttfe.p99_ms),
                f1(p.ttfe_serial.p50_ms),
                f1(l.latency.p50_ms),
                f1(l.latency.p99_ms),
                f1(l.latency.max_ms),
                f1(l.delivered_per_s),
                f1(l.server_cpu_us_per_event),
                f1(p.rss_per_stream_kib),
                f1(p.private_per_stream_kib),
                f1(p.idle.server_cpu_pct),
                p.idle
                    .redis_per_stream_beat(p.held, st.heartbeat_seconds)
                    .map_or_else(|| "–".into(), |v| format!("{v:.3}")),
                p.fanout
                    .as_ref()
                    .map(|f| {
                        let tight = fanout_within(f, 50.0);
                        let tight = if tight > 0.0 { f1(tight) } else { "–".into() };
                        format!("{} ({tight})", f1(f.max_delivered_per_s))
                    })
                    .unwrap_or_else(|| "–".into()),
            );
        }
    }
    // Ratios wasm / native from the same run.
    let find = |t: &str| r.runs.iter().find(|x| x.target == t);
    if let (Some(w), Some(n)) = (find("wasmtime"), find("native")) {
        s.push_str(
            "\nSandbox cost, wasmtime ÷ native at the same step (same run, same Redis, same client):\n\n\
             | streams | latency p50 | latency p99 | CPU/event | RSS/stream | private/stream | opened/s | CPU/new stream | TTFE alone p50 | fan-out max |\n\
             |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for ws in &w.steps {
            if let Some(ns) = n.steps.iter().find(|x| x.streams == ws.streams) {
                let fo = |p: &Step| p.fanout.as_ref().map_or(0.0, |f| f.max_delivered_per_s);
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    ws.streams,
                    ratio(ws.latency.latency.p50_ms, ns.latency.latency.p50_ms),
                    ratio(ws.latency.latency.p99_ms, ns.latency.latency.p99_ms),
                    ratio(
                        ws.latency.server_cpu_us_per_event,
                        ns.latency.server_cpu_us_per_event
                    ),
                    ratio(ws.rss_per_stream_kib, ns.rss_per_stream_kib),
                    ratio(ws.private_per_stream_kib, ns.private_per_stream_kib),
                    ratio(ws.open.per_s, ns.open.per_s),
                    ratio(
                        ws.open.server_cpu_us_per_stream,
                        ns.open.server_cpu_us_per_stream
                    ),
                    ratio(ws.ttfe_serial.p50_ms, ns.ttfe_serial.p50_ms),
                    ratio(fo(ws), fo(ns)),
                );
            }
        }
    }
    s.push_str(
        "\nFan-out ramp (offered = publishes/s × streams per id):\n\n\
         | target | streams | offered/s | delivered/s | received / expected | p50 / p99 / max ms | \
         server CPU µs/event | server CPU % | client CPU % | Redis CPU % |\n\
         |---|---:|---:|---:|---|---|---:|---:|---:|---:|\n",
    );
    for run in &r.runs {
        for p in &run.steps {
            let Some(f) = &p.fanout else { continue };
            for l in &f.ramp {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} / {} | {} / {} / {} | {} | {} | {} | {} |",
                    run.target,
                    f.streams,
                    f1(l.rate_per_s),
                    f1(l.delivered_per_s),
                    l.received,
                    l.expected,
                    f1(l.latency.p50_ms),
                    f1(l.latency.p99_ms),
                    f1(l.latency.max_ms),
                    f1(l.server_cpu_us_per_event),
                    f1(l.server_cpu_pct),
                    f1(l.client_cpu_pct),
                    f1(l.redis_cpu_pct),
                );
            }
        }
    }
    s.push_str(
        "\nPer step details (unicast latency phase CPU shares are % of one core; \
         open-phase server CPU per new stream):\n\n\
         | target | streams | open failed | dropped | server CPU µs/new stream | server CPU % | client CPU % | Redis CPU % | RSS base → open MiB | server fds | heartbeats in idle |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|\n",
    );
    for run in &r.runs {
        for p in &run.steps {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} → {} | {} | {} |",
                run.target,
                p.streams,
                p.open.failed,
                p.dropped,
                f1(p.open.server_cpu_us_per_stream),
                f1(p.latency.server_cpu_pct),
                f1(p.latency.client_cpu_pct),
                f1(p.latency.redis_cpu_pct),
                f1(p.rss_base_kib as f64 / 1024.0),
                f1(p.rss_open_kib as f64 / 1024.0),
                p.server_fds,
                p.idle.heartbeats,
            );
            for (e, n) in &p.open.errors {
                let _ = writeln!(s, "|  | ↳ open error | {n} × `{e}` | | | | | | | | |");
            }
        }
    }
    s.push_str(
        "\nWhere the server's resident memory grew while the streams opened, by \
         mapping kind (name, size × count; largest step of each target; VmRSS \
         counts a shared page once per mapping):\n\n\
         | target | streams | mapping kind | KiB per stream |\n|---|---:|---|---:|\n",
    );
    for run in &r.runs {
        let Some(p) = run.steps.iter().max_by_key(|p| p.streams) else {
            continue;
        };
        for g in &p.rss_growth {
            let _ = writeln!(
                s,
                "| {} | {} | `{}` ({} KiB) | {} |",
                run.target,
                p.streams,
                g.name,
                g.size_kib,
                f1(g.rss_kib as f64 / p.open.opened.max(1) as f64),
            );
        }
    }
    side_by_side(r, s);
}

/// The burst table: per target and case, how many readers got all K
/// events, how many each got, how long until the last arrived, and the
/// streams the server ended early (with the reason it gave, if any).
fn bursts(r: &Results, s: &mut String) {
    if r.bursts.is_empty() {
        return;
    }
    s.push_str(
        "\nBursts: K events of B bytes published at once (one pipeline) to N readers of \
         one execution, each reading as fast as it can; \"+1 stalled\": one more reader of \
         the same execution opened the stream and never read. Received: burst events per \
         reader (min / median / max); last event: ms from the publish to a reader's last \
         burst event (median / max over the readers that got any).\n\n\
         | target | N × K × B | via | readers with all K | received min / median / max | \
         last event p50 / max ms | closed early | close reasons |\n\
         |---|---|---|---:|---|---|---:|---|\n",
    );
    for b in &r.bursts {
        let mut got: Vec<u64> = b.per_reader.iter().map(|x| x.received).collect();
        got.sort_unstable();
        let mut last: Vec<f64> = b.per_reader.iter().filter_map(|x| x.last_ms).collect();
        last.sort_by(f64::total_cmp);
        let mid = |n: usize| n / 2;
        let received = match (got.first(), got.last()) {
            (Some(lo), Some(hi)) => format!("{lo} / {} / {hi}", got[mid(got.len())]),
            _ => "–".into(),
        };
        let times = match last.last() {
            Some(hi) => format!("{} / {}", f1(last[mid(last.len())]), f1(*hi)),
            None => "–".into(),
        };
        let early: Vec<&BurstReader> = b.per_reader.iter().filter(|x| x.closed_early).collect();
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        for x in &early {
            let end = if x.clean { "clean end" } else { "cut" };
            let why = match &x.note {
                Some(n) => format!("{end}, `: {n}`"),
                None => format!("{end}, no comment"),
            };
            *reasons.entry(why).or_default() += 1;
        }
        for (e, n) in &b.open_errors {
            reasons.insert(format!("not opened: {e}"), *n);
        }
        let reasons: Vec<String> = reasons.iter().map(|(k, n)| format!("{n}× {k}")).collect();
        let _ = writeln!(
            s,
            "| {} | {} × {} × {} B{} | {} | {} of {} | {} | {} | {} | {} |",
            b.target,
            b.readers,
            b.events,
            b.bytes,
            if b.stalled > 0 {
                format!(" +{} stalled", b.stalled)
            } else {
                String::new()
            },
            b.via,
            b.complete(),
            b.readers,
            received,
            times,
            early.len(),
            if reasons.is_empty() {
                "–".into()
            } else {
                reasons.join("; ")
            },
        );
    }
    bursts_side_by_side(r, s);
}

/// The bursts again, one row per case and way of publishing, one column
/// per target: readers with all K (by when the last of them had them) and
/// the readers cut early with what they had got. nchan's POSTs share the
/// `PUBLISH` rows.
fn bursts_side_by_side(r: &Results, s: &mut String) {
    let mut targets: Vec<&str> = Vec::new();
    let mut rows: Vec<(String, Vec<(&str, String)>)> = Vec::new();
    for b in &r.bursts {
        if !targets.contains(&b.target.as_str()) {
            targets.push(&b.target);
        }
        let via = if b.via == "POST" { "PUBLISH" } else { &b.via };
        let row = format!(
            "| {} × {} × {} B{} | {via} |",
            b.readers,
            b.events,
            b.bytes,
            if b.stalled > 0 {
                format!(" +{} stalled", b.stalled)
            } else {
                String::new()
            }
        );
        let full: Vec<f64> = b
            .per_reader
            .iter()
            .filter(|x| x.received >= b.events)
            .filter_map(|x| x.last_ms)
            .collect();
        let cut: Vec<u64> = b
            .per_reader
            .iter()
            .filter(|x| x.closed_early)
            .map(|x| x.received)
            .collect();
        let mut cell = format!("{}/{}", b.complete(), b.readers);
        if let Some(last) = full.iter().copied().reduce(f64::max) {
            let _ = write!(cell, " by {} ms", f1(last));
        }
        if let (Some(lo), Some(hi)) = (cut.iter().min(), cut.iter().max()) {
            let got = if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}–{hi}")
            };
            let _ = write!(cell, "; {} cut (got {got})", cut.len());
        }
        match rows.iter_mut().find(|(k, _)| *k == row) {
            Some((_, cells)) => cells.push((&b.target, cell)),
            None => rows.push((row, vec![(&b.target, cell)])),
        }
    }
    s.push_str("\nSide by side (readers with all K by the last one's time; readers cut early and how many events they had got):\n\n| N × K × B | via |");
    for t in &targets {
        let _ = write!(s, " {t} |");
    }
    s.push_str("\n|---|---|");
    s.push_str(&"---|".repeat(targets.len()));
    s.push('\n');
    for (row, cells) in &rows {
        s.push_str(row);
        for t in &targets {
            let cell = cells.iter().find(|(c, _)| c == t).map_or("–", |(_, v)| v);
            let _ = write!(s, " {cell} |");
        }
        s.push('\n');
    }
}

/// Finds a TrueType font for plot labels: `SSE_BENCH_FONT`, DejaVu Sans, or
/// any `.ttf` under /usr/share/fonts. `None`: the plot is drawn without text.
fn find_font() -> Option<&'static [u8]> {
    let mut candidates: Vec<std::path::PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("SSE_BENCH_FONT") {
        candidates.push(p.into());
    }
    candidates.push("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf".into());
    let mut stack = vec![std::path::PathBuf::from("/usr/share/fonts")];
    let mut seen = 0;
    while let Some(dir) = stack.pop() {
        seen += 1;
        if seen > 200 {
            break;
        }
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "ttf") {
                    candidates.push(p);
                }
            }
        }
    }
    candidates
        .into_iter()
        .find_map(|p| std::fs::read(p).ok())
        .map(|b| &*Box::leak(b.into_boxed_slice()))
}

/// Axis numbers with at most 3 significant digits and no float noise.
fn axis_num(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let digits = (2 - v.abs().log10().floor() as i32).max(0) as usize;
    let s = format!("{v:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Labels for a log axis: only 1, 2 and 5 times a power of ten, so the
/// dense key points of a log scale do not overprint each other.
fn log_label(v: f64) -> String {
    if v <= 0.0 {
        return String::new();
    }
    let lead = v / 10f64.powf(v.log10().floor());
    if [1.0, 2.0, 5.0].iter().any(|d| (lead - d).abs() < 1e-6) {
        axis_num(v)
    } else {
        String::new()
    }
}

/// Latency (left) and memory per stream (right) against streams, PNG.
pub fn plot(r: &Results, path: &Path) -> Result<bool, String> {
    use plotters::prelude::*;
    let font = find_font();
    let text = match font {
        Some(bytes) => {
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
        }
        None => false,
    };
    let root = BitMapBackend::new(path, (1400, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (left, right) = root.split_horizontally(700);
    let others = [
        RGBColor(30, 150, 60),
        RGBColor(230, 140, 20),
        RGBColor(140, 60, 170),
        RGBColor(90, 90, 90),
        RGBColor(0, 170, 170),
        RGBColor(200, 0, 140),
        RGBColor(120, 80, 20),
    ];
    let names: Vec<String> = r.runs.iter().map(|x| x.target.clone()).collect();
    let colour = move |t: &str| match t {
        "wasmtime" => RGBColor(200, 40, 40),
        "native" => RGBColor(30, 90, 200),
        _ => {
            let i = names.iter().position(|n| n == t).unwrap_or(0);
            others[i % others.len()]
        }
    };
    let max_n = r
        .runs
        .iter()
        .flat_map(|x| x.steps.iter().map(|s| s.streams))
        .max()
        .unwrap_or(100)
        .max(10) as f64;
    let min_n = r
        .runs
        .iter()
        .flat_map(|x| x.steps.iter().map(|s| s.streams))
        .min()
        .unwrap_or(10)
        .max(1) as f64;
    let x_range = (min_n * 0.8)..(max_n * 1.25);
    let lat_max = r
        .runs
        .iter()
        .flat_map(|x| x.steps.iter().map(|s| s.latency.latency.p99_ms))
        .fold(1.0f64, f64::max)
        * 2.0;
    let lat_min = r
        .runs
        .iter()
        .flat_map(|x| x.steps.iter().map(|s| s.latency.latency.p50_ms))
        .filter(|v| *v > 0.0)
        .fold(f64::MAX, f64::min)
        .min(lat_max / 10.0)
        * 0.5;
    let mem_max = r
        .runs
        .iter()
        .flat_map(|x| x.steps.iter().map(|s| s.rss_per_stream_kib))
        .fold(140.0f64, f64::max)
        * 1.15;

    let err = |e: DrawingAreaErrorKind<_>| e.to_string();
    {
        let mut b = ChartBuilder::on(&left);
        b.margin(20);
        if text {
            b.caption(
                format!(
                    "publish → receive latency at {} events/s (solid p99, dashed p50)",
                    r.meta.settings.rate_per_s
                ),
                ("sans-serif", 18),
            )
            .x_label_area_size(40)
            .y_label_area_size(60);
        }
        let mut chart = b
            .build_cartesian_2d(x_range.clone().log_scale(), (lat_min..lat_max).log_scale())
            .map_err(err)?;
        let mut mesh = chart.configure_mesh();
        if text {
            mesh.x_desc("open streams (log)")
                .y_desc("ms (log)")
                .x_label_formatter(&|v| log_label(*v))
                .y_label_formatter(&|v| log_label(*v))
                .draw()
                .map_err(err)?;
        }
        for run in &r.runs {
            let c = colour(&run.target);
            let p99: Vec<(f64, f64)> = run
                .steps
                .iter()
                .map(|s| (s.streams as f64, s.latency.latency.p99_ms.max(lat_min)))
                .collect();
            let p50: Vec<(f64, f64)> = run
                .steps
                .iter()
                .map(|s| (s.streams as f64, s.latency.latency.p50_ms.max(lat_min)))
                .collect();
            let series = chart
                .draw_series(LineSeries::new(p99.clone(), c.stroke_width(3)))
                .map_err(err)?;
            if text {
                series
                    .label(format!("{} p99", run.target))
                    .legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 20, y)], c.stroke_width(3))
                    });
            }
            chart
                .draw_series(p99.iter().map(|&p| Circle::new(p, 4, c.filled())))
                .map_err(err)?;
            chart
                .draw_series(p50.iter().map(|&p| Circle::new(p, 4, c.stroke_width(2))))
                .map_err(err)?;
            chart
                .draw_series(DashedLineSeries::new(p50, 6, 4, c.stroke_width(2)))
                .map_err(err)?;
        }
        if text {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperLeft)
                .draw()
                .map_err(err)?;
        }
    }
    {
        let mut b = ChartBuilder::on(&right);
        b.margin(20);
        if text {
            b.caption(
                "server memory per open stream (solid VmRSS, dashed private)",
                ("sans-serif", 18),
            )
            .x_label_area_size(40)
            .y_label_area_size(60);
        }
        let mut chart = b
            .build_cartesian_2d(x_range.log_scale(), 0.0..mem_max)
            .map_err(err)?;
        if text {
            chart
                .configure_mesh()
                .x_desc("open streams (log)")
                .y_desc("KiB per stream (black: 128 KiB target; grey: p3's 32 KiB)")
                .x_label_formatter(&|v| log_label(*v))
                .y_label_formatter(&|v| axis_num(*v))
                .draw()
                .map_err(err)?;
        }
        for run in &r.runs {
            let c = colour(&run.target);
            let pts: Vec<(f64, f64)> = run
                .steps
                .iter()
                .map(|s| (s.streams as f64, s.rss_per_stream_kib))
                .collect();
            let series = chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(3)))
                .map_err(err)?;
            if text {
                series.label(run.target.clone()).legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], c.stroke_width(3))
                });
            }
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 4, c.filled())))
                .map_err(err)?;
            let private: Vec<(f64, f64)> = run
                .steps
                .iter()
                .map(|s| (s.streams as f64, s.private_per_stream_kib))
                .collect();
            chart
                .draw_series(
                    private
                        .iter()
                        .map(|&p| Circle::new(p, 4, c.stroke_width(2))),
                )
                .map_err(err)?;
            chart
                .draw_series(DashedLineSeries::new(private, 6, 4, c.stroke_width(2)))
                .map_err(err)?;
        }
        // The budget: 128 KiB per stream.
        chart
            .draw_series(DashedLineSeries::new(
                [(min_n * 0.8, 128.0), (max_n * 1.25, 128.0)],
                6,
                4,
                BLACK.stroke_width(1),
            ))
            .map_err(err)?;
        // Issue 16's budget for the p3 build: 32 KiB per stream.
        if r.runs.iter().any(|x| x.target.starts_with("p3")) {
            chart
                .draw_series(DashedLineSeries::new(
                    [(min_n * 0.8, 32.0), (max_n * 1.25, 32.0)],
                    6,
                    4,
                    RGBColor(150, 150, 150).stroke_width(1),
                ))
                .map_err(err)?;
        }
        if text {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(err)?;
        }
    }
    root.present().map_err(|e| e.to_string())?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(streams: usize, rss: f64, opens: f64, ttfe: f64, p99: f64) -> Step {
        let mut p = Step {
            streams,
            held: streams,
            rss_per_stream_kib: rss,
            ..Default::default()
        };
        p.open.per_s = opens;
        p.open.ttfe.p50_ms = ttfe;
        p.latency.latency.p99_ms = p99;
        p
    }

    fn results(runs: Vec<(&str, Vec<Step>)>) -> Results {
        Results {
            runs: runs
                .into_iter()
                .map(|(target, steps)| Run {
                    target: target.into(),
                    steps,
                })
                .collect(),
            ..Default::default()
        }
    }

    fn row<'a>(md: &'a str, start: &str) -> &'a str {
        md.lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no row {start:?} in:\n{md}"))
    }

    #[test]
    fn figures_print_three_significant_places_at_most() {
        assert_eq!(f1(1234.4), "1234");
        assert_eq!(f1(12.34), "12.3");
        assert_eq!(f1(1.234), "1.23");
        assert_eq!(ratio(1.0, 0.0), "–", "no ratio to nothing");
    }

    #[test]
    fn the_side_by_side_ratios_are_the_p3_build_over_each_reference() {
        let r = results(vec![
            ("p3", vec![step(1000, 20.0, 5000.0, 10.0, 0.5)]),
            ("nchan", vec![step(1000, 10.0, 10_000.0, 5.0, 0.25)]),
            ("wasmtime", vec![step(100, 300.0, 800.0, 30.0, 2.0)]),
        ]);
        let md = markdown(&r);
        // RSS, private (none measured), opens, TTFE, p99, the fan-out
        // columns (no fan-out), idle CPU (both 0).
        assert_eq!(
            row(&md, "| 1000 | p3 ÷ nchan |"),
            "| 1000 | p3 ÷ nchan | 2.00× | – | 0.50× | 2.00× | 2.00× | – | – | – | both 0 |"
        );
        assert!(
            row(&md, "| 1000 | p3 ÷ wasmtime |").contains("wasmtime has no 1000-stream step"),
            "{md}"
        );
        let opens = row(&md, "| p3 | ≥ 5,000 new streams/s");
        assert!(opens.ends_with("| 5000/s | yes |"), "{opens}");
        let rss = row(&md, "| p3 | ≤ 32 KiB host RSS per stream");
        assert!(rss.ends_with("| 20.0 KiB at 1000 | yes |"), "{rss}");
    }

    #[test]
    fn without_a_p3_target_there_is_no_side_by_side() {
        let r = results(vec![("wasmtime", vec![step(100, 300.0, 800.0, 30.0, 2.0)])]);
        assert!(!markdown(&r).contains("## Side by side"));
    }

    #[test]
    fn fan_out_counts_only_rates_where_every_event_arrived_in_time() {
        let at = |rate: f64, delivered: f64, p99: f64, received: u64| Latency {
            rate_per_s: rate,
            delivered_per_s: delivered,
            expected: 100,
            received,
            latency: Summary {
                p99_ms: p99,
                ..Default::default()
            },
            ..Default::default()
        };
        let f = Fanout {
            ramp: vec![
                at(1000.0, 1000.0, 10.0, 100),
                at(2000.0, 1900.0, 60.0, 100),
                at(3000.0, 2500.0, 20.0, 99),
            ],
            ..Default::default()
        };
        assert_eq!(fanout_within(&f, 50.0), 1000.0);
        assert_eq!(fanout_within(&f, 100.0), 1900.0);
        let p = Step {
            fanout: Some(f),
            ..Default::default()
        };
        assert_eq!(fanout_top(&p).map(|l| l.rate_per_s), Some(2000.0));
        assert_eq!(fanout_p99_at(&p, 3000.0), None, "an event was lost there");
        assert_eq!(fanout_p99_at(&p, 2000.0), Some(60.0));
    }
}
