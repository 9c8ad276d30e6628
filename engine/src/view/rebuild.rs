//! What a rebuild of a view looks like from outside: its phase and progress, as SHOW,
//! HTTP, `/metrics` and `sluice view rebuild` report them.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RebuildPhase {
    /// Reading history into the new version; the old one serves.
    Building,
    /// The new version serves; the old one is gone.
    Done,
    Cancelled,
    /// The view was dropped, or a shard lost the new version.
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub struct RebuildProgress {
    pub view: String,
    /// The version being built.
    pub version: u32,
    pub from: String,
    pub phase: RebuildPhase,
    /// Records read so far, of those between the start and the log's end now.
    pub events_done: u64,
    pub events_total: u64,
    pub bytes_read: u64,
    pub elapsed_ms: u64,
    pub events_per_s: f64,
    pub bytes_per_s: f64,
    /// Seconds to the end at the rate so far (unknown before any progress).
    pub eta_s: Option<f64>,
    /// 0: unlimited.
    pub rate_limit_bytes_per_s: u64,
}

impl RebuildProgress {
    pub fn fraction(&self) -> f64 {
        if self.events_total == 0 {
            return if self.phase == RebuildPhase::Building { 0.0 } else { 1.0 };
        }
        (self.events_done as f64 / self.events_total as f64).min(1.0)
    }

    /// Records behind the log's end.
    pub fn lag_events(&self) -> u64 {
        self.events_total.saturating_sub(self.events_done)
    }
}
