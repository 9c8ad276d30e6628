//! Columnar typed batches: a typed topic's rows stored column by column (batch version 3,
//! header flag bit 2; see docs/format.md).
//!
//! A row-form record spends 33 bytes on its frame and 9 on every value (a tag and 8 bytes);
//! here a record costs its timestamp and each value its width (plus a null bit where a
//! column has NULLs; not even its timestamp when that is the first TIMESTAMP column's
//! value), and a reader indexes a column instead of walking a record. The server
//! builds these batches itself, from rows it validated at ingest; nothing from outside is
//! read as a columnar batch without [`check_column_batch`].

use rkyv::vec::ArchivedVec;
use rkyv::{Archive, Archived, Serialize};

use super::record::ArchivedRecord;
use super::schema::{ArchivedValue, Row, Schema, Value};

/// A typed batch, column by column. Every column holds one entry per record.
#[derive(Archive, Serialize, Debug, Clone, PartialEq)]
pub struct ColumnBatch {
    /// Each record's timestamp (ms since the Unix epoch); empty (batch version 4) when they
    /// are the values of the batch's first TIMESTAMP column, which then has no NULL (see
    /// [`ColumnBatch::record_time_column`]): producers that stamp records with their event
    /// time would store every timestamp twice.
    pub timestamps: Vec<i64>,
    /// The records' keys; `None` when no record of the batch has one.
    pub keys: Option<VarColumn>,
    /// One per column of the schema version the rows were written with.
    pub columns: Vec<ColumnData>,
}

/// Variable-length values: value `i` is `bytes[ends[i-1]..ends[i]]` (from 0 for the first).
#[derive(Archive, Serialize, Debug, Clone, PartialEq, Default)]
pub struct VarColumn {
    /// Bit `i % 8` of byte `i / 8` set: record `i` has no value (NULL); empty: none is NULL.
    pub nulls: Vec<u8>,
    pub ends: Vec<u32>,
    pub bytes: Vec<u8>,
}

/// One column's values; a NULL's slot holds zero. `nulls` as in [`VarColumn`].
#[derive(Archive, Serialize, Debug, Clone, PartialEq)]
pub enum ColumnData {
    Boolean {
        nulls: Vec<u8>,
        values: Vec<bool>,
    },
    Int {
        nulls: Vec<u8>,
        values: Vec<i32>,
    },
    BigInt {
        nulls: Vec<u8>,
        values: Vec<i64>,
    },
    Double {
        nulls: Vec<u8>,
        values: Vec<f64>,
    },
    /// Milliseconds since the Unix epoch.
    Timestamp {
        nulls: Vec<u8>,
        values: Vec<i64>,
    },
    /// UTF-8 at every value boundary.
    Text(VarColumn),
    Bytea(VarColumn),
}

fn set_null(nulls: &mut Vec<u8>, i: usize) {
    if nulls.len() <= i / 8 {
        nulls.resize(i / 8 + 1, 0);
    }
    nulls[i / 8] |= 1 << (i % 8);
}

/// A bitmap with bits set beyond the last one written still reads right; trailing bytes
/// are added so that every record has its byte (readers then need no length check).
fn finish_nulls(nulls: &mut Vec<u8>, count: usize) {
    if !nulls.is_empty() {
        nulls.resize(count.div_ceil(8), 0);
    }
}

impl VarColumn {
    fn push(&mut self, i: usize, value: Option<&[u8]>) {
        match value {
            Some(v) => self.bytes.extend_from_slice(v),
            None => set_null(&mut self.nulls, i),
        }
        self.ends.push(self.bytes.len() as u32);
    }
}

impl ArchivedVarColumn {
    /// Value `i`, `None` for a NULL (or an index past the end).
    #[inline]
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        if null_at(&self.nulls, i) {
            return None;
        }
        let end = self.ends.get(i)?.to_native() as usize;
        let start = if i == 0 { 0 } else { self.ends.get(i - 1)?.to_native() as usize };
        self.bytes.get(start..end)
    }

    /// Value `i` as text.
    ///
    /// # Safety
    /// The column must hold UTF-8 at every value boundary: built by [`ColumnBatch::from_rows`]
    /// (from strings), or passed [`check_column_batch`] since.
    #[inline]
    pub unsafe fn get_str(&self, i: usize) -> Option<&str> {
        // SAFETY: the caller guarantees each value is UTF-8.
        self.get(i).map(|b| unsafe { std::str::from_utf8_unchecked(b) })
    }
}

impl ColumnBatch {
    /// The rows of a validated row-form payload (each checked against `schema`), column by
    /// column. `None` when a record has headers: those stay in row form.
    pub fn from_rows(rows: &ArchivedVec<ArchivedRecord<Row>>, schema: &Schema) -> Option<ColumnBatch> {
        let n = rows.len();
        if rows.iter().any(|r| !r.headers.is_empty()) {
            return None;
        }
        let mut columns: Vec<ColumnData> = schema
            .columns
            .iter()
            .map(|c| {
                use super::schema::ColumnType as T;
                let nulls = Vec::new();
                match c.ty {
                    T::Boolean => ColumnData::Boolean { nulls, values: Vec::with_capacity(n) },
                    T::Int => ColumnData::Int { nulls, values: Vec::with_capacity(n) },
                    T::BigInt => ColumnData::BigInt { nulls, values: Vec::with_capacity(n) },
                    T::Double => ColumnData::Double { nulls, values: Vec::with_capacity(n) },
                    T::Timestamp => ColumnData::Timestamp { nulls, values: Vec::with_capacity(n) },
                    T::Text => ColumnData::Text(VarColumn { ends: Vec::with_capacity(n), ..Default::default() }),
                    T::Bytea => ColumnData::Bytea(VarColumn { ends: Vec::with_capacity(n), ..Default::default() }),
                }
            })
            .collect();
        let mut timestamps = Vec::with_capacity(n);
        let mut keys: Option<VarColumn> = None;
        for (i, r) in rows.iter().enumerate() {
            timestamps.push(r.timestamp_ms.to_native());
            if let Some(k) = r.key.as_ref() {
                let keys = keys.get_or_insert_with(|| {
                    // The records before this one had no key.
                    let mut all = VarColumn::default();
                    for j in 0..i {
                        all.push(j, None);
                    }
                    all
                });
                keys.push(i, Some(k.as_slice()));
            } else if let Some(keys) = keys.as_mut() {
                keys.push(i, None);
            }
            if r.value.len() != columns.len() {
                return None;
            }
            for (col, v) in columns.iter_mut().zip(r.value.iter()) {
                // Validation at ingest made every value its column's type or NULL.
                let ok = match (col, v) {
                    (ColumnData::Boolean { nulls, values }, v) => push_fixed(nulls, values, i, v, |v| match v {
                        ArchivedValue::Bool(b) => Some(*b),
                        _ => None,
                    }),
                    (ColumnData::Int { nulls, values }, v) => push_fixed(nulls, values, i, v, |v| match v {
                        ArchivedValue::Int(x) => Some(x.to_native()),
                        _ => None,
                    }),
                    (ColumnData::BigInt { nulls, values }, v) => push_fixed(nulls, values, i, v, |v| match v {
                        ArchivedValue::BigInt(x) => Some(x.to_native()),
                        _ => None,
                    }),
                    (ColumnData::Double { nulls, values }, v) => push_fixed(nulls, values, i, v, |v| match v {
                        ArchivedValue::Double(x) => Some(x.to_native()),
                        _ => None,
                    }),
                    (ColumnData::Timestamp { nulls, values }, v) => push_fixed(nulls, values, i, v, |v| match v {
                        ArchivedValue::Timestamp(x) => Some(x.to_native()),
                        _ => None,
                    }),
                    (ColumnData::Text(c), ArchivedValue::Text(s)) => {
                        c.push(i, Some(s.as_bytes()));
                        true
                    }
                    (ColumnData::Bytea(c), ArchivedValue::Bytes(b)) => {
                        c.push(i, Some(b.as_slice()));
                        true
                    }
                    (ColumnData::Text(c) | ColumnData::Bytea(c), ArchivedValue::Null) => {
                        c.push(i, None);
                        true
                    }
                    _ => false,
                };
                if !ok {
                    return None;
                }
            }
        }
        for col in &mut columns {
            match col {
                ColumnData::Boolean { nulls, .. }
                | ColumnData::Int { nulls, .. }
                | ColumnData::BigInt { nulls, .. }
                | ColumnData::Double { nulls, .. }
                | ColumnData::Timestamp { nulls, .. }
                | ColumnData::Text(VarColumn { nulls, .. })
                | ColumnData::Bytea(VarColumn { nulls, .. }) => finish_nulls(nulls, n),
            }
        }
        if let Some(k) = keys.as_mut() {
            finish_nulls(&mut k.nulls, n);
        }
        let mut batch = ColumnBatch { timestamps, keys, columns };
        let stamped_with_time_column = n > 0
            && matches!(batch.record_time_column(),
                Some(ColumnData::Timestamp { nulls, values }) if nulls.is_empty() && *values == batch.timestamps);
        if stamped_with_time_column {
            batch.timestamps = Vec::new();
        }
        Some(batch)
    }

    /// The column whose values may stand for the records' timestamps: the first TIMESTAMP
    /// column (whatever the topic's event-time column is: a reader of a bare batch must
    /// find it without the schema).
    pub fn record_time_column(&self) -> Option<&ColumnData> {
        self.columns.iter().find(|c| matches!(c, ColumnData::Timestamp { .. }))
    }
}

/// Appends one fixed-width value (zero and a null bit for NULL); false if `v` is neither
/// NULL nor what `read` takes.
fn push_fixed<T: Default>(
    nulls: &mut Vec<u8>,
    values: &mut Vec<T>,
    i: usize,
    v: &ArchivedValue,
    read: impl Fn(&ArchivedValue) -> Option<T>,
) -> bool {
    if matches!(v, ArchivedValue::Null) {
        set_null(nulls, i);
        values.push(T::default());
        return true;
    }
    match read(v) {
        Some(x) => {
            values.push(x);
            true
        }
        None => false,
    }
}

impl ArchivedColumnBatch {
    /// Each record's timestamp: stored, or (elided) the first TIMESTAMP column's values.
    /// Empty only for a batch that is invalid ([`check_column_batch`] refuses it).
    #[inline]
    pub fn record_timestamps(&self) -> &[Archived<i64>] {
        if !self.timestamps.is_empty() {
            return self.timestamps.as_slice();
        }
        match self.record_time_column() {
            Some(ArchivedColumnData::Timestamp { values, .. }) => values.as_slice(),
            _ => &[],
        }
    }

    /// [`ColumnBatch::record_time_column`], archived: the first TIMESTAMP column.
    pub fn record_time_column(&self) -> Option<&ArchivedColumnData> {
        self.columns.iter().find(|c| matches!(c, ArchivedColumnData::Timestamp { .. }))
    }

    pub fn len(&self) -> usize {
        self.record_timestamps().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline]
    pub fn timestamp_ms(&self, i: usize) -> i64 {
        self.record_timestamps().get(i).map_or(0, |t| t.to_native())
    }

    pub fn key(&self, i: usize) -> Option<&[u8]> {
        self.keys.as_ref().and_then(|k| k.get(i))
    }

    /// Record `i`'s values, one per stored column (owned).
    pub fn to_row(&self, i: usize) -> Row {
        self.columns.iter().map(|c| c.value(i)).collect()
    }
}

impl ArchivedColumnData {
    /// Record `i`'s value in this column (owned).
    pub fn value(&self, i: usize) -> Value {
        use ArchivedColumnData as C;
        let fixed = |nulls: &ArchivedVec<u8>, v: Option<Value>| {
            if null_at(nulls, i) {
                Value::Null
            } else {
                v.unwrap_or(Value::Null)
            }
        };
        match self {
            C::Boolean { nulls, values } => fixed(nulls, values.get(i).map(|v| Value::Bool(*v))),
            C::Int { nulls, values } => fixed(nulls, values.get(i).map(|v| Value::Int(v.to_native()))),
            C::BigInt { nulls, values } => fixed(nulls, values.get(i).map(|v| Value::BigInt(v.to_native()))),
            C::Double { nulls, values } => fixed(nulls, values.get(i).map(|v| Value::Double(v.to_native()))),
            C::Timestamp { nulls, values } => fixed(nulls, values.get(i).map(|v| Value::Timestamp(v.to_native()))),
            C::Text(c) => c.get(i).map_or(Value::Null, |b| Value::Text(String::from_utf8_lossy(b).into_owned())),
            C::Bytea(c) => c.get(i).map_or(Value::Null, |b| Value::Bytes(b.to_vec())),
        }
    }
}

/// A column's values, found once per batch: a reader indexes them without looking the
/// column up again for every record.
#[derive(Clone, Copy)]
pub enum ColumnRef<'a> {
    Boolean { nulls: &'a [u8], values: &'a [bool] },
    Int { nulls: &'a [u8], values: &'a [Archived<i32>] },
    BigInt { nulls: &'a [u8], values: &'a [Archived<i64>] },
    Double { nulls: &'a [u8], values: &'a [Archived<f64>] },
    Timestamp { nulls: &'a [u8], values: &'a [Archived<i64>] },
    Text(&'a ArchivedVarColumn),
    Bytea(&'a ArchivedVarColumn),
}

impl ArchivedColumnData {
    pub fn resolve(&self) -> ColumnRef<'_> {
        use ArchivedColumnData as C;
        match self {
            C::Boolean { nulls, values } => ColumnRef::Boolean { nulls, values },
            C::Int { nulls, values } => ColumnRef::Int { nulls, values },
            C::BigInt { nulls, values } => ColumnRef::BigInt { nulls, values },
            C::Double { nulls, values } => ColumnRef::Double { nulls, values },
            C::Timestamp { nulls, values } => ColumnRef::Timestamp { nulls, values },
            C::Text(c) => ColumnRef::Text(c),
            C::Bytea(c) => ColumnRef::Bytea(c),
        }
    }
}

/// Whether bit `i` of a null bitmap is set (an empty bitmap has none).
#[inline]
pub fn null_at(nulls: &[u8], i: usize) -> bool {
    !nulls.is_empty() && nulls.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
}

/// Checks what bytecheck cannot: every column as long as the timestamps, ends in order and
/// inside their bytes, text UTF-8 at every boundary, bitmaps long enough. For columnar
/// batches that come from outside the server (a client reading a fetch).
pub fn check_column_batch(b: &ArchivedColumnBatch) -> Result<(), String> {
    if b.timestamps.is_empty() {
        // Elided timestamps: the first TIMESTAMP column holds them, and has no NULL.
        match b.record_time_column() {
            Some(ArchivedColumnData::Timestamp { nulls, values }) if nulls.is_empty() && !values.is_empty() => {}
            Some(_) => return Err("no record timestamps, and the first TIMESTAMP column has NULLs or no value".into()),
            None => return Err("no record timestamps, and no TIMESTAMP column to take them from".into()),
        }
    }
    let n = b.len();
    let bitmap = |nulls: &ArchivedVec<u8>, what: &str| {
        if nulls.is_empty() || nulls.len() >= n.div_ceil(8) {
            Ok(())
        } else {
            Err(format!("{what}: null bitmap of {} bytes for {n} records", nulls.len()))
        }
    };
    let var = |c: &ArchivedVarColumn, what: &str, text: bool| -> Result<(), String> {
        bitmap(&c.nulls, what)?;
        if c.ends.len() != n {
            return Err(format!("{what}: {} ends for {n} records", c.ends.len()));
        }
        let mut start = 0usize;
        for e in c.ends.iter() {
            let end = e.to_native() as usize;
            if end < start || end > c.bytes.len() {
                return Err(format!("{what}: value end {end} out of order or past {} bytes", c.bytes.len()));
            }
            if text && std::str::from_utf8(&c.bytes[start..end]).is_err() {
                return Err(format!("{what}: a value is not UTF-8"));
            }
            start = end;
        }
        Ok(())
    };
    if let Some(k) = b.keys.as_ref() {
        var(k, "keys", false)?;
    }
    for (i, col) in b.columns.iter().enumerate() {
        let what = format!("column {i}");
        use ArchivedColumnData as C;
        let len = match col {
            C::Boolean { nulls, values } => bitmap(nulls, &what).map(|_| values.len())?,
            C::Int { nulls, values } => bitmap(nulls, &what).map(|_| values.len())?,
            C::BigInt { nulls, values } | C::Timestamp { nulls, values } => {
                bitmap(nulls, &what).map(|_| values.len())?
            }
            C::Double { nulls, values } => bitmap(nulls, &what).map(|_| values.len())?,
            C::Text(c) => var(c, &what, true).map(|_| n)?,
            C::Bytea(c) => var(c, &what, false).map(|_| n)?,
        };
        if len != n {
            return Err(format!("{what}: {len} values for {n} records"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;
    use rkyv::rancor;

    fn schema() -> Schema {
        Schema::parse(
            "ts TIMESTAMP NOT NULL, k BIGINT NOT NULL, i INT, b BOOLEAN, d DOUBLE PRECISION, t TEXT, y BYTEA",
            Some("ts"),
        )
        .expect("schema")
    }

    fn rows() -> Vec<Record<Row>> {
        (0..21i64)
            .map(|i| Record {
                timestamp_ms: 1_000 + i,
                key: (i % 3 == 1).then(|| format!("key{i}").into_bytes()),
                value: vec![
                    Value::Timestamp(5_000 + i),
                    Value::BigInt(i * 1_000_000_007),
                    if i % 4 == 0 { Value::Null } else { Value::Int(-(i as i32)) },
                    if i % 5 == 0 { Value::Null } else { Value::Bool(i % 2 == 0) },
                    Value::Double(i as f64 / 3.0),
                    if i % 6 == 0 { Value::Null } else { Value::Text(format!("é{}", "x".repeat(i as usize))) },
                    if i % 7 == 0 { Value::Null } else { Value::Bytes(vec![i as u8; i as usize % 4]) },
                ],
                headers: Vec::new(),
            })
            .collect()
    }

    #[test]
    fn rows_come_back_from_their_columns() {
        let records = rows();
        let bytes = rkyv::to_bytes::<rancor::Error>(&records).expect("archive rows");
        let archived = rkyv::access::<ArchivedVec<ArchivedRecord<Row>>, rancor::Error>(&bytes).expect("rows");
        let batch = ColumnBatch::from_rows(archived, &schema()).expect("columnar");
        let cbytes = rkyv::to_bytes::<rancor::Error>(&batch).expect("archive columns");
        let cols = rkyv::access::<ArchivedColumnBatch, rancor::Error>(&cbytes).expect("columns");
        check_column_batch(cols).expect("consistent");
        assert_eq!(cols.len(), records.len());
        for (i, r) in records.iter().enumerate() {
            assert_eq!(cols.timestamp_ms(i), r.timestamp_ms);
            assert_eq!(cols.key(i), r.key.as_deref(), "key {i}");
            assert_eq!(cols.to_row(i), r.value, "row {i}");
        }
        assert!(cbytes.len() < bytes.len(), "{} columnar bytes against {} in rows", cbytes.len(), bytes.len());
    }

    /// Records stamped with their first TIMESTAMP column's values store no timestamps and
    /// read them back from that column; one stamped otherwise keeps them all. A batch
    /// without them and without a NULL-free TIMESTAMP column is refused.
    #[test]
    fn timestamps_equal_to_the_first_timestamp_column_are_left_out() {
        let columnar = |records: &Vec<Record<Row>>| {
            let bytes = rkyv::to_bytes::<rancor::Error>(records).expect("archive rows");
            let archived = rkyv::access::<ArchivedVec<ArchivedRecord<Row>>, rancor::Error>(&bytes).expect("rows");
            ColumnBatch::from_rows(archived, &schema()).expect("columnar")
        };
        let read_back = |batch: &ColumnBatch, records: &[Record<Row>]| {
            let cbytes = rkyv::to_bytes::<rancor::Error>(batch).expect("archive columns");
            let cols = rkyv::access::<ArchivedColumnBatch, rancor::Error>(&cbytes).expect("columns");
            check_column_batch(cols).expect("consistent");
            assert_eq!(cols.len(), records.len());
            for (i, r) in records.iter().enumerate() {
                assert_eq!(cols.timestamp_ms(i), r.timestamp_ms, "timestamp {i}");
                assert_eq!(cols.to_row(i), r.value, "row {i}");
            }
            cbytes.len()
        };
        let mut records = rows();
        let stamped = read_back(&columnar(&records), &records);
        for r in records.iter_mut() {
            r.timestamp_ms = match r.value[0] {
                Value::Timestamp(t) => t,
                _ => unreachable!("the first column is the time"),
            };
        }
        let batch = columnar(&records);
        assert!(batch.timestamps.is_empty(), "record time = event time: stored once");
        let elided = read_back(&batch, &records);
        assert_eq!(stamped - elided, 8 * records.len(), "8 bytes a record saved");
        // One record stamped otherwise keeps them all.
        records[7].timestamp_ms += 1;
        let batch = columnar(&records);
        assert_eq!(batch.timestamps.len(), records.len());
        read_back(&batch, &records);

        // An empty `timestamps` without a TIMESTAMP column to stand for it is refused.
        let check = |b: &ColumnBatch| {
            let bytes = rkyv::to_bytes::<rancor::Error>(b).expect("archive");
            check_column_batch(rkyv::access::<ArchivedColumnBatch, rancor::Error>(&bytes).expect("structure"))
        };
        let mut bad = ColumnBatch {
            timestamps: vec![],
            keys: None,
            columns: vec![ColumnData::BigInt { nulls: vec![], values: vec![1, 2] }],
        };
        assert!(check(&bad).is_err(), "no time column");
        bad.columns.push(ColumnData::Timestamp { nulls: vec![2], values: vec![5, 0] });
        assert!(check(&bad).is_err(), "a NULL in the time column");
        bad.columns[1] = ColumnData::Timestamp { nulls: vec![], values: vec![5, 6] };
        assert!(check(&bad).is_ok());
    }

    #[test]
    fn records_with_headers_stay_rows() {
        let mut records = rows();
        records[3].headers.push(crate::record::RecordHeader { key: "h".into(), value: vec![1] });
        let bytes = rkyv::to_bytes::<rancor::Error>(&records).expect("archive rows");
        let archived = rkyv::access::<ArchivedVec<ArchivedRecord<Row>>, rancor::Error>(&bytes).expect("rows");
        assert!(ColumnBatch::from_rows(archived, &schema()).is_none());
    }

    #[test]
    fn inconsistent_columns_are_refused() {
        let mut batch = ColumnBatch {
            timestamps: vec![1, 2, 3],
            keys: None,
            columns: vec![ColumnData::BigInt { nulls: vec![], values: vec![1, 2] }],
        };
        let check = |b: &ColumnBatch| {
            let bytes = rkyv::to_bytes::<rancor::Error>(b).expect("archive");
            let a = rkyv::access::<ArchivedColumnBatch, rancor::Error>(&bytes).expect("structure");
            check_column_batch(a)
        };
        assert!(check(&batch).is_err(), "a short column");
        batch.columns =
            vec![ColumnData::Text(VarColumn { nulls: vec![], ends: vec![1, 3, 2], bytes: b"abc".to_vec() })];
        assert!(check(&batch).is_err(), "ends out of order");
        batch.columns =
            vec![ColumnData::Text(VarColumn { nulls: vec![], ends: vec![1, 2, 3], bytes: vec![b'a', 0xc3, 0xa9] })];
        assert!(check(&batch).is_err(), "a value cut inside a character");
        batch.columns =
            vec![ColumnData::Text(VarColumn { nulls: vec![], ends: vec![1, 1, 3], bytes: vec![b'a', 0xc3, 0xa9] })];
        assert!(check(&batch).is_ok());
    }
}
