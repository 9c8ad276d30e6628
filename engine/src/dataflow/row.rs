//! Rows as operators see them: a source record read in place from its batch (older schema
//! versions read with the current one's defaults), or an owned row that crossed a shard.

use crate::dataflow::plan::ColumnInfo;
use crate::record::schema::ArchivedValue;
use crate::sql::expr::Row;
use crate::sql::types::{Datum, OwnedDatum};

/// A typed record's values, read in place.
pub struct SourceRow<'a> {
    pub values: &'a rkyv::vec::ArchivedVec<ArchivedValue>,
    pub columns: &'a [ColumnInfo],
}

impl Row for SourceRow<'_> {
    fn get(&self, i: usize) -> Datum<'_> {
        match self.values.get(i) {
            Some(v) => Datum::from_archived(v),
            // Written before this column existed: its default.
            None => self.columns.get(i).map_or(Datum::Null, |c| Datum::from_value(&c.default)),
        }
    }

    fn archived(&self) -> Option<&rkyv::vec::ArchivedVec<ArchivedValue>> {
        Some(self.values)
    }
}

/// The event time of a record: its event-time column, else the record's timestamp.
pub fn event_time(row: &impl Row, column: Option<usize>, record_ts: i64) -> i64 {
    match column.map(|c| row.get(c)) {
        Some(Datum::Timestamp(t)) | Some(Datum::Int(t)) => t,
        _ => record_ts,
    }
}

/// Copies a row's first `width` columns out (when it must outlive its batch).
pub fn owned_row(row: &impl Row, width: usize) -> Vec<OwnedDatum> {
    (0..width).map(|i| row.get(i).into_owned()).collect()
}

/// Encodes the values of `exprs` over `row` as a key (see `Datum::encode_key`) into `out`.
pub fn encode_exprs(exprs: &[crate::sql::expr::Expr], row: &(impl Row + ?Sized), out: &mut Vec<u8>) {
    for e in exprs {
        e.eval(row).encode_key(out);
    }
}

/// The shard that owns a key.
pub fn owner_of(key: &[u8], shards: usize) -> usize {
    (crate::record::murmur2(key) as u32 as usize) % shards.max(1)
}
