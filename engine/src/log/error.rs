//! Errors at the edge of the log.

use std::path::PathBuf;

use crate::io::IoError;
use crate::record::PayloadError;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    #[error("topic '{topic}' has no partition {partition}")]
    UnknownPartition { topic: String, partition: u32 },
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    #[error("invalid topic configuration: {0}")]
    InvalidConfig(String),
    #[error("partition {topic}/{partition} is read-only: {reason}")]
    ReadOnly { topic: String, partition: u32, reason: String },
    #[error("corruption in {path} at byte {pos} (offset {offset}): {detail}")]
    Corrupt { path: PathBuf, pos: u64, offset: u64, detail: String },
    #[error("offset {requested} is out of range: the log holds [{start}, {end})")]
    OffsetOutOfRange { requested: u64, start: u64, end: u64 },
    #[error("batch rejected: {0}")]
    Payload(#[from] PayloadError),
    #[error("partition {topic}/{partition} is closed")]
    Closed { topic: String, partition: u32 },
    #[error("producer {producer_id}: sequence {got} is out of order, expected {expected}")]
    OutOfOrderSequence { producer_id: i64, expected: i32, got: i32 },
    #[error("producer {producer_id}: epoch {got} is fenced by the newer epoch {current}")]
    ProducerFenced { producer_id: i64, current: i16, got: i16 },
    #[error("metadata file {path} is unreadable: {detail}")]
    BadMetadata { path: PathBuf, detail: String },
    #[error(transparent)]
    Io(#[from] IoError),
}
