//! The sparse offset and time index of one segment.
//!
//! An entry every [`INDEX_INTERVAL_BYTES`] of log: the first offset and file position of a
//! batch, and the largest timestamp of every batch from the segment's start to the next
//! entry. That maximum never decreases along the entries, so both lookups are binary
//! searches. The index is derived data: it is rebuilt from the log whenever it is missing
//! or does not describe the segment as it is (recovery never trusts it over the log).

use crate::limits::INDEX_INTERVAL_BYTES;
use crate::wire::{decode_meta_file, encode_meta_file, Decoder, Encoder, WireError};

pub const INDEX_MAGIC: [u8; 4] = *b"SLIX";
pub const INDEX_VERSION: u16 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// Base offset of the batch this entry points at.
    pub offset: u64,
    /// File position of that batch.
    pub pos: u64,
    /// Largest timestamp of all batches in the segment up to the next entry.
    pub max_timestamp_ms: i64,
}

/// What a sealed segment's index file says about its segment, to detect a stale index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentSummary {
    pub base_offset: u64,
    pub end_offset: u64,
    /// Bytes of the segment file that hold batches (header block included).
    pub len: u64,
    pub max_timestamp_ms: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentIndex {
    entries: Vec<IndexEntry>,
}

impl SegmentIndex {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }

    /// Records a batch appended at `pos`.
    pub fn on_batch(&mut self, offset: u64, pos: u64, max_timestamp_ms: i64) {
        match self.entries.last_mut() {
            Some(last) if pos - last.pos < INDEX_INTERVAL_BYTES => {
                debug_assert!(offset > last.offset && pos > last.pos);
                last.max_timestamp_ms = last.max_timestamp_ms.max(max_timestamp_ms);
            }
            last => {
                let prev_max = last.map_or(i64::MIN, |l| l.max_timestamp_ms);
                self.entries.push(IndexEntry { offset, pos, max_timestamp_ms: prev_max.max(max_timestamp_ms) });
            }
        }
    }

    /// Position of the last indexed batch that starts in `(after, at_most]`, block
    /// aligned: where a read can end without cutting a batch in two. A hint only: readers
    /// check what they read.
    pub fn batch_start_in(&self, after: u64, at_most: u64) -> Option<u64> {
        let i = self.entries.partition_point(|e| e.pos <= at_most);
        (i > 0)
            .then(|| self.entries[i - 1].pos)
            .filter(|p| *p > after && p.is_multiple_of(crate::limits::BLOCK_BYTES as u64))
    }

    /// Position of the last indexed batch whose base offset is at most `offset`.
    pub fn position_for_offset(&self, offset: u64) -> Option<u64> {
        let i = self.entries.partition_point(|e| e.offset <= offset);
        (i > 0).then(|| self.entries[i - 1].pos)
    }

    /// Position from which a scan finds the first record with timestamp >= `ts`:
    /// every batch before it has all its timestamps below `ts`.
    pub fn position_for_time(&self, ts: i64) -> Option<u64> {
        self.entry_for_time(ts).map(|e| e.pos)
    }

    /// The entry from which to scan for the first record with timestamp >= `ts`.
    pub fn entry_for_time(&self, ts: i64) -> Option<&IndexEntry> {
        let i = self.entries.partition_point(|e| e.max_timestamp_ms < ts);
        self.entries.get(i)
    }

    pub fn max_timestamp_ms(&self) -> i64 {
        self.entries.last().map_or(i64::MIN, |e| e.max_timestamp_ms)
    }

    /// Index file bytes: a metadata envelope around the summary and the entries.
    pub fn encode_file(&self, summary: &SegmentSummary) -> Vec<u8> {
        let mut e = Encoder::new();
        e.u64(summary.base_offset).u64(summary.end_offset).u64(summary.len).i64(summary.max_timestamp_ms);
        e.u32(self.entries.len() as u32);
        for entry in &self.entries {
            e.u32((entry.offset - summary.base_offset) as u32).u32(entry.pos as u32).i64(entry.max_timestamp_ms);
        }
        encode_meta_file(INDEX_MAGIC, INDEX_VERSION, &e.finish())
    }

    pub fn decode_file(bytes: &[u8]) -> Result<(SegmentIndex, SegmentSummary), WireError> {
        let body = decode_meta_file(INDEX_MAGIC, INDEX_VERSION, bytes)?;
        let mut d = Decoder::new(body);
        let summary =
            SegmentSummary { base_offset: d.u64()?, end_offset: d.u64()?, len: d.u64()?, max_timestamp_ms: d.i64()? };
        let count = d.u32()? as usize;
        if count > d.remaining() / 16 {
            return Err(WireError::Truncated("index entries"));
        }
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            let offset =
                summary.base_offset.checked_add(d.u32()? as u64).ok_or(WireError::Invalid("index entry offset"))?;
            let pos = d.u32()? as u64;
            let max_timestamp_ms = d.i64()?;
            // An entry outside its segment would send reads past the data: rebuild instead.
            if offset >= summary.end_offset || pos >= summary.len {
                return Err(WireError::Invalid("index entry outside its segment"));
            }
            // Batches start on block boundaries after the segment header.
            if pos < crate::limits::BLOCK_BYTES as u64 || !pos.is_multiple_of(crate::limits::BLOCK_BYTES as u64) {
                return Err(WireError::Invalid("index entry not at a batch boundary"));
            }
            if let Some(last) = entries.last() {
                let last: &IndexEntry = last;
                if offset <= last.offset || pos <= last.pos || max_timestamp_ms < last.max_timestamp_ms {
                    return Err(WireError::Invalid("index entry order"));
                }
            }
            entries.push(IndexEntry { offset, pos, max_timestamp_ms });
        }
        d.end()?;
        Ok((SegmentIndex { entries }, summary))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_can_end_where_an_indexed_batch_starts() {
        let mut ix = SegmentIndex::new();
        // 10 batches of 16 KiB: entries at 4096 + 32 KiB * j.
        for i in 0..10u64 {
            ix.on_batch(i * 10, 4096 + i * 16384, 0);
        }
        assert_eq!(ix.batch_start_in(4096, 4096 + 100_000), Some(4096 + 3 * 32768));
        assert_eq!(ix.batch_start_in(4096, 4096 + 3 * 32768), Some(4096 + 3 * 32768));
        // Nothing starts after `after` and at most `at_most`.
        assert_eq!(ix.batch_start_in(4096 + 3 * 32768, 4096 + 3 * 32768 + 1000), None);
        assert_eq!(ix.batch_start_in(0, 100), None);
    }

    #[test]
    fn lookups_by_offset_and_time() {
        let mut ix = SegmentIndex::new();
        // 10 batches of 16 KiB: an entry every second batch.
        for i in 0..10u64 {
            let ts = [5, 3, 9, 8, 20, 1, 30, 2, 40, 41][i as usize];
            ix.on_batch(100 + i * 10, 4096 + i * 16384, ts);
        }
        assert_eq!(ix.entries().len(), 5);
        assert_eq!(ix.position_for_offset(99), None);
        assert_eq!(ix.position_for_offset(100), Some(4096));
        assert_eq!(ix.position_for_offset(125), Some(4096 + 2 * 16384));
        assert_eq!(ix.position_for_time(0), Some(4096));
        assert_eq!(ix.position_for_time(9), Some(4096 + 2 * 16384));
        assert_eq!(ix.position_for_time(21), Some(4096 + 6 * 16384));
        assert_eq!(ix.position_for_time(42), None);
        let summary =
            SegmentSummary { base_offset: 100, end_offset: 200, len: 4096 + 10 * 16384, max_timestamp_ms: 41 };
        let bytes = ix.encode_file(&summary);
        assert_eq!(SegmentIndex::decode_file(&bytes), Ok((ix, summary)));
    }
}
