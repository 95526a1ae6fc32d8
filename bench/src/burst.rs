//! `--bursts`: many events at once, and a reader that stalls beside
//! readers that do not (issue 22).
//!
//! A burst is N readers of one execution stream, each reading as fast as
//! it can, then K events of B bytes published at once: one Redis pipeline
//! of plain `PUBLISH`es as the Python producers send them (or, with
//! `--burst-script`, also through the gateway's history publish script;
//! for nchan, pipelined POSTs). Per reader it records how many of the K
//! arrived, when the last one did, and whether the server ended the stream
//! before the tool did (with the comment it wrote last, its close reason
//! when it gives one). The neighbour case adds one more reader of the same
//! execution that opens the stream and never reads: the others should not
//! notice it (target: all K each within 2 s).

use crate::client::{self, END_CLEAN, END_OPEN};
use crate::redis::{self, Payload, Via};
use crate::report::{Burst, BurstReader};
use crate::{blocking, close_set, exec_path, prepare, stats, Ctx, Kind, Server};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// One scenario: `readers` × `events` × `bytes`, plus `stalled` readers
/// that never read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Case {
    pub readers: usize,
    pub events: u64,
    pub bytes: usize,
    pub stalled: usize,
}

impl Case {
    /// `N,K,B` (readers, events, bytes per event).
    pub fn parse(v: &str, stalled: usize) -> Result<Case, String> {
        let n: Vec<u64> = crate::cli::list(v)?;
        match n[..] {
            [readers, events, bytes] if readers > 0 && events > 0 && bytes > 0 => Ok(Case {
                // Bounded: a run on this machine stays short.
                readers: readers.min(2000) as usize,
                events: events.min(10_000),
                bytes: bytes.min(512 * 1024) as usize,
                stalled,
            }),
            _ => Err(format!(
                "{v:?}: want N,K,B (readers, events, bytes), all > 0"
            )),
        }
    }

    /// The cases: 1 reader × 60 × 20 KB, 20 × 300 × 20 KB,
    /// 20 × 300 × 2 KB, and 20 × 300 × 20 KB beside a stalled reader.
    pub fn defaults() -> Vec<Case> {
        let case = |readers, events, bytes, stalled| Case {
            readers,
            events,
            bytes,
            stalled,
        };
        vec![
            case(1, 60, 20_000, 0),
            case(20, 300, 20_000, 0),
            case(20, 300, 2_000, 0),
            case(20, 300, 20_000, 1),
        ]
    }
}

/// Runs `case` against `server`, published `via` (ignored for nchan);
/// `seq` keeps execution ids apart within the run.
pub async fn run(
    ctx: &Ctx,
    server: &mut Server,
    case: Case,
    via: Via,
    wait: Duration,
    seq: usize,
) -> Result<Burst, String> {
    server.check()?;
    let via_name = match (server.kind, via) {
        (Kind::Nchan, _) => "POST",
        (Kind::Gateway, Via::Publish) => "PUBLISH",
        (Kind::Gateway, Via::Script) => "publish script",
    };
    let id = format!("b{}-{}-{seq}", ctx.run_id, server.name);
    prepare(ctx, server, vec![(id.clone(), format!("owner-{id}"))]).await?;
    // Admins watch an execution they do not own, one user each (the
    // per-user stream limit stays out of the way).
    let token = |who: &str| ctx.token(&format!("admin-{id}-{who}"), "admin");
    let path = exec_path(&id);
    let mut stalled = Vec::with_capacity(case.stalled);
    for i in 0..case.stalled {
        let sock = client::open_stalled(server.addr, &path, &token(&format!("stalled{i}")))
            .await
            .map_err(|e| format!("{}: the stalled reader did not open: {e}", server.name))?;
        stalled.push(sock);
    }
    let streams = (0..case.readers)
        .map(|i| (path.clone(), token(&i.to_string())))
        .collect();
    let (set, rep) =
        client::open_streams(server.addr, streams, case.readers, Duration::from_secs(60)).await;
    // Every reader has its first event, so its subscription is in place;
    // a moment more for the stalled one's.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (redis, addr, name, k) = (ctx.redis, server.addr, id.clone(), case.events);
    let payload = Payload::Padded(case.bytes);
    let published = match server.kind {
        Kind::Gateway => blocking(move || redis::burst(redis, &name, payload, k, via)).await,
        Kind::Nchan => {
            blocking(move || crate::nchan::publish(addr, &[name], payload, f64::INFINITY, k)).await
        }
    }?;
    let t0 = published.first_ns;

    // Until every reader has all K or has ended, at most `wait`.
    let views = &set.shared.streams;
    let settled = || {
        rep.opened_idx.iter().all(|&i| {
            let v = &views[i];
            v.received.load(Ordering::Relaxed) >= k || v.end.load(Ordering::Relaxed) != END_OPEN
        })
    };
    let deadline = tokio::time::Instant::now() + wait;
    while !settled() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seconds = stats::now_ns().saturating_sub(t0) as f64 / 1e9;
    let per_reader = rep
        .opened_idx
        .iter()
        .map(|&i| {
            let v = &views[i];
            let received = v.received.load(Ordering::Relaxed);
            let end = v.end.load(Ordering::Relaxed);
            let last = v.last_rx_ns.load(Ordering::Relaxed);
            BurstReader {
                received,
                last_ms: (received > 0).then(|| last.saturating_sub(t0) as f64 / 1e6),
                closed_early: end != END_OPEN,
                clean: end == END_CLEAN,
                note: v.note.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            }
        })
        .collect();
    drop(stalled);
    close_set(ctx, server, set, &[id]).await;
    Ok(Burst {
        target: server.name.clone(),
        via: via_name.into(),
        readers: case.readers,
        events: case.events,
        bytes: case.bytes,
        stalled: case.stalled,
        opened: rep.opened,
        open_errors: rep.errors,
        wait_seconds: wait.as_secs_f64(),
        seconds,
        per_reader,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_parse_and_are_bounded() {
        let c = Case::parse("20,300,20000", 1).unwrap();
        assert_eq!(
            (c.readers, c.events, c.bytes, c.stalled),
            (20, 300, 20_000, 1)
        );
        let c = Case::parse("99999,99999,99999999", 0).unwrap();
        assert_eq!((c.readers, c.events, c.bytes), (2000, 10_000, 512 * 1024));
        for bad in ["20,300", "0,1,1", "1,2,3,4", "a,b,c"] {
            assert!(Case::parse(bad, 0).is_err(), "{bad}");
        }
    }
}
