//! A cache in front of [`super::int_group_index::IntGroupIndex`] for groups keyed by one
//! integer from a small range (instrument, sensor or account ids): the group of (key,
//! window start) is read from an array indexed by `key - base`, one array per recent
//! window, instead of hashed and probed in an index too large for the L1 cache. This is
//! the perfect-hash aggregation of DuckDB and others, made adaptive: the range is taken
//! from the first batch of a round, and a key outside it, or a window not among the few
//! recent ones, simply misses.
//!
//! It only ever holds groups the index holds, and is emptied with it, so a hit is always
//! the group the index would have found.

/// The widest key range the arrays cover (16 KiB of slots per window).
const SPAN_MAX: usize = 4_096;
/// Windows with an array at once: a round folds rows of two or three tumbling windows.
const WINDOWS: usize = 4;
/// Windows taken over in one round before the cache gives up until the next: rows of
/// many windows (late or out-of-order data) would spend their time clearing arrays.
const EVICTIONS_PER_ROUND_MAX: u32 = 64;

struct WindowSlots {
    start: i64,
    /// Whether `groups` belongs to `start` in this round.
    valid: bool,
    /// When it was last taken (for choosing which window to give up).
    taken: u64,
    /// Group + 1 by `key - base`; 0 when the group is not cached.
    groups: Vec<u32>,
}

pub struct DirectGroupIndex {
    base: i64,
    /// Keys covered: `base..base + span`; 0 until the round's range is set.
    span: usize,
    windows: [WindowSlots; WINDOWS],
    /// The window the last lookup used.
    last: usize,
    takes: u64,
    evictions: u32,
    /// This round's keys span more than SPAN_MAX: nothing is cached until the next.
    too_wide: bool,
}

impl Default for DirectGroupIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl DirectGroupIndex {
    pub fn new() -> Self {
        DirectGroupIndex {
            base: 0,
            span: 0,
            windows: std::array::from_fn(|_| WindowSlots { start: 0, valid: false, taken: 0, groups: Vec::new() }),
            last: 0,
            takes: 0,
            evictions: 0,
            too_wide: false,
        }
    }

    /// Forgets every group (the index was emptied); the next round sets a range again.
    pub fn clear(&mut self) {
        self.span = 0;
        self.evictions = 0;
        self.too_wide = false;
        for w in &mut self.windows {
            w.valid = false;
        }
    }

    /// Whether this round still needs a range (see [`Self::set_range`]).
    #[inline]
    pub fn needs_range(&self) -> bool {
        self.span == 0 && !self.too_wide
    }

    /// Covers the keys `min..=max` for the rest of the round, if the range is small enough.
    pub fn set_range(&mut self, min: i64, max: i64) {
        debug_assert!(min <= max);
        let width = (max as i128 - min as i128 + 1) as u128;
        if width <= SPAN_MAX as u128 {
            self.base = min;
            // Some room above: ids tend to grow.
            self.span = (width as usize).next_power_of_two().clamp(64, SPAN_MAX);
        } else {
            self.too_wide = true;
        }
    }

    /// The cached group of (key, start), if any.
    #[inline]
    pub fn get(&mut self, key: i64, start: i64) -> Option<u32> {
        let offset = key.wrapping_sub(self.base) as u64;
        if offset >= self.span as u64 {
            return None;
        }
        let w = &self.windows[self.last];
        let w = if w.valid && w.start == start {
            w
        } else {
            let i = self.windows.iter().position(|w| w.valid && w.start == start)?;
            self.last = i;
            &self.windows[i]
        };
        match w.groups[offset as usize] {
            0 => None,
            g => Some(g - 1),
        }
    }

    /// Caches `group` as the group of (key, start), taking a window's array if needed.
    pub fn put(&mut self, key: i64, start: i64, group: u32) {
        let offset = key.wrapping_sub(self.base) as u64;
        if offset >= self.span as u64 || group == u32::MAX {
            return;
        }
        let i = match self.windows.iter().position(|w| w.valid && w.start == start) {
            Some(i) => i,
            None => {
                if self.evictions >= EVICTIONS_PER_ROUND_MAX {
                    return;
                }
                let i = (0..WINDOWS).min_by_key(|&i| (self.windows[i].valid, self.windows[i].taken)).unwrap_or(0);
                if self.windows[i].valid {
                    self.evictions += 1;
                }
                self.takes += 1;
                let w = &mut self.windows[i];
                w.groups.clear();
                w.groups.resize(self.span, 0);
                w.start = start;
                w.valid = true;
                w.taken = self.takes;
                i
            }
        };
        self.last = i;
        self.windows[i].groups[offset as usize] = group + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_only_what_was_put_in_range_and_window() {
        let mut d = DirectGroupIndex::new();
        assert!(d.needs_range());
        d.set_range(100, 1_099);
        assert!(!d.needs_range());
        assert_eq!(d.get(100, 0), None);
        d.put(100, 0, 7);
        d.put(1_099, 0, 8);
        d.put(5_000, 0, 9); // outside: not cached
        d.put(100, 1_000, 10);
        assert_eq!(d.get(100, 0), Some(7));
        assert_eq!(d.get(1_099, 0), Some(8));
        assert_eq!(d.get(5_000, 0), None);
        assert_eq!(d.get(99, 0), None);
        assert_eq!(d.get(100, 1_000), Some(10));
        assert_eq!(d.get(101, 1_000), None);
        // More windows than arrays: the least recently taken goes, and misses after.
        for w in 2..=WINDOWS as i64 + 1 {
            d.put(100, w * 1_000, w as u32);
        }
        assert_eq!(d.get(100, 0), None);
        assert_eq!(d.get(100, (WINDOWS as i64 + 1) * 1_000), Some(WINDOWS as u32 + 1));
        d.clear();
        assert!(d.needs_range());
        d.set_range(0, 10);
        assert_eq!(d.get(100, (WINDOWS as i64 + 1) * 1_000), None);
    }

    #[test]
    fn a_wide_range_or_many_windows_turn_it_off_for_the_round() {
        let mut d = DirectGroupIndex::new();
        d.set_range(i64::MIN, i64::MAX);
        assert!(!d.needs_range());
        d.put(0, 0, 1);
        assert_eq!(d.get(0, 0), None);
        d.clear();
        d.set_range(0, 10);
        for w in 0..(EVICTIONS_PER_ROUND_MAX as i64 + WINDOWS as i64 + 10) {
            d.put(1, w, 3);
        }
        // Past the limit no window is taken over: the latest ones miss.
        assert_eq!(d.get(1, EVICTIONS_PER_ROUND_MAX as i64 + WINDOWS as i64 + 9), None);
    }
}
