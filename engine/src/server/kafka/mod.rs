//! The Kafka wire protocol: Kafka clients produce, consume and join groups unchanged.
//!
//! Owns: the Kafka listener's connections (`connection`), one thin handler per API
//! (`handlers/`: decode, route to the owning shard through the node, encode), the record
//! batch codec at the trust boundary (`record_batch`), and consumer groups (`groups/`).
//! Messages are decoded and encoded with the `kafka-protocol` crate. Sluice is one broker
//! (node 0) whose shards split the partitions; any shard serves any connection and routes
//! by partition (data) or by group (coordination).

pub mod connection;
pub mod groups;
pub mod handlers;
pub mod record_batch;

use std::net::SocketAddr;

use crate::limits::{
    CONNECTION_IDLE_MS_DEFAULT, KAFKA_DECOMPRESSED_BYTES_MAX_DEFAULT, KAFKA_REQUEST_BYTES_MAX_DEFAULT,
};

/// The Kafka listener's settings.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// Largest request frame (Kafka's `socket.request.max.bytes`).
    pub request_bytes_max: usize,
    /// Largest decompressed records section of one batch.
    pub decompressed_bytes_max: usize,
    /// Create a topic on first use (Metadata, Produce) instead of answering
    /// UNKNOWN_TOPIC_OR_PARTITION. Off by default, as in Redpanda.
    pub auto_create_topics: bool,
    /// Partitions of topics created without a count.
    pub default_partitions: u32,
    /// How long a new group waits for more members before its first rebalance.
    pub group_initial_rebalance_delay_ms: u64,
    pub group_session_timeout_min_ms: i32,
    pub group_session_timeout_max_ms: i32,
    /// A connection idle this long is closed (Kafka's `connections.max.idle.ms`).
    pub idle_ms: u64,
    /// The address clients are told to connect to (Kafka's `advertised.listeners`), when
    /// it is not the one bound: behind a proxy or a NAT.
    pub advertised_addr: Option<std::net::SocketAddr>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            request_bytes_max: KAFKA_REQUEST_BYTES_MAX_DEFAULT,
            decompressed_bytes_max: KAFKA_DECOMPRESSED_BYTES_MAX_DEFAULT,
            auto_create_topics: false,
            default_partitions: 1,
            group_initial_rebalance_delay_ms: 3000,
            group_session_timeout_min_ms: 1000,
            group_session_timeout_max_ms: 1_800_000,
            idle_ms: CONNECTION_IDLE_MS_DEFAULT,
            advertised_addr: None,
        }
    }
}

impl KafkaConfig {
    pub fn group_timeouts(&self) -> groups::GroupTimeouts {
        groups::GroupTimeouts {
            initial_rebalance_delay: std::time::Duration::from_millis(self.group_initial_rebalance_delay_ms),
            session_timeout_min_ms: self.group_session_timeout_min_ms,
            session_timeout_max_ms: self.group_session_timeout_max_ms,
        }
    }
}

/// What every Kafka handler on a shard shares.
#[derive(Debug, Clone)]
pub struct KafkaContext {
    /// The address Metadata and FindCoordinator advertise: the one actually bound.
    pub advertised: SocketAddr,
    pub config: KafkaConfig,
}

/// The single broker's node id.
pub const NODE_ID: i32 = 0;
/// The cluster id Metadata reports.
pub const CLUSTER_ID: &str = "sluice";
