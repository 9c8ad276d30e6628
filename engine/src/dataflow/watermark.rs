//! Event time: per-partition watermarks at the sources, and the minimum over inputs at
//! the operators that keep state.
//!
//! A partition's watermark is its newest event time minus the allowed lateness; an event
//! older than the watermark (as it stood when the event was read) is late. The decision
//! depends on the partition's own order only, so replay reaches the same decisions as
//! the live run. A shard's watermark is the minimum over its partitions, leaving out
//! partitions that have been caught up and silent for the idle timeout; a stateful
//! operator's is the minimum over every shard's. Both only move forward.

use std::time::{Duration, Instant};

/// A watermark before anything is known.
pub const WATERMARK_UNKNOWN: i64 = i64::MIN;
/// The watermark of an input with nothing to wait for (no partitions, or all idle).
pub const WATERMARK_IDLE: i64 = i64::MAX;

/// One source partition's event clock.
#[derive(Debug, Clone)]
pub struct PartitionClock {
    pub partition: u32,
    pub max_ts: i64,
    lateness_ms: i64,
    last_data: Instant,
    /// The reader has reached the partition's end (nothing unread right now).
    pub caught_up: bool,
}

impl PartitionClock {
    pub fn new(partition: u32, lateness_ms: i64) -> Self {
        PartitionClock {
            partition,
            max_ts: WATERMARK_UNKNOWN,
            lateness_ms,
            last_data: Instant::now(),
            caught_up: false,
        }
    }

    pub fn watermark(&self) -> i64 {
        if self.max_ts == WATERMARK_UNKNOWN {
            WATERMARK_UNKNOWN
        } else {
            self.max_ts.saturating_sub(self.lateness_ms)
        }
    }

    /// Takes in an event's time; returns whether it is late (behind the watermark as it
    /// stood before the event).
    pub fn observe(&mut self, ts: i64) -> bool {
        let late = ts < self.watermark();
        if ts > self.max_ts {
            self.max_ts = ts;
        }
        late
    }

    /// Takes in a run of event times when none of them is late (or lateness does not
    /// matter: `!late_matters`) and returns true; if one is late, leaves the clock as it
    /// was and returns false, for the caller to take the run one event at a time.
    pub fn observe_run(&mut self, mut times: impl Iterator<Item = i64>, late_matters: bool) -> bool {
        let before = self.max_ts;
        if times.all(|ts| !(self.observe(ts) && late_matters)) {
            return true;
        }
        self.max_ts = before;
        false
    }

    pub fn touched(&mut self) {
        self.last_data = Instant::now();
    }

    fn idle(&self, now: Instant, timeout: Duration) -> bool {
        self.caught_up && now.duration_since(self.last_data) >= timeout
    }
}

/// The clocks of the partitions one shard reads for one input.
#[derive(Debug, Clone, Default)]
pub struct SourceClocks {
    pub partitions: Vec<PartitionClock>,
    reported: i64,
}

impl SourceClocks {
    pub fn new(partitions: Vec<PartitionClock>) -> Self {
        SourceClocks { partitions, reported: WATERMARK_UNKNOWN }
    }

    pub fn get_mut(&mut self, partition: u32) -> Option<&mut PartitionClock> {
        self.partitions.iter_mut().find(|c| c.partition == partition)
    }

    /// The shard's watermark for this input: never moves back.
    pub fn watermark(&mut self, idle_timeout: Duration) -> i64 {
        if self.partitions.is_empty() {
            return WATERMARK_IDLE;
        }
        let now = Instant::now();
        let active: Vec<i64> =
            self.partitions.iter().filter(|c| !c.idle(now, idle_timeout)).map(PartitionClock::watermark).collect();
        let wm = match active.iter().min() {
            Some(m) => *m,
            // Every partition idle: wait for nothing, but say what was reached.
            None => self.partitions.iter().map(PartitionClock::watermark).max().unwrap_or(WATERMARK_UNKNOWN),
        };
        self.reported = self.reported.max(wm);
        self.reported
    }

    /// Restores the clocks from a checkpoint: (partition, newest event time).
    pub fn restore(&mut self, saved: &[(u32, i64)]) {
        for (p, max_ts) in saved {
            if let Some(c) = self.get_mut(*p) {
                c.max_ts = *max_ts;
            }
        }
    }
}

/// The watermarks an operator has received from each shard; its own is their minimum.
#[derive(Debug, Clone)]
pub struct InputWatermarks {
    per_sender: Vec<i64>,
    current: i64,
}

impl InputWatermarks {
    pub fn new(senders: usize) -> Self {
        InputWatermarks { per_sender: vec![WATERMARK_UNKNOWN; senders], current: WATERMARK_UNKNOWN }
    }

    /// Records a sender's watermark; returns the operator's new watermark if it advanced.
    pub fn update(&mut self, sender: usize, wm: i64) -> Option<i64> {
        if let Some(s) = self.per_sender.get_mut(sender) {
            // A sender that was idle and has data again counts again (from where it is).
            *s = if *s == WATERMARK_IDLE { wm } else { (*s).max(wm) };
        }
        let min = self.per_sender.iter().copied().min().unwrap_or(WATERMARK_UNKNOWN);
        // Every sender idle: hold what was reached.
        if min == WATERMARK_IDLE {
            return None;
        }
        if min > self.current {
            self.current = min;
            return Some(min);
        }
        None
    }

    pub fn current(&self) -> i64 {
        self.current
    }

    pub fn senders(&self) -> &[i64] {
        &self.per_sender
    }

    pub fn restore(&mut self, senders: &[i64], current: i64) {
        for (s, v) in self.per_sender.iter_mut().zip(senders) {
            *s = *v;
        }
        self.current = current;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lateness_is_decided_per_partition() {
        let mut c = PartitionClock::new(0, 10);
        assert!(!c.observe(100));
        assert!(!c.observe(95), "within the allowed lateness");
        assert!(c.observe(89), "behind newest - lateness");
        assert_eq!(c.watermark(), 90);
    }

    #[test]
    fn operators_take_the_minimum_and_never_move_back() {
        let mut w = InputWatermarks::new(2);
        assert_eq!(w.update(0, 50), None, "shard 1 unknown");
        assert_eq!(w.update(1, 40), Some(40));
        assert_eq!(w.update(1, 30), None, "never back");
        assert_eq!(w.update(1, WATERMARK_IDLE), Some(50));
        assert_eq!(w.update(0, WATERMARK_IDLE), None, "all idle: hold");
        assert_eq!(w.current(), 50);
        let mut s = SourceClocks::new(vec![PartitionClock::new(0, 0), PartitionClock::new(1, 0)]);
        s.get_mut(0).unwrap().observe(10);
        s.get_mut(1).unwrap().observe(20);
        assert_eq!(s.watermark(Duration::from_secs(60)), 10);
        let p = s.get_mut(0).unwrap();
        p.caught_up = true;
        assert_eq!(s.watermark(Duration::ZERO), 20, "an idle partition does not hold it back");
        assert_eq!(SourceClocks::default().watermark(Duration::ZERO), WATERMARK_IDLE);
    }
}
