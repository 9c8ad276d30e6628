//! Real Kafka clients against a real `sluice serve`: Debian's kcat (librdkafka 2.0.2),
//! confluent-kafka (librdkafka 2.16) and kafka-python, installed by
//! `tools/install-clients.sh`. Each test checks content, not just that calls succeed.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice::log::StartPosition;
use sluice::server::native::client::Client;
use sluice::server::native::protocol::CreateTopic;
use sluice_tests::{config_file, kcat, run_client, Server};

/// A server whose groups rebalance without the initial delay (tests are short).
fn start(dir: &tempfile::TempDir, extra_toml: &str) -> Server {
    let data = dir.path().join("d");
    let cfg = config_file(&data, &format!("[kafka]\ngroup_initial_rebalance_delay_ms = 0\n{extra_toml}"));
    Server::start_with(&data, &["--config", cfg.to_str().unwrap()])
}

fn create(server: &Server, name: &str, partitions: u32) {
    Client::connect(server.addr).unwrap().create_topic(&CreateTopic::new(name, partitions)).unwrap();
}

/// Every record value of a partition, read over the native protocol.
fn values(server: &Server, topic: &str, partition: u32) -> Vec<String> {
    let mut c = Client::connect(server.addr).unwrap();
    let mut out = Vec::new();
    let mut from = StartPosition::Earliest;
    loop {
        let f = c.fetch(topic, partition, from, 1 << 20, 0).unwrap();
        if f.is_empty() {
            return out;
        }
        out.extend(f.records().map(|(_, r)| String::from_utf8_lossy(r.value.as_slice()).into_owned()));
        from = StartPosition::Offset(f.next_offset().0);
    }
}

#[test]
fn librdkafka_round_trip_with_keys_headers_timestamps_and_seeks() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, "");
    create(&server, "rt", 3);
    let line = run_client("roundtrip_confluent.py", &[&server.kafka.to_string(), "rt", "3", "600"]);
    assert!(line.contains("\"consumed\": 600"), "{line}");
}

#[test]
fn kafka_python_round_trip_and_seeks() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, "");
    create(&server, "kp", 2);
    let line = run_client("roundtrip_kafka_python.py", &[&server.kafka.to_string(), "kp", "2", "300"]);
    assert!(line.contains("\"consumed\": 300"), "{line}");
}

#[test]
fn kcat_produces_consumes_seeks_and_joins_a_group() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, "");
    create(&server, "kc", 2);
    let b = server.kafka.to_string();
    let input: String = (0..20).map(|i| format!("key{i}:value{i}\n")).collect();
    let (st, _, err) =
        kcat(&["-b", &b, "-P", "-t", "kc", "-p", "0", "-K:", "-H", "src=kcat", "-z", "gzip"], Some(input.as_bytes()));
    assert!(st.success(), "{err}");
    let (st, out, err) = kcat(&["-b", &b, "-C", "-t", "kc", "-p", "0", "-e", "-f", "%k|%s|%h|%o|%T\\n"], None);
    assert!(st.success(), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 20, "{out}");
    let mut stamps = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let f: Vec<&str> = l.split('|').collect();
        assert_eq!(&f[..4], &[format!("key{i}").as_str(), &format!("value{i}"), "src=kcat", &i.to_string()], "{l}");
        stamps.push(f[4].parse::<i64>().unwrap());
    }
    assert!(stamps[0] > 1_600_000_000_000, "producer timestamps are kept: {stamps:?}");
    // From an offset.
    let (_, out, _) = kcat(&["-b", &b, "-C", "-t", "kc", "-p", "0", "-o", "15", "-e", "-f", "%o %s\\n"], None);
    assert_eq!(out.lines().next(), Some("15 value15"), "{out}");
    // From a timestamp: the first record at or after it.
    let ts = stamps[0];
    let (_, out, _) =
        kcat(&["-b", &b, "-C", "-t", "kc", "-p", "0", "-o", &format!("s@{ts}"), "-c", "1", "-f", "%o\\n"], None);
    assert_eq!(out.trim(), "0", "{out}");
    // A balanced consumer (consumer group) reads everything once; a second run of the same
    // group finds its offsets committed and reads nothing again.
    let group = ["-b", &b, "-G", "kcat-group", "-X", "auto.offset.reset=earliest", "-e", "-f", "%s\\n", "kc"];
    let (st, out, err) = kcat(&group, None);
    assert!(st.success(), "{err}");
    assert_eq!(out.lines().count(), 20, "{out}\n{err}");
    let (_, out, err) = kcat(&group, None);
    assert_eq!(out.lines().count(), 0, "committed offsets were used: {out}\n{err}");
}

#[test]
fn a_group_of_two_members_shares_partitions_without_loss_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, "");
    create(&server, "grp", 4);
    let line = run_client("group_two_members.py", &[&server.kafka.to_string(), "grp", "4", "3000", "g2"]);
    assert!(line.contains("\"delivered\": 3000"), "{line}");
}

#[test]
fn records_and_committed_offsets_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(&dir, "");
    create(&server, "rs", 3);
    run_client("produce_then_consume.py", &["produce", &server.kafka.to_string(), "rs", "500"]);
    assert!(server.terminate(Duration::from_secs(30)).is_some_and(|s| s.success()));
    let server = start(&dir, "");
    run_client("produce_then_consume.py", &["consume", &server.kafka.to_string(), "rs", "500"]);
    // The group committed its offsets: a later run of it finds nothing new.
    let (_, out, _) = kcat(
        &["-b", &server.kafka.to_string(), "-G", "after-restart", "-e", "-X", "auto.offset.reset=earliest", "rs"],
        None,
    );
    assert_eq!(out.lines().count(), 0, "{out}");
}

/// A TCP proxy that forwards Kafka traffic but, `drops` times, swallows a Produce response
/// and cuts the connection: the producer never hears of an append that happened.
fn dropping_proxy(listener: TcpListener, upstream: SocketAddr, drops: usize) -> Arc<AtomicUsize> {
    let budget = Arc::new(AtomicUsize::new(drops));
    let b = budget.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(upstream) else { continue };
            let apis: Arc<Mutex<HashMap<i32, i16>>> = Arc::default();
            let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let apis_w = apis.clone();
            std::thread::spawn(move || {
                while let Some(frame) = read_frame(&mut c_in) {
                    let api = i16::from_be_bytes([frame[4], frame[5]]);
                    let corr = i32::from_be_bytes([frame[8], frame[9], frame[10], frame[11]]);
                    apis_w.lock().unwrap().insert(corr, api);
                    if s_out.write_all(&frame).is_err() {
                        return;
                    }
                }
                let _ = s_out.shutdown(std::net::Shutdown::Both);
            });
            let b = b.clone();
            let (mut s_in, mut c_out) = (server, client);
            std::thread::spawn(move || {
                while let Some(frame) = read_frame(&mut s_in) {
                    let corr = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
                    let api = apis.lock().unwrap().remove(&corr);
                    if api == Some(0)
                        && b.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
                    {
                        let _ = c_out.shutdown(std::net::Shutdown::Both);
                        let _ = s_in.shutdown(std::net::Shutdown::Both);
                        return;
                    }
                    if c_out.write_all(&frame).is_err() {
                        return;
                    }
                }
                let _ = c_out.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    budget
}

/// One size-prefixed Kafka frame, prefix included.
fn read_frame(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let n = i32::from_be_bytes(len).max(0) as usize;
    let mut frame = vec![0u8; 4 + n];
    frame[..4].copy_from_slice(&len);
    s.read_exact(&mut frame[4..]).ok()?;
    Some(frame)
}

#[test]
fn an_idempotent_producer_retrying_through_lost_responses_writes_each_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_addr = proxy.local_addr().unwrap();
    // Clients are told to connect to the proxy (Kafka's advertised listener).
    let server = start(&dir, &format!("advertised_addr = \"{proxy_addr}\"\n"));
    create(&server, "idem", 1);
    let left = dropping_proxy(proxy, server.kafka, 2);
    run_client("idempotent_producer.py", &[&proxy_addr.to_string(), "idem", "1000"]);
    assert_eq!(left.load(Ordering::SeqCst), 0, "the proxy dropped two produce responses");
    let got = values(&server, "idem", 0);
    let want: Vec<String> = (0..1000).map(|i| format!("idem-{i}")).collect();
    assert_eq!(got.len(), 1000, "each record exactly once (retries were de-duplicated)");
    assert_eq!(got, want, "in order");
}

#[test]
fn typed_topics_take_json_from_kafka_and_refuse_invalid_events() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, "");
    let mut c = Client::connect(server.addr).unwrap();
    let mut spec = CreateTopic::new("ticks", 1);
    spec.schema = Some("ts TIMESTAMP NOT NULL, sym TEXT NOT NULL, px DOUBLE PRECISION".into());
    spec.event_time = Some("ts".into());
    c.create_topic(&spec).unwrap();
    let b = server.kafka.to_string();
    let good = "{\"ts\": \"2026-03-01T10:00:00Z\", \"sym\": \"ABC\", \"px\": 10.5}\n{\"ts\": 1772359201000, \"sym\": \"XYZ\"}\n";
    let (st, _, err) = kcat(&["-b", &b, "-P", "-t", "ticks"], Some(good.as_bytes()));
    assert!(st.success(), "{err}");
    let bad = "{\"ts\": \"2026-03-01T10:00:02Z\", \"sym\": 7}\n";
    let (_, _, err) = kcat(&["-b", &b, "-P", "-t", "ticks"], Some(bad.as_bytes()));
    // librdkafka's words for INVALID_RECORD.
    assert!(err.contains("Broker failed to validate record"), "{err}");
    let (_, out, _) = kcat(&["-b", &b, "-C", "-t", "ticks", "-e", "-f", "%s\\n"], None);
    let rows: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 2, "the invalid event was not written: {out}");
    assert_eq!(rows[0], serde_json::json!({"ts": "2026-03-01T10:00:00.000Z", "sym": "ABC", "px": 10.5}));
    assert_eq!(rows[1], serde_json::json!({"ts": "2026-03-01T10:00:01.000Z", "sym": "XYZ", "px": null}));
}

/// Sends raw bytes to the Kafka port on a fresh connection; returns what came back before
/// the server closed it (or 3 s passed).
fn hostile(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    hostile_for(addr, bytes, Duration::from_secs(3))
}

fn hostile_for(addr: SocketAddr, bytes: &[u8], wait: Duration) -> Vec<u8> {
    let Ok(mut s) = TcpStream::connect(addr) else { return Vec::new() };
    s.set_read_timeout(Some(wait)).unwrap();
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

fn kafka_frame(api: i16, version: i16, corr: i32, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&((body.len() + 10) as i32).to_be_bytes());
    f.extend_from_slice(&api.to_be_bytes());
    f.extend_from_slice(&version.to_be_bytes());
    f.extend_from_slice(&corr.to_be_bytes());
    f.extend_from_slice(&(-1i16).to_be_bytes()); // null client id (header v1)
    f.extend_from_slice(body);
    f
}

/// A Produce v7 request (header v1) carrying `records` for `topic` partition 0.
fn produce_frame(topic: &str, records: &[u8], corr: i32) -> Vec<u8> {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, TopicName};
    use kafka_protocol::protocol::{Encodable, StrBytes};
    let req =
        ProduceRequest::default().with_acks(-1).with_timeout_ms(5000).with_topic_data(vec![TopicProduceData::default(
        )
        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
        .with_partition_data(vec![PartitionProduceData::default()
            .with_index(0)
            .with_records(Some(bytes::Bytes::copy_from_slice(records)))])]);
    let mut body = bytes::BytesMut::new();
    req.encode(&mut body, 7).unwrap();
    kafka_frame(0, 7, corr, &body)
}

/// The error code of partition 0 in a Produce v7 response frame.
fn produce_error(reply: &[u8]) -> Option<i16> {
    use kafka_protocol::messages::ProduceResponse;
    use kafka_protocol::protocol::Decodable;
    let mut b = bytes::Bytes::copy_from_slice(reply.get(8..)?);
    let r = ProduceResponse::decode(&mut b, 7).ok()?;
    Some(r.responses.first()?.partition_responses.first()?.error_code)
}

/// Compressed batches each under the per-batch decompression cap still may not add up
/// past the request's budget (the larger of `request_bytes_max` and
/// `decompressed_bytes_max`): the request is refused as a whole, before anything is held
/// or written.
#[test]
fn a_produce_of_many_small_bombs_is_refused_as_a_whole() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, "request_bytes_max = 4194304\ndecompressed_bytes_max = 4194304\n");
    let mut spec = CreateTopic::new("roomy", 1);
    spec.batch_bytes_max = Some(64 << 20);
    Client::connect(server.addr).unwrap().create_topic(&spec).unwrap();
    let zeros = vec![0u8; 3 << 20];
    let bomb = sluice::server::kafka::record_batch::encode_batch_for_test(&[(0, None, Some(&zeros))], None, 1);
    let reply =
        hostile_for(server.kafka, &produce_frame("roomy", &[&bomb[..], &bomb].concat(), 21), Duration::from_secs(30));
    assert_eq!(produce_error(&reply), Some(10), "MESSAGE_TOO_LARGE: 6 MiB decompressed in one request");
    assert!(values(&server, "roomy", 0).is_empty(), "nothing written");
    // One such batch alone is within the budget.
    let reply = hostile_for(server.kafka, &produce_frame("roomy", &bomb, 22), Duration::from_secs(30));
    assert_eq!(produce_error(&reply), Some(0));
    assert_eq!(values(&server, "roomy", 0).len(), 1);
}

/// A Fetch naming one partition hundreds of times, each with a 2 GiB limit, and a 2 GiB
/// response limit: the reply (and what the server held to build it) stays within the
/// broker's response cap, and every entry still carries the partition's offsets.
#[test]
fn a_fetch_repeating_a_partition_stays_within_the_response_cap() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
    use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, "");
    create(&server, "big", 1);
    let mut c = Client::connect(server.addr).unwrap();
    for b in 0..4u64 {
        c.produce("big", 0, &sluice_tests::batch(b * 1_000, 1_000, 1_000, 0)).unwrap();
    }
    let entries = 300;
    let partitions: Vec<FetchPartition> = (0..entries)
        .map(|_| FetchPartition::default().with_partition(0).with_fetch_offset(0).with_partition_max_bytes(i32::MAX))
        .collect();
    let req = FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(i32::MAX)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string("big".into())))
            .with_partitions(partitions)]);
    let mut body = bytes::BytesMut::new();
    req.encode(&mut body, 11).unwrap();
    let mut s = TcpStream::connect(server.kafka).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(&kafka_frame(1, 11, 5, &body)).unwrap();
    let frame = read_frame(&mut s).expect("a fetch response");
    // Four ~1 MB batches per entry: without a budget across entries, 300 x 4 MB.
    assert!(frame.len() < (64 << 20) + (2 << 20), "a response of {} MiB", frame.len() >> 20);
    let mut b = bytes::Bytes::copy_from_slice(&frame[8..]);
    let r = FetchResponse::decode(&mut b, 11).unwrap();
    let parts = &r.responses[0].partitions;
    assert_eq!(parts.len(), entries);
    assert!(parts.iter().all(|p| p.error_code == 0 && p.high_watermark == 4_000), "offsets in every entry");
    let with_records = parts.iter().filter(|p| p.records.as_ref().is_some_and(|r| !r.is_empty())).count();
    assert!((1..entries).contains(&with_records), "{with_records} entries carried records");
    // The server is still serving.
    assert_eq!(values(&server, "big", 0).len(), 4_000);
}

#[test]
fn hostile_kafka_frames_leave_a_well_behaved_client_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, "");
    create(&server, "steady", 1);
    create(&server, "victim", 1);
    let kafka = server.kafka;
    let steady = std::thread::spawn(move || run_client("steady_client.py", &[&kafka.to_string(), "steady", "12"]));
    std::thread::sleep(Duration::from_secs(2));
    // Oversized (refused before allocating), negative, short, truncated.
    assert!(hostile(kafka, &(200i32 << 20).to_be_bytes()).is_empty(), "closed without a reply");
    assert!(hostile(kafka, &(-5i32).to_be_bytes()).is_empty());
    assert!(hostile(kafka, &[0, 0, 0, 3, 1, 2, 3]).is_empty());
    assert!(hostile(kafka, &[0, 0, 0, 100, 0, 3, 0, 0]).is_empty());
    // An unknown API, an unsupported version, a body that does not decode.
    assert!(hostile(kafka, &kafka_frame(999, 0, 1, &[])).is_empty());
    assert!(hostile(kafka, &kafka_frame(0, 99, 1, &[])).is_empty());
    // A Metadata v1 request claiming 50 million topics in 8 bytes: no giant allocation.
    let _ = hostile(kafka, &kafka_frame(3, 1, 7, &50_000_000i32.to_be_bytes()));
    // A decompression bomb: 100 MB of zeros in ~100 KB of gzip, past the 64 MiB cap.
    let zeros = vec![0u8; 100 << 20];
    let bomb = sluice::server::kafka::record_batch::encode_batch_for_test(&[(0, None, Some(&zeros))], None, 1);
    assert!(bomb.len() < 1 << 20);
    let reply = hostile(kafka, &produce_frame("victim", &bomb, 11));
    assert_eq!(produce_error(&reply), Some(10), "MESSAGE_TOO_LARGE for a decompression bomb");
    // A batch whose CRC does not match; a batch claiming two billion records.
    let mut corrupt = sluice::server::kafka::record_batch::encode_batch_for_test(&[(0, None, Some(b"x"))], None, 0);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    assert_eq!(produce_error(&hostile(kafka, &produce_frame("victim", &corrupt, 12))), Some(2), "CORRUPT_MESSAGE");
    let mut lying = sluice::server::kafka::record_batch::encode_batch_for_test(&[(0, None, Some(b"x"))], None, 0);
    lying[57..61].copy_from_slice(&2_000_000_000i32.to_be_bytes());
    lying[23..27].copy_from_slice(&1_999_999_999i32.to_be_bytes());
    let crc = crc32c::crc32c(&lying[21..]);
    lying[17..21].copy_from_slice(&crc.to_be_bytes());
    assert_eq!(produce_error(&hostile(kafka, &produce_frame("victim", &lying, 13))), Some(2));
    // Random frames: random bytes, and random bodies behind valid headers.
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for round in 0..300 {
        let len = (next() % 300) as usize;
        let body: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let frame = if round % 2 == 0 {
            let mut f = (len as i32).to_be_bytes().to_vec();
            f.extend_from_slice(&body);
            f
        } else {
            let apis = [0i16, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15, 16, 18, 19, 20, 22, 32];
            let api = apis[(next() % apis.len() as u64) as usize];
            kafka_frame(api, (next() % 4) as i16, round, &body)
        };
        // A random request may be a valid long-poll: do not wait out its deadline.
        let _ = hostile_for(kafka, &frame, Duration::from_millis(300));
    }
    let line = steady.join().expect("the well-behaved client saw no error and lost nothing");
    assert!(line.contains("records"), "{line}");
    assert!(values(&server, "victim", 0).is_empty(), "nothing hostile was appended");
    // The server is still healthy.
    let (st, _, err) = kcat(&["-b", &kafka.to_string(), "-L", "-t", "steady"], None);
    assert!(st.success(), "{err}");
}

#[test]
fn idle_and_stalled_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, "idle_ms = 1000\n");
    let started = std::time::Instant::now();
    // Half a frame, then silence: closed at the idle deadline.
    let mut s = TcpStream::connect(server.kafka).unwrap();
    s.write_all(&[0, 0, 0, 50, 0, 18]).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(s.read(&mut buf).unwrap_or(0), 0, "closed");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(8), "{waited:?}");
}
