//! The rebuild benchmark: `ALTER MATERIALIZED VIEW ... REBUILD` of a tumbling aggregate
//! over a log on disk, against the raw disk, under live traffic, in memory, and against a
//! batch engine.
//!
//! - A log of N events (ts, k, v; 25 bytes each on disk, columnar) in 4 partitions, one shard pinned
//!   to one core; a tumbling count+sum per key and 1 s window over it (the views
//!   benchmark's). The rebuild's time runs from the ALTER to the switch.
//! - `rebuild_vs_raw_read`: the rebuild's MB/s of log against an io_uring O_DIRECT read of
//!   the same segment files (Sluice's read-ahead block size; the faster of one partition's
//!   queue depth and all of a replay's reads in flight).
//! - `rebuild_all_cores_vs_raw_read`: the same rebuild after a restart with one shard per
//!   core of the machine (the partitions split between the shards), against the same read;
//!   `rebuild_all_cores_vs_duckdb_time` against DuckDB with as many threads;
//!   `catch_up_all_cores_peak_rss_mb`: the peak RSS of the catch-up after that restart (the
//!   serving view reads the whole log again on both shards, beside the resumed rebuild).
//! - `live_p99_during_rebuild_vs_idle`: event-to-view latency (open loop, 20,000 events/s,
//!   `interval` durability, looked up over pgwire) idle and during a full-speed rebuild.
//! - `rebuild_rss_ratio_10x`: the server's peak RSS during the rebuild of a log and of a
//!   log ten times larger (VmHWM, reset before each rebuild and read once the new version's
//!   first checkpoint, which the switch starts, is complete).
//! - `rebuild_cpu_ns_per_event`: the server's CPU time (all threads) over the large
//!   rebuild, per event: the rebuild's cost apart from how much CPU the machine gave it.
//! - `rebuild_vs_duckdb_time`: the rebuild's time against DuckDB (one thread, like the one
//!   shard) computing the same aggregate from a Parquet export of the same events.
//!
//! The rate over time of the large rebuild goes to `target/rebuild-rate.svg`.

use std::process::Command;
use std::time::{Duration, Instant};

use bench::events::{load, pin_self, repo_root, report, round2, start, view_events, view_latency, Server, PARTITIONS};
use bench::raw_disk::{self, RawDiskConfig};
use bench::{http_request, sql};
use clap::Parser;
use sluice::limits::{READ_AHEAD_CHUNK_BYTES, READ_AHEAD_DEPTH, REPLAY_READ_AHEAD_DEPTH};

#[derive(Parser)]
struct Args {
    /// A run under a minute.
    #[arg(long)]
    quick: bool,
    /// Events in the smaller log (the larger has ten times as many).
    #[arg(long)]
    events: Option<u64>,
    #[arg(long, default_value_t = 0)]
    server_cpu: usize,
    #[arg(long, default_value_t = 1)]
    client_cpu: usize,
    /// Skip DuckDB.
    #[arg(long)]
    no_duckdb: bool,
}

const VIEW: &str = "SELECT k, window_start, count(*) AS n, sum(v) AS s FROM TUMBLE(ev, ts, INTERVAL '1' SECOND) GROUP BY k, window_start";
/// The live stream's rate while latency is measured.
const LIVE_EVENTS_PER_S: u64 = 20_000;

struct Rebuilt {
    seconds: f64,
    /// (seconds since the ALTER, events read, bytes read).
    samples: Vec<(f64, u64, u64)>,
    peak_rss_mb: f64,
    /// The server's RSS when the rebuild began (what the peak is measured from).
    start_rss_mb: f64,
    /// CPU time the server spent (user + system, all its threads) from the ALTER to the
    /// switch: what the rebuild costs, apart from the machine's other tenants.
    cpu_s: f64,
}

/// Creates the topic, loads `n` events and bootstraps the view over them; returns the
/// bootstrap's events/s.
fn setup(server: &Server, n: u64) -> f64 {
    sql(
        server.http,
        &format!(
            "CREATE TOPIC ev (ts TIMESTAMP NOT NULL, k BIGINT NOT NULL, v BIGINT NOT NULL) \
             WITH (partitions = {PARTITIONS}, event_time = 'ts', durability = 'none', segment_bytes = 268435456)"
        ),
    );
    let t = Instant::now();
    let bytes = load(server.native, "ev", n);
    eprintln!("loaded {n} events ({:.0} MB) in {:.1}s", bytes as f64 / 1e6, t.elapsed().as_secs_f64());
    // Windows older than a minute of event time are evicted: the view's own size stays
    // the same for both logs, so the peak RSS shows what the replay itself holds.
    sql(
        server.http,
        &format!("CREATE MATERIALIZED VIEW tumble WITH (idle_timeout = '1 hour', state_ttl = '1 minute') AS {VIEW}"),
    );
    let t = Instant::now();
    while view_events(server.http, "tumble") < n {
        assert!(t.elapsed() < Duration::from_secs(900), "the view did not take in the log");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The same view and log through the live path: what the replay's driving costs.
    let secs = t.elapsed().as_secs_f64();
    eprintln!("bootstrap of the view (live path): {secs:.2}s = {:.0} events/s", n as f64 / secs);
    n as f64 / secs
}

/// CPU seconds (user + system) process `pid` has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the server's /proc/PID/stat");
    // Fields after the command (which may hold spaces), from field 3: utime is 14, stime 15.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks = |i: usize| -> f64 {
        fields.get(i - 3).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("field {i} of {stat:?}"))
    };
    // SAFETY: sysconf only reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (ticks(14) + ticks(15)) / hz
}

fn vm_hwm_mb(pid: u32) -> f64 {
    proc_status_mb(pid, "VmHWM:")
}

/// A memory figure of /proc/PID/status (`VmHWM:`, `VmRSS:`) in MB.
fn proc_status_mb(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The phase of the view's rebuild, if it has one.
fn rebuild_phase(server: &Server) -> Option<String> {
    let (status, body) = http_request(server.http, "GET", "/views/tumble/rebuild", b"");
    let p: serde_json::Value = serde_json::from_str(&body).ok()?;
    (status == 200).then(|| p["phase"].as_str().map(str::to_string)).flatten()
}

/// Checkpoints of the view `tumble` completed so far (`/metrics`).
fn view_checkpoints(server: &Server) -> u64 {
    let (_, body) = http_request(server.http, "GET", "/metrics", b"");
    body.lines()
        .filter(|l| l.starts_with("sluice_view_checkpoints_total{") && l.contains("view=\"tumble\""))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<u64>().ok()))
        .sum()
}

/// Rebuilds the view from the start and follows it to the switch, and to the checkpoint
/// of the new version that follows it (part of the rebuild's memory).
fn rebuild(server: &Server) -> Rebuilt {
    // The peak RSS from here on (5: reset VmHWM).
    let _ = std::fs::write(format!("/proc/{}/clear_refs", server.pid()), "5");
    let start_rss_mb = proc_status_mb(server.pid(), "VmRSS:");
    let checkpoints_before = view_checkpoints(server);
    let cpu_before = cpu_seconds(server.pid());
    let started = Instant::now();
    sql(server.http, "ALTER MATERIALIZED VIEW tumble REBUILD FROM EARLIEST");
    let mut samples = Vec::new();
    loop {
        let (status, body) = http_request(server.http, "GET", "/views/tumble/rebuild", b"");
        assert_eq!(status, 200, "{body}");
        let p: serde_json::Value = serde_json::from_str(&body).expect("progress JSON");
        let t = started.elapsed().as_secs_f64();
        samples.push((t, p["events_done"].as_u64().unwrap_or(0), p["bytes_read"].as_u64().unwrap_or(0)));
        match p["phase"].as_str() {
            Some("done") => break,
            Some("building") => {}
            other => panic!("rebuild ended as {other:?}"),
        }
        assert!(t < 1_800.0, "rebuild did not finish in 30 minutes");
        std::thread::sleep(Duration::from_millis(50));
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu_s = cpu_seconds(server.pid()) - cpu_before;
    let checkpointed = Instant::now();
    while view_checkpoints(server) <= checkpoints_before {
        if checkpointed.elapsed() > Duration::from_secs(60) {
            eprintln!("the rebuilt version's checkpoint did not complete in 60 s");
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Rebuilt { seconds, samples, peak_rss_mb: vm_hwm_mb(server.pid()), start_rss_mb, cpu_s }
}

/// The log's segment files of topic `ev`.
fn ev_segments(server: &Server) -> (u64, Vec<std::path::PathBuf>) {
    bench::segment_files(&server.data_dir().join("topics").join("ev"))
}

/// The rebuild's rate over time (events/s between samples) as an SVG line chart.
fn plot(samples: &[(f64, u64, u64)], path: &std::path::Path) {
    let rates: Vec<(f64, f64)> = samples
        .windows(2)
        .filter(|w| w[1].0 > w[0].0)
        .map(|w| (w[1].0, (w[1].2.saturating_sub(w[0].2)) as f64 / (w[1].0 - w[0].0) / 1e6))
        .collect();
    let (tmax, rmax) = rates.iter().fold((1e-9f64, 1e-9f64), |(t, r), (x, y)| (t.max(*x), r.max(*y)));
    let (w, h, pad) = (640.0, 320.0, 48.0);
    let points: String = rates
        .iter()
        .map(|(t, r)| format!("{:.1},{:.1} ", pad + t / tmax * (w - 2.0 * pad), h - pad - r / rmax * (h - 2.0 * pad)))
        .collect();
    let svg = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' font-family='sans-serif' font-size='12'>\
         <rect width='100%' height='100%' fill='white'/>\
         <text x='{pad}' y='20'>rebuild read rate (MB/s of log) over time; peak {rmax:.0} MB/s, {tmax:.1} s</text>\
         <line x1='{pad}' y1='{y0}' x2='{x1}' y2='{y0}' stroke='black'/><line x1='{pad}' y1='{pad}' x2='{pad}' y2='{y0}' stroke='black'/>\
         <text x='{x1}' y='{yl}' text-anchor='end'>{tmax:.1} s</text><text x='4' y='{pad}'>{rmax:.0}</text>\
         <polyline fill='none' stroke='#1f77b4' stroke-width='2' points='{points}'/></svg>\n",
        y0 = h - pad,
        x1 = w - pad,
        yl = h - pad + 16.0,
    );
    if let Err(e) = std::fs::write(path, svg) {
        eprintln!("writing {}: {e}", path.display());
    }
}

/// DuckDB's time for the same aggregate over a Parquet export of the same events.
fn duckdb_seconds(n: u64, threads: usize) -> Result<f64, String> {
    let root = repo_root();
    let status = Command::new(root.join("tools/install-clients.sh")).status().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err("tools/install-clients.sh failed".into());
    }
    std::fs::create_dir_all(root.join("target/peers")).map_err(|e| e.to_string())?;
    let parquet = root.join(format!("target/peers/events-{n}.parquet"));
    let out = Command::new("python3")
        .arg(root.join("bench/peers/duckdb_tumble.py"))
        .arg(n.to_string())
        .arg(&parquet)
        .args(["--threads", &threads.to_string()])
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .last()
        .ok_or_else(|| format!("duckdb printed nothing: {}", String::from_utf8_lossy(&out.stderr)))?;
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("{line:?}: {e}"))?;
    if v["count_sum"].as_u64() != Some(n) {
        return Err(format!("DuckDB's result is wrong: {line}"));
    }
    v["seconds"].as_f64().ok_or_else(|| "no seconds".into())
}

fn main() {
    let args = Args::parse();
    // The large log of a full run is 210 M events, 5.3 GB (25 bytes an event, columnar):
    // the "at least 5 GB".
    let small = args.events.unwrap_or(if args.quick { 1_000_000 } else { 21_000_000 });
    let large = small * 10;
    pin_self(args.client_cpu);
    let mut json = serde_json::Map::new();

    let server = start(args.server_cpu);
    let _ = setup(&server, small);
    let r_small = rebuild(&server);
    eprintln!(
        "rebuild of {small} events: {:.2}s, peak RSS {:.0} MB (RSS at its start {:.0} MB)",
        r_small.seconds, r_small.peak_rss_mb, r_small.start_rss_mb
    );
    drop(server);

    let server = start(args.server_cpu);
    let bootstrap_events_per_s = setup(&server, large);
    let r = rebuild(&server);
    let (bytes, files) = ev_segments(&server);
    // The raw read at one partition's queue depth and at all of a replay's reads in
    // flight (every partition's read-ahead); the faster is the yardstick.
    let mut raw_mbps = 0f64;
    for queue_depth in [READ_AHEAD_DEPTH, PARTITIONS as usize * REPLAY_READ_AHEAD_DEPTH] {
        let raw_cfg = RawDiskConfig { block_bytes: READ_AHEAD_CHUNK_BYTES, queue_depth };
        let raw = raw_disk::sequential_read(&files, &raw_cfg).expect("raw read");
        let mbps = raw.bytes as f64 / 1e6 / raw.seconds;
        json.insert(format!("raw_read_qd{queue_depth}_mb_per_s"), serde_json::json!(mbps.round()));
        raw_mbps = raw_mbps.max(mbps);
    }
    let rebuild_mbps = bytes as f64 / 1e6 / r.seconds;
    eprintln!(
        "rebuild of {large} events ({:.0} MB of log): {:.2}s = {:.0} events/s, {rebuild_mbps:.0} MB/s; raw O_DIRECT read {raw_mbps:.0} MB/s; peak RSS {:.0} MB (RSS at its start {:.0} MB)",
        bytes as f64 / 1e6,
        r.seconds,
        large as f64 / r.seconds,
        r.peak_rss_mb,
        r.start_rss_mb
    );
    // The rate between a fifth and four fifths of the events: the rebuild's own speed,
    // without its start, its hand-over and the progress polling's granularity.
    let at = |fraction: f64| r.samples.iter().find(|s| s.1 as f64 >= fraction * large as f64).copied();
    if let (Some(a), Some(b)) = (at(0.2), at(0.8)) {
        if b.0 > a.0 {
            let steady = (b.1 - a.1) as f64 / (b.0 - a.0);
            eprintln!("rebuild steady rate (20%..80% of the events): {steady:.0} events/s");
            json.insert("rebuild_steady_events_per_s".into(), serde_json::json!(steady.round()));
        }
    }
    let svg = repo_root().join("target/rebuild-rate.svg");
    plot(&r.samples, &svg);
    eprintln!("rate over time: {}", svg.display());
    json.insert("log_bytes".into(), serde_json::json!(bytes));
    json.insert("rebuild_s".into(), serde_json::json!(round2(r.seconds)));
    json.insert("bootstrap_events_per_s".into(), serde_json::json!(bootstrap_events_per_s.round()));
    json.insert("rebuild_events_per_s".into(), serde_json::json!((large as f64 / r.seconds).round()));
    json.insert("rebuild_mb_per_s".into(), serde_json::json!(rebuild_mbps.round()));
    let cpu_ns_per_event = r.cpu_s * 1e9 / large as f64;
    eprintln!("rebuild CPU: {:.2}s = {cpu_ns_per_event:.1} ns an event", r.cpu_s);
    json.insert("rebuild_cpu_ns_per_event".into(), serde_json::json!((cpu_ns_per_event * 10.0).round() / 10.0));
    json.insert("raw_read_mb_per_s".into(), serde_json::json!(raw_mbps.round()));
    json.insert("rebuild_vs_raw_read".into(), serde_json::json!(round2(rebuild_mbps / raw_mbps)));
    json.insert("rebuild_peak_rss_mb".into(), serde_json::json!(r_small.peak_rss_mb.round()));
    json.insert("rebuild_peak_rss_10x_mb".into(), serde_json::json!(r.peak_rss_mb.round()));
    json.insert("rebuild_start_rss_mb".into(), serde_json::json!(r_small.start_rss_mb.round()));
    json.insert("rebuild_start_rss_10x_mb".into(), serde_json::json!(r.start_rss_mb.round()));
    json.insert("rebuild_rss_ratio_10x".into(), serde_json::json!(round2(r.peak_rss_mb / r_small.peak_rss_mb)));

    // Live latency idle, then during a full-speed rebuild of the large log.
    let secs = if args.quick { 3 } else { 10 };
    let idle = view_latency(&server, "idle", LIVE_EVENTS_PER_S, Duration::from_secs(secs)).from_send;
    report("live_idle", &idle, &mut json);
    let during_secs = (r.seconds * 0.8).clamp(1.0, secs as f64);
    let rebuilding = {
        let http = server.http;
        std::thread::spawn(move || sql(http, "ALTER MATERIALIZED VIEW tumble REBUILD FROM EARLIEST"))
    };
    std::thread::sleep(Duration::from_millis(100));
    let during = view_latency(&server, "during", LIVE_EVENTS_PER_S, Duration::from_secs_f64(during_secs)).from_send;
    let _ = rebuilding.join();
    report("live_during_rebuild", &during, &mut json);
    let (status, body) = http_request(server.http, "GET", "/views/tumble/rebuild", b"");
    eprintln!("the rebuild during the latency run: {status} {body}");
    json.insert(
        "live_p99_during_rebuild_vs_idle".into(),
        serde_json::json!(round2(during.value_at_quantile(0.99) as f64 / idle.value_at_quantile(0.99).max(1) as f64)),
    );

    // The same log rebuilt by the whole machine: one shard per core (the partitions split
    // between them, groups exchanged to their owners), against the same raw read.
    let cores = [args.server_cpu, args.client_cpu];
    let server = server.restart_on(&cores);
    let t = Instant::now();
    while rebuild_phase(&server).as_deref() == Some("building") || view_events(server.http, "tumble") < large {
        assert!(t.elapsed() < Duration::from_secs(900), "the view did not catch up after the restart");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The restart's catch-up: the serving view read all of the log again (its shard count
    // changed) beside the interrupted rebuild, on both shards: the peak since the start.
    let catch_up_peak_rss_mb = vm_hwm_mb(server.pid());
    eprintln!(
        "catch-up after the restart on {} shards: {:.1}s, peak RSS {catch_up_peak_rss_mb:.0} MB",
        cores.len(),
        t.elapsed().as_secs_f64()
    );
    json.insert("catch_up_all_cores_peak_rss_mb".into(), serde_json::json!(catch_up_peak_rss_mb.round()));
    let r_all = rebuild(&server);
    let all_mbps = bytes as f64 / 1e6 / r_all.seconds;
    eprintln!(
        "rebuild of {large} events on {} shards: {:.2}s = {:.0} events/s, {all_mbps:.0} MB/s; peak RSS {:.0} MB (RSS at its start {:.0} MB)",
        cores.len(),
        r_all.seconds,
        large as f64 / r_all.seconds,
        r_all.peak_rss_mb,
        r_all.start_rss_mb
    );
    json.insert("rebuild_all_cores_peak_rss_mb".into(), serde_json::json!(r_all.peak_rss_mb.round()));
    json.insert("rebuild_all_cores_shards".into(), serde_json::json!(cores.len()));
    json.insert("rebuild_all_cores_s".into(), serde_json::json!(round2(r_all.seconds)));
    json.insert("rebuild_all_cores_events_per_s".into(), serde_json::json!((large as f64 / r_all.seconds).round()));
    json.insert("rebuild_all_cores_mb_per_s".into(), serde_json::json!(all_mbps.round()));
    json.insert("rebuild_all_cores_vs_raw_read".into(), serde_json::json!(round2(all_mbps / raw_mbps)));
    drop(server);

    if !args.no_duckdb {
        // One thread against the one-shard rebuild, as many as cores against the all-cores one.
        for (threads, ours_s, prefix) in [(1, r.seconds, ""), (cores.len(), r_all.seconds, "all_cores_")] {
            match duckdb_seconds(large, threads) {
                Ok(s) => {
                    eprintln!("DuckDB ({threads} threads) over Parquet: {s:.2}s for {large} events");
                    json.insert(format!("duckdb_{prefix}s"), serde_json::json!(round2(s)));
                    json.insert(format!("rebuild_{prefix}vs_duckdb_time"), serde_json::json!(round2(ours_s / s)));
                }
                Err(e) => eprintln!("duckdb: skipped: {e}"),
            }
        }
    }
    println!("{}", serde_json::Value::Object(json));
}
