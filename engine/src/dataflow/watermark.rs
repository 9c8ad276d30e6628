//! Event time: per-partition watermarks at the sources, and the minimum over inputs at
//! the operators that keep state.
//!
//! A partition's watermark is its newest event time minus the allowed lateness; an event
//! older than the watermark (as it stood when the event was read) is late. The decision
//! depends on the partition's own order only, so replay reaches the same decisions as
//! the live run. A shard's watermark is the minimum over its partitions, leaving out
//! partitions that have been caught up and silent for the idle timeout; a stateful
//! operator's is the minimum over every shard's. Both only move forward.
//!
//! Reads are aligned on event time: a partition whose watermark is more than
//! `WATERMARK_DRIFT_MAX_MS` ahead of the slowest partition with a backlog (its last round
//! of reads stopped at the round's quota, not at its end), on any shard, waits for it.
//! Windows close on the minimum, so without that bound a catch-up holds open every window
//! between the slowest and the fastest reader, and the fastest can be minutes of event
//! time ahead. Only partitions with a backlog hold others back, so the slowest of them,
//! anywhere, always reads: the alignment cannot deadlock. A partition caught up holds
//! nobody (however old its time: the idle timeout deals with it).

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
    /// Its last round of reads stopped at the round's limit, not at the partition's end:
    /// there is more to read right away.
    pub backlog: bool,
}

impl PartitionClock {
    pub fn new(partition: u32, lateness_ms: i64) -> Self {
        PartitionClock {
            partition,
            max_ts: WATERMARK_UNKNOWN,
            lateness_ms,
            last_data: Instant::now(),
            caught_up: false,
            backlog: false,
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

    pub fn get(&self, partition: u32) -> Option<&PartitionClock> {
        self.partitions.iter().find(|c| c.partition == partition)
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

    /// The watermark of the slowest partition with a backlog, if any has one.
    pub fn slowest_backlog(&self) -> Option<i64> {
        self.partitions.iter().filter(|c| c.backlog && c.max_ts != WATERMARK_UNKNOWN).map(|c| c.watermark()).min()
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

/// Watermark alignment of one view's reads on one shard: what every shard (this one
/// included) last said about its slowest partition with a backlog.
#[derive(Debug, Clone)]
pub struct ReadAlignment {
    /// Per shard: the watermark of its slowest partition with a backlog, WATERMARK_IDLE
    /// if none has one (it holds nobody).
    backlog_watermarks: Vec<i64>,
    /// What this shard last sent.
    sent: i64,
}

impl ReadAlignment {
    pub fn new(shards: usize) -> Self {
        ReadAlignment { backlog_watermarks: vec![WATERMARK_IDLE; shards], sent: WATERMARK_IDLE }
    }

    /// What this shard holds the others to (its `slowest_backlog` over every input), if
    /// that differs from what it last sent, or if it holds anyone and `again` (a message
    /// a shard could not take, for a view it had not started yet, is then made good).
    pub fn to_send(&mut self, slowest_backlog: Option<i64>, again: bool) -> Option<i64> {
        let holding = slowest_backlog.unwrap_or(WATERMARK_IDLE);
        (holding != self.sent || (again && holding != WATERMARK_IDLE)).then(|| {
            self.sent = holding;
            holding
        })
    }

    /// Records what shard `from` holds the others to; true if the read limit rose.
    pub fn update(&mut self, from: usize, holding: i64) -> bool {
        let before = self.read_limit(0);
        if let Some(h) = self.backlog_watermarks.get_mut(from) {
            *h = holding;
        }
        self.read_limit(0) > before
    }

    /// The newest watermark a partition may have and still be read, `drift_max_ms` past
    /// the slowest backlog anywhere (i64::MAX when there is none).
    pub fn read_limit(&self, drift_max_ms: i64) -> i64 {
        let slowest = self.backlog_watermarks.iter().copied().min().unwrap_or(WATERMARK_IDLE);
        slowest.saturating_add(drift_max_ms)
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

    /// Shards reading partitions of different density at different speeds, with messages
    /// delayed and some partitions late by 700 ms: every partition is read to its end (no
    /// deadlock), and no read takes a partition further past the slowest with a backlog
    /// than the drift plus a round's reading.
    #[test]
    fn aligned_reads_finish_and_keep_partitions_within_the_drift() {
        const DRIFT_MS: i64 = 1_000;
        const BATCHES_PER_ROUND: usize = 4;
        struct Part {
            shard: usize,
            /// Batches of event times.
            batches: Vec<Vec<i64>>,
            next: usize,
        }
        // (shard, event-time span of a batch, first time); every partition ends near 100 s.
        let layouts: [&[(usize, i64, i64)]; 4] = [
            &[(0, 100, 0), (0, 100, 0), (1, 100, 0), (1, 100, 0)],
            &[(0, 2_000, 0), (0, 50, 0), (1, 50, 0)],
            // An old, short partition caught up early holds nobody back.
            &[(0, 100, 0), (1, 100, 0), (1, 100, -1_000_000)],
            &[(0, 10, 0), (1, 3_000, 0), (2, 250, 50_000)],
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for (layout_no, layout) in layouts.iter().enumerate() {
            for speeds in [[1, 1, 1], [1, 5, 2], [7, 1, 3]] {
                let shards = layout.iter().map(|l| l.0).max().unwrap_or(0) + 1;
                let mut parts: Vec<Part> = layout
                    .iter()
                    .map(|&(shard, span_ms, first)| {
                        let end = if first < 0 { first + 10 * span_ms } else { 100_000 };
                        let batches = (first..end)
                            .step_by(span_ms as usize)
                            .map(|t| (t..t + span_ms).step_by((span_ms as usize / 5).max(1)).collect())
                            .collect();
                        Part { shard, batches, next: 0 }
                    })
                    .collect();
                let mut clocks: Vec<SourceClocks> = (0..shards)
                    .map(|s| {
                        SourceClocks::new(
                            (0..parts.len())
                                .filter(|&i| parts[i].shard == s)
                                .map(|i| PartitionClock::new(i as u32, if i % 2 == 1 { 700 } else { 0 }))
                                .collect(),
                        )
                    })
                    .collect();
                let mut align: Vec<ReadAlignment> = (0..shards).map(|_| ReadAlignment::new(shards)).collect();
                // (deliver at step, to, from, holding)
                let mut mail: Vec<(u64, usize, usize, i64)> = Vec::new();
                let mut step = 0u64;
                let mut worst_lag = 0i64;
                while parts.iter().any(|p| p.next < p.batches.len()) {
                    step += 1;
                    assert!(step < 1_000_000, "layout {layout_no} speeds {speeds:?}: reads stalled");
                    mail.retain(|&(at, to, from, h)| {
                        if at <= step {
                            align[to].update(from, h);
                        }
                        at > step
                    });
                    for s in 0..shards {
                        if !step.is_multiple_of(speeds[s % 3]) {
                            continue;
                        }
                        let limit = align[s].read_limit(DRIFT_MS);
                        let mine: Vec<usize> = (0..parts.len()).filter(|&i| parts[i].shard == s).collect();
                        for i in mine {
                            let part = &mut parts[i];
                            let Some(clock) = clocks[s].get_mut(i as u32) else { continue };
                            if clock.watermark() > limit {
                                continue;
                            }
                            let mut read = 0;
                            while read < BATCHES_PER_ROUND && part.next < part.batches.len() {
                                assert!(clock.observe_run(part.batches[part.next].iter().copied(), false));
                                part.next += 1;
                                read += 1;
                            }
                            // As the driver: a round that used its quota (even to the last batch).
                            clock.backlog = read == BATCHES_PER_ROUND;
                            clock.caught_up = part.next == part.batches.len();
                            let after = clock.watermark();
                            // Until every shard has read once and been heard (the slowest runs
                            // every 7th step, messages take up to 3), reads go unaligned.
                            let slowest = clocks.iter().filter_map(SourceClocks::slowest_backlog).min();
                            if let (true, Some(slowest)) = (step > 10 && read > 0, slowest) {
                                worst_lag = worst_lag.max(after - slowest);
                            }
                        }
                        if let Some(h) = align[s].to_send(clocks[s].slowest_backlog(), false) {
                            for to in 0..shards {
                                // In order from one shard to another, as on the channels.
                                let last = mail.iter().filter(|m| m.1 == to && m.2 == s).map(|m| m.0).max();
                                let at = (step + if to == s { 0 } else { rand(4) }).max(last.unwrap_or(0));
                                mail.push((at, to, s, h));
                            }
                        }
                    }
                }
                let span_max_ms = layout.iter().map(|l| l.1).max().unwrap_or(0);
                // A partition under the limit reads a whole round past it; a batch more for
                // the lateness and the messages' delay.
                let bound = DRIFT_MS + (BATCHES_PER_ROUND as i64 + 1) * span_max_ms;
                assert!(
                    worst_lag <= bound,
                    "layout {layout_no} speeds {speeds:?}: a partition ran {worst_lag} ms ahead (bound {bound})"
                );
            }
        }
    }
}
