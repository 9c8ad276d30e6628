//! Rows of a view that does not aggregate (a filter, a projection, a join): kept as they
//! were made, identified by where they came from, until the state TTL lets them go.

use std::collections::BTreeMap;

use crate::dataflow::accumulator::{decode_opt_datum, encode_opt_datum};
use crate::sql::types::OwnedDatum;
use crate::wire::{Decoder, Encoder, WireError};

/// Where a row came from: (partition, offset) of its record, and of its partner's for a
/// join. Unique, and ordered as the log is.
pub type RowId = (u32, u64, u32, u64);

#[derive(Debug, Default)]
pub struct AppendState {
    pub rows: BTreeMap<RowId, (i64, Vec<OwnedDatum>)>,
    pub refused_at_limit: u64,
    pub evicted_by_ttl: u64,
}

impl AppendState {
    /// Keeps a row (made from an event of time `ts`); false if refused at the limit.
    pub fn insert(&mut self, id: RowId, ts: i64, row: Vec<OwnedDatum>, rows_max: usize) -> bool {
        if self.rows.len() >= rows_max && !self.rows.contains_key(&id) {
            self.refused_at_limit += 1;
            return false;
        }
        self.rows.insert(id, (ts, row));
        true
    }

    /// Evicts rows whose event is older than `cut`; returns their ids.
    pub fn evict_before(&mut self, cut: i64) -> Vec<RowId> {
        let gone: Vec<RowId> = self.rows.iter().filter(|(_, (ts, _))| *ts < cut).map(|(id, _)| *id).collect();
        for id in &gone {
            self.rows.remove(id);
        }
        self.evicted_by_ttl += gone.len() as u64;
        gone
    }

    pub fn encode(&self, e: &mut Encoder) {
        e.u64(self.rows.len() as u64);
        for (id, (ts, row)) in &self.rows {
            e.u32(id.0).u64(id.1).u32(id.2).u64(id.3).i64(*ts).u32(row.len() as u32);
            for v in row {
                encode_opt_datum(e, Some(v));
            }
        }
    }

    pub fn decode(d: &mut Decoder<'_>) -> Result<AppendState, WireError> {
        let mut s = AppendState::default();
        for _ in 0..d.u64()? {
            let id = (d.u32()?, d.u64()?, d.u32()?, d.u64()?);
            let ts = d.i64()?;
            let n = d.u32()? as usize;
            if n > d.remaining() {
                return Err(WireError::Invalid("row width"));
            }
            let row = (0..n).map(|_| decode_opt_datum(d).map(Option::unwrap_or_default)).collect::<Result<_, _>>()?;
            s.rows.insert(id, (ts, row));
        }
        Ok(s)
    }
}
