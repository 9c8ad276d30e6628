//! The log on the simulated disk: every fault it can inject, and what must hold after it.
//! No acknowledged record is ever lost; torn tails are truncated; corruption below the
//! durable watermark is reported, never truncated; a failed write or sync makes the
//! partition read-only and nothing more is acknowledged.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;

use sluice::io::{SimConfig, SimDisk, Storage};
use sluice::log::{Durability, LogError, Offset, Partition, PartitionReader, TopicConfig};
use sluice_tests::{batch, run_local, value_of};

const VALUE_LEN: usize = 60;

fn topic(durability: Durability, segment_bytes: u64) -> Rc<TopicConfig> {
    let mut c = TopicConfig::new("t", 1);
    c.durability = durability;
    c.segment_bytes = segment_bytes;
    c.topic_id = 11;
    c.batch_bytes_max = 32 << 10;
    Rc::new(c)
}

/// Writes and syncs stay in the simulated device for up to this many executor yields, so
/// other tasks run meanwhile and writes land while a sync is in flight.
const DEVICE_YIELDS_MAX: u32 = 8;

fn sim_disk(seed: u64) -> SimDisk {
    SimDisk::new(SimConfig { seed, io_yields_max: DEVICE_YIELDS_MAX, ..SimConfig::default() })
}

fn dir() -> PathBuf {
    PathBuf::from("/data/t/0")
}

async fn open(disk: &SimDisk, cfg: &Rc<TopicConfig>) -> Partition {
    Partition::open(&Storage::Sim(disk.clone()), &dir(), cfg.clone(), 0).await.expect("open")
}

/// Reads everything; returns (offset, value) pairs.
async fn read_all(p: &Partition) -> Vec<(u64, Vec<u8>)> {
    let mut r = PartitionReader::new(p.clone(), p.offsets().log_start());
    let mut out = Vec::new();
    while let Some(b) = r.next_batch().await.expect("read") {
        for (i, rec) in b.records().iter().enumerate() {
            out.push((b.base_offset() + i as u64, rec.value.to_vec()));
        }
    }
    out
}

/// Every acknowledged append (first record number, count, assigned base offset) must be
/// present with its exact values.
fn assert_acked_present(all: &[(u64, Vec<u8>)], acked: &[(u64, u64, u64)], seed: u64) {
    for &(first, count, base) in acked {
        for i in 0..count {
            let off = base + i;
            let got = all.get(off as usize).unwrap_or_else(|| panic!("seed {seed}: acked offset {off} lost"));
            assert_eq!(got.0, off, "seed {seed}");
            assert_eq!(got.1, value_of(first + i, VALUE_LEN), "seed {seed}: acked offset {off} changed");
        }
    }
}

#[test]
fn crash_at_random_points_loses_no_acknowledged_record() {
    // Four producers of small batches: many small group writes and syncs.
    crash_while_appending(0..60, 4, 1000, 64 << 10, |k| 3 + k % 5);
}

#[test]
fn crash_with_several_large_writes_in_flight_loses_no_acknowledged_record() {
    // 128 producers of ~24 KiB batches: the queue holds more than one sync write's
    // bytes (SYNC_WRITE_BYTES_MAX), so a drained queue is cut into several writes and the
    // crash can fall between them, with writes landing while a sync is in the device.
    crash_while_appending(0..16, 128, 6, 8 << 20, |k| 200 + k % 40);
}

/// `producers` tasks append `appends_each` batches of `records(k)` records concurrently
/// under `sync`; the disk crashes after a seeded number of scheduler steps. After reopening,
/// offsets are dense, every acknowledged record is there with its value, and appends go on
/// right after the recovered end.
fn crash_while_appending(
    seeds: std::ops::Range<u64>,
    producers: u64,
    appends_each: u64,
    segment_bytes: u64,
    records: fn(u64) -> u64,
) {
    let (acked_total, refused_total) = run_local(move || async move {
        let (mut acked_total, mut refused_total) = (0usize, 0usize);
        for seed in seeds {
            let disk = sim_disk(seed);
            let cfg = topic(Durability::Sync, segment_bytes);
            let p = open(&disk, &cfg).await;
            let acked: Rc<RefCell<Vec<(u64, u64, u64)>>> = Rc::default();
            // The crash lands while groups are in flight.
            let tasks: Vec<_> = (0..producers)
                .map(|w| {
                    let (p, acked) = (p.clone(), acked.clone());
                    glommio::spawn_local(async move {
                        for k in 0..appends_each {
                            let first = (w * appends_each + k) * 1_000;
                            let n = records(k);
                            match p.append(batch(first, n, VALUE_LEN, first as i64)).await {
                                Ok(ack) => acked.borrow_mut().push((first, n, ack.base_offset.0)),
                                Err(_) => return,
                            }
                        }
                    })
                })
                .collect();
            let steps = 5 + (seed * 7919) % 200;
            for _ in 0..steps {
                futures_lite::future::yield_now().await;
            }
            disk.crash();
            for t in tasks {
                t.await;
            }
            let _ = p.close().await;
            let p = open(&disk, &cfg).await;
            assert!(p.status().read_only.is_none(), "seed {seed}: {:?}", p.status());
            let all = read_all(&p).await;
            assert_eq!(all.len() as u64, p.offsets().written_end().0, "seed {seed}: dense offsets");
            assert_acked_present(&all, &acked.borrow(), seed);
            acked_total += acked.borrow().len();
            refused_total += (producers * appends_each) as usize - acked.borrow().len();
            // Torn tails were truncated: appends continue right after the recovered end.
            let end = p.offsets().written_end();
            let ack = p.append(batch(0, 1, VALUE_LEN, 0)).await.expect("append after recovery");
            assert_eq!(ack.base_offset, end, "seed {seed}");
            p.close().await.expect("close");
        }
        (acked_total, refused_total)
    });
    // The crashes fell mid-stream: some appends were acknowledged, some were not.
    assert!(acked_total > 0 && refused_total > 0, "acked {acked_total}, refused {refused_total}");
}

#[test]
fn interval_and_none_topics_recover_to_a_clean_prefix_after_a_crash() {
    run_local(|| async {
        for seed in 0..30u64 {
            for durability in [Durability::Interval { ms: 1 }, Durability::None] {
                let disk = sim_disk(seed);
                let cfg = topic(durability, 64 << 10);
                let p = open(&disk, &cfg).await;
                for k in 0..(20 + seed * 3) {
                    p.append(batch(k * 4, 4, VALUE_LEN, 0)).await.expect("append");
                    if k % 7 == 0 {
                        glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
                    }
                }
                let durable = p.offsets().durable_end();
                disk.crash();
                let _ = p.close().await;
                let p = open(&disk, &cfg).await;
                assert!(p.status().read_only.is_none(), "seed {seed}");
                let all = read_all(&p).await;
                assert!(all.len() as u64 >= durable.0, "seed {seed}: synced records survive");
                for (off, v) in &all {
                    assert_eq!(v, &value_of(*off, VALUE_LEN), "seed {seed}: a clean prefix");
                }
                p.close().await.expect("close");
            }
        }
    });
}

#[test]
fn bit_flip_below_the_watermark_is_reported_not_truncated() {
    run_local(|| async {
        let disk = sim_disk(0);
        let cfg = topic(Durability::Sync, 1 << 20);
        let p = open(&disk, &cfg).await;
        for k in 0..20u64 {
            p.append(batch(k * 10, 10, VALUE_LEN, 0)).await.expect("append");
        }
        p.close().await.expect("close");
        let log = dir().join(sluice::log::log_file_name(0));
        let len = disk.file_len(&log).expect("log file");
        // Batch 5 starts at block 1 + 5: flip a bit in its payload.
        assert!(disk.flip_bit(&log, 4096 * 6 + 200, 3));
        let p = open(&disk, &cfg).await;
        let reason = p.status().read_only.expect("read-only after corruption");
        assert!(reason.contains("00000000000000000000.log") && reason.contains("offset 50"), "{reason}");
        assert!(matches!(p.append(batch(0, 1, 10, 0)).await, Err(LogError::ReadOnly { .. })));
        assert_eq!(disk.file_len(&log), Some(len), "never truncated");
        // Reads of the intact prefix work; the corrupt batch is an error naming the file.
        assert_eq!(p.read(Offset(0), 1).await.expect("prefix")[0].base_offset(), 0);
        match p.read(Offset(50), 1).await {
            Err(LogError::Corrupt { path, offset, .. }) => {
                assert_eq!(path, log);
                assert_eq!(offset, 50);
            }
            Err(LogError::ReadOnly { reason, .. }) => assert!(reason.contains("offset 50"), "{reason}"),
            other => panic!("expected corruption error, got {:?}", other.map(|b| b.len())),
        }
        p.close().await.expect("close");
    });
}

#[test]
fn bit_flip_in_a_sealed_segment_is_caught_on_read() {
    run_local(|| async {
        let disk = sim_disk(0);
        let cfg = topic(Durability::Sync, 64 << 10);
        let p = open(&disk, &cfg).await;
        for k in 0..60u64 {
            p.append(batch(k * 10, 10, VALUE_LEN, 0)).await.expect("append");
        }
        assert!(p.status().segments > 1);
        p.close().await.expect("close");
        let log = dir().join(sluice::log::log_file_name(0));
        assert!(disk.flip_bit(&log, 4096 * 2 + 300, 0));
        let p = open(&disk, &cfg).await;
        let mut r = PartitionReader::new(p.clone(), Offset(0));
        let err = loop {
            match r.next_batch().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("corruption went unnoticed"),
                Err(e) => break e,
            }
        };
        assert!(err.to_string().contains("00000000000000000000.log"), "{err}");
        assert!(p.status().read_only.is_some(), "a checksum failure makes the partition read-only");
        p.close().await.expect("close");
    });
}

async fn fault_case(fail: impl Fn(&SimDisk), errno_text: &str) {
    let disk = sim_disk(0);
    let cfg = topic(Durability::Sync, 1 << 20);
    let p = open(&disk, &cfg).await;
    for k in 0..10u64 {
        p.append(batch(k * 10, 10, VALUE_LEN, 0)).await.expect("append");
    }
    fail(&disk);
    let err = p.append(batch(100, 10, VALUE_LEN, 0)).await.expect_err("the faulty append is not acknowledged");
    assert!(err.to_string().contains(errno_text), "{err}");
    // Read-only from now on, even though the disk works again: no retry.
    let again = p.append(batch(100, 10, VALUE_LEN, 0)).await.expect_err("read-only");
    assert!(matches!(again, LogError::ReadOnly { .. }), "{again}");
    let _ = p.close().await;
    // Reopened: every acknowledged record is there and the partition is writable.
    let p = open(&disk, &cfg).await;
    assert!(p.status().read_only.is_none());
    let all = read_all(&p).await;
    assert!(all.len() >= 100);
    assert_acked_present(&all, &(0..10).map(|k| (k * 10, 10, k * 10)).collect::<Vec<_>>(), 0);
    p.append(batch(0, 1, VALUE_LEN, 0)).await.expect("writable after reopen");
    p.close().await.expect("close");
}

#[test]
fn eio_on_write_makes_the_partition_read_only() {
    run_local(|| fault_case(|d| d.fail_write_in(0, libc_eio()), "Input/output error"));
}

#[test]
fn eio_on_sync_is_never_retried_and_never_acknowledged() {
    run_local(|| fault_case(|d| d.fail_sync_in(0, libc_eio()), "Input/output error"));
}

#[test]
fn enospc_on_write_makes_the_partition_read_only() {
    run_local(|| fault_case(|d| d.fail_write_in(0, 28), "No space left"));
}

#[test]
fn a_full_disk_fails_appends_cleanly() {
    run_local(|| async {
        let disk = SimDisk::new(SimConfig { seed: 1, capacity_bytes: 200 << 10, io_yields_max: DEVICE_YIELDS_MAX });
        let cfg = topic(Durability::Sync, 1 << 20);
        let p = open(&disk, &cfg).await;
        let mut acked = Vec::new();
        let err = loop {
            let k = acked.len() as u64;
            match p.append(batch(k * 10, 10, VALUE_LEN, 0)).await {
                Ok(a) => acked.push((k * 10, 10, a.base_offset.0)),
                Err(e) => break e,
            }
        };
        assert!(err.to_string().contains("No space left"), "{err}");
        let _ = p.close().await;
        let p = open(&disk, &cfg).await;
        assert_acked_present(&read_all(&p).await, &acked, 1);
        p.close().await.expect("close");
    });
}

fn libc_eio() -> i32 {
    5
}

/// Review finding: with a failure already found in a sealed segment, corruption below the
/// durable mark in the last segment must still never be truncated.
#[test]
fn a_second_corruption_is_never_truncated() {
    run_local(|| async {
        let disk = sim_disk(0);
        let cfg = topic(Durability::Sync, 64 << 10);
        let p = open(&disk, &cfg).await;
        for k in 0..60u64 {
            p.append(batch(k * 10, 10, VALUE_LEN, 0)).await.expect("append");
        }
        let segments = p.status().segments;
        assert!(segments >= 3);
        p.close().await.expect("close");
        // Damage the first (sealed) segment and drop its index, so recovery scans it...
        let first = dir().join(sluice::log::log_file_name(0));
        assert!(disk.flip_bit(&first, 4096 * 2 + 100, 1));
        Storage::Sim(disk.clone()).remove_file(&dir().join(sluice::log::index_file_name(0))).await.expect("rm index");
        // ...and a batch in the middle of the last segment, below the durable watermark.
        let names = Storage::Sim(disk.clone()).list_dir(&dir()).expect("ls");
        let last_log = names.iter().rfind(|e| e.name.ends_with(".log")).expect("last").name.clone();
        let last = dir().join(&last_log);
        let len = disk.file_len(&last).expect("len");
        assert!(len > 4096 * 4);
        assert!(disk.flip_bit(&last, 4096 * 2 + 200, 2));
        // And a watermark file that lags (it is refreshed only every second): only the
        // durable hints of the later batches show the bad batch was acknowledged.
        Storage::Sim(disk.clone()).remove_file(&dir().join("durable.wm")).await.expect("rm wm");
        let p = open(&disk, &cfg).await;
        assert!(p.status().read_only.is_some());
        assert_eq!(disk.file_len(&last), Some(len), "nothing truncated");
        p.close().await.expect("close");
    });
}

/// Review finding: what recovery finds (written but perhaps never synced, as after
/// kill -9) is synced before it is called durable, so a later power loss keeps it.
#[test]
fn recovered_data_survives_a_later_power_loss() {
    run_local(|| async {
        for seed in 0..10u64 {
            let disk = sim_disk(seed);
            let cfg = topic(Durability::None, 1 << 20);
            let first = open(&disk, &cfg).await;
            for k in 0..30u64 {
                first.append(batch(k * 10, 10, VALUE_LEN, 0)).await.expect("append");
            }
            // The process dies (no close, nothing synced); the files keep what was written.
            let second = open(&disk, &cfg).await;
            assert_eq!(second.offsets().durable_end(), Offset(300), "seed {seed}");
            // Power loss after recovery: everything recovery called durable must survive.
            disk.crash();
            let _ = first.close().await;
            let _ = second.close().await;
            let third = open(&disk, &cfg).await;
            assert!(third.status().read_only.is_none(), "seed {seed}: {:?}", third.status());
            assert_eq!(read_all(&third).await.len(), 300, "seed {seed}");
            third.close().await.expect("close");
        }
    });
}
