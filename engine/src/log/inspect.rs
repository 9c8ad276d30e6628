//! Offline inspection of segment files: what `sluice inspect` prints.

use std::path::{Path, PathBuf};

use super::segment::{first_nonzero, parse_log_file_name, ChunkReader, SegmentHeader, SEGMENT_DATA_START};
use super::segment_index::{SegmentIndex, SegmentSummary};
use crate::io::{OpenMode, Storage};
use crate::limits::{BATCH_BYTES_MAX_CEILING, BATCH_HEADER_BYTES, BLOCK_BYTES};
use crate::record::BatchHeader;

/// One batch as found on disk.
#[derive(Debug, Clone)]
pub struct BatchInfo {
    pub pos: u64,
    pub header: BatchHeader,
}

/// Everything `inspect` learns about one segment file.
#[derive(Debug)]
pub struct SegmentReport {
    pub path: PathBuf,
    pub file_len: u64,
    pub header: Option<SegmentHeader>,
    pub batches: Vec<BatchInfo>,
    /// Zeros after the last batch: space the active segment reserved ahead of its writes.
    pub reserved_bytes: u64,
    /// The first problem found: position and description. `None`: the file verified.
    pub problem: Option<(u64, String)>,
    /// The index file beside it, if any, and whether it matches the segment.
    pub index: Option<Result<(SegmentIndex, SegmentSummary), String>>,
}

impl SegmentReport {
    pub fn records(&self) -> u64 {
        self.batches.iter().map(|b| b.header.record_count as u64).sum()
    }
}

/// Reads and verifies a segment file batch by batch (header CRC, payload CRC, identity,
/// offset continuity). Never modifies anything.
pub async fn inspect_segment(storage: &Storage, path: &Path) -> Result<SegmentReport, crate::io::IoError> {
    let file = storage.open(path, OpenMode::Read).await?;
    let file_len = file.len().await?;
    let mut report = SegmentReport {
        path: path.to_path_buf(),
        file_len,
        header: None,
        batches: Vec::new(),
        reserved_bytes: 0,
        problem: None,
        index: None,
    };
    let block = file.read_at(0, BLOCK_BYTES).await?;
    report.header = SegmentHeader::decode(&block);
    let Some(header) = report.header else {
        report.problem = Some((0, "missing or bad segment header".into()));
        return Ok(report);
    };
    if parse_log_file_name(&path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default())
        != Some(header.base_offset)
    {
        report.problem = Some((0, format!("file name does not match base offset {}", header.base_offset)));
    }
    let mut reader = ChunkReader::new(&file, file_len);
    let mut pos = SEGMENT_DATA_START;
    let mut expected = header.base_offset;
    while pos < file_len && report.problem.is_none() {
        let Some(hb) = reader.bytes_at(pos, BATCH_HEADER_BYTES).await? else {
            report.problem = Some((pos, "partial batch header at end of file".into()));
            break;
        };
        let h = match BatchHeader::decode(&hb) {
            Ok(h) => h,
            Err(_) if hb.iter().all(|&b| b == 0) => {
                // Where the next batch would start: reserved space, zeros to the end.
                match first_nonzero(&mut reader, pos, file_len).await? {
                    None => report.reserved_bytes = file_len - pos,
                    Some(at) => {
                        report.problem = Some((
                            at,
                            format!("data after the end of the log at byte {pos} (a torn write past a hole?)"),
                        ))
                    }
                }
                break;
            }
            Err(e) => {
                report.problem = Some((pos, format!("{e} (expected offset {expected})")));
                break;
            }
        };
        if let Err(d) = super::segment::check_batch(&h, expected, header.identity, BATCH_BYTES_MAX_CEILING as u64) {
            report.problem = Some((pos, d));
            break;
        }
        match reader.bytes_at(pos + BATCH_HEADER_BYTES as u64, h.payload_len as usize).await? {
            None => report.problem = Some((pos, "batch payload cut short by end of file".into())),
            Some(p) => {
                if let Err(e) = h.check_payload(&p) {
                    report.problem = Some((pos, format!("{e} (offset {})", h.base_offset)));
                }
            }
        }
        if report.problem.is_some() {
            break;
        }
        report.batches.push(BatchInfo { pos, header: h });
        pos += h.disk_len();
        expected = h.end_offset();
    }
    file.close().await?;
    let data_len = file_len - report.reserved_bytes;
    let index_path = path.with_extension("index");
    if storage.exists(&index_path) {
        report.index = Some(match storage.read_file(&index_path).await {
            Ok(buf) => SegmentIndex::decode_file(&buf).map_err(|e| e.to_string()).and_then(|(ix, s)| {
                if s.len == data_len && s.base_offset == header.base_offset && s.end_offset == expected {
                    Ok((ix, s))
                } else {
                    Err(format!("stale: describes {} bytes up to offset {}", s.len, s.end_offset))
                }
            }),
            Err(e) => Err(e.to_string()),
        });
    }
    Ok(report)
}
