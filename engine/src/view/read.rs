//! Reading a view on one shard: its rows as the SELECT list shapes them.
//!
//! Every read happens between two state updates (state is updated synchronously, between
//! awaits), so it sees whole batches. A read by key goes straight to the key's group.

use crate::dataflow::aggregate::AggregateState;
use crate::dataflow::runtime::ViewRuntime;
use crate::sql::expr::Expr;
use crate::sql::types::OwnedDatum;

/// What a reader wants of one shard's rows. `Send`: it crosses shards.
#[derive(Debug, Clone, Default)]
pub struct ReadRequest {
    /// Over the output row.
    pub filter: Option<Expr>,
    /// The encoded group key, for a lookup (only the owning shard is asked).
    pub group_key: Option<Vec<u8>>,
    /// At most this many rows (when the order does not matter).
    pub limit: Option<usize>,
}

/// This shard's rows of the view.
pub fn read_rows(rt: &ViewRuntime, req: &ReadRequest) -> Vec<Vec<OwnedDatum>> {
    let plan = &rt.plan;
    let st = rt.state.borrow();
    let limit = req.limit.unwrap_or(usize::MAX);
    let mut out = Vec::new();
    let keep = |row: &Vec<OwnedDatum>| req.filter.as_ref().is_none_or(|f| f.holds(row));
    match &plan.aggregate {
        Some(agg) => {
            let mut emit = |values: &[OwnedDatum], start: i64, g: &crate::dataflow::aggregate::GroupEntry| -> bool {
                let group = AggregateState::group_row(agg, values, start, g);
                if let Some(h) = &plan.having {
                    if !h.holds(&group) {
                        return true;
                    }
                }
                let row: Vec<OwnedDatum> = plan.output.iter().map(|c| c.expr.eval(&group).into_owned()).collect();
                if keep(&row) {
                    out.push(row);
                }
                out.len() < limit
            };
            match &req.group_key {
                Some(k) => {
                    if let Some(kg) = st.agg.keys.get(k.as_slice()) {
                        for (start, g) in &kg.windows {
                            if !emit(&kg.values, *start, g) {
                                break;
                            }
                        }
                    }
                }
                None => {
                    'all: for kg in st.agg.keys.values() {
                        for (start, g) in &kg.windows {
                            if !emit(&kg.values, *start, g) {
                                break 'all;
                            }
                        }
                    }
                }
            }
        }
        None => {
            for (_, row) in st.append.rows.values() {
                if keep(row) {
                    out.push(row.clone());
                    if out.len() >= limit {
                        break;
                    }
                }
            }
        }
    }
    out
}

/// Rows, keys and bytes this shard holds for the view.
pub fn state_size(rt: &ViewRuntime) -> (usize, usize, usize) {
    let st = rt.state.borrow();
    match &rt.plan.aggregate {
        Some(_) => (st.agg.rows, st.agg.keys.len(), st.agg.size_bytes()),
        None => {
            // Every row has the plan's width: no walk over the rows on a status read.
            let rows = st.append.rows.len();
            let width = st.append.rows.values().next().map_or(0, |(_, r)| r.len());
            (rows, rows, rows * (48 + width * 24))
        }
    }
}
