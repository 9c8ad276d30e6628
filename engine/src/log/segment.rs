//! One segment: a log file of batches starting at a base offset, and its sparse index.
//!
//! Layout: block 0 holds the segment header (magic, version, base offset, topic and
//! partition identity); batches follow from [`SEGMENT_DATA_START`], each aligned to the
//! block. A sealed segment never changes again and has an index file written beside it.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::error::LogError;
use super::segment_index::{SegmentIndex, SegmentSummary};
use crate::io::{File, IoResult, OpenMode, ReadBuf, Storage};
use crate::limits::{align_down, align_up, BATCH_HEADER_BYTES, BLOCK_BYTES, READ_AHEAD_CHUNK_BYTES};
use crate::record::{
    Batch, BatchHeader, HeaderError, ProducerInfo, ProducerTrailer, FLAG_PRODUCER, PRODUCER_TRAILER_BYTES,
};
use crate::wire::{decode_meta_file, encode_meta_file, Decoder, Encoder};

pub const SEGMENT_MAGIC: [u8; 4] = *b"SLSG";
pub const SEGMENT_VERSION: u16 = 1;
/// Batches start after the header block.
pub const SEGMENT_DATA_START: u64 = BLOCK_BYTES as u64;

/// Which partition a file belongs to: checked on every batch read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionIdentity {
    pub topic_id: u32,
    pub partition: u32,
}

pub fn log_file_name(base_offset: u64) -> String {
    format!("{base_offset:020}.log")
}

pub fn index_file_name(base_offset: u64) -> String {
    format!("{base_offset:020}.index")
}

/// Parses `<20 digits>.log`.
pub fn parse_log_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".log")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok())?
}

/// The decoded segment header block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub base_offset: u64,
    pub identity: PartitionIdentity,
    pub created_ms: i64,
}

impl SegmentHeader {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        e.u64(self.base_offset).u32(self.identity.topic_id).u32(self.identity.partition).i64(self.created_ms);
        encode_meta_file(SEGMENT_MAGIC, SEGMENT_VERSION, &e.finish())
    }

    pub fn decode(block: &[u8]) -> Option<SegmentHeader> {
        let body = decode_meta_file(SEGMENT_MAGIC, SEGMENT_VERSION, block).ok()?;
        let mut d = Decoder::new(body);
        Some(SegmentHeader {
            base_offset: d.u64().ok()?,
            identity: PartitionIdentity { topic_id: d.u32().ok()?, partition: d.u32().ok()? },
            created_ms: d.i64().ok()?,
        })
    }
}

/// A segment as the partition holds it.
pub struct Segment {
    pub base_offset: u64,
    pub log_path: PathBuf,
    pub index_path: PathBuf,
    pub file: Rc<File>,
    /// Bytes written: the header block and every batch.
    pub len: u64,
    /// Bytes readers may see (up to the partition's visible end).
    pub visible_len: u64,
    /// How long the file may be: `len`, plus (active segment only) blocks reserved ahead of
    /// the writes, zeros until written; `u64::MAX` after a failed reservation (unknown).
    /// A roll or close cuts it back: a sealed segment's file is exactly `len` long.
    pub allocated: u64,
    /// One past the last offset written to this segment.
    pub end_offset: u64,
    pub index: SegmentIndexHome,
}

/// Where a segment's index is. The active segment keeps its index in memory, growing with
/// its writes; a sealed segment's is in its index file, loaded when a reader needs it
/// (the partition's [`SealedIndexCache`](super::sealed_index_cache::SealedIndexCache)),
/// so memory does not grow with the log.
pub enum SegmentIndexHome {
    Active(SegmentIndex),
    Sealed {
        /// Largest timestamp in the segment (retention by age and seeks by time pick the
        /// segment with it, before any index is loaded).
        max_timestamp_ms: i64,
    },
}

impl Segment {
    /// Creates an empty segment: header block written and synced, directory synced.
    pub async fn create(
        storage: &Storage,
        dir: &Path,
        base_offset: u64,
        identity: PartitionIdentity,
    ) -> IoResult<Segment> {
        let log_path = dir.join(log_file_name(base_offset));
        let file = storage.open(&log_path, OpenMode::Create).await?;
        file.truncate(0).await?;
        let header = SegmentHeader { base_offset, identity, created_ms: crate::clock::now_ms() }.encode();
        let mut buf = storage.alloc_zeroed(BLOCK_BYTES);
        buf.as_mut_slice()[..header.len()].copy_from_slice(&header);
        file.write_at(buf, 0).await?;
        file.fdatasync().await?;
        storage.sync_dir(dir).await?;
        Ok(Segment {
            base_offset,
            index_path: dir.join(index_file_name(base_offset)),
            log_path,
            file: Rc::new(file),
            len: SEGMENT_DATA_START,
            visible_len: SEGMENT_DATA_START,
            allocated: SEGMENT_DATA_START,
            end_offset: base_offset,
            index: SegmentIndexHome::Active(SegmentIndex::new()),
        })
    }

    pub fn summary(&self) -> SegmentSummary {
        SegmentSummary {
            base_offset: self.base_offset,
            end_offset: self.end_offset,
            len: self.len,
            max_timestamp_ms: self.max_timestamp_ms(),
        }
    }

    pub fn is_sealed(&self) -> bool {
        matches!(self.index, SegmentIndexHome::Sealed { .. })
    }

    /// The index of the active segment (`None` once sealed: its index is in its file).
    pub fn active_index(&self) -> Option<&SegmentIndex> {
        match &self.index {
            SegmentIndexHome::Active(ix) => Some(ix),
            SegmentIndexHome::Sealed { .. } => None,
        }
    }

    pub fn active_index_mut(&mut self) -> Option<&mut SegmentIndex> {
        match &mut self.index {
            SegmentIndexHome::Active(ix) => Some(ix),
            SegmentIndexHome::Sealed { .. } => None,
        }
    }

    pub fn max_timestamp_ms(&self) -> i64 {
        match &self.index {
            SegmentIndexHome::Active(ix) => ix.max_timestamp_ms(),
            SegmentIndexHome::Sealed { max_timestamp_ms } => *max_timestamp_ms,
        }
    }

    /// Seals the segment: its index leaves it (the caller writes it to the index file) and
    /// what it says of the segment stays.
    pub fn seal(&mut self) -> SegmentIndex {
        let max_timestamp_ms = self.max_timestamp_ms();
        match std::mem::replace(&mut self.index, SegmentIndexHome::Sealed { max_timestamp_ms }) {
            SegmentIndexHome::Active(ix) => ix,
            SegmentIndexHome::Sealed { .. } => {
                debug_assert!(false, "segment {} sealed twice", self.base_offset);
                SegmentIndex::new()
            }
        }
    }

    /// Bytes of batches in this segment (without the header block).
    pub fn data_bytes(&self) -> u64 {
        self.len - SEGMENT_DATA_START
    }
}

/// Reads a file through a chunk cache: sequential scans issue one large read per chunk.
pub struct ChunkReader<'a> {
    file: &'a File,
    file_len: u64,
    chunk_pos: u64,
    chunk: ReadBuf,
}

impl<'a> ChunkReader<'a> {
    pub fn new(file: &'a File, file_len: u64) -> Self {
        ChunkReader { file, file_len, chunk_pos: 0, chunk: ReadBuf::empty() }
    }

    /// The bytes `[pos, pos + len)`, or `None` if the file ends before them.
    pub async fn bytes_at(&mut self, pos: u64, len: usize) -> IoResult<Option<ReadBuf>> {
        let end = pos + len as u64;
        if end > self.file_len {
            return Ok(None);
        }
        let chunk_end = self.chunk_pos + self.chunk.len() as u64;
        if pos < self.chunk_pos || end > chunk_end {
            let start = align_down(pos);
            let want = (align_up(end) - start).max(READ_AHEAD_CHUNK_BYTES as u64);
            let want = want.min(align_up(self.file_len) - start);
            self.chunk = self.file.read_at(start, want as usize).await?;
            self.chunk_pos = start;
        }
        Ok(self.chunk.slice((pos - self.chunk_pos) as usize, len))
    }
}

/// Why a scan stopped before the end of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanStop {
    /// File position of the first bad batch.
    pub pos: u64,
    /// The offset that batch should have started at.
    pub expected_offset: u64,
    pub detail: String,
}

/// What a batch-by-batch scan of a segment found.
#[derive(Debug)]
pub struct ScanOutcome {
    /// Bytes holding good batches, header block included.
    pub valid_len: u64,
    pub end_offset: u64,
    pub index: SegmentIndex,
    /// Highest durable hint in any intact batch header of the file, also past a bad batch.
    pub durable_hint_max: u64,
    /// Set when something other than the end of the file stopped the scan.
    pub stop: Option<ScanStop>,
    /// Producer trailers of the good batches, in log order: (producer, base offset,
    /// records, sequence numbers used).
    pub producers: Vec<(ProducerInfo, u64, u32, u32)>,
}

/// Verifies every batch of a segment (header CRC, payload CRC, identity, offset continuity)
/// and rebuilds its index. Past a bad batch it keeps reading headers block by block (batches
/// are block aligned) to learn how far the partition had been durable.
pub async fn scan_segment(
    file: &File,
    file_len: u64,
    base_offset: u64,
    identity: PartitionIdentity,
    payload_bytes_max: u64,
) -> IoResult<ScanOutcome> {
    let mut reader = ChunkReader::new(file, file_len);
    let mut pos = SEGMENT_DATA_START;
    let mut expected = base_offset;
    let mut index = SegmentIndex::new();
    let mut hint_max = 0u64;
    let mut producers = Vec::new();
    let stop = loop {
        if pos >= file_len {
            break None;
        }
        let detail = match reader.bytes_at(pos, BATCH_HEADER_BYTES).await? {
            None => "partial batch header at end of file".to_string(),
            Some(hb) => match BatchHeader::decode(&hb) {
                Err(HeaderError::Empty) if first_nonzero(&mut reader, pos, file_len).await?.is_none() => break None,
                Err(e) => e.to_string(),
                Ok(h) => match check_batch(&h, expected, identity, payload_bytes_max) {
                    Err(d) => d,
                    Ok(()) => match reader.bytes_at(pos + BATCH_HEADER_BYTES as u64, h.payload_len as usize).await? {
                        None => "batch payload cut short by end of file".to_string(),
                        Some(p) => match h.check_payload(&p) {
                            Err(e) => e.to_string(),
                            Ok(()) => {
                                if h.flags & FLAG_PRODUCER != 0 {
                                    let trailer = p.len().checked_sub(PRODUCER_TRAILER_BYTES).map(|at| &p[at..]);
                                    if let Some(t) = trailer.and_then(ProducerTrailer::decode) {
                                        producers.push((
                                            t.producer,
                                            h.base_offset,
                                            h.record_count,
                                            t.sequences(h.record_count),
                                        ));
                                    }
                                }
                                index.on_batch(h.base_offset, pos, h.max_timestamp_ms);
                                hint_max = hint_max.max(h.durable_hint);
                                pos += h.disk_len();
                                expected = h.end_offset();
                                continue;
                            }
                        },
                    },
                },
            },
        };
        break Some(ScanStop { pos, expected_offset: expected, detail });
    };
    if let Some(s) = &stop {
        // Past the bad batch, look for intact batches block by block. A hint counts only
        // from a whole batch (payload CRC checked) that starts at or after the bad one and
        // claims no more than its own start; each one found is skipped whole, so bytes
        // inside a payload (which a producer controls) are never read as a header.
        let mut p = s.pos + BLOCK_BYTES as u64;
        while p + BATCH_HEADER_BYTES as u64 <= file_len {
            let mut step = BLOCK_BYTES as u64;
            if let Some(hb) = reader.bytes_at(p, BATCH_HEADER_BYTES).await? {
                if let Ok(h) = BatchHeader::decode(&hb) {
                    let plausible = h.topic_id == identity.topic_id
                        && u32::from(h.partition) == identity.partition
                        && h.base_offset >= s.expected_offset
                        && h.durable_hint <= h.base_offset
                        && u64::from(h.payload_len) <= payload_bytes_max;
                    if plausible {
                        if let Some(payload) =
                            reader.bytes_at(p + BATCH_HEADER_BYTES as u64, h.payload_len as usize).await?
                        {
                            if h.check_payload(&payload).is_ok() {
                                hint_max = hint_max.max(h.durable_hint);
                                step = h.disk_len();
                            }
                        }
                    }
                }
            }
            p += step;
        }
    }
    Ok(ScanOutcome { valid_len: pos, end_offset: expected, index, durable_hint_max: hint_max, stop, producers })
}

/// Checks a decoded header against what the scan expects at this point.
pub fn check_batch(
    h: &BatchHeader,
    expected: u64,
    id: PartitionIdentity,
    payload_bytes_max: u64,
) -> Result<(), String> {
    if h.topic_id != id.topic_id || h.partition as u32 != id.partition {
        return Err(format!(
            "batch belongs to topic id {} partition {}, not topic id {} partition {}",
            h.topic_id, h.partition, id.topic_id, id.partition
        ));
    }
    if h.base_offset != expected {
        return Err(format!("batch starts at offset {}, expected {expected}", h.base_offset));
    }
    if h.record_count == 0 {
        return Err("batch has no records".to_string());
    }
    if h.payload_len as u64 > payload_bytes_max {
        return Err(format!("batch payload of {} bytes exceeds {payload_bytes_max}", h.payload_len));
    }
    Ok(())
}

/// The first non-zero byte of the file at or after `pos`; `None` when only zeros follow
/// (space never written, or reserved ahead of the writes).
pub(crate) async fn first_nonzero(reader: &mut ChunkReader<'_>, pos: u64, file_len: u64) -> IoResult<Option<u64>> {
    let mut p = pos;
    while p < file_len {
        let n = (file_len - p).min(READ_AHEAD_CHUNK_BYTES as u64) as usize;
        let Some(b) = reader.bytes_at(p, n).await? else { return Ok(None) };
        if let Some(i) = b.iter().position(|&x| x != 0) {
            return Ok(Some(p + i as u64));
        }
        p += n as u64;
    }
    Ok(None)
}

/// Reads and fully checks the batch at `pos` (header, identity, payload CRC): the check
/// every read from disk passes before a record is touched.
pub async fn read_batch(
    reader: &mut ChunkReader<'_>,
    pos: u64,
    path: &Path,
    identity: PartitionIdentity,
) -> Result<Batch, LogError> {
    let corrupt = |detail: String, offset: u64| LogError::Corrupt { path: path.to_path_buf(), pos, offset, detail };
    let Some(hb) = reader.bytes_at(pos, BATCH_HEADER_BYTES).await? else {
        return Err(corrupt("batch header past the end of the file".into(), 0));
    };
    let header = BatchHeader::decode(&hb).map_err(|e| corrupt(e.to_string(), 0))?;
    check_batch(&header, header.base_offset, identity, crate::limits::BATCH_BYTES_MAX_CEILING as u64)
        .map_err(|d| corrupt(d, header.base_offset))?;
    let Some(payload) = reader.bytes_at(pos + BATCH_HEADER_BYTES as u64, header.payload_len as usize).await? else {
        return Err(corrupt("batch payload past the end of the file".into(), header.base_offset));
    };
    header.check_payload(&payload).map_err(|e| corrupt(e.to_string(), header.base_offset))?;
    Ok(Batch::new(header, payload))
}
