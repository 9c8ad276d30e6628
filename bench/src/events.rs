//! What the views and rebuild benchmarks share: the event stream (ts, k, v), a release
//! `sluice serve` pinned to a core, loading events, and event-to-view latency.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use sluice::record::schema::{Schema, Value};
use sluice::record::{BatchPayload, Record};
use sluice::server::native::client::Client;

use crate::sql;

pub const KEYS: u64 = 1_000;
pub const PARTITIONS: u32 = 4;
pub const T0: i64 = 1_767_225_600_000;
/// Events per millisecond of event time: 100,000 events/s of event time, so a 1 s window
/// holds ~100 events per key (a busy telemetry or market-data stream).
pub const EVENTS_PER_MS: u64 = 100;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repository root").to_path_buf()
}

pub fn sluice_bin() -> PathBuf {
    // SLUICE_BIN runs a given build instead (A/B runs of two builds side by side).
    if let Some(bin) = std::env::var_os("SLUICE_BIN") {
        return PathBuf::from(bin);
    }
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--quiet", "--release", "-p", "sluice", "--bin", "sluice"])
        .current_dir(repo_root())
        .status()
        .expect("cargo build");
    assert!(status.success(), "building sluice failed");
    repo_root().join("target/release/sluice")
}

pub fn pin_self(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        libc::prctl(libc::PR_SET_TIMERSLACK, 1_000u64, 0, 0, 0);
    }
}

pub struct Server {
    child: Child,
    pub http: SocketAddr,
    pub native: SocketAddr,
    pub pg: SocketAddr,
    /// Shared so that a restart serves the same directory (deleted with the last server).
    pub dir: Arc<tempfile::TempDir>,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Stops the server (SIGTERM: it finishes in-flight work, syncs and exits) and serves
    /// the same data directory again with one shard per CPU of `cpus`.
    pub fn restart_on(mut self, cpus: &[usize]) -> Server {
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
        serve(self.dir.clone(), cpus)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where benchmarks make their data directories: `$SLUICE_BENCH_DIR`, else target/.
pub fn scratch_parent() -> PathBuf {
    std::env::var_os("SLUICE_BENCH_DIR").map_or_else(|| repo_root().join("target"), PathBuf::from)
}

/// A release `sluice serve` with one shard on `cpu`, checkpoints off (the runs measure
/// the operators and the reads), in a fresh directory under `$SLUICE_BENCH_DIR` (default:
/// target/), so a run can be pointed at another disk, or at tmpfs to take the disk out.
pub fn start(cpu: usize) -> Server {
    let dir = tempfile::tempdir_in(scratch_parent()).expect("tempdir");
    std::fs::write(dir.path().join("sluice.toml"), "checkpoint_interval_ms = 0\n").expect("config");
    serve(Arc::new(dir), &[cpu])
}

/// `sluice serve` over `dir` with one shard per CPU of `cpus`, each pinned to its CPU.
fn serve(dir: Arc<tempfile::TempDir>, cpus: &[usize]) -> Server {
    let cpu_list: Vec<String> = cpus.iter().map(usize::to_string).collect();
    let mut child = Command::new("taskset")
        .args(["-c", &cpu_list.join(",")])
        .arg(sluice_bin())
        .args(["serve", "--shards", &cpus.len().to_string(), "--native-addr", "127.0.0.1:0"])
        .args(["--kafka-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--pg-addr", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(dir.path().join("sluice.toml"))
        .stdout(Stdio::piped())
        // SLUICE_BENCH_SERVER_LOG=1 shows the server's warnings (stalls, errors) inline.
        .stderr(if std::env::var_os("SLUICE_BENCH_SERVER_LOG").is_some() { Stdio::inherit() } else { Stdio::null() })
        .spawn()
        .expect("start sluice");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("ready line");
    let field = |name: &str| -> SocketAddr {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(&format!("{name}=")).and_then(|a| a.parse().ok()))
            .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
    };
    Server { http: field("http"), native: field("native"), pg: field("pg"), child, dir }
}

pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The i-th event: (event time, key, value).
pub fn event(i: u64) -> (i64, i64, i64) {
    (T0 + (i / EVENTS_PER_MS) as i64, (i.wrapping_mul(7_919) % KEYS) as i64, (i % 100) as i64)
}

/// Writes `n` events to `topic` (typed rows, batches of 4,096, pipelined). Bytes written.
pub fn load(native: SocketAddr, topic: &str, n: u64) -> u64 {
    let mut c = Client::connect(native).expect("native connect");
    let (config, _) = c.describe_topic(topic).expect("describe");
    let schema: Schema = config.schema().expect("typed topic").clone();
    // (ts, k, v) with k a BIGINT, or its text "sym<k>" where the topic's k is TEXT.
    let text_key = schema.columns.get(1).is_some_and(|c| c.ty == sluice::record::schema::ColumnType::Text);
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
                    let k = if text_key { Value::Text(format!("sym{k}")) } else { Value::BigInt(k) };
                    Record {
                        timestamp_ms: ts,
                        key: None,
                        value: vec![Value::Timestamp(ts), k, Value::BigInt(v)],
                        headers: Vec::new(),
                    }
                })
                .collect();
            let payload = BatchPayload::rows_to_send(&records, &schema).expect("rows");
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
pub fn view_events(http: SocketAddr, view: &str) -> u64 {
    sql(http, "SHOW MATERIALIZED VIEWS")
        .iter()
        .find(|r| r[0] == serde_json::json!(view))
        .and_then(|r| r[4].as_u64())
        .unwrap_or(0)
}

/// Creates a view over the loaded events and times it through all `n`: events/s.
pub fn report(name: &str, h: &Histogram<u64>, json: &mut serde_json::Map<String, serde_json::Value>) {
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

pub fn pg_connect(server: &Server) -> postgres::Client {
    let url = format!("host={} port={} user=bench dbname=sluice", server.pg.ip(), server.pg.port());
    postgres::Client::connect(&url, postgres::NoTls).expect("pgwire connect")
}

/// The producer's batching interval in the latency run.
const PRODUCE_TICK_US: u64 = 100;

/// Event-to-view latencies, nanoseconds.
pub struct ViewLatency {
    /// From the produce: the scheduled send of the batch holding the event (a send that
    /// runs late counts from its schedule, so a slow client cannot hide latency).
    pub from_send: Histogram<u64>,
    /// From the event's own due time: adds the client's batching linger (up to one tick).
    pub from_due: Histogram<u64>,
}

/// Event-to-view latency, open loop: events are due at t0 + i/rate; every
/// PRODUCE_TICK_US the client sends the events due by that tick as one batch to an
/// `interval`-durability topic; a reader polls the view's row over pgwire and, when it
/// sees event i's effect, records now - (send schedule of i) and now - due(i).
/// `tag` names the topic and view it makes (`lat_<tag>`, `lat_<tag>_v`).
pub fn view_latency(server: &Server, tag: &str, rate: u64, duration: Duration) -> ViewLatency {
    let topic = format!("lat_{tag}");
    sql(
        server.http,
        &format!(
            "CREATE TOPIC {topic} (k BIGINT NOT NULL, seq BIGINT NOT NULL) WITH (partitions = 1, durability = 'interval:5');
             CREATE MATERIALIZED VIEW {topic}_v AS SELECT k, max(seq) AS seq FROM {topic} GROUP BY k"
        ),
    );
    let total = rate * duration.as_secs();
    let mut c = Client::connect(server.native).expect("native connect");
    let (config, _) = c.describe_topic(&topic).expect("describe");
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
    // Event i goes out with the first tick at or after its due time.
    let tick_ns = PRODUCE_TICK_US * 1_000;
    let scheduled_send =
        move |i: u64| t0 + Duration::from_nanos((i * 1_000_000_000 / rate).div_ceil(tick_ns) * tick_ns);
    let produce_topic = topic.clone();
    let producer = std::thread::spawn(move || {
        // SAFETY: prctl on this thread only; 1 us timer slack makes 100 us sleeps precise.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1_000u64, 0, 0, 0) };
        let mut next = 0u64;
        let mut sent_batches = 0u64;
        let mut lag = Histogram::<u64>::new(3).expect("histogram");
        let mut tick = t0;
        while next < total {
            // A batch every PRODUCE_TICK_US, like a client's linger: ~10 events at 100k/s.
            // Sleep, not spin: the reader shares this core and must see changes promptly.
            if let Some(wait) = tick.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let this_tick = tick;
            tick += Duration::from_micros(PRODUCE_TICK_US);
            let mut last = next;
            while last < total && due(last) <= this_tick && last - next < 4_096 {
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
            let payload = BatchPayload::rows_to_send(&records, &schema).expect("rows");
            let corr = c.correlation();
            let sent_now = Instant::now();
            lag.record(sent_now.saturating_duration_since(scheduled_send(next)).as_nanos() as u64).expect("record");
            let _ = sent_at_tx.send(sent_now);
            c.send(&sluice::server::native::protocol::encode::produce(corr, &produce_topic, 0, payload.bytes()))
                .expect("send");
            sent_batches += 1;
            sent.fetch_add(1, std::sync::atomic::Ordering::Release);
            next = last;
        }
        producing.store(false, std::sync::atomic::Ordering::Release);
        report("produce_send_lag", &lag, &mut serde_json::Map::new());
        sent_batches
    });
    let mut pg = pg_connect(server);
    let stmt = pg.prepare(&format!("SELECT seq FROM {topic}_v WHERE k = 0")).expect("prepare");
    let mut from_send = Histogram::<u64>::new(3).expect("histogram");
    let mut from_due = Histogram::<u64>::new(3).expect("histogram");
    let mut seen: i64 = -1;
    let deadline = Instant::now() + duration + Duration::from_secs(30);
    while seen + 1 < total as i64 && Instant::now() < deadline {
        let rows = pg.query(&stmt, &[]).expect("lookup");
        let Some(seq) = rows.first().map(|r| r.get::<_, i64>(0)) else { continue };
        let now = Instant::now();
        for i in (seen + 1)..=seq {
            // The first 10% warm up.
            if i as u64 >= total / 10 {
                let i = i as u64;
                from_send.record(now.saturating_duration_since(scheduled_send(i)).as_nanos() as u64).expect("record");
                from_due.record(now.saturating_duration_since(due(i)).as_nanos() as u64).expect("record");
            }
        }
        seen = seen.max(seq);
    }
    let batches = producer.join().expect("producer");
    if let Ok(h) = acks.join() {
        report("produce_ack", &h, &mut serde_json::Map::new());
    }
    eprintln!("view latency: {total} events in {batches} batches at {rate}/s");
    ViewLatency { from_send, from_due }
}
