//! Values on the Postgres wire: results in text or binary format, and parameters
//! arriving in either, by type OID.

use std::borrow::Cow;

use bytes::{BufMut, BytesMut};

use crate::sql::error::{sqlstate, SqlError};
use crate::sql::lower::literal_as;
use crate::sql::types::{DataType, Datum, OwnedDatum};

/// Microseconds between the Unix epoch and Postgres' epoch (2000-01-01).
const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;

/// The SQL type a parameter's declared OID stands for (`None`: unspecified, inferred).
pub fn type_of_oid(oid: u32) -> Option<DataType> {
    Some(match oid {
        16 => DataType::Boolean,
        21 | 23 => DataType::Int,
        20 => DataType::BigInt,
        700 | 701 | 1700 => DataType::Double,
        25 | 1043 | 1042 | 19 => DataType::Text,
        17 => DataType::Bytea,
        1114 | 1184 | 1082 => DataType::Timestamp,
        1186 => DataType::Interval,
        _ => return None,
    })
}

/// Appends one column of a DataRow: length, then the value in `binary` or text format.
pub fn put_value(out: &mut BytesMut, v: &Datum<'_>, ty: DataType, binary: bool) {
    if v.is_null() {
        out.put_i32(-1);
        return;
    }
    if !binary {
        let text = v.to_pg_text().unwrap_or_default();
        out.put_i32(text.len() as i32);
        out.put_slice(text.as_bytes());
        return;
    }
    match (v, ty) {
        (Datum::Bool(b), _) => {
            out.put_i32(1);
            out.put_u8(*b as u8);
        }
        (Datum::Int(i), DataType::Int) => {
            out.put_i32(4);
            out.put_i32(*i as i32);
        }
        (Datum::Int(i), _) => {
            out.put_i32(8);
            out.put_i64(*i);
        }
        (Datum::Double(d), _) => {
            out.put_i32(8);
            out.put_f64(*d);
        }
        (Datum::Timestamp(ms), _) => {
            out.put_i32(8);
            out.put_i64(ms.saturating_mul(1000).saturating_sub(PG_EPOCH_OFFSET_US));
        }
        (Datum::Interval(ms), _) => {
            out.put_i32(16);
            out.put_i64(ms.saturating_mul(1000));
            out.put_i32(0);
            out.put_i32(0);
        }
        (Datum::Text(s), _) => {
            out.put_i32(s.len() as i32);
            out.put_slice(s.as_bytes());
        }
        (Datum::Bytes(b), _) => {
            out.put_i32(b.len() as i32);
            out.put_slice(b);
        }
        (Datum::Null, _) => out.put_i32(-1),
    }
}

fn bad_param(i: usize, why: &str) -> SqlError {
    SqlError::new(sqlstate::INVALID_TEXT_REPRESENTATION, format!("parameter ${}: {why}", i + 1))
}

/// Decodes parameter `i`: its bytes in `binary` or text format, sent as OID `oid`, wanted
/// as `ty`.
pub fn decode_param(
    i: usize,
    bytes: Option<&[u8]>,
    binary: bool,
    oid: u32,
    ty: DataType,
) -> Result<OwnedDatum, SqlError> {
    let Some(b) = bytes else { return Ok(Datum::Null) };
    let value: OwnedDatum = if !binary {
        let text = std::str::from_utf8(b).map_err(|_| bad_param(i, "not UTF-8"))?;
        return literal_as(text, if ty == DataType::Unknown { DataType::Text } else { ty });
    } else {
        let int = |n: usize| -> Result<i64, SqlError> {
            match (n, b.len()) {
                (2, 2) => Ok(i16::from_be_bytes([b[0], b[1]]) as i64),
                (4, 4) => Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]) as i64),
                (8, 8) => Ok(i64::from_be_bytes(b.try_into().unwrap_or([0; 8]))),
                _ => Err(bad_param(i, "wrong binary length")),
            }
        };
        // Undeclared (0 or unknown): the client encoded it as the type we described.
        let oid = if oid == 0 || oid == 705 { ty.pg_oid() } else { oid };
        match oid {
            16 if b.len() == 1 => Datum::Bool(b[0] != 0),
            21 => Datum::Int(int(2)?),
            23 => Datum::Int(int(4)?),
            20 => Datum::Int(int(8)?),
            700 if b.len() == 4 => Datum::Double(f32::from_be_bytes([b[0], b[1], b[2], b[3]]) as f64),
            701 => Datum::Double(f64::from_bits(int(8)? as u64)),
            // Checked: 'infinity' is i64::MAX on the wire.
            1114 | 1184 => Datum::Timestamp(
                int(8)?
                    .checked_add(PG_EPOCH_OFFSET_US)
                    .ok_or_else(|| bad_param(i, "timestamp out of range"))?
                    .div_euclid(1000),
            ),
            1082 => Datum::Timestamp(
                int(4)?
                    .checked_mul(86_400_000_000)
                    .and_then(|us| us.checked_add(PG_EPOCH_OFFSET_US))
                    .ok_or_else(|| bad_param(i, "date out of range"))?
                    / 1000,
            ),
            17 => Datum::Bytes(Cow::Owned(b.to_vec())),
            25 | 1043 | 1042 | 19 | 0 | 705 => {
                let text = std::str::from_utf8(b).map_err(|_| bad_param(i, "not UTF-8"))?;
                return literal_as(text, if ty == DataType::Unknown { DataType::Text } else { ty });
            }
            other => return Err(bad_param(i, &format!("binary format of type OID {other} is not supported"))),
        }
    };
    let cast = crate::sql::expr::cast(value.clone(), ty).into_owned();
    if cast.is_null() {
        return Err(bad_param(i, &format!("cannot be used as {}", ty.name())));
    }
    Ok(cast)
}
