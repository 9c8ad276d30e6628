//! Typed topics: schemas, their evolution, and typed rows.
//!
//! A schema is a list of columns (Postgres spelling: BOOLEAN, INT, BIGINT, DOUBLE
//! PRECISION, TEXT, BYTEA, TIMESTAMP), each nullable or NOT NULL, optionally with a
//! default, and at most one column naming the event time. A schema has a version; the
//! next version may only add columns at the end that are nullable or have a default, so
//! every older row can be read as the newer schema (upcast: added columns take their
//! default). Rows are `Vec<Value>`, archived with rkyv like any record value.

use std::fmt;
use std::str::FromStr;

use rkyv::{Archive, Deserialize, Serialize};

use crate::wire::{Decoder, Encoder, WireError};

/// Most columns a schema may have.
pub const SCHEMA_COLUMNS_MAX: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Boolean,
    Int,
    BigInt,
    Double,
    Text,
    Bytea,
    Timestamp,
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ColumnType::Boolean => "BOOLEAN",
            ColumnType::Int => "INT",
            ColumnType::BigInt => "BIGINT",
            ColumnType::Double => "DOUBLE PRECISION",
            ColumnType::Text => "TEXT",
            ColumnType::Bytea => "BYTEA",
            ColumnType::Timestamp => "TIMESTAMP",
        })
    }
}

impl FromStr for ColumnType {
    type Err = SchemaError;

    /// Postgres names and their common aliases, case-insensitive.
    fn from_str(s: &str) -> Result<Self, SchemaError> {
        let norm = s.split_whitespace().collect::<Vec<_>>().join(" ").to_ascii_uppercase();
        Ok(match norm.as_str() {
            "BOOLEAN" | "BOOL" => ColumnType::Boolean,
            "INT" | "INTEGER" | "INT4" => ColumnType::Int,
            "BIGINT" | "INT8" => ColumnType::BigInt,
            "DOUBLE PRECISION" | "DOUBLE" | "FLOAT8" => ColumnType::Double,
            "TEXT" | "VARCHAR" | "STRING" => ColumnType::Text,
            "BYTEA" => ColumnType::Bytea,
            "TIMESTAMP" => ColumnType::Timestamp,
            _ => return Err(SchemaError::UnknownType(s.trim().to_string())),
        })
    }
}

impl ColumnType {
    fn code(self) -> u8 {
        self as u8
    }

    fn from_code(c: u8) -> Option<ColumnType> {
        use ColumnType::*;
        [Boolean, Int, BigInt, Double, Text, Bytea, Timestamp].into_iter().find(|t| t.code() == c)
    }
}

/// A value of a typed row.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i32),
    BigInt(i64),
    Double(f64),
    Text(String),
    Bytes(Vec<u8>),
    /// Milliseconds since the Unix epoch.
    Timestamp(i64),
}

/// A typed row: one value per column of the schema version it was written with.
pub type Row = Vec<Value>;

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub ty: ColumnType,
    pub nullable: bool,
    pub default: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    pub version: u16,
    pub columns: Vec<Column>,
    /// Index of the event-time column (a TIMESTAMP or BIGINT of milliseconds).
    pub event_time: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("unknown column type '{0}': use BOOLEAN, INT, BIGINT, DOUBLE PRECISION, TEXT, BYTEA or TIMESTAMP")]
    UnknownType(String),
    #[error("bad column declaration '{0}': want 'name TYPE [NOT NULL] [DEFAULT value]'")]
    BadColumn(String),
    #[error("column '{0}' is declared twice")]
    Duplicate(String),
    #[error("a schema needs between 1 and {SCHEMA_COLUMNS_MAX} columns")]
    ColumnCount,
    #[error("event time column '{0}' is not a column of the schema")]
    UnknownEventTime(String),
    #[error("event time column '{0}' must be TIMESTAMP or BIGINT, not {1}")]
    BadEventTimeType(String, ColumnType),
    #[error("default for column '{column}': {reason}")]
    BadDefault { column: String, reason: String },
    #[error("incompatible schema change: {0}")]
    Incompatible(String),
}

/// Why a row was rejected: the field and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field '{field}': {reason}")]
pub struct RowError {
    pub field: String,
    pub reason: String,
}

fn row_err(field: &str, reason: impl Into<String>) -> RowError {
    RowError { field: field.to_string(), reason: reason.into() }
}

impl Schema {
    /// Parses `"col TYPE [NOT NULL] [DEFAULT literal], ..."`; `event_time` names a column.
    pub fn parse(decl: &str, event_time: Option<&str>) -> Result<Schema, SchemaError> {
        let mut columns: Vec<Column> = Vec::new();
        for part in decl.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let column = parse_column(part)?;
            if columns.iter().any(|c| c.name.eq_ignore_ascii_case(&column.name)) {
                return Err(SchemaError::Duplicate(column.name));
            }
            columns.push(column);
        }
        if columns.is_empty() || columns.len() > SCHEMA_COLUMNS_MAX {
            return Err(SchemaError::ColumnCount);
        }
        let event_time = match event_time {
            None => None,
            Some(name) => {
                let i = columns
                    .iter()
                    .position(|c| c.name.eq_ignore_ascii_case(name))
                    .ok_or_else(|| SchemaError::UnknownEventTime(name.to_string()))?;
                if !matches!(columns[i].ty, ColumnType::Timestamp | ColumnType::BigInt) {
                    return Err(SchemaError::BadEventTimeType(name.to_string(), columns[i].ty));
                }
                Some(i)
            }
        };
        Ok(Schema { version: 1, columns, event_time })
    }

    /// The next version, if `next` only adds nullable or defaulted columns at the end and
    /// keeps every existing column (name, type, nullability) and the event time.
    pub fn evolve(&self, next: &Schema) -> Result<Schema, SchemaError> {
        if next.columns.len() < self.columns.len() {
            return Err(SchemaError::Incompatible("columns cannot be removed".into()));
        }
        for (old, new) in self.columns.iter().zip(&next.columns) {
            if !old.name.eq_ignore_ascii_case(&new.name) {
                return Err(SchemaError::Incompatible(format!(
                    "column '{}' cannot be renamed or reordered (found '{}')",
                    old.name, new.name
                )));
            }
            if old.ty != new.ty {
                return Err(SchemaError::Incompatible(format!(
                    "column '{}' cannot change type from {} to {}",
                    old.name, old.ty, new.ty
                )));
            }
            if old.nullable && !new.nullable {
                return Err(SchemaError::Incompatible(format!("column '{}' cannot become NOT NULL", old.name)));
            }
        }
        for added in &next.columns[self.columns.len()..] {
            if !added.nullable && added.default.is_none() {
                return Err(SchemaError::Incompatible(format!(
                    "added column '{}' must be nullable or have a DEFAULT (old rows have no value)",
                    added.name
                )));
            }
        }
        if self.event_time.is_some() && next.event_time != self.event_time {
            return Err(SchemaError::Incompatible("the event time column cannot change".into()));
        }
        let version = self
            .version
            .checked_add(1)
            .ok_or_else(|| SchemaError::Incompatible(format!("a topic has at most {} schema versions", u16::MAX)))?;
        Ok(Schema { version, columns: next.columns.clone(), event_time: next.event_time })
    }

    /// Reads a row written with an older version as this version: added columns take
    /// their default (or NULL).
    pub fn upcast(&self, mut row: Row) -> Row {
        for c in &self.columns[row.len().min(self.columns.len())..] {
            row.push(c.default.clone().unwrap_or(Value::Null));
        }
        row
    }

    /// Validates a JSON object against the schema and builds the row. Unknown fields and
    /// type mismatches are errors naming the field; missing fields take their default,
    /// or NULL where allowed.
    pub fn row_from_json(&self, json: &serde_json::Value) -> Result<Row, RowError> {
        let Some(obj) = json.as_object() else {
            return Err(row_err("(row)", "a row must be a JSON object"));
        };
        if let Some(unknown) = obj.keys().find(|k| !self.columns.iter().any(|c| c.name == **k)) {
            return Err(row_err(unknown, "no such column"));
        }
        self.columns
            .iter()
            .map(|c| match obj.get(&c.name) {
                None | Some(serde_json::Value::Null) => {
                    if obj.get(&c.name).is_none() {
                        if let Some(d) = &c.default {
                            return Ok(d.clone());
                        }
                    }
                    if c.nullable {
                        Ok(Value::Null)
                    } else {
                        Err(row_err(&c.name, "is NOT NULL and has no value"))
                    }
                }
                Some(v) => json_value(&c.name, c.ty, v),
            })
            .collect()
    }

    /// Checks an archived row (validated by bytecheck) against this schema: one value per
    /// column, each of the column's type, NULL only where the column is nullable.
    pub fn check_archived_row(&self, row: &rkyv::vec::ArchivedVec<ArchivedValue>) -> Result<(), RowError> {
        if row.len() != self.columns.len() {
            return Err(row_err(
                "(row)",
                format!("has {} values; schema version {} has {} columns", row.len(), self.version, self.columns.len()),
            ));
        }
        for (c, v) in self.columns.iter().zip(row.iter()) {
            let ok = matches!(
                (c.ty, v),
                (ColumnType::Boolean, ArchivedValue::Bool(_))
                    | (ColumnType::Int, ArchivedValue::Int(_))
                    | (ColumnType::BigInt, ArchivedValue::BigInt(_))
                    | (ColumnType::Double, ArchivedValue::Double(_))
                    | (ColumnType::Text, ArchivedValue::Text(_))
                    | (ColumnType::Bytea, ArchivedValue::Bytes(_))
                    | (ColumnType::Timestamp, ArchivedValue::Timestamp(_))
            );
            match v {
                ArchivedValue::Null if !c.nullable => return Err(row_err(&c.name, "is NOT NULL and has no value")),
                ArchivedValue::Null => {}
                _ if !ok => return Err(row_err(&c.name, format!("holds a value that is not {}", c.ty))),
                _ => {}
            }
        }
        Ok(())
    }

    /// The event time of a row, in ms, if the schema has one and the row's value is set.
    pub fn event_time_ms(&self, row: &[Value]) -> Option<i64> {
        match row.get(self.event_time?)? {
            Value::Timestamp(ms) | Value::BigInt(ms) => Some(*ms),
            _ => None,
        }
    }

    pub fn encode(&self, e: &mut Encoder) {
        e.u16(self.version).u32(self.columns.len() as u32);
        for c in &self.columns {
            e.str(&c.name).u8(c.ty.code()).u8(c.nullable as u8);
            match &c.default {
                None => e.u8(0),
                Some(v) => {
                    e.u8(1);
                    let text = serde_json::to_string(&value_to_json(v)).unwrap_or_default();
                    e.str(&text)
                }
            };
        }
        e.u32(self.event_time.map_or(u32::MAX, |i| i as u32));
    }

    pub fn decode(d: &mut Decoder<'_>) -> Result<Schema, WireError> {
        let version = d.u16()?;
        let n = d.u32()? as usize;
        if n == 0 || n > SCHEMA_COLUMNS_MAX {
            return Err(WireError::Invalid("schema column count"));
        }
        let mut columns = Vec::with_capacity(n);
        for _ in 0..n {
            let name = d.str()?.to_string();
            let ty = ColumnType::from_code(d.u8()?).ok_or(WireError::Invalid("column type"))?;
            let nullable = d.u8()? != 0;
            let default = match d.u8()? {
                0 => None,
                _ => {
                    let json: serde_json::Value =
                        serde_json::from_str(d.str()?).map_err(|_| WireError::Invalid("column default"))?;
                    Some(json_value(&name, ty, &json).map_err(|_| WireError::Invalid("column default"))?)
                }
            };
            columns.push(Column { name, ty, nullable, default });
        }
        let et = d.u32()?;
        let event_time = (et != u32::MAX).then_some(et as usize);
        if event_time.is_some_and(|i| i >= n) {
            return Err(WireError::Invalid("event time column"));
        }
        Ok(Schema { version, columns, event_time })
    }

    /// `col TYPE [NOT NULL] [DEFAULT v], ...` as it would be declared.
    pub fn declaration(&self) -> String {
        self.columns
            .iter()
            .map(|c| {
                let default = match &c.default {
                    None => String::new(),
                    Some(v) => format!(" DEFAULT {}", sql_literal(v)),
                };
                format!("{} {}{}{default}", c.name, c.ty, if c.nullable { "" } else { " NOT NULL" })
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn parse_column(part: &str) -> Result<Column, SchemaError> {
    let bad = || SchemaError::BadColumn(part.to_string());
    let mut words = part.split_whitespace();
    let name = words.next().ok_or_else(bad)?.to_string();
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(bad());
    }
    let rest: Vec<&str> = words.collect();
    let upper: Vec<String> = rest.iter().map(|w| w.to_ascii_uppercase()).collect();
    let type_end = upper.iter().position(|w| w == "NOT" || w == "NULL" || w == "DEFAULT").unwrap_or(upper.len());
    if type_end == 0 {
        return Err(bad());
    }
    let ty: ColumnType = rest[..type_end].join(" ").parse()?;
    let mut nullable = true;
    let mut default = None;
    let mut i = type_end;
    while i < upper.len() {
        match upper[i].as_str() {
            "NOT" if upper.get(i + 1).is_some_and(|w| w == "NULL") => {
                nullable = false;
                i += 2;
            }
            "NULL" => i += 1,
            "DEFAULT" => {
                let literal = rest.get(i + 1..).ok_or_else(bad)?.join(" ");
                if literal.is_empty() {
                    return Err(bad());
                }
                let json = parse_default_literal(&literal);
                default = Some(
                    json_value(&name, ty, &json)
                        .map_err(|e| SchemaError::BadDefault { column: name.clone(), reason: e.reason })?,
                );
                break;
            }
            _ => return Err(bad()),
        }
    }
    Ok(Column { name, ty, nullable, default })
}

/// A value as a SQL literal (for declarations).
fn sql_literal(v: &Value) -> String {
    match value_to_json(v) {
        serde_json::Value::String(s) => format!("'{}'", s.replace('\'', "''")),
        other => other.to_string(),
    }
}

/// SQL-ish literal to JSON: 'text', numbers, true/false, null.
fn parse_default_literal(lit: &str) -> serde_json::Value {
    let lit = lit.trim();
    if let Some(s) = lit.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        return serde_json::Value::String(s.replace("''", "'"));
    }
    serde_json::from_str(&lit.to_ascii_lowercase()).unwrap_or_else(|_| serde_json::Value::String(lit.to_string()))
}

fn json_value(field: &str, ty: ColumnType, v: &serde_json::Value) -> Result<Value, RowError> {
    use serde_json::Value as J;
    let want = |what: &str| row_err(field, format!("expected {what} for a {ty} column, got {v}"));
    Ok(match ty {
        ColumnType::Boolean => Value::Bool(v.as_bool().ok_or_else(|| want("true or false"))?),
        ColumnType::Int => {
            let n = v.as_i64().ok_or_else(|| want("an integer"))?;
            Value::Int(i32::try_from(n).map_err(|_| row_err(field, format!("{n} is out of range for INT")))?)
        }
        ColumnType::BigInt => Value::BigInt(v.as_i64().ok_or_else(|| want("an integer"))?),
        ColumnType::Double => Value::Double(v.as_f64().ok_or_else(|| want("a number"))?),
        ColumnType::Text => Value::Text(v.as_str().ok_or_else(|| want("a string"))?.to_string()),
        ColumnType::Bytea => match v {
            // Postgres' hex format, as psql prints it.
            J::String(s) => Value::Bytes(
                decode_hex(s.strip_prefix("\\x").unwrap_or(s)).ok_or_else(|| want("hex bytes ('\\x0a1b')"))?,
            ),
            _ => return Err(want("hex bytes ('\\x0a1b')")),
        },
        ColumnType::Timestamp => match v {
            J::Number(n) => Value::Timestamp(n.as_i64().ok_or_else(|| want("epoch milliseconds"))?),
            J::String(s) => {
                let t = humantime::parse_rfc3339_weak(s)
                    .map_err(|e| row_err(field, format!("'{s}' is not an RFC 3339 timestamp: {e}")))?;
                let ms = match t.duration_since(std::time::UNIX_EPOCH) {
                    Ok(d) => d.as_millis() as i64,
                    Err(e) => -(e.duration().as_millis() as i64),
                };
                Value::Timestamp(ms)
            }
            _ => return Err(want("an RFC 3339 string or epoch milliseconds")),
        },
    })
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// 9999-12-31T23:59:59.999Z, the last instant RFC 3339 formatting can express.
const RFC3339_MS_MAX: i64 = 253_402_300_799_999;

/// A value as JSON (timestamps as RFC 3339 strings, bytes as Postgres hex).
pub fn value_to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(i) => J::from(*i),
        Value::BigInt(i) => J::from(*i),
        Value::Double(d) => serde_json::Number::from_f64(*d).map_or(J::Null, J::Number),
        Value::Text(s) => J::String(s.clone()),
        Value::Bytes(b) => J::String(format!("\\x{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>())),
        // RFC 3339 where it can say it (1970 to 9999); epoch milliseconds otherwise.
        Value::Timestamp(ms) if (0..=RFC3339_MS_MAX).contains(ms) => {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(*ms as u64);
            J::String(humantime::format_rfc3339_millis(t).to_string())
        }
        Value::Timestamp(ms) => J::from(*ms),
    }
}

/// A row as a JSON object keyed by column name.
pub fn row_to_json(schema: &Schema, row: &[Value]) -> serde_json::Value {
    let map = schema.columns.iter().zip(row).map(|(c, v)| (c.name.clone(), value_to_json(v))).collect();
    serde_json::Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn trades() -> Schema {
        Schema::parse(
            "ts TIMESTAMP NOT NULL, symbol TEXT NOT NULL, price DOUBLE PRECISION, qty INT DEFAULT 1, raw BYTEA",
            Some("ts"),
        )
        .expect("schema")
    }

    #[test]
    fn parses_declarations_in_postgres_spelling() {
        let s = trades();
        assert_eq!(s.columns.len(), 5);
        assert_eq!(s.columns[2].ty, ColumnType::Double);
        assert!(!s.columns[0].nullable && s.columns[2].nullable);
        assert_eq!(s.columns[3].default, Some(Value::Int(1)));
        assert_eq!(s.event_time, Some(0));
        assert_eq!(
            s.declaration(),
            "ts TIMESTAMP NOT NULL, symbol TEXT NOT NULL, price DOUBLE PRECISION, qty INT DEFAULT 1, raw BYTEA"
        );
        assert!(matches!(Schema::parse("a UUID", None), Err(SchemaError::UnknownType(_))));
        assert!(matches!(Schema::parse("a INT, A TEXT", None), Err(SchemaError::Duplicate(_))));
        assert!(matches!(Schema::parse("a TEXT", Some("a")), Err(SchemaError::BadEventTimeType(..))));
        assert!(matches!(Schema::parse("a INT", Some("b")), Err(SchemaError::UnknownEventTime(_))));
        assert!(matches!(Schema::parse("a INT DEFAULT 'x'", None), Err(SchemaError::BadDefault { .. })));
        assert!(matches!(Schema::parse("", None), Err(SchemaError::ColumnCount)));
    }

    #[test]
    fn json_rows_are_validated_field_by_field() {
        let s = trades();
        let row = s
            .row_from_json(
                &json!({"ts": "2026-01-02T03:04:05.006Z", "symbol": "NVDA", "price": 12.5, "raw": "\\x0aff"}),
            )
            .expect("valid");
        assert_eq!(row[0], Value::Timestamp(1_767_323_045_006));
        assert_eq!(row[3], Value::Int(1), "missing column takes its default");
        assert_eq!(row[4], Value::Bytes(vec![0x0a, 0xff]));
        assert_eq!(s.event_time_ms(&row), Some(1_767_323_045_006));
        let ms = s.row_from_json(&json!({"ts": 5, "symbol": "X"})).expect("epoch ms");
        assert_eq!(ms[0], Value::Timestamp(5));
        assert_eq!(ms[2], Value::Null);
        let err = |j| s.row_from_json(&j).unwrap_err();
        assert_eq!(err(json!({"symbol": "X"})).field, "ts");
        assert_eq!(err(json!({"ts": 1, "symbol": 7})).field, "symbol");
        assert_eq!(err(json!({"ts": 1, "symbol": "X", "qty": 3_000_000_000i64})).field, "qty");
        assert_eq!(err(json!({"ts": "yesterday", "symbol": "X"})).field, "ts");
        assert_eq!(err(json!({"ts": 1, "symbol": "X", "extra": 1})).field, "extra");
        assert_eq!(err(json!([1, 2])).field, "(row)");
        let back = row_to_json(&s, &row);
        assert_eq!(back["ts"], "2026-01-02T03:04:05.006Z");
        assert_eq!(s.row_from_json(&back).expect("round trip"), row);
    }

    #[test]
    fn evolution_adds_optional_columns_and_old_rows_upcast() {
        let v1 = Schema::parse("id BIGINT NOT NULL, name TEXT", None).unwrap();
        let v2 = v1
            .evolve(&Schema::parse("id BIGINT NOT NULL, name TEXT, score DOUBLE DEFAULT 0.5, note TEXT", None).unwrap())
            .unwrap();
        assert_eq!(v2.version, 2);
        assert_eq!(
            v2.upcast(vec![Value::BigInt(1), Value::Text("a".into())]),
            vec![Value::BigInt(1), Value::Text("a".into()), Value::Double(0.5), Value::Null]
        );
        let bad = |d: &str| v1.evolve(&Schema::parse(d, None).unwrap()).unwrap_err().to_string();
        assert!(bad("id BIGINT NOT NULL").contains("removed"));
        assert!(bad("id INT NOT NULL, name TEXT").contains("change type"));
        assert!(bad("id BIGINT NOT NULL, name TEXT NOT NULL").contains("NOT NULL"));
        assert!(bad("id BIGINT NOT NULL, name TEXT, must INT NOT NULL").contains("DEFAULT"));
        assert!(bad("name TEXT, id BIGINT NOT NULL").contains("reordered"));
    }

    #[test]
    fn schemas_and_rows_round_trip() {
        let s = trades();
        let mut e = Encoder::new();
        s.encode(&mut e);
        let bytes = e.finish();
        assert_eq!(Schema::decode(&mut Decoder::new(&bytes)), Ok(s.clone()));
        let row = s.row_from_json(&json!({"ts": 1, "symbol": "X", "price": 1.5})).unwrap();
        let archived = rkyv::to_bytes::<rkyv::rancor::Error>(&row).unwrap();
        let back: Row = rkyv::from_bytes::<Row, rkyv::rancor::Error>(&archived).unwrap();
        assert_eq!(back, row);
    }
}
