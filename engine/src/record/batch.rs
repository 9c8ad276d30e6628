//! Building batch payloads, validating them at ingest, and reading them back in place.

use rkyv::api::high::{HighSerializer, HighValidator};
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;
use rkyv::vec::ArchivedVec;
use rkyv::{Archived, Portable};

use super::batch_header::BatchHeader;
use super::record::{ArchivedRecord, RawRecord, Record};
use crate::io::ReadBuf;
use crate::limits::{BATCH_HEADER_BYTES, BATCH_RECORDS_MAX};

/// What the log needs to know of a payload to write its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadSummary {
    pub record_count: u32,
    pub first_timestamp_ms: i64,
    pub max_timestamp_ms: i64,
    pub crc32c: u32,
}

/// A validated batch payload (an archived `Vec<Record<V>>`) ready to append.
/// The bytes live 16-aligned in `buf` at `start..`, so it can be validated and read in place.
/// Cloning shares the bytes (a producer may append the same payload twice, e.g. a retry).
#[derive(Debug, Clone)]
pub struct BatchPayload {
    buf: std::sync::Arc<AlignedVec>,
    start: usize,
    summary: PayloadSummary,
    typed: bool,
}

impl BatchPayload {
    /// Validates `buf[start..]` (which must be 16-aligned) as raw records.
    pub fn from_untrusted(buf: AlignedVec, start: usize, bytes_max: usize) -> Result<Self, PayloadError> {
        if !start.is_multiple_of(16) || start > buf.len() {
            return Err(PayloadError::Misaligned);
        }
        let summary = validate_payload(&buf[start..], bytes_max)?;
        Ok(BatchPayload { buf: std::sync::Arc::new(buf), start, summary, typed: false })
    }

    /// Wraps bytes known to be a valid raw-record payload with their summary (for
    /// in-process producers that built them, e.g. benchmarks replaying a prepared batch).
    pub fn from_trusted(buf: AlignedVec, summary: PayloadSummary) -> Self {
        debug_assert_eq!(validate_payload(&buf, usize::MAX).ok(), Some(summary));
        BatchPayload { buf: std::sync::Arc::new(buf), start: 0, summary, typed: false }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    pub fn summary(&self) -> &PayloadSummary {
        &self.summary
    }

    pub fn is_typed(&self) -> bool {
        self.typed
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("payload of {len} bytes exceeds the batch limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("payload is not 16-byte aligned")]
    Misaligned,
    #[error("payload is not a valid record batch: {0}")]
    Invalid(String),
    #[error("a batch must hold between 1 and {max} records, not {count}")]
    BadCount { count: usize, max: usize },
    #[error("record serialization failed: {0}")]
    Serialize(String),
}

/// Checks an untrusted raw-record payload once, at the door: its structure (rkyv
/// bytecheck), its size and record count; returns what the batch header needs.
pub fn validate_payload(bytes: &[u8], bytes_max: usize) -> Result<PayloadSummary, PayloadError> {
    if bytes.len() > bytes_max {
        return Err(PayloadError::TooLarge { len: bytes.len(), max: bytes_max });
    }
    let records = rkyv::access::<Archived<Vec<RawRecord>>, rancor::Error>(bytes)
        .map_err(|e| PayloadError::Invalid(e.to_string()))?;
    summarize(records.iter().map(|r| r.timestamp_ms.to_native()), bytes)
}

fn summarize(ts: impl Iterator<Item = i64>, bytes: &[u8]) -> Result<PayloadSummary, PayloadError> {
    let mut count = 0usize;
    let mut first = 0i64;
    let mut max = i64::MIN;
    for t in ts {
        if count == 0 {
            first = t;
        }
        max = max.max(t);
        count += 1;
    }
    if count == 0 || count > BATCH_RECORDS_MAX {
        return Err(PayloadError::BadCount { count, max: BATCH_RECORDS_MAX });
    }
    Ok(PayloadSummary {
        record_count: count as u32,
        first_timestamp_ms: first,
        max_timestamp_ms: max,
        crc32c: crc32c::crc32c(bytes),
    })
}

/// Accesses a payload that is known good: validated at ingest and CRC-checked on read.
///
/// # Safety
/// `bytes` must be a payload that passed [`validate_payload`] for records of value type `V`
/// (its CRC checked since), and be aligned to 16.
pub unsafe fn access_payload<V: rkyv::Archive>(bytes: &[u8]) -> &ArchivedVec<ArchivedRecord<V>> {
    debug_assert!((bytes.as_ptr() as usize).is_multiple_of(16), "payload not aligned");
    // SAFETY: the caller guarantees the bytes are a valid archive of Vec<Record<V>>.
    unsafe { rkyv::access_unchecked::<ArchivedVec<ArchivedRecord<V>>>(bytes) }
}

/// An empty archived record list, for typed batches asked for raw records.
fn empty_records() -> &'static ArchivedVec<ArchivedRecord<Vec<u8>>> {
    use std::sync::OnceLock;
    static EMPTY: OnceLock<AlignedVec> = OnceLock::new();
    let bytes = EMPTY.get_or_init(|| {
        rkyv::to_bytes::<rancor::Error>(&Vec::<RawRecord>::new()).unwrap_or_else(|_| AlignedVec::new())
    });
    // SAFETY: the bytes are the archive of an empty Vec<RawRecord>, made just above.
    unsafe { access_payload::<Vec<u8>>(bytes) }
}

/// Collects records and archives them into a [`BatchPayload`]: the producer side.
pub struct BatchBuilder<V = Vec<u8>> {
    records: Vec<Record<V>>,
}

impl<V> Default for BatchBuilder<V> {
    fn default() -> Self {
        BatchBuilder { records: Vec::new() }
    }
}

impl<V: 'static> BatchBuilder<V>
where
    Vec<Record<V>>: for<'a> rkyv::Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>,
{
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, record: Record<V>) -> &mut Self {
        self.records.push(record);
        self
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Archives the records. Fails on an empty or oversized batch.
    pub fn finish(&mut self) -> Result<BatchPayload, PayloadError> {
        let buf = rkyv::to_bytes::<rancor::Error>(&self.records).map_err(|e| PayloadError::Serialize(e.to_string()))?;
        let summary = summarize(self.records.iter().map(|r| r.timestamp_ms), &buf)?;
        self.records.clear();
        Ok(BatchPayload {
            buf: std::sync::Arc::new(buf),
            start: 0,
            summary,
            typed: std::any::TypeId::of::<V>() != std::any::TypeId::of::<Vec<u8>>(),
        })
    }
}

/// A batch read back from the log: its header and its checked payload, in the DMA buffer
/// it was read into (no copy).
#[derive(Clone)]
pub struct Batch {
    pub header: BatchHeader,
    payload: ReadBuf,
}

impl Batch {
    /// Wraps a payload whose CRC has been checked against `header`.
    pub(crate) fn new(header: BatchHeader, payload: ReadBuf) -> Self {
        debug_assert_eq!(payload.len(), header.payload_len as usize);
        Batch { header, payload }
    }

    /// Parses and fully checks one batch at the start of `bytes` (header CRC, payload CRC).
    pub fn parse(bytes: &ReadBuf) -> Result<Batch, super::HeaderError> {
        let header = BatchHeader::decode(bytes)?;
        let end = BATCH_HEADER_BYTES + header.payload_len as usize;
        let payload = bytes
            .slice(BATCH_HEADER_BYTES, header.payload_len as usize)
            .ok_or(super::HeaderError::Truncated(bytes.len().min(end)))?;
        header.check_payload(&payload)?;
        Ok(Batch::new(header, payload))
    }

    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    pub fn base_offset(&self) -> u64 {
        self.header.base_offset
    }

    pub fn end_offset(&self) -> u64 {
        self.header.end_offset()
    }

    /// Whether the payload holds typed values (`Record<V>` with `V` not bytes).
    pub fn is_typed(&self) -> bool {
        self.header.flags & super::batch_header::FLAG_TYPED != 0
    }

    /// The raw records, read in place. A typed batch has no raw records (its values are
    /// not byte strings): it yields none here; read it with [`Batch::records_as`].
    pub fn records(&self) -> &ArchivedVec<ArchivedRecord<Vec<u8>>> {
        if self.is_typed() {
            return empty_records();
        }
        // SAFETY: raw payloads are validated at ingest (bytecheck) and their CRC is checked
        // on every read from disk; typed payloads were excluded above.
        unsafe { access_payload::<Vec<u8>>(&self.payload) }
    }

    /// The records with typed values, checked (bytecheck) before access.
    pub fn records_as<V>(&self) -> Result<&ArchivedVec<ArchivedRecord<V>>, PayloadError>
    where
        V: rkyv::Archive,
        ArchivedVec<ArchivedRecord<V>>:
            Portable + for<'a> rkyv::bytecheck::CheckBytes<HighValidator<'a, rancor::Error>>,
    {
        rkyv::access::<ArchivedVec<ArchivedRecord<V>>, rancor::Error>(&self.payload)
            .map_err(|e| PayloadError::Invalid(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_output_validates_and_reads_back() {
        let mut b = BatchBuilder::new();
        for i in 0..100i64 {
            b.push(RawRecord::new(1000 + i % 7, Some(format!("k{i}").as_bytes()), &[i as u8; 100]));
        }
        let p = b.finish().expect("finish");
        let s = validate_payload(p.bytes(), 1 << 20).expect("valid");
        assert_eq!(s, *p.summary());
        assert_eq!(s.record_count, 100);
        assert_eq!(s.first_timestamp_ms, 1000);
        assert_eq!(s.max_timestamp_ms, 1006);
        let recs = rkyv::access::<Archived<Vec<RawRecord>>, rancor::Error>(p.bytes()).expect("access");
        assert_eq!(recs[42].value.as_slice(), &[42u8; 100]);
        assert_eq!(recs[42].key.as_ref().map(|k| k.as_slice()), Some(&b"k42"[..]));
    }

    #[test]
    fn garbage_and_oversized_payloads_are_rejected() {
        let mut buf = AlignedVec::<16>::new();
        buf.extend_from_slice(&[0xff; 256]);
        assert!(validate_payload(&buf, 1 << 20).is_err());
        let mut b = BatchBuilder::new();
        b.push(RawRecord::new(0, None, &[0; 1000]));
        let p = b.finish().expect("finish");
        assert!(matches!(validate_payload(p.bytes(), 100), Err(PayloadError::TooLarge { .. })));
        let empty: BatchBuilder = BatchBuilder::new();
        let mut empty = empty;
        assert!(matches!(empty.finish(), Err(PayloadError::BadCount { count: 0, .. })));
    }
}
