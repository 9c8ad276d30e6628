//! Aggregate functions as mergeable accumulators: the building block of every grouping
//! operator.
//!
//! An accumulator folds values in (`update`), merges with another accumulator of the
//! same function (`merge`: how partial aggregates computed on the shard that read the
//! records combine on the shard that owns the group), and yields its result. Every one
//! is order-insensitive (first/last order by event time, then partition and offset), so a
//! view built live and one rebuilt by replay agree whatever the interleaving.

use std::collections::BTreeSet;

use sketches_ddsketch::{Config as SketchConfig, DDSketch};

use crate::sql::types::{DataType, Datum, OwnedDatum};
use crate::wire::{Decoder, Encoder, WireError};

/// Registers of the HyperLogLog (2^12: about 1.6% standard error).
const HLL_PRECISION: u32 = 12;
/// Relative accuracy of approx_percentile (DDSketch).
pub const SKETCH_RELATIVE_ACCURACY: f64 = 0.01;
/// Distinct values count(DISTINCT) keeps per group before refusing more (state bound).
pub const DISTINCT_VALUES_MAX: usize = 1_000_000;

/// Which aggregate function.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AggFunc {
    CountStar,
    Count,
    Sum,
    Min,
    Max,
    Avg,
    FirstValue,
    LastValue,
    CountDistinct,
    ApproxCountDistinct,
    /// The q-quantile (0..=1).
    ApproxPercentile(f64),
}

impl AggFunc {
    /// The SQL type of the result for an argument of type `arg`.
    pub fn result_type(self, arg: DataType) -> DataType {
        match self {
            AggFunc::CountStar | AggFunc::Count | AggFunc::CountDistinct | AggFunc::ApproxCountDistinct => {
                DataType::BigInt
            }
            AggFunc::Sum if arg.is_integer() => DataType::BigInt,
            AggFunc::Sum | AggFunc::Avg | AggFunc::ApproxPercentile(_) => DataType::Double,
            AggFunc::Min | AggFunc::Max | AggFunc::FirstValue | AggFunc::LastValue => arg,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            AggFunc::CountStar | AggFunc::Count => "count",
            AggFunc::Sum => "sum",
            AggFunc::Min => "min",
            AggFunc::Max => "max",
            AggFunc::Avg => "avg",
            AggFunc::FirstValue => "first_value",
            AggFunc::LastValue => "last_value",
            AggFunc::CountDistinct => "count_distinct",
            AggFunc::ApproxCountDistinct => "approx_count_distinct",
            AggFunc::ApproxPercentile(_) => "approx_percentile",
        }
    }

    pub fn new_acc(self) -> Acc {
        match self {
            AggFunc::CountStar | AggFunc::Count => Acc::Count(0),
            AggFunc::Sum => Acc::Sum { int: 0, float: 0.0, is_float: false, any: false },
            AggFunc::Min => Acc::Min(None),
            AggFunc::Max => Acc::Max(None),
            AggFunc::Avg => Acc::Avg { sum: 0.0, count: 0 },
            AggFunc::FirstValue => Acc::First(None),
            AggFunc::LastValue => Acc::Last(None),
            AggFunc::CountDistinct => Acc::Distinct(BTreeSet::new()),
            AggFunc::ApproxCountDistinct => Acc::Hll(Box::default()),
            AggFunc::ApproxPercentile(_) => Acc::Sketch(Box::new(Sketch(DDSketch::new(sketch_config())))),
        }
    }
}

fn sketch_config() -> SketchConfig {
    SketchConfig::new(SKETCH_RELATIVE_ACCURACY, 4096, 1e-9)
}

/// The serialized layout of `DDSketch` (sketches-ddsketch 0.4 with serde), read to check a
/// stored sketch before the crate trusts it: its methods index bins by the stored keys.
#[derive(serde::Deserialize, serde::Serialize, PartialEq, Clone)]
struct SketchImage {
    config: (u32, f64, f64, f64, i32),
    store: StoreImage,
    negative_store: StoreImage,
    min: f64,
    max: f64,
    sum: f64,
    zero_count: u64,
}

#[derive(serde::Deserialize, serde::Serialize, PartialEq, Clone)]
struct StoreImage {
    bins: Vec<u64>,
    count: u64,
    min_key: i32,
    max_key: i32,
    offset: i32,
    bin_limit: usize,
    is_collapsed: bool,
}

/// Bins keys of any finite f64 lie well within this (|ln x / ln gamma| < 40,000).
const SKETCH_KEY_ABS_MAX: i64 = 1 << 20;

impl StoreImage {
    /// What the store's methods assume: counts that add up, and every key of the range
    /// `min_key..=max_key` inside `bins` at `key - offset`.
    fn is_consistent(&self, bin_limit: usize) -> bool {
        let keys_ok =
            [self.min_key, self.max_key, self.offset].iter().all(|k| i64::from(*k).abs() <= SKETCH_KEY_ABS_MAX);
        let total = self.bins.iter().try_fold(0u64, |t, c| t.checked_add(*c));
        if self.bin_limit != bin_limit || self.bins.len() > bin_limit || total != Some(self.count) || !keys_ok {
            return false;
        }
        if self.bins.is_empty() {
            return self.count == 0 && self.min_key == i32::MAX && self.max_key == i32::MIN;
        }
        let (lo, hi, offset) = (i64::from(self.min_key), i64::from(self.max_key), i64::from(self.offset));
        offset <= lo && lo <= hi && hi - offset < self.bins.len() as i64
    }
}

/// A percentile sketch from state bytes, checked: its configuration must be this build's
/// and its stores consistent, or a later add or quantile would index outside its bins.
fn decode_sketch(bytes: &[u8]) -> Result<DDSketch, WireError> {
    // This build's empty sketch, as stored: the configuration and bin limit to expect.
    static FRESH: std::sync::LazyLock<Option<SketchImage>> = std::sync::LazyLock::new(|| {
        bincode::deserialize(&bincode::serialize(&DDSketch::new(sketch_config())).ok()?).ok()
    });
    let bad = WireError::Invalid("percentile sketch");
    let fresh = FRESH.as_ref().ok_or(bad.clone())?;
    let image: SketchImage = bincode::deserialize(bytes).map_err(|_| bad.clone())?;
    let bin_limit = fresh.store.bin_limit;
    let counts =
        image.store.count.checked_add(image.negative_store.count).and_then(|c| c.checked_add(image.zero_count));
    let config_ok = image.config.0 == fresh.config.0
        && [(image.config.1, fresh.config.1), (image.config.2, fresh.config.2), (image.config.3, fresh.config.3)]
            .iter()
            .all(|(a, b)| a.to_bits() == b.to_bits())
        && image.config.4 == fresh.config.4;
    if !config_ok
        || counts.is_none()
        || !image.store.is_consistent(bin_limit)
        || !image.negative_store.is_consistent(bin_limit)
    {
        return Err(bad);
    }
    bincode::deserialize(bytes).map_err(|_| bad)
}

/// Where a value sits in the stream, to order first/last deterministically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub ts: i64,
    pub partition: u32,
    pub offset: u64,
}

/// The state of one aggregate of one group.
#[derive(Debug, Clone)]
pub enum Acc {
    Count(i64),
    /// Integer sums stay exact until they overflow, then continue in floating point.
    Sum {
        int: i64,
        float: f64,
        is_float: bool,
        any: bool,
    },
    Min(Option<OwnedDatum>),
    Max(Option<OwnedDatum>),
    Avg {
        sum: f64,
        count: i64,
    },
    First(Option<(Position, OwnedDatum)>),
    Last(Option<(Position, OwnedDatum)>),
    /// Encoded distinct values (`Datum::encode_key`).
    Distinct(BTreeSet<Vec<u8>>),
    Hll(Box<Hll>),
    Sketch(Box<Sketch>),
}

/// DDSketch, with the `Debug` the accumulator needs.
#[derive(Clone)]
pub struct Sketch(pub DDSketch);

impl std::fmt::Debug for Sketch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sketch(n={})", self.0.count())
    }
}

impl Acc {
    /// Folds one value in. `CountStar` counts rows (its value is ignored); every other
    /// function skips NULLs, as SQL does.
    pub fn update(&mut self, func: AggFunc, v: &Datum<'_>, pos: Position) {
        if func == AggFunc::CountStar {
            if let Acc::Count(n) = self {
                *n += 1;
            }
            return;
        }
        if v.is_null() {
            return;
        }
        match self {
            Acc::Count(n) => *n += 1,
            Acc::Sum { int, float, is_float, any } => {
                *any = true;
                match v {
                    Datum::Int(i) if !*is_float => match int.checked_add(*i) {
                        Some(s) => *int = s,
                        None => {
                            *is_float = true;
                            *float = *int as f64 + *i as f64;
                        }
                    },
                    other => {
                        if !*is_float {
                            *is_float = true;
                            *float = *int as f64;
                        }
                        *float += other.as_f64().unwrap_or(0.0);
                    }
                }
            }
            Acc::Min(cur) => {
                if cur.as_ref().is_none_or(|c| v.sql_cmp(c) == Some(std::cmp::Ordering::Less)) {
                    *cur = Some(v.clone().into_owned());
                }
            }
            Acc::Max(cur) => {
                if cur.as_ref().is_none_or(|c| v.sql_cmp(c) == Some(std::cmp::Ordering::Greater)) {
                    *cur = Some(v.clone().into_owned());
                }
            }
            Acc::Avg { sum, count } => {
                *sum += v.as_f64().unwrap_or(0.0);
                *count += 1;
            }
            Acc::First(cur) => {
                if cur.as_ref().is_none_or(|(p, _)| pos < *p) {
                    *cur = Some((pos, v.clone().into_owned()));
                }
            }
            Acc::Last(cur) => {
                if cur.as_ref().is_none_or(|(p, _)| pos > *p) {
                    *cur = Some((pos, v.clone().into_owned()));
                }
            }
            Acc::Distinct(set) => {
                let mut k = Vec::new();
                v.encode_key(&mut k);
                if set.len() < DISTINCT_VALUES_MAX || set.contains(&k) {
                    set.insert(k);
                }
            }
            Acc::Hll(h) => {
                let mut k = Vec::with_capacity(16);
                v.encode_key(&mut k);
                h.insert(&k);
            }
            Acc::Sketch(s) => {
                // The sketch's bins overflow on an infinity (a panic in ddsketch); NaN has no
                // rank. Neither is a value a percentile can be taken of: skipped as NULL is.
                if let Some(x) = v.as_f64().filter(|x| x.is_finite()) {
                    s.0.add(x);
                }
            }
        }
    }

    /// `update` with a non-NULL integer (for count(*), any value), without a datum: the
    /// common cases of the archived fold, the rest through `update`.
    #[inline]
    pub fn update_int(&mut self, func: AggFunc, v: i64, pos: Position) {
        match self {
            Acc::Count(n) => *n += 1,
            Acc::Sum { int, is_float: false, any, .. } => match int.checked_add(v) {
                Some(s) => {
                    *int = s;
                    *any = true;
                }
                None => self.update(func, &Datum::Int(v), pos),
            },
            _ => self.update(func, &Datum::Int(v), pos),
        }
    }

    /// Merges another accumulator of the same function into this one.
    pub fn merge(&mut self, other: &Acc) {
        match (self, other) {
            // Saturating: counts come from state files too, and 2^63 events never will.
            (Acc::Count(a), Acc::Count(b)) => *a = a.saturating_add(*b),
            (Acc::Sum { int, float, is_float, any }, Acc::Sum { int: i2, float: f2, is_float: fl2, any: any2 }) => {
                *any |= *any2;
                if !*is_float && !*fl2 {
                    match int.checked_add(*i2) {
                        Some(s) => *int = s,
                        None => {
                            *is_float = true;
                            *float = *int as f64 + *i2 as f64;
                        }
                    }
                } else {
                    let a = if *is_float { *float } else { *int as f64 };
                    let b = if *fl2 { *f2 } else { *i2 as f64 };
                    *is_float = true;
                    *float = a + b;
                }
            }
            (Acc::Min(a), Acc::Min(Some(b)))
                if a.as_ref().is_none_or(|c| b.sql_cmp(c) == Some(std::cmp::Ordering::Less)) =>
            {
                *a = Some(b.clone());
            }
            (Acc::Max(a), Acc::Max(Some(b)))
                if a.as_ref().is_none_or(|c| b.sql_cmp(c) == Some(std::cmp::Ordering::Greater)) =>
            {
                *a = Some(b.clone());
            }
            (Acc::Avg { sum, count }, Acc::Avg { sum: s2, count: c2 }) => {
                *sum += s2;
                *count = count.saturating_add(*c2);
            }
            (Acc::First(a), Acc::First(Some((p, v)))) if a.as_ref().is_none_or(|(q, _)| p < q) => {
                *a = Some((*p, v.clone()));
            }
            (Acc::Last(a), Acc::Last(Some((p, v)))) if a.as_ref().is_none_or(|(q, _)| p > q) => {
                *a = Some((*p, v.clone()));
            }
            (Acc::Distinct(a), Acc::Distinct(b)) => {
                for k in b {
                    if a.len() >= DISTINCT_VALUES_MAX {
                        break;
                    }
                    a.insert(k.clone());
                }
            }
            (Acc::Hll(a), Acc::Hll(b)) => a.merge(b),
            (Acc::Sketch(a), Acc::Sketch(b)) => {
                let _ = a.0.merge(&b.0);
            }
            _ => {}
        }
    }

    /// The aggregate's value now, as `ty` (the function's result type for its argument).
    pub fn result(&self, func: AggFunc, ty: DataType) -> OwnedDatum {
        match self {
            Acc::Count(n) => Datum::Int(*n),
            Acc::Sum { any: false, .. } => Datum::Null,
            Acc::Sum { int, float, is_float, .. } => match (ty, *is_float) {
                (DataType::Double, true) => Datum::Double(*float),
                (DataType::Double, false) => Datum::Double(*int as f64),
                // An integer sum past i64: saturate rather than change the column's type.
                (_, true) => Datum::Int(float.clamp(i64::MIN as f64, i64::MAX as f64) as i64),
                (_, false) => Datum::Int(*int),
            },
            Acc::Min(v) | Acc::Max(v) => v.clone().unwrap_or(Datum::Null),
            Acc::Avg { count: 0, .. } => Datum::Null,
            Acc::Avg { sum, count } => Datum::Double(sum / *count as f64),
            Acc::First(v) | Acc::Last(v) => v.as_ref().map_or(Datum::Null, |(_, d)| d.clone()),
            Acc::Distinct(s) => Datum::Int(s.len() as i64),
            Acc::Hll(h) => Datum::Int(h.estimate().round() as i64),
            Acc::Sketch(s) => match func {
                AggFunc::ApproxPercentile(q) => s.0.quantile(q).ok().flatten().map_or(Datum::Null, Datum::Double),
                _ => Datum::Null,
            },
        }
    }

    /// Approximate bytes of state (for the view's state metrics and limit).
    pub fn size_bytes(&self) -> usize {
        let datum = |d: &OwnedDatum| match d {
            Datum::Text(t) => 24 + t.len(),
            Datum::Bytes(b) => 24 + b.len(),
            _ => 16,
        };
        32 + match self {
            Acc::Min(Some(d)) | Acc::Max(Some(d)) => datum(d),
            Acc::First(Some((_, d))) | Acc::Last(Some((_, d))) => 24 + datum(d),
            Acc::Distinct(s) => s.iter().map(|k| k.len() + 48).sum(),
            Acc::Hll(_) => 1 << HLL_PRECISION,
            Acc::Sketch(s) => 16 * s.0.length().min(4096) + 128,
            _ => 0,
        }
    }

    pub fn encode(&self, e: &mut Encoder) {
        match self {
            Acc::Count(n) => {
                e.u8(0).i64(*n);
            }
            Acc::Sum { int, float, is_float, any } => {
                e.u8(1).i64(*int).u64(float.to_bits()).u8(*is_float as u8).u8(*any as u8);
            }
            Acc::Min(v) | Acc::Max(v) => {
                e.u8(if matches!(self, Acc::Min(_)) { 2 } else { 3 });
                encode_opt_datum(e, v.as_ref());
            }
            Acc::Avg { sum, count } => {
                e.u8(4).u64(sum.to_bits()).i64(*count);
            }
            Acc::First(v) | Acc::Last(v) => {
                e.u8(if matches!(self, Acc::First(_)) { 5 } else { 6 });
                match v {
                    None => {
                        e.u8(0);
                    }
                    Some((p, d)) => {
                        e.u8(1).i64(p.ts).u32(p.partition).u64(p.offset);
                        encode_opt_datum(e, Some(d));
                    }
                }
            }
            Acc::Distinct(s) => {
                e.u8(7).u32(s.len() as u32);
                for k in s {
                    e.bytes(k);
                }
            }
            Acc::Hll(h) => {
                e.u8(8).bytes(&h.registers);
            }
            Acc::Sketch(s) => {
                let bytes = bincode::serialize(&s.0).unwrap_or_default();
                e.u8(9).bytes(&bytes);
            }
        }
    }

    pub fn decode(d: &mut Decoder<'_>) -> Result<Acc, WireError> {
        Ok(match d.u8()? {
            0 => Acc::Count(d.i64()?),
            1 => Acc::Sum { int: d.i64()?, float: f64::from_bits(d.u64()?), is_float: d.u8()? != 0, any: d.u8()? != 0 },
            2 => Acc::Min(decode_opt_datum(d)?),
            3 => Acc::Max(decode_opt_datum(d)?),
            4 => Acc::Avg { sum: f64::from_bits(d.u64()?), count: d.i64()? },
            t @ (5 | 6) => {
                let v = match d.u8()? {
                    0 => None,
                    _ => {
                        let p = Position { ts: d.i64()?, partition: d.u32()?, offset: d.u64()? };
                        Some((p, decode_opt_datum(d)?.unwrap_or(Datum::Null)))
                    }
                };
                if t == 5 {
                    Acc::First(v)
                } else {
                    Acc::Last(v)
                }
            }
            7 => {
                let n = d.u32()? as usize;
                if n > DISTINCT_VALUES_MAX {
                    return Err(WireError::Invalid("distinct set size"));
                }
                let mut s = BTreeSet::new();
                for _ in 0..n {
                    s.insert(d.bytes()?.to_vec());
                }
                Acc::Distinct(s)
            }
            8 => {
                let r = d.bytes()?;
                if r.len() != 1 << HLL_PRECISION {
                    return Err(WireError::Invalid("hll registers"));
                }
                Acc::Hll(Box::new(Hll { registers: r.to_vec() }))
            }
            9 => Acc::Sketch(Box::new(Sketch(decode_sketch(d.bytes()?)?))),
            _ => return Err(WireError::Invalid("accumulator kind")),
        })
    }
}

/// A datum on the wire (our own tags: the same as keys).
pub fn encode_opt_datum(e: &mut Encoder, v: Option<&OwnedDatum>) {
    match v {
        None => {
            e.u8(0);
        }
        Some(d) => {
            e.u8(1).bytes_with(|out| d.encode_key(out));
        }
    }
}

pub fn decode_opt_datum(d: &mut Decoder<'_>) -> Result<Option<OwnedDatum>, WireError> {
    match d.u8()? {
        0 => Ok(None),
        _ => {
            let k = d.bytes()?;
            Datum::decode_key(k).map(|(v, _)| Some(v)).ok_or(WireError::Invalid("datum"))
        }
    }
}

/// HyperLogLog with 2^12 one-byte registers and 64-bit hashes (so no large-range
/// correction is needed), small-range linear counting as in the original paper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hll {
    registers: Vec<u8>,
}

impl Default for Hll {
    fn default() -> Self {
        Self::new()
    }
}

impl Hll {
    pub fn new() -> Self {
        Hll { registers: vec![0; 1 << HLL_PRECISION] }
    }

    pub fn insert(&mut self, value: &[u8]) {
        let h = hash64(value);
        let idx = (h >> (64 - HLL_PRECISION)) as usize;
        let rest = (h << HLL_PRECISION) | (1 << (HLL_PRECISION - 1));
        let rank = rest.leading_zeros() as u8 + 1;
        if rank > self.registers[idx] {
            self.registers[idx] = rank;
        }
    }

    pub fn merge(&mut self, other: &Hll) {
        for (a, b) in self.registers.iter_mut().zip(&other.registers) {
            *a = (*a).max(*b);
        }
    }

    pub fn estimate(&self) -> f64 {
        let m = self.registers.len() as f64;
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let sum: f64 = self.registers.iter().map(|&r| 2f64.powi(-(r as i32))).sum();
        let raw = alpha * m * m / sum;
        let zeros = self.registers.iter().filter(|&&r| r == 0).count();
        if raw <= 2.5 * m && zeros > 0 {
            m * (m / zeros as f64).ln()
        } else {
            raw
        }
    }
}

/// A fixed, well-mixed 64-bit hash (xxh3-style avalanche over murmur blocks): the same
/// value hashes the same in every run, so estimates replay identically.
fn hash64(b: &[u8]) -> u64 {
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15 ^ (b.len() as u64).wrapping_mul(0xff51_afd7_ed55_8ccd);
    for chunk in b.chunks(8) {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        let mut k = u64::from_le_bytes(w);
        k = k.wrapping_mul(0x87c3_7b91_1142_53d5);
        k = k.rotate_left(31).wrapping_mul(0x4cf5_ad43_2745_937f);
        h ^= k;
        h = h.rotate_left(27).wrapping_mul(5).wrapping_add(0x52dc_e729);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn pos(ts: i64, offset: u64) -> Position {
        Position { ts, partition: 0, offset }
    }

    #[test]
    fn partials_merge_to_the_whole() {
        let funcs = [
            AggFunc::CountStar,
            AggFunc::Count,
            AggFunc::Sum,
            AggFunc::Min,
            AggFunc::Max,
            AggFunc::Avg,
            AggFunc::FirstValue,
            AggFunc::LastValue,
            AggFunc::CountDistinct,
        ];
        for f in funcs {
            let mut whole = f.new_acc();
            let mut parts = [f.new_acc(), f.new_acc(), f.new_acc()];
            for i in 0..300i64 {
                let v = if i % 17 == 0 { Datum::Null } else { Datum::Int((i * 7919) % 101) };
                let p = pos(1000 - i, i as u64);
                whole.update(f, &v, p);
                parts[(i % 3) as usize].update(f, &v, p);
            }
            let mut merged = f.new_acc();
            for p in parts.iter().rev() {
                merged.merge(p);
            }
            let ty = f.result_type(DataType::BigInt);
            assert_eq!(merged.result(f, ty), whole.result(f, ty), "{f:?}");
            let mut e = Encoder::new();
            merged.encode(&mut e);
            let bytes = e.finish();
            let back = Acc::decode(&mut Decoder::new(&bytes)).unwrap();
            assert_eq!(back.result(f, ty), whole.result(f, ty), "{f:?} round trip");
        }
    }

    #[test]
    fn sums_overflow_into_floats_and_nulls_are_skipped() {
        let mut s = AggFunc::Sum.new_acc();
        assert_eq!(s.result(AggFunc::Sum, DataType::BigInt), Datum::Null);
        s.update(AggFunc::Sum, &Datum::Int(i64::MAX), pos(0, 0));
        s.update(AggFunc::Sum, &Datum::Int(1), pos(0, 1));
        assert_eq!(s.result(AggFunc::Sum, DataType::BigInt), Datum::Int(i64::MAX));
        assert_eq!(s.result(AggFunc::Sum, DataType::Double), Datum::Double(i64::MAX as f64 + 1.0));
        let mut first = AggFunc::FirstValue.new_acc();
        first.update(AggFunc::FirstValue, &Datum::Text(Cow::Borrowed("late")), pos(10, 5));
        first.update(AggFunc::FirstValue, &Datum::Text(Cow::Borrowed("early")), pos(5, 9));
        assert_eq!(first.result(AggFunc::FirstValue, DataType::Text), Datum::Text(Cow::Owned("early".into())));
    }

    #[test]
    fn stored_sketches_are_checked_before_use() {
        let q = AggFunc::ApproxPercentile(0.5);
        let mut p = q.new_acc();
        for i in 1..=1_000 {
            p.update(q, &Datum::Double(i as f64), pos(0, 0));
            p.update(q, &Datum::Double(-(i as f64)), pos(0, 0));
        }
        let mut e = crate::wire::Encoder::new();
        p.encode(&mut e);
        let bytes = e.finish();
        let back = Acc::decode(&mut crate::wire::Decoder::new(&bytes)).expect("a sketch of ours reads back");
        assert_eq!(back.result(q, DataType::Double), p.result(q, DataType::Double));
        let Acc::Sketch(sk) = &p else { panic!("a sketch") };
        let good: SketchImage = bincode::deserialize(&bincode::serialize(&sk.0).unwrap()).unwrap();
        let spoilt = |spoil: fn(&mut SketchImage)| {
            let mut image = good.clone();
            spoil(&mut image);
            image
        };
        let images = [
            // A count without bins: the next add indexed an empty vector.
            spoilt(|i| i.store.bins.clear()),
            spoilt(|i| i.negative_store.max_key += 10_000),
            spoilt(|i| i.store.bin_limit = usize::MAX),
            spoilt(|i| i.config.1 = 1.5),
            spoilt(|i| i.zero_count = u64::MAX),
        ];
        for image in images {
            let mut e = crate::wire::Encoder::new();
            e.u8(9).bytes(&bincode::serialize(&image).unwrap());
            let bytes = e.finish();
            assert!(Acc::decode(&mut crate::wire::Decoder::new(&bytes)).is_err());
        }
    }

    #[test]
    fn sketches_estimate_within_their_bounds() {
        let mut h = AggFunc::ApproxCountDistinct.new_acc();
        let mut parts = [AggFunc::ApproxCountDistinct.new_acc(), AggFunc::ApproxCountDistinct.new_acc()];
        for i in 0..100_000i64 {
            let v = Datum::Int(i % 40_000);
            h.update(AggFunc::ApproxCountDistinct, &v, pos(0, 0));
            parts[(i % 2) as usize].update(AggFunc::ApproxCountDistinct, &v, pos(0, 0));
        }
        let est = h.result(AggFunc::ApproxCountDistinct, DataType::BigInt).as_i64().unwrap() as f64;
        assert!((est - 40_000.0).abs() / 40_000.0 < 0.05, "{est}");
        let mut m = AggFunc::ApproxCountDistinct.new_acc();
        m.merge(&parts[0]);
        m.merge(&parts[1]);
        let t = DataType::BigInt;
        assert_eq!(m.result(AggFunc::ApproxCountDistinct, t), h.result(AggFunc::ApproxCountDistinct, t));
        let q = AggFunc::ApproxPercentile(0.9);
        let mut p = q.new_acc();
        for i in 1..=10_000 {
            p.update(q, &Datum::Double(i as f64), pos(0, 0));
        }
        let v = p.result(q, DataType::Double).as_f64().unwrap();
        assert!((v - 9000.0).abs() / 9000.0 <= 0.011, "{v}");
        // Infinities and NaN have no rank: skipped (the sketch's bins overflowed on them).
        for x in [f64::INFINITY, f64::NEG_INFINITY, f64::NAN] {
            p.update(q, &Datum::Double(x), pos(0, 0));
        }
        assert_eq!(p.result(q, DataType::Double).as_f64(), Some(v));
    }

    #[test]
    fn min_and_max_order_nan_as_postgres_does_whatever_the_arrival_order() {
        let values = [Datum::Double(1.0), Datum::Double(f64::NAN), Datum::Double(-3.0)];
        for order in [[0, 1, 2], [1, 0, 2], [2, 0, 1], [1, 2, 0]] {
            let (mut min, mut max) = (AggFunc::Min.new_acc(), AggFunc::Max.new_acc());
            for i in order {
                min.update(AggFunc::Min, &values[i], pos(0, 0));
                max.update(AggFunc::Max, &values[i], pos(0, 0));
            }
            assert_eq!(min.result(AggFunc::Min, DataType::Double), Datum::Double(-3.0));
            assert!(max.result(AggFunc::Max, DataType::Double).as_f64().is_some_and(f64::is_nan), "NaN is the largest");
        }
    }
}
