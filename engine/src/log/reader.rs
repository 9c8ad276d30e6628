//! Sequential reading of a partition with read-ahead: the path replay takes.
//!
//! A reader keeps up to [`READ_AHEAD_DEPTH`] reads of [`READ_AHEAD_CHUNK_BYTES`] in flight
//! ahead of the batch it hands out, so a full-log read runs at the disk's speed, in memory
//! bounded by [`READ_AHEAD_BUDGET_BYTES`] whatever the size of the log. Batches are handed
//! out in the DMA buffers they were read into, CRC-checked, without copying.
//!
//! [`READ_AHEAD_BUDGET_BYTES`]: crate::limits::READ_AHEAD_BUDGET_BYTES

use std::collections::VecDeque;
use std::path::PathBuf;
use std::rc::Rc;

use glommio::Task;

use super::error::LogError;
use super::offset::Offset;
use super::partition::Partition;
use super::segment::PartitionIdentity;
use crate::io::{File, IoResult, ReadBuf};
use crate::limits::{align_up, BATCH_HEADER_BYTES, READ_AHEAD_CHUNK_BYTES, READ_AHEAD_DEPTH};
use crate::record::{Batch, BatchHeader};

struct Chunk {
    pos: u64,
    read: Option<Task<IoResult<ReadBuf>>>,
    bytes: Option<ReadBuf>,
}

struct SegmentCursor {
    file: Rc<File>,
    path: PathBuf,
    identity: PartitionIdentity,
    visible_len: u64,
    /// Position of the next batch.
    pos: u64,
    /// Position of the next read to issue.
    issue_pos: u64,
    chunks: VecDeque<Chunk>,
}

impl SegmentCursor {
    fn fill(&mut self) {
        while self.chunks.len() < READ_AHEAD_DEPTH && self.issue_pos < self.visible_len {
            let len = (READ_AHEAD_CHUNK_BYTES as u64).min(align_up(self.visible_len) - self.issue_pos) as usize;
            let file = self.file.clone();
            let pos = self.issue_pos;
            let read = glommio::spawn_local(async move { file.read_at(pos, len).await });
            self.chunks.push_back(Chunk { pos, read: Some(read), bytes: None });
            self.issue_pos += len as u64;
        }
    }

    /// The bytes `[pos, pos + len)` if one chunk holds them all; waits for that chunk.
    async fn bytes(&mut self, pos: u64, len: usize) -> IoResult<Option<ReadBuf>> {
        while let Some(front) = self.chunks.front_mut() {
            if let Some(read) = front.read.take() {
                front.bytes = Some(read.await?);
            }
            let bytes = front.bytes.as_ref().map_or(0, |b| b.len() as u64);
            if pos >= front.pos + bytes && bytes == READ_AHEAD_CHUNK_BYTES as u64 {
                self.chunks.pop_front();
                self.fill();
                continue;
            }
            let Some(b) = &front.bytes else {
                return Ok(None);
            };
            return Ok(b.slice((pos - front.pos) as usize, len));
        }
        Ok(None)
    }
}

/// Reads a partition from an offset to its visible end, batch by batch.
pub struct PartitionReader {
    partition: Partition,
    next: Offset,
    cursor: Option<SegmentCursor>,
}

impl PartitionReader {
    /// A reader whose first batch is the one holding `from` (it may start before `from`).
    pub fn new(partition: Partition, from: Offset) -> Self {
        PartitionReader { partition, next: from, cursor: None }
    }

    /// The offset after the last batch handed out.
    pub fn position(&self) -> Offset {
        self.next
    }

    /// The next batch, or `None` when the reader has reached the visible end.
    pub async fn next_batch(&mut self) -> Result<Option<Batch>, LogError> {
        loop {
            if self.cursor.is_none() {
                let offsets = self.partition.offsets();
                if self.next < offsets.log_start() {
                    // Retention removed what this reader had not read yet: say so, do not
                    // pretend the log ended.
                    return Err(LogError::OffsetOutOfRange {
                        requested: self.next.0,
                        start: offsets.log_start().0,
                        end: offsets.visible_end().0,
                    });
                }
                let Some(view) = self.partition.segment_view(self.next) else {
                    return Ok(None);
                };
                let mut c = SegmentCursor {
                    file: view.file,
                    path: view.path,
                    identity: view.identity,
                    visible_len: view.visible_len,
                    pos: view.start_pos,
                    issue_pos: view.start_pos,
                    chunks: VecDeque::new(),
                };
                c.fill();
                self.cursor = Some(c);
            }
            let cursor = self.cursor.as_mut().expect("cursor set above");
            if cursor.pos >= cursor.visible_len {
                // End of what this segment showed: look again (more data, or the next segment).
                let same = self
                    .partition
                    .segment_view(self.next)
                    .is_none_or(|v| Rc::ptr_eq(&v.file, &cursor.file) && v.visible_len == cursor.visible_len);
                self.cursor = None;
                if same {
                    return Ok(None);
                }
                continue;
            }
            match self.read_one().await {
                Ok(Some(batch)) => return Ok(Some(batch)),
                Ok(None) => continue,
                Err(e) => {
                    self.partition.mark_corrupt(e.to_string());
                    return Err(e);
                }
            }
        }
    }

    /// Reads the batch at the cursor; `None` when it ended before `next` (skipped).
    async fn read_one(&mut self) -> Result<Option<Batch>, LogError> {
        let cursor = self.cursor.as_mut().expect("cursor");
        let pos = cursor.pos;
        let corrupt =
            |path: &PathBuf, detail: String, offset: u64| LogError::Corrupt { path: path.clone(), pos, offset, detail };
        let header = match cursor.bytes(pos, BATCH_HEADER_BYTES).await? {
            Some(h) => BatchHeader::decode(&h).map_err(|e| corrupt(&cursor.path, e.to_string(), self.next.0))?,
            None => {
                return Err(corrupt(&cursor.path, "batch header cut short".into(), self.next.0));
            }
        };
        super::segment::check_batch(
            &header,
            header.base_offset,
            cursor.identity,
            crate::limits::BATCH_BYTES_MAX_CEILING as u64,
        )
        .map_err(|d| corrupt(&cursor.path, d, header.base_offset))?;
        let len = header.disk_len();
        let whole = match cursor.bytes(pos, (BATCH_HEADER_BYTES + header.payload_len as usize) as usize).await? {
            Some(b) => b,
            // The batch straddles read-ahead chunks: read it on its own.
            None => cursor.file.read_at(pos, len as usize).await?,
        };
        let batch = Batch::parse(&whole).map_err(|e| corrupt(&cursor.path, e.to_string(), header.base_offset))?;
        cursor.pos += len;
        if batch.end_offset() <= self.next.0 {
            return Ok(None);
        }
        self.next = Offset(batch.end_offset());
        Ok(Some(batch))
    }
}
