//! Kafka record batches (format v2, "magic 2"): parsed at the door, written on fetch.
//!
//! The trust boundary for Kafka producers. A produced batch is checked whole before any
//! of it is kept: length, magic, CRC32C (over attributes to the end, as Kafka defines it),
//! the record count against the records that are really there, every varint and length,
//! and a cap on the decompressed size (gzip, snappy, lz4, zstd), so a small compressed
//! batch cannot make the server allocate without bound. Its records become one Sluice
//! batch: raw bytes for raw topics, typed rows (validated against the schema) for typed
//! topics, whose Kafka values are JSON objects.
//!
//! On fetch, each Sluice batch is written back as one uncompressed Kafka batch with the
//! same offsets and timestamps (typed rows as JSON objects again).
//!
//! Layout of a batch (big-endian), as Kafka's `DefaultRecordBatch`:
//! ```text
//! 0 baseOffset i64   8 batchLength i32   12 partitionLeaderEpoch i32   16 magic i8 = 2
//! 17 crc u32 (CRC32C of bytes 21..end)   21 attributes i16   23 lastOffsetDelta i32
//! 27 baseTimestamp i64   35 maxTimestamp i64   43 producerId i64   51 producerEpoch i16
//! 53 baseSequence i32    57 recordCount i32    61 records (compressed as attributes say)
//! ```

use std::io::Read;

use crate::record::schema::{row_to_json, Row, Schema};
use crate::record::{
    raw_payload_from_refs, Batch, BatchBuilder, BatchPayload, BytesRef, PayloadError, ProducerInfo, RawRecordRef,
    Record, RecordHeader, RecordHeaderRef, StrRef,
};

/// Bytes of the batch header before the records.
pub const BATCH_OVERHEAD_BYTES: usize = 61;
const MAGIC_V2: i8 = 2;
const ATTR_COMPRESSION_MASK: i16 = 0x07;
const ATTR_LOG_APPEND_TIME: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;

pub use crate::record::NULL_VALUE_HEADER;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("record batch is malformed: {0}")]
    Corrupt(String),
    #[error("record batch checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    BadCrc { stored: u32, computed: u32 },
    #[error("record batch magic {0} is not supported (only v2, Kafka 0.11 and later)")]
    UnsupportedMagic(i8),
    #[error("compression codec {0} is not supported")]
    UnsupportedCompression(i16),
    #[error("decompressed records exceed the limit of {0} bytes")]
    TooLarge(usize),
    #[error("transactional and control batches are not supported")]
    Transactional,
    #[error("record {index}: {reason}")]
    InvalidRecord { index: usize, reason: String },
    #[error("{0}")]
    Payload(#[from] PayloadError),
}

impl BatchError {
    /// The index of the offending record, for Kafka's per-record errors.
    pub fn record_index(&self) -> Option<usize> {
        match self {
            BatchError::InvalidRecord { index, .. } => Some(*index),
            _ => None,
        }
    }
}

fn corrupt(what: &str) -> BatchError {
    BatchError::Corrupt(what.to_string())
}

/// A parsed batch's identity fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchInfo {
    pub record_count: u32,
    pub producer: Option<ProducerInfo>,
    pub max_timestamp_ms: i64,
}

/// A cursor over untrusted bytes; every read is bounds-checked.
struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BatchError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len()).ok_or_else(|| corrupt("truncated record"))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn i8(&mut self) -> Result<i8, BatchError> {
        Ok(self.take(1)?[0] as i8)
    }

    fn varlong(&mut self) -> Result<i64, BatchError> {
        // Fast path: most varints of a record (attributes aside) fit one byte.
        if let Some(&b) = self.b.get(self.at) {
            if b & 0x80 == 0 {
                self.at += 1;
                let raw = b as u64;
                return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
            }
        }
        let mut raw: u64 = 0;
        for shift in (0..70).step_by(7) {
            let byte = self.take(1)?[0];
            if shift == 63 && byte > 1 {
                return Err(corrupt("varint too long"));
            }
            raw |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
            }
        }
        Err(corrupt("varint too long"))
    }

    fn varint(&mut self) -> Result<i32, BatchError> {
        i32::try_from(self.varlong()?).map_err(|_| corrupt("varint out of range"))
    }

    /// A varint length then that many bytes; `None` for length -1.
    fn nullable_bytes(&mut self) -> Result<Option<&'a [u8]>, BatchError> {
        match self.varint()? {
            -1 => Ok(None),
            n if n >= 0 => Ok(Some(self.take(n as usize)?)),
            _ => Err(corrupt("negative length")),
        }
    }

    fn remaining(&self) -> usize {
        self.b.len() - self.at
    }
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// Splits a produce request's record set into its batches, checking each one's framing.
pub fn split_batches(records: &[u8]) -> Result<Vec<&[u8]>, BatchError> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < records.len() {
        if records.len() - at < 17 {
            return Err(corrupt("record set ends inside a batch header"));
        }
        let len = be_i32(records, at + 8);
        if len < (BATCH_OVERHEAD_BYTES - 12) as i32 {
            return Err(corrupt("batch length too small"));
        }
        let end = at + 12 + len as usize;
        if end > records.len() {
            return Err(corrupt("record set ends inside a batch"));
        }
        out.push(&records[at..end]);
        at = end;
    }
    if out.is_empty() {
        return Err(corrupt("empty record set"));
    }
    Ok(out)
}

/// What a parsed record carries, borrowed from the batch (or its decompressed records).
struct RawKafkaRecord<'a> {
    timestamp_ms: i64,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    headers: Vec<(&'a str, Option<&'a [u8]>)>,
}

/// Checks one batch (framing, magic, CRC, flags) and returns its header fields and its
/// records section, decompressed within `decompressed_max` bytes.
fn open_batch(batch: &[u8], decompressed_max: usize) -> Result<(BatchHeaderFields, Vec<u8>, bool), BatchError> {
    if batch.len() < BATCH_OVERHEAD_BYTES {
        return Err(corrupt("batch shorter than its header"));
    }
    let magic = batch[16] as i8;
    if magic != MAGIC_V2 {
        return Err(BatchError::UnsupportedMagic(magic));
    }
    let stored = u32::from_be_bytes([batch[17], batch[18], batch[19], batch[20]]);
    let computed = crc32c::crc32c(&batch[21..]);
    if stored != computed {
        return Err(BatchError::BadCrc { stored, computed });
    }
    let h = BatchHeaderFields {
        attributes: be_i16(batch, 21),
        last_offset_delta: be_i32(batch, 23),
        base_timestamp: be_i64(batch, 27),
        max_timestamp: be_i64(batch, 35),
        producer_id: be_i64(batch, 43),
        producer_epoch: be_i16(batch, 51),
        base_sequence: be_i32(batch, 53),
        record_count: be_i32(batch, 57),
    };
    if h.attributes & (ATTR_TRANSACTIONAL | ATTR_CONTROL) != 0 {
        return Err(BatchError::Transactional);
    }
    if h.record_count <= 0 || h.record_count as usize > crate::limits::BATCH_RECORDS_MAX {
        return Err(corrupt("record count out of range"));
    }
    if h.last_offset_delta != h.record_count - 1 {
        return Err(corrupt("last offset delta does not match the record count"));
    }
    let body = &batch[BATCH_OVERHEAD_BYTES..];
    // Every record takes at least 7 bytes uncompressed: an impossible count is refused
    // before anything is sized by it.
    let codec = h.attributes & ATTR_COMPRESSION_MASK;
    if codec == 0 {
        return Ok((h, Vec::new(), false));
    }
    let out = decompress(codec, body, decompressed_max)?;
    Ok((h, out, true))
}

#[derive(Debug, Clone, Copy)]
struct BatchHeaderFields {
    attributes: i16,
    last_offset_delta: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    record_count: i32,
}

fn bounded_read(mut r: impl Read, max: usize) -> Result<Vec<u8>, BatchError> {
    let mut out = Vec::new();
    r.by_ref()
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| BatchError::Corrupt(format!("decompression failed: {e}")))?;
    if out.len() > max {
        return Err(BatchError::TooLarge(max));
    }
    Ok(out)
}

/// Decompresses a records section with Kafka's codecs, never past `max` bytes.
fn decompress(codec: i16, body: &[u8], max: usize) -> Result<Vec<u8>, BatchError> {
    match codec {
        1 => bounded_read(flate2::read::GzDecoder::new(body), max),
        2 => snappy(body, max),
        3 => bounded_read(lz4_flex::frame::FrameDecoder::new(body), max),
        4 => {
            let d = zstd::stream::read::Decoder::new(body).map_err(|e| BatchError::Corrupt(format!("zstd: {e}")))?;
            bounded_read(d, max)
        }
        other => Err(BatchError::UnsupportedCompression(other)),
    }
}

/// Kafka's snappy: the xerial framing (Java clients) or one raw block (librdkafka). Each
/// block's decompressed length is read from its header and checked before allocating.
fn snappy(body: &[u8], max: usize) -> Result<Vec<u8>, BatchError> {
    const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\0";
    let raw = |block: &[u8], out: &mut Vec<u8>| -> Result<(), BatchError> {
        let n = snap::raw::decompress_len(block).map_err(|e| BatchError::Corrupt(format!("snappy: {e}")))?;
        if out.len() + n > max {
            return Err(BatchError::TooLarge(max));
        }
        let start = out.len();
        out.resize(start + n, 0);
        snap::raw::Decoder::new()
            .decompress(block, &mut out[start..])
            .map_err(|e| BatchError::Corrupt(format!("snappy: {e}")))?;
        Ok(())
    };
    let mut out = Vec::new();
    if body.len() >= 16 && &body[..8] == XERIAL_MAGIC {
        let mut at = 16;
        while at < body.len() {
            if body.len() - at < 4 {
                return Err(corrupt("snappy block length cut short"));
            }
            let len = u32::from_be_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]]) as usize;
            at += 4;
            let block = body.get(at..at + len).ok_or_else(|| corrupt("snappy block cut short"))?;
            raw(block, &mut out)?;
            at += len;
        }
    } else {
        raw(body, &mut out)?;
    }
    Ok(out)
}

/// Parses the records of a checked batch, calling `each` for every record in order.
fn for_each_record<'a>(
    h: &BatchHeaderFields,
    records: &'a [u8],
    now_ms: i64,
    mut each: impl FnMut(usize, RawKafkaRecord<'a>) -> Result<(), BatchError>,
) -> Result<(), BatchError> {
    if records.len() < 7 * h.record_count as usize {
        return Err(corrupt("record count larger than the records section can hold"));
    }
    let mut c = Cursor { b: records, at: 0 };
    for i in 0..h.record_count as usize {
        let len = c.varint()?;
        if len < 0 || len as usize > c.remaining() {
            return Err(corrupt("record length out of range"));
        }
        let mut r = Cursor { b: c.take(len as usize)?, at: 0 };
        let _attributes = r.i8()?;
        let ts_delta = r.varlong()?;
        let offset_delta = r.varint()?;
        if offset_delta != i as i32 {
            return Err(corrupt("offset deltas are not consecutive"));
        }
        let key = r.nullable_bytes()?;
        let value = r.nullable_bytes()?;
        let n_headers = r.varint()?;
        if n_headers < 0 || n_headers as usize > r.remaining() {
            return Err(corrupt("header count out of range"));
        }
        let mut headers = Vec::with_capacity(n_headers as usize);
        for _ in 0..n_headers {
            let k = r.nullable_bytes()?.ok_or_else(|| corrupt("null header key"))?;
            let k = std::str::from_utf8(k).map_err(|_| corrupt("header key is not UTF-8"))?;
            headers.push((k, r.nullable_bytes()?));
        }
        if r.remaining() != 0 {
            return Err(corrupt("bytes left over inside a record"));
        }
        let timestamp_ms = if h.attributes & ATTR_LOG_APPEND_TIME != 0 || h.base_timestamp < 0 {
            now_ms
        } else {
            h.base_timestamp.saturating_add(ts_delta)
        };
        each(i, RawKafkaRecord { timestamp_ms, key, value, headers })?;
    }
    if c.remaining() != 0 {
        return Err(corrupt("bytes left over after the last record"));
    }
    Ok(())
}

fn producer_of(h: &BatchHeaderFields) -> Option<ProducerInfo> {
    (h.producer_id >= 0 && h.base_sequence >= 0).then_some(ProducerInfo {
        producer_id: h.producer_id,
        epoch: h.producer_epoch,
        base_sequence: h.base_sequence,
    })
}

fn headers_of(raw: &[(&str, Option<&[u8]>)], null_value: bool) -> Vec<RecordHeader> {
    let mut out: Vec<RecordHeader> =
        raw.iter().map(|(k, v)| RecordHeader { key: k.to_string(), value: v.unwrap_or_default().to_vec() }).collect();
    if null_value {
        out.push(RecordHeader { key: NULL_VALUE_HEADER.to_string(), value: Vec::new() });
    }
    out
}

/// Turns one checked Kafka batch into a Sluice payload for a raw topic: keys, values,
/// timestamps and headers byte for byte.
pub fn to_raw_payload(batch: &[u8], decompressed_max: usize, now_ms: i64) -> Result<BatchPayload, BatchError> {
    let (h, decompressed, compressed) = open_batch(batch, decompressed_max)?;
    let records = if compressed { &decompressed[..] } else { &batch[BATCH_OVERHEAD_BYTES..] };
    let mut refs: Vec<RawRecordRef<'_>> = Vec::with_capacity(h.record_count as usize);
    for_each_record(&h, records, now_ms, |_, r| {
        let mut headers: Vec<RecordHeaderRef<'_>> = r
            .headers
            .iter()
            .map(|(k, v)| RecordHeaderRef { key: StrRef(k), value: BytesRef(v.unwrap_or_default()) })
            .collect();
        if r.value.is_none() {
            headers.push(RecordHeaderRef { key: StrRef(NULL_VALUE_HEADER), value: BytesRef(&[]) });
        }
        refs.push(RawRecordRef {
            timestamp_ms: r.timestamp_ms,
            key: r.key.map(BytesRef),
            value: BytesRef(r.value.unwrap_or_default()),
            headers,
        });
        Ok(())
    })?;
    // The archive takes about the records' bytes plus ~48 bytes of framing per record.
    let mut payload = raw_payload_from_refs(&refs, records.len() + 48 * h.record_count as usize + 64)?;
    if let Some(p) = producer_of(&h) {
        payload = payload.with_producer(p);
    }
    Ok(payload)
}

/// Turns one checked Kafka batch into typed rows: each value must be a JSON object that
/// the schema accepts. The first bad record fails the batch, naming the record and field.
pub fn to_typed_payload(
    batch: &[u8],
    decompressed_max: usize,
    now_ms: i64,
    schema: &Schema,
) -> Result<BatchPayload, BatchError> {
    let (h, decompressed, compressed) = open_batch(batch, decompressed_max)?;
    let records = if compressed { &decompressed[..] } else { &batch[BATCH_OVERHEAD_BYTES..] };
    let mut b: BatchBuilder<Row> = BatchBuilder::new();
    for_each_record(&h, records, now_ms, |index, r| {
        let row = typed_row(schema, r.value).map_err(|reason| BatchError::InvalidRecord { index, reason })?;
        b.push(Record {
            timestamp_ms: r.timestamp_ms,
            key: r.key.map(<[u8]>::to_vec),
            value: row,
            headers: headers_of(&r.headers, false),
        });
        Ok(())
    })?;
    let mut payload = b.finish()?.with_schema_version(schema.version).into_columnar(schema);
    if let Some(p) = producer_of(&h) {
        payload = payload.with_producer(p);
    }
    Ok(payload)
}

/// A JSON value as a typed row, with the reason it is refused.
pub fn typed_row(schema: &Schema, value: Option<&[u8]>) -> Result<Row, String> {
    let bytes = value.ok_or_else(|| "a typed topic needs a value (a JSON object), not null".to_string())?;
    let json: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| format!("value is not JSON: {e}"))?;
    schema.row_from_json(&json).map_err(|e| e.to_string())
}

/// The batch's record count, producer and max timestamp, for callers that keep batches.
pub fn batch_info(batch: &[u8]) -> Result<BatchInfo, BatchError> {
    if batch.len() < BATCH_OVERHEAD_BYTES {
        return Err(corrupt("batch shorter than its header"));
    }
    let h = BatchHeaderFields {
        attributes: be_i16(batch, 21),
        last_offset_delta: be_i32(batch, 23),
        base_timestamp: be_i64(batch, 27),
        max_timestamp: be_i64(batch, 35),
        producer_id: be_i64(batch, 43),
        producer_epoch: be_i16(batch, 51),
        base_sequence: be_i32(batch, 53),
        record_count: be_i32(batch, 57),
    };
    Ok(BatchInfo {
        record_count: h.record_count.max(0) as u32,
        producer: producer_of(&h),
        max_timestamp_ms: h.max_timestamp,
    })
}

fn put_varlong(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => put_varlong(out, -1),
        Some(b) => {
            put_varlong(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

/// Writes a Sluice batch as one uncompressed Kafka batch into `out`. Typed rows are written
/// as JSON objects of their schema version, read as the topic's current version (upcast).
pub fn write_kafka_batch(out: &mut Vec<u8>, batch: &Batch, schemas: &[Schema]) {
    let start = out.len();
    out.extend_from_slice(&[0u8; BATCH_OVERHEAD_BYTES]);
    let mut scratch = Vec::new();
    let count = batch.header.record_count as i32;
    let base_ts = batch.header.first_timestamp_ms;
    if let Some(rows) = batch.typed_rows() {
        let written = schemas.iter().find(|s| s.version == batch.header.schema_version).or(schemas.last());
        let current = schemas.last();
        for i in 0..rows.len() {
            let json = match (written, current) {
                (Some(_), Some(cur)) => row_to_json(cur, &cur.upcast(rows.to_row(i))),
                _ => serde_json::Value::Null,
            };
            let value = serde_json::to_vec(&json).unwrap_or_default();
            let stored =
                StoredRecord { timestamp_ms: rows.timestamp_ms(i), key: rows.key(i), headers: rows.headers(i) };
            write_record(out, &mut scratch, i, stored, base_ts, Some(&value));
        }
    } else {
        for (i, r) in batch.records().iter().enumerate() {
            let null = r.headers.iter().any(|h| h.key.as_str() == NULL_VALUE_HEADER);
            let value = (!null).then_some(r.value.as_slice());
            let stored = StoredRecord {
                timestamp_ms: r.timestamp_ms.to_native(),
                key: r.key.as_ref().map(|k| k.as_slice()),
                headers: r.headers.as_slice(),
            };
            write_record(out, &mut scratch, i, stored, base_ts, value);
        }
    }
    let len = out.len() - start;
    let h = &mut out[start..start + BATCH_OVERHEAD_BYTES];
    h[0..8].copy_from_slice(&(batch.header.base_offset as i64).to_be_bytes());
    h[8..12].copy_from_slice(&((len - 12) as i32).to_be_bytes());
    h[12..16].copy_from_slice(&0i32.to_be_bytes());
    h[16] = MAGIC_V2 as u8;
    h[21..23].copy_from_slice(&0i16.to_be_bytes());
    h[23..27].copy_from_slice(&(count - 1).to_be_bytes());
    h[27..35].copy_from_slice(&base_ts.to_be_bytes());
    h[35..43].copy_from_slice(&batch.header.max_timestamp_ms.to_be_bytes());
    h[43..51].copy_from_slice(&(-1i64).to_be_bytes());
    h[51..53].copy_from_slice(&(-1i16).to_be_bytes());
    h[53..57].copy_from_slice(&(-1i32).to_be_bytes());
    h[57..61].copy_from_slice(&count.to_be_bytes());
    let crc = crc32c::crc32c(&out[start + 21..]);
    out[start + 17..start + 21].copy_from_slice(&crc.to_be_bytes());
}

/// What a Kafka record takes from a stored record besides its value.
struct StoredRecord<'a> {
    timestamp_ms: i64,
    key: Option<&'a [u8]>,
    headers: &'a [crate::record::ArchivedRecordHeader],
}

fn write_record(
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    index: usize,
    r: StoredRecord<'_>,
    base_ts: i64,
    value: Option<&[u8]>,
) {
    scratch.clear();
    scratch.push(0); // attributes
                     // Wrapping, as Kafka's clients add it back: extreme timestamps in one batch still round-trip.
    put_varlong(scratch, r.timestamp_ms.wrapping_sub(base_ts));
    put_varlong(scratch, index as i64);
    put_bytes(scratch, r.key);
    put_bytes(scratch, value);
    let headers: Vec<_> = r.headers.iter().filter(|h| h.key.as_str() != NULL_VALUE_HEADER).collect();
    put_varlong(scratch, headers.len() as i64);
    for h in headers {
        put_bytes(scratch, Some(h.key.as_bytes()));
        put_bytes(scratch, Some(h.value.as_slice()));
    }
    put_varlong(out, scratch.len() as i64);
    out.extend_from_slice(scratch);
}

/// A record for [`encode_batch_for_test`]: timestamp, key, value.
pub type TestRecord<'a> = (i64, Option<&'a [u8]>, Option<&'a [u8]>);

/// A Kafka batch built from records, for tests and tools.
pub fn encode_batch_for_test(records: &[TestRecord<'_>], producer: Option<ProducerInfo>, codec: i16) -> Vec<u8> {
    let mut body = Vec::new();
    let mut scratch = Vec::new();
    let base_ts = records.first().map_or(0, |r| r.0);
    for (i, (ts, key, value)) in records.iter().enumerate() {
        scratch.clear();
        scratch.push(0);
        put_varlong(&mut scratch, ts - base_ts);
        put_varlong(&mut scratch, i as i64);
        put_bytes(&mut scratch, *key);
        put_bytes(&mut scratch, *value);
        put_varlong(&mut scratch, 0);
        put_varlong(&mut body, scratch.len() as i64);
        body.extend_from_slice(&scratch);
    }
    let body = match codec {
        0 => body,
        1 => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut e, &body).expect("gzip");
            e.finish().expect("gzip")
        }
        2 => snap::raw::Encoder::new().compress_vec(&body).expect("snappy"),
        3 => {
            let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
            std::io::Write::write_all(&mut e, &body).expect("lz4");
            e.finish().expect("lz4")
        }
        _ => zstd::stream::encode_all(&body[..], 1).expect("zstd"),
    };
    let mut out = vec![0u8; BATCH_OVERHEAD_BYTES];
    out.extend_from_slice(&body);
    let len = out.len();
    let max_ts = records.iter().map(|r| r.0).max().unwrap_or(0);
    let (pid, epoch, seq) = producer.map_or((-1i64, -1i16, -1i32), |p| (p.producer_id, p.epoch, p.base_sequence));
    out[8..12].copy_from_slice(&((len - 12) as i32).to_be_bytes());
    out[16] = MAGIC_V2 as u8;
    out[21..23].copy_from_slice(&codec.to_be_bytes());
    out[23..27].copy_from_slice(&(records.len() as i32 - 1).to_be_bytes());
    out[27..35].copy_from_slice(&base_ts.to_be_bytes());
    out[35..43].copy_from_slice(&max_ts.to_be_bytes());
    out[43..51].copy_from_slice(&pid.to_be_bytes());
    out[51..53].copy_from_slice(&epoch.to_be_bytes());
    out[53..57].copy_from_slice(&seq.to_be_bytes());
    out[57..61].copy_from_slice(&(records.len() as i32).to_be_bytes());
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_round_trips_and_damage_is_refused() {
        let recs: Vec<TestRecord<'_>> =
            (0..50).map(|i| (1000 + i, Some(&b"key"[..]), Some(&b"value value value"[..]))).collect();
        for codec in 0..=4 {
            let b = encode_batch_for_test(&recs, None, codec);
            let p = to_raw_payload(&b, 1 << 20, 0).unwrap_or_else(|e| panic!("codec {codec}: {e}"));
            assert_eq!(p.summary().record_count, 50);
            assert_eq!(p.summary().max_timestamp_ms, 1049);
            let mut bad = b.clone();
            let last = bad.len() - 1;
            bad[last] ^= 1;
            assert!(matches!(to_raw_payload(&bad, 1 << 20, 0), Err(BatchError::BadCrc { .. })));
        }
    }

    #[test]
    fn odd_sizes_without_headers_archive_validly() {
        let values: Vec<Vec<u8>> = (0..40).map(|n| vec![b'x'; n]).collect();
        let keys: Vec<Vec<u8>> = (0..40).map(|n| vec![b'k'; n % 7]).collect();
        let recs: Vec<TestRecord<'_>> =
            (0..40).map(|i| (i as i64, (i % 3 != 0).then_some(&keys[i][..]), Some(&values[i][..]))).collect();
        for n in 1..recs.len() {
            let b = encode_batch_for_test(&recs[..n], None, 0);
            let p = to_raw_payload(&b, 1 << 20, 0).expect("payload");
            crate::record::validate_payload(p.bytes(), 1 << 20).expect("the archive validates");
        }
    }

    #[test]
    fn decompression_is_capped() {
        let big = vec![b'a'; 1 << 20];
        let recs = [(0i64, None, Some(&big[..]))];
        for codec in 1..=4 {
            let b = encode_batch_for_test(&recs, None, codec);
            assert!(b.len() < 64 << 10, "codec {codec} compresses the test value");
            assert_eq!(to_raw_payload(&b, 256 << 10, 0).unwrap_err(), BatchError::TooLarge(256 << 10), "codec {codec}");
        }
    }

    #[test]
    fn null_values_survive_the_round_trip() {
        let b = encode_batch_for_test(&[(5, Some(b"k"), None), (6, None, Some(b""))], None, 0);
        let p = to_raw_payload(&b, 1 << 20, 0).unwrap();
        let records =
            rkyv::access::<rkyv::Archived<Vec<crate::record::RawRecord>>, rkyv::rancor::Error>(p.bytes()).unwrap();
        assert!(records[0].headers.iter().any(|h| h.key.as_str() == NULL_VALUE_HEADER));
        assert!(records[1].headers.is_empty());
    }

    #[test]
    fn impossible_counts_and_lengths_are_refused() {
        let mut b = encode_batch_for_test(&[(0, None, Some(b"x"))], None, 0);
        b[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
        b[23..27].copy_from_slice(&(i32::MAX - 1).to_be_bytes());
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(to_raw_payload(&b, 1 << 20, 0).is_err());
        assert!(split_batches(&[0u8; 10]).is_err());
    }
}
