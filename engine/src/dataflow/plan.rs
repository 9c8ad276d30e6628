//! A view's plan: what the SQL planner hands the dataflow. Columns are resolved to
//! indexes and types are known; the dataflow only evaluates.
//!
//! Row layouts the expressions refer to:
//! - the **input row**: the source topic's columns (its current schema), then the
//!   enriching table's columns (stream–table join) or the right topic's columns (interval
//!   join);
//! - the **group row** (aggregating views): the group keys, then `window_start` and
//!   `window_end` when the view is windowed, then the aggregates' results.

use crate::dataflow::accumulator::AggFunc;
use crate::record::schema::Value;
use crate::sql::expr::Expr;
use crate::sql::types::DataType;

/// A column of a source, as the plan sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnInfo {
    pub name: String,
    pub ty: DataType,
    /// What rows written before the column existed read as (the schema's default or NULL).
    pub default: Value,
}

/// A topic the view reads.
#[derive(Debug, Clone, PartialEq)]
pub struct SourcePlan {
    pub topic: String,
    pub columns: Vec<ColumnInfo>,
    /// The event-time column; `None`: the record's timestamp.
    pub event_time: Option<usize>,
    /// Allowed lateness: a partition's watermark is its newest event time minus this.
    pub lateness_ms: i64,
}

/// Enrichment from a table (stream–table join): each stream row meets the table row
/// with the same primary key as of the row's event time.
#[derive(Debug, Clone, PartialEq)]
pub struct TableJoinPlan {
    pub table: String,
    pub columns: Vec<ColumnInfo>,
    pub primary_key: Vec<usize>,
    /// The table's event-time column (its versions are ordered by it); `None`: record time.
    pub event_time: Option<usize>,
    /// Over the stream row: the values matched against the table's primary key.
    pub stream_key: Vec<Expr>,
    /// LEFT JOIN: a stream row without a match is kept, with the table's columns NULL.
    pub keep_unmatched: bool,
    /// A view's changelog used as a table: its `_op` column, where `'delete'` removes the key.
    pub op_column: Option<usize>,
}

/// An interval join of two topics: `left.k = right.k AND right.ts BETWEEN left.ts +
/// lower AND left.ts + upper`.
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalJoinPlan {
    pub right: SourcePlan,
    /// Over the left row.
    pub left_key: Vec<Expr>,
    /// Over the right row (indexes from 0 of the right source).
    pub right_key: Vec<Expr>,
    pub lower_ms: i64,
    pub upper_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowPlan {
    Tumble { size_ms: i64 },
    Hop { slide_ms: i64, size_ms: i64 },
    Session { gap_ms: i64 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct AggPlan {
    pub func: AggFunc,
    /// `None` for count(*).
    pub arg: Option<Expr>,
    pub arg_type: DataType,
    pub result_type: DataType,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AggregatePlan {
    /// Over the input row.
    pub keys: Vec<Expr>,
    pub key_types: Vec<DataType>,
    pub aggs: Vec<AggPlan>,
    pub window: Option<WindowPlan>,
}

impl AggregatePlan {
    /// Columns of the group row before the aggregates.
    pub fn key_width(&self) -> usize {
        self.keys.len() + if self.window.is_some() { 2 } else { 0 }
    }
}

/// What happens to an event older than its partition's watermark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LatePolicy {
    /// Counted in the view's metrics, otherwise ignored.
    Drop,
    /// Appended (as JSON) to this topic.
    Side(String),
    /// Counted in: the window's row is corrected (its state is kept until `state_ttl`).
    Update,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ViewOptions {
    pub late: LatePolicy,
    /// Rows whose window ended (or, without windows, whose group was last updated) more
    /// than this before the watermark are evicted. `None`: kept.
    pub state_ttl_ms: Option<i64>,
    /// A topic the view's changes are appended to.
    pub changelog: Option<String>,
    /// Most groups (or rows) a view keeps per shard; past it, new ones are refused
    /// (counted) rather than memory growing without bound.
    pub state_rows_max: usize,
    /// A partition with nothing new for this long no longer holds the watermark back.
    pub idle_timeout_ms: i64,
    /// Where the view starts reading its sources when it has no checkpoint.
    pub start: StartFrom,
}

/// Where a view (or a rebuilt version of it) starts reading its sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartFrom {
    /// The earliest retained offset of every partition.
    #[default]
    Earliest,
    /// This offset in every partition (clamped to what the partition retains).
    Offset(u64),
    /// The first record at or after this time (milliseconds since the epoch).
    Timestamp(i64),
}

impl std::fmt::Display for StartFrom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartFrom::Earliest => write!(f, "EARLIEST"),
            StartFrom::Offset(n) => write!(f, "OFFSET {n}"),
            StartFrom::Timestamp(ms) => write!(f, "TIMESTAMP '{}'", crate::sql::types::format_timestamp(*ms)),
        }
    }
}

impl Default for ViewOptions {
    fn default() -> Self {
        ViewOptions {
            late: LatePolicy::Drop,
            state_ttl_ms: None,
            changelog: None,
            state_rows_max: crate::limits::VIEW_STATE_ROWS_MAX_DEFAULT,
            idle_timeout_ms: crate::limits::VIEW_IDLE_TIMEOUT_MS_DEFAULT,
            start: StartFrom::Earliest,
        }
    }
}

/// An output column.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputColumn {
    pub name: String,
    pub expr: Expr,
    pub ty: DataType,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ViewPlan {
    pub source: SourcePlan,
    pub table_join: Option<TableJoinPlan>,
    pub interval_join: Option<IntervalJoinPlan>,
    /// Over the input row.
    pub filter: Option<Expr>,
    pub aggregate: Option<AggregatePlan>,
    /// Over the group row.
    pub having: Option<Expr>,
    /// Over the group row (aggregating views) or the input row.
    pub output: Vec<OutputColumn>,
    /// Output columns that identify a row (lookups, changelog keys): the group keys and
    /// window bounds of an aggregating view; empty for an append-only view (rows are
    /// identified by where they came from).
    pub key: Vec<usize>,
    pub options: ViewOptions,
}

impl ViewPlan {
    /// Width of the input row.
    pub fn input_width(&self) -> usize {
        self.source.columns.len()
            + self.table_join.as_ref().map_or(0, |t| t.columns.len())
            + self.interval_join.as_ref().map_or(0, |j| j.right.columns.len())
    }

    /// Whether the view keeps state that the watermark frees (windows, an interval join's
    /// rows, a state TTL): then its reads are aligned on event time, so that a catch-up
    /// does not hold the state of every window between its slowest and fastest reader.
    pub fn aligns_reads(&self) -> bool {
        self.interval_join.is_some()
            || self.aggregate.as_ref().is_some_and(|a| a.window.is_some())
            || self.options.state_ttl_ms.is_some()
    }

    /// The topics the view reads, in order (source, then table or right topic).
    pub fn topics(&self) -> Vec<&str> {
        let mut t = vec![self.source.topic.as_str()];
        if let Some(tj) = &self.table_join {
            t.push(&tj.table);
        }
        if let Some(j) = &self.interval_join {
            t.push(&j.right.topic);
        }
        t
    }

    /// Output columns whose value depends only on the group key (so a lookup by key can
    /// be routed to one shard): indexes of the output columns that are plain group keys.
    pub fn key_output_for_group_key(&self, group_key: usize) -> Option<usize> {
        self.output.iter().position(|c| c.expr == Expr::Column(group_key))
    }
}
