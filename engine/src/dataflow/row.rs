//! Rows as operators see them: a source record read in place from its batch, row by row or
//! column by column (older schema versions read with the current one's defaults), or an
//! owned row that crossed a shard.

use std::borrow::Cow;

use crate::dataflow::plan::ColumnInfo;
use crate::record::columns::{null_at, ColumnRef};
use crate::record::schema::ArchivedValue;
use crate::sql::expr::{Row, Stored};
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

    #[inline]
    fn stored_width(&self) -> Option<usize> {
        Some(self.values.len())
    }

    #[inline]
    fn stored(&self, i: usize) -> Stored<'_> {
        match self.values.get(i) {
            Some(ArchivedValue::BigInt(v)) => Stored::Int(v.to_native()),
            Some(ArchivedValue::Int(v)) => Stored::Int(v.to_native() as i64),
            Some(ArchivedValue::Timestamp(v)) => Stored::Timestamp(v.to_native()),
            Some(ArchivedValue::Text(t)) => Stored::Text(t.as_str()),
            Some(ArchivedValue::Null) => Stored::Null,
            _ => Stored::Other,
        }
    }
}

/// Record `index` of a columnar batch, read in place from its columns (resolved once per
/// batch: see [`ColumnRef`]).
pub struct ColumnRow<'a> {
    pub batch: &'a [ColumnRef<'a>],
    pub index: usize,
    pub columns: &'a [ColumnInfo],
}

impl Row for ColumnRow<'_> {
    #[inline]
    fn get(&self, c: usize) -> Datum<'_> {
        let i = self.index;
        let datum = match self.batch.get(c) {
            // Written before this column existed: its default.
            None => return self.columns.get(c).map_or(Datum::Null, |c| Datum::from_value(&c.default)),
            Some(ColumnRef::Boolean { nulls, .. })
            | Some(ColumnRef::Int { nulls, .. })
            | Some(ColumnRef::BigInt { nulls, .. })
            | Some(ColumnRef::Double { nulls, .. })
            | Some(ColumnRef::Timestamp { nulls, .. })
                if null_at(nulls, i) =>
            {
                None
            }
            Some(ColumnRef::Boolean { values, .. }) => values.get(i).map(|v| Datum::Bool(*v)),
            Some(ColumnRef::Int { values, .. }) => values.get(i).map(|v| Datum::Int(v.to_native() as i64)),
            Some(ColumnRef::BigInt { values, .. }) => values.get(i).map(|v| Datum::Int(v.to_native())),
            Some(ColumnRef::Double { values, .. }) => values.get(i).map(|v| Datum::Double(v.to_native())),
            Some(ColumnRef::Timestamp { values, .. }) => values.get(i).map(|v| Datum::Timestamp(v.to_native())),
            // SAFETY: columnar batches read from the log were built from validated strings.
            Some(ColumnRef::Text(v)) => unsafe { v.get_str(i) }.map(|t| Datum::Text(Cow::Borrowed(t))),
            Some(ColumnRef::Bytea(v)) => v.get(i).map(|b| Datum::Bytes(Cow::Borrowed(b))),
        };
        datum.unwrap_or(Datum::Null)
    }

    #[inline]
    fn stored_width(&self) -> Option<usize> {
        Some(self.batch.len())
    }

    #[inline]
    fn stored(&self, c: usize) -> Stored<'_> {
        let i = self.index;
        let stored = match self.batch.get(c) {
            None => return Stored::Other,
            Some(ColumnRef::Int { nulls, .. })
            | Some(ColumnRef::BigInt { nulls, .. })
            | Some(ColumnRef::Timestamp { nulls, .. })
                if null_at(nulls, i) =>
            {
                None
            }
            Some(ColumnRef::BigInt { values, .. }) => values.get(i).map(|v| Stored::Int(v.to_native())),
            Some(ColumnRef::Int { values, .. }) => values.get(i).map(|v| Stored::Int(v.to_native() as i64)),
            Some(ColumnRef::Timestamp { values, .. }) => values.get(i).map(|v| Stored::Timestamp(v.to_native())),
            // SAFETY: as in `get`.
            Some(ColumnRef::Text(v)) => unsafe { v.get_str(i) }.map(Stored::Text),
            Some(ColumnRef::Boolean { nulls, .. }) | Some(ColumnRef::Double { nulls, .. }) if null_at(nulls, i) => None,
            Some(ColumnRef::Boolean { .. }) | Some(ColumnRef::Double { .. }) | Some(ColumnRef::Bytea(_)) => {
                Some(Stored::Other)
            }
        };
        stored.unwrap_or(Stored::Null)
    }
}

/// The event time of a record: its event-time column, else the record's timestamp.
pub fn event_time(row: &(impl Row + ?Sized), column: Option<usize>, record_ts: i64) -> i64 {
    match column.map(|c| row.get(c)) {
        Some(Datum::Timestamp(t)) | Some(Datum::Int(t)) => t,
        _ => record_ts,
    }
}

/// Copies a row's first `width` columns out (when it must outlive its batch).
pub fn owned_row(row: &(impl Row + ?Sized), width: usize) -> Vec<OwnedDatum> {
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
