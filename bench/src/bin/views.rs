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
use hdrhistogram::Histogram;
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
/// Events per millisecond of event time: 100,000 events/s of event time, so a 1 s window
/// holds ~100 events per key (a busy telemetry or market-data stream).
const EVENTS_PER_MS: u64 = 100;

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

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The i-th event: (event time, key, value).
fn event(i: u64) -> (i64, i64, i64) {
    (T0 + (i / EVENTS_PER_MS) as i64, (i.wrapping_mul(7_919) % KEYS) as i64, (i % 100) as i64)
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
        std::thread::sleep(Duration::from_millis(5));
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
    let want = |part: &str| args.only.as_deref().is_none_or(|o| o.split(',').any(|p| p == part));
    let mut results: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
    for round in 0..rounds {
        for (name, body) in WORKLOADS {
            if want(name) {
                let eps = run_view(server.http, &format!("{name}_{round}"), body, n);
                eprintln!("round {round} {name:>18}: {:>12.0} events/s per core", eps);
                results.entry(name).or_default().push(eps);
            }
        }
    }
    for (name, v) in &results {
        let best = v.iter().copied().fold(0.0, f64::max);
        json.insert(format!("{name}_events_per_core"), serde_json::json!(best.round()));
    }
    let ours = results.get("tumble").map(|v| v.iter().copied().fold(0.0, f64::max));
    if want("differential") {
        // The peer runs on the core the server's shard used, with the server idle.
        pin_self(args.server_cpu);
        let mut best = 0f64;
        for _ in 0..rounds {
            for epoch in [4_096, 100_000] {
                let (eps, updates) = differential_tumble(n, epoch);
                eprintln!(
                    "differential-dataflow tumble, epochs of {epoch:>7} events: {eps:>12.0} events/s per core ({updates} output updates)"
                );
                best = best.max(eps);
            }
        }
        pin_self(args.client_cpu);
        json.insert("differential_tumble_events_per_core".into(), serde_json::json!(best.round()));
        if let Some(ours) = ours {
            json.insert("tumble_vs_differential".into(), serde_json::json!(round2(ours / best)));
        }
    }
    if want("flink") && !args.no_flink {
        match flink_tumble(n, args.server_cpu) {
            Ok(eps) => {
                json.insert("flink_tumble_events_per_core".into(), serde_json::json!(eps.round()));
                if let Some(ours) = ours {
                    json.insert("tumble_vs_flink".into(), serde_json::json!(round2(ours / eps)));
                }
            }
            Err(e) => eprintln!("flink: skipped: {e}"),
        }
    }
    if want("lookup") {
        let lookups = if args.quick { 20_000 } else { 200_000 };
        let h = lookup_latency(&server, lookups);
        report("lookup", &h, &mut json);
    }
    if want("latency") {
        let secs = if args.quick { 5 } else { 20 };
        let h = view_latency(&server, 100_000, Duration::from_secs(secs));
        report("view_latency", &h, &mut json);
    }
    println!("{}", serde_json::Value::Object(json));
}

/// The tumbling count+sum per key in differential-dataflow, one timely worker on this
/// thread, over the same events decoded in memory (no log, no parsing: the peer's best case).
/// Time advances once per second of event time, the batch size differential likes.
/// Returns (events/s, result rows).
fn differential_tumble(n: u64, epoch_events: usize) -> (f64, usize) {
    use differential_dataflow::input::Input;
    use differential_dataflow::operators::count::CountTotal;
    use timely::dataflow::operators::probe::Handle;
    let events: Vec<(i64, i64, i64)> = (0..n).map(event).collect();
    let (secs, rows) = timely::execute_directly(move |worker| {
        let mut probe = Handle::new();
        let output = std::rc::Rc::new(std::cell::Cell::new(0usize));
        let seen = output.clone();
        let mut input = worker.dataflow::<u64, _, _>(|scope| {
            let (input, events) = scope.new_collection::<(i64, i64, i64), isize>();
            // count and sum travel together as the difference: the idiomatic fast aggregate.
            events
                .explode(|(ts, k, v)| Some(((k, ts - ts.rem_euclid(1_000)), (1isize, v as isize))))
                .count_total()
                .inspect(move |_| seen.set(seen.get() + 1))
                .probe_with(&mut probe);
            input
        });
        let started = Instant::now();
        for epoch in events.chunks(epoch_events) {
            for &e in epoch {
                input.insert(e);
            }
            let next = input.time() + 1;
            input.advance_to(next);
            input.flush();
            worker.step_while(|| probe.less_than(input.time()));
        }
        let next = input.time() + 1;
        input.advance_to(next);
        input.flush();
        worker.step_while(|| probe.less_than(input.time()));
        (started.elapsed().as_secs_f64(), output.get())
    });
    (n as f64 / secs, rows)
}


fn report(name: &str, h: &Histogram<u64>, json: &mut serde_json::Map<String, serde_json::Value>) {
    eprintln!(
        "{name}: n={} p50={}us p99={}us p99.9={}us max={}us",
        h.len(),
        h.value_at_quantile(0.5) / 1_000,
        h.value_at_quantile(0.99) / 1_000,
        h.value_at_quantile(0.999) / 1_000,
        h.max() / 1_000
    );
    for (q, label) in [(0.5, "p50"), (0.99, "p99"), (0.999, "p999")] {
        json.insert(format!("{name}_{label}_us"), serde_json::json!(h.value_at_quantile(q) as f64 / 1_000.0));
    }
    json.insert(format!("{name}_max_us"), serde_json::json!(h.max() as f64 / 1_000.0));
}

fn pg_connect(server: &Server) -> postgres::Client {
    let url = format!("host={} port={} user=bench dbname=sluice", server.pg.ip(), server.pg.port());
    postgres::Client::connect(&url, postgres::NoTls).expect("pgwire connect")
}

/// Point lookups by key over pgwire with a prepared statement, closed loop: nanoseconds.
fn lookup_latency(server: &Server, lookups: usize) -> Histogram<u64> {
    sql(server.http, "CREATE MATERIALIZED VIEW by_key AS SELECT k, count(*) AS n, sum(v) AS s FROM ev GROUP BY k");
    while sql(server.http, "SELECT count(*) FROM by_key").first().and_then(|r| r[0].as_u64()) != Some(KEYS) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut pg = pg_connect(server);
    let stmt = pg.prepare("SELECT n, s FROM by_key WHERE k = $1").expect("prepare");
    let mut h = Histogram::<u64>::new(3).expect("histogram");
    for i in 0..lookups + 1_000 {
        let k = (i as u64).wrapping_mul(2_654_435_761) % KEYS;
        let t = Instant::now();
        let rows = pg.query(&stmt, &[&(k as i64)]).expect("lookup");
        let ns = t.elapsed().as_nanos() as u64;
        assert_eq!(rows.len(), 1, "key {k} not found");
        // The first thousand warm the connection and the caches.
        if i >= 1_000 {
            h.record(ns).expect("record");
        }
    }
    h
}

/// The producer's batching interval in the latency run.
const PRODUCE_TICK_US: u64 = 100;

/// Event-to-view latency, open loop: events are produced at `rate` per second (each due at
/// t0 + i/rate) to an `interval`-durability topic; a reader polls the view's row over
/// pgwire and, when it sees event i's effect, records now - due(i). Nanoseconds.
fn view_latency(server: &Server, rate: u64, duration: Duration) -> Histogram<u64> {
    sql(
        server.http,
        "CREATE TOPIC lat (k BIGINT NOT NULL, seq BIGINT NOT NULL) WITH (partitions = 1, durability = 'interval:5');
         CREATE MATERIALIZED VIEW lat_v AS SELECT k, max(seq) AS seq FROM lat GROUP BY k",
    );
    let total = rate * duration.as_secs();
    let mut c = Client::connect(server.native).expect("native connect");
    let (config, _) = c.describe_topic("lat").expect("describe");
    let schema: Schema = config.schema().expect("typed topic").clone();
    let mut replies = c.try_clone().expect("clone");
    replies.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let producing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (sent_seen, producing_seen) = (sent.clone(), producing.clone());
    let (sent_at_tx, sent_at) = std::sync::mpsc::channel::<Instant>();
    let acks = std::thread::spawn(move || {
        use std::sync::atomic::Ordering::Acquire;
        let mut acked = 0u64;
        let mut h = Histogram::<u64>::new(3).expect("histogram");
        while producing_seen.load(Acquire) || acked < sent_seen.load(Acquire) {
            match replies.recv() {
                Ok(r) if r.header.error.is_none() => {
                    acked += 1;
                    if let Ok(at) = sent_at.recv() {
                        h.record(at.elapsed().as_nanos() as u64).expect("record");
                    }
                }
                Ok(r) => panic!("produce failed: {:?}", r.header.error),
                Err(_) => {}
            }
        }
        h
    });
    let t0 = Instant::now() + Duration::from_millis(100);
    let due = move |i: u64| t0 + Duration::from_nanos(i * 1_000_000_000 / rate);
    let producer = std::thread::spawn(move || {
        // SAFETY: prctl on this thread only; 1 us timer slack makes 100 us sleeps precise.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1_000u64, 0, 0, 0) };
        let mut next = 0u64;
        let mut sent_batches = 0u64;
        let mut tick = t0;
        while next < total {
            // A batch every PRODUCE_TICK_US, like a client's linger: ~10 events at 100k/s.
            // Sleep, not spin: the reader shares this core and must see changes promptly.
            if let Some(wait) = tick.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            tick += Duration::from_micros(PRODUCE_TICK_US);
            let now = Instant::now();
            let mut last = next;
            while last < total && due(last) <= now && last - next < 4_096 {
                last += 1;
            }
            if last == next {
                continue;
            }
            // Everything due by now goes in one batch: open loop, no coordinated omission.
            let records: Vec<Record<Vec<Value>>> = (next..last)
                .map(|i| Record {
                    timestamp_ms: 0,
                    key: None,
                    value: vec![Value::BigInt(0), Value::BigInt(i as i64)],
                    headers: Vec::new(),
                })
                .collect();
            let payload = BatchPayload::from_rows(&records, &schema).expect("rows");
            let corr = c.correlation();
            let _ = sent_at_tx.send(Instant::now());
            c.send(&sluice::server::native::protocol::encode::produce(corr, "lat", 0, payload.bytes())).expect("send");
            sent_batches += 1;
            sent.fetch_add(1, std::sync::atomic::Ordering::Release);
            next = last;
        }
        producing.store(false, std::sync::atomic::Ordering::Release);
        sent_batches
    });
    let mut pg = pg_connect(server);
    let stmt = pg.prepare("SELECT seq FROM lat_v WHERE k = 0").expect("prepare");
    let mut h = Histogram::<u64>::new(3).expect("histogram");
    let mut seen: i64 = -1;
    let deadline = Instant::now() + duration + Duration::from_secs(30);
    while seen + 1 < total as i64 && Instant::now() < deadline {
        let rows = pg.query(&stmt, &[]).expect("lookup");
        let Some(seq) = rows.first().map(|r| r.get::<_, i64>(0)) else { continue };
        let now = Instant::now();
        for i in (seen + 1)..=seq {
            // The first 10% warm up.
            if i as u64 >= total / 10 {
                h.record(now.saturating_duration_since(due(i as u64)).as_nanos() as u64).expect("record");
            }
        }
        seen = seen.max(seq);
    }
    let batches = producer.join().expect("producer");
    if let Ok(h) = acks.join() {
        report("produce_ack", &h, &mut serde_json::Map::new());
    }
    eprintln!("view latency: {total} events in {batches} batches at {rate}/s");
    h
}

/// The same tumbling count+sum in PyFlink (Flink SQL, streaming mode, event time,
/// parallelism 1, pinned to `cpu`) over the same events from a CSV file: events/s of the
/// job itself (Flink's own net run time: no JVM start, no planning).
fn flink_tumble(n: u64, cpu: usize) -> Result<f64, String> {
    let root = repo_root();
    let install = Command::new(root.join("tools/install-flink.sh")).stderr(Stdio::inherit()).output();
    let install = install.map_err(|e| format!("tools/install-flink.sh: {e}"))?;
    if !install.status.success() {
        return Err("tools/install-flink.sh failed".into());
    }
    let python = String::from_utf8_lossy(&install.stdout).trim().to_string();
    let csv = root.join(format!("target/peers/events-{n}.csv"));
    if !csv.exists() {
        use std::io::Write;
        let tmp = csv.with_extension("tmp");
        let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(|e| e.to_string())?);
        for i in 0..n {
            let (ts, k, v) = event(i);
            writeln!(w, "{ts},{k},{v}").map_err(|e| e.to_string())?;
        }
        w.flush().map_err(|e| e.to_string())?;
        drop(w);
        std::fs::rename(&tmp, &csv).map_err(|e| e.to_string())?;
    }
    let out = Command::new("taskset")
        .args(["-c", &cpu.to_string(), &python])
        .arg(root.join("bench/peers/flink_tumble.py"))
        .arg(&csv)
        .args(["--events", &n.to_string(), "--check"])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("running PyFlink: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().ok_or("PyFlink printed nothing")?;
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("PyFlink output {line:?}: {e}"))?;
    let expected_rows = (n / EVENTS_PER_MS).div_ceil(1_000) * KEYS;
    if v["rows"].as_u64() != Some(expected_rows) || v["count_sum"].as_u64() != Some(n) {
        return Err(format!("PyFlink result is wrong: {line} (expected {expected_rows} rows)"));
    }
    let net = v["net_s"].as_f64().ok_or("no net_s")?;
    eprintln!("flink tumble: {:>12.0} events/s per core (job {:.1}s, net {net:.1}s)", n as f64 / net, v["job_s"]);
    Ok(n as f64 / net)
}
