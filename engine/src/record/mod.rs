//! Records and batches: what a log stores and how it is checked.
//!
//! Owns: the record type (archived with rkyv 0.8 and read in place), the fixed 64-byte
//! [`BatchHeader`] with its CRC32C chain, building batch payloads (a typed topic's rows
//! stored column by column: [`columns`]), and validating payloads at the trust boundary
//! (ingest). After validation and a CRC check on every read from
//! disk, records are accessed without further checks.

mod batch;
mod batch_header;
pub mod columns;
mod partitioner;
mod producer;
#[allow(clippy::module_inception)] // record/record.rs holds the record type itself
mod record;
pub mod schema;

pub use batch::{
    access_payload, raw_payload_from_refs, validate_payload, Batch, BatchBuilder, BatchPayload, PayloadError,
    PayloadSummary, TypedRows,
};
pub use batch_header::{
    BatchHeader, HeaderError, BATCH_MAGIC, BATCH_VERSION, BATCH_VERSION_MIN, FLAG_COLUMNAR, FLAG_PRODUCER, FLAG_TYPED,
};
pub use partitioner::{murmur2, partition_for_key};
pub use producer::{ProducerInfo, ProducerTrailer, PRODUCER_TRAILER_BYTES};
pub use record::{
    ArchivedRecord, ArchivedRecordHeader, BytesRef, RawRecord, RawRecordRef, Record, RecordHeader, RecordHeaderRef,
    StrRef, DEAD_LETTER_ERROR_HEADER, DEAD_LETTER_SOURCE_HEADER, NULL_VALUE_HEADER,
};
