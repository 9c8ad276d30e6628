//! Lowering: a sqlparser expression to a typed [`Expr`] over a [`Scope`].
//!
//! Types are checked here, once, so evaluation never has to: an operator that does not
//! exist for its operand types, an unknown column or function, or an aggregate where none
//! is allowed is an error naming the problem. String literals take the type their context
//! asks for (`ts > '2026-01-01'`), as in Postgres. Parameters (`$1`) take the type their
//! context gives them, or the type the client declared.
//!
//! In a grouped context (the SELECT list and HAVING of an aggregating query) expressions
//! are over the group row: group keys, then window bounds, then the aggregates, which
//! are collected here as they are met.

use std::borrow::Cow;

use sqlparser::ast::{
    self, BinaryOperator, CastKind, DateTimeField, DuplicateTreatment, FunctionArg, FunctionArgExpr, FunctionArguments,
    UnaryOperator, Value,
};

use super::error::{sqlstate, SqlError};
use super::expr::{cast, BinOp, Expr, Func};
use super::parse::ident_norm;
use super::scope::Scope;
use super::types::{parse_interval, parse_timestamp, DataType, Datum, OwnedDatum};
use crate::dataflow::accumulator::AggFunc;
use crate::dataflow::plan::AggPlan;

/// An expression and its type.
#[derive(Debug, Clone, PartialEq)]
pub struct Typed {
    pub expr: Expr,
    pub ty: DataType,
}

/// Parameters of a prepared statement: their types (declared by the client or inferred
/// from where they appear) and, when executing, their values.
#[derive(Debug, Clone, Default)]
pub struct Params {
    pub types: Vec<Option<DataType>>,
    pub values: Option<Vec<OwnedDatum>>,
}

impl Params {
    pub fn declared(types: Vec<Option<DataType>>) -> Self {
        Params { types, values: None }
    }

    /// The parameter types, unknown ones as TEXT (what Postgres does for untyped text).
    pub fn resolved_types(&self) -> Vec<DataType> {
        self.types.iter().map(|t| t.unwrap_or(DataType::Text)).collect()
    }
}

/// A group key of a grouped context.
#[derive(Debug, Clone)]
pub struct GroupKey {
    /// The key as written (to recognise it in the SELECT list).
    pub text: String,
    /// The input column it is, when it is a plain column.
    pub column: Option<usize>,
    pub typed: Typed,
}

/// The state of a grouped context.
#[derive(Debug, Clone, Default)]
pub struct Grouping {
    pub keys: Vec<GroupKey>,
    /// Windowed: `window_start` and `window_end` follow the keys.
    pub window: bool,
    /// The aggregates met so far, with their text (equal aggregates are computed once).
    pub aggs: Vec<(String, AggPlan)>,
}

impl Grouping {
    pub fn key_width(&self) -> usize {
        self.keys.len() + if self.window { 2 } else { 0 }
    }
}

/// What may appear where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A materialized view: deterministic (no `now()`), so replay gives the same rows.
    View,
    /// A one-off query.
    Query,
}

pub struct Lowerer<'a> {
    /// The row expressions see (in a grouped context: the input row, for aggregate arguments).
    pub scope: &'a Scope,
    pub grouping: Option<&'a mut Grouping>,
    pub params: &'a mut Params,
    pub purpose: Purpose,
    /// Where aggregates are refused, the clause to name in the error.
    pub clause: &'static str,
}

fn undefined_function(m: String) -> SqlError {
    SqlError::new(sqlstate::UNDEFINED_FUNCTION, m)
}

fn lit(d: OwnedDatum, ty: DataType) -> Typed {
    Typed { expr: Expr::Literal(d), ty }
}

/// The SQL type named in a CAST or a column definition.
pub fn data_type(dt: &ast::DataType) -> Result<DataType, SqlError> {
    use ast::DataType as D;
    Ok(match dt {
        D::Boolean | D::Bool => DataType::Boolean,
        D::SmallInt(_) | D::Int2(_) | D::Int(_) | D::Integer(_) | D::Int4(_) => DataType::Int,
        D::BigInt(_) | D::Int8(_) => DataType::BigInt,
        D::Real | D::Float4 | D::DoublePrecision | D::Float8 | D::Double(_) | D::Float(_) => DataType::Double,
        D::Text | D::String(_) | D::Varchar(_) | D::CharacterVarying(_) | D::CharVarying(_) => DataType::Text,
        D::Bytea => DataType::Bytea,
        D::Timestamp(_, _) => DataType::Timestamp,
        D::Interval { .. } => DataType::Interval,
        other => {
            return Err(SqlError::unsupported(format!(
                "type {other} is not supported (use BOOLEAN, INT, BIGINT, DOUBLE PRECISION, TEXT, BYTEA, TIMESTAMP)"
            )))
        }
    })
}

/// Parses a literal's text as a value of `ty` (a string literal meeting a typed context).
pub fn literal_as(text: &str, ty: DataType) -> Result<OwnedDatum, SqlError> {
    let bad = || {
        SqlError::new(
            sqlstate::INVALID_TEXT_REPRESENTATION,
            format!("invalid input syntax for type {}: \"{text}\"", ty.name()),
        )
    };
    Ok(match ty {
        DataType::Text | DataType::Unknown => Datum::Text(Cow::Owned(text.to_string())),
        DataType::Timestamp => Datum::Timestamp(parse_timestamp(text).ok_or_else(bad)?),
        DataType::Interval => Datum::Interval(parse_interval(text, None).ok_or_else(bad)?),
        DataType::Bytea => Datum::Bytes(Cow::Owned(match text.strip_prefix("\\x") {
            Some(hex) => decode_hex(hex).ok_or_else(bad)?,
            None => text.as_bytes().to_vec(),
        })),
        DataType::Boolean | DataType::Int | DataType::BigInt | DataType::Double => {
            let v = cast(Datum::Text(Cow::Borrowed(text)), ty);
            if v.is_null() {
                return Err(bad());
            }
            v.into_owned()
        }
    })
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// The type two operands are compared or combined in, if any.
fn common_type(a: DataType, b: DataType) -> Option<DataType> {
    use DataType::*;
    Some(match (a, b) {
        (x, y) if x == y => x,
        (Unknown, x) | (x, Unknown) => x,
        (Double, x) | (x, Double) if x.is_numeric() => Double,
        (BigInt, Int) | (Int, BigInt) => BigInt,
        _ => return None,
    })
}

impl<'a> Lowerer<'a> {
    pub fn new(scope: &'a Scope, params: &'a mut Params, purpose: Purpose) -> Self {
        Lowerer { scope, grouping: None, params, purpose, clause: "WHERE" }
    }

    /// Lowers an expression that must be a boolean (WHERE, HAVING, ON).
    pub fn predicate(&mut self, e: &ast::Expr) -> Result<Expr, SqlError> {
        let t = self.lower_hint(e, Some(DataType::Boolean))?;
        match t.ty {
            DataType::Boolean | DataType::Unknown => Ok(t.expr),
            other => Err(SqlError::mismatch(format!(
                "argument of {} must be type BOOLEAN, not type {} ({e})",
                self.clause,
                other.name()
            ))),
        }
    }

    pub fn lower(&mut self, e: &ast::Expr) -> Result<Typed, SqlError> {
        self.lower_hint(e, None)
    }

    /// Lowers `e` and converts it to `ty` (string literals parse, integers widen).
    pub fn lower_as(&mut self, e: &ast::Expr, ty: DataType) -> Result<Expr, SqlError> {
        let t = self.lower_hint(e, Some(ty))?;
        coerce(t, ty, e)
    }

    /// Lowers with a hint: the type the context expects (for literals and parameters).
    pub fn lower_hint(&mut self, e: &ast::Expr, hint: Option<DataType>) -> Result<Typed, SqlError> {
        if let Some(t) = self.grouped_match(e)? {
            return Ok(t);
        }
        match e {
            ast::Expr::Identifier(id) => self.column(None, &ident_norm(id)),
            ast::Expr::CompoundIdentifier(parts) => match parts.as_slice() {
                [rel, col] => self.column(Some(&ident_norm(rel)), &ident_norm(col)),
                [_, rel, col] => self.column(Some(&ident_norm(rel)), &ident_norm(col)),
                _ => Err(SqlError::unsupported(format!("name {e} is not supported"))),
            },
            ast::Expr::Value(v) => self.value(&v.value, hint),
            ast::Expr::Nested(inner) => self.lower_hint(inner, hint),
            ast::Expr::UnaryOp { op, expr } => match op {
                UnaryOperator::Not => {
                    let x = self.lower_as(expr, DataType::Boolean)?;
                    Ok(Typed { expr: Expr::Not(Box::new(x)), ty: DataType::Boolean })
                }
                UnaryOperator::Minus => {
                    // Fold negative literals (so `-9223372036854775808` and `-1` are literals).
                    if let ast::Expr::Value(v) = expr.as_ref() {
                        if let Value::Number(n, _) = &v.value {
                            return self.number(&format!("-{n}"));
                        }
                    }
                    let x = self.lower_hint(expr, hint)?;
                    match x.ty {
                        t if t.is_numeric() || t == DataType::Interval || t == DataType::Unknown => {
                            Ok(Typed { expr: Expr::Neg(Box::new(x.expr)), ty: t })
                        }
                        t => Err(undefined_function(format!("operator does not exist: - {}", t.name()))),
                    }
                }
                UnaryOperator::Plus => self.lower_hint(expr, hint),
                other => Err(SqlError::unsupported(format!("operator {other} is not supported"))),
            },
            ast::Expr::BinaryOp { left, op, right } => self.binary(left, op, right),
            ast::Expr::IsNull(x) | ast::Expr::IsNotNull(x) => {
                let x = self.lower(x)?;
                let negated = matches!(e, ast::Expr::IsNotNull(_));
                Ok(Typed { expr: Expr::IsNull { expr: Box::new(x.expr), negated }, ty: DataType::Boolean })
            }
            ast::Expr::IsTrue(x) | ast::Expr::IsNotTrue(x) | ast::Expr::IsFalse(x) | ast::Expr::IsNotFalse(x) => {
                let inner = self.lower_as(x, DataType::Boolean)?;
                let value = matches!(e, ast::Expr::IsTrue(_) | ast::Expr::IsNotTrue(_));
                let negated = matches!(e, ast::Expr::IsNotTrue(_) | ast::Expr::IsNotFalse(_));
                Ok(Typed { expr: Expr::IsBool { expr: Box::new(inner), value, negated }, ty: DataType::Boolean })
            }
            ast::Expr::Between { expr, negated, low, high } => {
                let x = self.lower(expr)?;
                let (lo, hi) = (self.lower_hint(low, Some(x.ty))?, self.lower_hint(high, Some(x.ty))?);
                let ty = common_type(x.ty, lo.ty).and_then(|t| common_type(t, hi.ty)).ok_or_else(|| {
                    undefined_function(format!(
                        "cannot compare {} with {} and {} in {e}",
                        x.ty.name(),
                        lo.ty.name(),
                        hi.ty.name()
                    ))
                })?;
                Ok(Typed {
                    expr: Expr::Between {
                        expr: Box::new(coerce(x, ty, expr)?),
                        low: Box::new(coerce(lo, ty, low)?),
                        high: Box::new(coerce(hi, ty, high)?),
                        negated: *negated,
                    },
                    ty: DataType::Boolean,
                })
            }
            ast::Expr::In { expr, target, negated, .. } => {
                let ast::InTarget::List(list) = target else {
                    return Err(SqlError::unsupported("IN (subquery) is not supported"));
                };
                let x = self.lower(expr)?;
                let mut items = Vec::with_capacity(list.len());
                let mut ty = x.ty;
                let mut lowered = Vec::with_capacity(list.len());
                for item in list {
                    let t = self.lower_hint(item, Some(x.ty))?;
                    ty = common_type(ty, t.ty).ok_or_else(|| {
                        undefined_function(format!("cannot compare {} with {} in {e}", x.ty.name(), t.ty.name()))
                    })?;
                    lowered.push((t, item));
                }
                for (t, item) in lowered {
                    items.push(coerce(t, ty, item)?);
                }
                Ok(Typed {
                    expr: Expr::InList { expr: Box::new(coerce(x, ty, expr)?), list: items, negated: *negated },
                    ty: DataType::Boolean,
                })
            }
            ast::Expr::Like { negated, expr, pattern, escape_char, any: false }
            | ast::Expr::ILike { negated, expr, pattern, escape_char, any: false } => {
                if escape_char.is_some() {
                    return Err(SqlError::unsupported("LIKE ... ESCAPE is not supported (use \\ to escape)"));
                }
                let x = self.lower_as(expr, DataType::Text)?;
                let p = self.lower_as(pattern, DataType::Text)?;
                Ok(Typed {
                    expr: Expr::Like {
                        expr: Box::new(x),
                        pattern: Box::new(p),
                        negated: *negated,
                        case_insensitive: matches!(e, ast::Expr::ILike { .. }),
                    },
                    ty: DataType::Boolean,
                })
            }
            ast::Expr::Case { operand, conditions, else_result, .. } => self.case(operand, conditions, else_result),
            ast::Expr::Cast { kind, expr, data_type: dt, format: None, .. } => {
                if !matches!(kind, CastKind::Cast | CastKind::DoubleColon | CastKind::TryCast) {
                    return Err(SqlError::unsupported(format!("{e} is not supported")));
                }
                let to = data_type(dt)?;
                let x = self.lower_hint(expr, Some(to))?;
                // A literal converts now (and a bad one is an error now).
                if let Expr::Literal(Datum::Text(s)) = &x.expr {
                    return Ok(lit(literal_as(s, to)?, to));
                }
                if !castable(x.ty, to) {
                    return Err(SqlError::new(
                        sqlstate::UNDEFINED_FUNCTION,
                        format!("cannot cast type {} to {}", x.ty.name(), to.name()),
                    ));
                }
                Ok(Typed { expr: Expr::Cast { expr: Box::new(x.expr), to }, ty: to })
            }
            ast::Expr::TypedString(ts) => {
                let to = match &ts.data_type {
                    ast::DataType::Date => DataType::Timestamp,
                    other => data_type(other)?,
                };
                let text = match &ts.value.value {
                    Value::SingleQuotedString(s) => s.clone(),
                    other => other.to_string(),
                };
                Ok(lit(literal_as(&text, to)?, to))
            }
            ast::Expr::Interval(i) => {
                let text = match i.value.as_ref() {
                    ast::Expr::Value(v) => match &v.value {
                        Value::SingleQuotedString(s) | Value::Number(s, _) => s.clone(),
                        other => other.to_string(),
                    },
                    other => return Err(SqlError::unsupported(format!("INTERVAL {other} is not supported"))),
                };
                let unit = i.leading_field.as_ref().map(|f| f.to_string());
                if i.last_field.is_some() {
                    return Err(SqlError::unsupported("INTERVAL ... TO ... is not supported"));
                }
                let ms = parse_interval(&text, unit.as_deref()).ok_or_else(|| {
                    SqlError::new(
                        sqlstate::INVALID_TEXT_REPRESENTATION,
                        format!("invalid input syntax for type interval: \"{text}\""),
                    )
                })?;
                Ok(lit(Datum::Interval(ms), DataType::Interval))
            }
            ast::Expr::Extract { field, expr, .. } => {
                let name = match field {
                    DateTimeField::Custom(id) => id.value.to_ascii_lowercase(),
                    f => f.to_string().to_ascii_lowercase(),
                };
                let x = self.lower(expr)?;
                if !matches!(x.ty, DataType::Timestamp | DataType::Interval | DataType::Unknown) {
                    return Err(undefined_function(format!("cannot EXTRACT from type {}", x.ty.name())));
                }
                Ok(Typed {
                    expr: Expr::Func {
                        func: Func::DatePart,
                        args: vec![Expr::Literal(Datum::Text(name.into())), x.expr],
                    },
                    ty: DataType::Double,
                })
            }
            ast::Expr::Substring { expr, substring_from, substring_for, .. } => {
                let mut args = vec![self.lower_as(expr, DataType::Text)?];
                args.push(match substring_from {
                    Some(f) => self.lower_as(f, DataType::BigInt)?,
                    None => Expr::Literal(Datum::Int(1)),
                });
                if let Some(n) = substring_for {
                    args.push(self.lower_as(n, DataType::BigInt)?);
                }
                Ok(Typed { expr: Expr::Func { func: Func::Substr, args }, ty: DataType::Text })
            }
            ast::Expr::Trim { expr, trim_where, trim_what, trim_characters } => {
                if trim_what.is_some() || trim_characters.is_some() {
                    return Err(SqlError::unsupported("TRIM of characters other than spaces is not supported"));
                }
                let func = match trim_where {
                    Some(ast::TrimWhereField::Leading) => Func::Ltrim,
                    Some(ast::TrimWhereField::Trailing) => Func::Rtrim,
                    _ => Func::Trim,
                };
                let x = self.lower_as(expr, DataType::Text)?;
                Ok(Typed { expr: Expr::Func { func, args: vec![x] }, ty: DataType::Text })
            }
            ast::Expr::Position { expr, r#in } => {
                let needle = self.lower_as(expr, DataType::Text)?;
                let hay = self.lower_as(r#in, DataType::Text)?;
                Ok(Typed { expr: Expr::Func { func: Func::Strpos, args: vec![hay, needle] }, ty: DataType::Int })
            }
            ast::Expr::Ceil { expr, .. } | ast::Expr::Floor { expr, .. } => {
                let x = self.lower(expr)?;
                if !x.ty.is_numeric() && x.ty != DataType::Unknown {
                    return Err(undefined_function(format!("function floor/ceil({}) does not exist", x.ty.name())));
                }
                let func = if matches!(e, ast::Expr::Ceil { .. }) { Func::Ceil } else { Func::Floor };
                Ok(Typed { expr: Expr::Func { func, args: vec![x.expr] }, ty: x.ty })
            }
            ast::Expr::Function(f) => self.function(f, e),
            other => Err(SqlError::unsupported(format!("expression {other} is not supported"))),
        }
    }

    /// In a grouped context: a group key, a window bound, or a bare column (an error).
    fn grouped_match(&mut self, e: &ast::Expr) -> Result<Option<Typed>, SqlError> {
        let Some(g) = self.grouping.as_deref() else { return Ok(None) };
        if matches!(e, ast::Expr::Value(_)) {
            return Ok(None);
        }
        let text = e.to_string();
        if let Some(i) = g.keys.iter().position(|k| k.text == text) {
            return Ok(Some(Typed { expr: Expr::Column(i), ty: g.keys[i].typed.ty }));
        }
        let name = match e {
            ast::Expr::Identifier(id) => Some((None, ident_norm(id))),
            ast::Expr::CompoundIdentifier(p) if p.len() == 2 => Some((Some(ident_norm(&p[0])), ident_norm(&p[1]))),
            _ => None,
        };
        let Some((rel, name)) = name else { return Ok(None) };
        if g.window && (name == "window_start" || name == "window_end") {
            let i = g.keys.len() + usize::from(name == "window_end");
            return Ok(Some(Typed { expr: Expr::Column(i), ty: DataType::Timestamp }));
        }
        let (col, _) = self.scope.resolve(rel.as_deref(), &name)?;
        match g.keys.iter().position(|k| k.column == Some(col)) {
            Some(i) => Ok(Some(Typed { expr: Expr::Column(i), ty: g.keys[i].typed.ty })),
            None => Err(SqlError::new(
                sqlstate::GROUPING_ERROR,
                format!("column \"{name}\" must appear in the GROUP BY clause or be used in an aggregate function"),
            )),
        }
    }

    fn column(&mut self, rel: Option<&str>, name: &str) -> Result<Typed, SqlError> {
        if (name == "window_start" || name == "window_end") && self.scope.resolve(rel, name).is_err() {
            return Err(SqlError::new(
                sqlstate::GROUPING_ERROR,
                format!("{name} can only be used in GROUP BY and in the SELECT list of a windowed aggregation"),
            ));
        }
        let (i, ty) = self.scope.resolve(rel, name)?;
        Ok(Typed { expr: Expr::Column(i), ty })
    }

    fn value(&mut self, v: &Value, hint: Option<DataType>) -> Result<Typed, SqlError> {
        match v {
            Value::Number(n, _) => self.number(n),
            Value::SingleQuotedString(s) | Value::EscapedStringLiteral(s) => match hint {
                // A string literal meeting a typed context takes that type.
                Some(t) if t != DataType::Text && t != DataType::Unknown && t != DataType::Boolean => {
                    Ok(lit(literal_as(s, t)?, t))
                }
                _ => Ok(lit(Datum::Text(Cow::Owned(s.clone())), DataType::Text)),
            },
            Value::DollarQuotedString(d) => Ok(lit(Datum::Text(Cow::Owned(d.value.clone())), DataType::Text)),
            Value::Boolean(b) => Ok(lit(Datum::Bool(*b), DataType::Boolean)),
            Value::Null => Ok(lit(Datum::Null, hint.unwrap_or(DataType::Unknown))),
            Value::Placeholder(p) => self.placeholder(p, hint),
            other => Err(SqlError::unsupported(format!("literal {other} is not supported"))),
        }
    }

    fn number(&mut self, n: &str) -> Result<Typed, SqlError> {
        let clean: String = n.chars().filter(|c| *c != '_').collect();
        if !clean.contains(['.', 'e', 'E']) {
            if let Ok(i) = clean.parse::<i64>() {
                let ty = if i32::try_from(i).is_ok() { DataType::Int } else { DataType::BigInt };
                return Ok(lit(Datum::Int(i), ty));
            }
        }
        clean
            .parse::<f64>()
            .map(|d| lit(Datum::Double(d), DataType::Double))
            .map_err(|_| SqlError::new(sqlstate::NUMERIC_VALUE_OUT_OF_RANGE, format!("number {n} is out of range")))
    }

    fn placeholder(&mut self, p: &str, hint: Option<DataType>) -> Result<Typed, SqlError> {
        let n: usize = p
            .strip_prefix('$')
            .and_then(|x| x.parse().ok())
            .filter(|n| (1..=crate::limits::SQL_PARAMS_MAX).contains(n))
            .ok_or_else(|| SqlError::syntax(format!("bad parameter {p}")))?;
        if self.params.types.len() < n {
            self.params.types.resize(n, None);
        }
        let slot = &mut self.params.types[n - 1];
        if slot.is_none() {
            *slot = hint.filter(|t| *t != DataType::Unknown);
        }
        let ty = slot.unwrap_or(DataType::Unknown);
        let value = match &self.params.values {
            Some(values) => values.get(n - 1).cloned().ok_or_else(|| {
                SqlError::new(sqlstate::PROTOCOL_VIOLATION, format!("no value was bound for parameter ${n}"))
            })?,
            None => Datum::Null,
        };
        Ok(lit(value, ty))
    }

    fn binary(&mut self, left: &ast::Expr, op: &BinaryOperator, right: &ast::Expr) -> Result<Typed, SqlError> {
        let bop = match op {
            BinaryOperator::Plus => BinOp::Add,
            BinaryOperator::Minus => BinOp::Sub,
            BinaryOperator::Multiply => BinOp::Mul,
            BinaryOperator::Divide => BinOp::Div,
            BinaryOperator::Modulo => BinOp::Mod,
            BinaryOperator::Eq => BinOp::Eq,
            BinaryOperator::NotEq => BinOp::NotEq,
            BinaryOperator::Lt => BinOp::Lt,
            BinaryOperator::LtEq => BinOp::LtEq,
            BinaryOperator::Gt => BinOp::Gt,
            BinaryOperator::GtEq => BinOp::GtEq,
            BinaryOperator::And => BinOp::And,
            BinaryOperator::Or => BinOp::Or,
            BinaryOperator::StringConcat => BinOp::Concat,
            other => return Err(SqlError::unsupported(format!("operator {other} is not supported"))),
        };
        let node = |l: Expr, r: Expr| Expr::Binary { op: bop, left: Box::new(l), right: Box::new(r) };
        match bop {
            BinOp::And | BinOp::Or => {
                let (l, r) = (self.lower_as(left, DataType::Boolean)?, self.lower_as(right, DataType::Boolean)?);
                Ok(Typed { expr: node(l, r), ty: DataType::Boolean })
            }
            BinOp::Concat => {
                let (l, r) = (self.lower(left)?, self.lower(right)?);
                Ok(Typed { expr: node(l.expr, r.expr), ty: DataType::Text })
            }
            _ => {
                let mut l = self.lower(left)?;
                let r = self.lower_hint(right, Some(l.ty))?;
                if l.ty == DataType::Unknown && r.ty != DataType::Unknown {
                    l = self.lower_hint(left, Some(r.ty))?;
                }
                let is_cmp =
                    matches!(bop, BinOp::Eq | BinOp::NotEq | BinOp::Lt | BinOp::LtEq | BinOp::Gt | BinOp::GtEq);
                let err = || {
                    undefined_function(format!(
                        "operator does not exist: {} {op} {} (in {left} {op} {right})",
                        l.ty.name(),
                        r.ty.name()
                    ))
                };
                if is_cmp {
                    let ty = common_type(l.ty, r.ty).ok_or_else(err)?;
                    let (lt, rt) = (l.clone(), r.clone());
                    return Ok(Typed {
                        expr: node(coerce(lt, ty, left)?, coerce(rt, ty, right)?),
                        ty: DataType::Boolean,
                    });
                }
                use DataType::*;
                let ty = match (bop, l.ty, r.ty) {
                    (BinOp::Add, Timestamp, Interval) | (BinOp::Add, Interval, Timestamp) => Timestamp,
                    (BinOp::Sub, Timestamp, Interval) => Timestamp,
                    (BinOp::Sub, Timestamp, Timestamp) => Interval,
                    (BinOp::Add | BinOp::Sub, Interval, Interval) => Interval,
                    (BinOp::Mul, Interval, Int | BigInt) | (BinOp::Mul, Int | BigInt, Interval) => Interval,
                    (_, a, b) if (a.is_numeric() || a == Unknown) && (b.is_numeric() || b == Unknown) => {
                        common_type(a, b).map(|t| if t == Unknown { BigInt } else { t }).ok_or_else(err)?
                    }
                    _ => return Err(err()),
                };
                // Integer arithmetic in BIGINT never overflows INT silently: widen.
                let ty = if ty == Int { BigInt } else { ty };
                Ok(Typed { expr: node(l.expr, r.expr), ty })
            }
        }
    }

    fn case(
        &mut self,
        operand: &Option<Box<ast::Expr>>,
        conditions: &[ast::CaseWhen],
        else_result: &Option<Box<ast::Expr>>,
    ) -> Result<Typed, SqlError> {
        let op = match operand {
            Some(o) => Some(self.lower(o)?),
            None => None,
        };
        let mut whens = Vec::with_capacity(conditions.len());
        let mut results = Vec::with_capacity(conditions.len() + 1);
        let mut ty = DataType::Unknown;
        for c in conditions {
            let w = match &op {
                Some(o) => {
                    let w = self.lower_hint(&c.condition, Some(o.ty))?;
                    let t = common_type(o.ty, w.ty).ok_or_else(|| {
                        SqlError::mismatch(format!("CASE types {} and {} cannot be matched", o.ty.name(), w.ty.name()))
                    })?;
                    coerce(w, t, &c.condition)?
                }
                None => self.lower_as(&c.condition, DataType::Boolean)?,
            };
            whens.push(w);
            let r = self.lower_hint(&c.result, Some(ty).filter(|t| *t != DataType::Unknown))?;
            ty = common_type(ty, r.ty).ok_or_else(|| {
                SqlError::mismatch(format!("CASE types {} and {} cannot be matched", ty.name(), r.ty.name()))
            })?;
            results.push((r, &c.result));
        }
        let otherwise = match else_result {
            Some(e) => {
                let r = self.lower_hint(e, Some(ty))?;
                ty = common_type(ty, r.ty).ok_or_else(|| {
                    SqlError::mismatch(format!("CASE types {} and {} cannot be matched", ty.name(), r.ty.name()))
                })?;
                Some(coerce(r, ty, e)?)
            }
            None => None,
        };
        let mut branches = Vec::with_capacity(whens.len());
        for (w, (r, src)) in whens.into_iter().zip(results) {
            branches.push((w, coerce(r, ty, src)?));
        }
        Ok(Typed {
            expr: Expr::Case { operand: op.map(|o| Box::new(o.expr)), branches, otherwise: otherwise.map(Box::new) },
            ty,
        })
    }

    fn args<'e>(&self, f: &'e ast::Function) -> Result<(Vec<&'e ast::Expr>, bool, bool), SqlError> {
        let name = f.name.to_string();
        let list = match &f.args {
            FunctionArguments::None => return Ok((Vec::new(), false, false)),
            FunctionArguments::Subquery(_) => {
                return Err(SqlError::unsupported(format!("{name}(subquery) is not supported")))
            }
            FunctionArguments::List(l) => l,
        };
        if !list.clauses.is_empty() {
            return Err(SqlError::unsupported(format!("ORDER BY or LIMIT inside {name}(...) is not supported")));
        }
        if f.over.is_some() {
            return Err(SqlError::unsupported(format!(
                "window function {name}(...) OVER is not supported; use TUMBLE, HOP or SESSION in FROM"
            )));
        }
        if f.filter.is_some() {
            return Err(SqlError::unsupported(format!("{name}(...) FILTER is not supported; use CASE")));
        }
        let distinct = matches!(list.duplicate_treatment, Some(DuplicateTreatment::Distinct));
        let mut star = false;
        let mut out = Vec::with_capacity(list.args.len());
        for a in &list.args {
            match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => out.push(e),
                FunctionArg::Unnamed(FunctionArgExpr::Wildcard) => star = true,
                other => return Err(SqlError::unsupported(format!("argument {other} of {name} is not supported"))),
            }
        }
        Ok((out, distinct, star))
    }

    fn function(&mut self, f: &ast::Function, whole: &ast::Expr) -> Result<Typed, SqlError> {
        let name = super::parse::name_norm(&f.name).unwrap_or_default();
        let (args, distinct, star) = self.args(f)?;
        if let Some(agg) = aggregate_func(&name, distinct, star, args.len()) {
            return self.aggregate(agg, &name, &args, whole);
        }
        if distinct || star {
            return Err(undefined_function(format!("{whole} is not an aggregate function")));
        }
        let text = DataType::Text;
        let lower_all = |me: &mut Self, tys: &[DataType]| -> Result<Vec<Expr>, SqlError> {
            if args.len() != tys.len() {
                return Err(undefined_function(format!(
                    "function {name} takes {} arguments, not {} ({whole})",
                    tys.len(),
                    args.len()
                )));
            }
            args.iter().zip(tys).map(|(a, t)| me.lower_as(a, *t)).collect()
        };
        let call = |func: Func, args: Vec<Expr>, ty: DataType| Ok(Typed { expr: Expr::Func { func, args }, ty });
        match name.as_str() {
            "lower" => call(Func::Lower, lower_all(self, &[text])?, text),
            "upper" => call(Func::Upper, lower_all(self, &[text])?, text),
            "length" | "char_length" | "character_length" => {
                call(Func::Length, lower_all(self, &[text])?, DataType::Int)
            }
            "trim" | "btrim" => call(Func::Trim, lower_all(self, &[text])?, text),
            "ltrim" => call(Func::Ltrim, lower_all(self, &[text])?, text),
            "rtrim" => call(Func::Rtrim, lower_all(self, &[text])?, text),
            "replace" => call(Func::Replace, lower_all(self, &[text, text, text])?, text),
            "starts_with" => call(Func::StartsWith, lower_all(self, &[text, text])?, DataType::Boolean),
            "strpos" => call(Func::Strpos, lower_all(self, &[text, text])?, DataType::Int),
            "split_part" => call(Func::Split, lower_all(self, &[text, text, DataType::BigInt])?, text),
            "substr" | "substring" => {
                let tys: &[DataType] = if args.len() == 2 {
                    &[text, DataType::BigInt]
                } else {
                    &[text, DataType::BigInt, DataType::BigInt]
                };
                call(Func::Substr, lower_all(self, tys)?, text)
            }
            "concat" => {
                let xs = args.iter().map(|a| self.lower(a).map(|t| t.expr)).collect::<Result<_, _>>()?;
                call(Func::Concat, xs, text)
            }
            "hash" => call(Func::Md5Hash, lower_all(self, &[text])?, text),
            "coalesce" | "greatest" | "least" | "nullif" => {
                if args.is_empty() || (name == "nullif" && args.len() != 2) {
                    return Err(undefined_function(format!("wrong number of arguments to {name} ({whole})")));
                }
                let mut ty = DataType::Unknown;
                let mut lowered = Vec::new();
                for a in &args {
                    let t = self.lower_hint(a, Some(ty).filter(|t| *t != DataType::Unknown))?;
                    ty = common_type(ty, t.ty).ok_or_else(|| {
                        SqlError::mismatch(format!("{name} types {} and {} cannot be matched", ty.name(), t.ty.name()))
                    })?;
                    lowered.push((t, *a));
                }
                let xs = lowered.into_iter().map(|(t, a)| coerce(t, ty, a)).collect::<Result<_, _>>()?;
                let func = match name.as_str() {
                    "coalesce" => Func::Coalesce,
                    "greatest" => Func::Greatest,
                    "least" => Func::Least,
                    _ => Func::NullIf,
                };
                call(func, xs, ty)
            }
            "abs" | "round" | "floor" | "ceil" | "ceiling" => {
                if args.is_empty() || args.len() > 2 || (name != "round" && args.len() != 1) {
                    return Err(undefined_function(format!("wrong number of arguments to {name} ({whole})")));
                }
                let x = self.lower(args[0])?;
                if !x.ty.is_numeric() && x.ty != DataType::Unknown {
                    return Err(undefined_function(format!("function {name}({}) does not exist", x.ty.name())));
                }
                let mut xs = vec![x.expr];
                let mut ty = x.ty;
                if args.len() == 2 {
                    xs.push(self.lower_as(args[1], DataType::BigInt)?);
                    ty = DataType::Double;
                }
                let func = match name.as_str() {
                    "abs" => Func::Abs,
                    "round" => Func::Round,
                    "floor" => Func::Floor,
                    _ => Func::Ceil,
                };
                call(func, xs, ty)
            }
            "sqrt" => call(Func::Sqrt, lower_all(self, &[DataType::Double])?, DataType::Double),
            "ln" => call(Func::Ln, lower_all(self, &[DataType::Double])?, DataType::Double),
            "power" | "pow" => {
                call(Func::Power, lower_all(self, &[DataType::Double, DataType::Double])?, DataType::Double)
            }
            "date_trunc" => call(Func::DateTrunc, lower_all(self, &[text, DataType::Timestamp])?, DataType::Timestamp),
            "date_part" => call(Func::DatePart, lower_all(self, &[text, DataType::Timestamp])?, DataType::Double),
            "to_timestamp" => call(Func::ToTimestamp, lower_all(self, &[DataType::Double])?, DataType::Timestamp),
            "epoch_ms" => call(Func::EpochMs, lower_all(self, &[DataType::Timestamp])?, DataType::BigInt),
            "now" | "current_timestamp" | "localtimestamp" => {
                if self.purpose == Purpose::View {
                    return Err(SqlError::unsupported(format!(
                        "{name}() is not allowed in a materialized view: a view must give the same rows when its log is replayed; use the event time"
                    )));
                }
                if !args.is_empty() {
                    return Err(undefined_function(format!("{name}() takes no arguments")));
                }
                Ok(lit(Datum::Timestamp(crate::clock::now_ms()), DataType::Timestamp))
            }
            "version" => Ok(lit(
                Datum::Text(Cow::Owned(format!("PostgreSQL 15.0 (Sluice {})", env!("CARGO_PKG_VERSION")))),
                DataType::Text,
            )),
            _ => Err(undefined_function(format!("function {name} does not exist ({whole})"))),
        }
    }

    fn aggregate(
        &mut self,
        func: AggFunc,
        name: &str,
        args: &[&ast::Expr],
        whole: &ast::Expr,
    ) -> Result<Typed, SqlError> {
        let Some(grouping) = self.grouping.take() else {
            return Err(SqlError::new(
                sqlstate::GROUPING_ERROR,
                format!("aggregate functions are not allowed in {} ({whole})", self.clause),
            ));
        };
        let result = (|| {
            let text = whole.to_string();
            let (func, arg, arg_type) = match func {
                AggFunc::CountStar => (func, None, DataType::BigInt),
                AggFunc::ApproxPercentile(_) => {
                    let x = self.lower(args[0])?;
                    if !x.ty.is_numeric() {
                        return Err(undefined_function(format!(
                            "approx_percentile needs a number, not {}",
                            x.ty.name()
                        )));
                    }
                    let q = match self.lower(args[1])?.expr {
                        Expr::Literal(d) => d.as_f64().filter(|q| (0.0..=1.0).contains(q)),
                        _ => None,
                    }
                    .ok_or_else(|| {
                        SqlError::new(
                            sqlstate::INVALID_PARAMETER_VALUE,
                            format!("the quantile of approx_percentile must be a constant between 0 and 1 ({whole})"),
                        )
                    })?;
                    (AggFunc::ApproxPercentile(q), Some(x.expr), x.ty)
                }
                _ => {
                    let x = self.lower(args[0])?;
                    if matches!(func, AggFunc::Sum | AggFunc::Avg) && !x.ty.is_numeric() && x.ty != DataType::Unknown {
                        return Err(undefined_function(format!("function {name}({}) does not exist", x.ty.name())));
                    }
                    (func, Some(x.expr), x.ty)
                }
            };
            let index = match grouping.aggs.iter().position(|(t, _)| *t == text) {
                Some(i) => i,
                None => {
                    let result_type = func.result_type(arg_type);
                    grouping.aggs.push((text, AggPlan { func, arg, arg_type, result_type }));
                    grouping.aggs.len() - 1
                }
            };
            let ty = grouping.aggs[index].1.result_type;
            Ok(Typed { expr: Expr::Column(grouping.key_width() + index), ty })
        })();
        self.grouping = Some(grouping);
        result
    }
}

/// Recognises an aggregate call.
fn aggregate_func(name: &str, distinct: bool, star: bool, nargs: usize) -> Option<AggFunc> {
    Some(match (name, distinct, star, nargs) {
        ("count", false, true, 0) => AggFunc::CountStar,
        ("count", false, false, 1) => AggFunc::Count,
        ("count", true, false, 1) => AggFunc::CountDistinct,
        ("sum", false, false, 1) => AggFunc::Sum,
        ("min", _, false, 1) => AggFunc::Min,
        ("max", _, false, 1) => AggFunc::Max,
        ("avg", false, false, 1) => AggFunc::Avg,
        ("first_value", false, false, 1) => AggFunc::FirstValue,
        ("last_value", false, false, 1) => AggFunc::LastValue,
        ("approx_count_distinct", false, false, 1) => AggFunc::ApproxCountDistinct,
        ("approx_percentile", false, false, 2) => AggFunc::ApproxPercentile(0.5),
        _ => return None,
    })
}

/// Whether `name` is an aggregate function (for telling aggregating queries apart).
pub fn is_aggregate_name(name: &str) -> bool {
    matches!(
        name,
        "count"
            | "sum"
            | "min"
            | "max"
            | "avg"
            | "first_value"
            | "last_value"
            | "approx_count_distinct"
            | "approx_percentile"
    )
}

fn castable(from: DataType, to: DataType) -> bool {
    use DataType::*;
    from == to
        || from == Unknown
        || to == Text
        || from == Text
        || matches!(
            (from, to),
            (Int | BigInt | Double, Int | BigInt | Double)
                | (Boolean, Int | BigInt)
                | (Int | BigInt, Boolean)
                | (Timestamp | Interval, BigInt)
                | (Int | BigInt, Timestamp | Interval)
        )
}

/// Converts a typed expression to `ty`: literals now, integers widen for free, other
/// numbers through a cast; anything else is a type error.
pub fn coerce(t: Typed, ty: DataType, src: &ast::Expr) -> Result<Expr, SqlError> {
    if t.ty == ty || ty == DataType::Unknown {
        return Ok(t.expr);
    }
    if let Expr::Literal(d) = &t.expr {
        return match d {
            Datum::Null => Ok(Expr::Literal(Datum::Null)),
            Datum::Text(s) if t.ty == DataType::Text || t.ty == DataType::Unknown => {
                Ok(Expr::Literal(literal_as(s, ty)?))
            }
            _ if t.ty == DataType::Unknown => Ok(Expr::Literal(cast(d.clone(), ty).into_owned())),
            _ => {
                let v = cast(d.clone(), ty);
                if v.is_null() {
                    Err(SqlError::mismatch(format!("{src} is of type {}, not {}", t.ty.name(), ty.name())))
                } else if t.ty.is_numeric() && ty.is_numeric() {
                    Ok(Expr::Literal(v.into_owned()))
                } else {
                    Err(SqlError::mismatch(format!("{src} is of type {}, not {}", t.ty.name(), ty.name())))
                }
            }
        };
    }
    match (t.ty, ty) {
        (DataType::Int, DataType::BigInt) | (DataType::BigInt, DataType::Int) | (DataType::Unknown, _) => Ok(t.expr),
        (a, DataType::Double) if a.is_numeric() => Ok(Expr::Cast { expr: Box::new(t.expr), to: ty }),
        _ => Err(SqlError::mismatch(format!(
            "{src} is of type {}, but type {} is expected here",
            t.ty.name(),
            ty.name()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::expr::Row;
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;

    fn expr(s: &str) -> ast::Expr {
        Parser::new(&PostgreSqlDialect {}).try_with_sql(s).unwrap().parse_expr().unwrap()
    }

    fn scope() -> Scope {
        let mut s = Scope::new();
        s.push(Some("t"), "id", DataType::BigInt);
        s.push(Some("t"), "name", DataType::Text);
        s.push(Some("t"), "ts", DataType::Timestamp);
        s.push(Some("t"), "px", DataType::Double);
        s
    }

    fn eval(s: &str, row: &[OwnedDatum]) -> OwnedDatum {
        let sc = scope();
        let mut p = Params::default();
        let t = Lowerer::new(&sc, &mut p, Purpose::Query).lower(&expr(s)).unwrap();
        t.expr.eval(row).into_owned()
    }

    #[test]
    fn lowers_and_evaluates_with_postgres_typing() {
        let row =
            vec![Datum::Int(7), Datum::Text("Hello".into()), Datum::Timestamp(1_767_225_600_000), Datum::Double(2.5)];
        assert_eq!(eval("id * 2 + 1", &row), Datum::Int(15));
        assert_eq!(eval("ts >= '2026-01-01'", &row), Datum::Bool(true));
        assert_eq!(eval("ts + INTERVAL '1' SECOND", &row), Datum::Timestamp(1_767_225_601_000));
        assert_eq!(eval("CASE WHEN id > 5 THEN 'big' ELSE 'small' END", &row), Datum::Text("big".into()));
        assert_eq!(eval("lower(name) || '!'", &row), Datum::Text("hello!".into()));
        assert_eq!(eval("CAST(px AS BIGINT)", &row), Datum::Int(3));
        assert_eq!(eval("extract(hour FROM ts)", &row), Datum::Double(0.0));
        assert_eq!(eval("id IN (1, 7)", &row), Datum::Bool(true));
        assert_eq!(eval("name LIKE 'He%'", &row), Datum::Bool(true));
        assert_eq!(eval("coalesce(NULL, id)", &row), Datum::Int(7));
        let _ = row.get(0);
    }

    #[test]
    fn errors_name_the_problem() {
        let sc = scope();
        let mut p = Params::default();
        let mut l = Lowerer::new(&sc, &mut p, Purpose::View);
        let e = l.lower(&expr("nope + 1")).unwrap_err();
        assert_eq!(e.code, sqlstate::UNDEFINED_COLUMN);
        assert!(e.message.contains("nope") && e.message.contains("columns: id, name"), "{}", e.message);
        let e = l.lower(&expr("name + 1")).unwrap_err();
        assert_eq!(e.code, sqlstate::UNDEFINED_FUNCTION);
        assert!(e.message.contains("TEXT + INT"), "{}", e.message);
        let e = l.lower(&expr("now()")).unwrap_err();
        assert_eq!(e.code, sqlstate::FEATURE_NOT_SUPPORTED);
        let e = l.lower(&expr("count(*)")).unwrap_err();
        assert_eq!(e.code, sqlstate::GROUPING_ERROR);
        let e = l.lower(&expr("ts > 'yesterday-ish'")).unwrap_err();
        assert_eq!(e.code, sqlstate::INVALID_TEXT_REPRESENTATION);
    }

    #[test]
    fn parameters_take_their_type_from_context() {
        let sc = scope();
        let mut p = Params::default();
        Lowerer::new(&sc, &mut p, Purpose::Query).lower(&expr("id = $1 AND ts > $2")).unwrap();
        assert_eq!(p.resolved_types(), vec![DataType::BigInt, DataType::Timestamp]);
        p.values = Some(vec![Datum::Int(7), Datum::Timestamp(0)]);
        let t = Lowerer::new(&sc, &mut p, Purpose::Query).lower(&expr("id = $1 AND ts > $2")).unwrap();
        let row = vec![Datum::Int(7), Datum::Null, Datum::Timestamp(5), Datum::Null];
        assert!(t.expr.holds(&row));
    }
}
