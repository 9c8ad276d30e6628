//! Planning `CREATE MATERIALIZED VIEW ... AS SELECT`: from the SQL to a [`ViewPlan`].
//!
//! What a view may be: one source topic, optionally in a window (`TUMBLE`, `HOP`,
//! `SESSION` in FROM), optionally joined with a table (enrichment as of the event) or
//! with a second topic on a key and an event-time interval (interval join); a WHERE; and
//! either a projection (an append-only view) or a GROUP BY with aggregates and HAVING.

use std::rc::Rc;

use sqlparser::ast::{
    self, BinaryOperator, FunctionArg, FunctionArgExpr, GroupByExpr, JoinConstraint, JoinOperator, SelectItem, SetExpr,
    TableFactor,
};

use super::error::{sqlstate, SqlError};
use super::expr::Expr;
use super::lower::{is_aggregate_name, GroupKey, Grouping, Lowerer, Params, Purpose, Typed};
use super::parse::{ident_norm, name_norm, option_pairs, RebuildFrom};
use super::scope::Scope;
use super::types::{parse_interval, DataType};
use crate::dataflow::plan::{
    AggregatePlan, ColumnInfo, IntervalJoinPlan, LatePolicy, OutputColumn, SourcePlan, TableJoinPlan, ViewOptions,
    ViewPlan, WindowPlan,
};
use crate::log::TopicConfig;

/// What planning needs to know about the catalog.
pub trait Catalog {
    fn topic(&self, name: &str) -> Option<Rc<TopicConfig>>;
    /// A view of that name: its columns (name, type) and plan.
    fn view(&self, name: &str) -> Option<(Vec<(String, DataType)>, Rc<ViewPlan>)>;
}

/// A planned view: its plan and the columns it shows.
#[derive(Debug, Clone)]
pub struct PlannedView {
    pub plan: ViewPlan,
    pub columns: Vec<(String, DataType)>,
}

/// The columns of a topic as a plan sees them (its current schema).
pub fn topic_columns(topic: &TopicConfig) -> Vec<ColumnInfo> {
    topic
        .schema()
        .map(|s| {
            s.columns
                .iter()
                .map(|c| ColumnInfo {
                    name: c.name.clone(),
                    ty: DataType::from_column(c.ty),
                    default: c.default.clone().unwrap_or(crate::record::schema::Value::Null),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn undefined_table(name: &str) -> SqlError {
    SqlError::new(sqlstate::UNDEFINED_TABLE, format!("relation \"{name}\" does not exist"))
}

/// A topic named in FROM, checked to be typed.
fn typed_topic(catalog: &dyn Catalog, name: &str) -> Result<Rc<TopicConfig>, SqlError> {
    if catalog.view(name).is_some() {
        return Err(SqlError::unsupported(format!(
            "a view cannot read another view (\"{name}\"); give \"{name}\" a changelog topic and read that"
        )));
    }
    let topic = catalog.topic(name).ok_or_else(|| undefined_table(name))?;
    if topic.schema().is_none() {
        return Err(SqlError::new(
            sqlstate::DATATYPE_MISMATCH,
            format!("topic \"{name}\" is raw (it has no schema); views read typed topics (CREATE TOPIC {name} (col TYPE, ...))"),
        ));
    }
    Ok(topic)
}

/// One relation of FROM.
struct Relation {
    topic: Rc<TopicConfig>,
    alias: String,
    columns: Vec<ColumnInfo>,
    window: Option<(WindowPlan, usize)>,
}

fn interval_arg(e: &ast::Expr, what: &str) -> Result<i64, SqlError> {
    let mut params = Params::default();
    let scope = Scope::new();
    let t = Lowerer::new(&scope, &mut params, Purpose::View).lower(e)?;
    match t.expr {
        Expr::Literal(crate::sql::types::Datum::Interval(ms)) if ms > 0 => Ok(ms),
        Expr::Literal(crate::sql::types::Datum::Text(s)) => {
            parse_interval(&s, None).filter(|ms| *ms > 0).ok_or_else(|| {
                SqlError::new(sqlstate::INVALID_PARAMETER_VALUE, format!("{what}: '{s}' is not a positive interval"))
            })
        }
        _ => Err(SqlError::new(
            sqlstate::INVALID_PARAMETER_VALUE,
            format!("{what} must be a positive INTERVAL constant, not {e}"),
        )),
    }
}

fn relation(catalog: &dyn Catalog, factor: &TableFactor) -> Result<Relation, SqlError> {
    let TableFactor::Table { name, alias, args, with_hints, .. } = factor else {
        return Err(SqlError::unsupported(format!("FROM {factor} is not supported in a view")));
    };
    if !with_hints.is_empty() {
        return Err(SqlError::syntax("WITH (...) after a table name: put view options before AS"));
    }
    let fname = name_norm(name).unwrap_or_default();
    let alias_name = alias.as_ref().map(|a| ident_norm(&a.name));
    let Some(args) = args else {
        let topic = typed_topic(catalog, &fname)?;
        let columns = topic_columns(&topic);
        return Ok(Relation { topic, alias: alias_name.unwrap_or(fname), columns, window: None });
    };
    let exprs: Vec<&ast::Expr> = args
        .args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e),
            FunctionArg::ExprNamed { arg: FunctionArgExpr::Expr(e), .. } => Ok(e),
            other => Err(SqlError::syntax(format!("unexpected argument {other} to {fname}"))),
        })
        .collect::<Result<_, _>>()?;
    let usage = match fname.as_str() {
        "tumble" => "TUMBLE(topic, time_column, INTERVAL 'size')",
        "hop" => "HOP(topic, time_column, INTERVAL 'slide', INTERVAL 'size')",
        "session" => "SESSION(topic, time_column, INTERVAL 'gap')",
        other => {
            return Err(SqlError::new(
                sqlstate::UNDEFINED_FUNCTION,
                format!("table function {other} does not exist (use TUMBLE, HOP or SESSION)"),
            ))
        }
    };
    let want = if fname == "hop" { 4 } else { 3 };
    if exprs.len() != want {
        return Err(SqlError::syntax(format!("{usage} takes {want} arguments, not {}", exprs.len())));
    }
    let topic_name = match exprs[0] {
        ast::Expr::Identifier(id) => ident_norm(id),
        other => return Err(SqlError::syntax(format!("the first argument of {usage} names a topic, not {other}"))),
    };
    let topic = typed_topic(catalog, &topic_name)?;
    let columns = topic_columns(&topic);
    let col_name = match exprs[1] {
        ast::Expr::Identifier(id) => ident_norm(id),
        ast::Expr::CompoundIdentifier(p) if p.len() == 2 => ident_norm(&p[1]),
        other => return Err(SqlError::syntax(format!("the second argument of {usage} names a column, not {other}"))),
    };
    let col = columns.iter().position(|c| c.name == col_name).ok_or_else(|| {
        SqlError::new(
            sqlstate::UNDEFINED_COLUMN,
            format!("column \"{col_name}\" does not exist in topic \"{topic_name}\""),
        )
    })?;
    if columns[col].ty != DataType::Timestamp {
        return Err(SqlError::mismatch(format!(
            "the time column of {usage} must be a TIMESTAMP; \"{col_name}\" is {}",
            columns[col].ty.name()
        )));
    }
    let window = match fname.as_str() {
        "tumble" => WindowPlan::Tumble { size_ms: interval_arg(exprs[2], "the window size")? },
        "hop" => {
            let slide_ms = interval_arg(exprs[2], "the hop slide")?;
            let size_ms = interval_arg(exprs[3], "the hop size")?;
            if size_ms % slide_ms != 0 || size_ms / slide_ms > crate::limits::HOP_WINDOWS_PER_EVENT_MAX as i64 {
                return Err(SqlError::new(
                    sqlstate::INVALID_PARAMETER_VALUE,
                    format!(
                        "a hop's size must be a multiple of its slide, at most {} slides",
                        crate::limits::HOP_WINDOWS_PER_EVENT_MAX
                    ),
                ));
            }
            WindowPlan::Hop { slide_ms, size_ms }
        }
        _ => WindowPlan::Session { gap_ms: interval_arg(exprs[2], "the session gap")? },
    };
    Ok(Relation { topic, alias: alias_name.unwrap_or(topic_name), columns, window: Some((window, col)) })
}

fn source_plan(r: &Relation, event_time: Option<usize>) -> SourcePlan {
    let et = event_time.or(r.window.map(|w| w.1)).or(r.topic.schema().and_then(|s| s.event_time));
    SourcePlan {
        topic: r.topic.name.clone(),
        columns: r.columns.clone(),
        event_time: et,
        // A lateness past i64::MAX ms waits forever; a wrapped cast made every event late.
        lateness_ms: i64::try_from(r.topic.lateness_ms).unwrap_or(i64::MAX),
    }
}

/// Splits `a AND b AND c` into its conjuncts.
fn conjuncts<'e>(e: &'e ast::Expr, out: &mut Vec<&'e ast::Expr>) {
    match e {
        ast::Expr::BinaryOp { left, op: BinaryOperator::And, right } => {
            conjuncts(left, out);
            conjuncts(right, out);
        }
        ast::Expr::Nested(inner) => conjuncts(inner, out),
        other => out.push(other),
    }
}

/// Which sides of a join an expression reads: (left, right).
fn sides(e: &Expr, left_width: usize) -> (bool, bool) {
    let mut cols = Vec::new();
    e.columns(&mut cols);
    (cols.iter().any(|c| *c < left_width), cols.iter().any(|c| *c >= left_width))
}

/// Whether an expression contains an aggregate call.
pub fn has_aggregate(e: &ast::Expr) -> bool {
    use ast::Expr as E;
    match e {
        E::Function(f) => {
            let name = name_norm(&f.name).unwrap_or_default();
            if is_aggregate_name(&name) {
                return true;
            }
            match &f.args {
                ast::FunctionArguments::List(l) => l.args.iter().any(|a| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => has_aggregate(x),
                    _ => false,
                }),
                _ => false,
            }
        }
        E::BinaryOp { left, right, .. } => has_aggregate(left) || has_aggregate(right),
        E::UnaryOp { expr, .. }
        | E::Nested(expr)
        | E::Cast { expr, .. }
        | E::IsNull(expr)
        | E::IsNotNull(expr)
        | E::IsTrue(expr)
        | E::IsFalse(expr)
        | E::IsNotTrue(expr)
        | E::IsNotFalse(expr)
        | E::Extract { expr, .. }
        | E::Ceil { expr, .. }
        | E::Floor { expr, .. } => has_aggregate(expr),
        E::Case { operand, conditions, else_result, .. } => {
            operand.as_deref().is_some_and(has_aggregate)
                || conditions.iter().any(|c| has_aggregate(&c.condition) || has_aggregate(&c.result))
                || else_result.as_deref().is_some_and(has_aggregate)
        }
        E::Between { expr, low, high, .. } => has_aggregate(expr) || has_aggregate(low) || has_aggregate(high),
        _ => false,
    }
}

/// The name a SELECT item's column gets (Postgres rules).
pub fn column_name(item_expr: &ast::Expr) -> String {
    match item_expr {
        ast::Expr::Identifier(id) => ident_norm(id),
        ast::Expr::CompoundIdentifier(p) => p.last().map(ident_norm).unwrap_or_default(),
        ast::Expr::Function(f) => name_norm(&f.name).unwrap_or_else(|| "?column?".into()),
        ast::Expr::Cast { expr, .. } | ast::Expr::Nested(expr) => column_name(expr),
        ast::Expr::Extract { .. } => "extract".into(),
        ast::Expr::Case { .. } => "case".into(),
        _ => "?column?".into(),
    }
}

/// The view's options (`WITH (...)` before AS).
pub fn view_options(opts: &ast::CreateTableOptions) -> Result<ViewOptions, SqlError> {
    let list: &[ast::SqlOption] = match opts {
        ast::CreateTableOptions::None => &[],
        ast::CreateTableOptions::With(v)
        | ast::CreateTableOptions::Options(v)
        | ast::CreateTableOptions::Plain(v)
        | ast::CreateTableOptions::TableProperties(v) => v,
    };
    let mut o = ViewOptions::default();
    let bad = |k: &str, v: &str, why: &str| {
        SqlError::new(sqlstate::INVALID_PARAMETER_VALUE, format!("invalid value '{v}' for view option {k}: {why}"))
    };
    for (k, v) in option_pairs(list)? {
        match k.as_str() {
            "late" => {
                o.late = match v.as_str() {
                    "drop" => LatePolicy::Drop,
                    "update" => LatePolicy::Update,
                    s => match s.strip_prefix("side:") {
                        Some(t) if !t.is_empty() => LatePolicy::Side(t.to_string()),
                        _ => return Err(bad(&k, &v, "use 'drop', 'update' or 'side:<topic>'")),
                    },
                }
            }
            "state_ttl" => {
                o.state_ttl_ms = Some(
                    parse_interval(&v, None)
                        .filter(|ms| *ms > 0)
                        .ok_or_else(|| bad(&k, &v, "not a positive interval"))?,
                )
            }
            "changelog" => {
                crate::log::validate_topic_name(&v).map_err(|e| bad(&k, &v, &e))?;
                o.changelog = Some(v);
            }
            "state_rows_max" => {
                o.state_rows_max =
                    v.parse().ok().filter(|n| *n > 0).ok_or_else(|| bad(&k, &v, "not a positive integer"))?
            }
            "start" => {
                o.start = if v.eq_ignore_ascii_case("earliest") {
                    RebuildFrom::Earliest
                } else if let Some(n) = v.strip_prefix("offset:") {
                    RebuildFrom::Offset(n.trim().parse().map_err(|_| bad(&k, &v, "not an offset"))?)
                } else {
                    RebuildFrom::Timestamp(super::types::parse_timestamp(&v).ok_or_else(|| {
                        bad(&k, &v, "use 'earliest', 'offset:N' or a timestamp ('YYYY-MM-DD HH:MM:SS' or RFC 3339)")
                    })?)
                }
            }
            "idle_timeout" => {
                o.idle_timeout_ms = parse_interval(&v, None)
                    .filter(|ms| *ms > 0)
                    .ok_or_else(|| bad(&k, &v, "not a positive interval"))?
            }
            other => {
                return Err(SqlError::new(
                    sqlstate::INVALID_PARAMETER_VALUE,
                    format!(
                    "unknown view option '{other}' (options: late, state_ttl, changelog, state_rows_max, idle_timeout)"
                ),
                ))
            }
        }
    }
    Ok(o)
}

/// Plans a view's query.
pub fn plan_view(catalog: &dyn Catalog, query: &ast::Query, options: ViewOptions) -> Result<PlannedView, SqlError> {
    if query.with.is_some() {
        return Err(SqlError::unsupported("WITH (common table expressions) in a view is not supported"));
    }
    if query.order_by.is_some() || query.limit_clause.is_some() || query.fetch.is_some() {
        return Err(SqlError::unsupported(
            "ORDER BY and LIMIT in a materialized view are not supported: order and limit when you SELECT from it",
        ));
    }
    let select = match query.body.as_ref() {
        SetExpr::Select(s) => s,
        other => return Err(SqlError::unsupported(format!("a view is a SELECT, not {other}"))),
    };
    if select.distinct.is_some() {
        return Err(SqlError::unsupported("SELECT DISTINCT in a view is not supported: use GROUP BY"));
    }
    let [from] = select.from.as_slice() else {
        return Err(SqlError::unsupported("a view reads one topic in FROM (join others with JOIN ... ON)"));
    };
    if from.joins.len() > 1 {
        return Err(SqlError::unsupported("a view joins at most one table or topic"));
    }
    let left = relation(catalog, &from.relation)?;
    let left_width = left.columns.len();
    let mut scope = Scope::new();
    for c in &left.columns {
        scope.push(Some(&left.alias), &c.name, c.ty);
    }
    let mut params = Params::default();
    let mut filter_parts: Vec<Expr> = Vec::new();
    let mut table_join = None;
    let mut interval_join = None;
    let mut left_event_time = None;
    if let Some(join) = from.joins.first() {
        let right = relation(catalog, &join.relation)?;
        if right.window.is_some() {
            return Err(SqlError::unsupported("a window goes on the first relation of FROM"));
        }
        if right.alias == left.alias {
            return Err(SqlError::new(
                sqlstate::DUPLICATE_TABLE,
                format!("table name \"{}\" specified more than once: give one an alias", right.alias),
            ));
        }
        for c in &right.columns {
            scope.push(Some(&right.alias), &c.name, c.ty);
        }
        let (keep_unmatched, on) = match &join.join_operator {
            JoinOperator::Join(JoinConstraint::On(e)) | JoinOperator::Inner(JoinConstraint::On(e)) => (false, e),
            JoinOperator::Left(JoinConstraint::On(e)) | JoinOperator::LeftOuter(JoinConstraint::On(e)) => (true, e),
            _ => return Err(SqlError::unsupported("joins are [INNER] JOIN or LEFT JOIN ... ON")),
        };
        let mut parts = Vec::new();
        conjuncts(on, &mut parts);
        let mut l = Lowerer::new(&scope, &mut params, Purpose::View);
        l.clause = "JOIN conditions";
        if right.topic.is_table() {
            // Stream–table: every primary-key column equals an expression over the stream.
            let pk: Vec<usize> = right
                .topic
                .primary_key
                .iter()
                .map(|k| right.columns.iter().position(|c| &c.name == k).unwrap_or(usize::MAX))
                .collect();
            let mut stream_key: Vec<Option<Expr>> = vec![None; pk.len()];
            for part in parts {
                let mut matched = false;
                if let ast::Expr::BinaryOp { left: a, op: BinaryOperator::Eq, right: b } = part {
                    let (ta, tb) = (l.lower(a)?, l.lower(b)?);
                    for (x, y) in [(&ta, &tb), (&tb, &ta)] {
                        if let Expr::Column(c) = x.expr {
                            if c >= left_width {
                                if let Some(k) = pk.iter().position(|p| *p == c - left_width) {
                                    if sides(&y.expr, left_width) == (true, false) && stream_key[k].is_none() {
                                        stream_key[k] = Some(super::lower::coerce(y.clone(), x.ty, part)?);
                                        matched = true;
                                        break;
                                    }
                                }
                            }
                        }
                    }
                }
                if !matched {
                    if keep_unmatched {
                        return Err(SqlError::unsupported(format!(
                            "LEFT JOIN with a table: the ON clause may only match the table's primary key ({part} does not)"
                        )));
                    }
                    filter_parts.push(l.predicate(part)?);
                }
            }
            let missing: Vec<&str> = right
                .topic
                .primary_key
                .iter()
                .zip(&stream_key)
                .filter(|(_, k)| k.is_none())
                .map(|(n, _)| n.as_str())
                .collect();
            if !missing.is_empty() {
                return Err(SqlError::unsupported(format!(
                    "a join with table \"{}\" must match its whole primary key: add {} to ON",
                    right.alias,
                    missing.iter().map(|m| format!("{}.{m} = ...", right.alias)).collect::<Vec<_>>().join(" AND ")
                )));
            }
            table_join = Some(TableJoinPlan {
                table: right.topic.name.clone(),
                columns: right.columns.clone(),
                primary_key: pk,
                event_time: right.topic.schema().and_then(|s| s.event_time),
                stream_key: stream_key.into_iter().flatten().collect(),
                keep_unmatched,
                op_column: right.columns.iter().position(|c| c.name == crate::view::changelog::OP_COLUMN),
            });
        } else {
            if keep_unmatched {
                return Err(SqlError::unsupported(
                    "LEFT JOIN of two topics is not supported (interval joins are inner)",
                ));
            }
            let mut left_key = Vec::new();
            let mut right_key = Vec::new();
            let mut bounds = None;
            for part in parts {
                match part {
                    ast::Expr::BinaryOp { left: a, op: BinaryOperator::Eq, right: b } => {
                        let (ta, tb) = (l.lower(a)?, l.lower(b)?);
                        let (sa, sb) = (sides(&ta.expr, left_width), sides(&tb.expr, left_width));
                        let (lk, rk) = match (sa, sb) {
                            ((true, false), (false, true)) => (ta, tb),
                            ((false, true), (true, false)) => (tb, ta),
                            _ => {
                                filter_parts.push(l.predicate(part)?);
                                continue;
                            }
                        };
                        let ty = if lk.ty == rk.ty { lk.ty } else { DataType::Double };
                        if !(lk.ty == rk.ty || (lk.ty.is_numeric() && rk.ty.is_numeric())) {
                            return Err(SqlError::mismatch(format!(
                                "join keys {} and {} cannot be compared ({part})",
                                lk.ty.name(),
                                rk.ty.name()
                            )));
                        }
                        let lk = if lk.ty.is_integer() && rk.ty.is_integer() {
                            lk.expr
                        } else {
                            super::lower::coerce(lk, ty, a)?
                        };
                        let mut rk = if rk.ty.is_integer() && ty.is_integer() {
                            rk.expr
                        } else {
                            super::lower::coerce(rk, ty, b)?
                        };
                        rk.map_columns(&|c| c - left_width);
                        left_key.push(lk);
                        right_key.push(rk);
                    }
                    ast::Expr::Between { expr, negated: false, low, high } if bounds.is_none() => {
                        bounds = Some(interval_bounds(&mut l, expr, low, high, left_width, part)?);
                    }
                    other => filter_parts.push(l.predicate(other)?),
                }
            }
            let Some((lower_ms, upper_ms, left_ts, right_ts)) = bounds else {
                return Err(SqlError::unsupported(format!(
                    "a join of two topics is an interval join: add `{r}.ts BETWEEN {a}.ts - INTERVAL '..' AND {a}.ts + INTERVAL '..'` to ON",
                    r = right.alias,
                    a = left.alias
                )));
            };
            if left_key.is_empty() {
                return Err(SqlError::unsupported("an interval join needs an equality on a key (a.k = b.k) in ON"));
            }
            left_event_time = Some(left_ts);
            interval_join = Some(IntervalJoinPlan {
                right: source_plan(&right, Some(right_ts - left_width)),
                left_key,
                right_key,
                lower_ms,
                upper_ms,
            });
        }
    }
    if let Some((_, wcol)) = left.window {
        if let Some(et) = left_event_time {
            if et != wcol {
                return Err(SqlError::unsupported("the window's time column must be the one the interval join bounds"));
            }
        }
    }
    let source = source_plan(&left, left_event_time);
    if let Some(w) = &select.selection {
        let mut l = Lowerer::new(&scope, &mut params, Purpose::View);
        filter_parts.push(l.predicate(w)?);
    }
    let filter = filter_parts.into_iter().reduce(|a, b| Expr::Binary {
        op: super::expr::BinOp::And,
        left: Box::new(a),
        right: Box::new(b),
    });
    let group_by: &[ast::Expr] = match &select.group_by {
        GroupByExpr::Expressions(keys, mods) if mods.is_empty() => keys,
        other => return Err(SqlError::unsupported(format!("{other} is not supported"))),
    };
    let aggregating = !group_by.is_empty()
        || select.having.is_some()
        || select.projection.iter().any(|i| match i {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => has_aggregate(e),
            _ => false,
        });
    if left.window.is_some() && !aggregating {
        return Err(SqlError::unsupported(
            "a window (TUMBLE, HOP, SESSION) needs an aggregation: GROUP BY window_start, window_end, ...",
        ));
    }
    let mut output: Vec<OutputColumn> = Vec::new();
    let mut aggregate = None;
    let mut having = None;
    if aggregating {
        let mut grouping = Grouping { window: left.window.is_some(), ..Grouping::default() };
        let mut saw_window = false;
        for g in group_by {
            let g = resolve_group_ref(g, &select.projection, &scope)?;
            let name = match g {
                ast::Expr::Identifier(id) => Some(ident_norm(id)),
                ast::Expr::CompoundIdentifier(p) if p.len() == 2 => Some(ident_norm(&p[1])),
                _ => None,
            };
            if left.window.is_some() && matches!(name.as_deref(), Some("window_start" | "window_end")) {
                saw_window = true;
                continue;
            }
            let mut l = Lowerer::new(&scope, &mut params, Purpose::View);
            l.clause = "GROUP BY";
            let typed = l.lower(g)?;
            let column = if let Expr::Column(c) = typed.expr { Some(c) } else { None };
            grouping.keys.push(GroupKey { text: g.to_string(), column, typed });
        }
        if left.window.is_some() && !saw_window {
            return Err(SqlError::new(
                sqlstate::GROUPING_ERROR,
                "a windowed aggregation groups by its window: add window_start (or window_end) to GROUP BY",
            ));
        }
        for item in &select.projection {
            let (e, alias) = match item {
                SelectItem::UnnamedExpr(e) => (e, None),
                SelectItem::ExprWithAlias { expr, alias } => (expr, Some(ident_norm(alias))),
                other => {
                    return Err(SqlError::new(
                        sqlstate::GROUPING_ERROR,
                        format!("{other} cannot be used in an aggregating view: name the group keys and aggregates"),
                    ))
                }
            };
            let mut l = Lowerer::new(&scope, &mut params, Purpose::View);
            l.grouping = Some(&mut grouping);
            l.clause = "the SELECT list";
            let t = l.lower(e)?;
            output.push(OutputColumn { name: alias.unwrap_or_else(|| column_name(e)), expr: t.expr, ty: t.ty });
        }
        if let Some(h) = &select.having {
            let mut l = Lowerer::new(&scope, &mut params, Purpose::View);
            l.grouping = Some(&mut grouping);
            l.clause = "HAVING";
            having = Some(l.predicate(h)?);
        }
        if grouping.aggs.is_empty() && grouping.keys.is_empty() {
            return Err(SqlError::new(
                sqlstate::GROUPING_ERROR,
                "an aggregating view needs a group key or an aggregate",
            ));
        }
        aggregate = Some(AggregatePlan {
            key_types: grouping.keys.iter().map(|k| k.typed.ty).collect(),
            keys: grouping.keys.into_iter().map(|k| k.typed.expr).collect(),
            aggs: grouping.aggs.into_iter().map(|(_, a)| a).collect(),
            window: left.window.map(|w| w.0),
        });
    } else {
        for item in &select.projection {
            match item {
                SelectItem::Wildcard(_) => {
                    for (i, c) in scope.columns.iter().enumerate() {
                        output.push(OutputColumn { name: c.name.clone(), expr: Expr::Column(i), ty: c.ty });
                    }
                }
                SelectItem::QualifiedWildcard(ast::SelectItemQualifiedWildcardKind::ObjectName(rel), _) => {
                    let rel = name_norm(rel).unwrap_or_default();
                    if !scope.has_relation(&rel) {
                        return Err(SqlError::new(
                            sqlstate::UNDEFINED_TABLE,
                            format!("missing FROM-clause entry for table \"{rel}\""),
                        ));
                    }
                    for (i, c) in scope.columns.iter().enumerate() {
                        if c.relation.as_deref() == Some(rel.as_str()) {
                            output.push(OutputColumn { name: c.name.clone(), expr: Expr::Column(i), ty: c.ty });
                        }
                    }
                }
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                    let alias = match item {
                        SelectItem::ExprWithAlias { alias, .. } => Some(ident_norm(alias)),
                        _ => None,
                    };
                    let mut l = Lowerer::new(&scope, &mut params, Purpose::View);
                    l.clause = "the SELECT list";
                    let Typed { expr, ty } = l.lower(e)?;
                    output.push(OutputColumn { name: alias.unwrap_or_else(|| column_name(e)), expr, ty });
                }
                other => return Err(SqlError::unsupported(format!("{other} is not supported"))),
            }
        }
    }
    if !params.types.is_empty() {
        return Err(SqlError::syntax("a view cannot have parameters ($1)"));
    }
    let mut seen = std::collections::HashSet::new();
    for c in &mut output {
        if c.ty == DataType::Unknown {
            c.ty = DataType::Text;
        }
        if !seen.insert(c.name.clone()) {
            return Err(SqlError::new(
                sqlstate::DUPLICATE_COLUMN,
                format!("column \"{}\" specified more than once: give it an alias (AS name)", c.name),
            ));
        }
    }
    let key: Vec<usize> = match &aggregate {
        Some(a) => output
            .iter()
            .enumerate()
            // A session's end moves as it grows: it is identified by its start.
            .filter(|(_, c)| match c.expr {
                Expr::Column(i) => {
                    i < a.key_width()
                        && !(matches!(a.window, Some(WindowPlan::Session { .. })) && i == a.keys.len() + 1)
                }
                _ => false,
            })
            .map(|(i, _)| i)
            .collect(),
        None => Vec::new(),
    };
    let columns = output.iter().map(|c| (c.name.clone(), c.ty)).collect();
    Ok(PlannedView {
        plan: ViewPlan { source, table_join, interval_join, filter, aggregate, having, output, key, options },
        columns,
    })
}

/// GROUP BY may name a SELECT item by position (`GROUP BY 1`) or by alias.
fn resolve_group_ref<'e>(g: &'e ast::Expr, items: &'e [SelectItem], scope: &Scope) -> Result<&'e ast::Expr, SqlError> {
    let item_expr = |i: &'e SelectItem| match i {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => Some(e),
        _ => None,
    };
    if let ast::Expr::Value(v) = g {
        if let ast::Value::Number(n, _) = &v.value {
            let k: usize = n.parse().map_err(|_| SqlError::syntax(format!("GROUP BY {n}")))?;
            return items.get(k.wrapping_sub(1)).and_then(item_expr).ok_or_else(|| {
                SqlError::new(sqlstate::INVALID_PARAMETER_VALUE, format!("GROUP BY position {k} is not in select list"))
            });
        }
    }
    if let ast::Expr::Identifier(id) = g {
        let name = ident_norm(id);
        if scope.resolve(None, &name).is_err() {
            for i in items {
                if let SelectItem::ExprWithAlias { expr, alias } = i {
                    if ident_norm(alias) == name {
                        return Ok(expr);
                    }
                }
            }
        }
    }
    Ok(g)
}

/// `right.ts BETWEEN left.ts + lo AND left.ts + hi` (either side first): the bounds of
/// the right event time relative to the left, and the two time columns.
fn interval_bounds(
    l: &mut Lowerer<'_>,
    expr: &ast::Expr,
    low: &ast::Expr,
    high: &ast::Expr,
    left_width: usize,
    whole: &ast::Expr,
) -> Result<(i64, i64, usize, usize), SqlError> {
    let bad = || {
        SqlError::unsupported(format!(
            "interval join bounds must be `b.ts BETWEEN a.ts - INTERVAL '..' AND a.ts + INTERVAL '..'` over the two topics' TIMESTAMP columns ({whole})"
        ))
    };
    let x = l.lower(expr)?;
    let Expr::Column(xc) = x.expr else { return Err(bad()) };
    if x.ty != DataType::Timestamp {
        return Err(bad());
    }
    // Each bound: column ± constant interval.
    let mut bound = |e: &ast::Expr| -> Result<(usize, i64), SqlError> {
        let t = l.lower(e)?;
        if t.ty != DataType::Timestamp {
            return Err(bad());
        }
        match t.expr {
            Expr::Column(c) => Ok((c, 0)),
            Expr::Binary { op, left, right } => match (op, *left, *right) {
                (super::expr::BinOp::Add, Expr::Column(c), Expr::Literal(crate::sql::types::Datum::Interval(ms)))
                | (super::expr::BinOp::Add, Expr::Literal(crate::sql::types::Datum::Interval(ms)), Expr::Column(c)) => {
                    Ok((c, ms))
                }
                (super::expr::BinOp::Sub, Expr::Column(c), Expr::Literal(crate::sql::types::Datum::Interval(ms))) => {
                    Ok((c, -ms))
                }
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    };
    let (lc, lo) = bound(low)?;
    let (hc, hi) = bound(high)?;
    if lc != hc || lo > hi {
        return Err(bad());
    }
    let x_is_right = xc >= left_width;
    if x_is_right == (lc >= left_width) {
        return Err(bad());
    }
    if x_is_right {
        // right ∈ [left + lo, left + hi]
        Ok((lo, hi, lc, xc))
    } else {
        // left ∈ [right + lo, right + hi]  ⇔  right ∈ [left - hi, left - lo]
        Ok((-hi, -lo, xc, lc))
    }
}
