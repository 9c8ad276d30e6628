//! Views: the catalog of materialized views, the runtimes each shard runs, and serving
//! their rows (scans and lookups, from consistent per-shard snapshots) and changes
//! (changelog topics).

pub mod catalog;
pub mod changelog;
pub mod checkpoint;
pub mod manager;
pub mod read;
pub mod rebuild;
