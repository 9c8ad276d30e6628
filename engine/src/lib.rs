//! Sluice: a single-node, thread-per-core streaming engine built around a durable log.
//!
//! See ARCHITECTURE.md for the codemap and the invariants.

pub mod clock;
pub mod dataflow;
pub mod io;
pub mod limits;
pub mod log;
pub mod metrics;
pub mod record;
pub mod runtime;
pub mod server;
pub mod sql;
pub mod view;
pub mod wire;
