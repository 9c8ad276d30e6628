//! A view's changelog: its changes as typed rows on a topic that other views (as a
//! table to enrich from) and Kafka consumers (as JSON) read like any topic.
//!
//! The topic's columns are the view's columns, then `_op` (`'upsert'` or `'delete'`) and
//! `_final` (true once a window's result can no longer change). A view with key columns
//! (group keys, window bounds) writes a table keyed by them: a delete carries the key and
//! NULLs. After a crash, the changes since the last checkpoint are written again: a reader
//! applying upserts by key reaches the same state; nothing is lost.

use crate::dataflow::aggregate::{AggregateState, Change};
use crate::dataflow::append::RowId;
use crate::dataflow::runtime::ViewRuntime;
use crate::log::TopicConfig;
use crate::record::schema::{Column, Schema, Value};
use crate::sql::types::{DataType, Datum, OwnedDatum};

pub const OP_COLUMN: &str = "_op";
pub const FINAL_COLUMN: &str = "_final";

/// The topic a view's changes go to, made when the view is created.
pub fn changelog_config(name: &str, columns: &[(String, DataType)], key: &[usize], partitions: u32) -> TopicConfig {
    let mut config = TopicConfig::new(name, partitions);
    let mut cols: Vec<Column> = columns
        .iter()
        .map(|(n, t)| Column { name: n.clone(), ty: t.to_column(), nullable: true, default: None })
        .collect();
    cols.push(Column {
        name: OP_COLUMN.into(),
        ty: crate::record::schema::ColumnType::Text,
        nullable: false,
        default: None,
    });
    cols.push(Column {
        name: FINAL_COLUMN.into(),
        ty: crate::record::schema::ColumnType::Boolean,
        nullable: true,
        default: None,
    });
    config.schemas = vec![Schema { version: 1, columns: cols, event_time: None }];
    config.primary_key = key.iter().map(|&i| columns[i].0.clone()).collect();
    config
}

/// Whether an existing topic can take a view's changes (same columns, same types).
pub fn compatible(topic: &TopicConfig, columns: &[(String, DataType)]) -> Result<(), String> {
    let Some(schema) = topic.schema() else {
        return Err(format!("topic '{}' is raw; a changelog topic is typed (let the view create it)", topic.name));
    };
    let want = changelog_config(&topic.name, columns, &[], 1);
    let want = &want.schemas[0].columns;
    let same = schema.columns.len() == want.len()
        && schema.columns.iter().zip(want).all(|(a, b)| a.name == b.name && a.ty == b.ty);
    if same {
        Ok(())
    } else {
        Err(format!(
            "topic '{}' has columns ({}) but the view writes ({})",
            topic.name,
            schema.declaration(),
            Schema { version: 1, columns: want.clone(), event_time: None }.declaration()
        ))
    }
}

fn stored(row: &[OwnedDatum], columns: &[(String, DataType)]) -> Vec<Value> {
    row.iter().zip(columns).map(|(v, (_, t))| v.to_value(*t).unwrap_or(Value::Null)).collect()
}

fn key_of(row: &[OwnedDatum], key: &[usize]) -> Vec<u8> {
    let k: Vec<serde_json::Value> =
        key.iter().map(|&i| row.get(i).map_or(serde_json::Value::Null, Datum::to_json)).collect();
    serde_json::Value::Array(k).to_string().into_bytes()
}

/// Renders changes as (record key, row) for the changelog topic.
pub fn render(rt: &ViewRuntime, changes: &[Change], appended: &[(RowId, bool)]) -> Vec<(Vec<u8>, Vec<Value>)> {
    let plan = &rt.plan;
    let columns: Vec<(String, DataType)> = plan.output.iter().map(|c| (c.name.clone(), c.ty)).collect();
    let columns = columns.as_slice();
    let st = rt.state.borrow();
    let mut out = Vec::with_capacity(changes.len() + appended.len());
    let with_op = |mut row: Vec<Value>, op: &str, fin: Option<bool>| {
        row.push(Value::Text(op.into()));
        row.push(fin.map_or(Value::Null, Value::Bool));
        row
    };
    let Some(agg) = &plan.aggregate else {
        // Append-only: inserts only (rows leaving by TTL stay in the topic's history).
        for (id, inserted) in appended {
            if let (true, Some((_, row))) = (*inserted, st.append.rows.get(id)) {
                let key = format!("[{},{},{},{}]", id.0, id.1, id.2, id.3).into_bytes();
                out.push((key, with_op(stored(row, columns), "upsert", None)));
            }
        }
        return out;
    };
    for ch in changes {
        let (key, window_start) = match ch {
            Change::Upsert { key, window_start, .. } | Change::Delete { key, window_start } => (key, *window_start),
        };
        let group = st.agg.keys.get(key).and_then(|kg| {
            kg.windows
                .get(window_start)
                .map(|g| (AggregateState::group_row(agg, &kg.values, window_start, g), g.finalized))
        });
        match (ch, group) {
            (Change::Upsert { final_result, .. }, Some((group, _)))
                if plan.having.as_ref().is_none_or(|h| h.holds(&group)) =>
            {
                let row: Vec<OwnedDatum> = plan.output.iter().map(|c| c.expr.eval(&group).into_owned()).collect();
                out.push((key_of(&row, &plan.key), with_op(stored(&row, columns), "upsert", Some(*final_result))));
            }
            _ => {
                // Gone (or filtered out by HAVING): a delete carrying the key columns.
                let mut values: Vec<OwnedDatum> = crate::sql::types::decode_key(key).unwrap_or_default();
                if agg.window.is_some() {
                    let end = match agg.window {
                        Some(crate::dataflow::plan::WindowPlan::Tumble { size_ms })
                        | Some(crate::dataflow::plan::WindowPlan::Hop { size_ms, .. }) => {
                            window_start.saturating_add(size_ms)
                        }
                        _ => st
                            .agg
                            .keys
                            .get(key)
                            .and_then(|kg| kg.windows.get(window_start))
                            .map_or(window_start, |g| g.end),
                    };
                    values.push(Datum::Timestamp(window_start));
                    values.push(Datum::Timestamp(end));
                }
                let row: Vec<OwnedDatum> = plan
                    .output
                    .iter()
                    .map(|c| match c.expr {
                        crate::sql::expr::Expr::Column(i) if i < values.len() => values[i].clone(),
                        _ => Datum::Null,
                    })
                    .collect();
                out.push((key_of(&row, &plan.key), with_op(stored(&row, columns), "delete", None)));
            }
        }
    }
    out
}
