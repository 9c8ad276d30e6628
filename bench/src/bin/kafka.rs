//! The Kafka benchmark: librdkafka (the `rdkafka` crate, librdkafka 2.12) against Sluice
//! and against Tansu, a Kafka-compatible broker in Rust (memory storage), in one run on
//! one machine; and Sluice's native protocol against its Kafka protocol on the same records.
//!
//! `cargo run --release -p bench --bin kafka [-- --quick]`
//!
//! Every broker is a separate process on loopback, fed by the same client code:
//! - produce throughput: N records of 100 B (and 1 KiB in a full run) over 4 partitions,
//!   acks=all, linger 5 ms, no compression: records/s and MB/s from the first send to the
//!   last delivery report;
//! - consume throughput: the same records read back from offset 0;
//! - produce latency: open loop at a fixed rate (linger 0): each record's latency counts
//!   from when it was due to be sent to its delivery report (hdrhistogram percentiles);
//! - native vs Kafka: the same records through Sluice's native protocol (batches of the
//!   size librdkafka sends, pipelined) against the Kafka path.
//!
//! Brokers alternate round by round, so drift of this shared machine hits both alike.
//! The last line of output is JSON (`kafka_produce_vs_tansu`, `kafka_vs_native_produce`, ...).

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bench::events::{repo_root, sluice_bin};
use bench::{describe, latency_histogram, percentiles_json};
use clap::Parser;
use hdrhistogram::Histogram;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

#[derive(Parser)]
struct Args {
    /// A run under a minute.
    #[arg(long)]
    quick: bool,
    /// Shards of the Sluice server (default: 1, on the broker's core).
    #[arg(long, default_value_t = 1)]
    shards: usize,
    /// The CPU the broker runs on (Sluice pins its shard there; Tansu is confined there).
    #[arg(long, default_value_t = 0)]
    broker_cpu: usize,
    /// The CPU the load generator (librdkafka) runs on.
    #[arg(long, default_value_t = 1)]
    client_cpu: usize,
    /// Only produce N records to one broker (sluice_none, sluice_sync or tansu), for profiling.
    #[arg(long, hide = true)]
    profile: Option<String>,
    /// Only measure produce latency against Sluice with this durability, for diagnosis.
    #[arg(long, hide = true)]
    latency_only: Option<String>,
}

/// Confines this process (and the threads it starts later) to one CPU.
fn pin_self(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            eprintln!("could not pin the load generator to CPU {cpu}");
        }
        // Precise sleeps for the open-loop sender (the default timer slack is 50 us).
        libc::prctl(libc::PR_SET_TIMERSLACK, 1_000u64, 0, 0, 0);
    }
}

const PARTITIONS: i32 = 4;
/// Records sent before a throughput measurement starts.
const WARMUP_RECORDS: usize = 20_000;

/// A broker under test.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Broker {
    SluiceNone,
    SluiceSync,
    Tansu,
}

impl Broker {
    fn name(self) -> &'static str {
        match self {
            Broker::SluiceNone => "sluice_none",
            Broker::SluiceSync => "sluice_sync",
            Broker::Tansu => "tansu",
        }
    }
}

struct Running {
    child: Child,
    kafka: SocketAddr,
    native: Option<SocketAddr>,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tansu_bin() -> Option<PathBuf> {
    let out = Command::new("bash").arg(repo_root().join("tools/install-peers.sh")).arg("tansu").output().ok()?;
    if !out.status.success() {
        eprintln!("tansu unavailable: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

fn start(broker: Broker, args: &Args, tansu: Option<&Path>) -> Option<Running> {
    match broker {
        Broker::Tansu => {
            let port = free_port();
            let url = format!("tcp://127.0.0.1:{port}");
            // Confined to the broker's CPU, as Sluice's shard is pinned there.
            let child = Command::new("taskset")
                .args(["-c", &args.broker_cpu.to_string()])
                .arg(tansu?)
                .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
                .args(["--storage-engine", "memory://tansu/"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .ok()?;
            let kafka = SocketAddr::from(([127, 0, 0, 1], port));
            let deadline = Instant::now() + Duration::from_secs(30);
            while TcpStream::connect(kafka).is_err() {
                if Instant::now() > deadline {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Some(Running { child, kafka, native: None, _dir: None })
        }
        _ => {
            let dir = tempfile::tempdir_in(bench::events::scratch_parent()).expect("tempdir");
            // The shards pin themselves to the first CPUs they are allowed: the broker's.
            let cpus = (0..args.shards).map(|i| (args.broker_cpu + i).to_string()).collect::<Vec<_>>().join(",");
            let mut cmd = Command::new("taskset");
            cmd.args(["-c", &cpus]).arg(sluice_bin());
            cmd.args(["serve", "--native-addr", "127.0.0.1:0", "--kafka-addr", "127.0.0.1:0"])
                .args(["--http-addr", "127.0.0.1:0", "--data-dir"])
                .arg(dir.path().join("data"))
                .args(["--shards", &args.shards.to_string()]);
            let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("start sluice");
            let mut line = String::new();
            BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("ready line");
            let field = |name: &str| {
                line.split_whitespace().find_map(|f| f.strip_prefix(&format!("{name}=")).and_then(|a| a.parse().ok()))
            };
            Some(Running { child, kafka: field("kafka")?, native: field("native"), _dir: Some(dir) })
        }
    }
}

/// Creates a topic with a raw CreateTopics request (works against any Kafka broker).
fn create_topic(addr: SocketAddr, name: &str, durability: Option<&str>) {
    use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
    use kafka_protocol::messages::{CreateTopicsRequest, RequestHeader, TopicName};
    use kafka_protocol::protocol::{Encodable, StrBytes};
    let mut configs = Vec::new();
    if let Some(d) = durability {
        configs.push(
            CreatableTopicConfig::default()
                .with_name(StrBytes::from_static_str("sluice.durability"))
                .with_value(Some(StrBytes::from_string(d.to_string()))),
        );
    }
    let req = CreateTopicsRequest::default().with_timeout_ms(10_000).with_topics(vec![CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_string(name.to_string())))
        .with_num_partitions(PARTITIONS)
        .with_replication_factor(1)
        .with_configs(configs)]);
    let mut body = bytes::BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(19)
        .with_request_api_version(4)
        .with_correlation_id(1)
        .encode(&mut body, 1)
        .expect("header");
    req.encode(&mut body, 4).expect("create topics");
    let mut s = TcpStream::connect(addr).expect("connect");
    use std::io::{Read, Write};
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    s.write_all(&frame).expect("send");
    let mut len = [0u8; 4];
    s.read_exact(&mut len).expect("reply");
    let mut reply = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut reply).expect("reply");
    // Tansu creates topics asynchronously: give metadata a moment.
    std::thread::sleep(Duration::from_millis(300));
}

/// Delivery reports: counts, and latencies from each record's due time.
struct Reports {
    due: Arc<Vec<Instant>>,
    hist: Mutex<Histogram<u64>>,
    ok: std::sync::atomic::AtomicU64,
    failed: std::sync::atomic::AtomicU64,
    last_error: Mutex<Option<String>>,
}

struct Ctx(Arc<Reports>);

impl ClientContext for Ctx {}

impl ProducerContext for Ctx {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, i: usize) {
        use std::sync::atomic::Ordering;
        match result {
            Ok(_) => {
                self.0.ok.fetch_add(1, Ordering::Relaxed);
                if let Some(due) = self.0.due.get(i) {
                    let us = due.elapsed().as_micros().max(1) as u64;
                    let _ = self.0.hist.lock().expect("hist").record(us);
                }
            }
            Err((e, _)) => {
                self.0.failed.fetch_add(1, Ordering::Relaxed);
                *self.0.last_error.lock().expect("err") = Some(e.to_string());
            }
        }
    }
}

fn producer(addr: SocketAddr, linger_ms: u32, due: Arc<Vec<Instant>>) -> (BaseProducer<Ctx>, Arc<Reports>) {
    let reports = Arc::new(Reports {
        due,
        hist: Mutex::new(latency_histogram()),
        ok: Default::default(),
        failed: Default::default(),
        last_error: Mutex::new(None),
    });
    let p: BaseProducer<Ctx> = ClientConfig::new()
        .set("bootstrap.servers", addr.to_string())
        .set("acks", "all")
        .set("linger.ms", linger_ms.to_string())
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("message.timeout.ms", "60000")
        .set("compression.type", "none")
        .create_with_context(Ctx(reports.clone()))
        .expect("producer");
    (p, reports)
}

/// Sends `n` records of `size` bytes as fast as the producer takes them: records/s,
/// timed after a warm-up (connections made, metadata known) from the first send of the
/// measured records to the last delivery report.
/// CPU time (user + system, all threads) a process has used so far, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime is the 14th, stime the 15th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    match (f.get(11), f.get(12)) {
        (Some(u), Some(s)) => (u + s) as f64 / hz,
        _ => 0.0,
    }
}

/// A produce measurement: records/s, and the broker's CPU seconds per million records.
struct Produced {
    rps: f64,
    broker_cpu_s_per_m: f64,
}

fn produce_measured(addr: SocketAddr, topic: &str, n: usize, size: usize, broker_pid: Option<u32>) -> Produced {
    use std::sync::atomic::Ordering;
    let (p, reports) = producer(addr, 5, Arc::new(Vec::new()));
    let value = vec![b'v'; size];
    let send_all = |count: usize| {
        for i in 0..count {
            let mut record: BaseRecord<'_, [u8], [u8], usize> =
                BaseRecord::with_opaque_to(topic, usize::MAX).payload(&value[..]).partition(i as i32 % PARTITIONS);
            loop {
                match p.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        record = r;
                        p.poll(Duration::from_millis(1));
                    }
                    Err((e, _)) => panic!("produce: {e}"),
                }
            }
            if i % 1024 == 0 {
                p.poll(Duration::ZERO);
            }
        }
    };
    let wait_for = |total: u64| {
        while reports.ok.load(Ordering::Relaxed) + reports.failed.load(Ordering::Relaxed) < total {
            p.poll(Duration::from_millis(1));
        }
    };
    let warmup = WARMUP_RECORDS;
    send_all(warmup);
    wait_for(warmup as u64);
    let cpu0 = broker_pid.map(cpu_seconds);
    let started = Instant::now();
    send_all(n);
    wait_for((warmup + n) as u64);
    let secs = started.elapsed().as_secs_f64();
    let cpu = broker_pid.map(cpu_seconds).zip(cpu0).map_or(0.0, |(b, a)| b - a);
    let failed = reports.failed.load(Ordering::Relaxed);
    assert_eq!(failed, 0, "{failed} records failed: {:?}", reports.last_error.lock().expect("err"));
    Produced { rps: n as f64 / secs, broker_cpu_s_per_m: cpu / n as f64 * 1e6 }
}

/// Reads `n` records back from offset 0 of every partition: records/s.
fn consume_throughput(addr: SocketAddr, topic: &str, n: usize) -> f64 {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr.to_string())
        .set("group.id", "bench")
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning).expect("offset");
    }
    c.assign(&tpl).expect("assign");
    let started = Instant::now();
    let mut got = 0usize;
    let deadline = started + Duration::from_secs(300);
    while got < n && Instant::now() < deadline {
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m.expect("consume");
            got += 1;
            std::hint::black_box(m.payload());
        }
    }
    assert_eq!(got, n, "consumed everything");
    // (the warm-up records are consumed too; they are counted in `n` by the caller)
    n as f64 / started.elapsed().as_secs_f64()
}

/// Open loop: one record every 1/rate s for `secs`; latency from each record's due time.
fn produce_latency(addr: SocketAddr, topic: &str, rate: u64, secs: u64) -> Histogram<u64> {
    use std::sync::atomic::Ordering;
    let n = (rate * secs) as usize;
    let start = Instant::now() + Duration::from_millis(200);
    let due: Arc<Vec<Instant>> =
        Arc::new((0..n).map(|i| start + Duration::from_nanos(i as u64 * 1_000_000_000 / rate)).collect());
    let (p, reports) = producer(addr, 0, due.clone());
    let value = [b'l'; 100];
    for (i, when) in due.iter().enumerate() {
        // Sleep to the due time (no spinning: the client must not steal the broker's CPU);
        // lateness of the sender still counts, since latency runs from the due time.
        p.poll(Duration::ZERO);
        let now = Instant::now();
        if *when > now {
            std::thread::sleep(*when - now);
        }
        let record: BaseRecord<'_, [u8], [u8], usize> =
            BaseRecord::with_opaque_to(topic, i).payload(&value[..]).partition(i as i32 % PARTITIONS);
        if let Err((e, _)) = p.send(record) {
            panic!("produce: {e}");
        }
        p.poll(Duration::ZERO);
    }
    while reports.ok.load(Ordering::Relaxed) + reports.failed.load(Ordering::Relaxed) < n as u64 {
        p.poll(Duration::from_millis(1));
    }
    let h = reports.hist.lock().expect("hist").clone();
    h
}

/// The same records through Sluice's native protocol: batches of `batch` records,
/// `inflight` requests pipelined per connection. Records/s.
fn native_throughput(addr: SocketAddr, topic: &str, n: usize, size: usize, batch: usize) -> f64 {
    use sluice::record::{BatchBuilder, RawRecord};
    use sluice::server::native::client::Client;
    use sluice::server::native::protocol::encode;
    let value = vec![b'v'; size];
    let payloads: Vec<_> = (0..PARTITIONS)
        .map(|_| {
            let mut b = BatchBuilder::new();
            for _ in 0..batch {
                b.push(RawRecord::new(0, None, &value));
            }
            b.finish().expect("batch")
        })
        .collect();
    let mut c = Client::connect(addr).expect("native connect");
    let requests = n.div_ceil(batch);
    let inflight = 16;
    let started = Instant::now();
    let (mut sent, mut received) = (0usize, 0usize);
    while received < requests {
        while sent < requests && sent - received < inflight {
            let p = sent % PARTITIONS as usize;
            let corr = c.correlation();
            c.send(&encode::produce(corr, topic, p as u32, payloads[p].bytes())).expect("send");
            sent += 1;
        }
        let r = c.recv().expect("reply");
        assert!(r.header.error.is_none(), "{:?}", r.header.error);
        received += 1;
    }
    (requests * batch) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let args = Args::parse();
    // Records per run: as many as fit the byte budget, at most 4 million.
    let (budget, sizes, rounds, rate, secs): (usize, &[usize], usize, u64, u64) =
        if args.quick { (100 << 20, &[100, 1024], 1, 5_000, 4) } else { (1 << 30, &[100, 1024], 2, 10_000, 15) };
    let records_for = |size: usize| (budget / size).min(4_000_000);
    let n = records_for(100);
    let tansu = tansu_bin();
    let sluice = sluice_bin();
    drop(sluice);
    pin_self(args.client_cpu);
    if let Some(d) = &args.latency_only {
        let broker = start(Broker::SluiceNone, &args, None).expect("broker");
        create_topic(broker.kafka, "lat", Some(d));
        let h = produce_latency(broker.kafka, "lat", 5_000, 10);
        eprintln!("latency sluice {d}: {}", describe(&h));
        return;
    }
    if let Some(which) = &args.profile {
        let b = match which.as_str() {
            "sluice_sync" => Broker::SluiceSync,
            "tansu" => Broker::Tansu,
            _ => Broker::SluiceNone,
        };
        let broker = start(b, &args, tansu.as_deref()).expect("broker");
        let durability = match b {
            Broker::SluiceNone => Some("none"),
            Broker::SluiceSync => Some("sync"),
            Broker::Tansu => None,
        };
        create_topic(broker.kafka, "bench", durability);
        eprintln!("profile: broker pid {}", broker.child.id());
        let size: usize = std::env::var("PROFILE_SIZE").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
        let m = produce_measured(
            broker.kafka,
            "bench",
            (2_000_000_000 / size).min(10_000_000),
            size,
            Some(broker.child.id()),
        );
        eprintln!(
            "profile: {} produce {:.0} rec/s, broker {:.2} CPU-s per M records",
            b.name(),
            m.rps,
            m.broker_cpu_s_per_m
        );
        return;
    }
    let brokers: Vec<Broker> = [Broker::SluiceNone, Broker::Tansu, Broker::SluiceSync]
        .into_iter()
        .filter(|b| *b != Broker::Tansu || tansu.is_some())
        .collect();
    let mut json = serde_json::Map::new();
    let mut produce: std::collections::BTreeMap<(Broker, usize), Vec<f64>> = Default::default();
    let mut consume: std::collections::BTreeMap<(Broker, usize), Vec<f64>> = Default::default();
    let mut cpu: std::collections::BTreeMap<(Broker, usize), Vec<f64>> = Default::default();
    let mut native: Vec<f64> = Vec::new();
    // (native, Kafka) broker CPU seconds per million records, run by run.
    let mut native_cpu: Vec<(f64, f64)> = Vec::new();
    let mut kafka_for_native: Vec<f64> = Vec::new();
    for round in 0..rounds {
        for &size in sizes {
            let n = records_for(size);
            for &b in &brokers {
                let Some(broker) = start(b, &args, tansu.as_deref()) else {
                    eprintln!("{}: could not start", b.name());
                    continue;
                };
                let durability = match b {
                    Broker::SluiceNone => Some("none"),
                    Broker::SluiceSync => Some("sync"),
                    Broker::Tansu => None,
                };
                create_topic(broker.kafka, "bench", durability);
                let m = produce_measured(broker.kafka, "bench", n, size, Some(broker.child.id()));
                let p = m.rps;
                cpu.entry((b, size)).or_default().push(m.broker_cpu_s_per_m);
                let c = consume_throughput(broker.kafka, "bench", n + WARMUP_RECORDS);
                eprintln!(
                    "round {round} {:>11} {size:>5} B: produce {:>9.0} rec/s {:>7.1} MB/s (broker {:.2} CPU-s per M) | consume {:>9.0} rec/s {:>7.1} MB/s",
                    b.name(),
                    p,
                    p * size as f64 / 1e6,
                    m.broker_cpu_s_per_m,
                    c,
                    c * size as f64 / 1e6
                );
                produce.entry((b, size)).or_default().push(p);
                consume.entry((b, size)).or_default().push(c);
                if b == Broker::SluiceNone && size == 100 {
                    // The same records over the native protocol, against the Kafka run just made.
                    create_topic(broker.kafka, "bench-native", Some("none"));
                    let cpu0 = cpu_seconds(broker.child.id());
                    let nat = native_throughput(broker.native.expect("native address"), "bench-native", n, size, 5_000);
                    let nat_cpu = (cpu_seconds(broker.child.id()) - cpu0) / n as f64 * 1e6;
                    eprintln!(
                        "round {round}      native   100 B: produce {nat:>9.0} rec/s {:>7.1} MB/s (broker {nat_cpu:.2} CPU-s per M)",
                        nat * 100.0 / 1e6
                    );
                    native.push(nat);
                    native_cpu.push((nat_cpu, m.broker_cpu_s_per_m));
                    kafka_for_native.push(p);
                }
            }
        }
    }
    let best = |v: &[f64]| v.iter().copied().fold(0.0f64, f64::max);
    for ((b, size), v) in &produce {
        let label = if *size == 100 { "100b" } else { "1k" };
        json.insert(format!("{}_produce_{label}_rps", b.name()), serde_json::json!(best(v).round()));
        json.insert(
            format!("{}_produce_{label}_mbps", b.name()),
            serde_json::json!((best(v) * *size as f64 / 1e6 * 10.0).round() / 10.0),
        );
    }
    for ((b, size), v) in &consume {
        let label = if *size == 100 { "100b" } else { "1k" };
        json.insert(format!("{}_consume_{label}_rps", b.name()), serde_json::json!(best(v).round()));
    }
    // Ratios from runs side by side: each round's Sluice figure over the same round's peer.
    let ratio = |a: Broker, b: Broker, size: usize| -> Option<f64> {
        let (x, y) = (produce.get(&(a, size))?, produce.get(&(b, size))?);
        let r: Vec<f64> = x.iter().zip(y).map(|(x, y)| x / y).collect();
        Some((r.iter().sum::<f64>() / r.len() as f64 * 100.0).round() / 100.0)
    };
    if let Some(r) = ratio(Broker::SluiceNone, Broker::Tansu, 100) {
        json.insert("kafka_produce_vs_tansu".into(), serde_json::json!(r));
    }
    if let Some(r) = ratio(Broker::SluiceNone, Broker::Tansu, 1024) {
        json.insert("kafka_produce_vs_tansu_1k".into(), serde_json::json!(r));
    }
    let consume_ratio = {
        let (x, y) = (consume.get(&(Broker::SluiceNone, 100)), consume.get(&(Broker::Tansu, 100)));
        x.zip(y).map(|(x, y)| (best(x) / best(y) * 100.0).round() / 100.0)
    };
    if let Some(r) = consume_ratio {
        json.insert("kafka_consume_vs_tansu".into(), serde_json::json!(r));
    }
    // Broker efficiency: CPU per record, which the client (one core of librdkafka) does not cap.
    for ((b, size), v) in &cpu {
        let label = if *size == 100 { "100b" } else { "1k" };
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        json.insert(
            format!("{}_produce_{label}_cpu_s_per_m", b.name()),
            serde_json::json!((mean * 100.0).round() / 100.0),
        );
    }
    for (size, label) in [(100usize, "100b"), (1024, "1k")] {
        if let (Some(s), Some(t)) = (cpu.get(&(Broker::SluiceNone, size)), cpu.get(&(Broker::Tansu, size))) {
            let (s, t) = (s.iter().sum::<f64>() / s.len() as f64, t.iter().sum::<f64>() / t.len() as f64);
            if s > 0.0 {
                json.insert(
                    format!("kafka_produce_cpu_vs_tansu_{label}"),
                    serde_json::json!((t / s * 100.0).round() / 100.0),
                );
            }
        }
    }
    if !native.is_empty() {
        let r: Vec<f64> = kafka_for_native.iter().zip(&native).map(|(k, n)| k / n).collect();
        json.insert("native_produce_100b_rps".into(), serde_json::json!(best(&native).round()));
        json.insert(
            "kafka_vs_native_produce".into(),
            serde_json::json!((r.iter().sum::<f64>() / r.len() as f64 * 100.0).round() / 100.0),
        );
        // The server's own cost of each protocol (the client's is not in it).
        let r: Vec<f64> = native_cpu.iter().filter(|(_, k)| *k > 0.0).map(|(n, k)| n / k).collect();
        if !r.is_empty() {
            let v = (r.iter().sum::<f64>() / r.len() as f64 * 100.0).round() / 100.0;
            json.insert("kafka_vs_native_produce_cpu".into(), serde_json::json!(v));
        }
    }
    // Latency, open loop, 100 B records at a fixed rate.
    let mut lat = serde_json::Map::new();
    for &b in &brokers {
        let Some(broker) = start(b, &args, tansu.as_deref()) else { continue };
        let durability = match b {
            Broker::SluiceNone => Some("none"),
            Broker::SluiceSync => Some("sync"),
            Broker::Tansu => None,
        };
        create_topic(broker.kafka, "lat", durability);
        let h = produce_latency(broker.kafka, "lat", rate, secs);
        eprintln!("latency {:>11} at {rate}/s: {}", b.name(), describe(&h));
        lat.insert(b.name().to_string(), percentiles_json(&h));
        json.insert(format!("{}_produce_p99_us", b.name()), serde_json::json!(h.value_at_quantile(0.99)));
    }
    json.insert("produce_latency".into(), serde_json::Value::Object(lat));
    json.insert("latency_rate_per_s".into(), serde_json::json!(rate));
    json.insert("records".into(), serde_json::json!(n));
    json.insert("quick".into(), serde_json::json!(args.quick));
    println!("{}", serde_json::Value::Object(json));
}
