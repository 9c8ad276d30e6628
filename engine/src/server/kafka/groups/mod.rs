//! Consumer groups: membership (the group protocol), the per-shard coordinator, and
//! committed offsets kept in the internal `__consumer_offsets` topic.

mod coordinator;
pub mod group;
pub mod offset_store;

pub use coordinator::{GroupCall, GroupCoordinator, GroupDescription, GroupReply};
pub use group::{GroupTimeouts, JoinOutcome, JoinRequest};
pub use offset_store::{group_partition, offsets_topic_config, CommittedOffset, OffsetCommit, OFFSETS_TOPIC};
