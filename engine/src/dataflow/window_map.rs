//! The groups of one key by window start: what stage 2 of an aggregate keeps per key.
//!
//! A sorted double-ended queue, not a tree: event time moves forward, so almost every
//! lookup (a partial merged, a window finalized) is for one of the newest windows, found
//! by a short scan from the back that touches one or two cache lines; windows are born at
//! the back and expire (state TTL) at the front, both O(1). A search tree walked three
//! cold nodes for each partial (60% of `AggregateState::apply`, perf). The price: a window
//! inserted or removed far from both ends (a late row under `update`, an old session
//! merged) shifts the entries between it and the nearer end.

use std::collections::VecDeque;

/// How many of the newest windows a lookup scans before it searches the whole queue.
const NEWEST_SCAN: usize = 4;

/// Values by window start (`i64`), in start order.
#[derive(Debug, Clone)]
pub struct WindowMap<V> {
    entries: VecDeque<(i64, V)>,
}

impl<V> Default for WindowMap<V> {
    fn default() -> Self {
        WindowMap { entries: VecDeque::new() }
    }
}

impl<V> WindowMap<V> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Where `start` is (`Ok`), or where it would go (`Err`): the newest few first, then
    /// the oldest (what the state TTL evicts), and only then a search of the whole queue,
    /// whose probes are cache misses once a key holds a minute of windows.
    #[inline]
    pub fn find(&self, start: i64) -> Result<usize, usize> {
        let n = self.entries.len();
        for i in (n.saturating_sub(NEWEST_SCAN)..n).rev() {
            let s = self.entries[i].0;
            if s == start {
                return Ok(i);
            }
            if s < start {
                return Err(i + 1);
            }
        }
        match self.entries.front() {
            Some((s, _)) if *s == start => Ok(0),
            Some((s, _)) if *s > start => Err(0),
            _ => self.entries.binary_search_by_key(&start, |e| e.0),
        }
    }

    /// The value at an index `find` returned.
    pub fn at(&self, i: usize) -> &V {
        &self.entries[i].1
    }

    /// Removes the entry at an index `find` returned.
    pub fn remove_at(&mut self, i: usize) -> Option<V> {
        self.entries.remove(i).map(|e| e.1)
    }

    pub fn get(&self, start: i64) -> Option<&V> {
        self.find(start).ok().map(|i| &self.entries[i].1)
    }

    pub fn get_mut(&mut self, start: i64) -> Option<&mut V> {
        self.find(start).ok().map(|i| &mut self.entries[i].1)
    }

    /// The value at an index `find` returned.
    pub fn at_mut(&mut self, i: usize) -> &mut V {
        &mut self.entries[i].1
    }

    /// Puts `value` at the place `find(start)` returned as `Err(i)`, with nothing changed
    /// in between.
    pub fn insert_at(&mut self, i: usize, start: i64, value: V) -> &mut V {
        debug_assert!(i == 0 || self.entries[i - 1].0 < start, "window {start} out of order");
        debug_assert!(i == self.entries.len() || start < self.entries[i].0, "window {start} out of order");
        // (VecDeque moves the entries on the nearer side: at the back this is a push.)
        self.entries.insert(i, (start, value));
        &mut self.entries[i].1
    }

    /// Sets the value of `start`, returning the one it replaces.
    pub fn insert(&mut self, start: i64, value: V) -> Option<V> {
        match self.find(start) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.insert_at(i, start, value);
                None
            }
        }
    }

    pub fn remove(&mut self, start: i64) -> Option<V> {
        let i = self.find(start).ok()?;
        self.remove_at(i)
    }

    /// Removes the windows overlapping `[start, end)`, in start order, for windows that do
    /// not overlap each other (sessions): their ends then rise with their starts, so the
    /// overlapping ones are the run that ends just below `end`, found from there.
    pub fn take_overlapping(
        &mut self,
        start: i64,
        end: i64,
        end_of: impl Fn(&V) -> i64,
    ) -> std::collections::vec_deque::Drain<'_, (i64, V)> {
        let hi = self.entries.partition_point(|e| e.0 < end);
        let mut lo = hi;
        while lo > 0 && start < end_of(&self.entries[lo - 1].1) {
            lo -= 1;
        }
        self.entries.drain(lo..hi)
    }

    /// Every window in start order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&i64, &V)> + ExactSizeIterator {
        self.entries.iter().map(|(s, v)| (s, v))
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &i64> + ExactSizeIterator {
        self.entries.iter().map(|(s, _)| s)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + ExactSizeIterator {
        self.entries.iter().map(|(_, v)| v)
    }
}

impl<'a, V> IntoIterator for &'a WindowMap<V> {
    type Item = (&'a i64, &'a V);
    type IntoIter =
        std::iter::Map<std::collections::vec_deque::Iter<'a, (i64, V)>, fn(&'a (i64, V)) -> (&'a i64, &'a V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(s, v)| (s, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{RngCore, SeedableRng};
    use std::collections::BTreeMap;

    /// Against a BTreeMap over a seeded mix of in-order, late and far-back inserts,
    /// removals at both ends and in the middle, and lookups.
    #[test]
    fn behaves_as_a_sorted_map() {
        let mut ours = WindowMap::new();
        let mut oracle = BTreeMap::new();
        let mut rng = SmallRng::seed_from_u64(0x9e37_79b9_7f4a_7c15);
        let mut head = 0i64;
        for step in 0..20_000 {
            let r = rng.next_u64();
            let start = match r % 10 {
                0..=5 => {
                    head += (r >> 8) as i64 % 3;
                    head
                }
                6 | 7 => head - ((r >> 8) % 8) as i64,
                _ => head - ((r >> 8) % 1_000) as i64,
            } * 1_000;
            match (r >> 32) % 6 {
                0..=2 => assert_eq!(ours.insert(start, step), oracle.insert(start, step)),
                3 => assert_eq!(ours.remove(start), oracle.remove(&start)),
                4 => {
                    let first = oracle.keys().next().copied();
                    if let Some(f) = first {
                        assert_eq!(ours.remove(f), oracle.remove(&f));
                    }
                }
                _ => assert_eq!(ours.get(start), oracle.get(&start)),
            }
            assert_eq!(ours.len(), oracle.len());
        }
        assert!(ours.iter().map(|(s, v)| (*s, *v)).eq(oracle.iter().map(|(s, v)| (*s, *v))));
        assert!(ours.values().rev().eq(oracle.values().rev()));
        for (s, v) in &oracle {
            assert_eq!(ours.find(*s).map(|i| *ours.at_mut(i)), Ok(*v));
        }
    }

    /// Disjoint windows `[start, start + len)`: what overlaps a range is what a filter
    /// over every window finds, and only that is taken.
    #[test]
    fn takes_exactly_the_overlapping_sessions() {
        let mut sessions = WindowMap::new();
        for (start, len) in [(0, 10), (10, 5), (20, 1), (30, 20), (60, 3), (70, 30)] {
            sessions.insert(start, start + len);
        }
        let all: Vec<(i64, i64)> = sessions.iter().map(|(s, e)| (*s, *e)).collect();
        for (start, end) in [(-5, 0), (-5, 1), (9, 21), (15, 20), (50, 60), (49, 61), (100, 200), (0, 100)] {
            let mut ours = sessions.clone();
            let taken: Vec<(i64, i64)> = ours.take_overlapping(start, end, |e| *e).collect();
            let expected: Vec<(i64, i64)> = all.iter().copied().filter(|&(s, e)| s < end && start < e).collect();
            assert_eq!(taken, expected, "[{start}, {end})");
            let kept: Vec<(i64, i64)> = ours.iter().map(|(s, e)| (*s, *e)).collect();
            let rest: Vec<(i64, i64)> = all.iter().copied().filter(|w| !expected.contains(w)).collect();
            assert_eq!(kept, rest, "[{start}, {end})");
        }
    }
}
