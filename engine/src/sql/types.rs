//! SQL values: the types columns have (Postgres spelling) and the datums expressions
//! compute. A datum borrows text and bytes from the row it came from (an archived row in
//! a DMA buffer, read in place) and owns only what an expression made.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt::Write;

use crate::record::schema::{ArchivedValue, ColumnType, Value};

/// The type of a column or an expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    Boolean,
    Int,
    BigInt,
    Double,
    Text,
    Bytea,
    Timestamp,
    /// Milliseconds (INTERVAL literals and timestamp differences).
    Interval,
    /// The type of a bare NULL: takes the type of whatever it meets.
    Unknown,
}

impl DataType {
    pub fn from_column(t: ColumnType) -> DataType {
        match t {
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::Int => DataType::Int,
            ColumnType::BigInt => DataType::BigInt,
            ColumnType::Double => DataType::Double,
            ColumnType::Text => DataType::Text,
            ColumnType::Bytea => DataType::Bytea,
            ColumnType::Timestamp => DataType::Timestamp,
        }
    }

    /// The column type a value of this type is stored as (INTERVAL as BIGINT ms).
    pub fn to_column(self) -> ColumnType {
        match self {
            DataType::Boolean => ColumnType::Boolean,
            DataType::Int => ColumnType::Int,
            DataType::BigInt | DataType::Interval => ColumnType::BigInt,
            DataType::Double => ColumnType::Double,
            DataType::Text | DataType::Unknown => ColumnType::Text,
            DataType::Bytea => ColumnType::Bytea,
            DataType::Timestamp => ColumnType::Timestamp,
        }
    }

    /// The Postgres type OID (pg_type.oid) clients see.
    pub fn pg_oid(self) -> u32 {
        match self {
            DataType::Boolean => 16,
            DataType::Int => 23,
            DataType::BigInt => 20,
            DataType::Double => 701,
            DataType::Text | DataType::Unknown => 25,
            DataType::Bytea => 17,
            DataType::Timestamp => 1114,
            DataType::Interval => 1186,
        }
    }

    /// Bytes of the binary wire form (-1: variable).
    pub fn pg_size(self) -> i16 {
        match self {
            DataType::Boolean => 1,
            DataType::Int => 4,
            DataType::BigInt | DataType::Double | DataType::Timestamp => 8,
            DataType::Interval => 16,
            _ => -1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DataType::Boolean => "BOOLEAN",
            DataType::Int => "INT",
            DataType::BigInt => "BIGINT",
            DataType::Double => "DOUBLE PRECISION",
            DataType::Text => "TEXT",
            DataType::Bytea => "BYTEA",
            DataType::Timestamp => "TIMESTAMP",
            DataType::Interval => "INTERVAL",
            DataType::Unknown => "UNKNOWN",
        }
    }

    pub fn is_numeric(self) -> bool {
        matches!(self, DataType::Int | DataType::BigInt | DataType::Double)
    }

    pub fn is_integer(self) -> bool {
        matches!(self, DataType::Int | DataType::BigInt)
    }
}

/// A value computed by an expression. Integers of every width are `Int(i64)`; the
/// expression's `DataType` says which SQL type it is.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Datum<'a> {
    #[default]
    Null,
    Bool(bool),
    Int(i64),
    Double(f64),
    Text(Cow<'a, str>),
    Bytes(Cow<'a, [u8]>),
    /// Milliseconds since the Unix epoch.
    Timestamp(i64),
    /// Milliseconds.
    Interval(i64),
}

/// A datum that borrows nothing.
pub type OwnedDatum = Datum<'static>;

impl<'a> Datum<'a> {
    pub fn is_null(&self) -> bool {
        matches!(self, Datum::Null)
    }

    pub fn into_owned(self) -> OwnedDatum {
        match self {
            Datum::Null => Datum::Null,
            Datum::Bool(b) => Datum::Bool(b),
            Datum::Int(i) => Datum::Int(i),
            Datum::Double(d) => Datum::Double(d),
            Datum::Text(t) => Datum::Text(Cow::Owned(t.into_owned())),
            Datum::Bytes(b) => Datum::Bytes(Cow::Owned(b.into_owned())),
            Datum::Timestamp(t) => Datum::Timestamp(t),
            Datum::Interval(i) => Datum::Interval(i),
        }
    }

    /// A borrowed view of this datum (cheap: text and bytes are not copied).
    pub fn borrowed(&self) -> Datum<'_> {
        match self {
            Datum::Text(t) => Datum::Text(Cow::Borrowed(t)),
            Datum::Bytes(b) => Datum::Bytes(Cow::Borrowed(b)),
            other => other.shallow(),
        }
    }

    fn shallow<'b>(&self) -> Datum<'b> {
        match self {
            Datum::Null => Datum::Null,
            Datum::Bool(b) => Datum::Bool(*b),
            Datum::Int(i) => Datum::Int(*i),
            Datum::Double(d) => Datum::Double(*d),
            Datum::Timestamp(t) => Datum::Timestamp(*t),
            Datum::Interval(i) => Datum::Interval(*i),
            Datum::Text(t) => Datum::Text(Cow::Owned(t.to_string())),
            Datum::Bytes(b) => Datum::Bytes(Cow::Owned(b.to_vec())),
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Datum::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Datum::Int(i) | Datum::Timestamp(i) | Datum::Interval(i) => Some(*i),
            Datum::Double(d) if d.is_finite() => Some(*d as i64),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Datum::Int(i) => Some(*i as f64),
            Datum::Double(d) => Some(*d),
            Datum::Timestamp(t) | Datum::Interval(t) => Some(*t as f64),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Datum::Text(t) => Some(t),
            _ => None,
        }
    }

    /// Reads a stored value (an archived row's cell) in place.
    pub fn from_archived(v: &'a ArchivedValue) -> Datum<'a> {
        match v {
            ArchivedValue::Null => Datum::Null,
            ArchivedValue::Bool(b) => Datum::Bool(*b),
            ArchivedValue::Int(i) => Datum::Int(i.to_native() as i64),
            ArchivedValue::BigInt(i) => Datum::Int(i.to_native()),
            ArchivedValue::Double(d) => Datum::Double(d.to_native()),
            ArchivedValue::Text(s) => Datum::Text(Cow::Borrowed(s.as_str())),
            ArchivedValue::Bytes(b) => Datum::Bytes(Cow::Borrowed(b.as_slice())),
            ArchivedValue::Timestamp(t) => Datum::Timestamp(t.to_native()),
        }
    }

    /// Reads an owned stored value.
    pub fn from_value(v: &'a Value) -> Datum<'a> {
        match v {
            Value::Null => Datum::Null,
            Value::Bool(b) => Datum::Bool(*b),
            Value::Int(i) => Datum::Int(*i as i64),
            Value::BigInt(i) => Datum::Int(*i),
            Value::Double(d) => Datum::Double(*d),
            Value::Text(s) => Datum::Text(Cow::Borrowed(s)),
            Value::Bytes(b) => Datum::Bytes(Cow::Borrowed(b)),
            Value::Timestamp(t) => Datum::Timestamp(*t),
        }
    }

    /// The stored value of this datum as a column of `ty` (None if it does not fit).
    pub fn to_value(&self, ty: DataType) -> Option<Value> {
        Some(match (self, ty) {
            (Datum::Null, _) => Value::Null,
            (Datum::Bool(b), DataType::Boolean) => Value::Bool(*b),
            (Datum::Int(i), DataType::Int) => Value::Int(i32::try_from(*i).ok()?),
            (Datum::Int(i), DataType::BigInt) => Value::BigInt(*i),
            (Datum::Interval(i), DataType::Interval | DataType::BigInt) => Value::BigInt(*i),
            (Datum::Int(i), DataType::Double) => Value::Double(*i as f64),
            (Datum::Double(d), DataType::Double) => Value::Double(*d),
            (Datum::Text(s), DataType::Text | DataType::Unknown) => Value::Text(s.to_string()),
            (Datum::Bytes(b), DataType::Bytea) => Value::Bytes(b.to_vec()),
            (Datum::Timestamp(t), DataType::Timestamp) => Value::Timestamp(*t),
            (Datum::Int(t), DataType::Timestamp) => Value::Timestamp(*t),
            _ => return None,
        })
    }

    /// Postgres' text format of the value (what psql shows); `None` for NULL.
    pub fn to_pg_text(&self) -> Option<String> {
        Some(match self {
            Datum::Null => return None,
            Datum::Bool(b) => (if *b { "t" } else { "f" }).to_string(),
            Datum::Int(i) => i.to_string(),
            Datum::Double(d) => format_double(*d),
            Datum::Text(s) => s.to_string(),
            Datum::Bytes(b) => {
                let mut s = String::with_capacity(2 + b.len() * 2);
                s.push_str("\\x");
                for x in b.iter() {
                    let _ = write!(s, "{x:02x}");
                }
                s
            }
            Datum::Timestamp(t) => format_timestamp(*t),
            Datum::Interval(ms) => format_interval(*ms),
        })
    }

    /// The value as JSON (timestamps as RFC 3339, bytes as Postgres hex).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Datum::Null => J::Null,
            Datum::Bool(b) => J::Bool(*b),
            Datum::Int(i) => J::from(*i),
            Datum::Double(d) => serde_json::Number::from_f64(*d).map_or(J::Null, J::Number),
            Datum::Interval(ms) => J::String(format_interval(*ms)),
            Datum::Timestamp(t) => crate::record::schema::value_to_json(&Value::Timestamp(*t)),
            other => other.to_pg_text().map_or(J::Null, J::String),
        }
    }

    /// SQL comparison: `None` when either side is NULL (or the types do not compare).
    pub fn sql_cmp(&self, other: &Datum<'_>) -> Option<Ordering> {
        match (self, other) {
            (Datum::Null, _) | (_, Datum::Null) => None,
            (Datum::Bool(a), Datum::Bool(b)) => Some(a.cmp(b)),
            (Datum::Int(a), Datum::Int(b)) => Some(a.cmp(b)),
            (Datum::Timestamp(a), Datum::Timestamp(b)) | (Datum::Interval(a), Datum::Interval(b)) => Some(a.cmp(b)),
            (Datum::Timestamp(a), Datum::Int(b)) | (Datum::Int(a), Datum::Timestamp(b)) => Some(a.cmp(b)),
            (Datum::Text(a), Datum::Text(b)) => Some(a.as_ref().cmp(b.as_ref())),
            (Datum::Bytes(a), Datum::Bytes(b)) => Some(a.as_ref().cmp(b.as_ref())),
            // Postgres's order of doubles: NaN equals NaN and is above every number, so
            // min/max and comparisons do not depend on the order NaNs arrive in.
            (a, b) => {
                let (x, y) = (a.as_f64()?, b.as_f64()?);
                match (x.is_nan(), y.is_nan()) {
                    (true, true) => Some(Ordering::Equal),
                    (true, false) => Some(Ordering::Greater),
                    (false, true) => Some(Ordering::Less),
                    (false, false) => x.partial_cmp(&y),
                }
            }
        }
    }

    /// A total order for sorting: NULLs last, then by value (NaN after numbers).
    pub fn sort_cmp(&self, other: &Datum<'_>) -> Ordering {
        match (self.is_null(), other.is_null()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            _ => self.sql_cmp(other).unwrap_or_else(|| match (self, other) {
                (Datum::Double(a), Datum::Double(b)) => a.total_cmp(b),
                _ => Ordering::Equal,
            }),
        }
    }

    /// Appends a self-delimiting encoding of the datum to `out`: equal datums (of one
    /// type) encode equal, so encodings serve as hash keys for groups and joins.
    pub fn encode_key(&self, out: &mut Vec<u8>) {
        match self {
            Datum::Null => out.push(0),
            Datum::Bool(b) => {
                out.push(1);
                out.push(*b as u8);
            }
            Datum::Int(i) => {
                out.push(2);
                out.extend_from_slice(&i.to_le_bytes());
            }
            Datum::Double(d) => {
                out.push(3);
                // -0.0 and 0.0 group together, as SQL compares them equal.
                let d = if *d == 0.0 { 0.0 } else { *d };
                out.extend_from_slice(&d.to_bits().to_le_bytes());
            }
            Datum::Text(s) => {
                out.push(4);
                out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            Datum::Bytes(b) => {
                out.push(5);
                out.extend_from_slice(&(b.len() as u32).to_le_bytes());
                out.extend_from_slice(b);
            }
            Datum::Timestamp(t) => {
                out.push(6);
                out.extend_from_slice(&t.to_le_bytes());
            }
            Datum::Interval(t) => {
                out.push(7);
                out.extend_from_slice(&t.to_le_bytes());
            }
        }
    }

    /// Decodes one datum written by [`Self::encode_key`]; returns it and the bytes used.
    pub fn decode_key(b: &[u8]) -> Option<(OwnedDatum, usize)> {
        let tag = *b.first()?;
        let fixed = |n: usize| b.get(1..1 + n);
        let i64_at = || fixed(8).map(|s| i64::from_le_bytes(s.try_into().unwrap_or([0; 8])));
        Some(match tag {
            0 => (Datum::Null, 1),
            1 => (Datum::Bool(*b.get(1)? != 0), 2),
            2 => (Datum::Int(i64_at()?), 9),
            3 => (Datum::Double(f64::from_bits(i64_at()? as u64)), 9),
            4 | 5 => {
                let len = u32::from_le_bytes(fixed(4)?.try_into().ok()?) as usize;
                let body = b.get(5..5 + len)?;
                let d = if tag == 4 {
                    Datum::Text(Cow::Owned(std::str::from_utf8(body).ok()?.to_string()))
                } else {
                    Datum::Bytes(Cow::Owned(body.to_vec()))
                };
                (d, 5 + len)
            }
            6 => (Datum::Timestamp(i64_at()?), 9),
            7 => (Datum::Interval(i64_at()?), 9),
            _ => return None,
        })
    }
}

/// Decodes a whole key of `n` datums.
pub fn decode_key(mut b: &[u8]) -> Option<Vec<OwnedDatum>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let (d, used) = Datum::decode_key(b)?;
        out.push(d);
        b = &b[used..];
    }
    Some(out)
}

/// Postgres' float8 text output: shortest round-trip digits, `Infinity`, `NaN`.
pub fn format_double(d: f64) -> String {
    if d.is_nan() {
        "NaN".into()
    } else if d.is_infinite() {
        if d > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        let s = format!("{d}");
        s
    }
}

/// `YYYY-MM-DD HH:MM:SS[.fff]` (Postgres' TIMESTAMP text output, UTC).
pub fn format_timestamp(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut s = format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", sod / 3600, (sod / 60) % 60, sod % 60);
    if millis != 0 {
        let _ = write!(s, ".{millis:03}");
        while s.ends_with('0') {
            s.pop();
        }
    }
    s
}

/// `[N days ]HH:MM:SS[.fff]` (Postgres' INTERVAL text output for day-time intervals).
pub fn format_interval(ms: i64) -> String {
    let neg = ms < 0;
    let ms = ms.unsigned_abs();
    let days = ms / 86_400_000;
    let rest = ms % 86_400_000;
    let (h, m, s, f) = (rest / 3_600_000, (rest / 60_000) % 60, (rest / 1000) % 60, rest % 1000);
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if days > 0 {
        let _ = write!(out, "{days} day{} ", if days == 1 { "" } else { "s" });
    }
    let _ = write!(out, "{h:02}:{m:02}:{s:02}");
    if f != 0 {
        let _ = write!(out, ".{f:03}");
    }
    out
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) to days since 1970-01-01.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses a timestamp literal: RFC 3339, `YYYY-MM-DD HH:MM:SS[.fff]`, or a date.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Some(match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => d.as_millis() as i64,
            Err(e) => -(e.duration().as_millis() as i64),
        });
    }
    // A bare date.
    let parts: Vec<&str> = s.split('-').collect();
    if parts.len() == 3 {
        let (y, m, d) = (parts[0].parse().ok()?, parts[1].parse().ok()?, parts[2].parse().ok()?);
        // Postgres's range of years: beyond it the milliseconds would not fit an i64.
        if (1..=12).contains(&m) && (1..=31).contains(&d) && (-4713..=294_276).contains(&y) {
            return Some(days_from_civil(y, m, d) * 86_400_000);
        }
    }
    None
}

/// Parses an interval: `'1' SECOND` style (value and unit given apart) or text such as
/// `'5 minutes'`, `'1 hour 30 minutes'`, `'00:00:05'`, `'250 ms'`. Milliseconds.
pub fn parse_interval(value: &str, unit: Option<&str>) -> Option<i64> {
    let unit_ms = |u: &str| -> Option<f64> {
        Some(match u.trim().to_ascii_lowercase().trim_end_matches('s') {
            "millisecond" | "m" | "msec" | "millisec" => 1.0,
            "ms" => 1.0,
            "second" | "sec" | "" => 1000.0,
            "minute" | "min" => 60_000.0,
            "hour" | "h" | "hr" => 3_600_000.0,
            "day" | "d" => 86_400_000.0,
            "week" | "w" => 604_800_000.0,
            _ => return None,
        })
    };
    if let Some(u) = unit {
        let v: f64 = value.trim().parse().ok()?;
        return Some((v * unit_ms(u)?).round() as i64);
    }
    let text = value.trim();
    if text.contains(':') {
        let parts: Vec<&str> = text.split(':').collect();
        let mut ms = 0f64;
        for (p, scale) in parts.iter().rev().zip([1000.0, 60_000.0, 3_600_000.0]) {
            ms += p.parse::<f64>().ok()? * scale;
        }
        return Some(ms.round() as i64);
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.is_empty() {
        return None;
    }
    let mut total = 0f64;
    let mut i = 0;
    while i < words.len() {
        // "5min" as well as "5 min".
        let w = words[i];
        let split = w.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(w.len());
        let (num, rest) = w.split_at(split);
        let v: f64 = num.parse().ok()?;
        let u = if rest.is_empty() {
            i += 1;
            *words.get(i)?
        } else {
            rest
        };
        total += v * unit_ms(u)?;
        i += 1;
    }
    Some(total.round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_distinguish_types() {
        let ds = [
            Datum::Null,
            Datum::Bool(true),
            Datum::Int(-7),
            Datum::Double(1.5),
            Datum::Text(Cow::Borrowed("héllo")),
            Datum::Bytes(Cow::Borrowed(&[1, 2])),
            Datum::Timestamp(5),
        ];
        let mut k = Vec::new();
        for d in &ds {
            d.encode_key(&mut k);
        }
        let back = decode_key(&k).unwrap();
        assert_eq!(back, ds.iter().map(|d| d.clone().into_owned()).collect::<Vec<_>>());
        let (mut a, mut b) = (Vec::new(), Vec::new());
        Datum::Int(5).encode_key(&mut a);
        Datum::Timestamp(5).encode_key(&mut b);
        assert_ne!(a, b);
    }

    #[test]
    fn text_formats_match_postgres() {
        assert_eq!(format_timestamp(0), "1970-01-01 00:00:00");
        assert_eq!(format_timestamp(1_767_323_045_006), "2026-01-02 03:04:05.006");
        assert_eq!(format_timestamp(-1), "1969-12-31 23:59:59.999");
        assert_eq!(format_interval(90_061_500), "1 day 01:01:01.500");
        assert_eq!(parse_timestamp("2026-01-02 03:04:05.006"), Some(1_767_323_045_006));
        assert_eq!(parse_timestamp("2026-01-02"), Some(1_767_312_000_000));
        assert_eq!(parse_timestamp("300000000-01-01"), None, "past Postgres's years: an i64 of ms overflows");
        for unit in ["second", "week", "month", "year"] {
            assert_eq!(crate::sql::expr::date_trunc(unit, i64::MIN), None, "{unit}");
            assert!(
                crate::sql::expr::date_trunc(unit, i64::MAX).is_some_and(|t| t > i64::MAX - 400 * 86_400_000 * 366),
                "{unit}"
            );
        }
        assert_eq!(parse_interval("1", Some("SECOND")), Some(1000));
        assert_eq!(parse_interval("5 minutes", None), Some(300_000));
        assert_eq!(parse_interval("1 hour 30 minutes", None), Some(5_400_000));
        assert_eq!(parse_interval("250ms", None), Some(250));
        assert_eq!(parse_interval("00:01:30", None), Some(90_000));
        assert_eq!(Datum::Double(2.0).to_pg_text().unwrap(), "2");
        assert_eq!(Datum::Bytes(Cow::Borrowed(&[0xab])).to_pg_text().unwrap(), "\\xab");
    }
}
