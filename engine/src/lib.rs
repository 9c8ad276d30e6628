//! Sluice: a single-node, thread-per-core streaming engine built around a durable log.
//!
//! See ARCHITECTURE.md for the codemap and the invariants.

// Keyed state is maps of encoded keys to small tuples; spelled out, the types say what
// each map holds better than aliases would.
#![allow(clippy::type_complexity)]

pub mod clock;
pub mod contained;
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
