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
