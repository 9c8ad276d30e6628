//! The indexes of a partition's sealed segments that were used last.
//!
//! A sealed segment's index lives in its index file, not in memory: a reader that seeks
//! into a sealed segment or streams through it loads the index once, and at most
//! [`SEALED_INDEXES_CACHED`] of them stay loaded per partition. So a partition's memory
//! does not grow with its log (a 5 GB log's indexes held ~2 MB; a 500 GB one would hold
//! 200 MB).

use std::collections::VecDeque;
use std::rc::Rc;

use super::segment_index::SegmentIndex;
use crate::limits::SEALED_INDEXES_CACHED;

/// Sealed segments' indexes by base offset, most recently used first.
#[derive(Default)]
pub struct SealedIndexCache {
    entries: VecDeque<(u64, Rc<SegmentIndex>)>,
}

impl SealedIndexCache {
    /// The index of the segment starting at `base_offset`, if loaded (it becomes the most
    /// recently used).
    pub fn get(&mut self, base_offset: u64) -> Option<Rc<SegmentIndex>> {
        let i = self.entries.iter().position(|(b, _)| *b == base_offset)?;
        let entry = self.entries.remove(i)?;
        let index = entry.1.clone();
        self.entries.push_front(entry);
        Some(index)
    }

    /// The index of the segment starting at `base_offset`, if loaded, leaving the order as
    /// it is (for a reader's every read-ahead step).
    pub fn peek(&self, base_offset: u64) -> Option<Rc<SegmentIndex>> {
        self.entries.iter().find(|(b, _)| *b == base_offset).map(|(_, ix)| ix.clone())
    }

    /// Keeps `index` as the most recently used, forgetting the least recently used past
    /// [`SEALED_INDEXES_CACHED`].
    pub fn insert(&mut self, base_offset: u64, index: Rc<SegmentIndex>) {
        self.entries.retain(|(b, _)| *b != base_offset);
        self.entries.push_front((base_offset, index));
        self.entries.truncate(SEALED_INDEXES_CACHED);
    }

    /// Forgets the index of a deleted segment.
    pub fn remove(&mut self, base_offset: u64) {
        self.entries.retain(|(b, _)| *b != base_offset);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index_at(offset: u64) -> Rc<SegmentIndex> {
        let mut ix = SegmentIndex::new();
        ix.on_batch(offset, 4096, 7);
        Rc::new(ix)
    }

    #[test]
    fn keeps_the_most_recently_used_up_to_the_limit() {
        let mut cache = SealedIndexCache::default();
        for base in 0..SEALED_INDEXES_CACHED as u64 {
            cache.insert(base * 100, index_at(base * 100));
        }
        // Using the oldest makes it the newest: the next insert evicts the second oldest.
        assert!(cache.get(0).is_some());
        cache.insert(9_999, index_at(9_999));
        assert_eq!(cache.len(), SEALED_INDEXES_CACHED);
        assert!(cache.get(100).is_none(), "the least recently used is forgotten");
        assert_eq!(cache.get(0).map(|ix| ix.entries()[0].offset), Some(0));
        assert_eq!(cache.get(9_999).map(|ix| ix.entries()[0].offset), Some(9_999));
        assert!(cache.peek(200).is_some() && cache.peek(100).is_none());
        cache.remove(0);
        assert!(cache.get(0).is_none());
        assert_eq!(cache.len(), SEALED_INDEXES_CACHED - 1);
    }
}
