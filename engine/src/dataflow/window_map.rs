//! The groups of one key by window start: what stage 2 of an aggregate keeps per key.
//!
//! A sorted double-ended queue, not a tree: event time moves forward, so almost every
//! lookup (a partial merged, a window finalized) is for one of the newest windows, found
//! by a short scan from the back that touches one or two cache lines; windows are born at
//! the back and expire (state TTL) at the front, both O(1). A search tree walked three
//! cold nodes for each partial (60% of `AggregateState::apply`, perf). The price: a window
//! inserted or removed far from both ends (a late row under `update`, a session merge)
//! shifts the entries between it and the nearer end.

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

    /// Where `start` is (`Ok`), or where it would go (`Err`): the newest few first.
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
        self.entries.binary_search_by_key(&start, |e| e.0)
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
        if i == self.entries.len() {
            self.entries.push_back((start, value));
        } else {
            self.entries.insert(i, (start, value));
        }
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
        if i == 0 {
            self.entries.pop_front().map(|e| e.1)
        } else {
            self.entries.remove(i).map(|e| e.1)
        }
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
    use std::collections::BTreeMap;

    /// Against a BTreeMap over a seeded mix of in-order, late and far-back inserts,
    /// removals at both ends and in the middle, and lookups.
    #[test]
    fn behaves_as_a_sorted_map() {
        let mut ours = WindowMap::new();
        let mut oracle = BTreeMap::new();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut head = 0i64;
        for step in 0..20_000 {
            let r = next();
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
}
