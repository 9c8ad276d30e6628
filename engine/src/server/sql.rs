//! Executing SQL on a shard: the statements pgwire and HTTP clients send, planned by
//! `sql/` against this shard's catalog and carried out through the node (topics, views,
//! appends, reads across shards).

use std::rc::Rc;

use super::node::Node;
use super::views::NodeCatalog;
use crate::log::TopicConfig;
use crate::record::schema::Value;
use crate::record::{BatchBuilder, BatchPayload, RawRecord, Record};
use crate::sql::error::{sqlstate, SqlError};
use crate::sql::lower::Params;
use crate::sql::parse::Stmt;
use crate::sql::statement::{plan, show_variable, ObjectKind, Planned};
use crate::sql::types::{DataType, Datum, OwnedDatum};

/// What a statement returned.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Rows {
        columns: Vec<(String, DataType)>,
        rows: Vec<Vec<OwnedDatum>>,
    },
    /// A command: its tag (`CREATE TOPIC`, `INSERT 0 3`, ...).
    Command(String),
}

impl Outcome {
    /// The command tag Postgres clients see.
    pub fn tag(&self) -> String {
        match self {
            Outcome::Rows { rows, .. } => format!("SELECT {}", rows.len()),
            Outcome::Command(t) => t.clone(),
        }
    }
}

/// Plans a parsed statement on this shard (no side effects).
pub fn plan_stmt(node: &Node, sql: &str, stmt: &Stmt, params: &mut Params) -> Result<Planned, SqlError> {
    plan(&NodeCatalog(node), sql, stmt, params)
}

/// Runs every statement of a script, stopping at the first error.
pub async fn execute_script(node: &Rc<Node>, sql: &str) -> Result<Vec<Outcome>, (Vec<Outcome>, SqlError)> {
    let stmts = crate::sql::parse::parse(sql).map_err(|e| (Vec::new(), e))?;
    let mut out = Vec::with_capacity(stmts.len());
    for (text, stmt) in &stmts {
        let mut params = Params::default();
        let planned = match plan_stmt(node, text, stmt, &mut params) {
            Ok(p) => p,
            Err(e) => return Err((out, e)),
        };
        if !params.types.is_empty() {
            return Err((
                out,
                SqlError::new(sqlstate::PROTOCOL_VIOLATION, "parameters ($1) need the extended protocol"),
            ));
        }
        match execute(node, planned).await {
            Ok(o) => out.push(o),
            Err(e) => return Err((out, e)),
        }
    }
    Ok(out)
}

/// Carries out a planned statement.
pub async fn execute(node: &Rc<Node>, planned: Planned) -> Result<Outcome, SqlError> {
    match planned {
        Planned::CreateTopic { config, if_not_exists, kind } => {
            let exists = node.log.topic(&config.name).is_some();
            if exists && if_not_exists {
                return Ok(Outcome::Command(format!("CREATE {}", kind.name())));
            }
            if node.views.get(&config.name).is_some() {
                return Err(SqlError::new(
                    sqlstate::DUPLICATE_TABLE,
                    format!("relation \"{}\" already exists", config.name),
                ));
            }
            match node.create_topic(config).await {
                Ok(_) => Ok(Outcome::Command(format!("CREATE {}", kind.name()))),
                Err(e) if if_not_exists && e.code == super::native::protocol::ErrorCode::TopicExists => {
                    Ok(Outcome::Command(format!("CREATE {}", kind.name())))
                }
                Err(e) => Err(SqlError::from(e)),
            }
        }
        Planned::CreateView { name, sql, if_not_exists, .. } => {
            node.create_view(&name, &sql, if_not_exists).await?;
            Ok(Outcome::Command("CREATE MATERIALIZED VIEW".into()))
        }
        Planned::Drop { kind, names, if_exists } => {
            for name in names {
                drop_one(node, kind, &name, if_exists).await?;
            }
            Ok(Outcome::Command(format!("DROP {}", kind.name())))
        }
        Planned::Show(kind) => show(node, kind).await,
        Planned::Insert { topic, rows } => insert(node, &topic, rows).await,
        Planned::Select(q) => {
            let rows = match &q.view {
                None => q.finish(vec![Vec::new()]),
                Some(view) => {
                    let gathered = node.read_view(view, q.request.clone()).await?;
                    q.finish(gathered)
                }
            };
            Ok(Outcome::Rows { columns: q.columns.clone(), rows })
        }
        Planned::ShowVariable { name } => Ok(Outcome::Rows {
            columns: vec![(name.clone(), DataType::Text)],
            rows: vec![vec![Datum::Text(show_variable(&name).into())]],
        }),
        Planned::Command { tag } => Ok(Outcome::Command(tag)),
        Planned::Rebuild { view, from, options } => {
            let mut rate = 0u64;
            for (k, v) in options {
                match k.as_str() {
                    "rate_limit_mb_per_s" => {
                        let mb: f64 = v.parse().ok().filter(|x: &f64| *x > 0.0 && x.is_finite()).ok_or_else(|| {
                            SqlError::new(
                                sqlstate::INVALID_PARAMETER_VALUE,
                                format!("invalid value '{v}' for rate_limit_mb_per_s: a positive number of MB/s"),
                            )
                        })?;
                        // At least a byte a second: 0 means "no limit".
                        rate = ((mb * 1e6) as u64).max(1);
                    }
                    other => {
                        return Err(SqlError::new(
                            sqlstate::INVALID_PARAMETER_VALUE,
                            format!("unknown rebuild option \"{other}\" (known: rate_limit_mb_per_s)"),
                        ))
                    }
                }
            }
            node.rebuild_view(&view, from, rate).await?;
            Ok(Outcome::Command("ALTER MATERIALIZED VIEW".into()))
        }
        Planned::CancelRebuild { view } => {
            node.cancel_rebuild(&view).await?;
            Ok(Outcome::Command("ALTER MATERIALIZED VIEW".into()))
        }
        Planned::ExplainRebuild { view, from } => {
            let e = node.explain_rebuild(&view, from).await?;
            let text = |s: String| Datum::Text(s.into());
            let items: Vec<(&str, String)> = vec![
                ("view", view.clone()),
                ("version", e.version.to_string()),
                ("from", e.from.to_string()),
                ("partitions", e.partitions.to_string()),
                ("events_to_read", e.events.to_string()),
                ("bytes_to_read", e.bytes.to_string()),
                ("read_rate_mb_per_s", format!("{:.1}", e.read_rate_bytes_per_s / 1e6)),
                ("expected_seconds", format!("{:.2}", e.seconds)),
                ("expected_state_rows", e.state_rows.to_string()),
                ("expected_state_bytes", e.state_bytes.to_string()),
            ];
            let rows = items.into_iter().map(|(k, v)| vec![text(k.to_string()), text(v)]).collect();
            Ok(Outcome::Rows { columns: Planned::ExplainRebuild { view, from }.columns(), rows })
        }
    }
}

async fn drop_one(node: &Rc<Node>, kind: ObjectKind, name: &str, if_exists: bool) -> Result<(), SqlError> {
    if kind == ObjectKind::View {
        node.drop_view(name, if_exists).await?;
        return Ok(());
    }
    let Some(topic) = node.log.topic(name).filter(|_| !crate::log::is_internal_topic(name)) else {
        if if_exists {
            return Ok(());
        }
        let what = if node.views.get(name).is_some() { " (it is a materialized view)" } else { "" };
        return Err(SqlError::new(
            sqlstate::UNDEFINED_TABLE,
            format!("{} \"{name}\" does not exist{what}", kind.name().to_lowercase()),
        ));
    };
    match (kind, topic.is_table()) {
        (ObjectKind::Table, false) => {
            return Err(SqlError::new(
                sqlstate::WRONG_OBJECT_TYPE,
                format!("\"{name}\" is a topic, not a table: DROP TOPIC {name}"),
            ))
        }
        (ObjectKind::Topic, true) => {
            return Err(SqlError::new(
                sqlstate::WRONG_OBJECT_TYPE,
                format!("\"{name}\" is a table, not a topic: DROP TABLE {name}"),
            ))
        }
        _ => {}
    }
    if let Some(view) = node.views.dependent_of(name) {
        return Err(SqlError::new(
            sqlstate::DEPENDENT_OBJECTS_STILL_EXIST,
            format!("cannot drop {} {name} because materialized view {view} depends on it", kind.name().to_lowercase()),
        ));
    }
    node.delete_topic(name).await.map_err(SqlError::from)
}

async fn show(node: &Rc<Node>, kind: ObjectKind) -> Result<Outcome, SqlError> {
    let columns = Planned::Show(kind).columns();
    let text = |s: String| Datum::Text(s.into());
    let schema_of = |t: &TopicConfig| t.schema().map(|s| s.declaration()).unwrap_or_else(|| "(raw)".into());
    let mut rows = Vec::new();
    match kind {
        ObjectKind::Topic | ObjectKind::Table => {
            let mut topics = node.log.topics();
            topics.sort_by(|a, b| a.name.cmp(&b.name));
            for t in topics
                .iter()
                .filter(|t| !crate::log::is_internal_topic(&t.name) && t.is_table() == (kind == ObjectKind::Table))
            {
                let third = if kind == ObjectKind::Table { t.primary_key.join(", ") } else { t.durability.to_string() };
                rows.push(vec![text(t.name.clone()), Datum::Int(t.partitions as i64), text(third), text(schema_of(t))]);
            }
        }
        ObjectKind::View => {
            for def in node.views.defs() {
                let stats = node.view_stats(&def.name).await?;
                let watermark =
                    |ms: i64| if ms == i64::MIN || ms == i64::MAX { Datum::Null } else { Datum::Timestamp(ms) };
                rows.push(vec![
                    text(def.name.clone()),
                    Datum::Int(def.version as i64),
                    text("serving".into()),
                    Datum::Int(stats.rows as i64),
                    Datum::Int(stats.events as i64),
                    watermark(stats.watermark_ms),
                    text(def.sql.clone()),
                    Datum::Null,
                ]);
                // A version being built shows beside the one serving.
                let progress = node.rebuild_progress(&def.name).await?;
                if let Some(p) = progress.filter(|p| p.phase == crate::view::rebuild::RebuildPhase::Building) {
                    rows.push(vec![
                        text(def.name.clone()),
                        Datum::Int(p.version as i64),
                        text(format!("building from {}", p.from)),
                        Datum::Null,
                        Datum::Int(p.events_done as i64),
                        Datum::Null,
                        text(def.sql.clone()),
                        Datum::Double(p.fraction()),
                    ]);
                }
            }
        }
    }
    Ok(Outcome::Rows { columns, rows })
}

async fn insert(node: &Rc<Node>, topic: &str, rows: Vec<(Option<Vec<u8>>, Vec<Value>)>) -> Result<Outcome, SqlError> {
    let config = node.topic(topic).map_err(SqlError::from)?;
    let n = rows.len();
    let now = crate::clock::now_ms();
    let mut per: std::collections::BTreeMap<u32, Vec<(Option<Vec<u8>>, Vec<Value>)>> = Default::default();
    for (key, row) in rows {
        let p = match &key {
            Some(k) => crate::record::partition_for_key(k, config.partitions),
            None => {
                let p = node.insert_round_robin.get();
                node.insert_round_robin.set(p.wrapping_add(1));
                p % config.partitions
            }
        };
        per.entry(p).or_default().push((key, row));
    }
    let mut payloads = Vec::with_capacity(per.len());
    for (p, rows) in per {
        let payload: Result<BatchPayload, _> = match config.schema() {
            Some(schema) => {
                let records: Vec<Record<Vec<Value>>> = rows
                    .into_iter()
                    .map(|(key, value)| Record { timestamp_ms: now, key, value, headers: Vec::new() })
                    .collect();
                BatchPayload::from_rows(&records, schema)
            }
            None => {
                let mut b: BatchBuilder = BatchBuilder::new();
                for (key, value) in rows {
                    let bytes = match value.first() {
                        Some(Value::Bytes(b)) => b.clone(),
                        _ => Vec::new(),
                    };
                    b.push(RawRecord::new(now, key.as_deref(), &bytes));
                }
                b.finish()
            }
        };
        let payload = payload.map_err(|e| SqlError::new(sqlstate::PROGRAM_LIMIT_EXCEEDED, e.to_string()))?;
        if payload.bytes().len() > config.batch_bytes_max as usize {
            return Err(SqlError::new(
                sqlstate::PROGRAM_LIMIT_EXCEEDED,
                format!("the rows for one partition take {} bytes, over the topic's batch limit of {}: insert fewer rows at once", payload.bytes().len(), config.batch_bytes_max),
            ));
        }
        payloads.push((p, payload));
    }
    // Every partition's batch is checked before any is written; each is all or nothing.
    let mut pending = Vec::with_capacity(payloads.len());
    for (p, payload) in payloads {
        pending.push(node.submit_produce(topic, p, payload).await.map_err(SqlError::from)?);
    }
    for p in pending {
        p.await.map_err(SqlError::from)?;
    }
    Ok(Outcome::Command(format!("INSERT 0 {n}")))
}
