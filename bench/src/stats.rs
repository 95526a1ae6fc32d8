//! Percentiles and the monotonic clock every timestamp in the run uses.

use serde::Serialize;
use std::sync::OnceLock;
use std::time::Instant;

static BASE: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the tool started, on the monotonic clock. The publisher
/// puts this into each event (`"ts"`) and the receiver subtracts it from its
/// own reading: both run in this process, so no clock sync is involved.
pub fn now_ns() -> u64 {
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Nearest-rank percentile of sorted samples (`p` in 0..=100).
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Latency summary in milliseconds.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct Summary {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

pub fn summarize(mut samples_ns: Vec<u64>) -> Summary {
    samples_ns.sort_unstable();
    let ms = |ns: u64| ns as f64 / 1e6;
    let count = samples_ns.len();
    let mean = if count == 0 {
        0.0
    } else {
        samples_ns.iter().map(|&n| n as f64).sum::<f64>() / count as f64 / 1e6
    };
    Summary {
        count,
        p50_ms: ms(percentile(&samples_ns, 50.0)),
        p99_ms: ms(percentile(&samples_ns, 99.0)),
        max_ms: ms(samples_ns.last().copied().unwrap_or(0)),
        mean_ms: mean,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 99.0), 0);
    }

    #[test]
    fn summary_in_ms() {
        let s = summarize(vec![3_000_000, 1_000_000, 2_000_000]);
        assert_eq!(s.count, 3);
        assert_eq!(s.p50_ms, 2.0);
        assert_eq!(s.max_ms, 3.0);
        assert_eq!(s.mean_ms, 2.0);
    }
}
