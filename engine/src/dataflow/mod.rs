//! The dataflow: how views are computed from the log, one path for live data and replay.
//!
//! Owns: the operators (enrichment, filter, windows, grouped aggregation, interval join,
//! appended rows), their state, event time (watermarks, late events), and the exchange
//! of partial results between shards. A view runs on every shard: each shard reads the
//! partitions it owns, does the per-record work there (in place, no copies), and sends
//! per-key results to the shard that owns the key. Replay is a start offset in the past;
//! there is no other path.

pub mod accumulator;
pub mod aggregate;
pub mod append;
pub mod direct_group_index;
pub mod enrich;
pub mod exchange;
pub mod group_key;
pub mod int_group_index;
pub mod interval_join;
pub mod plan;
pub mod row;
pub mod runtime;
pub mod watermark;
pub mod window;
pub mod window_map;
