//! Compiled scalar expressions and their evaluation over a row.
//!
//! The planner turns SQL expressions into an [`Expr`] tree with every column resolved to
//! an index and every type known; evaluation is then a walk of the tree over any [`Row`]
//! (an archived row read in place, a joined pair, an aggregate's output). A runtime
//! failure (division by zero, an overflow, a bad cast) yields NULL rather than stopping a
//! view: a stream must keep flowing; SELECT statements check what they can at plan time.

use std::borrow::Cow;
use std::cmp::Ordering;

use super::types::{format_timestamp, parse_interval, parse_timestamp, DataType, Datum, OwnedDatum};
use crate::limits::LIKE_STEPS_MAX;

/// Anything expressions can read columns from.
pub trait Row {
    fn get(&self, i: usize) -> Datum<'_>;

    /// For a source record read in place (operators may then read its values as stored,
    /// without going through datums): how many columns it stores, fewer than the schema's
    /// when written with an older version. `None` for any other row.
    fn stored_width(&self) -> Option<usize> {
        None
    }

    /// Column `i` (below `stored_width`) as stored.
    fn stored(&self, _i: usize) -> Stored<'_> {
        Stored::Other
    }
}

/// A stored value as the in-place fold reads it: integers (INT and BIGINT alike),
/// timestamps and text as they lie; anything else through [`Row::get`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stored<'a> {
    Null,
    Int(i64),
    Timestamp(i64),
    Text(&'a str),
    Other,
}

impl Row for [OwnedDatum] {
    fn get(&self, i: usize) -> Datum<'_> {
        self.get(i).map_or(Datum::Null, Datum::borrowed)
    }
}

impl Row for Vec<OwnedDatum> {
    fn get(&self, i: usize) -> Datum<'_> {
        self.as_slice().get(i).map_or(Datum::Null, Datum::borrowed)
    }
}

/// Two rows side by side (a join's output): columns of `left`, then of `right`.
pub struct Joined<'r, L: Row + ?Sized, R: Row + ?Sized> {
    pub left: &'r L,
    pub left_width: usize,
    pub right: Option<&'r R>,
}

impl<L: Row + ?Sized, R: Row + ?Sized> Row for Joined<'_, L, R> {
    fn get(&self, i: usize) -> Datum<'_> {
        if i < self.left_width {
            self.left.get(i)
        } else {
            self.right.map_or(Datum::Null, |r| r.get(i - self.left_width))
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    And,
    Or,
    Concat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Lower,
    Upper,
    Length,
    Substr,
    Trim,
    Ltrim,
    Rtrim,
    Replace,
    Concat,
    Coalesce,
    NullIf,
    Abs,
    Round,
    Floor,
    Ceil,
    Sqrt,
    Power,
    Ln,
    Greatest,
    Least,
    /// `date_trunc('unit', ts)`
    DateTrunc,
    /// `extract(field FROM ts)` / `date_part('field', ts)`
    DatePart,
    /// `to_timestamp(seconds)`
    ToTimestamp,
    /// `epoch_ms(ts)`: milliseconds since the epoch, as BIGINT.
    EpochMs,
    StartsWith,
    Strpos,
    Split,
    Md5Hash,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Column(usize),
    Literal(OwnedDatum),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    Binary { op: BinOp, left: Box<Expr>, right: Box<Expr> },
    IsNull { expr: Box<Expr>, negated: bool },
    IsBool { expr: Box<Expr>, value: bool, negated: bool },
    Case { operand: Option<Box<Expr>>, branches: Vec<(Expr, Expr)>, otherwise: Option<Box<Expr>> },
    Cast { expr: Box<Expr>, to: DataType },
    Func { func: Func, args: Vec<Expr> },
    InList { expr: Box<Expr>, list: Vec<Expr>, negated: bool },
    Between { expr: Box<Expr>, low: Box<Expr>, high: Box<Expr>, negated: bool },
    Like { expr: Box<Expr>, pattern: Box<Expr>, negated: bool, case_insensitive: bool },
}

fn text<'a>(s: String) -> Datum<'a> {
    Datum::Text(Cow::Owned(s))
}

impl Expr {
    pub fn lit(d: OwnedDatum) -> Expr {
        Expr::Literal(d)
    }

    /// The columns this expression reads.
    pub fn columns(&self, out: &mut Vec<usize>) {
        match self {
            Expr::Column(i) => out.push(*i),
            Expr::Literal(_) => {}
            Expr::Not(e) | Expr::Neg(e) | Expr::IsNull { expr: e, .. } | Expr::IsBool { expr: e, .. } => e.columns(out),
            Expr::Cast { expr, .. } => expr.columns(out),
            Expr::Binary { left, right, .. } => {
                left.columns(out);
                right.columns(out);
            }
            Expr::Case { operand, branches, otherwise } => {
                if let Some(o) = operand {
                    o.columns(out);
                }
                for (w, t) in branches {
                    w.columns(out);
                    t.columns(out);
                }
                if let Some(o) = otherwise {
                    o.columns(out);
                }
            }
            Expr::Func { args, .. } => args.iter().for_each(|a| a.columns(out)),
            Expr::InList { expr, list, .. } => {
                expr.columns(out);
                list.iter().for_each(|a| a.columns(out));
            }
            Expr::Between { expr, low, high, .. } => {
                expr.columns(out);
                low.columns(out);
                high.columns(out);
            }
            Expr::Like { expr, pattern, .. } => {
                expr.columns(out);
                pattern.columns(out);
            }
        }
    }

    /// Rewrites column indexes (after a projection or a join changed the row layout).
    pub fn map_columns(&mut self, f: &impl Fn(usize) -> usize) {
        match self {
            Expr::Column(i) => *i = f(*i),
            Expr::Literal(_) => {}
            Expr::Not(e) | Expr::Neg(e) | Expr::IsNull { expr: e, .. } | Expr::IsBool { expr: e, .. } => {
                e.map_columns(f)
            }
            Expr::Cast { expr, .. } => expr.map_columns(f),
            Expr::Binary { left, right, .. } => {
                left.map_columns(f);
                right.map_columns(f);
            }
            Expr::Case { operand, branches, otherwise } => {
                if let Some(o) = operand {
                    o.map_columns(f);
                }
                for (w, t) in branches {
                    w.map_columns(f);
                    t.map_columns(f);
                }
                if let Some(o) = otherwise {
                    o.map_columns(f);
                }
            }
            Expr::Func { args, .. } => args.iter_mut().for_each(|a| a.map_columns(f)),
            Expr::InList { expr, list, .. } => {
                expr.map_columns(f);
                list.iter_mut().for_each(|a| a.map_columns(f));
            }
            Expr::Between { expr, low, high, .. } => {
                expr.map_columns(f);
                low.map_columns(f);
                high.map_columns(f);
            }
            Expr::Like { expr, pattern, .. } => {
                expr.map_columns(f);
                pattern.map_columns(f);
            }
        }
    }

    /// True when the predicate holds (NULL counts as false, as in WHERE).
    pub fn holds<R: Row + ?Sized>(&self, row: &R) -> bool {
        matches!(self.eval(row), Datum::Bool(true))
    }

    pub fn eval<'a, R: Row + ?Sized>(&'a self, row: &'a R) -> Datum<'a> {
        match self {
            Expr::Column(i) => row.get(*i),
            Expr::Literal(d) => d.borrowed(),
            Expr::Not(e) => match e.eval(row) {
                Datum::Bool(b) => Datum::Bool(!b),
                _ => Datum::Null,
            },
            Expr::Neg(e) => match e.eval(row) {
                Datum::Int(i) => i.checked_neg().map_or(Datum::Null, Datum::Int),
                Datum::Double(d) => Datum::Double(-d),
                Datum::Interval(i) => i.checked_neg().map_or(Datum::Null, Datum::Interval),
                _ => Datum::Null,
            },
            Expr::Binary { op, left, right } => binary(*op, left, right, row),
            Expr::IsNull { expr, negated } => Datum::Bool(expr.eval(row).is_null() != *negated),
            Expr::IsBool { expr, value, negated } => {
                Datum::Bool((expr.eval(row).as_bool() == Some(*value)) != *negated)
            }
            Expr::Case { operand, branches, otherwise } => {
                let op = operand.as_ref().map(|o| o.eval(row));
                for (when, then) in branches {
                    let hit = match &op {
                        Some(v) => v.sql_cmp(&when.eval(row)) == Some(Ordering::Equal),
                        None => when.holds(row),
                    };
                    if hit {
                        return then.eval(row);
                    }
                }
                otherwise.as_ref().map_or(Datum::Null, |o| o.eval(row))
            }
            Expr::Cast { expr, to } => cast(expr.eval(row), *to),
            Expr::Func { func, args } => call(*func, args, row),
            Expr::InList { expr, list, negated } => {
                let v = expr.eval(row);
                if v.is_null() {
                    return Datum::Null;
                }
                let mut saw_null = false;
                for item in list {
                    match v.sql_cmp(&item.eval(row)) {
                        Some(Ordering::Equal) => return Datum::Bool(!negated),
                        None => saw_null = true,
                        _ => {}
                    }
                }
                if saw_null {
                    Datum::Null
                } else {
                    Datum::Bool(*negated)
                }
            }
            Expr::Between { expr, low, high, negated } => {
                let v = expr.eval(row);
                match (v.sql_cmp(&low.eval(row)), v.sql_cmp(&high.eval(row))) {
                    (Some(a), Some(b)) => Datum::Bool((a != Ordering::Less && b != Ordering::Greater) != *negated),
                    _ => Datum::Null,
                }
            }
            Expr::Like { expr, pattern, negated, case_insensitive } => match (expr.eval(row), pattern.eval(row)) {
                (Datum::Text(s), Datum::Text(p)) => {
                    let m = if *case_insensitive { like(&s.to_lowercase(), &p.to_lowercase()) } else { like(&s, &p) };
                    m.map_or(Datum::Null, |m| Datum::Bool(m != *negated))
                }
                _ => Datum::Null,
            },
        }
    }
}

fn binary<'a, R: Row + ?Sized>(op: BinOp, left: &'a Expr, right: &'a Expr, row: &'a R) -> Datum<'a> {
    // Short-circuit logic with SQL's three-valued truth tables.
    if op == BinOp::And || op == BinOp::Or {
        let l = left.eval(row).as_bool();
        if op == BinOp::And && l == Some(false) {
            return Datum::Bool(false);
        }
        if op == BinOp::Or && l == Some(true) {
            return Datum::Bool(true);
        }
        let r = right.eval(row).as_bool();
        return match (op, l, r) {
            (BinOp::And, _, Some(false)) => Datum::Bool(false),
            (BinOp::And, Some(true), Some(true)) => Datum::Bool(true),
            (BinOp::Or, _, Some(true)) => Datum::Bool(true),
            (BinOp::Or, Some(false), Some(false)) => Datum::Bool(false),
            _ => Datum::Null,
        };
    }
    let (l, r) = (left.eval(row), right.eval(row));
    if l.is_null() || r.is_null() {
        return Datum::Null;
    }
    let cmp = |pred: fn(Ordering) -> bool| l.sql_cmp(&r).map_or(Datum::Null, |o| Datum::Bool(pred(o)));
    match op {
        BinOp::Eq => cmp(|o| o == Ordering::Equal),
        BinOp::NotEq => cmp(|o| o != Ordering::Equal),
        BinOp::Lt => cmp(|o| o == Ordering::Less),
        BinOp::LtEq => cmp(|o| o != Ordering::Greater),
        BinOp::Gt => cmp(|o| o == Ordering::Greater),
        BinOp::GtEq => cmp(|o| o != Ordering::Less),
        BinOp::Concat => {
            let (a, b) = (l.to_pg_text().unwrap_or_default(), r.to_pg_text().unwrap_or_default());
            text(a + &b)
        }
        _ => arith(op, l, r),
    }
}

fn arith<'a>(op: BinOp, l: Datum<'_>, r: Datum<'_>) -> Datum<'a> {
    use Datum::*;
    match (op, &l, &r) {
        // Time arithmetic: timestamp ± interval, timestamp - timestamp, interval ± interval.
        (BinOp::Add, Timestamp(t), Interval(i)) | (BinOp::Add, Interval(i), Timestamp(t)) => {
            t.checked_add(*i).map_or(Null, Timestamp)
        }
        (BinOp::Sub, Timestamp(t), Interval(i)) => t.checked_sub(*i).map_or(Null, Timestamp),
        (BinOp::Sub, Timestamp(a), Timestamp(b)) => a.checked_sub(*b).map_or(Null, Interval),
        (BinOp::Add, Interval(a), Interval(b)) => a.checked_add(*b).map_or(Null, Interval),
        (BinOp::Sub, Interval(a), Interval(b)) => a.checked_sub(*b).map_or(Null, Interval),
        (BinOp::Mul, Interval(a), Int(b)) | (BinOp::Mul, Int(b), Interval(a)) => {
            a.checked_mul(*b).map_or(Null, Interval)
        }
        (_, Int(a), Int(b)) => {
            let (a, b) = (*a, *b);
            let v = match op {
                BinOp::Add => a.checked_add(b),
                BinOp::Sub => a.checked_sub(b),
                BinOp::Mul => a.checked_mul(b),
                BinOp::Div => a.checked_div(b),
                BinOp::Mod => a.checked_rem(b),
                _ => None,
            };
            v.map_or(Null, Int)
        }
        _ => {
            let (Some(a), Some(b)) = (l.as_f64(), r.as_f64()) else { return Null };
            let v = match op {
                BinOp::Add => a + b,
                BinOp::Sub => a - b,
                BinOp::Mul => a * b,
                BinOp::Div if b == 0.0 => return Null,
                BinOp::Div => a / b,
                BinOp::Mod if b == 0.0 => return Null,
                BinOp::Mod => a % b,
                _ => return Null,
            };
            Double(v)
        }
    }
}

/// Converts a datum to a type; NULL when it does not convert.
pub fn cast<'a>(v: Datum<'a>, to: DataType) -> Datum<'a> {
    use Datum::*;
    match (v, to) {
        (Null, _) => Null,
        (v, DataType::Unknown) => v,
        (Bool(b), DataType::Boolean) => Bool(b),
        (Int(i), DataType::Boolean) => Bool(i != 0),
        (Text(s), DataType::Boolean) => match s.trim().to_ascii_lowercase().as_str() {
            "t" | "true" | "yes" | "on" | "1" => Bool(true),
            "f" | "false" | "no" | "off" | "0" => Bool(false),
            _ => Null,
        },
        (Int(i), DataType::Int) => i32::try_from(i).map_or(Null, |i| Int(i as i64)),
        (Int(i), DataType::BigInt) => Int(i),
        (Double(d), DataType::Int) if d.is_finite() && d.abs() < 2.1e9 => Int(d.round() as i64),
        (Double(d), DataType::BigInt) if d.is_finite() && d.abs() < 9.2e18 => Int(d.round() as i64),
        (Bool(b), DataType::Int | DataType::BigInt) => Int(b as i64),
        (Timestamp(t), DataType::BigInt) | (Interval(t), DataType::BigInt) => Int(t),
        (Text(s), DataType::Int | DataType::BigInt) => match s.trim().parse::<i64>() {
            Ok(i) if to == DataType::BigInt || i32::try_from(i).is_ok() => Int(i),
            _ => Null,
        },
        (Int(i), DataType::Double) => Double(i as f64),
        (Double(d), DataType::Double) => Double(d),
        (Text(s), DataType::Double) => s.trim().parse::<f64>().map_or(Null, Double),
        (Timestamp(t), DataType::Timestamp) => Timestamp(t),
        (Int(t), DataType::Timestamp) => Timestamp(t),
        (Text(s), DataType::Timestamp) => parse_timestamp(&s).map_or(Null, Timestamp),
        (Interval(i), DataType::Interval) => Interval(i),
        (Int(i), DataType::Interval) => Interval(i),
        (Text(s), DataType::Interval) => parse_interval(&s, None).map_or(Null, Interval),
        (Bytes(b), DataType::Bytea) => Bytes(b),
        (Text(s), DataType::Bytea) => match s {
            Cow::Borrowed(s) => Bytes(Cow::Borrowed(s.as_bytes())),
            Cow::Owned(s) => Bytes(Cow::Owned(s.into_bytes())),
        },
        (Timestamp(t), DataType::Text) => text(format_timestamp(t)),
        (Text(s), DataType::Text) => Text(s),
        (v, DataType::Text) => v.to_pg_text().map_or(Null, text),
        _ => Null,
    }
}

/// A piece of a LIKE pattern between two `%`: literal text, or `_` (any one character).
enum LikePiece {
    Lit(String),
    Any,
}

/// The pattern split at its unescaped `%`s (`\` escapes `%`, `_` and itself).
fn like_segments(p: &str) -> Vec<Vec<LikePiece>> {
    let mut segments = vec![Vec::new()];
    let mut chars = p.chars();
    while let Some(c) = chars.next() {
        let seg = segments.last_mut().expect("one segment at least");
        let lit = match c {
            '%' => {
                segments.push(Vec::new());
                continue;
            }
            '_' => {
                seg.push(LikePiece::Any);
                continue;
            }
            '\\' => chars.next().unwrap_or('\\'),
            c => c,
        };
        match seg.last_mut() {
            Some(LikePiece::Lit(l)) => l.push(lit),
            _ => seg.push(LikePiece::Lit(lit.to_string())),
        }
    }
    segments
}

/// Where `seg` ends if it matches `s` from byte `at`.
fn like_match_at(s: &str, mut at: usize, seg: &[LikePiece]) -> Option<usize> {
    for piece in seg {
        match piece {
            LikePiece::Lit(l) if s[at..].starts_with(l.as_str()) => at += l.len(),
            LikePiece::Any => at += s[at..].chars().next()?.len_utf8(),
            LikePiece::Lit(_) => return None,
        }
    }
    Some(at)
}

/// Where `seg` starts if it matches `s` ending exactly at byte `end`.
fn like_match_back(s: &str, mut end: usize, seg: &[LikePiece]) -> Option<usize> {
    for piece in seg.iter().rev() {
        match piece {
            LikePiece::Lit(l) if s[..end].ends_with(l.as_str()) => end -= l.len(),
            LikePiece::Any => end -= s[..end].chars().next_back()?.len_utf8(),
            LikePiece::Lit(_) => return None,
        }
    }
    Some(end)
}

/// SQL LIKE with `%` and `_` (and `\` escaping either). Segments between `%`s match
/// leftmost, in order, which is exact for LIKE; a segment without `_` is found by a
/// linear substring search. `None` when a match would take more than [`LIKE_STEPS_MAX`]
/// steps (only segments with `_` can get there): a shard must not stall for minutes on
/// one hostile row or query.
pub fn like(s: &str, p: &str) -> Option<bool> {
    let segments = like_segments(p);
    let (first, rest) = segments.split_first().expect("one segment at least");
    let Some((last, middle)) = rest.split_last() else {
        return Some(like_match_at(s, 0, first) == Some(s.len()));
    };
    let Some(mut at) = like_match_at(s, 0, first) else { return Some(false) };
    let Some(end) = like_match_back(s, s.len(), last).filter(|end| *end >= at) else { return Some(false) };
    let s = &s[..end];
    let mut steps = 0usize;
    for seg in middle.iter().filter(|seg| !seg.is_empty()) {
        let cost = seg.iter().map(|p| if let LikePiece::Lit(l) = p { l.len() } else { 1 }).sum::<usize>();
        loop {
            let candidate = match &seg[0] {
                LikePiece::Lit(l) => match s[at..].find(l.as_str()) {
                    Some(i) => at + i,
                    None => return Some(false),
                },
                LikePiece::Any => at,
            };
            steps += cost;
            if steps > LIKE_STEPS_MAX {
                return None;
            }
            if let Some(e) = like_match_at(s, candidate, seg) {
                at = e;
                break;
            }
            match s[candidate..].chars().next() {
                Some(c) => at = candidate + c.len_utf8(),
                None => return Some(false),
            }
        }
    }
    Some(true)
}

/// Truncates a timestamp to a unit (`second`, `minute`, `hour`, `day`, `week`, `month`, `year`);
/// `None` for an unknown unit or a result outside the range of timestamps.
pub fn date_trunc(unit: &str, ms: i64) -> Option<i64> {
    use super::types::{civil_from_days, days_from_civil};
    let step = match unit.to_ascii_lowercase().as_str() {
        "millisecond" | "milliseconds" => 1,
        "second" | "seconds" => 1000,
        "minute" | "minutes" => 60_000,
        "hour" | "hours" => 3_600_000,
        "day" | "days" => 86_400_000,
        "week" | "weeks" => {
            // ISO weeks start on Monday; 1970-01-01 was a Thursday.
            let days = ms.div_euclid(86_400_000);
            let monday = days - (days + 3).rem_euclid(7);
            return monday.checked_mul(86_400_000);
        }
        "month" | "months" => {
            let (y, m, _) = civil_from_days(ms.div_euclid(86_400_000));
            return days_from_civil(y, m, 1).checked_mul(86_400_000);
        }
        "year" | "years" => {
            let (y, _, _) = civil_from_days(ms.div_euclid(86_400_000));
            return days_from_civil(y, 1, 1).checked_mul(86_400_000);
        }
        _ => return None,
    };
    // Near i64::MIN the truncated time is not representable: NULL, not a wrapped value.
    ms.checked_sub(ms.rem_euclid(step))
}

/// A field of a timestamp (`year`, `month`, `day`, `hour`, `minute`, `second`, `dow`,
/// `doy`, `epoch`, `millisecond`).
pub fn date_part(field: &str, ms: i64) -> Option<f64> {
    use super::types::civil_from_days;
    let days = ms.div_euclid(86_400_000);
    let msod = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    Some(match field.to_ascii_lowercase().as_str() {
        "year" => y as f64,
        "month" => m as f64,
        "day" => d as f64,
        "hour" => (msod / 3_600_000) as f64,
        "minute" => ((msod / 60_000) % 60) as f64,
        "second" => (msod % 60_000) as f64 / 1000.0,
        "millisecond" | "milliseconds" => (msod % 60_000) as f64,
        "dow" => (days + 4).rem_euclid(7) as f64,
        "doy" => (days - super::types::days_from_civil(y, 1, 1) + 1) as f64,
        "epoch" => ms as f64 / 1000.0,
        _ => return None,
    })
}

fn call<'a, R: Row + ?Sized>(func: Func, args: &'a [Expr], row: &'a R) -> Datum<'a> {
    let arg = |i: usize| args.get(i).map_or(Datum::Null, |a| a.eval(row));
    match func {
        Func::Coalesce => args.iter().map(|a| a.eval(row)).find(|v| !v.is_null()).unwrap_or(Datum::Null),
        Func::NullIf => {
            let (a, b) = (arg(0), arg(1));
            if a.sql_cmp(&b) == Some(Ordering::Equal) {
                Datum::Null
            } else {
                a
            }
        }
        Func::Greatest | Func::Least => {
            let mut best: Option<Datum<'a>> = None;
            for a in args {
                let v = a.eval(row);
                if v.is_null() {
                    continue;
                }
                let better = match &best {
                    None => true,
                    Some(b) => {
                        let o = v.sql_cmp(b);
                        (func == Func::Greatest && o == Some(Ordering::Greater))
                            || (func == Func::Least && o == Some(Ordering::Less))
                    }
                };
                if better {
                    best = Some(v);
                }
            }
            best.unwrap_or(Datum::Null)
        }
        Func::Concat => {
            let mut s = String::new();
            for a in args {
                if let Some(t) = a.eval(row).to_pg_text() {
                    s.push_str(&t);
                }
            }
            text(s)
        }
        _ => {
            let a = arg(0);
            if a.is_null() {
                return Datum::Null;
            }
            call_strict(func, a, args, row)
        }
    }
}

/// Functions that are NULL when their first argument is.
fn call_strict<'a, R: Row + ?Sized>(func: Func, a: Datum<'a>, args: &'a [Expr], row: &'a R) -> Datum<'a> {
    let arg = |i: usize| args.get(i).map_or(Datum::Null, |x| x.eval(row));
    let s = || a.to_pg_text().unwrap_or_default();
    match func {
        Func::Lower => text(s().to_lowercase()),
        Func::Upper => text(s().to_uppercase()),
        Func::Length => match &a {
            Datum::Bytes(b) => Datum::Int(b.len() as i64),
            _ => Datum::Int(s().chars().count() as i64),
        },
        Func::Substr => {
            let st = s();
            let from = arg(1).as_i64().unwrap_or(1);
            let chars: Vec<char> = st.chars().collect();
            // Positions from the wire may be anywhere in i64: saturate, never wrap.
            let begin = from.saturating_sub(1).max(0).min(chars.len() as i64) as usize;
            let end = match arg(2).as_i64() {
                Some(n) => from.saturating_sub(1).saturating_add(n).clamp(0, chars.len() as i64) as usize,
                None => chars.len(),
            };
            text(
                chars
                    .get(begin.min(chars.len())..end.max(begin.min(chars.len())))
                    .map_or(String::new(), |c| c.iter().collect()),
            )
        }
        Func::Trim => text(s().trim().to_string()),
        Func::Ltrim => text(s().trim_start().to_string()),
        Func::Rtrim => text(s().trim_end().to_string()),
        Func::Replace => {
            let (from, to) = (arg(1).to_pg_text().unwrap_or_default(), arg(2).to_pg_text().unwrap_or_default());
            let st = s();
            // The result's size is known before it is built: nested replaces grow
            // exponentially, and past the limit the answer is NULL, not an abort.
            let grown = st.matches(from.as_str()).count().saturating_mul(to.len().saturating_sub(from.len()));
            if from.is_empty() {
                text(st)
            } else if st.len().saturating_add(grown) > crate::limits::TEXT_VALUE_BYTES_MAX {
                Datum::Null
            } else {
                text(st.replace(&from, &to))
            }
        }
        Func::StartsWith => Datum::Bool(s().starts_with(&arg(1).to_pg_text().unwrap_or_default())),
        Func::Strpos => {
            let hay = s();
            let needle = arg(1).to_pg_text().unwrap_or_default();
            Datum::Int(hay.find(&needle).map_or(0, |b| hay[..b].chars().count() as i64 + 1))
        }
        Func::Split => {
            let delim = arg(1).to_pg_text().unwrap_or_default();
            let n = arg(2).as_i64().unwrap_or(1);
            if delim.is_empty() || n < 1 {
                return Datum::Null;
            }
            text(s().split(delim.as_str()).nth((n - 1) as usize).unwrap_or("").to_string())
        }
        Func::Md5Hash => {
            // A stable 64-bit hash as hex (not cryptographic; for bucketing).
            let h = crate::record::murmur2(s().as_bytes()) as u32;
            text(format!("{h:08x}"))
        }
        Func::Abs => match a {
            Datum::Int(i) => i.checked_abs().map_or(Datum::Null, Datum::Int),
            Datum::Double(d) => Datum::Double(d.abs()),
            _ => Datum::Null,
        },
        Func::Round => {
            let places = arg(1).as_i64().unwrap_or(0).clamp(-15, 15) as i32;
            match a {
                Datum::Int(i) if places >= 0 => Datum::Int(i),
                other => other.as_f64().map_or(Datum::Null, |d| {
                    let f = 10f64.powi(places);
                    Datum::Double((d * f).round() / f)
                }),
            }
        }
        Func::Floor => match a {
            Datum::Int(i) => Datum::Int(i),
            other => other.as_f64().map_or(Datum::Null, |d| Datum::Double(d.floor())),
        },
        Func::Ceil => match a {
            Datum::Int(i) => Datum::Int(i),
            other => other.as_f64().map_or(Datum::Null, |d| Datum::Double(d.ceil())),
        },
        Func::Sqrt => a.as_f64().filter(|d| *d >= 0.0).map_or(Datum::Null, |d| Datum::Double(d.sqrt())),
        Func::Ln => a.as_f64().filter(|d| *d > 0.0).map_or(Datum::Null, |d| Datum::Double(d.ln())),
        Func::Power => match (a.as_f64(), arg(1).as_f64()) {
            (Some(x), Some(y)) => Datum::Double(x.powf(y)),
            _ => Datum::Null,
        },
        Func::DateTrunc => {
            // date_trunc('unit', ts): the unit is the first argument.
            let unit = s();
            match arg(1) {
                Datum::Timestamp(t) => date_trunc(&unit, t).map_or(Datum::Null, Datum::Timestamp),
                _ => Datum::Null,
            }
        }
        Func::DatePart => {
            let field = s();
            match arg(1) {
                Datum::Timestamp(t) => date_part(&field, t).map_or(Datum::Null, Datum::Double),
                Datum::Interval(i) if field.eq_ignore_ascii_case("epoch") => Datum::Double(i as f64 / 1000.0),
                _ => Datum::Null,
            }
        }
        Func::ToTimestamp => a.as_f64().map_or(Datum::Null, |secs| Datum::Timestamp((secs * 1000.0).round() as i64)),
        Func::EpochMs => match a {
            Datum::Timestamp(t) | Datum::Interval(t) => Datum::Int(t),
            _ => Datum::Null,
        },
        Func::Coalesce | Func::NullIf | Func::Greatest | Func::Least | Func::Concat => Datum::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> Vec<OwnedDatum> {
        vec![Datum::Int(7), Datum::Text(Cow::Owned("Hello".into())), Datum::Null, Datum::Timestamp(90_061_500)]
    }

    fn bin(op: BinOp, l: Expr, r: Expr) -> Expr {
        Expr::Binary { op, left: Box::new(l), right: Box::new(r) }
    }

    #[test]
    fn three_valued_logic_and_arithmetic() {
        let r = row();
        let null_eq = bin(BinOp::Eq, Expr::Column(2), Expr::lit(Datum::Int(1)));
        assert_eq!(null_eq.eval(&r), Datum::Null);
        let t = Expr::lit(Datum::Bool(true));
        let f = Expr::lit(Datum::Bool(false));
        assert_eq!(bin(BinOp::Or, null_eq.clone(), t.clone()).eval(&r), Datum::Bool(true));
        assert_eq!(bin(BinOp::And, null_eq.clone(), f).eval(&r), Datum::Bool(false));
        assert_eq!(bin(BinOp::And, null_eq, t).eval(&r), Datum::Null);
        assert_eq!(bin(BinOp::Div, Expr::Column(0), Expr::lit(Datum::Int(2))).eval(&r), Datum::Int(3));
        assert_eq!(bin(BinOp::Div, Expr::Column(0), Expr::lit(Datum::Int(0))).eval(&r), Datum::Null);
        assert_eq!(bin(BinOp::Div, Expr::Column(0), Expr::lit(Datum::Double(2.0))).eval(&r), Datum::Double(3.5));
        let plus = bin(BinOp::Add, Expr::Column(3), Expr::lit(Datum::Interval(500)));
        assert_eq!(plus.eval(&r), Datum::Timestamp(90_062_000));
    }

    #[test]
    fn functions_case_cast_like() {
        let r = row();
        let f = |func, args| Expr::Func { func, args };
        assert_eq!(f(Func::Upper, vec![Expr::Column(1)]).eval(&r), Datum::Text("HELLO".into()));
        assert_eq!(
            f(Func::Substr, vec![Expr::Column(1), Expr::lit(Datum::Int(2)), Expr::lit(Datum::Int(3))]).eval(&r),
            Datum::Text("ell".into())
        );
        // Positions and values from the wire at the ends of i64 saturate or give NULL.
        let int = |i: i64| Expr::lit(Datum::Int(i));
        assert_eq!(f(Func::Substr, vec![Expr::Column(1), int(2), int(i64::MAX)]).eval(&r), Datum::Text("ello".into()));
        assert_eq!(f(Func::Substr, vec![Expr::Column(1), int(i64::MIN)]).eval(&r), Datum::Text("Hello".into()));
        assert_eq!(
            f(Func::Substr, vec![Expr::Column(1), int(i64::MIN), int(i64::MIN)]).eval(&r),
            Datum::Text("".into())
        );
        assert_eq!(Expr::Neg(Box::new(Expr::lit(Datum::Interval(i64::MIN)))).eval(&r), Datum::Null);
        let mut grow = Expr::lit(Datum::Text("aaaaaaaaaa".into()));
        for _ in 0..10 {
            grow = f(
                Func::Replace,
                vec![grow, Expr::lit(Datum::Text("a".into())), Expr::lit(Datum::Text("a".repeat(10).into()))],
            );
        }
        assert_eq!(grow.eval(&r), Datum::Null, "10^11 bytes would be built");
        assert_eq!(f(Func::Coalesce, vec![Expr::Column(2), Expr::Column(0)]).eval(&r), Datum::Int(7));
        let day = f(Func::DateTrunc, vec![Expr::lit(Datum::Text("day".into())), Expr::Column(3)]);
        assert_eq!(day.eval(&r), Datum::Timestamp(86_400_000));
        let case = Expr::Case {
            operand: None,
            branches: vec![(
                bin(BinOp::Gt, Expr::Column(0), Expr::lit(Datum::Int(5))),
                Expr::lit(Datum::Text("big".into())),
            )],
            otherwise: Some(Box::new(Expr::lit(Datum::Text("small".into())))),
        };
        assert_eq!(case.eval(&r), Datum::Text("big".into()));
        assert_eq!(cast(Datum::Text("42".into()), DataType::Int), Datum::Int(42));
        assert_eq!(cast(Datum::Text("x".into()), DataType::Int), Datum::Null);
        assert_eq!(cast(Datum::Int(3_000_000_000), DataType::Int), Datum::Null);
        assert_eq!(like("hello world", "h%o w_rld"), Some(true));
        assert_eq!(like("50%", "50\\%"), Some(true));
        assert_eq!(like("hello", "h_llx"), Some(false));
        assert_eq!(like("", "%"), Some(true));
        // A literal segment is found in linear time; a segment with `_` is tried at each
        // position, and its worst case is bounded: NULL, not a stalled shard.
        let text = "a".repeat(100_000);
        assert_eq!(like(&text, &format!("%{}b%", "a".repeat(50_000))), Some(false));
        assert_eq!(like(&text, &format!("%_{}b%", "a".repeat(50_000))), None);
        assert_eq!(like(&text, &format!("%{}", "a".repeat(1_000))), Some(true));
        assert_eq!(like(&text, &format!("%{}b%", "a".repeat(1_000))), Some(false));
        assert_eq!(like(&format!("{text}b"), &format!("%{}b%", "a".repeat(50_000))), Some(true));
        for (t, p, m) in [
            ("abc", "a%c", true),
            ("ac", "a%c", true),
            ("a", "a%a", false),
            ("aXbYc", "a%b%c", true),
            ("aXcYb", "a%b%c", false),
            ("über", "_ber", true),
            ("über", "%b_r", true),
            ("a%b", "a\\%b", true),
            ("axb", "a\\%b", false),
            ("a_b", "a\\_b", true),
            ("a\\b", "a\\\\b", true),
            ("abcabd", "%ab_%", true),
            ("xaby", "%a_y", true),
            ("xabyz", "%a_y", false),
            ("", "", true),
            ("", "_", false),
            ("ab", "%%b", true),
            ("aaab", "%a_b%", true),
        ] {
            assert_eq!(like(t, p), Some(m), "{t:?} LIKE {p:?}");
        }
    }
}
