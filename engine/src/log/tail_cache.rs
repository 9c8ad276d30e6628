//! The tail of a partition held in memory: the batches of its latest writes, in the very
//! buffers they were written from, so live readers get new data without reading it back
//! from the device (and without waiting behind a replay's reads there).
//!
//! Promises: every batch appended but not yet written is here (readers of `interval` and
//! `none` topics see a batch as soon as it is appended, before its write lands); beyond
//! that the cache keeps the newest batches within [`TAIL_CACHE_BYTES_MAX`] of buffer bytes. Batches are
//! contiguous in offset order. Nothing here is copied or re-checked: these bytes never left
//! memory, and the CRC is for bytes that come back from the disk.

use std::collections::VecDeque;

use super::offset::Offset;
use crate::limits::TAIL_CACHE_BYTES_MAX;
use crate::record::Batch;

/// The bytes a batch holds of its write buffer: header, payload and the padding to the
/// block. A one-record batch holds a whole 4 KiB block, so counting only its payload
/// would let the cache keep ~40 times its budget in buffers.
fn footprint(batch: &Batch) -> usize {
    batch.header.disk_len() as usize
}

#[derive(Default)]
pub(crate) struct TailCache {
    batches: VecDeque<Batch>,
    bytes: usize,
}

impl TailCache {
    /// Adds the next batch of the partition (offsets follow on from the last one).
    pub fn push(&mut self, batch: Batch) {
        debug_assert!(
            self.batches.back().is_none_or(|b| b.end_offset() == batch.base_offset()),
            "tail cache batches must be contiguous"
        );
        self.bytes += footprint(&batch);
        self.batches.push_back(batch);
    }

    /// Drops the oldest batches beyond the budget, never one that is not on disk yet
    /// (ending after `written_end`): for those the cache is the only readable copy.
    pub fn trim(&mut self, written_end: Offset) {
        while self.bytes > TAIL_CACHE_BYTES_MAX {
            match self.batches.front() {
                Some(b) if b.end_offset() <= written_end.0 => {
                    self.bytes -= footprint(b);
                    self.batches.pop_front();
                }
                _ => break,
            }
        }
    }

    /// The batch holding `offset`, if it is cached and ends at or before `visible_end`.
    pub fn get(&self, offset: Offset, visible_end: Offset) -> Option<&Batch> {
        let first = self.batches.front()?;
        if offset.0 < first.base_offset() {
            return None;
        }
        let i = self.batches.partition_point(|b| b.end_offset() <= offset.0);
        self.batches.get(i).filter(|b| b.end_offset() <= visible_end.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{AlignedHeap, ReadBuf};
    use crate::limits::BLOCK_BYTES;
    use crate::record::BatchHeader;

    fn small_batch(base_offset: u64) -> Batch {
        let header = BatchHeader { base_offset, record_count: 1, payload_len: 100, ..Default::default() };
        Batch::new(header, ReadBuf::from_heap(AlignedHeap::zeroed(100)))
    }

    #[test]
    fn small_batches_count_their_whole_blocks() {
        let mut cache = TailCache::default();
        for i in 0..2_000u64 {
            cache.push(small_batch(i));
            cache.trim(Offset(i + 1));
        }
        assert_eq!(cache.batches.len(), TAIL_CACHE_BYTES_MAX / BLOCK_BYTES);
        assert_eq!(cache.batches.front().map(|b| b.base_offset()), Some(2_000 - cache.batches.len() as u64));
        // Batches not yet written are kept whatever the budget.
        for i in 2_000..3_000u64 {
            cache.push(small_batch(i));
            cache.trim(Offset(2_000));
        }
        assert!(cache.get(Offset(2_000), Offset(3_000)).is_some());
        assert_eq!(cache.get(Offset(2_999), Offset(3_000)).map(|b| b.base_offset()), Some(2_999));
        assert!(cache.get(Offset(2_999), Offset(2_999)).is_none(), "not visible yet");
    }
}
