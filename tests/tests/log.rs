//! The log on real files: append, read, indexes, seek by time, rolling, retention, recovery.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use sluice::io::Storage;
use sluice::log::{
    Durability, LogError, LogManager, Offset, Partition, PartitionReader, Placement, StartPosition, TopicConfig,
};
use sluice_tests::{batch, run_local, value_of};

fn topic(name: &str, durability: Durability, segment_bytes: u64) -> TopicConfig {
    let mut c = TopicConfig::new(name, 1);
    c.durability = durability;
    c.segment_bytes = segment_bytes;
    c.topic_id = 7;
    c.batch_bytes_max = 32 << 10;
    c
}

async fn open(dir: &Path, cfg: &TopicConfig) -> Partition {
    Partition::open(&Storage::real(), dir, Rc::new(cfg.clone()), 0).await.expect("open partition")
}

/// Reads the whole visible log and checks record i has offset i and value_of(i).
async fn check_all(p: &Partition, expect: u64, value_len: usize) {
    let mut r = PartitionReader::new(p.clone(), Offset(0));
    let mut n = 0u64;
    while let Some(b) = r.next_batch().await.expect("read") {
        for (i, rec) in b.records().iter().enumerate() {
            let off = b.base_offset() + i as u64;
            assert_eq!(off, n, "offsets are dense");
            assert_eq!(rec.value.as_slice(), value_of(off, value_len).as_slice(), "value of offset {off}");
            n += 1;
        }
    }
    assert_eq!(n, expect, "record count");
}

/// Ten records from offset `first`, record i stamped 10_000 + 10 * i.
fn timed_batch(first: u64, value_len: usize) -> sluice::record::BatchPayload {
    let mut bb = sluice::record::BatchBuilder::new();
    for i in first..first + 10 {
        bb.push(sluice::record::RawRecord::new(10_000 + 10 * i as i64, None, &value_of(i, value_len)));
    }
    bb.finish().expect("batch")
}

/// The partition directory's index files, in offset order.
fn index_files(dir: &Path) -> Vec<PathBuf> {
    let mut indexes: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("partition dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "index"))
        .collect();
    indexes.sort();
    indexes
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

#[test]
fn append_read_roll_reopen_with_every_durability() {
    for durability in [Durability::Sync, Durability::Interval { ms: 5 }, Durability::None] {
        let dir = tmp();
        let path = dir.path().join("p0");
        let cfg = topic("t", durability, 256 << 10);
        run_local(move || async move {
            let p = open(&path, &cfg).await;
            for b in 0..100u64 {
                let ack = p.append(batch(b * 20, 20, 100, 1_000)).await.expect("append");
                assert_eq!(ack.base_offset, Offset(b * 20));
            }
            let status = p.status();
            assert!(status.segments > 1, "small segments roll: {status:?}");
            check_all(&p, 2000, 100).await;
            // A read from the middle starts with the batch holding the offset.
            let got = p.read(Offset(1005), 1).await.expect("read");
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].base_offset(), 1000);
            p.close().await.expect("close");
            let p = open(&path, &cfg).await;
            assert_eq!(p.offsets().written_end(), Offset(2000));
            assert_eq!(p.offsets().durable_end(), Offset(2000));
            check_all(&p, 2000, 100).await;
            let ack = p.append(batch(2000, 5, 100, 1_000)).await.expect("append after reopen");
            assert_eq!(ack.base_offset, Offset(2000));
            p.close().await.expect("close");
        });
    }
}

#[test]
fn concurrent_sync_appends_share_syncs_and_all_get_acked() {
    let dir = tmp();
    let path = dir.path().join("p0");
    let cfg = topic("t", Durability::Sync, 1 << 20);
    run_local(move || async move {
        let p = open(&path, &cfg).await;
        let tasks: Vec<_> = (0..64u64)
            .map(|i| {
                let p = p.clone();
                glommio::spawn_local(async move { p.append(batch(0, 10, 50, i as i64)).await.expect("append") })
            })
            .collect();
        let mut bases = Vec::new();
        for t in tasks {
            bases.push(t.await.base_offset.0);
        }
        bases.sort();
        assert_eq!(bases, (0..64).map(|i| i * 10).collect::<Vec<_>>());
        assert_eq!(p.offsets().durable_end(), Offset(640));
        p.close().await.expect("close");
    });
}

#[test]
fn seek_by_offset_and_time_across_segments() {
    let dir = tmp();
    let path = dir.path().join("p0");
    let cfg = topic("t", Durability::None, 128 << 10);
    run_local(move || async move {
        let p = open(&path, &cfg).await;
        // Timestamps 10_000 + 10 * offset, strictly increasing.
        for b in 0..200u64 {
            p.append(timed_batch(b * 10, 200)).await.unwrap();
        }
        assert!(p.status().segments >= 4);
        for (ts, want) in
            [(0, 0), (10_000, 0), (10_001, 1), (10_010, 1), (25_555, 1556), (29_990, 1999), (40_000, 2000)]
        {
            let got = LogManager::resolve(&p, StartPosition::Time(ts)).await.unwrap();
            assert_eq!(got, Offset(want), "time {ts}");
        }
        for o in [0u64, 9, 10, 777, 1999] {
            let got = p.read(Offset(o), 1).await.unwrap();
            assert!(got[0].base_offset() <= o && o < got[0].end_offset());
        }
        assert!(matches!(p.read(Offset(2001), 1).await, Err(LogError::OffsetOutOfRange { .. })));
        p.close().await.unwrap();
    });
}

#[test]
fn missing_or_stale_index_is_rebuilt_from_the_log() {
    let dir = tmp();
    let path = dir.path().join("p0");
    let cfg = topic("t", Durability::None, 128 << 10);
    let path2 = path.clone();
    let cfg2 = cfg.clone();
    run_local(move || async move {
        let p = open(&path, &cfg).await;
        for b in 0..100u64 {
            p.append(batch(b * 10, 10, 200, 5_000)).await.unwrap();
        }
        p.close().await.unwrap();
    });
    let indexes = index_files(&path2);
    assert!(indexes.len() >= 2);
    std::fs::remove_file(&indexes[0]).unwrap();
    // A stale index: valid file, but it describes a shorter segment.
    let mut bytes = std::fs::read(&indexes[1]).unwrap();
    bytes[20..28].copy_from_slice(&[0; 8]);
    std::fs::write(&indexes[1], bytes).unwrap();
    run_local(move || async move {
        let p = open(&path2, &cfg2).await;
        assert!(p.status().read_only.is_none());
        check_all(&p, 1000, 200).await;
        assert_eq!(LogManager::resolve(&p, StartPosition::Time(5_500)).await.unwrap(), Offset(500));
        p.close().await.unwrap();
    });
}

#[test]
fn sealed_segment_indexes_stay_in_their_files_until_a_reader_needs_them() {
    let dir = tmp();
    let path = dir.path().join("p0");
    let cfg = topic("t", Durability::None, 64 << 10);
    let (path2, cfg2) = (path.clone(), cfg.clone());
    run_local(move || async move {
        let p = open(&path, &cfg).await;
        // Timestamps 10_000 + 10 * offset; ~20 segments.
        for b in 0..300u64 {
            p.append(timed_batch(b * 10, 400)).await.unwrap();
        }
        assert!(p.status().segments >= 10, "{:?}", p.status());
        p.close().await.unwrap();
    });
    let indexes = index_files(&path2);
    let (gone, garbled) = (indexes[2].clone(), indexes[5].clone());
    let intact = std::fs::read(&gone).unwrap();
    run_local(move || async move {
        let p = open(&path2, &cfg2).await;
        assert_eq!(p.sealed_indexes_loaded(), 0, "recovery checks the index files and leaves them there");
        // Seeks by time and by offset into every segment, in an order that keeps evicting.
        let ends: Vec<u64> = (0..3000u64).step_by(97).chain([2999]).collect();
        for &o in ends.iter().rev().chain(ends.iter()) {
            let at = LogManager::resolve(&p, StartPosition::Time(10_000 + 10 * o as i64)).await.unwrap();
            assert_eq!(at, Offset(o), "time of offset {o}");
            let got = p.read(Offset(o), 1).await.unwrap();
            assert!(got[0].base_offset() <= o && o < got[0].end_offset(), "read at {o}");
            assert!(p.sealed_indexes_loaded() <= sluice::limits::SEALED_INDEXES_CACHED);
        }
        assert!(p.sealed_indexes_loaded() > 0);
        // An index file that disappears or goes bad while the partition is open is rebuilt
        // from its segment when next needed, and written again.
        std::fs::remove_file(&gone).unwrap();
        std::fs::write(&garbled, b"not an index").unwrap();
        check_all(&p, 3000, 400).await;
        assert_eq!(std::fs::read(&gone).unwrap(), intact, "the rebuilt index is the one that was lost");
        assert!(std::fs::read(&garbled).unwrap().starts_with(b"SLIX"));
        for o in [0u64, 1234, 2999] {
            assert_eq!(LogManager::resolve(&p, StartPosition::Time(10_000 + 10 * o as i64)).await.unwrap(), Offset(o));
        }
        p.close().await.unwrap();
    });
}

#[test]
fn retention_by_size_and_age_deletes_whole_old_segments_only() {
    let dir = tmp();
    let path = dir.path().join("p0");
    let mut cfg = topic("t", Durability::None, 128 << 10);
    cfg.retention_bytes = Some(300 << 10);
    run_local(move || async move {
        let p = open(&path, &cfg).await;
        for b in 0..200u64 {
            p.append(batch(b * 10, 10, 400, 1_000)).await.unwrap();
        }
        let before = p.status();
        let deleted = p.enforce_retention(sluice::clock::now_ms()).await.unwrap();
        let after = p.status();
        assert!(deleted > 0);
        assert!(after.bytes >= 300 << 10, "keeps at least the retained bytes: {after:?}");
        assert!(after.bytes < before.bytes);
        assert!(after.log_start > Offset(0));
        assert_eq!(after.written_end, Offset(2000));
        // Reading below the log start is out of range; from the start works.
        assert!(matches!(p.read(Offset(0), 1).await, Err(LogError::OffsetOutOfRange { .. })));
        assert_eq!(p.read(after.log_start, 1).await.unwrap()[0].base_offset(), after.log_start.0);
        p.close().await.unwrap();
        // Age: every record is from 1970, so all but the active segment go.
        let mut cfg = cfg.clone();
        cfg.retention_bytes = None;
        cfg.retention_ms = Some(60_000);
        let p = open(&path, &cfg).await;
        p.enforce_retention(sluice::clock::now_ms()).await.unwrap();
        let s = p.status();
        assert_eq!(s.segments, 1, "never the active segment: {s:?}");
        assert_eq!(s.written_end, Offset(2000));
        p.close().await.unwrap();
    });
}

#[test]
fn torn_tail_is_truncated_and_mid_log_corruption_opens_read_only() {
    let dir = tmp();
    let path = dir.path().join("p0");
    let cfg = topic("t", Durability::Sync, 16 << 20);
    let (p2, c2) = (path.clone(), cfg.clone());
    run_local(move || async move {
        let p = open(&path, &cfg).await;
        for b in 0..50u64 {
            p.append(batch(b * 10, 10, 300, 0)).await.unwrap();
        }
        p.close().await.unwrap();
    });
    let log = path_of_segment(&p2, 0);
    // A torn write past the end: half a batch of garbage, as a crash mid-write leaves it.
    let len = std::fs::metadata(&log).unwrap().len();
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    std::io::Write::write_all(&mut f, &[0x5a; 4096 + 100]).unwrap();
    drop(f);
    let (p3, c3) = (p2.clone(), c2.clone());
    run_local(move || async move {
        let p = open(&p3, &c3).await;
        assert!(p.status().read_only.is_none());
        check_all(&p, 500, 300).await;
        p.close().await.unwrap();
    });
    assert_eq!(std::fs::metadata(&log).unwrap().len(), len, "torn tail truncated");
    // Now flip a byte inside the third batch: below the durable watermark.
    let mut bytes = std::fs::read(&log).unwrap();
    let third = 4096 + 2 * 4096 + 500;
    bytes[third] ^= 0x01;
    std::fs::write(&log, bytes).unwrap();
    let (p4, c4) = (p2.clone(), c2.clone());
    run_local(move || async move {
        let p = open(&p4, &c4).await;
        let reason = p.status().read_only.expect("opened read-only");
        assert!(reason.contains("00000000000000000000.log"), "names the file: {reason}");
        assert!(reason.contains("offset 20"), "names the offset: {reason}");
        assert!(matches!(p.append(batch(0, 1, 10, 0)).await, Err(LogError::ReadOnly { .. })));
        // What comes before the corruption is still readable.
        assert_eq!(p.read(Offset(0), 1).await.unwrap()[0].base_offset(), 0);
        p.close().await.unwrap();
    });
    assert_eq!(std::fs::metadata(&log).unwrap().len(), len, "corruption is never truncated");
}

fn path_of_segment(dir: &Path, base: u64) -> PathBuf {
    dir.join(sluice::log::log_file_name(base))
}

#[test]
fn log_manager_creates_lists_reopens_and_deletes_topics() {
    let dir = tmp();
    let data = dir.path().to_path_buf();
    run_local(move || async move {
        let lm = LogManager::open(Storage::real(), &data, Placement::single()).await.unwrap();
        let mut c = TopicConfig::new("orders", 3);
        c.durability = Durability::None;
        let c = lm.create_topic(c).await.unwrap();
        assert!(c.topic_id != 0);
        assert!(matches!(lm.create_topic(TopicConfig::new("orders", 1)).await, Err(LogError::TopicExists(_))));
        assert!(matches!(lm.create_topic(TopicConfig::new("bad/name", 1)).await, Err(LogError::InvalidConfig(_))));
        for p in 0..3 {
            lm.partition("orders", p).unwrap().append(batch(0, 3, 10, 0)).await.unwrap();
        }
        lm.close().await.unwrap();
        let lm = LogManager::open(Storage::real(), &data, Placement::single()).await.unwrap();
        assert_eq!(*lm.topic("orders").unwrap(), c);
        assert_eq!(lm.partition("orders", 2).unwrap().offsets().written_end(), Offset(3));
        lm.delete_topic("orders").await.unwrap();
        assert!(lm.topic("orders").is_none());
        assert!(!data.join("topics/orders").exists());
        lm.close().await.unwrap();
    });
}

/// Typed batches (an embedder's own value type) are never read as raw records, and
/// seeking by time over them lands on a batch boundary.
#[test]
fn typed_batches_are_not_read_as_raw_records() {
    let dir = tmp();
    let path = dir.path().join("p0");
    let cfg = topic("t", Durability::None, 1 << 20);
    run_local(move || async move {
        let p = open(&path, &cfg).await;
        let mut b = sluice::record::BatchBuilder::<(i64, f64)>::new();
        for i in 0..10i64 {
            b.push(sluice::record::Record {
                timestamp_ms: 100 + i,
                key: None,
                value: (i, i as f64 / 2.0),
                headers: vec![],
            });
        }
        p.append(b.finish().unwrap()).await.unwrap();
        let batches = p.read(Offset(0), 1 << 20).await.unwrap();
        assert!(batches[0].is_typed());
        assert_eq!(batches[0].records().len(), 0, "no raw view of typed values");
        let typed = batches[0].records_as::<(i64, f64)>().unwrap();
        assert_eq!(typed.len(), 10);
        assert_eq!(typed[3].value.1.to_native(), 1.5);
        assert_eq!(LogManager::resolve(&p, StartPosition::Time(105)).await.unwrap(), Offset(0));
        assert_eq!(LogManager::resolve(&p, StartPosition::Time(200)).await.unwrap(), Offset(10));
        p.close().await.unwrap();
    });
}

/// Review finding: a reader that retention overtook gets an error, not an empty log.
#[test]
fn a_reader_overtaken_by_retention_gets_an_error() {
    let dir = tmp();
    let path = dir.path().join("p0");
    let mut cfg = topic("t", Durability::None, 128 << 10);
    cfg.retention_bytes = Some(128 << 10);
    run_local(move || async move {
        let p = open(&path, &cfg).await;
        for b in 0..100u64 {
            p.append(batch(b * 10, 10, 400, 1_000)).await.unwrap();
        }
        let mut r = PartitionReader::new(p.clone(), Offset(0));
        assert!(r.next_batch().await.unwrap().is_some());
        assert!(p.enforce_retention(sluice::clock::now_ms()).await.unwrap() > 0);
        let mut late = PartitionReader::new(p.clone(), Offset(0));
        assert!(matches!(late.next_batch().await, Err(LogError::OffsetOutOfRange { .. })));
        p.close().await.unwrap();
    });
}

/// A reader tailing a partition while appends run gets every record once, in order, whether
/// it comes from the tail cache (the newest batches, for `interval` and `none` even before
/// their write lands) or from the disk (a reader that fell behind the cache's budget); a
/// `sync` reader never sees past the durable end. After a reopen it all comes from disk.
#[test]
fn a_tailing_reader_gets_every_record_from_memory_or_disk() {
    for durability in [Durability::Sync, Durability::Interval { ms: 5 }, Durability::None] {
        let dir = tmp();
        let path = dir.path().join("p0");
        let cfg = topic("t", durability, 1 << 20);
        run_local(move || async move {
            let p = open(&path, &cfg).await;
            const BATCHES: u64 = 600;
            const PER_BATCH: u64 = 50;
            const VALUE_BYTES: usize = 300;
            let writer = {
                let p = p.clone();
                glommio::spawn_local(async move {
                    let mut pending = Vec::new();
                    for b in 0..BATCHES {
                        pending.push(p.submit(batch(b * PER_BATCH, PER_BATCH, VALUE_BYTES, 0)).await.expect("submit"));
                        if pending.len() == 8 {
                            for a in pending.drain(..) {
                                a.await.expect("append");
                            }
                        }
                    }
                    for a in pending {
                        a.await.expect("append");
                    }
                })
            };
            let mut r = PartitionReader::new(p.clone(), Offset(0));
            let mut seen = 0u64;
            let mut round = 0u64;
            // Once, after 50 rounds of reading from the tail, the reader falls behind by twice
            // what the tail cache holds, so the cache moves on and the disk serves; then it
            // catches up. Waited for, not slept for: a slow disk wrote less than the cache
            // in a fixed 30 ms, and the disk never served.
            while seen < BATCHES * PER_BATCH {
                round += 1;
                if round == 50 {
                    let behind = 2 * sluice::limits::TAIL_CACHE_BYTES_MAX as u64 / VALUE_BYTES as u64;
                    let target = (seen + behind).min(BATCHES * PER_BATCH);
                    assert!(
                        p.wait_for(Offset(target - 1), std::time::Duration::from_secs(10)).await,
                        "the writer at {target}"
                    );
                }
                let Some(b) = r.next_batch().await.expect("read") else {
                    assert!(p.wait_for(Offset(seen), std::time::Duration::from_secs(10)).await, "data at {seen}");
                    continue;
                };
                if durability == Durability::Sync {
                    assert!(b.end_offset() <= p.offsets().durable_end().0, "a sync reader sees only durable records");
                }
                for (i, rec) in b.records().iter().enumerate() {
                    let off = b.base_offset() + i as u64;
                    assert_eq!(off, seen, "dense, no duplicate ({durability:?})");
                    assert_eq!(rec.value.as_slice(), value_of(off, VALUE_BYTES).as_slice(), "offset {off}");
                    seen += 1;
                }
            }
            writer.await;
            let got = p.read(Offset(seen - 1), 1 << 20).await.expect("read the tail");
            assert_eq!(got.last().map(|b| b.end_offset()), Some(seen));
            assert!(p.status().segments > 5, "segments rolled under the reader");
            let m = p.metrics();
            assert!(m.batches_read_from_tail.get() > 0, "the tail cache served the live reader");
            assert!(m.batches_read_from_disk.get() > 0, "the disk served the reader that fell behind");
            p.close().await.expect("close");
            let p = open(&path, &cfg).await;
            check_all(&p, seen, VALUE_BYTES).await;
            p.close().await.expect("close");
        });
    }
}

/// A reader of an `interval` topic may see a batch before its write lands; syncing up to
/// what it saw (a view checkpoint does) waits for the write, then makes it durable.
#[test]
fn sync_to_what_a_reader_saw_waits_for_the_write() {
    let dir = tmp();
    let path = dir.path().join("p0");
    let cfg = topic("t", Durability::Interval { ms: 60_000 }, 1 << 20);
    run_local(move || async move {
        let p = open(&path, &cfg).await;
        for round in 0..20u64 {
            let pending = p.submit(batch(round * 10, 10, 100, 0)).await.expect("submit");
            let want = Offset((round + 1) * 10);
            assert!(p.wait_for(Offset(round * 10), std::time::Duration::from_secs(5)).await);
            let seen = p.offsets().visible_end();
            assert_eq!(seen, want);
            let synced = glommio::timer::timeout(std::time::Duration::from_secs(5), async {
                p.sync_to(seen).await.expect("sync_to");
                Ok(())
            })
            .await;
            assert!(synced.is_ok(), "sync_to({seen}) returned once the write landed");
            assert!(p.offsets().durable_end() >= want);
            pending.await.expect("append");
        }
        p.close().await.expect("close");
    });
}

/// Batches that straddle read-ahead chunks are stitched from the chunks already read;
/// batches larger than a chunk are read on their own. Every record comes back intact.
#[test]
fn large_batches_across_read_ahead_chunks_read_back_intact() {
    let dir = tmp();
    let path = dir.path().join("p0");
    let mut cfg = topic("t", Durability::None, 64 << 20);
    cfg.batch_bytes_max = 4 << 20;
    run_local(move || async move {
        let p = open(&path, &cfg).await;
        let mut n = 0u64;
        // ~150 KiB batches (7 per 1 MiB chunk, most chunks end mid-batch), then 1.5 MiB ones.
        for (count, value_len) in [
            (1500u64, 100usize),
            (1500, 100),
            (1500, 100),
            (1500, 100),
            (1500, 100),
            (1500, 100),
            (1500, 100),
            (1500, 100),
            (1500, 1000),
            (1500, 1000),
        ] {
            p.append(batch(n, count, value_len, 0)).await.unwrap();
            n += count;
        }
        let mut r = PartitionReader::new(p.clone(), Offset(0));
        let mut seen = 0u64;
        while let Some(b) = r.next_batch().await.unwrap() {
            for (i, rec) in b.records().iter().enumerate() {
                let off = b.base_offset() + i as u64;
                assert_eq!(off, seen);
                let len = if off < 12_000 { 100 } else { 1000 };
                assert_eq!(rec.value.as_slice(), value_of(off, len).as_slice(), "offset {off}");
                seen += 1;
            }
        }
        assert_eq!(seen, n);
        p.close().await.unwrap();
    });
}

#[test]
fn idempotent_producer_retries_are_deduplicated_across_rolls_and_restarts() {
    use sluice::record::ProducerInfo;
    let dir = tmp();
    let path = dir.path().join("p0");
    let cfg = topic("t", Durability::Sync, 128 << 10);
    run_local(move || async move {
        let prod = |seq: i32| ProducerInfo { producer_id: 42, epoch: 3, base_sequence: seq };
        let p = open(&path, &cfg).await;
        // 60 batches of 10 records with sequences 0, 10, 20, ...: several segment rolls.
        for b in 0..60u64 {
            let ack = p.append(batch(b * 10, 10, 500, 0).with_producer(prod(b as i32 * 10))).await.expect("append");
            assert_eq!(ack.base_offset, Offset(b * 10));
        }
        assert!(p.status().segments > 2);
        // A retry of the last batch is answered with the original offsets, not written.
        let dup = p.append(batch(590, 10, 500, 0).with_producer(prod(590))).await.expect("duplicate");
        assert_eq!(dup.base_offset, Offset(590));
        assert_eq!(p.offsets().written_end(), Offset(600));
        // A gap is refused; an older epoch is fenced.
        let gap = p.append(batch(600, 10, 500, 0).with_producer(prod(700))).await.unwrap_err();
        assert!(matches!(gap, LogError::OutOfOrderSequence { expected: 600, got: 700, .. }), "{gap}");
        let old = ProducerInfo { producer_id: 42, epoch: 2, base_sequence: 600 };
        let fenced = p.append(batch(600, 10, 500, 0).with_producer(old)).await.unwrap_err();
        assert!(matches!(fenced, LogError::ProducerFenced { current: 3, got: 2, .. }), "{fenced}");
        p.close().await.expect("close");

        // After a restart the state comes back from the snapshot and the active segment.
        let p = open(&path, &cfg).await;
        for seq in [560, 570, 580, 590] {
            let dup = p.append(batch(seq as u64, 10, 500, 0).with_producer(prod(seq))).await.expect("dup");
            assert_eq!(dup.base_offset, Offset(seq as u64), "retry of sequence {seq} after restart");
        }
        let next = p.append(batch(600, 10, 500, 0).with_producer(prod(600))).await.expect("next in order");
        assert_eq!(next.base_offset, Offset(600));
        check_all(&p, 610, 500).await;
        let b = p.read(Offset(600), 1).await.expect("read");
        assert_eq!(b[0].producer(), Some(prod(600)), "the trailer is read back");
        p.close().await.expect("close");

        // Without any snapshot files, recovery reads the trailers of every segment.
        for e in std::fs::read_dir(&path).unwrap() {
            let e = e.unwrap();
            if e.file_name().to_string_lossy().ends_with(".producers") {
                std::fs::remove_file(e.path()).unwrap();
            }
        }
        let p = open(&path, &cfg).await;
        let dup = p.append(batch(600, 10, 500, 0).with_producer(prod(600))).await.expect("dup");
        assert_eq!(dup.base_offset, Offset(600));
        assert_eq!(p.offsets().written_end(), Offset(610));
        p.close().await.expect("close");
    });
}

/// Below `sync` the active segment reserves file space ahead of its writes (so O_DIRECT
/// appends run inline, not in a kernel worker). What it leaves: after a crash, zeros past
/// the last batch, dropped on open (with anything a write landed beyond a hole); after a
/// roll or a close, files exactly as long as their batches. Under `sync` it writes zeros
/// ahead instead, which recovery treats the same way.
#[test]
fn reserved_space_ahead_of_the_writes_is_given_back_and_never_read_as_data() {
    let dir = tmp();
    let path = dir.path().join("p0");
    let cfg = topic("t", Durability::Interval { ms: 5 }, 64 << 20);
    let log = path_of_segment(&path, 0);
    let (p1, c1) = (path.clone(), cfg.clone());
    run_local(move || async move {
        let p = open(&p1, &c1).await;
        for b in 0..50u64 {
            p.append(batch(b * 10, 10, 300, 0)).await.expect("append");
        }
        // The reservation runs beside the writes: give it a moment.
        let reserved = sluice::limits::SEGMENT_ALLOCATE_STEP_BYTES;
        for _ in 0..100 {
            if std::fs::metadata(path_of_segment(&p1, 0)).expect("log").len() >= reserved {
                break;
            }
            glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
        }
        // Left open, as a crash leaves it.
        std::mem::forget(p);
    });
    let data_len = 4096 + 50 * 4096;
    let file_len = std::fs::metadata(&log).expect("log").len();
    assert!(file_len >= sluice::limits::SEGMENT_ALLOCATE_STEP_BYTES, "space reserved ahead: {file_len}");
    let l = log.clone();
    let report = run_local(move || async move {
        sluice::log::inspect::inspect_segment(&Storage::real(), &l).await.expect("inspect")
    });
    assert!(report.problem.is_none(), "{:?}", report.problem);
    assert_eq!((report.records(), report.reserved_bytes), (500, file_len - data_len));

    // A write that landed past a hole (never acknowledged: acks go in order) must not come
    // back as data: copy the last batch two blocks past the end.
    let bytes = std::fs::read(&log).expect("read");
    let last = bytes[(data_len - 4096) as usize..data_len as usize].to_vec();
    let f = std::fs::OpenOptions::new().write(true).open(&log).expect("open");
    std::os::unix::fs::FileExt::write_all_at(&f, &last, data_len + 4096).expect("write");
    drop(f);
    let l = log.clone();
    let report = run_local(move || async move {
        sluice::log::inspect::inspect_segment(&Storage::real(), &l).await.expect("inspect")
    });
    assert_eq!(report.problem.map(|(at, _)| at), Some(data_len + 4096), "inspect points at the stray batch");

    let (p2, c2) = (path.clone(), cfg.clone());
    run_local(move || async move {
        let p = open(&p2, &c2).await;
        assert!(p.status().read_only.is_none());
        assert_eq!(p.offsets().written_end(), Offset(500));
        check_all(&p, 500, 300).await;
        assert_eq!(std::fs::metadata(path_of_segment(&p2, 0)).expect("log").len(), data_len, "dropped on open");
        for b in 50..60u64 {
            p.append(batch(b * 10, 10, 300, 0)).await.expect("append after reopen");
        }
        check_all(&p, 600, 300).await;
        p.close().await.expect("close");
    });
    assert_eq!(std::fs::metadata(&log).expect("log").len(), data_len + 10 * 4096, "a close gives the space back");

    // Under `sync` the space ahead is zeroed (written and synced) instead: after a crash it
    // reads back as zeros, dropped on open like a reservation.
    let synced = topic("t", Durability::Sync, 64 << 20);
    let (p4, c4) = (path.clone(), synced.clone());
    let synced_len = data_len + 20 * 4096;
    run_local(move || async move {
        let p = open(&p4, &c4).await;
        for b in 60..70u64 {
            p.append(batch(b * 10, 10, 300, 0)).await.expect("append");
        }
        for _ in 0..100 {
            if std::fs::metadata(path_of_segment(&p4, 0)).expect("log").len() > synced_len {
                break;
            }
            glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
        }
        std::mem::forget(p);
    });
    let file_len = std::fs::metadata(&log).expect("log").len();
    assert!(file_len >= synced_len + sluice::limits::SYNC_RUNWAY_BYTES / 2, "zeroed ahead: {file_len}");
    let l = log.clone();
    let report = run_local(move || async move {
        sluice::log::inspect::inspect_segment(&Storage::real(), &l).await.expect("inspect")
    });
    assert!(report.problem.is_none(), "{:?}", report.problem);
    assert_eq!((report.records(), report.reserved_bytes), (700, file_len - synced_len));
    let (p5, c5) = (path.clone(), synced.clone());
    run_local(move || async move {
        let p = open(&p5, &c5).await;
        assert_eq!(p.offsets().written_end(), Offset(700));
        check_all(&p, 700, 300).await;
        assert_eq!(std::fs::metadata(path_of_segment(&p5, 0)).expect("log").len(), synced_len, "dropped on open");
        p.close().await.expect("close");
    });
    assert_eq!(std::fs::metadata(&log).expect("log").len(), synced_len);

    // A roll seals a segment at exactly its batches' length.
    let small = topic("t", Durability::Interval { ms: 5 }, 256 << 10);
    let (p3, c3) = (path.clone(), small.clone());
    run_local(move || async move {
        let p = open(&p3, &c3).await;
        for b in 70..200u64 {
            p.append(batch(b * 10, 10, 300, 0)).await.expect("append");
        }
        assert!(p.status().segments > 2);
        check_all(&p, 2000, 300).await;
        p.close().await.expect("close");
    });
    let mut sealed = std::fs::read_dir(&path).expect("ls").flatten().map(|e| e.path()).collect::<Vec<_>>();
    sealed.retain(|p| p.extension().is_some_and(|x| x == "log"));
    sealed.sort();
    for seg in &sealed {
        let l = seg.clone();
        let report = run_local(move || async move {
            sluice::log::inspect::inspect_segment(&Storage::real(), &l).await.expect("inspect")
        });
        assert!(report.problem.is_none(), "{}: {:?}", seg.display(), report.problem);
        assert_eq!(report.reserved_bytes, 0, "{}", seg.display());
        assert_eq!(report.file_len, 4096 + report.batches.len() as u64 * 4096, "{}", seg.display());
    }
}
