//! The log: topics, partitions, segments, indexes, recovery, retention and reads.
//!
//! Owns every byte of the data directory except what other modules ask it to keep.
//! Promises: an append is acknowledged only once its topic's durability holds; recovery
//! never truncates acknowledged data; every batch read from disk is CRC-checked before a
//! record is touched. Disk access goes through [`crate::io`] only.

mod device_writes;
mod error;
pub mod inspect;
mod log_manager;
mod offset;
mod partition;
mod producer_state;
mod reader;
mod sealed_index_cache;
mod segment;
mod segment_index;
mod tail_cache;
mod topic;

pub use device_writes::oldest_write_age;
pub use error::LogError;
pub use log_manager::{owner_shard, LogManager, Placement, StartPosition};
pub use offset::{Offset, PartitionOffsets};
pub use partition::{AppendAck, Partition, PartitionMetrics, PartitionStatus, PendingAppend};
pub use producer_state::{ProducerTable, SequenceCheck};
pub use reader::PartitionReader;
pub use segment::{
    check_batch, index_file_name, log_file_name, parse_log_file_name, scan_segment, ChunkReader, PartitionIdentity,
    ScanOutcome, SegmentHeader, SEGMENT_DATA_START,
};
pub use segment_index::{IndexEntry, SegmentIndex, SegmentSummary};
pub use topic::{
    decode_durability, encode_durability, is_internal_topic, validate_topic_name, Durability, TopicConfig,
    TOPIC_SETTINGS,
};
