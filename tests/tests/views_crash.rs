//! Exactly-once view state across crashes: `sluice serve` is killed with SIGKILL at
//! random points while events stream in and views checkpoint every 100 ms; after each
//! restart the views go on from their last checkpoint and replay the log's suffix. At the
//! end every view must equal its recomputation from offset 0 (the same definition,
//! created fresh over the log as it survived).
//!
//! `SLUICE_VIEW_CRASH_KILLS=n` sets the number of kills (CI runs a few; the long run is
//! `tools/crash-views.sh`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use sluice_tests::{config_file, eventually, http, sql_rows, Server};

const T0: i64 = 1_767_225_600_000;

const VIEWS: &[(&str, &str, &str)] = &[
    (
        "per_window",
        "SELECT k, window_start, count(*) AS n, sum(v) AS s, max(v) AS mx, first_value(v) AS f, last_value(v) AS l \
         FROM TUMBLE(ev, ts, INTERVAL '2' SECOND) GROUP BY k, window_start",
        "k, window_start",
    ),
    (
        "sessions",
        "SELECT k, window_start, window_end, count(*) AS n FROM SESSION(ev, ts, INTERVAL '700 milliseconds') \
         GROUP BY k, window_start, window_end",
        "k, window_start",
    ),
    ("totals", "SELECT k, count(*) AS n, sum(v) AS s, count(DISTINCT v) AS d FROM ev GROUP BY k", "k"),
    ("big", "SELECT ts, k, v FROM ev WHERE v > 90", "ts, k, v"),
    (
        "matched",
        "SELECT a.k, count(*) AS n FROM ev a JOIN ev2 b ON a.k = b.k AND b.ts BETWEEN a.ts AND a.ts + INTERVAL '1' SECOND \
         GROUP BY a.k",
        "k",
    ),
];

fn create_views(h: std::net::SocketAddr, suffix: &str) {
    for (name, body, _) in VIEWS {
        sql_rows(h, &format!("CREATE MATERIALIZED VIEW {name}{suffix} WITH (idle_timeout = '1 hour') AS {body}"));
    }
}

/// Streams batches of events until told to stop or the server dies; `next` numbers them
/// across restarts so time keeps moving forward.
fn producer(h: std::net::SocketAddr, stop: Arc<AtomicBool>, next: Arc<AtomicU64>, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    while !stop.load(Ordering::Relaxed) {
        let base = next.fetch_add(200, Ordering::Relaxed);
        for (topic, partitions) in [("ev", 3u32), ("ev2", 2u32)] {
            let p = rng.gen_range(0..partitions);
            let lines: String = (0..if topic == "ev" { 200 } else { 60 })
                .map(|i| {
                    let jitter = if rng.gen_bool(0.1) { -rng.gen_range(500..3_000) } else { rng.gen_range(-100..100) };
                    let ts = T0 + (base + i) as i64 * 5 + jitter;
                    let k = format!("k{}", rng.gen_range(0..25));
                    if topic == "ev" {
                        json!({"ts": ts, "k": k, "v": rng.gen_range(0..100)}).to_string() + "\n"
                    } else {
                        json!({"ts": ts, "k": k}).to_string() + "\n"
                    }
                })
                .collect();
            let (st, _) = http(h, "POST", &format!("/topics/{topic}/records?partition={p}"), lines.as_bytes());
            if st != 200 {
                return;
            }
        }
    }
}

fn read(h: std::net::SocketAddr, name: &str, order: &str) -> Vec<Vec<serde_json::Value>> {
    sql_rows(h, &format!("SELECT * FROM {name} ORDER BY {order}"))
}

#[test]
fn views_equal_their_recomputation_after_kill_9_at_many_points() {
    let kills: usize = std::env::var("SLUICE_VIEW_CRASH_KILLS").ok().and_then(|s| s.parse().ok()).unwrap_or(6);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    std::fs::create_dir_all(&data).unwrap();
    let config = config_file(&data, "checkpoint_interval_ms = 100\n");
    let config = config.to_str().unwrap().to_string();
    let mut server = Server::start_with(&data, &["--config", &config]);
    sql_rows(
        server.http,
        "CREATE TOPIC ev (ts TIMESTAMP NOT NULL, k TEXT NOT NULL, v BIGINT) \
           WITH (partitions = 3, event_time = 'ts', lateness = '1 second', durability = 'interval:5');
         CREATE TOPIC ev2 (ts TIMESTAMP NOT NULL, k TEXT NOT NULL) \
           WITH (partitions = 2, event_time = 'ts', lateness = '1 second', durability = 'interval:5');",
    );
    create_views(server.http, "");
    let next = Arc::new(AtomicU64::new(0));
    let mut rng = StdRng::seed_from_u64(42);
    for kill in 0..kills {
        let stop = Arc::new(AtomicBool::new(false));
        let t = {
            let (h, stop, next) = (server.http, stop.clone(), next.clone());
            std::thread::spawn(move || producer(h, stop, next, 1_000 + kill as u64))
        };
        std::thread::sleep(Duration::from_millis(rng.gen_range(150..900)));
        server.kill9();
        stop.store(true, Ordering::Relaxed);
        let _ = t.join();
        server = Server::start_with(&data, &["--config", &config]);
    }
    // A last stretch without a crash, then the views settle.
    let stop = Arc::new(AtomicBool::new(false));
    let t = {
        let (h, stop, next) = (server.http, stop.clone(), next.clone());
        std::thread::spawn(move || producer(h, stop, next, 99))
    };
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let _ = t.join();
    // The recomputation: the same views, fresh, from offset 0 of the log as it is.
    create_views(server.http, "_fresh");
    let h = server.http;
    let mut diff = String::new();
    let equal = eventually(Duration::from_secs(60), || {
        diff.clear();
        for (name, _, order) in VIEWS {
            let (a, b) = (read(h, name, order), read(h, &format!("{name}_fresh"), order));
            if a != b {
                diff = format!(
                    "{name}: {} rows after the crashes, {} recomputed; first difference: {:?}",
                    a.len(),
                    b.len(),
                    a.iter().zip(&b).find(|(x, y)| x != y)
                );
                return false;
            }
        }
        true
    });
    assert!(equal, "after {kills} kills: {diff}");
    let n = read(h, "totals", "k").iter().map(|r| r[1].as_i64().unwrap_or(0)).sum::<i64>();
    assert!(n > 1_000, "the views saw the stream ({n} events)");
    // The restarts went on from checkpoints (not from scratch).
    let log = std::fs::read_to_string(data.with_extension("stderr.log")).unwrap_or_default();
    let restored = log.matches("view restored from its checkpoint").count();
    assert!(restored >= kills, "{restored} view restores from checkpoints in {kills} restarts");
}
