//! The log benchmark: Sluice's log against the raw disk, in one run, on one disk.
//!
//! `cargo run --release -p bench --bin log [-- --quick] [--dir DIR]`
//!
//! Measures, and prints as a final JSON line:
//! - the raw disk (io_uring, O_DIRECT): sequential write and read at Sluice's block size
//!   and queue depth (1 MiB, 4: the read-ahead chunk and depth), and 4 KiB
//!   write+fdatasync latency;
//! - append throughput through the log (in process) for 100 B and 1 KiB records in
//!   64 KiB batches under `none`, `interval:5` and `sync`, with 64 appends in flight;
//! - a full sequential read of the log (read-ahead, CRC-checked, records touched) against
//!   a raw read of the same segment files;
//! - produce-ack latency over the native protocol under `sync` at fixed offered rates,
//!   open loop (each request's latency counts from when it was due, not when it was sent);
//! - peak RSS of a process reading a log 10x and 40x its read-ahead budget.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bench::raw_disk::{self, RawDiskConfig};
use bench::{describe, latency_histogram, peak_rss_mb, percentiles_json, segment_files};
use clap::Parser;
use sluice::io::Storage;
use sluice::limits::{READ_AHEAD_BUDGET_BYTES, READ_AHEAD_CHUNK_BYTES, READ_AHEAD_DEPTH};
use sluice::log::{Durability, Offset, Partition, PartitionReader, TopicConfig};
use sluice::record::{BatchBuilder, BatchPayload, RawRecord};

#[derive(Parser)]
struct Args {
    /// A run under a minute, with less data.
    #[arg(long)]
    quick: bool,
    /// Where to put the data (default: target/bench-data, on the repository's disk).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Run only the produce-ack latency part (for quick iteration).
    #[arg(long)]
    only_ack: bool,
    /// Internal: read the log in DIR and print the peak RSS (run as a child process).
    #[arg(long, hide = true)]
    child_replay: Option<PathBuf>,
}

const BATCH_BYTES: usize = 64 << 10;
const INFLIGHT: usize = 64;

fn main() {
    let args = Args::parse();
    if let Some(dir) = args.child_replay {
        child_replay(&dir);
        return;
    }
    let root = args.dir.clone().unwrap_or_else(|| PathBuf::from("target/bench-data"));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("bench dir");
    let root = root.canonicalize().expect("bench dir path");
    let quick = args.quick;
    let mut json = serde_json::Map::new();

    if args.only_ack {
        let lat = raw_disk::write_fdatasync_latency_us(&root.join("raw-sync.dat"), 1000).expect("raw sync");
        println!("raw 4 KiB write+fdatasync: {}", describe(&lat));
        for rate in [500u64, 2000] {
            ack_with_floor(&root, rate, 4);
        }
        return;
    }
    // 1. The raw disk.
    let raw_cfg = RawDiskConfig { block_bytes: READ_AHEAD_CHUNK_BYTES, queue_depth: READ_AHEAD_DEPTH };
    let raw_bytes: u64 = if quick { 256 << 20 } else { 1 << 30 };
    let w = raw_disk::sequential_write(&root.join("raw.dat"), raw_bytes, &raw_cfg).expect("raw write");
    let r = raw_disk::sequential_read(&[root.join("raw.dat")], &raw_cfg).expect("raw read");
    let _ = std::fs::remove_file(root.join("raw.dat"));
    let lat = raw_disk::write_fdatasync_latency_us(&root.join("raw-sync.dat"), if quick { 300 } else { 2000 })
        .expect("raw sync");
    let _ = std::fs::remove_file(root.join("raw-sync.dat"));
    println!(
        "raw disk: write {:.0} MB/s, read {:.0} MB/s (block {} KiB, qd {})",
        w.mb_per_s(),
        r.mb_per_s(),
        raw_cfg.block_bytes >> 10,
        raw_cfg.queue_depth
    );
    println!("raw 4 KiB write+fdatasync: {}", describe(&lat));
    json.insert("raw_write_mbps".into(), round(w.mb_per_s()).into());
    json.insert("raw_read_mbps".into(), round(r.mb_per_s()).into());
    json.insert("raw_fdatasync_p99_us".into(), lat.value_at_quantile(0.99).into());
    json.insert("raw_fdatasync".into(), percentiles_json(&lat));

    // 2. Appends through the log, and 3. the full read of what they wrote.
    let append_bytes: u64 = if quick { 192 << 20 } else { 1 << 30 };
    let mut replay_dir = None;
    for (label, durability) in
        [("none", Durability::None), ("interval", Durability::Interval { ms: 5 }), ("sync", Durability::Sync)]
    {
        for value_len in [100usize, 1024] {
            let dir = root.join(format!("append-{label}-{value_len}"));
            let res = append_run(&dir, durability, value_len, append_bytes);
            let size = if value_len == 100 { "100b" } else { "1k" };
            println!(
                "append {label:<8} {value_len:>4} B records: {:.0} MB/s of log, {:.0} records/s ({:.2}x the first raw write)",
                res.mbps,
                res.records_per_s,
                res.mbps / w.mb_per_s()
            );
            json.insert(format!("append_{label}_{size}_mbps"), round(res.mbps).into());
            json.insert(format!("append_{label}_{size}_records_per_s"), round(res.records_per_s).into());
            if label == "sync" && value_len == 1024 {
                replay_dir = Some(dir);
            } else {
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }
    // The disk is shared and noisy: the ratio that counts alternates raw writes and sync
    // 1 KiB appends of the same volume, three rounds, and compares the totals.
    let round_bytes = append_bytes / 2;
    let (mut raw_secs, mut sync_secs, mut sync_bytes) = (0.0, 0.0, 0.0);
    for round in 0..3 {
        let raw = raw_disk::sequential_write(&root.join("raw-round.dat"), round_bytes, &raw_cfg).expect("raw write");
        let _ = std::fs::remove_file(root.join("raw-round.dat"));
        raw_secs += raw.seconds;
        let dir = root.join(format!("sync-round-{round}"));
        let res = append_run(&dir, Durability::Sync, 1024, round_bytes);
        let _ = std::fs::remove_dir_all(&dir);
        sync_bytes += res.mbps * res.seconds;
        sync_secs += res.seconds;
        println!("  round {round}: raw write {:.0} MB/s, sync append {:.0} MB/s", raw.mb_per_s(), res.mbps);
    }
    let raw_mbps = (3 * round_bytes) as f64 / 1e6 / raw_secs;
    let sync_mbps = sync_bytes / sync_secs;
    println!(
        "sync 1 KiB appends vs raw writes, alternated: {sync_mbps:.0} / {raw_mbps:.0} MB/s = {:.2}",
        sync_mbps / raw_mbps
    );
    json.insert("raw_write_alternated_mbps".into(), round(raw_mbps).into());
    json.insert("append_sync_alternated_mbps".into(), round(sync_mbps).into());
    json.insert("append_sync_vs_raw_write".into(), round2(sync_mbps / raw_mbps).into());
    let replay_dir = replay_dir.expect("sync 1k log");
    let (log_bytes, files) = segment_files(&replay_dir);
    // Alternate raw and Sluice reads of the same files (the host's cache favours whoever
    // reads second), and compare the sums.
    let (mut raw_secs, mut replay_secs, mut replay_records) = (0.0, 0.0, 0u64);
    for _ in 0..2 {
        raw_secs += raw_disk::sequential_read(&files, &raw_cfg).expect("raw read of the segments").seconds;
        let (secs, records) = replay_run(&replay_dir);
        replay_secs += secs;
        replay_records = records;
    }
    let raw_same = raw_disk::Throughput { bytes: 2 * log_bytes, seconds: raw_secs };
    let replay = (replay_secs / 2.0, replay_records);
    let replay_mbps = log_bytes as f64 / 1e6 / replay.0;
    println!(
        "replay: {:.0} MB/s, {:.0} records/s over {:.0} MB; raw read of the same files {:.0} MB/s ({:.2}x)",
        replay_mbps,
        replay.1 as f64 / replay.0,
        log_bytes as f64 / 1e6,
        raw_same.mb_per_s(),
        replay_mbps / raw_same.mb_per_s()
    );
    json.insert("replay_mbps".into(), round(replay_mbps).into());
    json.insert("replay_raw_same_files_mbps".into(), round(raw_same.mb_per_s()).into());
    json.insert("replay_vs_raw_read".into(), round2(replay_mbps / raw_same.mb_per_s()).into());
    let _ = std::fs::remove_dir_all(&replay_dir);

    // 4. Produce-ack latency over the native protocol, open loop.
    let rates: &[u64] = if quick { &[500, 2000] } else { &[500, 2000, 5000] };
    let seconds = if quick { 4 } else { 15 };
    let mut ack = serde_json::Map::new();
    let mut headline = None;
    let mut raw_ack = serde_json::Map::new();
    let mut raw_headline = None;
    for &rate in rates {
        let (raw, h) = ack_with_floor(&root, rate, seconds);
        if headline.is_none() {
            headline = Some(h.value_at_quantile(0.99));
            raw_headline = Some(raw.value_at_quantile(0.99));
        }
        ack.insert(format!("{rate}_per_s"), percentiles_json(&h));
        raw_ack.insert(format!("{rate}_per_s"), percentiles_json(&raw));
    }
    json.insert("ack_p99_us".into(), headline.unwrap_or(0).into());
    json.insert("ack_latency".into(), ack.into());
    json.insert("raw_ack_open_loop_p99_us".into(), raw_headline.unwrap_or(0).into());
    json.insert("raw_ack_open_loop_latency".into(), raw_ack.into());

    // 5. Peak RSS of a replay, at 10x and 40x the read-ahead budget.
    for (factor, key) in [(10u64, "replay_rss_mb"), (40, "replay_rss_mb_40x")] {
        let dir = root.join(format!("rss-{factor}"));
        append_run(&dir, Durability::None, 1024, factor * READ_AHEAD_BUDGET_BYTES as u64);
        let rss = child_rss(&dir);
        println!(
            "peak RSS reading a log of {}x the read-ahead budget ({} MiB): {rss:.1} MiB",
            factor,
            factor * (READ_AHEAD_BUDGET_BYTES as u64 >> 20)
        );
        json.insert(key.into(), round2(rss).into());
        let _ = std::fs::remove_dir_all(&dir);
    }
    json.insert("read_ahead_budget_mb".into(), ((READ_AHEAD_BUDGET_BYTES >> 20) as u64).into());
    json.insert("quick".into(), quick.into());
    let _ = std::fs::remove_dir_all(&root);
    println!("{}", serde_json::Value::Object(json));
}

fn round(v: f64) -> f64 {
    v.round()
}
fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

struct AppendResult {
    mbps: f64,
    records_per_s: f64,
    seconds: f64,
}

fn topic(durability: Durability) -> Rc<TopicConfig> {
    let mut c = TopicConfig::new("bench", 1);
    c.topic_id = 1;
    c.durability = durability;
    Rc::new(c)
}

/// Payloads of about `BATCH_BYTES` of records of `value_len` bytes.
fn payloads(value_len: usize, count: usize) -> Vec<BatchPayload> {
    let per_batch = (BATCH_BYTES / (value_len + 40)).max(1);
    let value = vec![b'x'; value_len];
    (0..count)
        .map(|b| {
            let mut bb = BatchBuilder::new();
            for i in 0..per_batch {
                bb.push(RawRecord::new((b * per_batch + i) as i64, None, &value));
            }
            bb.finish().expect("payload")
        })
        .collect()
}

fn on_shard<T: Send + 'static, F: std::future::Future<Output = T> + 'static>(
    f: impl FnOnce() -> F + Send + 'static,
) -> T {
    // Pinned like a server shard; BENCH_UNPINNED=1 leaves it to the scheduler (diagnostic).
    let placement = if std::env::var_os("BENCH_UNPINNED").is_some() {
        glommio::Placement::Unbound
    } else {
        glommio::Placement::Fixed(0)
    };
    glommio::LocalExecutorBuilder::new(placement)
        .io_memory(4 << 20)
        .spawn(f)
        .expect("executor")
        .join()
        .expect("executor run")
}

/// Appends about `total_bytes` of log with INFLIGHT appends in flight; returns the rate.
fn append_run(dir: &Path, durability: Durability, value_len: usize, total_bytes: u64) -> AppendResult {
    let dir = dir.to_path_buf();
    let batches = (total_bytes as usize / BATCH_BYTES).max(INFLIGHT);
    // Payloads are built before the clock starts (and reused round-robin): the log is measured.
    let distinct = INFLIGHT * 2;
    on_shard(move || async move {
        let pool = Rc::new(payloads(value_len, distinct));
        let p = Partition::open(&Storage::real(), &dir, topic(durability), 0).await.expect("open");
        let started = Instant::now();
        let next = Rc::new(std::cell::Cell::new(0usize));
        let workers: Vec<_> = (0..INFLIGHT)
            .map(|_| {
                let (p, next, pool) = (p.clone(), next.clone(), pool.clone());
                glommio::spawn_local(async move {
                    loop {
                        let i = next.get();
                        if i >= batches {
                            return;
                        }
                        next.set(i + 1);
                        // A clone shares the bytes: the log's copy into its write buffer is the
                        // only copy, as for a payload arriving from the network.
                        p.append(pool[i % pool.len()].clone()).await.expect("append");
                    }
                })
            })
            .collect();
        for w in workers {
            w.await;
        }
        p.close().await.expect("close");
        let secs = started.elapsed().as_secs_f64();
        let status = p.status();
        AppendResult {
            mbps: status.bytes as f64 / 1e6 / secs,
            records_per_s: status.written_end.0 as f64 / secs,
            seconds: secs,
        }
    })
}

/// Reads the whole log; returns (seconds, records).
fn replay_run(dir: &Path) -> (f64, u64) {
    let dir = dir.to_path_buf();
    on_shard(move || async move {
        let p = Partition::open(&Storage::real(), &dir, topic(Durability::None), 0).await.expect("open");
        let started = Instant::now();
        let mut r = PartitionReader::new(p.clone(), Offset(0));
        let mut records = 0u64;
        let mut touched = 0u64;
        while let Some(b) = r.next_batch().await.expect("read") {
            let recs = b.records();
            records += recs.len() as u64;
            touched += recs.iter().map(|r| r.value.len() as u64).sum::<u64>();
        }
        let secs = started.elapsed().as_secs_f64();
        assert!(touched > 0);
        p.close().await.expect("close");
        (secs, records)
    })
}

fn child_replay(dir: &Path) {
    let (_, records) = replay_run(dir);
    println!("{records} {}", peak_rss_mb());
}

fn child_rss(dir: &Path) -> f64 {
    let exe = std::env::current_exe().expect("bench exe");
    let out = std::process::Command::new(exe).arg("--child-replay").arg(dir).output().expect("child replay");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
}

/// Open-loop produce-ack latency: a real server (in this process, its own shard thread),
/// one connection, requests due every 1/rate s; latency counts from when each was due.
fn ack_latency(dir: &Path, rate: u64, seconds: u64) -> hdrhistogram::Histogram<u64> {
    use sluice::runtime::ShutdownSignal;
    use sluice::server::native::client::Client;
    use sluice::server::native::protocol::{encode, CreateTopic};
    let config = sluice::server::ServerConfig {
        data_dir: dir.to_path_buf(),
        native_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        kafka_addr: None,
        http_addr: None,
        shards: 1,
        pin: true,
        ..Default::default()
    };
    let shutdown = ShutdownSignal::new();
    let (tx, rx) = mpsc::channel();
    let s = shutdown.clone();
    let server = std::thread::spawn(move || sluice::server::run(config, s, |r| tx.send(r.native).expect("ready")));
    let addr = rx.recv().expect("server ready");
    let mut admin = Client::connect(addr).expect("connect");
    admin.create_topic(&CreateTopic::new("ack", 1)).expect("create");
    let payload = {
        let mut b = BatchBuilder::new();
        b.push(RawRecord::new(0, None, &[b'y'; 100]));
        b.finish().expect("payload")
    };
    // Diagnostic: closed-loop round trips with no disk work (ApiVersions), and with a sync
    // produce, one at a time, on the same server.
    let mut rtt = latency_histogram();
    let mut closed = latency_histogram();
    for i in 0..1000 {
        let t = Instant::now();
        admin.api_versions().expect("api versions");
        rtt.saturating_record(t.elapsed().as_micros() as u64);
        if i < 300 {
            let t = Instant::now();
            admin.produce("ack", 0, &payload).expect("produce");
            closed.saturating_record(t.elapsed().as_micros() as u64);
        }
    }
    println!("  native round trip without disk work (closed loop): {}", describe(&rtt));
    println!("  sync produce, one at a time (closed loop): {}", describe(&closed));
    let mut sender = Client::connect(addr).expect("connect");
    let stream_clone = sender_stream(&mut sender);
    let total = rate * seconds;
    let interval = Duration::from_nanos(1_000_000_000 / rate);
    let start = Instant::now() + Duration::from_millis(50);
    let receiver = std::thread::spawn(move || {
        let mut h = latency_histogram();
        let mut r = stream_clone;
        for _ in 0..total {
            let reply = r.recv().expect("reply");
            assert!(reply.header.error.is_none());
            let due = start + interval * (reply.header.correlation_id - 1);
            h.saturating_record(Instant::now().saturating_duration_since(due).as_micros() as u64);
        }
        h
    });
    for i in 0..total {
        bench::wait_until(start + interval * i as u32);
        sender.send(&encode::produce((i + 1) as u32, "ack", 0, payload.bytes())).expect("send");
    }
    let h = receiver.join().expect("receiver");
    shutdown.request();
    let _ = server.join();
    h
}

/// The machine's open-loop floor (a bare thread doing the same commit), then Sluice's
/// produce-ack latency at the same rate; both printed: (floor, Sluice).
fn ack_with_floor(
    root: &Path,
    rate: u64,
    seconds: u64,
) -> (hdrhistogram::Histogram<u64>, hdrhistogram::Histogram<u64>) {
    let raw = raw_disk::open_loop_ack_latency_us(&root.join(format!("raw-ack-{rate}.dat")), rate, seconds)
        .expect("raw open-loop ack");
    println!("raw open-loop ack latency (4 KiB write+fdatasync per request, {rate} req/s): {}", describe(&raw));
    let h = ack_latency(&root.join(format!("ack-{rate}")), rate, seconds);
    println!("produce-ack latency (sync, 1 record of 100 B, {rate} req/s open loop): {}", describe(&h));
    (raw, h)
}

/// A second client on the same socket, for reading replies while the first sends.
fn sender_stream(c: &mut sluice::server::native::client::Client) -> sluice::server::native::client::Client {
    c.try_clone().expect("clone connection")
}
