//! Building batch payloads, validating them at ingest, and reading them back in place.

use rkyv::api::high::{HighSerializer, HighValidator};
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;
use rkyv::vec::ArchivedVec;
use rkyv::{Archived, Portable};

use super::batch_header::{BatchHeader, FLAG_COLUMNAR, FLAG_PRODUCER, FLAG_TYPED};
use super::columns::{ArchivedColumnBatch, ColumnBatch};
use super::producer::{ProducerInfo, ProducerTrailer, PRODUCER_TRAILER_BYTES};
use super::record::{ArchivedRecord, RawRecord, RawRecordRef, Record};
use super::schema::{Row, Schema};
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
    /// Typed rows stored column by column (see `record::columns`).
    columnar: bool,
    schema_version: u16,
    producer: Option<ProducerTrailer>,
}

impl BatchPayload {
    /// Validates `buf[start..]` (which must be 16-aligned) as raw records.
    pub fn from_untrusted(buf: AlignedVec, start: usize, bytes_max: usize) -> Result<Self, PayloadError> {
        if !start.is_multiple_of(16) || start > buf.len() {
            return Err(PayloadError::Misaligned);
        }
        let summary = validate_payload(&buf[start..], bytes_max)?;
        Ok(BatchPayload::new(buf, start, summary, false))
    }

    /// Validates `buf[start..]` (16-aligned) as typed rows of the topic's current schema:
    /// structure (bytecheck), size, record count, and every row against the schema. The
    /// rows are then stored column by column (unless a record has headers, or the columns
    /// would not fit the batch limit).
    pub fn from_untrusted_typed(
        buf: AlignedVec,
        start: usize,
        bytes_max: usize,
        schema: &Schema,
    ) -> Result<Self, PayloadError> {
        Self::checked_rows(buf, start, bytes_max, schema, true)
    }

    fn checked_rows(
        buf: AlignedVec,
        start: usize,
        bytes_max: usize,
        schema: &Schema,
        columnar: bool,
    ) -> Result<Self, PayloadError> {
        if !start.is_multiple_of(16) || start > buf.len() {
            return Err(PayloadError::Misaligned);
        }
        let bytes = &buf[start..];
        if bytes.len() > bytes_max {
            return Err(PayloadError::TooLarge { len: bytes.len(), max: bytes_max });
        }
        let records = rkyv::access::<Archived<Vec<Record<Row>>>, rancor::Error>(bytes)
            .map_err(|e| PayloadError::Invalid(e.to_string()))?;
        for (i, r) in records.iter().enumerate() {
            schema.check_archived_row(&r.value).map_err(|e| PayloadError::Row { index: i, error: e })?;
        }
        let summary = summarize(records.iter().map(|r| r.timestamp_ms.to_native()), bytes)?;
        if columnar {
            if let Some(columns) = Self::columns_of(records, schema, bytes_max, summary) {
                return Ok(columns);
            }
        }
        Ok(BatchPayload::new(buf, start, summary, true).with_schema_version(schema.version))
    }

    /// Checked rows (`summary` theirs) stored column by column, if they can be: no record
    /// has headers and the columns fit `bytes_max`.
    fn columns_of(
        records: &ArchivedVec<ArchivedRecord<Row>>,
        schema: &Schema,
        bytes_max: usize,
        summary: PayloadSummary,
    ) -> Option<Self> {
        let cbuf = rkyv::to_bytes::<rancor::Error>(&ColumnBatch::from_rows(records, schema)?).ok()?;
        if cbuf.len() > bytes_max {
            return None;
        }
        debug_assert!(rkyv::access::<ArchivedColumnBatch, rancor::Error>(&cbuf)
            .is_ok_and(|c| super::columns::check_column_batch(c).is_ok() && c.len() == records.len()));
        let summary = PayloadSummary { crc32c: crc32c::crc32c(&cbuf), ..summary };
        let mut payload = BatchPayload::new(cbuf, 0, summary, true).with_schema_version(schema.version);
        payload.columnar = true;
        Some(payload)
    }

    /// Rows this process built for `schema` (a [`BatchBuilder`] of rows, checked as they
    /// were made), stored column by column where they can be.
    pub(crate) fn into_columnar(self, schema: &Schema) -> Self {
        if !self.typed || self.columnar || self.schema_version != schema.version {
            return self;
        }
        // SAFETY: typed payloads with a schema version are rows archived by this process
        // (`BatchBuilder<Row>`) or checked at ingest.
        let records = unsafe { access_payload::<Row>(self.bytes()) };
        match Self::columns_of(records, schema, usize::MAX, self.summary) {
            Some(c) => BatchPayload { producer: self.producer, ..c },
            None => self,
        }
    }

    fn new(buf: AlignedVec, start: usize, summary: PayloadSummary, typed: bool) -> Self {
        BatchPayload {
            buf: std::sync::Arc::new(buf),
            start,
            summary,
            typed,
            columnar: false,
            schema_version: 0,
            producer: None,
        }
    }

    /// Typed rows of a topic's current schema, checked against it and stored column by
    /// column where they can be: the in-process way to write to a typed topic.
    pub fn from_rows(records: &[Record<Row>], schema: &Schema) -> Result<Self, PayloadError> {
        Self::archived_rows(records, schema, true)
    }

    /// Typed rows checked against the topic's current schema and kept as rows: what a
    /// client sends in a typed produce (the server stores them column by column).
    pub fn rows_to_send(records: &[Record<Row>], schema: &Schema) -> Result<Self, PayloadError> {
        Self::archived_rows(records, schema, false)
    }

    fn archived_rows(records: &[Record<Row>], schema: &Schema, columnar: bool) -> Result<Self, PayloadError> {
        let buf =
            rkyv::to_bytes::<rancor::Error>(&records.to_vec()).map_err(|e| PayloadError::Serialize(e.to_string()))?;
        let len = buf.len();
        Self::checked_rows(buf, 0, len, schema, columnar)
    }

    /// Marks the payload as written by an idempotent producer (stored as a trailer).
    pub fn with_producer(mut self, producer: ProducerInfo) -> Self {
        self.producer = Some(ProducerTrailer { producer, sequence_count: 0 });
        self
    }

    /// As [`Self::with_producer`], for a batch whose producer used `sequences` sequence
    /// numbers for fewer records (some went to a dead-letter topic).
    pub fn with_producer_sequences(mut self, producer: ProducerInfo, sequences: u32) -> Self {
        let sequence_count = if sequences == self.summary.record_count { 0 } else { sequences };
        self.producer = Some(ProducerTrailer { producer, sequence_count });
        self
    }

    /// The schema version typed rows were written with. Crate-private: a schema version
    /// marks the payload as `Row` values, which readers then access without checks.
    pub(crate) fn with_schema_version(mut self, version: u16) -> Self {
        debug_assert!(self.typed && version > 0);
        self.schema_version = version;
        self
    }

    pub fn producer(&self) -> Option<ProducerInfo> {
        self.producer.map(|t| t.producer)
    }

    /// Sequence numbers this payload's producer batch used.
    pub fn producer_sequences(&self) -> u32 {
        self.producer.map_or(self.summary.record_count, |t| t.sequences(self.summary.record_count))
    }

    pub fn schema_version(&self) -> u16 {
        self.schema_version
    }

    /// Header flags describing this payload.
    pub fn flags(&self) -> u16 {
        (if self.typed { FLAG_TYPED } else { 0 })
            | (if self.columnar { FLAG_COLUMNAR } else { 0 })
            | (if self.producer.is_some() { FLAG_PRODUCER } else { 0 })
    }

    /// Bytes the payload takes in the log: the records, then the producer trailer if any.
    pub fn stored_len(&self) -> usize {
        self.bytes().len() + if self.producer.is_some() { PRODUCER_TRAILER_BYTES } else { 0 }
    }

    /// CRC32C of the stored payload (records and trailer), from the records' CRC.
    pub fn stored_crc32c(&self) -> u32 {
        match self.producer {
            Some(p) => crc32c::crc32c_append(self.summary.crc32c, &p.encode()),
            None => self.summary.crc32c,
        }
    }

    /// Writes the stored payload (records, then trailer) into `out`, which is `stored_len()` long.
    pub fn write_stored(&self, out: &mut [u8]) {
        debug_assert_eq!(out.len(), self.stored_len());
        let bytes = self.bytes();
        out[..bytes.len()].copy_from_slice(bytes);
        if let Some(p) = self.producer {
            out[bytes.len()..].copy_from_slice(&p.encode());
        }
    }

    /// Wraps bytes known to be a valid raw-record payload with their summary (for
    /// in-process producers that built them, e.g. benchmarks replaying a prepared batch).
    pub fn from_trusted(buf: AlignedVec, summary: PayloadSummary) -> Self {
        debug_assert_eq!(validate_payload(&buf, usize::MAX).ok(), Some(summary));
        BatchPayload::new(buf, 0, summary, false)
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

    pub fn is_columnar(&self) -> bool {
        self.columnar
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
    #[error("record {index}: {error}")]
    Row { index: usize, error: super::schema::RowError },
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

/// Archives borrowed raw records (see [`RawRecordRef`]) into a raw payload: one copy of
/// the input, straight into the archive. `capacity` is a guess of the archive's size.
#[allow(clippy::ptr_arg)] // rkyv serializes a Vec (its archive), not a slice
pub fn raw_payload_from_refs(records: &Vec<RawRecordRef<'_>>, capacity: usize) -> Result<BatchPayload, PayloadError> {
    let buf = rkyv::api::high::to_bytes_in::<_, rancor::Error>(records, AlignedVec::with_capacity(capacity))
        .map_err(|e| PayloadError::Serialize(e.to_string()))?;
    let summary = summarize(records.iter().map(|r| r.timestamp_ms), &buf)?;
    // Archived with the layout of `Vec<RawRecord>` by construction.
    debug_assert_eq!(validate_payload(&buf, usize::MAX).ok(), Some(summary));
    Ok(BatchPayload::new(buf, 0, summary, false))
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
        self.finish_with_capacity(0)
    }

    /// As [`Self::finish`], into a buffer of `capacity` bytes to start with: a good guess
    /// saves the archive from growing (and being copied) while it is written.
    pub fn finish_with_capacity(&mut self, capacity: usize) -> Result<BatchPayload, PayloadError> {
        let buf = rkyv::api::high::to_bytes_in::<_, rancor::Error>(&self.records, AlignedVec::with_capacity(capacity))
            .map_err(|e| PayloadError::Serialize(e.to_string()))?;
        let summary = summarize(self.records.iter().map(|r| r.timestamp_ms), &buf)?;
        self.records.clear();
        let typed = std::any::TypeId::of::<V>() != std::any::TypeId::of::<Vec<u8>>();
        Ok(BatchPayload::new(buf, 0, summary, typed))
    }
}

/// A batch read back from the log: its header and its checked payload, in the DMA buffer
/// it was read into (no copy).
#[derive(Clone)]
pub struct Batch {
    pub header: BatchHeader,
    /// The stored payload: records, then the producer trailer if the header says so.
    stored: ReadBuf,
    /// The records' archive: the stored payload without the trailer.
    payload: ReadBuf,
}

impl Batch {
    /// Wraps a payload whose CRC has been checked against `header`.
    pub(crate) fn new(header: BatchHeader, stored: ReadBuf) -> Self {
        debug_assert_eq!(stored.len(), header.payload_len as usize);
        let trailer = if header.flags & FLAG_PRODUCER != 0 { PRODUCER_TRAILER_BYTES } else { 0 };
        let records_len = stored.len().saturating_sub(trailer);
        let payload = stored.slice(0, records_len).unwrap_or_else(ReadBuf::empty);
        Batch { header, stored, payload }
    }

    /// The producer that wrote this batch, for batches of idempotent producers.
    pub fn producer(&self) -> Option<ProducerInfo> {
        self.producer_trailer().map(|t| t.producer)
    }

    pub fn producer_trailer(&self) -> Option<ProducerTrailer> {
        if self.header.flags & FLAG_PRODUCER == 0 {
            return None;
        }
        ProducerTrailer::decode(&self.stored[self.payload.len()..])
    }

    /// The stored payload as it is on disk (records and trailer), for re-encoding a batch whole.
    pub fn stored_payload(&self) -> &[u8] {
        &self.stored
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
        self.header.flags & FLAG_TYPED != 0
    }

    /// The typed rows of a batch of a typed topic, read in place (row by row or column by
    /// column, as stored); `None` for a raw batch (or a typed batch of an embedder's own
    /// value type, which has no schema version).
    pub fn typed_rows(&self) -> Option<TypedRows<'_>> {
        if !self.is_typed() || self.header.schema_version == 0 {
            return None;
        }
        if self.header.flags & FLAG_COLUMNAR != 0 {
            // SAFETY: columnar payloads are built by the server from rows it validated
            // (`from_untrusted_typed`), and their CRC is checked on every read from disk.
            return Some(TypedRows::Columns(unsafe { rkyv::access_unchecked::<ArchivedColumnBatch>(&self.payload) }));
        }
        // SAFETY: typed payloads are validated against their schema at ingest (bytecheck
        // and row checks) and their CRC is checked on every read from disk.
        Some(TypedRows::Rows(unsafe { access_payload::<Row>(&self.payload) }))
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

    /// Every record's timestamp, for raw batches and rows; `None` for a batch of an
    /// embedder's own value type.
    pub fn timestamps(&self) -> Option<Vec<i64>> {
        match self.typed_rows() {
            Some(TypedRows::Columns(c)) => return Some(c.record_timestamps().iter().map(|t| t.to_native()).collect()),
            Some(TypedRows::Rows(r)) => return Some(r.iter().map(|r| r.timestamp_ms.to_native()).collect()),
            None => {}
        }
        if self.is_typed() {
            return None;
        }
        Some(self.records().iter().map(|r| r.timestamp_ms.to_native()).collect())
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

/// A typed batch's records as stored: row by row, or column by column.
#[derive(Clone, Copy)]
pub enum TypedRows<'a> {
    Rows(&'a ArchivedVec<ArchivedRecord<Row>>),
    Columns(&'a ArchivedColumnBatch),
}

impl<'a> TypedRows<'a> {
    pub fn len(&self) -> usize {
        match self {
            TypedRows::Rows(r) => r.len(),
            TypedRows::Columns(c) => c.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn timestamp_ms(&self, i: usize) -> i64 {
        match self {
            TypedRows::Rows(r) => r.get(i).map_or(0, |r| r.timestamp_ms.to_native()),
            TypedRows::Columns(c) => c.timestamp_ms(i),
        }
    }

    pub fn key(&self, i: usize) -> Option<&'a [u8]> {
        match self {
            TypedRows::Rows(r) => r.get(i).and_then(|r| r.key.as_ref()).map(|k| k.as_slice()),
            TypedRows::Columns(c) => c.key(i),
        }
    }

    /// Record `i`'s headers (a columnar batch has none: records with headers stay rows).
    pub fn headers(&self, i: usize) -> &'a [super::ArchivedRecordHeader] {
        match self {
            TypedRows::Rows(r) => r.get(i).map_or(&[], |r| r.headers.as_slice()),
            TypedRows::Columns(_) => &[],
        }
    }

    /// Record `i`'s values as written (its schema version's columns), owned.
    pub fn to_row(&self, i: usize) -> Row {
        match self {
            TypedRows::Rows(r) => {
                r.get(i).and_then(|r| rkyv::deserialize::<Row, rancor::Error>(&r.value).ok()).unwrap_or_default()
            }
            TypedRows::Columns(c) => c.to_row(i),
        }
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

    /// Rows are sent as rows and stored as columns; records with headers stay rows.
    #[test]
    fn typed_rows_are_stored_column_by_column_unless_a_record_has_headers() {
        use super::super::schema::Value;
        let schema = Schema::parse("ts TIMESTAMP NOT NULL, k TEXT, v BIGINT", Some("ts")).expect("schema");
        let mut records: Vec<Record<Row>> = (0..50i64)
            .map(|i| Record {
                timestamp_ms: 100 - i,
                key: None,
                value: vec![Value::Timestamp(i), Value::Text(format!("k{i}")), Value::BigInt(i)],
                headers: Vec::new(),
            })
            .collect();
        let sent = BatchPayload::rows_to_send(&records, &schema).expect("rows");
        assert!(!sent.is_columnar() && sent.flags() & FLAG_COLUMNAR == 0);
        let mut buf = AlignedVec::<16>::new();
        buf.extend_from_slice(sent.bytes());
        let stored = BatchPayload::from_untrusted_typed(buf, 0, 1 << 20, &schema).expect("valid rows");
        assert!(stored.is_columnar() && stored.flags() & FLAG_COLUMNAR != 0);
        assert!(stored.bytes().len() < sent.bytes().len(), "{} against {}", stored.bytes().len(), sent.bytes().len());
        assert_eq!(stored.summary().crc32c, crc32c::crc32c(stored.bytes()));
        assert_eq!(
            (stored.summary().record_count, stored.summary().first_timestamp_ms, stored.summary().max_timestamp_ms),
            (50, 100, 100)
        );
        let columns = rkyv::access::<ArchivedColumnBatch, rancor::Error>(stored.bytes()).expect("columns");
        let rows = TypedRows::Columns(columns);
        for (i, r) in records.iter().enumerate() {
            assert_eq!((rows.timestamp_ms(i), rows.key(i), rows.to_row(i)), (r.timestamp_ms, None, r.value.clone()));
        }
        records[7].headers.push(super::super::RecordHeader { key: "h".into(), value: b"v".to_vec() });
        let with_headers = BatchPayload::from_rows(&records, &schema).expect("rows");
        assert!(!with_headers.is_columnar(), "a record with headers keeps the batch in rows");
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
