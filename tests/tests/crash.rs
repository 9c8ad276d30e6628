//! Crash safety with real processes: `kill -9` a `sluice serve` while separate client
//! connections produce under `sync` durability, restart it, and check that every
//! acknowledged record is present and intact. 20 kill points here; `tools/crash-loop.sh`
//! runs 1,000 (SLUICE_CRASH_ITERATIONS).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use sluice::log::StartPosition;
use sluice::server::native::client::Client;
use sluice::server::native::protocol::CreateTopic;
use sluice_tests::{batch, value_of, Server};

const PARTITIONS: u32 = 4;
const VALUE_LEN: usize = 80;

/// (partition, base offset) -> (first record number, count) of every acknowledged batch.
type Acked = Arc<Mutex<BTreeMap<(u32, u64), (u64, u64)>>>;

fn produce_until_error(
    addr: std::net::SocketAddr,
    partition: u32,
    first_number: u64,
    acked: Acked,
    stop: Arc<AtomicBool>,
) -> u64 {
    let Ok(mut c) = Client::connect(addr) else { return first_number };
    let mut n = first_number;
    let mut k = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let count = 1 + (k * 7 + partition as u64) % 40;
        match c.produce("crash", partition, &batch(n, count, VALUE_LEN, n as i64)) {
            Ok(p) => {
                assert_eq!(p.record_count as u64, count);
                acked.lock().unwrap().insert((partition, p.base_offset), (n, count));
            }
            Err(_) => break,
        }
        n += count;
        k += 1;
    }
    n
}

/// Checks every acknowledged record from offset `from[p]` on (all of them when 0), and
/// that the log still starts at 0 and reaches past every acknowledged offset.
fn verify(addr: std::net::SocketAddr, acked: &Acked, kill: usize, from_offsets: &[u64]) {
    let acked = acked.lock().unwrap();
    let mut c = Client::connect(addr).expect("connect");
    let (_, parts) = c.describe_topic("crash").expect("describe");
    for p in 0..PARTITIONS {
        let status = &parts[p as usize];
        assert_eq!(status.log_start.0, 0, "kill {kill}: partition {p} lost its head");
        assert!(status.read_only.is_none(), "kill {kill}: partition {p} read-only: {:?}", status.read_only);
        let acked_end = acked.range((p, 0)..(p + 1, 0)).next_back().map_or(0, |(&(_, b), &(_, n))| b + n);
        assert!(
            status.written_end.0 >= acked_end,
            "kill {kill}: partition {p} ends at {} < acked {acked_end}",
            status.written_end.0
        );
        let mut values: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        let mut from = StartPosition::Offset(from_offsets[p as usize]);
        loop {
            let f = c.fetch("crash", p, from, 8 << 20, 0).expect("fetch");
            for (o, r) in f.records() {
                values.insert(o, r.value.to_vec());
            }
            from = StartPosition::Offset(f.next_offset().0);
            if f.next_offset() >= f.visible_end {
                break;
            }
        }
        for (&(part, base), &(first, count)) in acked.range((p, from_offsets[p as usize])..(p + 1, 0)) {
            assert_eq!(part, p);
            for i in 0..count {
                let got = values.get(&(base + i)).unwrap_or_else(|| {
                    panic!("kill {kill}: acknowledged record at partition {p} offset {} is missing", base + i)
                });
                assert_eq!(
                    got,
                    &value_of(first + i, VALUE_LEN),
                    "kill {kill}: partition {p} offset {} corrupted",
                    base + i
                );
            }
        }
    }
}

#[test]
fn kill_9_during_sync_produce_loses_no_acknowledged_record() {
    let iterations: usize = std::env::var("SLUICE_CRASH_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let acked: Acked = Arc::default();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let mut next_number: Vec<u64> = (0..PARTITIONS as u64).map(|p| p << 40).collect();
    {
        let server = Server::start(&data);
        let mut c = Client::connect(server.addr).expect("connect");
        let spec = CreateTopic {
            segment_bytes: Some(2 << 20),
            batch_bytes_max: Some(64 << 10),
            ..CreateTopic::new("crash", PARTITIONS)
        };
        c.create_topic(&spec).expect("create topic");
    }
    let mut total_acked = 0;
    // Offsets below which the log was already verified after an earlier restart: each
    // restart re-checks the tail written since (plus bounds); the end checks everything.
    let mut verified_from = vec![0u64; PARTITIONS as usize];
    for kill in 0..iterations {
        let mut server = Server::start(&data);
        verify(server.addr, &acked, kill, &verified_from);
        {
            let acked = acked.lock().unwrap();
            for p in 0..PARTITIONS {
                let end = acked.range((p, 0)..(p + 1, 0)).next_back().map_or(0, |(&(_, b), _)| b);
                // From the last batch verified now: it and everything after are checked next time.
                verified_from[p as usize] = end;
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let producers: Vec<_> = (0..PARTITIONS)
            .map(|p| {
                let (acked, stop, addr, first) = (acked.clone(), stop.clone(), server.addr, next_number[p as usize]);
                std::thread::spawn(move || produce_until_error(addr, p, first, acked, stop))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(rng.gen_range(20..250)));
        server.kill9();
        for (p, h) in producers.into_iter().enumerate() {
            next_number[p] = h.join().expect("producer");
        }
        total_acked = acked.lock().unwrap().values().map(|(_, c)| c).sum::<u64>();
    }
    let server = Server::start(&data);
    verify(server.addr, &acked, iterations, &vec![0; PARTITIONS as usize]);
    assert!(total_acked > 0, "the test produced nothing");
    println!("crash test: {iterations} kill -9 points, {total_acked} acknowledged records, none lost");
}
