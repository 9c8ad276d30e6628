//! `sluice demo`: the whole loop on embedded defaults, nothing to prepare.
//!
//! Starts a server on a temporary data directory and free ports, creates a topic,
//! streams generated trades into it from several producers (acknowledged only once
//! fdatasync'd), reads everything back and checks it, seeks by time, restarts the server
//! and checks again that every acknowledged record survived. Then the Kappa loop (see
//! `demo_views`): typed ticks, materialized views served over SQL, and a rebuild from
//! history while live ticks keep coming.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Instant;

use sluice::log::StartPosition;
use sluice::record::{BatchBuilder, RawRecord};
use sluice::runtime::ShutdownSignal;
use sluice::server::native::client::Client;
use sluice::server::native::protocol::CreateTopic;
use sluice::server::{run as run_server, ServerConfig};

use super::CliResult;

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Records to stream.
    #[arg(long, default_value_t = 400_000)]
    records: u64,
    /// Partitions of the demo topic (one producer each).
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Keep the data directory afterwards.
    #[arg(long)]
    keep: bool,
    /// Ticks of history the views bootstrap from (and a rebuild reads again).
    #[arg(long, default_value_t = 4_000_000)]
    ticks: u64,
    /// After the tour, keep serving (for psql, kcat, curl) until Ctrl-C.
    #[arg(long)]
    hold: bool,
}

const TOPIC: &str = "trades";
const SYMBOLS: [&str; 8] = ["AAPL", "MSFT", "NVDA", "AMZN", "GOOG", "META", "TSLA", "NFLX"];

pub(super) struct Running {
    pub addr: SocketAddr,
    pub ready: sluice::server::ReadyInfo,
    shutdown: ShutdownSignal,
    thread: JoinHandle<Result<(), String>>,
}

pub(super) fn start(dir: &Path) -> Result<Running, String> {
    let config = ServerConfig {
        data_dir: dir.to_path_buf(),
        native_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        kafka_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        http_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        pg_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        ..ServerConfig::default()
    };
    let shutdown = ShutdownSignal::new();
    let (tx, rx) = mpsc::channel();
    let s = shutdown.clone();
    let thread = std::thread::spawn(move || {
        run_server(config, s, |ready| {
            let _ = tx.send(ready);
        })
        .map_err(|e| e.to_string())
    });
    match rx.recv() {
        Ok(ready) => Ok(Running { addr: ready.native, ready, shutdown, thread }),
        Err(_) => Err(thread.join().map_err(|_| "server panicked".to_string())?.err().unwrap_or_default()),
    }
}

pub(super) fn stop(r: Running) -> Result<(), String> {
    r.shutdown.request();
    r.thread.join().map_err(|_| "server panicked".to_string())?
}

fn trade(i: u64) -> String {
    format!(
        r#"{{"id":{i},"symbol":"{}","price":{:.2},"qty":{}}}"#,
        SYMBOLS[(i % 8) as usize],
        100.0 + (i % 977) as f64 / 10.0,
        1 + i % 500
    )
}

pub fn run(args: DemoArgs) -> CliResult {
    let dir: PathBuf = std::env::temp_dir().join(format!("sluice-demo-{}", std::process::id()));
    println!("sluice demo: data directory {}", dir.display());
    let result = demo(&dir, &args);
    if !args.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result.map(|_| ExitCode::SUCCESS)
}

fn demo(dir: &Path, args: &DemoArgs) -> Result<(), String> {
    let err = |e: sluice::server::native::client::ClientError| e.to_string();
    let server = start(dir)?;
    println!("server ready: native={} (shards={})", server.addr, sluice::runtime::default_shard_count());
    let mut admin = Client::connect(server.addr).map_err(err)?;
    let spec = CreateTopic { segment_bytes: Some(64 << 20), ..CreateTopic::new(TOPIC, args.partitions) };
    admin.create_topic(&spec).map_err(err)?;
    println!("created topic '{TOPIC}': {} partitions, durability=sync (acknowledged = fdatasync'd)", args.partitions);

    // Produce: one producer thread per partition, batches of 500 trades.
    let per_partition = args.records / args.partitions as u64;
    let started = Instant::now();
    let t0 = sluice::clock::now_ms();
    let producers: Vec<_> = (0..args.partitions)
        .map(|p| {
            let addr = server.addr;
            std::thread::spawn(move || -> Result<(u64, Vec<u64>), String> {
                let mut c = Client::connect(addr).map_err(|e| e.to_string())?;
                let mut lat = Vec::new();
                let mut bytes = 0u64;
                let mut i = 0u64;
                while i < per_partition {
                    let mut b = BatchBuilder::new();
                    for k in i..(i + 500).min(per_partition) {
                        let id = k * 1000 + p as u64;
                        let v = trade(id);
                        bytes += v.len() as u64;
                        let sym = SYMBOLS[(id % 8) as usize];
                        b.push(RawRecord::new(t0 + k as i64, Some(sym.as_bytes()), v.as_bytes()));
                    }
                    i = (i + 500).min(per_partition);
                    let payload = b.finish().map_err(|e| e.to_string())?;
                    let sent = Instant::now();
                    c.produce(TOPIC, p, &payload).map_err(|e| e.to_string())?;
                    lat.push(sent.elapsed().as_micros() as u64);
                }
                Ok((bytes, lat))
            })
        })
        .collect();
    let mut lat = Vec::new();
    let mut bytes = 0;
    for p in producers {
        let (b, l) = p.join().map_err(|_| "producer panicked".to_string())??;
        bytes += b;
        lat.extend(l);
    }
    let secs = started.elapsed().as_secs_f64();
    let total = per_partition * args.partitions as u64;
    lat.sort_unstable();
    let pct =
        |q: f64| lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1))).copied().unwrap_or(0);
    println!(
        "produced {total} trades ({:.1} MB) in {secs:.2}s: {:.0} records/s, {:.1} MB/s; ack latency per 500-record batch p50={}us p99={}us",
        bytes as f64 / 1e6,
        total as f64 / secs,
        bytes as f64 / 1e6 / secs,
        pct(0.5),
        pct(0.99)
    );

    let check = |addr: SocketAddr, label: &str| -> Result<(), String> {
        let started = Instant::now();
        let mut c = Client::connect(addr).map_err(|e| e.to_string())?;
        let mut n = 0u64;
        for p in 0..args.partitions {
            let mut from = StartPosition::Earliest;
            let mut k = 0u64;
            loop {
                let f = c.fetch(TOPIC, p, from, 4 << 20, 0).map_err(|e| e.to_string())?;
                for (_, rec) in f.records() {
                    let want = trade(k * 1000 + p as u64);
                    if rec.value.as_slice() != want.as_bytes() {
                        return Err(format!("partition {p} record {k}: read back something else"));
                    }
                    k += 1;
                }
                from = StartPosition::Offset(f.next_offset().0);
                if f.next_offset() >= f.visible_end {
                    break;
                }
            }
            n += k;
        }
        if n != total {
            return Err(format!("{label}: read {n} records, expected {total}"));
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{label}: read back all {n} records, every one checked, in {secs:.2}s ({:.0} records/s)",
            n as f64 / secs
        );
        Ok(())
    };
    check(server.addr, "consumed")?;

    let middle = t0 + (per_partition / 2) as i64;
    let (offset, _, _) = admin.list_offsets(TOPIC, 0, StartPosition::Time(middle)).map_err(err)?;
    println!("seek by time: first record at or after t0+{}ms in partition 0 is offset {offset}", middle - t0);

    drop(admin);
    stop(server)?;
    println!("server stopped (SIGTERM path: drain, sync, close); restarting on the same directory...");
    let server = start(dir)?;
    check(server.addr, "after restart")?;
    let mut admin = Client::connect(server.addr).map_err(err)?;
    let (_, parts) = admin.describe_topic(TOPIC).map_err(err)?;
    for p in parts {
        println!(
            "  partition {}: offsets {}..{}, {} segment(s), {} bytes on disk",
            p.partition, p.log_start, p.written_end, p.segments, p.bytes
        );
    }
    drop(admin);
    println!();
    super::demo_views::views(&server, args.ticks, args.hold)?;
    println!();
    stop(server)?;
    println!("done. Run a server yourself with `sluice serve` (127.0.0.1:9700, ./sluice-data), then e.g.:");
    println!("  sluice topic create orders --partitions 4 --durability sync");
    println!("  seq 1 10 | sluice produce orders && sluice consume orders --from earliest");
    Ok(())
}
