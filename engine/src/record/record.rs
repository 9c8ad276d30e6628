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

/// Bytes borrowed from an input buffer, archived exactly as a `Vec<u8>` is: the borrowed
/// record types below archive as [`RawRecord`] without copying their input into owned
/// vectors first (one copy, into the archive).
#[derive(Debug, Clone, Copy)]
pub struct BytesRef<'a>(pub &'a [u8]);

impl rkyv::Archive for BytesRef<'_> {
    type Archived = rkyv::vec::ArchivedVec<u8>;
    type Resolver = rkyv::vec::VecResolver;

    fn resolve(&self, resolver: Self::Resolver, out: rkyv::Place<Self::Archived>) {
        rkyv::vec::ArchivedVec::resolve_from_len(self.0.len(), resolver, out);
    }
}

impl<S> rkyv::Serialize<S> for BytesRef<'_>
where
    S: rkyv::rancor::Fallible + rkyv::ser::Allocator + rkyv::ser::Writer + ?Sized,
{
    fn serialize(&self, serializer: &mut S) -> Result<Self::Resolver, S::Error> {
        rkyv::vec::ArchivedVec::<u8>::serialize_from_slice(self.0, serializer)
    }
}

/// A string borrowed from an input buffer, archived exactly as a `String` is.
#[derive(Debug, Clone, Copy)]
pub struct StrRef<'a>(pub &'a str);

impl rkyv::Archive for StrRef<'_> {
    type Archived = rkyv::string::ArchivedString;
    type Resolver = rkyv::string::StringResolver;

    fn resolve(&self, resolver: Self::Resolver, out: rkyv::Place<Self::Archived>) {
        rkyv::string::ArchivedString::resolve_from_str(self.0, resolver, out);
    }
}

impl<S> rkyv::Serialize<S> for StrRef<'_>
where
    S: rkyv::rancor::Fallible + rkyv::ser::Writer + ?Sized,
    S::Error: rkyv::rancor::Source,
{
    fn serialize(&self, serializer: &mut S) -> Result<Self::Resolver, S::Error> {
        rkyv::string::ArchivedString::serialize_from_str(self.0, serializer)
    }
}

/// A record header borrowed from an input buffer; archives as [`RecordHeader`].
#[derive(Debug, Clone, Copy)]
pub struct RecordHeaderRef<'a> {
    pub key: StrRef<'a>,
    pub value: BytesRef<'a>,
}

impl rkyv::Archive for RecordHeaderRef<'_> {
    type Archived = ArchivedRecordHeader;
    type Resolver = (rkyv::string::StringResolver, rkyv::vec::VecResolver);

    fn resolve(&self, (key_r, value_r): Self::Resolver, out: rkyv::Place<Self::Archived>) {
        rkyv::munge::munge!(let ArchivedRecordHeader { key, value } = out);
        self.key.resolve(key_r, key);
        self.value.resolve(value_r, value);
    }
}

impl<S> rkyv::Serialize<S> for RecordHeaderRef<'_>
where
    S: rkyv::rancor::Fallible + rkyv::ser::Allocator + rkyv::ser::Writer + ?Sized,
    S::Error: rkyv::rancor::Source,
{
    fn serialize(&self, serializer: &mut S) -> Result<Self::Resolver, S::Error> {
        Ok((self.key.serialize(serializer)?, self.value.serialize(serializer)?))
    }
}

/// A raw record borrowed from an input buffer (a Kafka batch, say); archives exactly as
/// [`RawRecord`], so a `Vec<RawRecordRef>` archives as a raw batch payload.
#[derive(Debug, Clone)]
pub struct RawRecordRef<'a> {
    pub timestamp_ms: i64,
    pub key: Option<BytesRef<'a>>,
    pub value: BytesRef<'a>,
    pub headers: Vec<RecordHeaderRef<'a>>,
}

impl rkyv::Archive for RawRecordRef<'_> {
    type Archived = ArchivedRecord<Vec<u8>>;
    type Resolver = (Option<rkyv::vec::VecResolver>, rkyv::vec::VecResolver, rkyv::vec::VecResolver);

    fn resolve(&self, (key_r, value_r, headers_r): Self::Resolver, out: rkyv::Place<Self::Archived>) {
        rkyv::munge::munge!(let ArchivedRecord { timestamp_ms, key, value, headers } = out);
        self.timestamp_ms.resolve((), timestamp_ms);
        self.key.resolve(key_r, key);
        self.value.resolve(value_r, value);
        rkyv::vec::ArchivedVec::resolve_from_len(self.headers.len(), headers_r, headers);
    }
}

impl<S> rkyv::Serialize<S> for RawRecordRef<'_>
where
    S: rkyv::rancor::Fallible + rkyv::ser::Allocator + rkyv::ser::Writer + ?Sized,
    S::Error: rkyv::rancor::Source,
{
    fn serialize(&self, serializer: &mut S) -> Result<Self::Resolver, S::Error> {
        let key = self.key.serialize(serializer)?;
        let value = self.value.serialize(serializer)?;
        // Most records have no headers: an empty vector needs no scratch space (which
        // `serialize_from_slice` would allocate), only a position.
        let headers = if self.headers.is_empty() {
            // Still aligned for the element type: validation checks the pointer's alignment.
            let pos = rkyv::ser::WriterExt::align_for::<ArchivedRecordHeader>(serializer)?;
            rkyv::vec::VecResolver::from_pos(pos)
        } else {
            rkyv::vec::ArchivedVec::<ArchivedRecordHeader>::serialize_from_slice(&self.headers, serializer)?
        };
        Ok((key, value, headers))
    }
}
