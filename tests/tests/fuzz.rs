//! Fuzz targets (bolero). Under `cargo test` each runs a short random campaign; under
//! `cargo bolero test -p sluice-tests --test fuzz <target>` it runs coverage-guided
//! (libFuzzer) for as long as you let it. SLUICE_FUZZ_ITERATIONS scales the short run.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;

use rkyv::util::AlignedVec;
use sluice::io::{OpenMode, SimConfig, SimDisk, Storage};
use sluice::limits::align_up;
use sluice::log::{Durability, Offset, Partition, PartitionReader, TopicConfig};
use sluice::record::BatchPayload;
use sluice::server::native::protocol::{decode_request, Request};
use sluice_tests::batch;

fn iterations(default: usize) -> usize {
    std::env::var("SLUICE_FUZZ_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A frame body: an api key (mostly one that exists), a version (mostly the current
/// one), then arbitrary bytes, so the campaign reaches every request's decoder. Decoding
/// (and validating a produce payload) returns a value or an error, never panics, and
/// never allocates past the input.
#[test]
fn frame_decoder() {
    let decoded = std::sync::atomic::AtomicUsize::new(0);
    let count = || decoded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    bolero::check!().with_iterations(iterations(100_000)).with_type::<(u8, u8, u32, Vec<u8>)>().for_each(
        |(key, version, corr, tail)| {
            let mut body = AlignedVec::<16>::new();
            body.extend_from_slice(&u16::from(key % 9).to_le_bytes());
            body.extend_from_slice(&(if *version < 240 { 1u16 } else { u16::from(*version) }).to_le_bytes());
            body.extend_from_slice(&corr.to_le_bytes());
            body.extend_from_slice(tail);
            match decode_request(body) {
                Ok((_, Request::Produce { body, payload_start, .. })) => {
                    let _ = BatchPayload::from_untrusted(body, payload_start, 1 << 20);
                    count();
                }
                Ok(_) => {
                    count();
                }
                Err(_) => {}
            }
        },
    );
    eprintln!("frame_decoder: {} inputs decoded to a request", decoded.load(std::sync::atomic::Ordering::Relaxed));
}

/// Raw bytes as a frame body, header included.
#[test]
fn frame_decoder_raw_bytes() {
    bolero::check!().with_iterations(iterations(20_000)).for_each(|bytes: &[u8]| {
        let mut body = AlignedVec::<16>::new();
        body.extend_from_slice(bytes);
        if let Ok((_, Request::Produce { body, payload_start, .. })) = decode_request(body) {
            let _ = BatchPayload::from_untrusted(body, payload_start, 1 << 20);
        }
    });
}

/// A payload that parses as a frame but holds arbitrary records: validation rejects or
/// accepts, and what it accepts can be read back.
#[test]
fn produce_payload_validation() {
    bolero::check!().with_iterations(iterations(20_000)).for_each(|bytes: &[u8]| {
        let mut body = AlignedVec::<16>::new();
        body.extend_from_slice(bytes);
        if let Ok(p) = BatchPayload::from_untrusted(body, 0, 1 << 20) {
            let records =
                rkyv::access::<rkyv::Archived<Vec<sluice::record::RawRecord>>, rkyv::rancor::Error>(p.bytes())
                    .expect("accepted payload reads back");
            assert_eq!(records.len() as u32, p.summary().record_count);
        }
    });
}

thread_local! {
    static EXECUTOR: glommio::LocalExecutor = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .make()
        .expect("executor");
    /// A valid segment of 30 batches (built once), the seed every mutation starts from.
    static SEGMENT: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

fn topic() -> Rc<TopicConfig> {
    let mut c = TopicConfig::new("f", 1);
    c.topic_id = 3;
    c.durability = Durability::Sync;
    c.segment_bytes = 1 << 20;
    c.batch_bytes_max = 64 << 10;
    Rc::new(c)
}

fn dir() -> PathBuf {
    PathBuf::from("/fuzz/f/0")
}

async fn valid_segment() -> Vec<u8> {
    let disk = SimDisk::new(SimConfig::default());
    let storage = Storage::Sim(disk.clone());
    let p = Partition::open(&storage, &dir(), topic(), 0).await.expect("open");
    for k in 0..30u64 {
        p.append(batch(k * 5, 5, 40, k as i64)).await.expect("append");
    }
    p.close().await.expect("close");
    let path = dir().join(sluice::log::log_file_name(0));
    let file = storage.open(&path, OpenMode::Read).await.expect("open segment");
    let len = file.len().await.expect("len");
    file.read_at(0, align_up(len) as usize).await.expect("read").to_vec()
}

/// Recovery of a damaged last segment: a valid segment with bytes overwritten and its
/// tail cut at an arbitrary point. Opening never panics; it either recovers (and then
/// every batch reads back and appends continue at the recovered end) or reports the
/// partition read-only.
#[test]
fn segment_recovery() {
    bolero::check!().with_iterations(iterations(2_000)).for_each(|input: &[u8]| {
        EXECUTOR.with(|ex| {
            ex.run(async {
                let mut seg = match SEGMENT.with(|s| s.borrow().clone()) {
                    Some(s) => s,
                    None => {
                        let s = valid_segment().await;
                        SEGMENT.with(|cell| *cell.borrow_mut() = Some(s.clone()));
                        s
                    }
                };
                // Input: [cut: u16][(pos: u16, byte: u8)]*
                if input.len() >= 2 {
                    let cut = u16::from_le_bytes([input[0], input[1]]) as usize * 4;
                    if cut < seg.len() {
                        seg.truncate(cut.max(1));
                    }
                }
                for m in input.get(2..).unwrap_or(&[]).chunks_exact(3) {
                    let pos = u16::from_le_bytes([m[0], m[1]]) as usize * 2;
                    if pos < seg.len() {
                        seg[pos] = m[2];
                    }
                }
                let disk = SimDisk::new(SimConfig::default());
                let storage = Storage::Sim(disk.clone());
                storage.create_dir_all(&dir()).await.expect("mkdir");
                let path = dir().join(sluice::log::log_file_name(0));
                let file = storage.open(&path, OpenMode::Create).await.expect("create");
                let mut buf = storage.alloc_zeroed(align_up(seg.len() as u64) as usize);
                buf.as_mut_slice()[..seg.len()].copy_from_slice(&seg);
                file.write_at(buf, 0).await.expect("write");
                file.truncate(seg.len() as u64).await.expect("truncate");
                file.fdatasync().await.expect("sync");
                let Ok(p) = Partition::open(&storage, &dir(), topic(), 0).await else { return };
                if p.status().read_only.is_none() {
                    let mut r = PartitionReader::new(p.clone(), Offset(0));
                    let mut n = 0;
                    while let Some(b) = r.next_batch().await.expect("a recovered log reads back") {
                        n += b.records().len() as u64;
                    }
                    assert_eq!(n, p.offsets().written_end().0);
                    let end = p.offsets().written_end();
                    assert_eq!(p.append(batch(0, 1, 10, 0)).await.expect("append").base_offset, end);
                }
                let _ = p.close().await;
            })
        })
    });
}

/// Any bytes as a JSON row for a typed topic: rejected with a field and a reason, or
/// accepted; an accepted row survives rkyv and JSON round trips unchanged.
#[test]
fn json_row_decoder() {
    use sluice::record::schema::{row_to_json, Row, Schema};
    let schema = Schema::parse(
        "ts TIMESTAMP NOT NULL, k TEXT NOT NULL, n INT, b BIGINT DEFAULT 7, d DOUBLE PRECISION, f BOOLEAN, raw BYTEA",
        Some("ts"),
    )
    .expect("schema");
    bolero::check!().with_iterations(iterations(20_000)).for_each(|bytes: &[u8]| {
        let Ok(json) = serde_json::from_slice::<serde_json::Value>(bytes) else { return };
        match schema.row_from_json(&json) {
            Err(e) => assert!(!e.field.is_empty() && !e.reason.is_empty()),
            Ok(row) => {
                let archived = rkyv::to_bytes::<rkyv::rancor::Error>(&row).expect("archive");
                let back: Row = rkyv::from_bytes::<Row, rkyv::rancor::Error>(&archived).expect("unarchive");
                assert_eq!(back, row);
                let again = schema.row_from_json(&row_to_json(&schema, &row)).expect("json round trip");
                assert_eq!(again, row);
            }
        }
    });
    // Seeds that reach deep: valid rows and near misses.
    for seed in [
        r#"{"ts": -5, "k": "a"}"#,
        r#"{"ts": 253402300800000, "k": "a", "raw": "\\x00ff"}"#,
        r#"{"ts": "2026-11-25T10:00:00Z", "k": "", "n": 2147483647, "d": 1e300, "f": true}"#,
        r#"{"ts": 1, "k": "a", "n": 2147483648}"#,
    ] {
        if let Ok(row) = schema.row_from_json(&serde_json::from_str(seed).expect("seed json")) {
            assert_eq!(schema.row_from_json(&row_to_json(&schema, &row)).expect("round trip"), row, "{seed}");
        }
    }
}

/// Any bytes after a Kafka request header (a supported api key and version) through the
/// request decoder: a request or an error, never a panic or an allocation the input does
/// not pay for (kafka-protocol is patched for that; see third_party/README.md).
#[test]
fn kafka_request_decoder() {
    use kafka_protocol::messages::ApiKey;
    use sluice::server::kafka::handlers::{decode, supported_versions};
    let keys: Vec<(ApiKey, i16, i16)> =
        ApiKey::iter().filter_map(|k| supported_versions(k).map(|(lo, hi)| (k, lo, hi))).collect();
    bolero::check!().with_iterations(iterations(50_000)).with_type::<(u8, u8, i32, Vec<u8>)>().for_each(
        |(k, v, corr, tail)| {
            let (key, lo, hi) = keys[*k as usize % keys.len()];
            let version = lo + (*v as i16 % (hi - lo + 1));
            let mut body = Vec::with_capacity(tail.len() + 8);
            body.extend_from_slice(&(key as i16).to_be_bytes());
            body.extend_from_slice(&version.to_be_bytes());
            body.extend_from_slice(&corr.to_be_bytes());
            body.extend_from_slice(tail);
            let _ = decode(bytes::Bytes::from(body));
        },
    );
    bolero::check!().with_iterations(iterations(20_000)).for_each(|bytes: &[u8]| {
        let _ = decode(bytes::Bytes::copy_from_slice(bytes));
    });
}

/// Kafka record batches at the door: the harness fixes up the framing and the CRC of a
/// fuzzed batch so the parser is reached past its checksum; any outcome but a panic (or
/// an allocation past the caps) is fine.
#[test]
fn kafka_record_batch_parser() {
    use sluice::server::kafka::record_batch::{split_batches, to_raw_payload, to_typed_payload};
    let schema = sluice::record::schema::Schema::parse("a BIGINT, b TEXT", None).unwrap();
    bolero::check!().with_iterations(iterations(50_000)).with_type::<(u8, i32, Vec<u8>)>().for_each(
        |(codec, count, tail)| {
            let mut b = vec![0u8; 61];
            b.extend_from_slice(tail);
            let len = (b.len() - 12) as i32;
            b[8..12].copy_from_slice(&len.to_be_bytes());
            b[16] = 2;
            b[21..23].copy_from_slice(&(i16::from(*codec % 6)).to_be_bytes());
            let c = *count % 4096;
            b[23..27].copy_from_slice(&(c - 1).to_be_bytes());
            b[57..61].copy_from_slice(&c.to_be_bytes());
            let crc = crc32c::crc32c(&b[21..]);
            b[17..21].copy_from_slice(&crc.to_be_bytes());
            if let Ok(batches) = split_batches(&b) {
                for one in batches {
                    let _ = to_raw_payload(one, 1 << 20, 0);
                    let _ = to_typed_payload(one, 1 << 20, 0, &schema);
                }
            }
        },
    );
}
