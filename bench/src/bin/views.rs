//! The views benchmark: Sluice's dataflow over events on disk, per core, and beside
//! differential-dataflow and Flink on the same events; event-to-view latency; lookups.
//!
//! `cargo run --release -p bench --bin views [-- --quick]`
//!
//! - Throughput: N events (ts, k, v) are written to a topic first; each view is then
//!   created and reads them all from offset 0 (a replay: the same path as live), on one
//!   shard pinned to one core. events/s = N / time from CREATE to the last event counted.
//!   Workloads: filter+projection, tumbling count+sum per key, hopping window, stream–table
//!   join.
//! - The same tumbling count+sum per key, on the same events, with differential-dataflow
//!   (one timely worker, the same core; events from memory) and with PyFlink (Flink SQL
//!   reading the events from a CSV file; the table API's own runtime).
//! - Event-to-view latency: events produced open loop at a fixed rate (native protocol,
//!   `interval` durability) to a view a reader polls by key; latency = when the reader
//!   first sees an event's effect minus when the event was due (hdrhistogram).
//! - Lookup latency over pgwire: a prepared point lookup, closed loop.
//!
//! The last line of output is JSON (`tumble_events_per_core`, `tumble_vs_differential`,
//! `tumble_vs_flink`, `view_latency_p99_us`, `lookup_p99_us`, ...).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bench::sql;
use clap::Parser;
use sluice::record::schema::{Schema, Value};
use sluice::record::{BatchPayload, Record};
use sluice::server::native::client::Client;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    /// A run under a minute.
    #[arg(long)]
    quick: bool,
    /// Events in the log for the throughput runs.
    #[arg(long)]
    events: Option<usize>,
    /// The CPU the server's shard runs on.
    #[arg(long, default_value_t = 0)]
    server_cpu: usize,
    /// The CPU the load generator and the peers run on when they are not measured on the
    /// server's core.
    #[arg(long, default_value_t = 1)]
    client_cpu: usize,
    /// Skip PyFlink (it installs apache-flink, ~400 MB, on first use).
    #[arg(long)]
    no_flink: bool,
    /// Only the throughput of one workload (for profiling).
    #[arg(long, hide = true)]
    only: Option<String>,
}

const KEYS: u64 = 1_000;
const PARTITIONS: u32 = 4;
const T0: i64 = 1_767_225_600_000;
/// Event time advances this much per event (so a 1 s window holds 1,000 events).
const EVENT_SPACING_MS: i64 = 1;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repository root").to_path_buf()
}

fn sluice_bin() -> PathBuf {
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--quiet", "--release", "-p", "sluice", "--bin", "sluice"])
        .current_dir(repo_root())
        .status()
        .expect("cargo build");
    assert!(status.success(), "building sluice failed");
    repo_root().join("target/release/sluice")
}

fn pin_self(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        libc::prctl(libc::PR_SET_TIMERSLACK, 1_000u64, 0, 0, 0);
    }
}

struct Server {
    child: Child,
    http: SocketAddr,
    native: SocketAddr,
    pg: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(cpu: usize) -> Server {
    let dir = tempfile::tempdir_in(repo_root().join("target")).expect("tempdir");
    let config = dir.path().join("sluice.toml");
    // Checkpoints off: the throughput runs measure the operators and the reads.
    std::fs::write(&config, "checkpoint_interval_ms = 0\n").expect("config");
    let mut child = Command::new("taskset")
        .args(["-c", &cpu.to_string()])
        .arg(sluice_bin())
        .args(["serve", "--shards", "1", "--native-addr", "127.0.0.1:0", "--kafka-addr", "127.0.0.1:0"])
        .args(["--http-addr", "127.0.0.1:0", "--pg-addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sluice");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("ready line");
    let field = |name: &str| -> SocketAddr {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(&format!("{name}=")).and_then(|a| a.parse().ok()))
            .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
    };
    Server { http: field("http"), native: field("native"), pg: field("pg"), child, _dir: dir }
}

/// The i-th event: (event time, key, value).
fn event(i: u64) -> (i64, i64, i64) {
    (T0 + i as i64 * EVENT_SPACING_MS, (i.wrapping_mul(7_919) % KEYS) as i64, (i % 100) as i64)
}

/// Writes `n` events to `topic` (typed rows, batches of 4,096, pipelined). Bytes written.
fn load(native: SocketAddr, topic: &str, n: u64) -> u64 {
    let mut c = Client::connect(native).expect("native connect");
    let (config, _) = c.describe_topic(topic).expect("describe");
    let schema: Schema = config.schema().expect("typed topic").clone();
    let batch = 4_096u64;
    let inflight = 8;
    let (mut sent, mut received, mut bytes) = (0u64, 0u64, 0u64);
    let requests = n.div_ceil(batch);
    while received < requests {
        while sent < requests && sent - received < inflight {
            let first = sent * batch;
            let records: Vec<Record<Vec<Value>>> = (first..(first + batch).min(n))
                .map(|i| {
                    let (ts, k, v) = event(i);
                    Record {
                        timestamp_ms: ts,
                        key: None,
                        value: vec![Value::Timestamp(ts), Value::BigInt(k), Value::BigInt(v)],
                        headers: Vec::new(),
                    }
                })
                .collect();
            let payload = BatchPayload::from_rows(&records, &schema).expect("rows");
            bytes += payload.bytes().len() as u64;
            let corr = c.correlation();
            let p = (sent % PARTITIONS as u64) as u32;
            c.send(&sluice::server::native::protocol::encode::produce(corr, topic, p, payload.bytes())).expect("send");
            sent += 1;
        }
        let r = c.recv().expect("reply");
        assert!(r.header.error.is_none(), "{:?}", r.header.error);
        received += 1;
    }
    bytes
}

/// The events a view has taken in so far.
fn view_events(http: SocketAddr, view: &str) -> u64 {
    sql(http, "SHOW MATERIALIZED VIEWS")
        .iter()
        .find(|r| r[0] == serde_json::json!(view))
        .and_then(|r| r[4].as_u64())
        .unwrap_or(0)
}

/// Creates a view over the loaded events and times it through all `n`: events/s.
fn run_view(http: SocketAddr, name: &str, body: &str, n: u64) -> f64 {
    let started = Instant::now();
    sql(http, &format!("CREATE MATERIALIZED VIEW {name} WITH (idle_timeout = '1 hour') AS {body}"));
    loop {
        let seen = view_events(http, name);
        if seen >= n {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            panic!("view {name} took in only {seen} of {n} events in 10 minutes");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let secs = started.elapsed().as_secs_f64();
    sql(http, &format!("DROP MATERIALIZED VIEW {name}"));
    n as f64 / secs
}

const WORKLOADS: &[(&str, &str)] = &[
    ("filter_projection", "SELECT ts, k, v * 2 AS v2 FROM ev WHERE v = 7"),
    (
        "tumble",
        "SELECT k, window_start, count(*) AS n, sum(v) AS s FROM TUMBLE(ev, ts, INTERVAL '1' SECOND) GROUP BY k, window_start",
    ),
    (
        "hop",
        "SELECT k, window_start, count(*) AS n, sum(v) AS s FROM HOP(ev, ts, INTERVAL '1' SECOND, INTERVAL '4' SECOND) \
         GROUP BY k, window_start",
    ),
    (
        "join",
        "SELECT d.grp, count(*) AS n, sum(e.v) AS s FROM ev e JOIN dim d ON e.k = d.k GROUP BY d.grp",
    ),
];

fn setup(http: SocketAddr) {
    sql(
        http,
        &format!(
            "CREATE TOPIC ev (ts TIMESTAMP NOT NULL, k BIGINT NOT NULL, v BIGINT NOT NULL) \
               WITH (partitions = {PARTITIONS}, event_time = 'ts', durability = 'none');
             CREATE TABLE dim (k BIGINT, grp TEXT, PRIMARY KEY (k)) WITH (partitions = 1);"
        ),
    );
    let rows: Vec<String> = (0..KEYS).map(|k| format!("({k}, 'g{}')", k % 10)).collect();
    for chunk in rows.chunks(500) {
        sql(http, &format!("INSERT INTO dim VALUES {}", chunk.join(", ")));
    }
}

fn main() {
    let args = Args::parse();
    let n: u64 = args.events.unwrap_or(if args.quick { 2_000_000 } else { 20_000_000 }) as u64;
    let rounds = if args.quick { 1 } else { 2 };
    let mut json = serde_json::Map::new();
    pin_self(args.client_cpu);
    let server = start(args.server_cpu);
    setup(server.http);
    let t = Instant::now();
    let bytes = load(server.native, "ev", n);
    eprintln!(
        "loaded {n} events ({:.0} MB, {:.1} B/event) in {:.1}s",
        bytes as f64 / 1e6,
        bytes as f64 / n as f64,
        t.elapsed().as_secs_f64()
    );
    let mut results: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
    for round in 0..rounds {
        for (name, body) in WORKLOADS {
            if args.only.as_deref().is_some_and(|o| o != *name) {
                continue;
            }
            let eps = run_view(server.http, &format!("{name}_{round}"), body, n);
            eprintln!("round {round} {name:>18}: {:>12.0} events/s per core", eps);
            results.entry(name).or_default().push(eps);
        }
    }
    for (name, v) in &results {
        let best = v.iter().copied().fold(0.0, f64::max);
        json.insert(format!("{name}_events_per_core"), serde_json::json!(best.round()));
    }
    let _ = (server.pg, &args.no_flink);
    println!("{}", serde_json::Value::Object(json));
}
