//! `sse-bench fanout-once`: one published event to N streams of one
//! execution, against a gateway that is already running (loopback only).
//!
//! The question it answers is the p3 build's: when one `PUBLISH` reaches an
//! instance holding hundreds of streams, how long until the last of them
//! has the event? Redis' reply counts subscription *connections*, not
//! streams, so the tool counts deliveries itself: every stream holds one
//! execution id; for each event it waits (bounded) until all N streams
//! have it and reports how many had it at 1 s and at the end, and the
//! publish → receive latency of every delivery.
//!
//! ```text
//! sse-bench fanout-once --url http://127.0.0.1:8080 --redis-url redis://127.0.0.1:6379 \
//!     --streams 2000 [--events 5] [--wait-seconds 10] [--concurrency 64] [--jwt-secret S] \
//!     [--server-pid PID]
//! ```

use crate::cli::loopback;
use crate::{client, jwt, procs, redis, stats, SECRET};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

struct Args {
    url: SocketAddr,
    redis: SocketAddr,
    streams: usize,
    events: u64,
    wait: Duration,
    concurrency: usize,
    secret: String,
    /// The gateway's pid, to read its CPU time per event.
    server_pid: Option<u32>,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let (mut url, mut redis) = (None, None);
    let mut a = Args {
        url: "127.0.0.1:0".parse().expect("literal"),
        redis: "127.0.0.1:0".parse().expect("literal"),
        streams: 1000,
        events: 5,
        wait: Duration::from_secs(10),
        concurrency: 64,
        secret: SECRET.into(),
        server_pid: None,
    };
    let mut i = 0;
    while i < args.len() {
        let flag = args[i].as_str();
        i += 1;
        let value = args
            .get(i)
            .cloned()
            .ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = format!("bad {flag} {value:?}");
        match flag {
            "--url" => url = Some(loopback(&value)?),
            "--redis-url" => redis = Some(loopback(&value)?),
            "--streams" => a.streams = value.parse().map_err(|_| bad.clone())?,
            "--events" => a.events = value.parse().map_err(|_| bad.clone())?,
            "--wait-seconds" => {
                a.wait = Duration::from_secs_f64(value.parse().map_err(|_| bad.clone())?)
            }
            "--concurrency" => a.concurrency = value.parse().map_err(|_| bad.clone())?,
            "--jwt-secret" => a.secret = value,
            "--server-pid" => a.server_pid = Some(value.parse().map_err(|_| bad.clone())?),
            other => return Err(format!("unknown argument {other:?}")),
        }
        i += 1;
    }
    a.url = url.ok_or("--url is required")?;
    a.redis = redis.ok_or("--redis-url is required")?;
    // Bounded: a load run on this machine stops by itself.
    a.streams = a.streams.clamp(1, 20_000);
    a.events = a.events.clamp(1, 100);
    a.wait = a.wait.min(Duration::from_secs(60));
    Ok(a)
}

/// Runs the subcommand; prints one line per event and a summary.
pub fn main(args: &[String]) -> Result<(), String> {
    let a = parse(args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(run(a))
}

async fn run(a: Args) -> Result<(), String> {
    let id = format!("fanout-once-{}", std::process::id());
    let record = vec![(id.clone(), format!("owner-{id}"))];
    let r = a.redis;
    tokio::task::spawn_blocking(move || redis::create_records(r, &record))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    // Admins watch an execution they do not own; one user each (the
    // per-user stream limit stays out of the way).
    let streams = (0..a.streams)
        .map(|i| {
            let token = jwt::mint(&a.secret, &format!("admin-{id}-{i}"), "admin", 3600);
            (format!("/api/v1/events/executions/{id}"), token)
        })
        .collect();
    let open_timeout = Duration::from_secs(60 + a.streams as u64 / 50);
    let (set, rep) = client::open_streams(a.url, streams, a.concurrency, open_timeout).await;
    println!(
        "opened {} of {} in {:.1} s ({} failed: {:?})",
        rep.opened, a.streams, rep.seconds, rep.failed, rep.errors
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let shared = set.shared.clone();
    let n = rep.opened as u64;
    let mut all = Vec::new();
    for seq in 0..a.events {
        let _ = shared.take_samples();
        let r0 = shared.received.load(Ordering::Relaxed);
        let cpu0 = a.server_pid.map_or(0, procs::cpu_us_fine);
        let (r, ids) = (a.redis, vec![id.clone()]);
        let published = tokio::task::spawn_blocking(move || {
            redis::publish(r, &ids, redis::Payload::Live, f64::INFINITY, 1)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        let t0 = stats::now_ns();
        let mut at_1s = None;
        loop {
            let got = shared.received.load(Ordering::Relaxed) - r0;
            let waited = Duration::from_nanos(stats::now_ns() - t0);
            if at_1s.is_none() && waited >= Duration::from_secs(1) {
                at_1s = Some(got);
            }
            if got >= n || waited >= a.wait {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let got = shared.received.load(Ordering::Relaxed) - r0;
        let cpu_us = a
            .server_pid
            .map_or(0, procs::cpu_us_fine)
            .saturating_sub(cpu0);
        let samples = shared.take_samples();
        all.extend_from_slice(&samples);
        let s = stats::summarize(samples);
        println!(
            "event {seq}: {got} of {n} delivered ({} within 1 s), redis receivers {}, \
             latency p50 {:.1} ms p99 {:.1} ms max {:.1} ms; server CPU {:.1} ms ({:.1} µs per delivery)",
            at_1s.unwrap_or(got),
            published.receivers,
            s.p50_ms,
            s.p99_ms,
            s.max_ms,
            cpu_us as f64 / 1e3,
            cpu_us as f64 / got.max(1) as f64
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let s = stats::summarize(all);
    println!(
        "all events: {} deliveries, p50 {:.1} ms p99 {:.1} ms max {:.1} ms; \
         {:.0} deliveries/s at the slowest (N / max)",
        s.count,
        s.p50_ms,
        s.p99_ms,
        s.max_ms,
        n as f64 / (s.max_ms / 1e3).max(1e-6)
    );
    set.shared.ending.store(true, Ordering::Relaxed);
    let (r, ids) = (a.redis, vec![id.clone()]);
    let _ = tokio::task::spawn_blocking(move || {
        redis::publish(r, &ids, redis::Payload::Terminal, f64::INFINITY, 1)
    })
    .await;
    set.finish(Duration::from_secs(30)).await;
    Ok(())
}
