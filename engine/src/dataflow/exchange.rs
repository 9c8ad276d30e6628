//! What crosses shards in a dataflow: partial aggregates, join rows, table rows,
//! watermarks and checkpoint barriers, for one view, from one shard.
//!
//! Messages travel on bounded channels (glommio's channel mesh): a full channel suspends
//! the sender, which is how backpressure reaches the log readers. There are two meshes,
//! one into the first stateful operator and one into the second (after an interval
//! join); a receiver only ever sends on the later mesh, so no cycle of full channels can
//! form. From one shard to another, messages keep their order: a watermark or a barrier
//! follows the data it covers.

use crate::dataflow::aggregate::PartialGroup;
use crate::dataflow::interval_join::{JoinRow, Side};
use crate::sql::types::OwnedDatum;
use crate::wire::{Decoder, Encoder, WireError};

/// Identifies a running view version: `(view id << 16) | version`.
pub type ViewKey = u64;

/// The stateful operator a message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The first: the aggregate, the interval join, or (with a table) the enrichment feed.
    First,
    /// The aggregate after an interval join.
    Second,
}

/// A message between shards. `Send`: bodies are owned (encoded rows, or plain values).
#[derive(Debug)]
pub struct DataMsg {
    pub view: ViewKey,
    pub from: usize,
    pub body: DataBody,
}

#[derive(Debug)]
pub enum DataBody {
    /// Partial aggregates, then the sender's watermark.
    Partials { stage: Stage, groups: Vec<PartialGroup>, watermark: i64 },
    /// Rows for the interval join, keyed, then the sender's watermark.
    JoinRows { side: Side, rows: Vec<(Box<[u8]>, JoinRow)>, watermark: i64 },
    /// Only a watermark (nothing else to send).
    Watermark { stage: Stage, watermark: i64 },
    /// Rows of the enriching table: (primary key, event time, row).
    TableRows { rows: Vec<(Box<[u8]>, i64, Vec<OwnedDatum>)> },
    /// The sender has sent every table row it had when the view started.
    TableReady,
    /// Watermark alignment: the watermark of the sender's slowest source partition with
    /// a backlog (WATERMARK_IDLE: none has one). Sent when it changes.
    Backlog { watermark: i64 },
    /// Checkpoint barrier: everything before it belongs to checkpoint `id`.
    Barrier { stage: Stage, id: u64 },
}

impl DataBody {
    /// Encoded size, for the view's metrics (approximate).
    pub fn weight(&self) -> usize {
        match self {
            DataBody::Partials { groups, .. } => groups.len(),
            DataBody::JoinRows { rows, .. } => rows.len(),
            DataBody::TableRows { rows } => rows.len(),
            _ => 0,
        }
    }
}

/// Encoded form of table rows (for checkpoints of the replica's feed).
pub fn encode_table_rows(rows: &[(Box<[u8]>, i64, Vec<OwnedDatum>)], e: &mut Encoder) {
    e.u32(rows.len() as u32);
    for (k, ts, row) in rows {
        e.bytes(k).i64(*ts).u32(row.len() as u32);
        for v in row {
            crate::dataflow::accumulator::encode_opt_datum(e, Some(v));
        }
    }
}

pub fn decode_table_rows(d: &mut Decoder<'_>) -> Result<Vec<(Box<[u8]>, i64, Vec<OwnedDatum>)>, WireError> {
    let n = d.u32()? as usize;
    let mut out = Vec::with_capacity(n.min(d.remaining()));
    for _ in 0..n {
        let k: Box<[u8]> = d.bytes()?.into();
        let ts = d.i64()?;
        let w = d.u32()? as usize;
        if w > d.remaining() {
            return Err(WireError::Invalid("row width"));
        }
        let row = (0..w)
            .map(|_| crate::dataflow::accumulator::decode_opt_datum(d).map(Option::unwrap_or_default))
            .collect::<Result<_, _>>()?;
        out.push((k, ts, row));
    }
    Ok(out)
}
