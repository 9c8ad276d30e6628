//! The second half of `sluice demo`: the Kappa loop. A typed topic of ticks with history,
//! two materialized views (a per-second VWAP in event time and running totals per
//! symbol) served over SQL (psql, HTTP), live ticks streaming in, and a rebuild of a view
//! from the log's start through the same operators while the old version serves and the
//! live stream goes on; then the rebuilt view is compared with a recomputation.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::record::schema::{Schema, Value};
use sluice::record::{BatchPayload, Record};
use sluice::server::native::client::Client;

use super::demo::Running;
use super::http_client::sql;

const SYMBOLS: [&str; 8] = ["AAPL", "MSFT", "NVDA", "AMZN", "GOOG", "META", "TSLA", "NFLX"];
const PARTITIONS: u32 = 4;
/// Live ticks per second while the views serve and the rebuild runs.
const LIVE_TICKS_PER_S: u64 = 50_000;
/// Ticks per produce request.
const BATCH_TICKS: u64 = 1_000;
const T0: i64 = 1_767_225_600_000;

/// The i-th tick: (event time, symbol, price, qty). 1,000 ticks per second of event time.
fn tick(i: u64) -> (i64, &'static str, f64, i64) {
    (T0 + i as i64, SYMBOLS[(i * 5 % 8) as usize], 100.0 + (i % 997) as f64 / 10.0, 1 + (i % 50) as i64)
}

fn produce(c: &mut Client, schema: &Schema, from: u64, to: u64) -> Result<(), String> {
    let records: Vec<Record<Vec<Value>>> = (from..to)
        .map(|i| {
            let (ts, sym, px, qty) = tick(i);
            Record {
                timestamp_ms: ts,
                key: Some(sym.as_bytes().to_vec()),
                value: vec![Value::Timestamp(ts), Value::Text(sym.into()), Value::Double(px), Value::BigInt(qty)],
                headers: Vec::new(),
            }
        })
        .collect();
    let payload = BatchPayload::rows_to_send(&records, schema).map_err(|e| e.to_string())?;
    let p = ((from / BATCH_TICKS) % PARTITIONS as u64) as u32;
    c.produce("ticks", p, &payload).map_err(|e| e.to_string())?;
    Ok(())
}

/// Prints a SQL result as a small table.
fn print_rows(v: &serde_json::Value) {
    let r = &v["results"][0];
    let cols: Vec<String> =
        r["columns"].as_array().into_iter().flatten().filter_map(|c| c["name"].as_str().map(str::to_string)).collect();
    let rows: Vec<Vec<String>> = r["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|row| {
            row.as_array()
                .into_iter()
                .flatten()
                .map(|x| match x {
                    serde_json::Value::Number(n) if n.is_f64() => format!("{:.2}", n.as_f64().unwrap_or(0.0)),
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect()
        })
        .collect();
    let widths: Vec<usize> = (0..cols.len())
        .map(|i| rows.iter().map(|r| r.get(i).map_or(0, String::len)).chain([cols[i].len()]).max().unwrap_or(0))
        .collect();
    let line = |cells: &[String]| -> String {
        cells.iter().zip(&widths).map(|(c, w)| format!("{c:>w$}  ")).collect::<String>()
    };
    println!("    {}", line(&cols));
    for r in &rows {
        println!("    {}", line(r));
    }
}

/// `history_ticks`: ticks written before the views exist (what they bootstrap from).
pub fn views(server: &Running, history_ticks: u64, hold: bool) -> Result<(), String> {
    let history_ticks = history_ticks.div_ceil(BATCH_TICKS) * BATCH_TICKS;
    let ready = &server.ready;
    let http = ready.http.ok_or("the demo server has no HTTP endpoint")?;
    println!("== the Kappa loop: one log, views computed from it, rebuilt from it ==");
    sql(
        http,
        &format!(
            "CREATE TOPIC ticks (ts TIMESTAMP NOT NULL, symbol TEXT NOT NULL, price DOUBLE PRECISION NOT NULL, qty BIGINT NOT NULL) \
             WITH (partitions = {PARTITIONS}, event_time = 'ts', lateness = '1 second', durability = 'interval:5')"
        ),
    )?;
    let mut c = Client::connect(server.addr).map_err(|e| e.to_string())?;
    let (config, _) = c.describe_topic("ticks").map_err(|e| e.to_string())?;
    let schema = config.schema().ok_or("ticks is not typed")?.clone();
    let started = Instant::now();
    for from in (0..history_ticks).step_by(BATCH_TICKS as usize) {
        produce(&mut c, &schema, from, from + BATCH_TICKS)?;
    }
    println!(
        "typed topic 'ticks': {history_ticks} ticks of history written in {:.2}s",
        started.elapsed().as_secs_f64()
    );

    // Live ticks from now on, open loop at a fixed rate, until the tour ends.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(history_ticks));
    let live = {
        let (stop, written, schema, addr) = (stop.clone(), written.clone(), schema.clone(), server.addr);
        std::thread::spawn(move || -> Result<(), String> {
            let mut c = Client::connect(addr).map_err(|e| e.to_string())?;
            let began = Instant::now();
            let mut next = history_ticks;
            while !stop.load(Ordering::Acquire) {
                let due = history_ticks + (began.elapsed().as_secs_f64() * LIVE_TICKS_PER_S as f64) as u64;
                if due < next + BATCH_TICKS {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                }
                produce(&mut c, &schema, next, next + BATCH_TICKS)?;
                next += BATCH_TICKS;
                written.store(next, Ordering::Release);
            }
            Ok(())
        })
    };

    let started = Instant::now();
    sql(
        http,
        "CREATE MATERIALIZED VIEW vwap_1s AS \
           SELECT symbol, window_start, count(*) AS trades, sum(qty) AS volume, sum(price * qty) / sum(qty) AS vwap \
           FROM TUMBLE(ticks, ts, INTERVAL '1' SECOND) GROUP BY symbol, window_start;
         CREATE MATERIALIZED VIEW per_symbol AS \
           SELECT symbol, count(*) AS trades, sum(qty) AS volume, max(price) AS high FROM ticks GROUP BY symbol",
    )?;
    // Bootstrap: the views read the history, then go on live with no gap.
    loop {
        let v = sql(http, "SELECT sum(trades) FROM per_symbol")?;
        let n = v["results"][0]["rows"][0][0].as_u64().unwrap_or(0);
        if n >= history_ticks {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            return Err(format!("the views read only {n} of {history_ticks} ticks in 2 minutes"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    println!(
        "views vwap_1s (1 s tumbling window, event time) and per_symbol bootstrapped from history in {:.2}s; now live at {LIVE_TICKS_PER_S} ticks/s",
        started.elapsed().as_secs_f64()
    );
    println!("per_symbol now (SELECT * FROM per_symbol ORDER BY symbol):");
    print_rows(&sql(http, "SELECT * FROM per_symbol ORDER BY symbol")?);
    println!("the last closed VWAP windows of NVDA:");
    print_rows(&sql(http, "SELECT window_start, trades, volume, vwap FROM vwap_1s WHERE symbol = 'NVDA' ORDER BY window_start DESC LIMIT 3")?);
    if let Some(pg) = ready.pg {
        println!("  psql:  psql -h {} -p {} -c 'SELECT * FROM per_symbol'", pg.ip(), pg.port());
    }
    if let Some(k) = ready.kafka {
        println!("  kcat:  kcat -b {k} -t ticks -C -o -5 -e");
    }
    println!("  HTTP:  curl 'http://{http}/views/per_symbol?symbol=NVDA'");

    // Rebuild per_symbol from the start of the log while it serves and ticks stream in.
    let before = sql(http, "SELECT sum(trades) FROM per_symbol")?["results"][0]["rows"][0][0].as_u64().unwrap_or(0);
    println!(
        "rebuilding per_symbol from EARLIEST (version 2, same operators, replay task queue) while version 1 serves:"
    );
    sql(http, "ALTER MATERIALIZED VIEW per_symbol REBUILD FROM EARLIEST")?;
    super::view::follow(http, "per_symbol")?;
    stop.store(true, Ordering::Release);
    live.join().map_err(|_| "the live producer panicked".to_string())??;
    let total = written.load(Ordering::Acquire);

    // Before/after: the rebuilt version against a recomputation from the generator.
    let mut want = std::collections::BTreeMap::<&str, (u64, i64)>::new();
    for i in 0..total {
        let (_, sym, _, qty) = tick(i);
        let e = want.entry(sym).or_default();
        e.0 += 1;
        e.1 += qty;
    }
    let settled = Instant::now();
    let same = loop {
        let v = sql(http, "SELECT symbol, trades, volume FROM per_symbol")?;
        let got: std::collections::BTreeMap<String, (u64, i64)> = v["results"][0]["rows"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                (r[0].as_str().unwrap_or("").to_string(), (r[1].as_u64().unwrap_or(0), r[2].as_i64().unwrap_or(0)))
            })
            .collect();
        let same = want.iter().all(|(k, v)| got.get(*k) == Some(v)) && got.len() == want.len();
        if same || settled.elapsed() > Duration::from_secs(10) {
            break same;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let version = sql(http, "SHOW MATERIALIZED VIEWS")?["results"][0]["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r[0] == "per_symbol")
        .and_then(|r| r[1].as_i64())
        .unwrap_or(0);
    println!(
        "before the rebuild: version 1 had counted {before} ticks; after: version {version} has counted all {total} ticks \
         (history and live), equal to a recomputation from the generator: {}",
        if same { "yes" } else { "NO" }
    );
    if !same {
        return Err("the rebuilt view differs from the recomputation".into());
    }
    if hold {
        println!("serving until Ctrl-C (psql, kcat and curl as above)...");
        let interrupted = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(sig, interrupted.clone()).map_err(|e| e.to_string())?;
        }
        while !interrupted.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}
