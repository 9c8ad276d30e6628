//! The runtime: shards (one pinned glommio executor per core), the bounded queues between
//! them, and shutdown. Only this module starts threads and pins them.

mod bounded_queue;
mod mesh;
mod shards;
mod shutdown;

pub use bounded_queue::BoundedQueue;
pub use mesh::{MeshSetup, ShardSender};
pub use shards::{default_shard_count, run_single, start_shards, ShardHandle, ShardId};
pub use shutdown::ShutdownSignal;

pub mod live_input;
mod task_queues;
pub use task_queues::{replay_polled_at, spawn_replay};
