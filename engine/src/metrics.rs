//! Metric building blocks: shard-local counters and latency histograms, and the
//! Prometheus text format they are rendered in.
//!
//! Every metric lives next to what it measures and belongs to one shard: plain `Cell`s,
//! no atomics on the hot path. A scrape asks every shard to render its own lines.

use std::cell::Cell;
use std::fmt::Write;
use std::time::Duration;

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(Cell<u64>);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.set(self.0.get() + n);
    }

    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

/// Upper bounds of the latency buckets, in microseconds.
pub const LATENCY_BUCKETS_US: [u64; 14] =
    [25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000];

/// A latency histogram with fixed buckets (Prometheus-style, cumulative when rendered).
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    buckets: [Cell<u64>; LATENCY_BUCKETS_US.len() + 1],
    sum_us: Cell<u64>,
    count: Cell<u64>,
}

impl LatencyHistogram {
    pub fn record(&self, d: Duration) {
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        let i = LATENCY_BUCKETS_US.iter().position(|&b| us <= b).unwrap_or(LATENCY_BUCKETS_US.len());
        self.buckets[i].set(self.buckets[i].get() + 1);
        self.sum_us.set(self.sum_us.get() + us);
        self.count.set(self.count.get() + 1);
    }

    /// Adds another histogram's counts into this one (for per-shard totals).
    pub fn merge(&self, other: &LatencyHistogram) {
        for (a, b) in self.buckets.iter().zip(&other.buckets) {
            a.set(a.get() + b.get());
        }
        self.sum_us.set(self.sum_us.get() + other.sum_us.get());
        self.count.set(self.count.get() + other.count.get());
    }

    pub fn count(&self) -> u64 {
        self.count.get()
    }

    /// Renders `name_bucket`, `name_sum` and `name_count` (in seconds) with `labels`.
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            cumulative += b.get();
            let le = match LATENCY_BUCKETS_US.get(i) {
                Some(us) => format!("{}", *us as f64 / 1e6),
                None => "+Inf".to_string(),
            };
            let sep = if labels.is_empty() { "" } else { "," };
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum_us.get() as f64 / 1e6);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count.get());
    }
}

/// Writes `# HELP` and `# TYPE` lines.
pub fn describe(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escapes a label value.
pub fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_renders_cumulative_buckets() {
        let h = LatencyHistogram::default();
        h.record(Duration::from_micros(30));
        h.record(Duration::from_micros(300));
        h.record(Duration::from_secs(5));
        let mut out = String::new();
        h.render(&mut out, "x", "shard=\"0\"");
        assert!(out.contains("x_bucket{shard=\"0\",le=\"0.00005\"} 1"), "{out}");
        assert!(out.contains("x_bucket{shard=\"0\",le=\"0.0005\"} 2"), "{out}");
        assert!(out.contains("x_bucket{shard=\"0\",le=\"+Inf\"} 3"), "{out}");
        assert!(out.contains("x_count{shard=\"0\"} 3"), "{out}");
    }
}
