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
         delivered/s | server CPU µs/event | RSS KiB/stream | private KiB/stream | idle CPU % | fan-out max delivered/s (p99 ≤ 50 ms) |\n",
    );
    s.push_str("|---|---:|---:|---:|---|---:|---|---:|---:|---:|---:|---:|---|\n");
    for run in &r.runs {
        for p in &run.steps {
            let l = &p.latency;
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} / {} | {} | {} / {} / {} | {} | {} | {} | {} | {} | {} |",
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
    if !m.notes.is_empty() {
        s.push_str("\nNotes:\n\n");
        for n in &m.notes {
            let _ = writeln!(s, "- {n}");
        }
    }
    s
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
                .y_desc("KiB per stream (black: 128 KiB target)")
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
