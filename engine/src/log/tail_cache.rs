//! The tail of a partition held in memory: the batches of its latest writes, in the very
//! buffers they were written from, so live readers get new data without reading it back
//! from the device (and without waiting behind a replay's reads there).
//!
//! Promises: every batch appended but not yet written is here (readers of `interval` and
//! `none` topics see a batch as soon as it is appended, before its write lands); beyond
//! that the cache keeps the newest batches within [`TAIL_CACHE_BYTES_MAX`]. Batches are
//! contiguous in offset order. Nothing here is copied or re-checked: these bytes never left
//! memory, and the CRC is for bytes that come back from the disk.

use std::collections::VecDeque;

use super::offset::Offset;
use crate::limits::TAIL_CACHE_BYTES_MAX;
use crate::record::Batch;

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
        self.bytes += batch.stored_payload().len();
        self.batches.push_back(batch);
    }

    /// Drops the oldest batches beyond the budget, never one that is not on disk yet
    /// (ending after `written_end`): for those the cache is the only readable copy.
    pub fn trim(&mut self, written_end: Offset) {
        while self.bytes > TAIL_CACHE_BYTES_MAX {
            match self.batches.front() {
                Some(b) if b.end_offset() <= written_end.0 => {
                    self.bytes -= b.stored_payload().len();
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
