//! Sequential reading of a partition with read-ahead: the path replay takes.
//!
//! A reader keeps up to [`READ_AHEAD_DEPTH`] reads of up to [`READ_AHEAD_CHUNK_BYTES`] in flight
//! ahead of the batch it hands out, so a full-log read runs at the disk's speed, in memory
//! bounded by [`READ_AHEAD_BUDGET_BYTES`] whatever the size of the log. Batches are handed
//! out in the DMA buffers they were read into, CRC-checked, without copying. A reader that
//! reaches the partition's tail cache takes the newest batches from memory instead.
//!
//! [`READ_AHEAD_BUDGET_BYTES`]: crate::limits::READ_AHEAD_BUDGET_BYTES

use std::collections::VecDeque;
use std::path::PathBuf;
use std::rc::Rc;

use glommio::Task;

use super::error::LogError;
use super::offset::Offset;
use super::partition::{Partition, SegmentView};
use super::segment::PartitionIdentity;
use super::segment_index::SegmentIndex;
use crate::io::{AlignedHeap, File, IoResult, ReadBuf};
use crate::limits::{align_up, BATCH_HEADER_BYTES, READ_AHEAD_CHUNK_BYTES, READ_AHEAD_DEPTH};
use crate::record::{Batch, BatchHeader};

struct Chunk {
    pos: u64,
    /// Bytes asked for: a chunk that came back shorter ends the data.
    len: usize,
    read: Option<Task<IoResult<ReadBuf>>>,
    bytes: Option<ReadBuf>,
}

struct SegmentCursor {
    partition: Partition,
    segment_base: u64,
    file: Rc<File>,
    path: PathBuf,
    identity: PartitionIdentity,
    visible_len: u64,
    /// The segment's index once it is sealed (the active one's is the partition's).
    sealed_index: Option<Rc<SegmentIndex>>,
    /// Position of the next batch.
    pos: u64,
    /// Position of the next read to issue.
    issue_pos: u64,
    chunks: VecDeque<Chunk>,
    /// Reads kept in flight.
    depth: usize,
}

impl SegmentCursor {
    fn fill(&mut self) {
        while self.chunks.len() < self.depth && self.issue_pos < self.visible_len {
            let pos = self.issue_pos;
            let data_end = align_up(self.visible_len);
            let mut end = (pos + READ_AHEAD_CHUNK_BYTES as u64).min(data_end);
            if end < data_end {
                // End the read where a batch starts, so no batch straddles two reads (a
                // straddling batch is copied to be stitched: 4% of a tumbling view's CPU
                // with 240 KiB batches). Not for less than half a chunk: reads stay large.
                let half = pos + READ_AHEAD_CHUNK_BYTES as u64 / 2;
                let start = match &self.sealed_index {
                    Some(index) => index.batch_start_in(half, end),
                    None => self.partition.batch_start_in(self.segment_base, half, end),
                };
                if let Some(start) = start {
                    end = start;
                }
            }
            let len = (end - pos) as usize;
            let file = self.file.clone();
            let read = glommio::spawn_local(async move { file.read_at(pos, len).await });
            self.chunks.push_back(Chunk { pos, len, read: Some(read), bytes: None });
            self.issue_pos = end;
        }
    }

    /// Waits for chunk `i`'s read; returns its bytes (empty past the end of the data).
    async fn chunk(&mut self, i: usize) -> IoResult<Option<ReadBuf>> {
        let Some(chunk) = self.chunks.get_mut(i) else { return Ok(None) };
        if let Some(read) = chunk.read.take() {
            chunk.bytes = Some(read.await?);
        }
        Ok(chunk.bytes.clone())
    }

    /// The bytes `[pos, pos + len)`: a slice of one chunk, or, for a batch that straddles
    /// two chunks, a copy stitched from both (the next chunk is already in flight, so no
    /// extra read). `None` if the data ends first or the batch is larger than a chunk.
    async fn bytes(&mut self, pos: u64, len: usize) -> IoResult<Option<ReadBuf>> {
        // Drop chunks wholly before `pos`.
        loop {
            let Some(front) = self.chunk(0).await? else { return Ok(None) };
            let front_pos = self.chunks[0].pos;
            if pos < front_pos + front.len() as u64 {
                break;
            }
            if front.len() < self.chunks[0].len {
                return Ok(None);
            }
            self.chunks.pop_front();
            self.fill();
        }
        let front = self.chunk(0).await?.unwrap_or_else(ReadBuf::empty);
        let at = (pos - self.chunks[0].pos) as usize;
        if at + len <= front.len() {
            return Ok(front.slice(at, len));
        }
        if len > READ_AHEAD_CHUNK_BYTES || front.len() < self.chunks[0].len {
            return Ok(None);
        }
        let Some(next) = self.chunk(1).await? else { return Ok(None) };
        let head = front.len() - at;
        if len - head > next.len() {
            return Ok(None);
        }
        let stitched = AlignedHeap::concat(&[&front[at..], &next[..len - head]], align_up(len as u64) as usize);
        Ok(ReadBuf::from_heap(stitched).slice(0, len))
    }
}

/// Reads a partition from an offset to its visible end, batch by batch.
pub struct PartitionReader {
    partition: Partition,
    next: Offset,
    cursor: Option<SegmentCursor>,
    depth: usize,
}

impl PartitionReader {
    /// A reader whose first batch is the one holding `from` (it may start before `from`).
    pub fn new(partition: Partition, from: Offset) -> Self {
        Self::with_read_ahead(partition, from, READ_AHEAD_DEPTH)
    }

    /// As [`PartitionReader::new`], with `depth` reads in flight (2 ..= READ_AHEAD_DEPTH:
    /// a batch may span two chunks). A replay reads with less, so live reads and writes
    /// wait behind fewer of its reads in the device.
    pub fn with_read_ahead(partition: Partition, from: Offset, depth: usize) -> Self {
        debug_assert!((2..=READ_AHEAD_DEPTH).contains(&depth), "read-ahead depth {depth}");
        PartitionReader { partition, next: from, cursor: None, depth: depth.clamp(2, READ_AHEAD_DEPTH) }
    }

    /// The partition being read.
    pub fn partition(&self) -> &Partition {
        &self.partition
    }

    /// The offset after the last batch handed out.
    pub fn position(&self) -> Offset {
        self.next
    }

    /// Starts reading the segment `view` shows, from `view.start_pos`.
    fn open(&mut self, view: SegmentView) {
        let mut c = SegmentCursor {
            partition: self.partition.clone(),
            segment_base: view.base_offset,
            file: view.file,
            path: view.path,
            identity: view.identity,
            visible_len: view.visible_len,
            sealed_index: view.sealed_index,
            pos: view.start_pos,
            issue_pos: view.start_pos,
            chunks: VecDeque::new(),
            depth: self.depth,
        };
        c.fill();
        self.cursor = Some(c);
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
                if let Some(batch) = self.take_from_tail() {
                    return Ok(Some(batch));
                }
                let Some(view) = self.partition.segment_view(self.next).await else {
                    return Ok(None);
                };
                self.open(view);
            }
            let cursor = self.cursor.as_mut().expect("cursor set above");
            if cursor.pos >= cursor.visible_len {
                // End of what this segment showed: look again (more data, or the next segment).
                let view = self.partition.segment_view(self.next).await;
                let same = view
                    .as_ref()
                    .is_none_or(|v| Rc::ptr_eq(&v.file, &cursor.file) && v.visible_len == cursor.visible_len);
                self.cursor = None;
                if let Some(batch) = self.take_from_tail() {
                    return Ok(Some(batch));
                }
                match view {
                    // The next segment, or this one grown: the view just taken (its index
                    // loaded on the way) opens the cursor.
                    Some(view) if !same => self.open(view),
                    _ => return Ok(None),
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

    /// The batch holding `next` from the partition's tail cache, if it is there.
    fn take_from_tail(&mut self) -> Option<Batch> {
        let batch = self.partition.tail_batch(self.next)?;
        self.next = Offset(batch.end_offset());
        Some(batch)
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
        let whole = match cursor.bytes(pos, BATCH_HEADER_BYTES + header.payload_len as usize).await? {
            Some(b) => b,
            // Larger than a read-ahead chunk (or past the data read ahead): read it on its own.
            None => cursor.file.read_at(pos, len as usize).await?,
        };
        let batch = Batch::parse(&whole).map_err(|e| corrupt(&cursor.path, e.to_string(), header.base_offset))?;
        cursor.pos += len;
        if batch.end_offset() <= self.next.0 {
            return Ok(None);
        }
        // Offsets are dense: a batch past `next` means records were skipped.
        if batch.base_offset() > self.next.0 {
            return Err(corrupt(
                &cursor.path,
                format!("batch starts at offset {}, the reader expected {}", batch.base_offset(), self.next.0),
                self.next.0,
            ));
        }
        self.next = Offset(batch.end_offset());
        self.partition.metrics().batches_read_from_disk.add(1);
        Ok(Some(batch))
    }
}
