//! The record: timestamp, optional key, value and headers, archived with rkyv.

use rkyv::{Archive, Deserialize, Serialize};

/// A header of a record (Kafka-style: a string key and a byte value).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct RecordHeader {
    pub key: String,
    pub value: Vec<u8>,
}

/// One record. `V` is the value: raw bytes for raw topics, or a typed rkyv value that is
/// then read in place, aligned, without copying.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Record<V> {
    /// Event time in milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    pub key: Option<Vec<u8>>,
    pub value: V,
    pub headers: Vec<RecordHeader>,
}

/// A record whose value is opaque bytes.
pub type RawRecord = Record<Vec<u8>>;

impl RawRecord {
    pub fn new(timestamp_ms: i64, key: Option<&[u8]>, value: &[u8]) -> Self {
        Record { timestamp_ms, key: key.map(<[u8]>::to_vec), value: value.to_vec(), headers: Vec::new() }
    }
}

/// Reserved header: marks a record whose value was null (a Kafka tombstone). Sluice values
/// are byte strings, so null is kept as an empty value plus this header, which is removed
/// again when the record is written back for Kafka or as JSON.
pub const NULL_VALUE_HEADER: &str = "sluice.null-value";
/// Header of a dead-lettered record: why it was refused.
pub const DEAD_LETTER_ERROR_HEADER: &str = "sluice.error";
/// Header of a dead-lettered record: where it was produced to (`topic/partition`).
pub const DEAD_LETTER_SOURCE_HEADER: &str = "sluice.source";
