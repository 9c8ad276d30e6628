//! Planning and finishing `SELECT` over a view: what each shard is asked for (a filter,
//! a group key for a point lookup, a row limit), and what is done with the gathered rows
//! (projection, grouping and aggregates, ORDER BY, OFFSET, LIMIT).

use sqlparser::ast::{self, GroupByExpr, LimitClause, OrderByKind, OrderBySort, SelectItem, SetExpr};

use super::error::{sqlstate, SqlError};
use super::expr::{BinOp, Expr};
use super::lower::{GroupKey, Grouping, Lowerer, Params, Purpose};
use super::parse::{ident_norm, name_norm};
use super::plan_view::{column_name, has_aggregate, Catalog};
use super::scope::Scope;
use super::types::{DataType, Datum, OwnedDatum};
use crate::dataflow::accumulator::{Acc, Position};
use crate::dataflow::plan::AggPlan;
use crate::view::read::ReadRequest;

#[derive(Debug, Clone, PartialEq)]
pub struct OrderKey {
    pub expr: Expr,
    pub desc: bool,
    pub nulls_first: bool,
}

/// What is done with the rows the shards return.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// Order (over the view's row), then project.
    Rows { project: Vec<Expr>, order: Vec<OrderKey> },
    /// Group and aggregate; HAVING, projection and order are over the group row.
    Grouped { keys: Vec<Expr>, aggs: Vec<AggPlan>, having: Option<Expr>, project: Vec<Expr>, order: Vec<OrderKey> },
}

#[derive(Debug, Clone)]
pub struct QueryPlan {
    /// The view read; `None`: a SELECT without FROM (one empty row).
    pub view: Option<String>,
    pub request: ReadRequest,
    pub shape: Shape,
    pub offset: usize,
    pub limit: Option<usize>,
    pub columns: Vec<(String, DataType)>,
}

fn constant_usize(e: &ast::Expr, what: &str, params: &mut Params) -> Result<usize, SqlError> {
    let scope = Scope::new();
    let t = Lowerer::new(&scope, params, Purpose::Query).lower_as(e, DataType::BigInt)?;
    match t {
        Expr::Literal(Datum::Int(n)) if n >= 0 => Ok(n as usize),
        Expr::Literal(Datum::Null) => Ok(usize::MAX),
        _ => Err(SqlError::new(
            sqlstate::INVALID_PARAMETER_VALUE,
            format!("{what} must be a non-negative integer, not {e}"),
        )),
    }
}

/// Plans a SELECT.
pub fn plan_query(catalog: &dyn Catalog, query: &ast::Query, params: &mut Params) -> Result<QueryPlan, SqlError> {
    if query.with.is_some() {
        return Err(SqlError::unsupported("WITH (common table expressions) is not supported"));
    }
    if query.fetch.is_some() || !query.locks.is_empty() {
        return Err(SqlError::unsupported("FETCH and FOR UPDATE are not supported"));
    }
    let select = match query.body.as_ref() {
        SetExpr::Select(s) => s,
        SetExpr::Query(q) if query.order_by.is_none() && query.limit_clause.is_none() => {
            return plan_query(catalog, q, params)
        }
        other => return Err(SqlError::unsupported(format!("{other} is not supported: SELECT ... FROM view"))),
    };
    let (offset, limit) = match &query.limit_clause {
        None => (0, None),
        Some(LimitClause::LimitOffset { limit, offset, .. }) => {
            let l = match limit {
                Some(e) => Some(constant_usize(e, "LIMIT", params)?),
                None => None,
            };
            let o = match offset {
                Some(o) => constant_usize(&o.value, "OFFSET", params)?,
                None => 0,
            };
            (o, l.filter(|l| *l != usize::MAX))
        }
        Some(other) => return Err(SqlError::unsupported(format!("{other} is not supported: use LIMIT n OFFSET m"))),
    };
    // FROM: one view, or nothing.
    let (view, scope, view_plan) = match select.from.as_slice() {
        [] => (None, Scope::new(), None),
        [twj] if twj.joins.is_empty() => {
            let ast::TableFactor::Table { name, alias, args: None, .. } = &twj.relation else {
                return Err(SqlError::unsupported(format!(
                    "FROM {} is not supported: SELECT reads a materialized view",
                    twj.relation
                )));
            };
            let vname = name_norm(name).unwrap_or_default();
            let Some((columns, plan)) = catalog.view(&vname) else {
                if catalog.topic(&vname).is_some() {
                    return Err(SqlError::new(
                        sqlstate::WRONG_OBJECT_TYPE,
                        format!(
                            "\"{vname}\" is a topic: SELECT reads materialized views (CREATE MATERIALIZED VIEW v AS SELECT ... FROM {vname}); Kafka and HTTP consumers read topics"
                        ),
                    ));
                }
                return Err(SqlError::new(sqlstate::UNDEFINED_TABLE, format!("relation \"{vname}\" does not exist")));
            };
            let rel = alias.as_ref().map(|a| ident_norm(&a.name)).unwrap_or_else(|| vname.clone());
            let mut scope = Scope::new();
            for (n, t) in &columns {
                scope.push(Some(&rel), n, *t);
            }
            (Some(vname), scope, Some(plan))
        }
        _ => return Err(SqlError::unsupported("SELECT reads one view: joins between views are not supported")),
    };
    let mut request = ReadRequest::default();
    if let Some(w) = &select.selection {
        let mut l = Lowerer::new(&scope, params, Purpose::Query);
        let f = l.predicate(w)?;
        // A lookup: equality on every group key of an aggregating view.
        if let Some(plan) = &view_plan {
            if let Some(agg) = &plan.aggregate {
                request.group_key = lookup_key(&f, plan, agg.keys.len(), &agg.key_types);
            }
        }
        request.filter = Some(f);
    }
    let group_by: &[ast::Expr] = match &select.group_by {
        GroupByExpr::Expressions(keys, mods) if mods.is_empty() => keys,
        other => return Err(SqlError::unsupported(format!("{other} is not supported"))),
    };
    let distinct = match &select.distinct {
        None | Some(ast::Distinct::All) => false,
        Some(ast::Distinct::Distinct) => true,
        Some(ast::Distinct::On(_)) => return Err(SqlError::unsupported("DISTINCT ON is not supported")),
    };
    let aggregating = !group_by.is_empty()
        || distinct
        || select.having.is_some()
        || select.projection.iter().any(|i| match i {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => has_aggregate(e),
            _ => false,
        });
    let items = expand_items(&select.projection, &scope)?;
    let order_items: Vec<(&ast::Expr, bool, bool)> = match &query.order_by {
        None => Vec::new(),
        Some(ob) => match &ob.kind {
            OrderByKind::Expressions(v) => v
                .iter()
                .map(|o| {
                    let desc = matches!(o.options.sort, Some(OrderBySort::Desc));
                    (&o.expr, desc, o.options.nulls_first.unwrap_or(desc))
                })
                .collect(),
            OrderByKind::All(_) => return Err(SqlError::unsupported("ORDER BY ALL is not supported")),
        },
    };
    let mut columns = Vec::with_capacity(items.len());
    let shape = if aggregating {
        let mut grouping = Grouping::default();
        let key_exprs: Vec<&ast::Expr> = if distinct && group_by.is_empty() {
            items.iter().filter_map(|(e, _)| *e).collect()
        } else {
            group_by.iter().map(|g| resolve_item_ref(g, &items, &scope)).collect::<Result<_, _>>()?
        };
        for g in key_exprs {
            let typed = Lowerer::new(&scope, params, Purpose::Query).lower(g)?;
            let column = if let Expr::Column(c) = typed.expr { Some(c) } else { None };
            grouping.keys.push(GroupKey { text: g.to_string(), column, typed });
        }
        let mut project = Vec::with_capacity(items.len());
        for (e, name) in &items {
            let Some(e) = e else {
                return Err(SqlError::new(sqlstate::GROUPING_ERROR, "* cannot be used with GROUP BY or aggregates"));
            };
            let mut l = Lowerer::new(&scope, params, Purpose::Query);
            l.grouping = Some(&mut grouping);
            l.clause = "the SELECT list";
            let t = l.lower(e)?;
            columns.push((name.clone(), if t.ty == DataType::Unknown { DataType::Text } else { t.ty }));
            project.push(t.expr);
        }
        let having = match &select.having {
            Some(h) => {
                let mut l = Lowerer::new(&scope, params, Purpose::Query);
                l.grouping = Some(&mut grouping);
                l.clause = "HAVING";
                Some(l.predicate(h)?)
            }
            None => None,
        };
        let mut order = Vec::new();
        for (e, desc, nulls_first) in &order_items {
            let e = resolve_item_ref(e, &items, &scope)?;
            let mut l = Lowerer::new(&scope, params, Purpose::Query);
            l.grouping = Some(&mut grouping);
            l.clause = "ORDER BY";
            order.push(OrderKey { expr: l.lower(e)?.expr, desc: *desc, nulls_first: *nulls_first });
        }
        Shape::Grouped {
            keys: grouping.keys.into_iter().map(|k| k.typed.expr).collect(),
            aggs: grouping.aggs.into_iter().map(|(_, a)| a).collect(),
            having,
            project,
            order,
        }
    } else {
        let mut project = Vec::with_capacity(items.len());
        for (e, name) in &items {
            let t = match e {
                Some(e) => {
                    let mut l = Lowerer::new(&scope, params, Purpose::Query);
                    l.clause = "the SELECT list";
                    l.lower(e)?
                }
                None => {
                    // An expanded `*` column: its index is in the name's position.
                    let (i, ty) = scope.resolve(None, name).unwrap_or((project.len(), DataType::Text));
                    super::lower::Typed { expr: Expr::Column(i), ty }
                }
            };
            columns.push((name.clone(), if t.ty == DataType::Unknown { DataType::Text } else { t.ty }));
            project.push(t.expr);
        }
        let mut order = Vec::new();
        for (e, desc, nulls_first) in &order_items {
            let e = resolve_item_ref(e, &items, &scope)?;
            let mut l = Lowerer::new(&scope, params, Purpose::Query);
            l.clause = "ORDER BY";
            order.push(OrderKey { expr: l.lower(e)?.expr, desc: *desc, nulls_first: *nulls_first });
        }
        // Without an order, the shards can stop early.
        if order.is_empty() {
            request.limit = limit.map(|l| l.saturating_add(offset));
        }
        Shape::Rows { project, order }
    };
    Ok(QueryPlan { view, request, shape, offset, limit, columns })
}

/// The SELECT list with `*` expanded: (expression, column name); `None` for a column of `*`.
fn expand_items<'q>(items: &'q [SelectItem], scope: &Scope) -> Result<Vec<(Option<&'q ast::Expr>, String)>, SqlError> {
    let mut out = Vec::new();
    for item in items {
        match item {
            SelectItem::UnnamedExpr(e) => out.push((Some(e), column_name(e))),
            SelectItem::ExprWithAlias { expr, alias } => out.push((Some(expr), ident_norm(alias))),
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                if scope.is_empty() {
                    return Err(SqlError::syntax("SELECT * with no tables specified is not valid"));
                }
                for c in &scope.columns {
                    out.push((None, c.name.clone()));
                }
            }
            other => return Err(SqlError::unsupported(format!("{other} is not supported"))),
        }
    }
    Ok(out)
}

/// ORDER BY and GROUP BY may name an output column by position or by alias.
fn resolve_item_ref<'e>(
    e: &'e ast::Expr,
    items: &[(Option<&'e ast::Expr>, String)],
    scope: &Scope,
) -> Result<&'e ast::Expr, SqlError> {
    if let ast::Expr::Value(v) = e {
        if let ast::Value::Number(n, _) = &v.value {
            let k: usize = n.parse().unwrap_or(0);
            return match items.get(k.wrapping_sub(1)) {
                Some((Some(x), _)) => Ok(x),
                Some((None, _)) => Ok(e),
                None => {
                    Err(SqlError::new(sqlstate::INVALID_PARAMETER_VALUE, format!("position {n} is not in select list")))
                }
            };
        }
    }
    if let ast::Expr::Identifier(id) = e {
        let name = ident_norm(id);
        if scope.resolve(None, &name).is_err() {
            if let Some((Some(x), _)) = items.iter().find(|(_, n)| *n == name) {
                return Ok(x);
            }
        }
    }
    Ok(e)
}

/// If `filter` fixes every group key of the view (`k = constant` conjuncts on output
/// columns that are the keys), the encoded group key: the lookup goes to one shard.
fn lookup_key(
    filter: &Expr,
    plan: &crate::dataflow::plan::ViewPlan,
    nkeys: usize,
    types: &[DataType],
) -> Option<Vec<u8>> {
    if nkeys == 0 {
        return None;
    }
    let mut values: Vec<Option<OwnedDatum>> = vec![None; nkeys];
    let mut stack = vec![filter];
    while let Some(e) = stack.pop() {
        match e {
            Expr::Binary { op: BinOp::And, left, right } => {
                stack.push(left);
                stack.push(right);
            }
            Expr::Binary { op: BinOp::Eq, left, right } => {
                let (col, v) = match (left.as_ref(), right.as_ref()) {
                    (Expr::Column(c), Expr::Literal(v)) | (Expr::Literal(v), Expr::Column(c)) => (*c, v),
                    _ => continue,
                };
                if let Some(Expr::Column(k)) = plan.output.get(col).map(|o| &o.expr) {
                    if *k < nkeys && !v.is_null() {
                        values[*k] = Some(super::expr::cast(v.clone(), types[*k]).into_owned());
                    }
                }
            }
            _ => {}
        }
    }
    let mut key = Vec::new();
    for v in values {
        let v = v?;
        if v.is_null() {
            return None;
        }
        v.encode_key(&mut key);
    }
    Some(key)
}

fn sort_rows(rows: &mut [(Vec<OwnedDatum>, Vec<OwnedDatum>)], order: &[OrderKey]) {
    rows.sort_by(|(a, _), (b, _)| {
        for (i, k) in order.iter().enumerate() {
            let (x, y) = (&a[i], &b[i]);
            let o = match (x.is_null(), y.is_null()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => {
                    if k.nulls_first {
                        std::cmp::Ordering::Less
                    } else {
                        std::cmp::Ordering::Greater
                    }
                }
                (false, true) => {
                    if k.nulls_first {
                        std::cmp::Ordering::Greater
                    } else {
                        std::cmp::Ordering::Less
                    }
                }
                _ => {
                    let o = x.sort_cmp(y);
                    if k.desc {
                        o.reverse()
                    } else {
                        o
                    }
                }
            };
            if o != std::cmp::Ordering::Equal {
                return o;
            }
        }
        std::cmp::Ordering::Equal
    });
}

impl QueryPlan {
    /// Finishes the query over the rows gathered from the shards.
    pub fn finish(&self, rows: Vec<Vec<OwnedDatum>>) -> Vec<Vec<OwnedDatum>> {
        let (base, order, project): (Vec<Vec<OwnedDatum>>, &[OrderKey], &[Expr]) = match &self.shape {
            Shape::Rows { project, order } => (rows, order, project),
            Shape::Grouped { keys, aggs, having, project, order } => {
                (group_rows(rows, keys, aggs, having.as_ref()), order, project)
            }
        };
        let mut keyed: Vec<(Vec<OwnedDatum>, Vec<OwnedDatum>)> =
            base.into_iter().map(|r| (order.iter().map(|k| k.expr.eval(&r).into_owned()).collect(), r)).collect();
        if !order.is_empty() {
            sort_rows(&mut keyed, order);
        }
        keyed
            .into_iter()
            .skip(self.offset)
            .take(self.limit.unwrap_or(usize::MAX))
            .map(|(_, r)| project.iter().map(|e| e.eval(&r).into_owned()).collect())
            .collect()
    }
}

/// Groups rows by `keys` and computes the aggregates: group rows (keys, then results).
fn group_rows(
    rows: Vec<Vec<OwnedDatum>>,
    keys: &[Expr],
    aggs: &[AggPlan],
    having: Option<&Expr>,
) -> Vec<Vec<OwnedDatum>> {
    let mut index: hashbrown::HashMap<Vec<u8>, usize> = hashbrown::HashMap::new();
    let mut groups: Vec<(Vec<OwnedDatum>, Vec<Acc>)> = Vec::new();
    let mut scratch = Vec::new();
    for (n, row) in rows.iter().enumerate() {
        scratch.clear();
        for k in keys {
            k.eval(row).encode_key(&mut scratch);
        }
        let i = match index.get(&scratch) {
            Some(i) => *i,
            None => {
                groups.push((
                    keys.iter().map(|k| k.eval(row).into_owned()).collect(),
                    aggs.iter().map(|a| a.func.new_acc()).collect(),
                ));
                index.insert(scratch.clone(), groups.len() - 1);
                groups.len() - 1
            }
        };
        let pos = Position { ts: 0, partition: 0, offset: n as u64 };
        for (acc, a) in groups[i].1.iter_mut().zip(aggs) {
            let v = a.arg.as_ref().map_or(Datum::Null, |e| e.eval(row));
            acc.update(a.func, &v, pos);
        }
    }
    // An aggregate without GROUP BY has one row, even over no rows.
    if groups.is_empty() && keys.is_empty() {
        groups.push((Vec::new(), aggs.iter().map(|a| a.func.new_acc()).collect()));
    }
    groups
        .into_iter()
        .map(|(mut values, accs)| {
            values.extend(accs.iter().zip(aggs).map(|(acc, a)| acc.result(a.func, a.result_type)));
            values
        })
        .filter(|row| having.is_none_or(|h| h.holds(row)))
        .collect()
}
