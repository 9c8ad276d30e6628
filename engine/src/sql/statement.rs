//! Planning a statement: from parsed SQL to what the server executes, with everything
//! checked that can be checked before anything changes (so nothing is half-created).

use sqlparser::ast::{self, ColumnOption, ObjectType, SetExpr, Statement, TableConstraint};

use super::error::{sqlstate, SqlError};
use super::expr::Expr;
use super::lower::{data_type, Lowerer, Params, Purpose};
use super::parse::{ident_norm, name_norm, option_pairs, RebuildFrom, Stmt};
use super::plan_query::{plan_query, QueryPlan};
use super::plan_view::{plan_view, view_options, Catalog, PlannedView};
use super::scope::Scope;
use super::types::{parse_interval, DataType, Datum};
use crate::log::TopicConfig;
use crate::record::schema::{Column, ColumnType, Schema, Value, SCHEMA_COLUMNS_MAX};

/// What a DROP or SHOW is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Topic,
    Table,
    View,
}

impl ObjectKind {
    pub fn name(self) -> &'static str {
        match self {
            ObjectKind::Topic => "TOPIC",
            ObjectKind::Table => "TABLE",
            ObjectKind::View => "MATERIALIZED VIEW",
        }
    }
}

/// A planned statement.
#[derive(Debug, Clone)]
pub enum Planned {
    CreateTopic {
        config: TopicConfig,
        if_not_exists: bool,
        kind: ObjectKind,
    },
    CreateView {
        name: String,
        sql: String,
        planned: Box<PlannedView>,
        if_not_exists: bool,
    },
    Drop {
        kind: ObjectKind,
        names: Vec<String>,
        if_exists: bool,
    },
    Show(ObjectKind),
    /// Rows for a topic, grouped by partition: (partition key, row values).
    Insert {
        topic: String,
        rows: Vec<(Option<Vec<u8>>, Vec<Value>)>,
    },
    Select(Box<QueryPlan>),
    /// `SHOW name`: a session setting.
    ShowVariable {
        name: String,
    },
    /// A statement with nothing to do but answer (`SET`, `BEGIN`, `COMMIT`, ...).
    Command {
        tag: String,
    },
    Rebuild {
        view: String,
        from: RebuildFrom,
        options: Vec<(String, String)>,
    },
    CancelRebuild {
        view: String,
    },
    ExplainRebuild {
        view: String,
        from: RebuildFrom,
    },
}

impl Planned {
    /// The columns of the rows this statement returns (empty: none).
    pub fn columns(&self) -> Vec<(String, DataType)> {
        let text = |names: &[&str]| names.iter().map(|n| (n.to_string(), DataType::Text)).collect();
        match self {
            Planned::Select(q) => q.columns.clone(),
            Planned::Show(ObjectKind::Topic) => vec![
                ("name".into(), DataType::Text),
                ("partitions".into(), DataType::Int),
                ("durability".into(), DataType::Text),
                ("schema".into(), DataType::Text),
            ],
            Planned::Show(ObjectKind::Table) => vec![
                ("name".into(), DataType::Text),
                ("partitions".into(), DataType::Int),
                ("primary_key".into(), DataType::Text),
                ("schema".into(), DataType::Text),
            ],
            Planned::Show(ObjectKind::View) => vec![
                ("name".into(), DataType::Text),
                ("version".into(), DataType::Int),
                ("state".into(), DataType::Text),
                ("rows".into(), DataType::BigInt),
                ("events".into(), DataType::BigInt),
                ("watermark".into(), DataType::Timestamp),
                ("definition".into(), DataType::Text),
                ("progress".into(), DataType::Double),
            ],
            Planned::ShowVariable { name } => vec![(name.clone(), DataType::Text)],
            Planned::ExplainRebuild { .. } => text(&["item", "value"]),
            _ => Vec::new(),
        }
    }
}

fn options_of(opts: &ast::CreateTableOptions) -> &[ast::SqlOption] {
    match opts {
        ast::CreateTableOptions::None => &[],
        ast::CreateTableOptions::With(v)
        | ast::CreateTableOptions::Options(v)
        | ast::CreateTableOptions::Plain(v)
        | ast::CreateTableOptions::TableProperties(v) => v,
    }
}

fn constant(e: &ast::Expr, ty: DataType, params: &mut Params) -> Result<Datum<'static>, SqlError> {
    let scope = Scope::new();
    match Lowerer::new(&scope, params, Purpose::Query).lower_as(e, ty)? {
        Expr::Literal(d) => Ok(d),
        other => {
            // Constant expressions (`1 + 2`, `now() - INTERVAL '1' HOUR`) evaluate now.
            let none: Vec<Datum<'static>> = Vec::new();
            let v = other.eval(&none).into_owned();
            let mut cols = Vec::new();
            other.columns(&mut cols);
            if cols.is_empty() {
                Ok(v)
            } else {
                Err(SqlError::syntax(format!("{e} is not a constant")))
            }
        }
    }
}

/// `CREATE TOPIC` / `CREATE TABLE`: the topic's configuration.
fn plan_create_topic(ct: &ast::CreateTable, kind: ObjectKind, params: &mut Params) -> Result<Planned, SqlError> {
    let name = name_norm(&ct.name).ok_or_else(|| SqlError::syntax("missing name"))?;
    crate::log::validate_topic_name(&name).map_err(|e| SqlError::new(sqlstate::INVALID_PARAMETER_VALUE, e))?;
    if ct.query.is_some() {
        return Err(SqlError::unsupported("CREATE ... AS SELECT is not supported: use CREATE MATERIALIZED VIEW"));
    }
    if ct.columns.is_empty() || ct.columns.len() > SCHEMA_COLUMNS_MAX {
        return Err(SqlError::syntax(format!(
            "a {} needs between 1 and {SCHEMA_COLUMNS_MAX} columns: CREATE {} {name} (col TYPE, ...)",
            kind.name().to_lowercase(),
            kind.name()
        )));
    }
    let mut columns: Vec<Column> = Vec::with_capacity(ct.columns.len());
    let mut primary_key: Vec<String> = Vec::new();
    for c in &ct.columns {
        let cname = ident_norm(&c.name);
        if columns.iter().any(|x| x.name == cname) {
            return Err(SqlError::new(
                sqlstate::DUPLICATE_COLUMN,
                format!("column \"{cname}\" specified more than once"),
            ));
        }
        let ty = data_type(&c.data_type)?;
        if ty == DataType::Interval {
            return Err(SqlError::unsupported(format!(
                "column \"{cname}\": INTERVAL columns are not supported (use BIGINT milliseconds)"
            )));
        }
        let mut nullable = true;
        let mut default = None;
        for o in &c.options {
            match &o.option {
                ColumnOption::NotNull => nullable = false,
                ColumnOption::Null => nullable = true,
                ColumnOption::Default(e) => {
                    let v = constant(e, ty, params)?;
                    default = Some(v.to_value(ty).ok_or_else(|| {
                        SqlError::mismatch(format!("default for column \"{cname}\" is not a {}", ty.name()))
                    })?);
                }
                ColumnOption::PrimaryKey(_) => {
                    primary_key.push(cname.clone());
                    nullable = false;
                }
                other => return Err(SqlError::unsupported(format!("column option {other} is not supported"))),
            }
        }
        columns.push(Column { name: cname, ty: ty.to_column(), nullable, default });
    }
    for constraint in &ct.constraints {
        match constraint {
            TableConstraint::PrimaryKey(pk) => {
                for ic in &pk.columns {
                    match &ic.column.expr {
                        ast::Expr::Identifier(id) => primary_key.push(ident_norm(id)),
                        other => return Err(SqlError::unsupported(format!("PRIMARY KEY on {other} is not supported"))),
                    }
                }
            }
            other => return Err(SqlError::unsupported(format!("constraint {other} is not supported"))),
        }
    }
    for k in &primary_key {
        let Some(c) = columns.iter_mut().find(|c| &c.name == k) else {
            return Err(SqlError::new(
                sqlstate::UNDEFINED_COLUMN,
                format!("primary key column \"{k}\" does not exist"),
            ));
        };
        c.nullable = false;
    }
    match kind {
        ObjectKind::Table if primary_key.is_empty() => {
            return Err(SqlError::syntax(format!(
                "a table is keyed: CREATE TABLE {name} (..., PRIMARY KEY (col)); a stream without a key is CREATE TOPIC"
            )))
        }
        ObjectKind::Topic if !primary_key.is_empty() => {
            return Err(SqlError::syntax("a topic has no primary key: use CREATE TABLE for a keyed changelog"))
        }
        _ => {}
    }
    let mut config = TopicConfig::new(&name, crate::limits::SQL_PARTITIONS_DEFAULT);
    config.primary_key = primary_key;
    let mut event_time = None;
    let bad = |k: &str, v: &str, why: String| {
        SqlError::new(sqlstate::INVALID_PARAMETER_VALUE, format!("invalid value '{v}' for option {k}: {why}"))
    };
    for (k, v) in option_pairs(options_of(&ct.table_options))? {
        match k.as_str() {
            "partitions" => {
                config.partitions = v.parse().map_err(|_| bad(&k, &v, "not a positive integer".into()))?;
            }
            "durability" => config.durability = v.parse().map_err(|e: String| bad(&k, &v, e))?,
            "event_time" => event_time = Some(v),
            "lateness" => {
                config.lateness_ms = parse_interval(&v, None)
                    .filter(|ms| *ms >= 0)
                    .ok_or_else(|| bad(&k, &v, "not an interval such as '5 seconds'".into()))?
                    as u64
            }
            "retention_ms" | "retention_bytes" | "segment_bytes" | "dead_letter_topic" => {
                let setting = match k.as_str() {
                    "retention_ms" => "retention.ms",
                    "retention_bytes" => "retention.bytes",
                    "segment_bytes" => "segment.bytes",
                    _ => "sluice.dead.letter.topic",
                };
                config.apply_settings([(setting, v.as_str())]).map_err(|e| bad(&k, &v, e))?;
            }
            "retention" => {
                // A negative retention would delete every sealed segment at the next check.
                let ms = parse_interval(&v, None)
                    .filter(|ms| *ms >= 0)
                    .ok_or_else(|| bad(&k, &v, "not a non-negative interval".into()))?;
                config.retention_ms = Some(ms as u64);
            }
            other => {
                return Err(SqlError::new(
                    sqlstate::INVALID_PARAMETER_VALUE,
                    format!(
                        "unknown option '{other}' (options: partitions, durability, event_time, lateness, retention_ms, retention_bytes, segment_bytes, dead_letter_topic)"
                    ),
                ))
            }
        }
    }
    let event_time = match event_time {
        None => None,
        Some(col) => {
            let i = columns.iter().position(|c| c.name == col).ok_or_else(|| {
                SqlError::new(sqlstate::UNDEFINED_COLUMN, format!("event_time column \"{col}\" does not exist"))
            })?;
            if !matches!(columns[i].ty, ColumnType::Timestamp | ColumnType::BigInt) {
                return Err(SqlError::mismatch(format!("event_time column \"{col}\" must be TIMESTAMP or BIGINT")));
            }
            Some(i)
        }
    };
    config.schemas = vec![Schema { version: 1, columns, event_time }];
    config.validate().map_err(|e| SqlError::new(sqlstate::INVALID_PARAMETER_VALUE, e))?;
    Ok(Planned::CreateTopic { config, if_not_exists: ct.if_not_exists, kind })
}

/// The record key of a row of a table: its primary key values as a JSON array.
pub fn table_key(schema: &Schema, primary_key: &[String], row: &[Value]) -> Vec<u8> {
    let values: Vec<serde_json::Value> = primary_key
        .iter()
        .filter_map(|k| schema.columns.iter().position(|c| &c.name == k))
        .map(|i| crate::record::schema::value_to_json(row.get(i).unwrap_or(&Value::Null)))
        .collect();
    serde_json::Value::Array(values).to_string().into_bytes()
}

fn is_placeholder(e: &ast::Expr) -> bool {
    matches!(e, ast::Expr::Value(v) if matches!(v.value, ast::Value::Placeholder(_)))
}

fn plan_insert(catalog: &dyn Catalog, ins: &ast::Insert, params: &mut Params) -> Result<Planned, SqlError> {
    let ast::TableObject::TableName(table) = &ins.table else {
        return Err(SqlError::unsupported("INSERT INTO a table function is not supported"));
    };
    let name = name_norm(table).unwrap_or_default();
    if ins.on.is_some() || ins.returning.is_some() {
        return Err(SqlError::unsupported("INSERT ... ON CONFLICT / RETURNING is not supported"));
    }
    let Some(topic) = catalog.topic(&name) else {
        if catalog.view(&name).is_some() {
            return Err(SqlError::new(sqlstate::WRONG_OBJECT_TYPE, format!("cannot insert into view \"{name}\"")));
        }
        return Err(SqlError::new(sqlstate::UNDEFINED_TABLE, format!("relation \"{name}\" does not exist")));
    };
    let Some(source) = &ins.source else {
        return Err(SqlError::unsupported("INSERT ... DEFAULT VALUES is not supported"));
    };
    let SetExpr::Values(values) = source.body.as_ref() else {
        return Err(SqlError::unsupported(
            "INSERT ... SELECT is not supported: a view's changelog topic carries its rows",
        ));
    };
    let Some(schema) = topic.schema() else {
        // A raw topic: VALUES (value) or (key, value), as text.
        let mut rows = Vec::with_capacity(values.rows.len());
        for row in &values.rows {
            let texts: Vec<Option<String>> = row
                .iter()
                .map(|e| constant(e, DataType::Text, params).map(|d| d.to_pg_text()))
                .collect::<Result<_, _>>()?;
            let (key, value) = match texts.as_slice() {
                [v] => (None, v.clone()),
                [k, v] => (k.clone().map(String::into_bytes), v.clone()),
                _ => {
                    return Err(SqlError::syntax(format!(
                        "topic \"{name}\" is raw: insert VALUES (value) or (key, value)"
                    )))
                }
            };
            rows.push((key, vec![Value::Bytes(value.unwrap_or_default().into_bytes())]));
        }
        return Ok(Planned::Insert { topic: name, rows });
    };
    let targets: Vec<usize> = if ins.columns.is_empty() {
        (0..schema.columns.len()).collect()
    } else {
        ins.columns
            .iter()
            .map(|c| {
                let cname = name_norm(c).unwrap_or_default();
                schema.columns.iter().position(|x| x.name == cname).ok_or_else(|| {
                    SqlError::new(
                        sqlstate::UNDEFINED_COLUMN,
                        format!("column \"{cname}\" of relation \"{name}\" does not exist"),
                    )
                })
            })
            .collect::<Result<_, _>>()?
    };
    let mut rows = Vec::with_capacity(values.rows.len());
    for row in &values.rows {
        if row.len() != targets.len() {
            return Err(SqlError::syntax(format!(
                "INSERT has {} expressions but {} target columns",
                row.len(),
                targets.len()
            )));
        }
        let mut out: Vec<Option<Value>> = vec![None; schema.columns.len()];
        // Planned before its parameters are bound (Parse): only their types are learnt.
        let unbound = params.values.is_none() && row.iter().any(is_placeholder);
        for (e, &i) in row.iter().zip(&targets) {
            let c = &schema.columns[i];
            let ty = DataType::from_column(c.ty);
            let d = constant(e, ty, params)?;
            if unbound && is_placeholder(e) {
                out[i] = Some(Value::Null);
                continue;
            }
            let v = super::expr::cast(d.clone(), ty);
            if !d.is_null() && v.is_null() {
                return Err(SqlError::mismatch(format!("column \"{}\" is of type {}, not {e}", c.name, ty.name())));
            }
            out[i] = Some(v.to_value(ty).ok_or_else(|| {
                SqlError::new(
                    sqlstate::NUMERIC_VALUE_OUT_OF_RANGE,
                    format!("value {e} is out of range for column \"{}\"", c.name),
                )
            })?);
        }
        let values: Vec<Value> = out
            .into_iter()
            .zip(&schema.columns)
            .map(|(v, c)| {
                let v = v.or_else(|| c.default.clone()).unwrap_or(Value::Null);
                if v == Value::Null && !c.nullable && !unbound {
                    return Err(SqlError::new(
                        sqlstate::NOT_NULL_VIOLATION,
                        format!(
                            "null value in column \"{}\" of relation \"{name}\" violates not-null constraint",
                            c.name
                        ),
                    ));
                }
                Ok(v)
            })
            .collect::<Result<_, _>>()?;
        let key = if topic.is_table() { Some(table_key(schema, &topic.primary_key, &values)) } else { None };
        rows.push((key, values));
    }
    Ok(Planned::Insert { topic: name, rows })
}

/// Plans one parsed statement. `sql` is its text (kept as a view's definition).
pub fn plan(catalog: &dyn Catalog, sql: &str, stmt: &Stmt, params: &mut Params) -> Result<Planned, SqlError> {
    match stmt {
        Stmt::CreateTopic(ct) => plan_create_topic(ct, ObjectKind::Topic, params),
        Stmt::DropTopic { name, if_exists } => {
            Ok(Planned::Drop { kind: ObjectKind::Topic, names: vec![name.clone()], if_exists: *if_exists })
        }
        Stmt::ShowTopics => Ok(Planned::Show(ObjectKind::Topic)),
        Stmt::Rebuild { view, from, options } => {
            Ok(Planned::Rebuild { view: view.clone(), from: *from, options: options.clone() })
        }
        Stmt::CancelRebuild { view } => Ok(Planned::CancelRebuild { view: view.clone() }),
        Stmt::ExplainRebuild { view, from } => Ok(Planned::ExplainRebuild { view: view.clone(), from: *from }),
        Stmt::Std(s) => match s.as_ref() {
            Statement::Query(q) => Ok(Planned::Select(Box::new(plan_query(catalog, q, params)?))),
            Statement::CreateTable(ct) => plan_create_topic(ct, ObjectKind::Table, params),
            Statement::CreateView(cv) => {
                if !cv.materialized {
                    return Err(SqlError::unsupported(
                        "plain views are not supported: CREATE MATERIALIZED VIEW keeps its result up to date",
                    ));
                }
                if cv.or_replace {
                    return Err(SqlError::unsupported(
                        "CREATE OR REPLACE is not supported: drop the view, or rebuild it (ALTER MATERIALIZED VIEW v REBUILD)",
                    ));
                }
                if !cv.columns.is_empty() {
                    return Err(SqlError::unsupported(
                        "view column lists are not supported: alias the columns in SELECT",
                    ));
                }
                let name = name_norm(&cv.name).unwrap_or_default();
                crate::log::validate_topic_name(&name)
                    .map_err(|e| SqlError::new(sqlstate::INVALID_PARAMETER_VALUE, e))?;
                let options = view_options(&cv.options)?;
                let planned = plan_view(catalog, &cv.query, options)?;
                Ok(Planned::CreateView {
                    name,
                    sql: sql.to_string(),
                    planned: Box::new(planned),
                    if_not_exists: cv.if_not_exists,
                })
            }
            Statement::Drop { object_type, if_exists, names, cascade, .. } => {
                if *cascade {
                    return Err(SqlError::unsupported("DROP ... CASCADE is not supported: drop the views first"));
                }
                let kind = match object_type {
                    ObjectType::Table => ObjectKind::Table,
                    ObjectType::MaterializedView | ObjectType::View => ObjectKind::View,
                    other => return Err(SqlError::unsupported(format!("DROP {other} is not supported"))),
                };
                Ok(Planned::Drop { kind, names: names.iter().filter_map(name_norm).collect(), if_exists: *if_exists })
            }
            Statement::Insert(ins) => plan_insert(catalog, ins, params),
            Statement::ShowTables { .. } => Ok(Planned::Show(ObjectKind::Table)),
            Statement::ShowViews { .. } => Ok(Planned::Show(ObjectKind::View)),
            Statement::ShowVariable { variable } => {
                let words: Vec<String> = variable.iter().map(ident_norm).collect();
                match words.as_slice() {
                    [w] if w == "topics" => Ok(Planned::Show(ObjectKind::Topic)),
                    [w] if w == "tables" => Ok(Planned::Show(ObjectKind::Table)),
                    [m, v] if m == "materialized" && v == "views" => Ok(Planned::Show(ObjectKind::View)),
                    _ => Ok(Planned::ShowVariable { name: words.join(" ") }),
                }
            }
            Statement::Set(_) => Ok(Planned::Command { tag: "SET".into() }),
            Statement::StartTransaction { .. } => Ok(Planned::Command { tag: "BEGIN".into() }),
            Statement::Commit { .. } => Ok(Planned::Command { tag: "COMMIT".into() }),
            Statement::Rollback { .. } => Ok(Planned::Command { tag: "ROLLBACK".into() }),
            Statement::Discard { .. } => Ok(Planned::Command { tag: "DISCARD ALL".into() }),
            Statement::Deallocate { name, .. } => Ok(Planned::Command {
                tag: if name.value.eq_ignore_ascii_case("all") { "DEALLOCATE ALL".into() } else { "DEALLOCATE".into() },
            }),
            other => Err(SqlError::unsupported(format!(
                "statement not supported: {}",
                other.to_string().chars().take(80).collect::<String>()
            ))),
        },
    }
}

/// A setting `SHOW` answers (what drivers ask for).
pub fn show_variable(name: &str) -> String {
    match name {
        "server_version" => "15.0".into(),
        "server_encoding" | "client_encoding" => "UTF8".into(),
        "datestyle" => "ISO, MDY".into(),
        "timezone" | "time zone" => "UTC".into(),
        "standard_conforming_strings" => "on".into(),
        "integer_datetimes" => "on".into(),
        "transaction isolation level" | "transaction_isolation" => "read committed".into(),
        _ => String::new(),
    }
}
