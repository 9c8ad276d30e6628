//! A view running on one shard: its sources (the partitions this shard owns), the first
//! operators (enrich, filter, partial aggregation, window assignment), and the state of
//! the keys this shard owns (aggregate, interval join, appended rows).
//!
//! The same code runs whether the sources are at the live head or far in the past:
//! replay is only a start offset. A driver task reads batches (read-ahead, in place),
//! folds them, and sends what it made to the owning shards through the exchange; state
//! updates happen synchronously, between awaits, so a reader never sees half a batch.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use event_listener::Event;

use crate::dataflow::accumulator::Position;
use crate::dataflow::aggregate::{AggregateState, Change, PartialGroup, PartialTable};
use crate::dataflow::append::{AppendState, RowId};
use crate::dataflow::enrich::TableReplica;
use crate::dataflow::exchange::{DataBody, DataMsg, Stage, ViewKey};
use crate::dataflow::interval_join::{IntervalJoinState, JoinRow, Side};
use crate::dataflow::plan::{AggregatePlan, ColumnInfo, LatePolicy, ViewOptions, ViewPlan};
use crate::dataflow::row::{encode_exprs, event_time, owned_row, owner_of, ColumnRow, SourceRow};
use crate::dataflow::watermark::{
    InputWatermarks, PartitionClock, ReadAlignment, SourceClocks, WATERMARK_IDLE, WATERMARK_UNKNOWN,
};
use crate::log::{LogError, Offset, Partition, PartitionReader, TopicConfig};
use crate::metrics::Counter;
use crate::record::columns::ColumnRef;
use crate::record::{Batch, BatchPayload, TypedRows};
use crate::runtime::ShardId;
use crate::sql::expr::{Joined, Row};
use crate::sql::types::OwnedDatum;
use crate::view::checkpoint::{ShardState, SourcePosition};
use crate::wire::{Decoder, Encoder};
use hashbrown::HashMap;

pub type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// What a running view needs from the shard it runs on.
pub trait DataflowHost {
    fn shard(&self) -> ShardId;
    fn topic(&self, name: &str) -> Option<Rc<TopicConfig>>;
    /// A partition this shard owns.
    fn local_partition(&self, topic: &str, partition: u32) -> Option<Partition>;
    /// Appends to any topic (routed to the owning shard); resolves when durable.
    fn append(&self, topic: String, partition: u32, payload: BatchPayload) -> LocalFuture<'_, Result<(), String>>;
    /// Sends a message to a shard's view (never this shard).
    fn send(&self, to: usize, msg: DataMsg) -> LocalFuture<'_, Result<(), ()>>;
    /// Resolves when the shard stops.
    fn stopped(&self) -> LocalFuture<'_, ()>;
    /// Makes this shard's part of a checkpoint durable (its sources synced up to the
    /// offsets it covers, then its state) and reports to the coordinator.
    fn checkpoint<'a>(&'a self, rt: &'a Rc<ViewRuntime>, state: ShardState) -> LocalFuture<'a, ()>;
}

/// What a view counts (shard-local; rendered by `/metrics`).
#[derive(Debug, Default)]
pub struct ViewMetrics {
    pub events: Counter,
    pub bytes_read: Counter,
    pub late_dropped: Counter,
    pub late_side: Counter,
    pub late_updated: Counter,
    pub filtered_out: Counter,
    pub unmatched: Counter,
    /// Source records that retention deleted before this view read them.
    pub lost_to_retention: Counter,
    /// Rounds in which a source partition was not read because it was more than
    /// WATERMARK_DRIFT_MAX_MS ahead of the slowest with a backlog (watermark alignment).
    pub reads_held: Counter,
}

/// One input of the view on this shard: the partitions it owns and their clocks.
struct SideSource {
    side: Side,
    topic: String,
    columns: Rc<Vec<ColumnInfo>>,
    event_time: Option<usize>,
    clocks: SourceClocks,
    /// Next offset to read, per owned partition.
    positions: Vec<(u32, Offset)>,
}

/// The table feed of a stream–table join: partitions of the table this shard owns.
struct TableSource {
    positions: Vec<(u32, Offset)>,
}

/// The view's state on this shard.
pub struct ViewState {
    left: SideSource,
    right: Option<SideSource>,
    table_source: Option<TableSource>,
    partials: PartialTable,
    join_out: Vec<Vec<(Side, Box<[u8]>, JoinRow)>>,
    scratch: Vec<u8>,
    /// The rows of a columnar batch the column fold takes: index in the batch, event time.
    column_rows: Vec<(u32, i64)>,
    /// Operators.
    pub agg: AggregateState,
    pub agg_watermarks: InputWatermarks,
    pub join: IntervalJoinState,
    pub join_watermarks: InputWatermarks,
    pub append: AppendState,
    pub table: TableReplica,
    table_pruned_at: i64,
    table_ready: Vec<bool>,
    second_partials: PartialTable,
    /// Changes not yet written to the changelog.
    pub changes: Vec<Change>,
    pub append_changes: Vec<(RowId, bool)>,
    /// Records that arrived late, for a side topic: (partition, JSON).
    late_side: Vec<String>,
    /// What every shard said about its slowest partition with a backlog.
    align: ReadAlignment,
}

pub struct ViewRuntime {
    pub key: ViewKey,
    pub name: String,
    pub plan: Rc<ViewPlan>,
    pub shard: ShardId,
    pub state: RefCell<ViewState>,
    pub metrics: ViewMetrics,
    stopped: Cell<bool>,
    /// The driver returns at its next round without stopping the view (to move it to
    /// another task queue).
    paused: Cell<bool>,
    /// A rebuild's rate limit on this shard (bytes read per second); 0: none.
    pub rate_limit_bytes_per_s: Cell<u64>,
    /// A version being rebuilt: it writes nothing to the view's changelog or side topic
    /// (the serving version does) until it is promoted.
    pub replaying: Cell<bool>,
    /// Where each source partition this shard reads started: (topic, partition, offset).
    pub started_at: Vec<(String, u32, Offset)>,
    wake: Event,
    /// The driver's last round left a reader unread (alignment): a rise of the read limit
    /// wakes it (and nobody else).
    holding_reads: Cell<bool>,
    checkpoint: RefCell<Checkpointing>,
    /// The size of the last snapshot: the next one's buffer starts that large (growing
    /// a multi-megabyte buffer by doubling copies it several times inside the pause).
    snapshot_bytes_last: Cell<usize>,
}

/// Where this shard stands in the view's checkpoints (aligned barriers).
#[derive(Debug, Default)]
struct Checkpointing {
    /// The coordinator asked for this checkpoint: the driver sends its barriers next round.
    requested: Option<u64>,
    /// The driver waits after its barriers until the coordinator resumes this id.
    resumed: u64,
    /// Barriers received per checkpoint, on the first and the second exchange.
    first: HashMap<u64, usize>,
    second: HashMap<u64, usize>,
    /// Every barrier is in: the state is exactly what came before them.
    ready: Option<u64>,
}

/// Messages for other shards, collected while processing, sent afterwards.
pub struct Outbox {
    pub per_shard: Vec<Vec<DataBody>>,
}

impl Outbox {
    pub fn new(shards: usize) -> Self {
        Outbox { per_shard: (0..shards).map(|_| Vec::new()).collect() }
    }

    pub fn is_empty(&self) -> bool {
        self.per_shard.iter().all(Vec::is_empty)
    }
}

impl ViewRuntime {
    /// Sets up the view on this shard: the partitions it owns of every topic the view
    /// reads, each starting at `start(topic, partition)`.
    pub fn new(
        key: ViewKey,
        name: &str,
        plan: Rc<ViewPlan>,
        host: &dyn DataflowHost,
        start: &dyn Fn(&str, u32) -> Offset,
    ) -> Result<ViewRuntime, String> {
        let shard = host.shard();
        let owned = |topic: &str| -> Result<Vec<(u32, Offset)>, String> {
            let config = host.topic(topic).ok_or_else(|| format!("topic '{topic}' does not exist"))?;
            Ok((0..config.partitions)
                .filter(|&p| host.local_partition(topic, p).is_some())
                .map(|p| (p, start(topic, p)))
                .collect())
        };
        let side = |side: Side, src: &crate::dataflow::plan::SourcePlan| -> Result<SideSource, String> {
            let positions = owned(&src.topic)?;
            let clocks =
                SourceClocks::new(positions.iter().map(|(p, _)| PartitionClock::new(*p, src.lateness_ms)).collect());
            Ok(SideSource {
                side,
                topic: src.topic.clone(),
                columns: Rc::new(src.columns.clone()),
                event_time: src.event_time,
                clocks,
                positions,
            })
        };
        let left = side(Side::Left, &plan.source)?;
        let right = match &plan.interval_join {
            Some(j) => Some(side(Side::Right, &j.right)?),
            None => None,
        };
        let table_source = match &plan.table_join {
            // The table is read whole, from its start, on every (re)start.
            Some(t) => Some(TableSource {
                positions: owned(&t.table)?
                    .into_iter()
                    .map(|(p, _)| {
                        let start = host.local_partition(&t.table, p).map_or(Offset(0), |x| x.offsets().log_start());
                        (p, start)
                    })
                    .collect(),
            }),
            None => None,
        };
        let shards = shard.count;
        let mut agg = AggregateState::new();
        agg.configure(&plan.options);
        let state = ViewState {
            left,
            right,
            table_source,
            partials: PartialTable::new(shards, plan.aggregate.as_ref()),
            join_out: (0..shards).map(|_| Vec::new()).collect(),
            scratch: Vec::with_capacity(64),
            column_rows: Vec::new(),
            agg,
            agg_watermarks: InputWatermarks::new(shards),
            join: IntervalJoinState::default(),
            join_watermarks: InputWatermarks::new(shards),
            append: AppendState::default(),
            table: TableReplica::default(),
            table_pruned_at: i64::MIN,
            table_ready: vec![plan.table_join.is_none(); shards],
            second_partials: PartialTable::new(shards, plan.aggregate.as_ref()),
            changes: Vec::new(),
            append_changes: Vec::new(),
            late_side: Vec::new(),
            align: ReadAlignment::new(shards),
        };
        let mut rt = ViewRuntime {
            key,
            name: name.to_string(),
            plan,
            shard,
            state: RefCell::new(state),
            metrics: ViewMetrics::default(),
            stopped: Cell::new(false),
            paused: Cell::new(false),
            rate_limit_bytes_per_s: Cell::new(0),
            replaying: Cell::new(false),
            started_at: Vec::new(),
            wake: Event::new(),
            holding_reads: Cell::new(false),
            checkpoint: RefCell::new(Checkpointing::default()),
            snapshot_bytes_last: Cell::new(0),
        };
        rt.started_at = rt.positions();
        Ok(rt)
    }

    /// Asks for checkpoint `id`: the driver sends its barriers at its next round.
    pub fn request_checkpoint(&self, id: u64) {
        self.checkpoint.borrow_mut().requested = Some(id);
        self.wake.notify(usize::MAX);
    }

    /// Lets the driver go on after checkpoint `id` (taken or abandoned).
    pub fn resume(&self, id: u64) {
        let mut c = self.checkpoint.borrow_mut();
        c.resumed = c.resumed.max(id);
        if c.requested.is_some_and(|r| r <= id) {
            c.requested = None;
        }
        drop(c);
        self.wake.notify(usize::MAX);
    }

    fn resumed(&self, id: u64) -> bool {
        self.checkpoint.borrow().resumed >= id
    }

    /// This shard's part of checkpoint `id`: source positions and clocks, and every
    /// operator's state. Taken between messages, so it holds whole batches only. The
    /// aggregate's groups are written a slice of keys at a time, stepping aside through
    /// the reactor between slices, so a large state does not hold up the shard's other
    /// work; the state does not change meanwhile, since every source is paused at the
    /// barrier until every shard has its snapshot.
    pub async fn snapshot(&self, id: u64) -> ShardState {
        let (sources, keys, mut e) = {
            let st = self.state.borrow();
            let mut sources = Vec::new();
            for src in std::iter::once(&st.left).chain(st.right.iter()) {
                for (p, next) in &src.positions {
                    let max_ts = src
                        .clocks
                        .partitions
                        .iter()
                        .find(|c| c.partition == *p)
                        .map_or(WATERMARK_UNKNOWN, |c| c.max_ts);
                    sources.push(SourcePosition { topic: src.topic.clone(), partition: *p, next: *next, max_ts });
                }
            }
            // A first snapshot guesses from the groups held (~60 bytes each, encoded).
            let hint = self.snapshot_bytes_last.get().max(st.agg.rows.saturating_mul(64));
            let mut e = Encoder::with_buf(Vec::with_capacity(hint + hint / 8));
            let keys = st.agg.encode_begin(&mut e);
            (sources, keys, e)
        };
        let mut budget = RunBudget::new();
        for slice in keys.chunks(crate::limits::SNAPSHOT_SLICE_KEYS) {
            self.state.borrow().agg.encode_keys(&mut e, slice);
            budget.step_aside_if_spent().await;
        }
        {
            let st = self.state.borrow();
            encode_watermarks(&st.agg_watermarks, &mut e);
            st.join.encode(&mut e);
            encode_watermarks(&st.join_watermarks, &mut e);
            st.append.encode(&mut e);
        }
        let operators = e.finish();
        self.snapshot_bytes_last.set(operators.len());
        ShardState {
            view_key: self.key,
            id,
            shards: self.shard.count as u32,
            shard: self.shard.index as u32,
            sources,
            operators,
        }
    }

    /// Frees the aggregate's groups a slice of keys at a time, stepping aside between
    /// slices: a retired or dropped version's tens of thousands of windows, freed in one
    /// go, held the shard for 5–7 ms at a rebuild's switch. Its driver has stopped.
    pub async fn release_state(&self) {
        let mut groups: Vec<_> = std::mem::take(&mut self.state.borrow_mut().agg.keys).into_iter().collect();
        let mut budget = RunBudget::new();
        while !groups.is_empty() {
            groups.truncate(groups.len().saturating_sub(crate::limits::SNAPSHOT_SLICE_KEYS));
            budget.step_aside_if_spent().await;
        }
    }

    /// Puts this shard's part of a checkpoint back: sources continue from its offsets.
    pub fn restore(&self, saved: &ShardState) -> Result<(), String> {
        let mut d = Decoder::new(&saved.operators);
        let bad = |e: crate::wire::WireError| format!("checkpoint {} of view {}: {e}", saved.id, self.name);
        let agg = AggregateState::decode(&mut d).map_err(bad)?;
        let agg_wm = decode_watermarks(&mut d).map_err(bad)?;
        let join = IntervalJoinState::decode(&mut d).map_err(bad)?;
        let join_wm = decode_watermarks(&mut d).map_err(bad)?;
        let append = AppendState::decode(&mut d).map_err(bad)?;
        d.end().map_err(bad)?;
        agg.fits(self.plan.aggregate.as_ref())
            .map_err(|e| format!("checkpoint {} of view {}: state does not fit the view: {e}", saved.id, self.name))?;
        let mut guard = self.state.borrow_mut();
        let st = &mut *guard;
        st.agg = agg;
        st.agg.configure(&self.plan.options);
        st.agg_watermarks.restore(&agg_wm.0, agg_wm.1);
        st.join = join;
        st.join_watermarks.restore(&join_wm.0, join_wm.1);
        st.append = append;
        for src in std::iter::once(&mut st.left).chain(st.right.as_mut()) {
            let mut clocks = Vec::new();
            for s in saved.sources.iter().filter(|s| s.topic == src.topic) {
                if let Some(p) = src.positions.iter_mut().find(|(p, _)| *p == s.partition) {
                    p.1 = s.next;
                    clocks.push((s.partition, s.max_ts));
                }
            }
            src.clocks.restore(&clocks);
        }
        Ok(())
    }

    pub fn stop(&self) {
        self.stopped.set(true);
        self.wake.notify(usize::MAX);
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.get()
    }

    /// Makes the driver return at its next round; the view's state stays as it is.
    pub fn pause_driver(&self) {
        self.paused.set(true);
        self.wake.notify(usize::MAX);
    }

    pub fn unpause_driver(&self) {
        self.paused.set(false);
    }

    /// The watermark of the view's last stateful operator (milliseconds).
    pub fn watermark(&self) -> i64 {
        let st = self.state.borrow();
        if self.plan.interval_join.is_some() && self.plan.aggregate.is_none() {
            st.join_watermarks.current()
        } else {
            st.agg_watermarks.current()
        }
    }

    /// Source positions: (topic, partition, next offset).
    pub fn positions(&self) -> Vec<(String, u32, Offset)> {
        let st = self.state.borrow();
        let mut out: Vec<(String, u32, Offset)> =
            st.left.positions.iter().map(|(p, o)| (st.left.topic.clone(), *p, *o)).collect();
        if let Some(r) = &st.right {
            out.extend(r.positions.iter().map(|(p, o)| (r.topic.clone(), *p, *o)));
        }
        out
    }

    /// Stage 1: folds the next at most `rows_max` records of a batch of a source partition
    /// (those not folded yet: the source position says how far it got). Returns whether
    /// the batch is done. A replay folds a batch in slices and steps aside between them.
    pub fn process_batch(&self, side: Side, partition: u32, batch: &Batch, rows_max: usize) -> bool {
        let plan = &self.plan;
        let mut guard = self.state.borrow_mut();
        let st = &mut *guard;
        let Some(rows) = batch.typed_rows() else { return true };
        let source = match side {
            Side::Left => &mut st.left,
            Side::Right => match st.right.as_mut() {
                Some(r) => r,
                None => return true,
            },
        };
        let columns = source.columns.clone();
        let event_col = source.event_time;
        let next = source.positions.iter().find(|(p, _)| *p == partition).map_or(0, |(_, o)| o.0);
        let Some(clock) = source.clocks.get_mut(partition) else { return true };
        clock.touched();
        let width = columns.len();
        let time_bound = plan.interval_join.is_some() || plan.aggregate.as_ref().is_some_and(|a| a.window.is_some());
        let mut end = next;
        let first = next.saturating_sub(batch.base_offset()) as usize;
        let done = rows.len().saturating_sub(first) <= rows_max;
        let mut sink = RowSink {
            plan,
            metrics: &self.metrics,
            partials: &mut st.partials,
            append: &mut st.append,
            append_changes: &mut st.append_changes,
        };
        // One body for both layouts, each loop monomorphic over its row type.
        macro_rules! fold_rows {
            ($indexes:expr, |$i:ident| $row:expr, $record_ts:expr) => {
                for $i in $indexes {
                    let offset = batch.base_offset() + $i as u64;
                    end = offset + 1;
                    let row = $row;
                    let ts = event_time(&row, event_col, $record_ts);
                    let pos = Position { ts, partition, offset };
                    self.metrics.events.add(1);
                    if clock.observe(ts) && time_bound && !self.late_row_kept(&row, &columns, &mut st.late_side) {
                        continue;
                    }
                    match (&plan.interval_join, side) {
                        (Some(j), _) => {
                            // Both sides go to the shard owning the join key.
                            st.scratch.clear();
                            let keys = if side == Side::Left { &j.left_key } else { &j.right_key };
                            encode_exprs(keys, &row, &mut st.scratch);
                            let owner = owner_of(&st.scratch, self.shard.count);
                            let values = owned_row(&row, width);
                            st.join_out[owner].push((side, st.scratch.as_slice().into(), JoinRow { ts, pos, values }));
                        }
                        (None, _) => {
                            let id = (partition, offset, 0, 0);
                            let Some(t) = &plan.table_join else {
                                // The source row alone, read where it lies.
                                sink.emit(&row, ts, pos, id);
                                continue;
                            };
                            // Enrichment, as of the event.
                            st.scratch.clear();
                            encode_exprs(&t.stream_key, &row, &mut st.scratch);
                            let table_row = st.table.lookup(&st.scratch, ts);
                            if table_row.is_none() && !t.keep_unmatched {
                                self.metrics.unmatched.add(1);
                                continue;
                            }
                            sink.emit(&Joined { left: &row, left_width: width, right: table_row }, ts, pos, id);
                        }
                    }
                }
            };
        }
        let last = rows.len().min(first.saturating_add(rows_max));
        match rows {
            TypedRows::Rows(recs) => fold_rows!(
                first..last,
                |i| SourceRow { values: &recs[i].value, columns: &columns },
                recs[i].timestamp_ms.to_native()
            ),
            TypedRows::Columns(batch_columns) => {
                let resolved: Vec<ColumnRef> = batch_columns.columns.iter().map(|c| c.resolve()).collect();
                let timestamps = batch_columns.record_timestamps();
                let record_ts = |i: usize| timestamps.get(i).map_or(0, |t| t.to_native());
                match &plan.aggregate {
                    // The common shape, an aggregate of the source alone: the rows' times
                    // and lateness first, then the column fold over the rows kept.
                    Some(agg) if plan.filter.is_none() && plan.interval_join.is_none() && plan.table_join.is_none() => {
                        // An event-time column without NULLs is read straight from its values.
                        let times = match event_col.and_then(|c| resolved.get(c)) {
                            Some(ColumnRef::Timestamp { nulls, values } | ColumnRef::BigInt { nulls, values })
                                if nulls.is_empty() && values.len() >= last =>
                            {
                                Some(values)
                            }
                            _ => None,
                        };
                        self.metrics.events.add(last.saturating_sub(first) as u64);
                        if last > first {
                            end = batch.base_offset() + last as u64;
                        }
                        // Usually no row is late: the clock takes every time in one pass and
                        // the fold reads them from their column; if one is, the rows are
                        // sorted out one by one.
                        match times {
                            Some(values)
                                if clock.observe_run(values[first..last].iter().map(|t| t.to_native()), time_bound) =>
                            {
                                let rows = (first..last).map(|i| (i as u32, values[i].to_native()));
                                st.partials.add_columns(agg, &resolved, &columns, rows, partition, batch.base_offset());
                            }
                            _ => {
                                st.column_rows.clear();
                                for i in first..last {
                                    let row = ColumnRow { batch: &resolved, index: i, columns: &columns };
                                    let ts = match times {
                                        Some(values) => values[i].to_native(),
                                        None => event_time(&row, event_col, record_ts(i)),
                                    };
                                    if clock.observe(ts)
                                        && time_bound
                                        && !self.late_row_kept(&row, &columns, &mut st.late_side)
                                    {
                                        continue;
                                    }
                                    st.column_rows.push((i as u32, ts));
                                }
                                st.partials.add_columns(
                                    agg,
                                    &resolved,
                                    &columns,
                                    st.column_rows.iter().copied(),
                                    partition,
                                    batch.base_offset(),
                                );
                            }
                        }
                    }
                    _ => fold_rows!(
                        first..last,
                        |i| ColumnRow { batch: &resolved, index: i, columns: &columns },
                        record_ts(i)
                    ),
                }
            }
        }
        let source = match side {
            Side::Left => &mut st.left,
            Side::Right => st.right.as_mut().expect("right source"),
        };
        if let Some(p) = source.positions.iter_mut().find(|(p, _)| *p == partition) {
            let end = if done { end.max(batch.end_offset()) } else { end };
            p.1 = Offset(p.1 .0.max(end));
        }
        done
    }

    /// Applies the view's late policy to a late row (lateness only matters where event
    /// time decides the result: windows, and the interval join, whose state the watermark
    /// prunes): counts it, appends it to the side topic's queue as a JSON object of its
    /// columns; returns whether it is still folded (`update`).
    fn late_row_kept(&self, row: &(impl Row + ?Sized), columns: &[ColumnInfo], late_side: &mut Vec<String>) -> bool {
        match &self.plan.options.late {
            LatePolicy::Drop => {
                self.metrics.late_dropped.add(1);
                false
            }
            LatePolicy::Side(_) => {
                self.metrics.late_side.add(1);
                let json: serde_json::Map<String, serde_json::Value> =
                    columns.iter().enumerate().map(|(c, col)| (col.name.clone(), row.get(c).to_json())).collect();
                late_side.push(serde_json::Value::Object(json).to_string());
                false
            }
            LatePolicy::Update => {
                self.metrics.late_updated.add(1);
                true
            }
        }
    }

    /// The stage-1 watermark of this shard (minimum over its sides).
    fn source_watermark(&self, st: &mut ViewState) -> i64 {
        let idle = Duration::from_millis(self.plan.options.idle_timeout_ms.max(0) as u64);
        let mut wm = st.left.clocks.watermark(idle);
        if let Some(r) = st.right.as_mut() {
            wm = wm.min(r.clocks.watermark(idle));
        }
        wm
    }

    /// Moves what stage 1 made into the outbox, each destination's batch followed by the
    /// watermark it is covered by.
    pub fn flush(&self, outbox: &mut Outbox) {
        if let Some((wm, mut per)) = self.flush_begin(outbox) {
            let done = self.flush_some(&mut per, usize::MAX);
            debug_assert!(done);
            self.flush_end(wm, per, outbox);
        }
    }

    /// `flush` a slice of groups at a time, stepping aside between slices when the replay
    /// has run its share: a round's thousands of partials took 100-300 us in one go. Only
    /// the replay's driver adds to its table, and it waits here, so nothing is added
    /// between slices.
    async fn flush_in_slices(&self, outbox: &mut Outbox, budget: &mut RunBudget) {
        let Some((wm, mut per)) = self.flush_begin(outbox) else { return };
        while !self.flush_some(&mut per, crate::limits::REPLAY_SLICE_GROUPS) {
            budget.step_aside_if_spent().await;
        }
        self.flush_end(wm, per, outbox);
    }

    /// The part of a flush before the partials: the watermark they are covered by, and
    /// where they go by owner shard. None: a join's rows went out whole, nothing is left.
    fn flush_begin(&self, outbox: &mut Outbox) -> Option<(i64, Vec<Vec<PartialGroup>>)> {
        let mut guard = self.state.borrow_mut();
        let st = &mut *guard;
        let wm = self.source_watermark(st);
        // Table versions no event can meet any more go (at most once per second of
        // event time: pruning walks every key). Late rows that update keep them to the TTL.
        if self.plan.table_join.is_some() && wm != WATERMARK_UNKNOWN && wm != WATERMARK_IDLE {
            let cut = match (&self.plan.options.late, self.plan.options.state_ttl_ms) {
                (LatePolicy::Update, Some(ttl)) => Some(wm.saturating_sub(ttl)),
                (LatePolicy::Update, None) => None,
                _ => Some(wm),
            };
            if let Some(cut) = cut {
                if cut.saturating_sub(st.table_pruned_at) >= TABLE_PRUNE_EVERY_MS {
                    st.table.prune(cut);
                    st.table_pruned_at = cut;
                }
            }
        }
        if self.plan.interval_join.is_some() {
            for (shard, rows) in st.join_out.iter_mut().enumerate() {
                let mut left = Vec::new();
                let mut right = Vec::new();
                for (side, k, r) in rows.drain(..) {
                    match side {
                        Side::Left => left.push((k, r)),
                        Side::Right => right.push((k, r)),
                    }
                }
                for (side, rows) in [(Side::Left, left), (Side::Right, right)] {
                    if !rows.is_empty() {
                        outbox.per_shard[shard].push(DataBody::JoinRows { side, rows, watermark: wm });
                    }
                }
                outbox.per_shard[shard].push(DataBody::Watermark { stage: Stage::First, watermark: wm });
            }
            return None;
        }
        Some((wm, (0..self.shard.count).map(|_| Vec::new()).collect()))
    }

    /// Moves at most `groups_max` partials to `per`; true once none is left.
    fn flush_some(&self, per: &mut [Vec<PartialGroup>], groups_max: usize) -> bool {
        self.state.borrow_mut().partials.drain_some(groups_max, |owner, g| per[owner].push(g))
    }

    /// Each destination's partials, then the watermark `wm` they are covered by.
    fn flush_end(&self, wm: i64, per: Vec<Vec<PartialGroup>>, outbox: &mut Outbox) {
        for (shard, groups) in per.into_iter().enumerate() {
            if groups.is_empty() {
                outbox.per_shard[shard].push(DataBody::Watermark { stage: Stage::First, watermark: wm });
            } else {
                outbox.per_shard[shard].push(DataBody::Partials { stage: Stage::First, groups, watermark: wm });
            }
        }
    }

    /// The aggregate's watermark from shard `from`: where it moved the operator's
    /// watermark to, if it did (what `receive` then advances to).
    pub fn update_watermark(&self, from: usize, watermark: i64) -> Option<i64> {
        self.plan.aggregate.as_ref()?;
        self.state.borrow_mut().agg_watermarks.update(from, watermark)
    }

    /// Finalizes at most `groups_max` of the windows the watermark `wm` closes; true once
    /// none is left (what `receive` does on a watermark, in slices).
    pub fn advance_some(&self, wm: i64, groups_max: usize) -> bool {
        let Some(agg) = &self.plan.aggregate else { return true };
        let mut guard = self.state.borrow_mut();
        let st = &mut *guard;
        st.agg.advance_some(agg, &self.plan.options, wm, &mut st.changes, groups_max)
    }

    /// Merges partial groups into the aggregate's state, without the watermark they come
    /// with (`update_watermark`, then `advance_some`, apply it in slices).
    pub fn merge_partials(&self, groups: impl IntoIterator<Item = PartialGroup>) {
        let Some(agg) = &self.plan.aggregate else { return };
        let mut guard = self.state.borrow_mut();
        Self::merge(agg, &self.plan.options, &mut guard, groups);
    }

    fn merge(
        agg: &AggregatePlan,
        options: &ViewOptions,
        st: &mut ViewState,
        groups: impl IntoIterator<Item = PartialGroup>,
    ) {
        let current = st.agg_watermarks.current();
        for g in groups {
            st.agg.apply(agg, options, current, g, &mut st.changes);
        }
    }

    /// Applies a message from shard `from` to this shard's state. What it makes for the
    /// next stage goes into `next` (sent on the second mesh).
    pub fn receive(&self, from: usize, body: DataBody, next: &mut Outbox) {
        let plan = &self.plan;
        let mut guard = self.state.borrow_mut();
        let st = &mut *guard;
        match body {
            // Both stages' partials go to the aggregate, under one set of input watermarks.
            DataBody::Partials { groups, watermark, .. } => {
                if let Some(agg) = &plan.aggregate {
                    Self::merge(agg, &plan.options, st, groups);
                    if let Some(wm) = st.agg_watermarks.update(from, watermark) {
                        st.agg.advance(agg, &plan.options, wm, &mut st.changes);
                    }
                }
            }
            DataBody::Watermark { stage, watermark } => {
                if plan.interval_join.is_some() && stage == Stage::First {
                    self.join_watermark(st, from, watermark, next);
                } else if let Some(agg) = &plan.aggregate {
                    if let Some(wm) = st.agg_watermarks.update(from, watermark) {
                        st.agg.advance(agg, &plan.options, wm, &mut st.changes);
                    }
                } else if let Some(wm) = st.agg_watermarks.update(from, watermark) {
                    if let Some(ttl) = plan.options.state_ttl_ms {
                        for id in st.append.evict_before(wm.saturating_sub(ttl)) {
                            st.append_changes.push((id, false));
                        }
                    }
                }
            }
            // The rows only: the sender's watermark follows in its own message, after the
            // rows of both sides (applying it here would prune before the other side's rows).
            DataBody::JoinRows { side, rows, watermark: _ } => {
                let Some(j) = &plan.interval_join else { return };
                let rows_max = plan.options.state_rows_max;
                let mut sink = RowSink {
                    plan,
                    metrics: &self.metrics,
                    partials: &mut st.second_partials,
                    append: &mut st.append,
                    append_changes: &mut st.append_changes,
                };
                let mut pairs: Vec<(Vec<OwnedDatum>, i64, Position, Position)> = Vec::new();
                for (key, row) in rows {
                    st.join.add(side, &key, row, j.lower_ms, j.upper_ms, rows_max, |l, r| {
                        let mut values = l.values.clone();
                        values.extend(r.values.iter().cloned());
                        pairs.push((values, l.ts, l.pos, r.pos));
                    });
                    for (values, ts, lpos, rpos) in pairs.drain(..) {
                        let id = (lpos.partition, lpos.offset, rpos.partition, rpos.offset);
                        sink.emit(&values, ts, lpos, id);
                    }
                }
                if plan.aggregate.is_some() {
                    // Pass what the join made on now; the watermark follows it.
                    self.join_output(st, None, next);
                }
            }
            DataBody::TableRows { rows } => {
                let first_from_start = plan.table_join.as_ref().is_some_and(|t| t.event_time.is_none());
                for (k, ts, row) in rows {
                    st.table.upsert(&k, ts, row, first_from_start);
                }
            }
            DataBody::TableReady => {
                if let Some(r) = st.table_ready.get_mut(from) {
                    *r = true;
                }
                self.wake.notify(usize::MAX);
            }
            DataBody::Backlog { watermark } => {
                if st.align.update(from, watermark) && self.holding_reads.get() {
                    self.wake.notify(usize::MAX);
                }
            }
            DataBody::Barrier { stage, id } => {
                let mut ck = self.checkpoint.borrow_mut();
                let counts = if stage == Stage::First { &mut ck.first } else { &mut ck.second };
                let n = counts.entry(id).or_insert(0);
                *n += 1;
                if *n >= self.shard.count {
                    counts.remove(&id);
                    if stage == Stage::First && plan.interval_join.is_some() && plan.aggregate.is_some() {
                        // The join's state is complete: its output so far, then the barrier,
                        // go on to the aggregate.
                        self.join_output(st, None, next);
                        for bodies in next.per_shard.iter_mut() {
                            bodies.push(DataBody::Barrier { stage: Stage::Second, id });
                        }
                    } else {
                        ck.ready = Some(id);
                    }
                }
            }
        }
    }

    /// The join's input watermark moved: prune, and pass the join's output on.
    fn join_watermark(&self, st: &mut ViewState, from: usize, watermark: i64, next: &mut Outbox) {
        let Some(j) = &self.plan.interval_join else { return };
        let advanced = st.join_watermarks.update(from, watermark);
        if let Some(wm) = advanced {
            st.join.prune(wm, j.lower_ms, j.upper_ms);
            if self.plan.aggregate.is_none() {
                if let Some(ttl) = self.plan.options.state_ttl_ms {
                    for id in st.append.evict_before(wm.saturating_sub(ttl)) {
                        st.append_changes.push((id, false));
                    }
                }
            }
        }
        if self.plan.aggregate.is_some() {
            self.join_output(st, advanced, next);
        }
    }

    /// Sends the aggregate partials the join made to their owners, with the join's
    /// watermark (a bare watermark where there is nothing else and it `advanced`).
    fn join_output(&self, st: &mut ViewState, advanced: Option<i64>, next: &mut Outbox) {
        let wm = st.join_watermarks.current();
        let mut per: Vec<Vec<PartialGroup>> = (0..self.shard.count).map(|_| Vec::new()).collect();
        st.second_partials.drain(|owner, g| per[owner].push(g));
        for (shard, groups) in per.into_iter().enumerate() {
            if groups.is_empty() {
                if advanced.is_some() {
                    next.per_shard[shard].push(DataBody::Watermark { stage: Stage::Second, watermark: wm });
                }
            } else {
                next.per_shard[shard].push(DataBody::Partials { stage: Stage::Second, groups, watermark: wm });
            }
        }
    }

    /// Records how a round of reads of a source partition ended: whether it reached the
    /// partition's end (idle detection; a round that read something is not caught up yet)
    /// and whether it stopped at the round's limit with more to read (alignment).
    fn end_round(&self, side: Side, partition: u32, read_any: bool, reached_end: bool, backlog: bool) {
        let mut st = self.state.borrow_mut();
        if let Some(c) = Self::source_mut(&mut st, side).and_then(|s| s.clocks.get_mut(partition)) {
            if read_any || reached_end {
                c.caught_up = !read_any;
            }
            c.backlog = backlog;
        }
    }

    fn source(st: &ViewState, side: Side) -> Option<&SideSource> {
        match side {
            Side::Left => Some(&st.left),
            Side::Right => st.right.as_ref(),
        }
    }

    fn source_mut(st: &mut ViewState, side: Side) -> Option<&mut SideSource> {
        match side {
            Side::Left => Some(&mut st.left),
            Side::Right => st.right.as_mut(),
        }
    }

    /// Whether a source partition is too far ahead of the slowest with a backlog to be
    /// read now (always false for a view whose state the watermark does not free).
    fn read_held(&self, side: Side, partition: u32) -> bool {
        if !self.plan.aligns_reads() {
            return false;
        }
        let st = self.state.borrow();
        let limit = st.align.read_limit(crate::limits::WATERMARK_DRIFT_MAX_MS);
        Self::source(&st, side).and_then(|s| s.clocks.get(partition)).is_some_and(|c| c.watermark() > limit)
    }

    /// Holds a source partition back this round if it is too far ahead (`read_held`),
    /// counting it; a held one may have data, so it must not count as idle meanwhile.
    fn hold_back(&self, side: Side, partition: u32) -> bool {
        if !self.read_held(side, partition) {
            return false;
        }
        let mut st = self.state.borrow_mut();
        if let Some(c) = Self::source_mut(&mut st, side).and_then(|s| s.clocks.get_mut(partition)) {
            c.caught_up = false;
        }
        self.metrics.reads_held.add(1);
        true
    }

    /// This shard's slowest partition with a backlog, for every shard, if that changed
    /// (or, `again`, if it holds anyone back).
    fn backlog_to_send(&self, again: bool) -> Option<i64> {
        if !self.plan.aligns_reads() {
            return None;
        }
        let mut st = self.state.borrow_mut();
        let st = &mut *st;
        let slowest = [st.left.clocks.slowest_backlog(), st.right.as_ref().and_then(|r| r.clocks.slowest_backlog())]
            .into_iter()
            .flatten()
            .min();
        st.align.to_send(slowest, again)
    }

    /// Takes the late records bound for the side topic.
    pub fn take_late_side(&self) -> Vec<String> {
        std::mem::take(&mut self.state.borrow_mut().late_side)
    }

    /// Whether every shard has sent the table rows it had at the start.
    pub fn table_ready(&self) -> bool {
        self.state.borrow().table_ready.iter().all(|r| *r)
    }
}

/// Runs a view on this shard until it is stopped: reads its partitions from their
/// positions, processes, exchanges, and waits for new data when caught up.
/// A reader of one source partition from `from`: a replay keeps fewer reads in flight, so
/// live reads and writes wait behind fewer of them in the device.
fn source_reader(rt: &ViewRuntime, part: Partition, from: Offset) -> PartitionReader {
    let depth =
        if rt.replaying.get() { crate::limits::REPLAY_READ_AHEAD_DEPTH } else { crate::limits::READ_AHEAD_DEPTH };
    PartitionReader::with_read_ahead(part, from, depth)
}

pub async fn drive(host: Rc<dyn DataflowHost>, rt: Rc<ViewRuntime>) {
    let shards = rt.shard.count;
    let me = rt.shard.index;
    // The table of a stream–table join first: every row it has now, to every shard
    // (not again when the driver is restarted in another task queue).
    if rt.plan.table_join.is_some() && !rt.table_ready() {
        // Until the table is read whole no event can be enriched: a failed read is tried
        // again (rows go out only once every partition is read, so a failed read sent none).
        while let Err(e) = feed_table(&*host, &rt, true).await {
            tracing::error!(view = %rt.name, error = %e, "reading the table failed; trying again in 1 s");
            glommio::timer::sleep(Duration::from_secs(1)).await;
            if rt.is_stopped() {
                return;
            }
        }
        while !rt.table_ready() && !rt.is_stopped() {
            let l = rt.wake.listen();
            if rt.table_ready() || rt.is_stopped() {
                break;
            }
            let _ = glommio::timer::timeout(Duration::from_millis(50), async {
                l.await;
                Ok(())
            })
            .await;
        }
    }
    let mut readers: Vec<(Side, u32, PartitionReader)> = Vec::new();
    {
        let st = rt.state.borrow();
        for (side, src) in std::iter::once(&st.left).chain(st.right.iter()).map(|s| (s.side, s)) {
            for (p, from) in &src.positions {
                if let Some(part) = host.local_partition(&src.topic, *p) {
                    readers.push((side, *p, source_reader(&rt, part, *from)));
                }
            }
        }
    }
    // Per reader: whether this round left it unread (alignment), to wait for the others.
    let mut held = vec![false; readers.len()];
    let mut backlog_said = std::time::Instant::now();
    let mut next = Outbox::new(shards);
    let mut pace = Pace::new(rt.metrics.bytes_read.get());
    let mut budget = RunBudget::new();
    loop {
        // Other task queues (live ingest, queries) get their share between rounds.
        glommio::yield_if_needed().await;
        pace.wait(&rt).await;
        if rt.is_stopped() || rt.paused.get() {
            return;
        }
        let requested = rt.checkpoint.borrow_mut().requested.take();
        if let Some(id) = requested {
            // Everything sent so far is before the barrier; nothing more is sent until
            // every shard has taken its part of the checkpoint.
            let mut outbox = Outbox::new(shards);
            for bodies in outbox.per_shard.iter_mut() {
                bodies.push(DataBody::Barrier { stage: Stage::First, id });
            }
            deliver(&*host, &rt, outbox, &mut next).await;
            if !next.is_empty() {
                let n = std::mem::replace(&mut next, Outbox::new(shards));
                deliver_second(&*host, &rt, n).await;
            }
            write_changes(&*host, &rt).await;
            maybe_checkpoint(&*host, &rt).await;
            while !rt.resumed(id) && !rt.is_stopped() {
                let l = rt.wake.listen();
                if rt.resumed(id) || rt.is_stopped() {
                    break;
                }
                let _ = glommio::timer::timeout(Duration::from_millis(IDLE_TICK_MS), async {
                    l.await;
                    Ok(())
                })
                .await;
            }
            continue;
        }
        let mut progressed = false;
        for ((side, p, reader), held) in readers.iter_mut().zip(held.iter_mut()) {
            *held = rt.hold_back(*side, *p);
            if *held {
                continue;
            }
            // Per partition: an idle one must count as caught up whatever the others do.
            // `stopped`: the round ended before its quota (the end, or an error).
            let (mut read_any, mut reached_end, mut stopped) = (false, false, false);
            // A few batches per partition per round: fair, and a bounded outbox.
            for _ in 0..READ_BATCHES_PER_ROUND {
                if rt.replaying.get() {
                    let_held_up_writes_land().await;
                }
                match reader.next_batch().await {
                    Ok(Some(batch)) => {
                        rt.metrics.bytes_read.add(batch.payload().len() as u64);
                        read_any = true;
                        if rt.replaying.get() {
                            fold_replayed(&rt, *side, *p, &batch, &mut budget).await;
                        } else {
                            rt.process_batch(*side, *p, &batch, usize::MAX);
                            glommio::yield_if_needed().await;
                        }
                    }
                    Ok(None) => {
                        (reached_end, stopped) = (true, true);
                        break;
                    }
                    Err(LogError::OffsetOutOfRange { requested, start, .. }) => {
                        let part = reader.partition().clone();
                        let from = go_on_after_retention(&rt, &part.topic().name, *p, requested, start);
                        *reader = source_reader(&rt, part, from);
                    }
                    Err(e) => {
                        tracing::error!(view = %rt.name, partition = *p, error = %e, "reading the source failed");
                        glommio::timer::sleep(Duration::from_millis(200)).await;
                        stopped = true;
                        break;
                    }
                }
            }
            rt.end_round(*side, *p, read_any, reached_end, read_any && !stopped);
            progressed |= read_any;
        }
        rt.holding_reads.set(held.contains(&true));
        if rt.plan.table_join.is_some() {
            let _ = feed_table(&*host, &rt, false).await;
        }
        // Late records for a side topic.
        let late = rt.take_late_side();
        if !late.is_empty() && !rt.replaying.get() {
            if let LatePolicy::Side(topic) = &rt.plan.options.late {
                write_json_lines(&*host, topic, me as u32, late).await;
            }
        }
        let mut outbox = Outbox::new(shards);
        if rt.replaying.get() {
            rt.flush_in_slices(&mut outbox, &mut budget).await;
        } else {
            rt.flush(&mut outbox);
        }
        // Said again before a wait, once per idle tick: a message to a shard that had not
        // started the view yet was dropped, and an unchanged value is not sent otherwise.
        let again = !progressed && backlog_said.elapsed() >= Duration::from_millis(IDLE_TICK_MS);
        if let Some(watermark) = rt.backlog_to_send(again) {
            backlog_said = std::time::Instant::now();
            for bodies in outbox.per_shard.iter_mut() {
                bodies.push(DataBody::Backlog { watermark });
            }
        }
        deliver(&*host, &rt, outbox, &mut next).await;
        if !next.is_empty() {
            let n = std::mem::replace(&mut next, Outbox::new(shards));
            deliver_second(&*host, &rt, n).await;
        }
        write_changes(&*host, &rt).await;
        maybe_checkpoint(&*host, &rt).await;
        if !progressed {
            wait_for_data(&rt, &readers, &held).await;
        }
    }
}

/// How long work done in slices (a replay, a snapshot, freeing a version's state) has run
/// since it last stepped aside. It steps aside through the reactor (where glommio finds
/// network input) as soon as a request has arrived on one of the shard's sockets
/// (`runtime::live_input`, after REPLAY_RUN_MIN_US), and past REPLAY_RUN_US in any case, so
/// live work runs first. glommio's own preemption timer is 100 ms; 1 ms executor-wide lost
/// wake-ups. In a replay the run counts from the task's poll, not from the budget's own
/// last step: the fold, the partial table's drain and the merge each kept a budget, and a
/// poll that ran through all three held the shard 250-550 us.
struct RunBudget {
    since: std::time::Instant,
}

impl RunBudget {
    fn new() -> Self {
        RunBudget { since: std::time::Instant::now() }
    }

    /// Steps aside if this work has run its share since it last did, or sooner once a
    /// live request has arrived on the shard's sockets.
    async fn step_aside_if_spent(&mut self) {
        use crate::limits::{REPLAY_RUN_MIN_US, REPLAY_RUN_US};
        use crate::runtime::live_input;
        let since = crate::runtime::replay_polled_at().unwrap_or(self.since);
        let run = since.elapsed();
        let input = run >= Duration::from_micros(REPLAY_RUN_MIN_US) && live_input::waiting();
        if input || run >= Duration::from_micros(REPLAY_RUN_US) {
            glommio::timer::sleep(Duration::from_micros(1)).await;
            if input {
                live_input::stepped_aside();
            }
            self.since = std::time::Instant::now();
        }
    }
}

/// A replay stops reading while a live log write of its shard is held up in the device
/// (up to REPLAY_YIELDS_TO_WRITES_MAX): its reads in flight drain and the write goes.
async fn let_held_up_writes_land() {
    use crate::limits::{REPLAY_YIELDS_TO_WRITES_MAX, REPLAY_YIELDS_TO_WRITE_AFTER};
    let start = std::time::Instant::now();
    while crate::log::oldest_write_age().is_some_and(|age| age >= REPLAY_YIELDS_TO_WRITE_AFTER)
        && start.elapsed() < REPLAY_YIELDS_TO_WRITES_MAX
    {
        glommio::timer::sleep(Duration::from_micros(500)).await;
    }
}

/// Folds a replayed batch in slices, stepping aside between them when the replay has run
/// its share (the live task queue has the larger one).
async fn fold_replayed(rt: &ViewRuntime, side: Side, p: u32, batch: &Batch, budget: &mut RunBudget) {
    loop {
        let done = rt.process_batch(side, p, batch, crate::limits::REPLAY_SLICE_ROWS);
        budget.step_aside_if_spent().await;
        if done {
            return;
        }
    }
}

/// Retention deleted records a reader of this view had not read (a slow rebuild, an old
/// checkpoint): they are gone for good, so the reader goes on from the oldest kept, which
/// this returns, and the view counts what it lost.
fn go_on_after_retention(rt: &ViewRuntime, topic: &str, partition: u32, requested: u64, start: u64) -> Offset {
    let lost = start.saturating_sub(requested);
    tracing::warn!(view = %rt.name, topic, partition, lost,
        "retention deleted records before the view read them; it continues from offset {start}");
    rt.metrics.lost_to_retention.add(lost);
    Offset(start)
}

/// Where every input row of a view ends: the WHERE, then either a partial aggregate or
/// the append-only view's rows (recorded as a change). Borrows only those parts of the
/// view's state, so the caller keeps the rest (scratch, table, outboxes) in hand.
struct RowSink<'a> {
    plan: &'a ViewPlan,
    metrics: &'a ViewMetrics,
    partials: &'a mut PartialTable,
    append: &'a mut AppendState,
    append_changes: &'a mut Vec<(RowId, bool)>,
}

impl RowSink<'_> {
    #[inline]
    fn emit(&mut self, row: &(impl Row + ?Sized), ts: i64, pos: Position, id: RowId) {
        let plan = self.plan;
        if plan.filter.as_ref().is_some_and(|f| !f.holds(row)) {
            self.metrics.filtered_out.add(1);
            return;
        }
        match &plan.aggregate {
            Some(agg) => self.partials.add(agg, row, ts, pos),
            None => {
                let out: Vec<OwnedDatum> = plan.output.iter().map(|c| c.expr.eval(row).into_owned()).collect();
                if self.append.insert(id, ts, out, plan.options.state_rows_max) {
                    self.append_changes.push((id, true));
                }
            }
        }
    }
}

/// Keeps a driver's reads under a rate (a rebuild's limit): after each round it sleeps
/// until the bytes read since it started fit the rate.
struct Pace {
    started: std::time::Instant,
    bytes_at_start: u64,
}

impl Pace {
    fn new(bytes: u64) -> Self {
        Pace { started: std::time::Instant::now(), bytes_at_start: bytes }
    }

    /// Sleeps until the bytes read fit the view's rate limit, or until the driver is
    /// stopped, paused or asked for a checkpoint (a low limit meant sleeps of seconds that
    /// held up a shutdown, a cancel or a switch).
    async fn wait(&mut self, rt: &ViewRuntime) {
        let (rate_bytes_per_s, bytes) = (rt.rate_limit_bytes_per_s.get(), rt.metrics.bytes_read.get());
        if rate_bytes_per_s == 0 {
            self.started = std::time::Instant::now();
            self.bytes_at_start = bytes;
            return;
        }
        let due = Duration::from_secs_f64(bytes.saturating_sub(self.bytes_at_start) as f64 / rate_bytes_per_s as f64);
        while let Some(wait) = due.checked_sub(self.started.elapsed()) {
            let woken = rt.wake.listen();
            if rt.is_stopped() || rt.paused.get() || rt.checkpoint.borrow().requested.is_some() {
                return;
            }
            futures_lite::future::or(glommio::timer::sleep(wait), woken).await;
        }
    }
}

/// How far (event time) the watermark moves between prunings of a table replica.
const TABLE_PRUNE_EVERY_MS: i64 = 1_000;
/// Batches read from one partition before the driver moves to the next.
const READ_BATCHES_PER_ROUND: usize = 8;
/// How long a caught-up view waits before it re-sends its watermark (idle detection).
const IDLE_TICK_MS: u64 = 100;

/// Sends the outbox: this shard's part applied here, the rest over the first mesh.
async fn deliver(host: &dyn DataflowHost, rt: &Rc<ViewRuntime>, outbox: Outbox, next: &mut Outbox) {
    let me = rt.shard.index;
    for (shard, bodies) in outbox.per_shard.into_iter().enumerate() {
        for body in bodies {
            if shard == me {
                apply_message(rt, me, body, next).await;
            } else {
                let msg = DataMsg { view: rt.key, from: me, body };
                if host.send(shard, msg).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Applies a message from shard `from` (maybe this one): a replay's partials in slices,
/// anything else at once.
async fn apply_message(rt: &Rc<ViewRuntime>, from: usize, body: DataBody, next: &mut Outbox) {
    match body {
        DataBody::Partials { groups, watermark, .. } if rt.replaying.get() => {
            apply_in_slices(rt, from, groups, watermark).await;
        }
        body => rt.receive(from, body, next),
    }
}

/// A replay's partials merged into its state a slice of groups at a time, stepping aside
/// between slices: a round's thousands of groups in one go held the shard's live work for
/// 0.3-1 ms per round. The watermark comes after the last slice, and the windows it closes
/// are finalized a slice at a time too (a round closes ~1,000 windows: up to 0.35 ms in
/// one go). Nothing reads a building version, and its driver finishes the round before a
/// switch or a checkpoint, so no reader or snapshot sees part of a round.
async fn apply_in_slices(rt: &Rc<ViewRuntime>, from: usize, groups: Vec<PartialGroup>, watermark: i64) {
    let mut budget = RunBudget::new();
    let mut groups = groups.into_iter();
    while groups.len() > 0 {
        rt.merge_partials(groups.by_ref().take(crate::limits::REPLAY_SLICE_GROUPS));
        budget.step_aside_if_spent().await;
    }
    if let Some(wm) = rt.update_watermark(from, watermark) {
        while !rt.advance_some(wm, crate::limits::REPLAY_SLICE_GROUPS) {
            budget.step_aside_if_spent().await;
        }
    }
}

/// Sends what the first operator made for the second (the aggregate after a join).
pub async fn deliver_second(host: &dyn DataflowHost, rt: &Rc<ViewRuntime>, outbox: Outbox) {
    let me = rt.shard.index;
    let mut sink = Outbox::new(rt.shard.count);
    for (shard, bodies) in outbox.per_shard.into_iter().enumerate() {
        for body in bodies {
            if shard == me {
                apply_message(rt, me, body, &mut sink).await;
            } else {
                let msg = DataMsg { view: rt.key | SECOND_MESH_BIT, from: me, body };
                if host.send(shard, msg).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Set on a message's view key when it travels on the second mesh.
pub const SECOND_MESH_BIT: u64 = 1 << 63;

/// Waits until any source partition not `held` back has data past the reader, the view
/// stops, another shard's slowest backlog moves (what `held` readers wait for), or the
/// idle tick passes.
async fn wait_for_data(rt: &Rc<ViewRuntime>, readers: &[(Side, u32, PartitionReader)], held: &[bool]) {
    let tick = Duration::from_millis(IDLE_TICK_MS);
    let listener = rt.wake.listen();
    // The limit may have risen between the round and the listener.
    if readers.iter().zip(held).any(|((side, p, _), held)| *held && !rt.read_held(*side, *p)) {
        return;
    }
    let mut waits: Vec<LocalFuture<'_, bool>> = readers
        .iter()
        .zip(held)
        .filter(|(_, held)| !**held)
        .map(|((_, _, r), _)| {
            let part = r.partition().clone();
            let at = r.position();
            Box::pin(async move { part.wait_for(at, tick).await }) as LocalFuture<'_, bool>
        })
        .collect();
    waits.push(Box::pin(async move {
        listener.await;
        true
    }));
    waits.push(Box::pin(async move {
        glommio::timer::sleep(tick).await;
        false
    }));
    let _ = futures::future::select_all(waits).await;
}

/// Reads the table's partitions this shard owns from where it left off and sends the
/// rows to every shard; `initial`: then tell every shard this shard's start is complete.
async fn feed_table(host: &dyn DataflowHost, rt: &Rc<ViewRuntime>, initial: bool) -> Result<(), String> {
    let Some(t) = rt.plan.table_join.clone() else { return Ok(()) };
    let positions: Vec<(u32, Offset)> =
        rt.state.borrow().table_source.as_ref().map(|s| s.positions.clone()).unwrap_or_default();
    let mut rows: Vec<(Box<[u8]>, i64, Vec<OwnedDatum>)> = Vec::new();
    let columns: Vec<ColumnInfo> = t.columns.clone();
    let mut new_positions = Vec::new();
    for (p, mut from) in positions {
        let Some(part) = host.local_partition(&t.table, p) else { continue };
        let mut reader = PartitionReader::new(part.clone(), from);
        loop {
            let batch = match reader.next_batch().await {
                Ok(Some(batch)) => batch,
                Ok(None) => break,
                Err(LogError::OffsetOutOfRange { requested, start, .. }) => {
                    from = go_on_after_retention(rt, &t.table, p, requested, start);
                    reader = PartitionReader::new(part.clone(), from);
                    continue;
                }
                Err(e) => return Err(e.to_string()),
            };
            let Some(recs) = batch.typed_rows() else { continue };
            let mut take = |row: &dyn Row, record_ts: i64| {
                let ts = event_time(row, t.event_time, record_ts);
                let mut key = Vec::new();
                for &k in &t.primary_key {
                    row.get(k).encode_key(&mut key);
                }
                let deleted = t.op_column.is_some_and(|c| row.get(c).as_str() == Some("delete"));
                let values = if deleted { Vec::new() } else { owned_row(row, columns.len()) };
                rows.push((key.into_boxed_slice(), ts, values));
            };
            let first = from.0.saturating_sub(batch.base_offset()) as usize;
            let (resolved, stamps): (Vec<ColumnRef>, &[rkyv::Archived<i64>]) = match recs {
                TypedRows::Columns(c) => (c.columns.iter().map(|c| c.resolve()).collect(), c.record_timestamps()),
                TypedRows::Rows(_) => (Vec::new(), &[]),
            };
            for i in first..recs.len() {
                match recs {
                    TypedRows::Rows(r) => {
                        take(&SourceRow { values: &r[i].value, columns: &columns }, r[i].timestamp_ms.to_native())
                    }
                    TypedRows::Columns(_) => {
                        let ts = stamps.get(i).map_or(0, |t| t.to_native());
                        take(&ColumnRow { batch: &resolved, index: i, columns: &columns }, ts)
                    }
                }
            }
        }
        new_positions.push((p, reader.position()));
    }
    if let Some(src) = rt.state.borrow_mut().table_source.as_mut() {
        src.positions = new_positions;
    }
    let me = rt.shard.index;
    for shard in 0..rt.shard.count {
        let mut bodies = Vec::new();
        if !rows.is_empty() {
            bodies.push(DataBody::TableRows { rows: rows.clone() });
        }
        if initial {
            bodies.push(DataBody::TableReady);
        }
        for body in bodies {
            if shard == me {
                rt.receive(me, body, &mut Outbox::new(rt.shard.count));
            } else if host.send(shard, DataMsg { view: rt.key, from: me, body }).await.is_err() {
                return Err("a shard went away".into());
            }
        }
    }
    Ok(())
}

/// Appends JSON lines to a raw topic (late records, changelog rows).
async fn write_json_lines(host: &dyn DataflowHost, topic: &str, partition_hint: u32, lines: Vec<String>) {
    let Some(config) = host.topic(topic) else {
        tracing::warn!(topic, "the view's output topic does not exist; records dropped");
        return;
    };
    let mut b: crate::record::BatchBuilder = crate::record::BatchBuilder::new();
    let now = crate::clock::now_ms();
    for l in &lines {
        b.push(crate::record::RawRecord::new(now, None, l.as_bytes()));
    }
    if let Ok(payload) = b.finish() {
        let p = partition_hint % config.partitions;
        if let Err(e) = host.append(topic.to_string(), p, payload).await {
            tracing::warn!(topic, error = %e, "writing the view's output failed");
        }
    }
}

/// Writes the view's pending changes to its changelog topic, if it has one.
pub async fn write_changes(host: &dyn DataflowHost, rt: &Rc<ViewRuntime>) {
    let (changes, appended) = {
        let mut st = rt.state.borrow_mut();
        (std::mem::take(&mut st.changes), std::mem::take(&mut st.append_changes))
    };
    let Some(topic) = rt.plan.options.changelog.clone() else { return };
    if (changes.is_empty() && appended.is_empty()) || rt.replaying.get() {
        return;
    }
    let Some(config) = host.topic(&topic) else { return };
    let Some(schema) = config.schema().cloned() else { return };
    let rows = crate::view::changelog::render(rt, &changes, &appended);
    // Keyed rows: one batch per partition.
    let mut per: std::collections::BTreeMap<u32, Vec<crate::record::Record<crate::record::schema::Row>>> =
        Default::default();
    let now = crate::clock::now_ms();
    for (key, row) in rows {
        let p = crate::record::partition_for_key(&key, config.partitions);
        per.entry(p).or_default().push(crate::record::Record {
            timestamp_ms: now,
            key: Some(key),
            value: row,
            headers: Vec::new(),
        });
    }
    for (p, records) in per {
        match BatchPayload::from_rows(&records, &schema) {
            Ok(payload) => {
                if let Err(e) = host.append(topic.clone(), p, payload).await {
                    tracing::warn!(view = %rt.name, error = %e, "writing the changelog failed");
                }
            }
            Err(e) => tracing::warn!(view = %rt.name, error = %e, "encoding the changelog failed"),
        }
    }
}

/// Serves a message from another shard: applies it, then sends on what it made.
pub async fn on_message(host: &dyn DataflowHost, rt: &Rc<ViewRuntime>, from: usize, body: DataBody) {
    let mut next = Outbox::new(rt.shard.count);
    apply_message(rt, from, body, &mut next).await;
    if !next.is_empty() {
        deliver_second(host, rt, next).await;
    }
    write_changes(host, rt).await;
    maybe_checkpoint(host, rt).await;
}

/// Takes this shard's part of a checkpoint once every barrier is in (its changes are
/// written first, so the changelog never lags a checkpoint).
async fn maybe_checkpoint(host: &dyn DataflowHost, rt: &Rc<ViewRuntime>) {
    let ready = rt.checkpoint.borrow_mut().ready.take();
    if let Some(id) = ready {
        let started = std::time::Instant::now();
        let state = rt.snapshot(id).await;
        tracing::debug!(view = %rt.name, id, bytes = state.operators.len(), took_us = started.elapsed().as_micros() as u64, "checkpoint snapshot taken");
        host.checkpoint(rt, state).await;
    }
}

fn encode_watermarks(w: &InputWatermarks, e: &mut Encoder) {
    e.u32(w.senders().len() as u32);
    for s in w.senders() {
        e.i64(*s);
    }
    e.i64(w.current());
}

fn decode_watermarks(d: &mut Decoder<'_>) -> Result<(Vec<i64>, i64), crate::wire::WireError> {
    let n = d.u32()? as usize;
    if n > d.remaining() {
        return Err(crate::wire::WireError::Invalid("sender count"));
    }
    let senders = (0..n).map(|_| d.i64()).collect::<Result<_, _>>()?;
    Ok((senders, d.i64()?))
}
