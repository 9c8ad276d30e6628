//! A view's changelog: its changes as JSON lines on a topic that other views and Kafka
//! consumers read like any topic.
//!
//! Each line is an upsert (`"_op": "upsert"`, with every output column, and `"_final":
//! true` once the window's result is final) or a delete (`"_op": "delete"`, with the key
//! columns), keyed by the view's key columns (a JSON array). After a crash, the changes
//! since the last checkpoint are made again: a consumer applying upserts by key reaches
//! the same state; nothing is lost.

use serde_json::{Map, Value};

use crate::dataflow::aggregate::{AggregateState, Change};
use crate::dataflow::append::RowId;
use crate::dataflow::runtime::ViewRuntime;

/// Renders changes as (record key, JSON line).
pub fn render(rt: &ViewRuntime, changes: &[Change], appended: &[(RowId, bool)]) -> Vec<(Vec<u8>, String)> {
    let plan = &rt.plan;
    let st = rt.state.borrow();
    let mut out = Vec::with_capacity(changes.len() + appended.len());
    let key_of = |row: &[crate::sql::types::OwnedDatum]| -> Vec<u8> {
        let k: Vec<Value> = plan.key.iter().map(|&i| row.get(i).map_or(Value::Null, |d| d.to_json())).collect();
        Value::Array(k).to_string().into_bytes()
    };
    let object = |row: &[crate::sql::types::OwnedDatum], op: &str, fin: Option<bool>| -> String {
        let mut m = Map::new();
        m.insert("_op".into(), Value::String(op.into()));
        if let Some(f) = fin {
            m.insert("_final".into(), Value::Bool(f));
        }
        for (c, v) in plan.output.iter().zip(row) {
            m.insert(c.name.clone(), v.to_json());
        }
        Value::Object(m).to_string()
    };
    if let Some(agg) = &plan.aggregate {
        for ch in changes {
            match ch {
                Change::Upsert { key, window_start, final_result } => {
                    let Some(kg) = st.agg.keys.get(key) else { continue };
                    let Some(g) = kg.windows.get(window_start) else { continue };
                    let group = AggregateState::group_row(agg, &kg.values, *window_start, g);
                    let row: Vec<_> = plan.output.iter().map(|c| c.expr.eval(&group).into_owned()).collect();
                    out.push((key_of(&row), object(&row, "upsert", Some(*final_result))));
                }
                Change::Delete { key, window_start } => {
                    // Only the key is known: the group row of an empty group.
                    let mut m = Map::new();
                    m.insert("_op".into(), Value::String("delete".into()));
                    let values = crate::sql::types::decode_key(key).unwrap_or_default();
                    let mut k = Vec::new();
                    for (i, v) in values.iter().enumerate() {
                        if let Some(c) = plan.output.iter().find(|c| c.expr == crate::sql::expr::Expr::Column(i)) {
                            m.insert(c.name.clone(), v.to_json());
                        }
                        k.push(v.to_json());
                    }
                    if agg.window.is_some() {
                        let ws = crate::sql::types::Datum::Timestamp(*window_start).to_json();
                        k.push(ws.clone());
                        m.insert("window_start".into(), ws);
                    }
                    out.push((Value::Array(k).to_string().into_bytes(), Value::Object(m).to_string()));
                }
            }
        }
    } else {
        for (id, inserted) in appended {
            let key = format!("[{},{},{},{}]", id.0, id.1, id.2, id.3).into_bytes();
            match st.append.rows.get(id) {
                Some((_, row)) if *inserted => out.push((key, object(row, "upsert", None))),
                _ => out.push((key, "{\"_op\":\"delete\"}".to_string())),
            }
        }
    }
    out
}
