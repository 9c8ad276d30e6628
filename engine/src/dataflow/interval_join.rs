//! Interval join of two streams on a key: `left.k = right.k AND right.ts BETWEEN left.ts
//! + lower AND left.ts + upper`, on the shard that owns the key.
//!
//! Each side's rows wait in state until the watermark says no row of the other side can
//! still match them; a pair is emitted once, when the second of the two arrives, so the
//! set of pairs does not depend on the order rows arrive in.

use hashbrown::HashMap;

use crate::dataflow::accumulator::{decode_opt_datum, encode_opt_datum, Position};
use crate::sql::types::OwnedDatum;
use crate::wire::{Decoder, Encoder, WireError};

#[derive(Debug, Clone, PartialEq)]
pub struct JoinRow {
    pub ts: i64,
    pub pos: Position,
    pub values: Vec<OwnedDatum>,
}

impl JoinRow {
    pub fn encode(&self, e: &mut Encoder) {
        e.i64(self.ts).i64(self.pos.ts).u32(self.pos.partition).u64(self.pos.offset).u32(self.values.len() as u32);
        for v in &self.values {
            encode_opt_datum(e, Some(v));
        }
    }

    pub fn decode(d: &mut Decoder<'_>) -> Result<JoinRow, WireError> {
        let ts = d.i64()?;
        let pos = Position { ts: d.i64()?, partition: d.u32()?, offset: d.u64()? };
        let n = d.u32()? as usize;
        if n > d.remaining() {
            return Err(WireError::Invalid("row width"));
        }
        let values = (0..n).map(|_| decode_opt_datum(d).map(Option::unwrap_or_default)).collect::<Result<_, _>>()?;
        Ok(JoinRow { ts, pos, values })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Left,
    Right,
}

#[derive(Debug, Default)]
pub struct IntervalJoinState {
    keys: HashMap<Box<[u8]>, (Vec<JoinRow>, Vec<JoinRow>)>,
    pub rows: usize,
    pub refused_at_limit: u64,
}

impl IntervalJoinState {
    /// Adds a row of one side; calls `emit(left, right)` for every pair it completes.
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &mut self,
        side: Side,
        key: &[u8],
        row: JoinRow,
        lower_ms: i64,
        upper_ms: i64,
        rows_max: usize,
        mut emit: impl FnMut(&JoinRow, &JoinRow),
    ) {
        let entry = match self.keys.get_mut(key) {
            Some(e) => e,
            None => self.keys.entry(key.into()).or_default(),
        };
        match side {
            Side::Left => {
                for r in &entry.1 {
                    if r.ts >= row.ts.saturating_add(lower_ms) && r.ts <= row.ts.saturating_add(upper_ms) {
                        emit(&row, r);
                    }
                }
            }
            Side::Right => {
                for l in &entry.0 {
                    if row.ts >= l.ts.saturating_add(lower_ms) && row.ts <= l.ts.saturating_add(upper_ms) {
                        emit(l, &row);
                    }
                }
            }
        }
        if self.rows >= rows_max {
            self.refused_at_limit += 1;
            return;
        }
        self.rows += 1;
        match side {
            Side::Left => entry.0.push(row),
            Side::Right => entry.1.push(row),
        }
    }

    /// Drops the rows no future row can match once the watermark is `wm`.
    pub fn prune(&mut self, wm: i64, lower_ms: i64, upper_ms: i64) {
        let mut removed = 0;
        self.keys.retain(|_, (left, right)| {
            let before = left.len() + right.len();
            // A left row meets right rows up to ts + upper; future right rows are >= wm.
            left.retain(|l| l.ts.saturating_add(upper_ms) >= wm);
            // A right row meets left rows with ts >= its ts - upper and <= ts - lower.
            right.retain(|r| r.ts.saturating_sub(lower_ms) >= wm);
            removed += before - left.len() - right.len();
            !(left.is_empty() && right.is_empty())
        });
        self.rows -= removed;
    }

    pub fn encode(&self, e: &mut Encoder) {
        let mut keys: Vec<_> = self.keys.iter().collect();
        keys.sort_by(|a, b| a.0.cmp(b.0));
        e.u64(keys.len() as u64);
        for (k, (l, r)) in keys {
            e.bytes(k).u32(l.len() as u32);
            l.iter().for_each(|x| x.encode(e));
            e.u32(r.len() as u32);
            r.iter().for_each(|x| x.encode(e));
        }
    }

    pub fn decode(d: &mut Decoder<'_>) -> Result<IntervalJoinState, WireError> {
        let mut s = IntervalJoinState::default();
        for _ in 0..d.u64()? {
            let k: Box<[u8]> = d.bytes()?.into();
            let nl = d.u32()?;
            let l = (0..nl).map(|_| JoinRow::decode(d)).collect::<Result<Vec<_>, _>>()?;
            let nr = d.u32()?;
            let r = (0..nr).map(|_| JoinRow::decode(d)).collect::<Result<Vec<_>, _>>()?;
            s.rows += l.len() + r.len();
            s.keys.insert(k, (l, r));
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::types::Datum;

    fn row(ts: i64, v: i64) -> JoinRow {
        JoinRow { ts, pos: Position { ts, partition: 0, offset: v as u64 }, values: vec![Datum::Int(v)] }
    }

    #[test]
    fn pairs_are_found_whatever_the_order() {
        let rows = [(Side::Left, 100), (Side::Right, 95), (Side::Right, 120), (Side::Left, 130), (Side::Right, 200)];
        let mut pairs_fwd = Vec::new();
        let mut s = IntervalJoinState::default();
        for (side, ts) in rows {
            s.add(side, b"k", row(ts, ts), -10, 20, 1000, |l, r| pairs_fwd.push((l.ts, r.ts)));
        }
        let mut pairs_rev = Vec::new();
        let mut s = IntervalJoinState::default();
        for (side, ts) in rows.iter().rev() {
            s.add(*side, b"k", row(*ts, *ts), -10, 20, 1000, |l, r| pairs_rev.push((l.ts, r.ts)));
        }
        pairs_fwd.sort();
        pairs_rev.sort();
        assert_eq!(pairs_fwd, vec![(100, 95), (100, 120), (130, 120)]);
        assert_eq!(pairs_fwd, pairs_rev);
        s.prune(1000, -10, 20);
        assert_eq!(s.rows, 0);
    }
}
