//! Event-time windows: which windows an event falls in (tumbling, hopping), and session
//! windows that grow and merge as events arrive.

use crate::dataflow::accumulator::Acc;
use crate::dataflow::plan::{AggPlan, WindowPlan};

/// Calls `f(start, end)` for every tumbling or hopping window holding `ts`, oldest
/// first. Session windows are not assigned here (see [`SessionSet`]). Event times come
/// from the wire: near the ends of `i64` the window bounds saturate instead of wrapping
/// (a wrapped hop start would loop ~2^64 times).
pub fn assign(window: WindowPlan, ts: i64, mut f: impl FnMut(i64, i64)) {
    match window {
        WindowPlan::Tumble { size_ms } => {
            let (start, end) = tumble_window(ts, size_ms);
            f(start, end);
        }
        WindowPlan::Hop { slide_ms, size_ms } => {
            let last = ts.saturating_sub(ts.rem_euclid(slide_ms));
            let mut start = last.saturating_sub((size_ms - 1).div_euclid(slide_ms) * slide_ms);
            loop {
                if start.saturating_add(size_ms) > ts {
                    f(start, start.saturating_add(size_ms));
                }
                match start.checked_add(slide_ms) {
                    Some(next) if next <= last => start = next,
                    _ => break,
                }
            }
        }
        WindowPlan::Session { gap_ms } => f(ts, ts.saturating_add(gap_ms)),
    }
}

/// The tumbling window `[start, end)` of `size_ms` holding `ts` (saturating at the ends of
/// `i64`, as [`assign`] does).
#[inline(always)]
pub fn tumble_window(ts: i64, size_ms: i64) -> (i64, i64) {
    debug_assert!(size_ms > 0);
    let start = ts.saturating_sub(ts.rem_euclid(size_ms));
    (start, start.saturating_add(size_ms))
}

/// One session of one key: events closer than the gap, and their aggregates.
#[derive(Debug, Clone)]
pub struct Session {
    pub start: i64,
    /// Exclusive: the last event's time plus the gap.
    pub end: i64,
    pub accs: Vec<Acc>,
}

/// The sessions of one key, sorted by start, never overlapping.
#[derive(Debug, Clone, Default)]
pub struct SessionSet {
    pub sessions: Vec<Session>,
}

impl SessionSet {
    /// Adds `[start, end)` with its aggregates, merging every session it overlaps.
    /// Returns the starts of sessions that were absorbed (their rows are gone) and the
    /// index of the resulting session.
    pub fn insert(&mut self, start: i64, end: i64, accs: &[Acc], aggs: &[AggPlan]) -> (Vec<i64>, usize) {
        let mut merged = Session { start, end, accs: aggs.iter().map(|a| a.func.new_acc()).collect() };
        for (m, a) in merged.accs.iter_mut().zip(accs) {
            m.merge(a);
        }
        let mut absorbed = Vec::new();
        let mut i = 0;
        while i < self.sessions.len() {
            let s = &self.sessions[i];
            if s.start < merged.end && merged.start < s.end {
                let s = self.sessions.remove(i);
                absorbed.push(s.start);
                merged.start = merged.start.min(s.start);
                merged.end = merged.end.max(s.end);
                for (m, a) in merged.accs.iter_mut().zip(&s.accs) {
                    m.merge(a);
                }
            } else {
                i += 1;
            }
        }
        let at = self.sessions.partition_point(|s| s.start < merged.start);
        absorbed.retain(|s| *s != merged.start);
        self.sessions.insert(at, merged);
        (absorbed, at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataflow::accumulator::{AggFunc, Position};
    use crate::sql::types::{DataType, Datum};

    fn windows(w: WindowPlan, ts: i64) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        assign(w, ts, |s, e| out.push((s, e)));
        out
    }

    #[test]
    fn tumbling_and_hopping_windows_hold_the_event() {
        assert_eq!(windows(WindowPlan::Tumble { size_ms: 10 }, 25), vec![(20, 30)]);
        assert_eq!(windows(WindowPlan::Tumble { size_ms: 10 }, -1), vec![(-10, 0)]);
        assert_eq!(windows(WindowPlan::Hop { slide_ms: 5, size_ms: 15 }, 12), vec![(0, 15), (5, 20), (10, 25)]);
        assert_eq!(windows(WindowPlan::Hop { slide_ms: 5, size_ms: 15 }, 15), vec![(5, 20), (10, 25), (15, 30)]);
        assert_eq!(
            windows(WindowPlan::Hop { slide_ms: 10, size_ms: 5 }, 17),
            Vec::<(i64, i64)>::new(),
            "a gap between hops"
        );
        for ts in -50..50 {
            for (s, e) in windows(WindowPlan::Hop { slide_ms: 3, size_ms: 7 }, ts) {
                assert!(s <= ts && ts < e && s.rem_euclid(3) == 0 && e - s == 7);
            }
            let n = windows(WindowPlan::Hop { slide_ms: 3, size_ms: 7 }, ts).len();
            assert!(n == 2 || n == 3, "{ts}: {n} windows");
        }
    }

    #[test]
    fn extreme_event_times_neither_wrap_nor_hang() {
        for ts in [i64::MAX, i64::MAX - 1, i64::MIN, i64::MIN + 1, 0] {
            for w in [
                WindowPlan::Tumble { size_ms: 1_000 },
                WindowPlan::Hop { slide_ms: 1, size_ms: 4_000 },
                WindowPlan::Hop { slide_ms: 1_000, size_ms: 4_000 },
                WindowPlan::Session { gap_ms: 1_000 },
            ] {
                let got = windows(w, ts);
                assert!(got.len() <= 4_000, "{w:?} at {ts}: {} windows", got.len());
                assert!(got.iter().all(|&(s, e)| s <= ts && s <= e), "{w:?} at {ts}: {got:?}");
            }
        }
    }

    #[test]
    fn sessions_merge_when_they_overlap() {
        let aggs = vec![AggPlan {
            func: AggFunc::CountStar,
            arg: None,
            arg_type: DataType::BigInt,
            result_type: DataType::BigInt,
        }];
        let one = |n: i64| {
            let mut a = AggFunc::CountStar.new_acc();
            for _ in 0..n {
                a.update(AggFunc::CountStar, &Datum::Null, Position { ts: 0, partition: 0, offset: 0 });
            }
            vec![a]
        };
        let mut s = SessionSet::default();
        s.insert(0, 10, &one(1), &aggs);
        s.insert(30, 40, &one(1), &aggs);
        assert_eq!(s.sessions.len(), 2);
        // An event between them bridges both.
        let (absorbed, i) = s.insert(8, 32, &one(1), &aggs);
        assert_eq!(s.sessions.len(), 1);
        assert_eq!((s.sessions[i].start, s.sessions[i].end), (0, 40));
        assert_eq!(absorbed, vec![30]);
        assert_eq!(s.sessions[0].accs[0].result(AggFunc::CountStar, DataType::BigInt), Datum::Int(3));
    }
}
