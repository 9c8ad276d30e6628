//! The index stage 1 finds integer-keyed groups by: open addressing with linear probing
//! over a power-of-two array of slots that hold the group's identity (its integer keys and
//! window start) beside its position in the partial table. A lookup hashes three integers
//! and usually reads one 32-byte slot; it follows no pointer and compares no bytes.
//!
//! Emptied once per round without touching the slots: each slot carries the round it was
//! filled in, and a slot of an earlier round counts as empty.

/// Group keys an identity holds (unused ones are `i64::MIN`).
pub const INT_KEYS_MAX: usize = 2;

/// Slots of a fresh index (it doubles when a quarter full).
const SLOTS_INITIAL: usize = 1024;

#[derive(Debug, Clone, Copy)]
#[repr(C, align(32))]
struct Slot {
    keys: [i64; INT_KEYS_MAX],
    start: i64,
    group: u32,
    /// The round this slot was filled in; any other round's slot is empty.
    round: u32,
}

const EMPTY: Slot = Slot { keys: [0; INT_KEYS_MAX], start: 0, group: 0, round: 0 };

/// Position of integer-keyed groups in a partial table, by (keys, window start).
pub struct IntGroupIndex {
    slots: Vec<Slot>,
    len: usize,
    /// The current round, never 0 (0 marks a slot never filled).
    round: u32,
    /// Random per index, so that keys chosen to collide in one process do not in another
    /// (and no fixed key zeroes a product).
    seeds: [u64; 2],
}

impl Default for IntGroupIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl IntGroupIndex {
    pub fn new() -> Self {
        IntGroupIndex {
            slots: vec![EMPTY; SLOTS_INITIAL],
            len: 0,
            round: 1,
            seeds: {
                let random = std::collections::hash_map::RandomState::new();
                [0u64, 1].map(|i| std::hash::BuildHasher::hash_one(&random, i))
            },
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets every group (the partial table was drained), keeping the slots.
    pub fn clear(&mut self) {
        self.len = 0;
        self.round = self.round.wrapping_add(1);
        if self.round == 0 {
            // Once per 2^32 rounds the old round numbers could come back: wipe them.
            self.slots.fill(EMPTY);
            self.round = 1;
        }
    }

    #[inline]
    fn hash(&self, keys: &[i64; INT_KEYS_MAX], start: i64) -> u64 {
        let h = fold_mul(keys[0] as u64 ^ self.seeds[0], keys[1] as u64 ^ self.seeds[1]);
        fold_mul(h ^ start as u64, 0xa409_3822_299f_31d0)
    }

    /// The group of (keys, start), or the slot a new one goes to (pass it to `insert`).
    #[inline]
    pub fn find(&self, keys: &[i64; INT_KEYS_MAX], start: i64) -> Result<u32, usize> {
        let mask = self.slots.len() - 1;
        let mut at = self.hash(keys, start) as usize & mask;
        loop {
            let s = &self.slots[at];
            if s.round != self.round {
                return Err(at);
            }
            if s.keys == *keys && s.start == start {
                return Ok(s.group);
            }
            at = (at + 1) & mask;
        }
    }

    /// Starts loading the slot where `find(keys, start)` will look first into the cache,
    /// for a lookup a little later (the fold streams megabytes of log through the cache
    /// each round, so a slot is usually in memory, ~100 ns away).
    #[inline]
    pub fn prefetch(&self, keys: &[i64; INT_KEYS_MAX], start: i64) {
        let at = self.hash(keys, start) as usize & (self.slots.len() - 1);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch is only a hint: it reads nothing, faults on nothing, and `at`
        // is in bounds anyway.
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch::<_MM_HINT_T0>(self.slots.as_ptr().add(at).cast());
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = at;
    }

    /// Adds a group at the slot `find` returned for it, with nothing inserted in between.
    pub fn insert(&mut self, at: usize, keys: [i64; INT_KEYS_MAX], start: i64, group: u32) {
        debug_assert!(self.slots[at].round != self.round, "slot {at} is taken");
        self.slots[at] = Slot { keys, start, group, round: self.round };
        self.len += 1;
        // At most a quarter full: most lookups end at their first slot (half full cost the
        // column fold ~0.6 ns a row in second probes, `bench --bin fold`).
        if self.len * 4 > self.slots.len() {
            self.grow();
        }
    }

    fn grow(&mut self) {
        let doubled = vec![EMPTY; self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, doubled);
        let (len, round) = (self.len, self.round);
        self.len = 0;
        for s in old.into_iter().filter(|s| s.round == round) {
            let Err(at) = self.find(&s.keys, s.start) else { unreachable!("identities in an index are distinct") };
            self.slots[at] = s;
            self.len += 1;
        }
        debug_assert_eq!(self.len, len);
    }
}

/// The high and low halves of a 64x64-bit product folded together: the mixing step of
/// foldhash and wyhash, one multiply.
#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = (a as u128) * (b as u128);
    (p as u64) ^ ((p >> 64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_was_inserted_across_growth_and_rounds() {
        let mut index = IntGroupIndex::new();
        for round in 0..3u32 {
            let n = 5_000 + round as i64;
            for k in 0..n {
                let (keys, start) = ([k % 97, k], (k % 3) * 1_000);
                let at = index.find(&keys, start).expect_err("new in this round");
                index.insert(at, keys, start, k as u32);
            }
            assert_eq!(index.len(), n as usize);
            for k in 0..n {
                assert_eq!(index.find(&[k % 97, k], (k % 3) * 1_000), Ok(k as u32));
            }
            assert!(index.find(&[0, n], 0).is_err());
            index.clear();
            assert!(index.is_empty());
            assert!(index.find(&[1, 1], 1_000).is_err(), "a cleared index is empty");
        }
    }

    #[test]
    fn colliding_keys_stay_apart() {
        let mut index = IntGroupIndex::new();
        // The same key in many windows, and keys equal to other keys' starts.
        for w in 0..600i64 {
            for (k, start) in [([7, i64::MIN], w * 1_000), ([w * 1_000, i64::MIN], 7)] {
                if let Err(at) = index.find(&k, start) {
                    index.insert(at, k, start, index.len() as u32);
                }
            }
        }
        assert_eq!(index.len(), 1_200, "([7], 7000) and ([7000], 7) are different groups");
    }
}
