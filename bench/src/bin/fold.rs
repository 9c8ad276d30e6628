//! The stage-1 fold alone: rows read in place from their archived form, folded into a
//! partial table per round and drained, in process, with no log, no network and no
//! other shard. It isolates the per-row cost that bounds `tumble_events_per_core` and
//! the rebuild rate, and it is steady enough to compare two versions of the fold on this
//! noisy machine: every figure is the fastest of many repetitions (the least disturbed).
//!
//! `cargo run --release -p bench --bin fold [-- --quick]`
//!
//! Workloads: the views bench's events (ts, k, v), 1,000 BIGINT keys, count(*) + sum(v)
//! per key in 1 s tumbling windows and in 4 s windows sliding by 1 s. Each is folded from
//! rows (`fold_tumble_*`), from columnar batches of 4,096 row by row through `add`
//! (`fold_tumble_columns_by_row_*`) and through the column fold (`fold_tumble_columns_*`,
//! what views do). The last line of output is JSON (`fold_tumble_ns_per_row`, ...).

use std::time::Instant;

use bench::events::{event, pin_self};
use clap::Parser;
use rkyv::vec::ArchivedVec;
use sluice::dataflow::accumulator::{AggFunc, Position};
use sluice::dataflow::aggregate::PartialTable;
use sluice::dataflow::plan::{AggPlan, AggregatePlan, ColumnInfo, WindowPlan};
use sluice::dataflow::row::{ColumnRow, SourceRow};
use sluice::record::columns::{ArchivedColumnBatch, ColumnBatch, ColumnData, ColumnRef};
use sluice::record::schema::{ArchivedValue, Value};
use sluice::sql::expr::Expr;
use sluice::sql::types::DataType;

#[derive(Parser)]
struct Args {
    /// A run of a few seconds.
    #[arg(long)]
    quick: bool,
    /// Rows folded per round (the partial table is drained after each).
    #[arg(long, default_value_t = 32_768)]
    round_rows: usize,
    /// The CPU to run on.
    #[arg(long, default_value_t = 0)]
    cpu: usize,
}

fn plan(window: WindowPlan) -> AggregatePlan {
    let agg = |func: AggFunc, arg: Option<usize>| AggPlan {
        func,
        arg: arg.map(Expr::Column),
        arg_type: DataType::BigInt,
        result_type: func.result_type(DataType::BigInt),
    };
    AggregatePlan {
        keys: vec![Expr::Column(1)],
        key_types: vec![DataType::BigInt],
        aggs: vec![agg(AggFunc::CountStar, None), agg(AggFunc::Sum, Some(2))],
        window: Some(window),
    }
}

fn main() {
    let args = Args::parse();
    pin_self(args.cpu);
    let rows: u64 = if args.quick { 262_144 } else { 1_048_576 };
    let repetitions = if args.quick { 5 } else { 25 };
    let columns: Vec<ColumnInfo> = [("ts", DataType::Timestamp), ("k", DataType::BigInt), ("v", DataType::BigInt)]
        .into_iter()
        .map(|(name, ty)| ColumnInfo { name: name.into(), ty, default: Value::Null })
        .collect();
    // One archive of all rows, read in place like a batch read from the log.
    let values: Vec<Vec<Value>> =
        (0..rows).map(event).map(|(ts, k, v)| vec![Value::Timestamp(ts), Value::BigInt(k), Value::BigInt(v)]).collect();
    let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&values).expect("archive");
    let archived =
        rkyv::access::<ArchivedVec<ArchivedVec<ArchivedValue>>, rkyv::rancor::Error>(&bytes).expect("a valid archive");
    let times: Vec<i64> = values.iter().map(|r| if let Value::Timestamp(t) = r[0] { t } else { 0 }).collect();
    drop(values);
    // The same rows column by column, in batches of 4,096 (as the loaders write them).
    const BATCH_ROWS: u64 = 4_096;
    let column_batches: Vec<rkyv::util::AlignedVec> = (0..rows.div_ceil(BATCH_ROWS))
        .map(|b| {
            let events: Vec<(i64, i64, i64)> = (b * BATCH_ROWS..((b + 1) * BATCH_ROWS).min(rows)).map(event).collect();
            let batch = ColumnBatch {
                timestamps: events.iter().map(|e| e.0).collect(),
                keys: None,
                columns: vec![
                    ColumnData::Timestamp { nulls: vec![], values: events.iter().map(|e| e.0).collect() },
                    ColumnData::BigInt { nulls: vec![], values: events.iter().map(|e| e.1).collect() },
                    ColumnData::BigInt { nulls: vec![], values: events.iter().map(|e| e.2).collect() },
                ],
            };
            rkyv::to_bytes::<rkyv::rancor::Error>(&batch).expect("archive columns")
        })
        .collect();
    let column_batches: Vec<&ArchivedColumnBatch> = column_batches
        .iter()
        .map(|b| rkyv::access::<ArchivedColumnBatch, rkyv::rancor::Error>(b).expect("a valid archive"))
        .collect();
    assert_eq!(args.round_rows % BATCH_ROWS as usize, 0, "rounds are whole batches");
    let mut json = serde_json::Map::new();
    for (name, window) in [
        ("tumble", WindowPlan::Tumble { size_ms: 1_000 }),
        ("hop", WindowPlan::Hop { slide_ms: 1_000, size_ms: 4_000 }),
    ] {
        let plan = plan(window);
        let mut table = PartialTable::new(1, Some(&plan));
        let mut per_row_ns = Vec::with_capacity(repetitions);
        let mut groups = 0usize;
        for _ in 0..repetitions {
            groups = 0;
            let started = Instant::now();
            for (round, chunk) in archived.chunks(args.round_rows).enumerate() {
                for (i, values) in chunk.iter().enumerate() {
                    let offset = (round * args.round_rows + i) as u64;
                    let ts = times[offset as usize];
                    let row = SourceRow { values, columns: &columns };
                    table.add(&plan, &row, ts, Position { ts, partition: 0, offset });
                }
                table.drain(|_, g| {
                    groups += 1;
                    std::hint::black_box(g);
                });
            }
            per_row_ns.push(started.elapsed().as_nanos() as f64 / rows as f64);
        }
        report(&mut json, name, per_row_ns, rows, groups, args.round_rows);
        // Column by column: each batch's columns found once, then its rows (row by row
        // through `add`, and through the column fold).
        for generic in [true, false] {
            let mut rows_of_batch: Vec<(u32, i64)> = Vec::with_capacity(BATCH_ROWS as usize);
            let mut per_row_ns = Vec::with_capacity(repetitions);
            let batches_per_round = args.round_rows / BATCH_ROWS as usize;
            for _ in 0..repetitions {
                groups = 0;
                let started = Instant::now();
                for (round, chunk) in column_batches.chunks(batches_per_round).enumerate() {
                    for (b, batch) in chunk.iter().enumerate() {
                        let resolved: Vec<ColumnRef> = batch.columns.iter().map(|c| c.resolve()).collect();
                        let base = ((round * batches_per_round + b) * BATCH_ROWS as usize) as u64;
                        if generic {
                            for i in 0..batch.len() {
                                let offset = base + i as u64;
                                let ts = times[offset as usize];
                                let row = ColumnRow { batch: &resolved, index: i, columns: &columns };
                                table.add(&plan, &row, ts, Position { ts, partition: 0, offset });
                            }
                        } else {
                            rows_of_batch.clear();
                            rows_of_batch.extend((0..batch.len()).map(|i| (i as u32, times[base as usize + i])));
                            table.add_columns(&plan, &resolved, &columns, rows_of_batch.iter().copied(), 0, base);
                        }
                    }
                    table.drain(|_, g| {
                        groups += 1;
                        std::hint::black_box(g);
                    });
                }
                per_row_ns.push(started.elapsed().as_nanos() as f64 / rows as f64);
            }
            let variant = if generic { "columns_by_row" } else { "columns" };
            report(&mut json, &format!("{name}_{variant}"), per_row_ns, rows, groups, args.round_rows);
        }
    }
    println!("{}", serde_json::Value::Object(json));
}

fn report(
    json: &mut serde_json::Map<String, serde_json::Value>,
    name: &str,
    mut per_row_ns: Vec<f64>,
    rows: u64,
    groups: usize,
    round_rows: usize,
) {
    per_row_ns.sort_by(f64::total_cmp);
    let (best, median) = (per_row_ns[0], per_row_ns[per_row_ns.len() / 2]);
    eprintln!(
        "fold {name:>14}: {best:6.1} ns/row best, {median:6.1} median of {} x {rows} rows \
         ({groups} partials per pass, rounds of {round_rows})",
        per_row_ns.len()
    );
    json.insert(format!("fold_{name}_ns_per_row"), serde_json::json!((best * 10.0).round() / 10.0));
    json.insert(format!("fold_{name}_median_ns_per_row"), serde_json::json!((median * 10.0).round() / 10.0));
}
