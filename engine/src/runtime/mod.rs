//! The runtime: shards (one pinned glommio executor per core), the bounded queues between
//! them, and shutdown. Only this module spawns threads and pins them.

mod bounded_queue;

pub use bounded_queue::BoundedQueue;
