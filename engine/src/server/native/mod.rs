//! The native binary protocol: length-prefixed frames, several requests in flight per
//! connection, replies matched by correlation id. See docs/format.md.

pub mod client;
mod connection;
mod handler;
pub mod protocol;

pub use connection::{serve_connection, ConnectionLimits};
pub use handler::handle_frame;
