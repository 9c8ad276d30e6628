//! Replay as a standard operation: bootstrapping a view over a topic with history while
//! live events keep arriving (no gap, no duplicate at the hand-over), rebuilding a view
//! (from the start, from an offset) while the old version serves and live events keep
//! arriving, cancelling a rebuild, and a rebuild surviving a restart. Every result is
//! compared with a computation from the events themselves (the oracle).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_tests::{eventually, http, sluice_cli, sql, sql_error, sql_rows, Server};

const PARTITIONS: u32 = 4;
const KEYS: u64 = 16;

/// The i-th event of partition p: (key, value). Values differ per event, so a gap or a
/// duplicate changes a sum.
fn event(p: u32, i: u64) -> (String, i64) {
    (format!("k{}", (i * 7 + p as u64) % KEYS), (p as i64 + 1) * 1_000_000 + i as i64)
}

/// Appends events `from..to` to partition `p` (one request).
fn produce(h: SocketAddr, p: u32, from: u64, to: u64) {
    let lines: String = (from..to)
        .map(|i| {
            let (k, v) = event(p, i);
            format!("{{\"k\":\"{k}\",\"v\":{v}}}\n")
        })
        .collect();
    let (status, body) = http(h, "POST", &format!("/topics/ev/records?partition={p}"), lines.as_bytes());
    assert_eq!(status, 200, "produce: {body}");
}

/// What `SELECT k, count(*), sum(v) ... GROUP BY k` must hold over events at offsets
/// `start..end[p]` of each partition.
fn oracle(start: u64, ends: &[u64]) -> BTreeMap<String, (i64, i64)> {
    let mut out: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for (p, end) in ends.iter().enumerate() {
        for i in start..*end {
            let (k, v) = event(p as u32, i);
            let e = out.entry(k).or_default();
            e.0 += 1;
            e.1 += v;
        }
    }
    out
}

fn view_rows(h: SocketAddr, view: &str) -> BTreeMap<String, (i64, i64)> {
    sql_rows(h, &format!("SELECT k, n, s FROM {view}"))
        .into_iter()
        .map(|r| {
            (r[0].as_str().unwrap_or_default().to_string(), (r[1].as_i64().unwrap_or(-1), r[2].as_i64().unwrap_or(-1)))
        })
        .collect()
}

fn setup(h: SocketAddr) {
    let (ok, body) = sql(
        h,
        &format!(
            "CREATE TOPIC ev (k TEXT NOT NULL, v BIGINT NOT NULL) WITH (partitions = {PARTITIONS}, durability = 'interval:5')"
        ),
    );
    assert!(ok, "{body}");
}

/// Live events on every partition, in rounds, until told to stop; `ends` follows them.
struct LiveProducer {
    stop: Arc<AtomicBool>,
    ends: Arc<Vec<AtomicU64>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LiveProducer {
    fn start(h: SocketAddr, from: u64, per_round: u64) -> LiveProducer {
        let stop = Arc::new(AtomicBool::new(false));
        let ends: Arc<Vec<AtomicU64>> = Arc::new((0..PARTITIONS).map(|_| AtomicU64::new(from)).collect());
        let (s, e) = (stop.clone(), ends.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Acquire) {
                for p in 0..PARTITIONS {
                    let at = e[p as usize].load(Ordering::Acquire);
                    produce(h, p, at, at + per_round);
                    e[p as usize].store(at + per_round, Ordering::Release);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        LiveProducer { stop, ends, thread: Some(thread) }
    }

    /// Stops and returns each partition's end.
    fn finish(mut self) -> Vec<u64> {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.join().expect("producer thread");
        }
        self.ends.iter().map(|e| e.load(Ordering::Acquire)).collect()
    }
}

fn wait_equal(h: SocketAddr, view: &str, want: &BTreeMap<String, (i64, i64)>) {
    let mut got = BTreeMap::new();
    let same = eventually(Duration::from_secs(30), || {
        got = view_rows(h, view);
        &got == want
    });
    assert!(same, "{view} differs from the oracle:\n got  {got:?}\n want {want:?}");
}

/// SHOW MATERIALIZED VIEWS rows of one view: (version, state, progress).
fn versions(h: SocketAddr, view: &str) -> Vec<(i64, String, Value)> {
    sql_rows(h, "SHOW MATERIALIZED VIEWS")
        .into_iter()
        .filter(|r| r[0] == view)
        .map(|r| (r[1].as_i64().unwrap_or(-1), r[2].as_str().unwrap_or_default().to_string(), r[7].clone()))
        .collect()
}

/// A counter of `view` in `metrics` (a `/metrics` body), summed over the shards' lines.
fn view_counter(metrics: &str, name: &str, view: &str) -> u64 {
    let (series, label) = (format!("{name}{{"), format!("view=\"{view}\""));
    metrics
        .lines()
        .filter(|l| l.starts_with(&series) && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<u64>().ok()))
        .sum()
}

/// Checkpoints of `view` completed so far, from `/metrics`.
fn view_checkpoints(h: SocketAddr, view: &str) -> u64 {
    view_counter(&http(h, "GET", "/metrics", b"").1, "sluice_view_checkpoints_total", view)
}

fn rebuild_phase(h: SocketAddr, view: &str) -> String {
    let (status, body) = http(h, "GET", &format!("/views/{view}/rebuild"), b"");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    v["phase"].as_str().unwrap_or("none").to_string()
}

#[test]
fn bootstrap_over_history_continues_live_without_gap_or_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &["--shards", "2"]);
    let h = server.http;
    setup(h);
    let history = 3_000;
    for p in 0..PARTITIONS {
        for from in (0..history).step_by(1_000) {
            produce(h, p, from, from + 1_000);
        }
    }
    // Views created while live events arrive: from the earliest offset, and from a given
    // offset; each must hand over from history to live without a gap or a duplicate.
    let live = LiveProducer::start(h, history, 50);
    std::thread::sleep(Duration::from_millis(50));
    let (ok, body) = sql(h, "CREATE MATERIALIZED VIEW agg AS SELECT k, count(*) AS n, sum(v) AS s FROM ev GROUP BY k");
    assert!(ok, "{body}");
    std::thread::sleep(Duration::from_millis(50));
    let (ok, body) = sql(
        h,
        "CREATE MATERIALIZED VIEW agg_from WITH (start = 'offset:1000') AS SELECT k, count(*) AS n, sum(v) AS s FROM ev GROUP BY k",
    );
    assert!(ok, "{body}");
    std::thread::sleep(Duration::from_millis(300));
    let ends = live.finish();
    assert!(ends.iter().all(|e| *e > history), "live events went in during the bootstrap: {ends:?}");
    wait_equal(h, "agg", &oracle(0, &ends));
    wait_equal(h, "agg_from", &oracle(1_000, &ends));
}

#[test]
fn rebuild_while_serving_under_live_traffic_then_switch() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &["--shards", "2"]);
    let h = server.http;
    setup(h);
    let history = 5_000;
    for p in 0..PARTITIONS {
        for from in (0..history).step_by(1_000) {
            produce(h, p, from, from + 1_000);
        }
    }
    let (ok, body) = sql(h, "CREATE MATERIALIZED VIEW agg AS SELECT k, count(*) AS n, sum(v) AS s FROM ev GROUP BY k");
    assert!(ok, "{body}");
    wait_equal(h, "agg", &oracle(0, &[history; PARTITIONS as usize]));

    // EXPLAIN REBUILD says what a rebuild would read, before anything runs.
    let explain: BTreeMap<String, String> = sql_rows(h, "EXPLAIN REBUILD agg FROM EARLIEST")
        .into_iter()
        .map(|r| (r[0].as_str().unwrap_or_default().to_string(), r[1].as_str().unwrap_or_default().to_string()))
        .collect();
    assert_eq!(explain.get("events_to_read").map(String::as_str), Some("20000"), "{explain:?}");
    assert_eq!(explain.get("version").map(String::as_str), Some("2"), "{explain:?}");
    assert!(explain.get("bytes_to_read").and_then(|b| b.parse::<u64>().ok()).is_some_and(|b| b > 0), "{explain:?}");
    assert!(explain.contains_key("expected_seconds") && explain.contains_key("expected_state_rows"), "{explain:?}");
    assert_eq!(versions(h, "agg").len(), 1, "EXPLAIN started nothing");

    // A slow rebuild (rate-limited) while live events arrive: version 1 keeps serving,
    // SHOW lists both versions, and the view keeps answering.
    let live = LiveProducer::start(h, history, 20);
    let (ok, body) = sql(h, "ALTER MATERIALIZED VIEW agg REBUILD FROM EARLIEST WITH (rate_limit_mb_per_s = 0.5)");
    assert!(ok, "{body}");
    let (code, msg) = sql_error(h, "ALTER MATERIALIZED VIEW agg REBUILD");
    assert_eq!(code, "55006", "a second rebuild is refused: {msg}");
    let seen_both = eventually(Duration::from_secs(10), || {
        let v = versions(h, "agg");
        v.len() == 2 && v[0].0 == 1 && v[0].1 == "serving" && v[1].0 == 2 && v[1].1.starts_with("building")
    });
    assert!(seen_both, "SHOW shows the serving and the building version: {:?}", versions(h, "agg"));
    assert_eq!(rebuild_phase(h, "agg"), "building");
    assert_eq!(view_rows(h, "agg").len(), KEYS as usize, "version 1 serves during the rebuild");
    let (status, metrics) = http(h, "GET", "/metrics", b"");
    assert_eq!(status, 200);
    assert!(metrics.contains("sluice_view_rebuild_lag_events{"), "rebuild progress in /metrics");
    assert!(metrics.contains("sluice_view_rebuild_state_bytes{"), "the rebuild's state in /metrics");

    // Cancel: version 1 stays, the building version goes.
    let (ok, body) = sql(h, "ALTER MATERIALIZED VIEW agg CANCEL REBUILD");
    assert!(ok, "{body}");
    assert_eq!(versions(h, "agg").iter().map(|v| v.0).collect::<Vec<_>>(), vec![1]);
    assert_eq!(rebuild_phase(h, "agg"), "cancelled");

    // A full-speed rebuild under live traffic switches when it has caught up (version 3:
    // a cancelled attempt's number is not reused).
    let checkpoints_before = view_checkpoints(h, "agg");
    let (ok, body) = sql(h, "ALTER MATERIALIZED VIEW agg REBUILD");
    assert!(ok, "{body}");
    let switched = eventually(Duration::from_secs(60), || rebuild_phase(h, "agg") == "done");
    assert!(switched, "the rebuild reaches the live head and switches under live traffic");
    // The new version is checkpointed once it serves (a restart does not replay it all).
    let checkpointed = eventually(Duration::from_secs(30), || view_checkpoints(h, "agg") > checkpoints_before);
    assert!(checkpointed, "/metrics counts the view's checkpoints, on across the switch");
    assert_eq!(versions(h, "agg").iter().map(|v| (v.0, v.1.as_str())).collect::<Vec<_>>(), vec![(3, "serving")]);
    let ends = live.finish();
    wait_equal(h, "agg", &oracle(0, &ends));

    // From an offset: version 4 counts only what follows it.
    let (ok, body) = sql(h, "ALTER MATERIALIZED VIEW agg REBUILD FROM OFFSET 2000");
    assert!(ok, "{body}");
    assert!(eventually(Duration::from_secs(60), || rebuild_phase(h, "agg") == "done"));
    assert_eq!(versions(h, "agg")[0].0, 4);
    wait_equal(h, "agg", &oracle(2_000, &ends));
}

/// A rebuild held to a rate that makes it sleep for hours between reads still yields at
/// once to a cancel, and to a shutdown (SIGTERM: a clean exit, promptly).
#[test]
fn a_rate_limited_rebuild_does_not_hold_up_a_cancel_or_a_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_with(dir.path(), &["--shards", "2"]);
    let h = server.http;
    setup(h);
    // Many small batches: a round of the rebuild reads a few per partition, then sleeps.
    for p in 0..PARTITIONS {
        for from in (0..1_000).step_by(25) {
            produce(h, p, from, from + 25);
        }
    }
    let (ok, body) = sql(h, "CREATE MATERIALIZED VIEW agg AS SELECT k, count(*) AS n, sum(v) AS s FROM ev GROUP BY k");
    assert!(ok, "{body}");
    wait_equal(h, "agg", &oracle(0, &[1_000; PARTITIONS as usize]));
    // One byte a second: after its first round the rebuild's next read is hours away.
    let slow = "ALTER MATERIALIZED VIEW agg REBUILD FROM EARLIEST WITH (rate_limit_mb_per_s = 0.000001)";
    let (ok, body) = sql(h, slow);
    assert!(ok, "{body}");
    assert!(eventually(Duration::from_secs(10), || rebuild_phase(h, "agg") == "building"));
    std::thread::sleep(Duration::from_millis(300));
    let asked = Instant::now();
    let (ok, body) = sql(h, "ALTER MATERIALIZED VIEW agg CANCEL REBUILD");
    assert!(ok, "{body}");
    assert!(asked.elapsed() < Duration::from_secs(5), "the cancel waited {:?} for the paced reads", asked.elapsed());
    assert_eq!(rebuild_phase(h, "agg"), "cancelled");
    let (ok, body) = sql(h, slow);
    assert!(ok, "{body}");
    std::thread::sleep(Duration::from_millis(300));
    let asked = Instant::now();
    let status = server.terminate(Duration::from_secs(20));
    assert!(status.is_some_and(|s| s.success()), "a clean exit on SIGTERM: {status:?}");
    assert!(asked.elapsed() < Duration::from_secs(10), "the shutdown waited {:?} for the paced reads", asked.elapsed());
}

#[test]
fn rebuild_resumes_after_a_restart_and_a_rebuilt_view_restarts_as_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_with(dir.path(), &["--shards", "2"]);
    let h = server.http;
    setup(h);
    let history = 2_000;
    for p in 0..PARTITIONS {
        produce(h, p, 0, history);
    }
    let ends = [history; PARTITIONS as usize];
    let (ok, body) = sql(h, "CREATE MATERIALIZED VIEW agg AS SELECT k, count(*) AS n, sum(v) AS s FROM ev GROUP BY k");
    assert!(ok, "{body}");
    wait_equal(h, "agg", &oracle(0, &ends));
    // Slow enough to be under way when the server dies.
    let (ok, body) = sql(h, "ALTER MATERIALIZED VIEW agg REBUILD FROM OFFSET 500 WITH (rate_limit_mb_per_s = 0.05)");
    assert!(ok, "{body}");
    assert_eq!(versions(h, "agg").len(), 2);
    server.kill9();

    let server = Server::start_with(dir.path(), &["--shards", "2"]);
    let h = server.http;
    // Version 1 serves again at once; the rebuild to version 2 resumes from its start.
    wait_equal(h, "agg", &oracle(0, &ends));
    assert!(
        eventually(Duration::from_secs(10), || versions(h, "agg")
            .iter()
            .any(|v| v.0 == 2 && v.1.starts_with("building"))),
        "the rebuild resumed: {:?}",
        versions(h, "agg")
    );
    let (ok, body) = sql(h, "ALTER MATERIALIZED VIEW agg CANCEL REBUILD");
    assert!(ok, "{body}");
    let (ok, body) = sql(h, "ALTER MATERIALIZED VIEW agg REBUILD FROM OFFSET 500");
    assert!(ok, "{body}");
    assert!(eventually(Duration::from_secs(60), || rebuild_phase(h, "agg") == "done"));
    wait_equal(h, "agg", &oracle(500, &ends));
    drop(server);

    // After a restart the view is the rebuilt version, from the same start.
    let server = Server::start_with(dir.path(), &["--shards", "2"]);
    let h = server.http;
    assert_eq!(versions(h, "agg").iter().map(|v| v.0).collect::<Vec<_>>(), vec![3]);
    wait_equal(h, "agg", &oracle(500, &ends));
    let (code, _) = sql_error(h, "ALTER MATERIALIZED VIEW agg CANCEL REBUILD");
    assert_eq!(code, "55000", "nothing to cancel");
    let (code, _) = sql_error(h, "ALTER MATERIALIZED VIEW nope REBUILD");
    assert_eq!(code, "42P01");

    // The CLI: explain, then rebuild with its progress bar until the new version serves.
    let addr = h.to_string();
    let (status, out, err) =
        sluice_cli(&["view", "explain", "agg", "--from", "offset:1000", "--http-addr", &addr], None);
    assert!(status.success(), "{out}{err}");
    assert!(out.lines().any(|l| l.starts_with("events_to_read") && l.trim_end().ends_with(" 4000")), "{out}");
    let (status, out, err) =
        sluice_cli(&["view", "rebuild", "agg", "--from", "offset:1000", "--http-addr", &addr], None);
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("agg: version 4 serves"), "{out}{err}");
    wait_equal(h, "agg", &oracle(1_000, &ends));
    let (status, out, err) = sluice_cli(&["view", "list", "--http-addr", &addr], None);
    assert!(status.success() && out.contains("serving"), "{out}{err}");
    let (status, _, err) = sluice_cli(&["view", "rebuild", "nope", "--http-addr", &addr], None);
    assert!(!status.success() && err.contains("42P01"), "{err}");
}

/// A slow rebuild that retention overtakes (it deletes segments the rebuild has not read
/// yet) goes on from the oldest record kept, counts what it lost in `/metrics`, reaches
/// the live head and switches: it never hangs on records that no longer exist.
#[test]
fn a_rebuild_overtaken_by_retention_goes_on_from_what_is_kept_and_says_what_it_lost() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let h = server.http;
    // Small segments (64 KiB), so retention deletes in small steps: batches up to 16 KiB.
    let spec = serde_json::json!({
        "name": "short",
        "partitions": 1,
        "schema": "k TEXT NOT NULL, v BIGINT NOT NULL, pad TEXT",
        "durability": "interval:5",
        "segment_bytes": 65536,
        "retention_bytes": 262144,
        "settings": {"max.message.bytes": "16384"},
    });
    let (status, body) = http(h, "POST", "/topics", spec.to_string().as_bytes());
    assert_eq!(status, 201, "{body}");
    // One batch per request (~9 KB of columns, 12 KiB on disk: `pad` makes up the bytes):
    // a segment every 5 batches.
    let batch = 100u64;
    let pad = "x".repeat(60);
    let produce_to = |from: u64, to: u64| {
        for start in (from..to).step_by(batch as usize) {
            let lines: String = (start..start + batch)
                .map(|i| format!("{{\"k\":\"k{}\",\"v\":{},\"pad\":\"{pad}\"}}\n", i % KEYS, i))
                .collect();
            let (status, body) = http(h, "POST", "/topics/short/records?partition=0", lines.as_bytes());
            assert_eq!(status, 200, "produce: {body}");
        }
    };
    // Within the retention limit (3 segments of 4): nothing is deleted yet, so the rebuild
    // starts at 0.
    let first = 1_500;
    produce_to(0, first);
    let (ok, body) =
        sql(h, "CREATE MATERIALIZED VIEW agg AS SELECT k, count(*) AS n, sum(v) AS s FROM short GROUP BY k");
    assert!(ok, "{body}");
    let total = |rows: &BTreeMap<String, (i64, i64)>| rows.values().map(|(n, _)| *n).sum::<i64>() as u64;
    assert!(eventually(Duration::from_secs(30), || total(&view_rows(h, "agg")) == first));

    // 25 KB/s: the first ~190 KiB take ~8 s to read; retention runs every 5 s and, after
    // the next ~600 KiB, keeps only the newest 256 KiB, so it overtakes the rebuild.
    let (ok, body) = sql(h, "ALTER MATERIALIZED VIEW agg REBUILD FROM EARLIEST WITH (rate_limit_mb_per_s = 0.025)");
    assert!(ok, "{body}");
    let end = first + 5_000;
    produce_to(first, end);
    let switched = eventually(Duration::from_secs(120), || rebuild_phase(h, "agg") == "done");
    assert!(switched, "the rebuild switches although retention deleted part of what it was to read");
    assert_eq!(versions(h, "agg").iter().map(|v| v.0).collect::<Vec<_>>(), vec![2]);
    let (_, metrics) = http(h, "GET", "/metrics", b"");
    // Summed over the shards' lines (one of them owns the partition).
    let lost = view_counter(&metrics, "sluice_view_events_lost_to_retention_total", "agg");
    assert!(lost > 0, "retention overtook the rebuild, and /metrics says by how much:\n{metrics}");
    // Everything the rebuild did not lose is in the view, once each.
    let mut rows = BTreeMap::new();
    let complete = eventually(Duration::from_secs(30), || {
        rows = view_rows(h, "agg");
        total(&rows) + lost == end
    });
    assert!(complete, "the view counts {} events and lost {lost}, of {end}", total(&rows));
}

/// Two partitions on two shards whose batches cover very different spans of event time
/// (100 s against 20 s): rebuilt at a limited rate, the partition that would race ahead
/// is held back to the other shard's event time (watermark alignment across shards:
/// each partition is alone on its shard, so only the other shard's word can hold it;
/// `/metrics` counts it), and the view is still every window's exact count and sum.
#[test]
fn a_catch_up_reads_its_partitions_in_step_with_event_time() {
    const T0: i64 = 1_767_225_600_000;
    const SECONDS: i64 = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &["--shards", "2"]);
    let h = server.http;
    let (ok, body) = sql(
        h,
        "CREATE TOPIC al (ts TIMESTAMP NOT NULL, k TEXT NOT NULL, v BIGINT NOT NULL) \
         WITH (partitions = 2, event_time = 'ts', durability = 'interval:5')",
    );
    assert!(ok, "{body}");
    // Partition 0: one event every 10 s, ten to a request (a batch: 100 s); partition 1:
    // one every 2 s, ten to a request (20 s). Both cover the same 20,000 s.
    let mut want: BTreeMap<(String, i64), (i64, i64)> = BTreeMap::new();
    for (p, every_ms, per_batch) in [(0u32, 10_000i64, 10usize), (1, 2_000, 10)] {
        let events: Vec<(i64, String, i64)> = (0..SECONDS * 1_000 / every_ms)
            .map(|i| (T0 + i * every_ms, format!("k{}", (i + p as i64) % 7), i * 10 + p as i64))
            .collect();
        for chunk in events.chunks(per_batch) {
            let lines: String =
                chunk.iter().map(|(ts, k, v)| format!("{{\"ts\":{ts},\"k\":\"{k}\",\"v\":{v}}}\n")).collect();
            let (status, body) = http(h, "POST", &format!("/topics/al/records?partition={p}"), lines.as_bytes());
            assert_eq!(status, 200, "produce: {body}");
        }
        for (ts, k, v) in events {
            let e = want.entry((k, (ts - T0) / 60_000 * 60_000 + T0)).or_default();
            e.0 += 1;
            e.1 += v;
        }
    }
    let (ok, body) = sql(
        h,
        "CREATE MATERIALIZED VIEW w WITH (idle_timeout = '1 hour') AS SELECT k, window_start, count(*) AS n, sum(v) AS s \
         FROM TUMBLE(al, ts, INTERVAL '1' MINUTE) GROUP BY k, window_start",
    );
    assert!(ok, "{body}");
    let rows = |h| -> BTreeMap<(String, i64), (i64, i64)> {
        sql_rows(h, "SELECT k, extract(epoch FROM window_start) * 1000 AS ws, n, s FROM w")
            .into_iter()
            .map(|r| {
                let k = r[0].as_str().unwrap_or_default().to_string();
                let ws = r[1].as_f64().unwrap_or(-1.0) as i64;
                ((k, ws), (r[2].as_i64().unwrap_or(-1), r[3].as_i64().unwrap_or(-1)))
            })
            .collect()
    };
    let mut got = BTreeMap::new();
    let same = eventually(Duration::from_secs(60), || {
        got = rows(h);
        got == want
    });
    assert!(same, "w differs from the oracle: {} rows against {}", got.len(), want.len());
    // Rebuilt at ~0.1 MB/s: partition 1's ~300 KB take seconds and partition 0's ~60 KB,
    // unheld, under one (a wide margin for the shards' starts to differ). The rebuilt
    // version's count is its own.
    let (ok, body) = sql(h, "ALTER MATERIALIZED VIEW w REBUILD FROM EARLIEST WITH (rate_limit_mb_per_s = 0.1)");
    assert!(ok, "{body}");
    let switched = eventually(Duration::from_secs(120), || rebuild_phase(h, "w") == "done");
    assert!(switched, "the rebuild of w did not finish");
    let same = eventually(Duration::from_secs(60), || {
        got = rows(h);
        got == want
    });
    assert!(same, "rebuilt w differs from the oracle: {} rows against {}", got.len(), want.len());
    let (_, metrics) = http(h, "GET", "/metrics", b"");
    let held = view_counter(&metrics, "sluice_view_reads_held_total", "w");
    assert!(held > 0, "partition 0 ran 100 s a batch ahead of the other shard's and was never held:\n{metrics}");
}
