//! The server as a user meets it: real `sluice serve` processes, real sockets, the CLI.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sluice::log::StartPosition;
use sluice::server::native::client::{decode_produced, Client, ClientError};
use sluice::server::native::protocol::{encode, CreateTopic, ErrorCode};
use sluice_tests::{batch, eventually, sluice_cli, value_of, Server};

fn spec(name: &str, partitions: u32) -> CreateTopic {
    CreateTopic::new(name, partitions)
}

fn api_code(e: ClientError) -> ErrorCode {
    match e {
        ClientError::Api(a) => a.code,
        other => panic!("expected a server error, got {other}"),
    }
}

#[test]
fn topic_admin_and_errors_over_the_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("d"));
    let mut c = Client::connect(server.addr).unwrap();
    let versions = c.api_versions().unwrap();
    assert_eq!(versions.len(), 9, "{versions:?}");
    let t = c.create_topic(&spec("a", 3)).unwrap();
    assert_eq!((t.name.as_str(), t.partitions), ("a", 3));
    c.create_topic(&spec("b", 1)).unwrap();
    assert_eq!(api_code(c.create_topic(&spec("a", 1)).unwrap_err()), ErrorCode::TopicExists);
    assert_eq!(api_code(c.create_topic(&spec("bad name", 1)).unwrap_err()), ErrorCode::InvalidConfig);
    assert_eq!(api_code(c.create_topic(&spec("zero", 0)).unwrap_err()), ErrorCode::InvalidConfig);
    let user_topics = |c: &mut Client| -> Vec<String> {
        c.list_topics().unwrap().into_iter().map(|t| t.name).filter(|n| !n.starts_with("__")).collect()
    };
    assert_eq!(user_topics(&mut c), ["a", "b"]);
    let (_, parts) = c.describe_topic("a").unwrap();
    assert_eq!(parts.iter().map(|p| p.partition).collect::<Vec<_>>(), [0, 1, 2], "every shard reports its partitions");
    assert_eq!(api_code(c.describe_topic("nope").unwrap_err()), ErrorCode::UnknownTopic);
    assert_eq!(api_code(c.produce("a", 3, &batch(0, 1, 10, 0)).unwrap_err()), ErrorCode::UnknownPartition);
    c.delete_topic("a").unwrap();
    assert_eq!(api_code(c.delete_topic("a").unwrap_err()), ErrorCode::UnknownTopic);
    assert_eq!(user_topics(&mut c), ["b"]);
    // Unsupported version: a clear error, and the connection keeps working.
    let mut frame = encode::list_topics(77);
    frame[6..8].copy_from_slice(&9u16.to_le_bytes());
    c.send(&frame).unwrap();
    let reply = c.recv().unwrap();
    assert_eq!(reply.header.correlation_id, 77);
    assert_eq!(reply.header.error.map(|e| e.code), Some(ErrorCode::UnsupportedVersion));
    assert_eq!(user_topics(&mut c), ["b"]);
}

#[test]
fn produce_fetch_by_offset_and_time_pipelined_across_shards() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("d"));
    let mut c = Client::connect(server.addr).unwrap();
    c.create_topic(&spec("t", 4)).unwrap();
    // 50 produces in flight on one connection, to partitions on both shards.
    let mut expected = std::collections::HashMap::new();
    for i in 0..50u64 {
        let corr = c.correlation();
        let part = (i % 4) as u32;
        c.send(&encode::produce(corr, "t", part, batch(i * 10, 10, 50, 1_000_000 + (i * 10) as i64).bytes())).unwrap();
        expected.insert(corr, (part, i));
    }
    let mut next_offset = [0u64; 4];
    let mut replies = Vec::new();
    for _ in 0..50 {
        let r = c.recv().unwrap();
        assert!(r.header.error.is_none(), "{:?}", r.header.error);
        replies.push((r.header.correlation_id, decode_produced(&r).unwrap()));
    }
    replies.sort_by_key(|(corr, _)| *corr);
    for (corr, p) in replies {
        let (part, _) = expected.remove(&corr).expect("a reply for every request, once");
        assert_eq!(p.record_count, 10);
        assert_eq!(p.base_offset % 10, 0);
        next_offset[part as usize] += 10;
    }
    assert!(expected.is_empty());
    assert_eq!(next_offset, [130, 130, 120, 120]);
    // Fetch by offset: the batch holding offset 25 of partition 1.
    let f = c.fetch("t", 1, StartPosition::Offset(25), 1, 0).unwrap();
    let first = f.records().next().unwrap();
    assert_eq!(first.0, 25);
    // By time: every batch of partition 0 holds records i*10.., timestamps 1_000_000 + n.
    let (o, _, end) = c.list_offsets("t", 0, StartPosition::Time(1_000_000 + 405)).unwrap();
    let f = c.fetch("t", 0, StartPosition::Offset(o), 1 << 20, 0).unwrap();
    assert!(f.records().next().unwrap().1.timestamp_ms.to_native() >= 1_000_405);
    assert_eq!(end, 130);
    // Every value read back is what was produced.
    let mut seen = 0;
    let mut from = StartPosition::Earliest;
    loop {
        let f = c.fetch("t", 2, from, 4096, 0).unwrap();
        for (_, r) in f.records() {
            let v = std::str::from_utf8(r.value.as_slice()).unwrap();
            let n: u64 = v[7..19].parse().unwrap();
            assert_eq!(r.value.as_slice(), value_of(n, 50).as_slice());
            seen += 1;
        }
        from = StartPosition::Offset(f.next_offset().0);
        if f.next_offset() >= f.visible_end {
            break;
        }
    }
    assert_eq!(seen, 120);
    // Out of range is an error naming the range.
    assert_eq!(
        api_code(c.fetch("t", 0, StartPosition::Offset(1000), 100, 0).unwrap_err()),
        ErrorCode::OffsetOutOfRange
    );
}

#[test]
fn long_poll_fetch_wakes_on_new_data() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("d"));
    let mut c = Client::connect(server.addr).unwrap();
    c.create_topic(&spec("lp", 1)).unwrap();
    let addr = server.addr;
    let waiter = std::thread::spawn(move || {
        let mut c = Client::connect(addr).unwrap();
        let started = Instant::now();
        let f = c.fetch("lp", 0, StartPosition::Latest, 1 << 20, 10_000).unwrap();
        (started.elapsed(), f.records().count())
    });
    std::thread::sleep(Duration::from_millis(300));
    c.produce("lp", 0, &batch(0, 5, 10, 0)).unwrap();
    let (waited, n) = waiter.join().unwrap();
    assert_eq!(n, 5);
    assert!(waited >= Duration::from_millis(250) && waited < Duration::from_secs(8), "{waited:?}");
    // With nothing arriving, the poll ends at its deadline with nothing.
    let started = Instant::now();
    let f = c.fetch("lp", 0, StartPosition::Latest, 1 << 20, 200).unwrap();
    assert!(f.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(150));
}

/// Sends raw bytes on a fresh connection; returns what came back before the server closed.
fn hostile(addr: std::net::SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

fn error_code_of(reply: &[u8]) -> Option<u16> {
    (reply.len() >= 10).then(|| u16::from_le_bytes([reply[8], reply[9]]))
}

#[test]
fn hostile_frames_get_errors_while_a_good_client_keeps_going() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("d"));
    let mut c = Client::connect(server.addr).unwrap();
    c.create_topic(&spec("good", 2)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let addr = server.addr;
    let good = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut c = Client::connect(addr).unwrap();
            let mut produced = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let p = c.produce("good", 0, &batch(produced, 10, 30, 0)).expect("good client produce");
                assert_eq!(p.base_offset, produced);
                produced += 10;
                let f =
                    c.fetch("good", 0, StartPosition::Offset(p.base_offset), 1 << 16, 0).expect("good client fetch");
                assert_eq!(f.records().next().unwrap().1.value.as_slice(), value_of(p.base_offset, 30).as_slice());
            }
            produced
        })
    };
    // Oversized: refused before allocating, with an error reply, then closed.
    let reply = hostile(addr, &(200u32 << 20).to_le_bytes());
    assert_eq!(error_code_of(&reply), Some(ErrorCode::FrameTooLarge as u16), "{reply:?}");
    let reply = hostile(addr, &u32::MAX.to_le_bytes());
    assert_eq!(error_code_of(&reply), Some(ErrorCode::FrameTooLarge as u16));
    // Shorter than a header.
    let reply = hostile(addr, &[3, 0, 0, 0, 1, 2, 3]);
    assert_eq!(error_code_of(&reply), Some(ErrorCode::MalformedRequest as u16));
    // Truncated: a length promising more than is sent, then EOF.
    assert!(hostile(addr, &[100, 0, 0, 0, 1, 2]).is_empty());
    // A produce whose payload is garbage: an InvalidBatch error, nothing appended.
    let mut garbage = encode::produce(5, "good", 1, &[0xAB; 512]);
    let reply = {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(&garbage).unwrap();
        let mut len = [0u8; 4];
        s.read_exact(&mut len).unwrap();
        let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
        s.read_exact(&mut body).unwrap();
        body
    };
    assert_eq!(u16::from_le_bytes([reply[4], reply[5]]), ErrorCode::InvalidBatch as u16);
    // Random frames with valid lengths: each gets an error reply or a close, never a crash.
    let mut rng = 0x1234_5678_u64;
    for _ in 0..300 {
        let len = (rng % 200) as usize;
        let mut frame = (len as u32).to_le_bytes().to_vec();
        for _ in 0..len {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            frame.push(rng as u8);
        }
        if len >= 2 && rng.is_multiple_of(3) {
            frame[4] = (rng % 9) as u8; // a valid api key, random rest
            frame[5] = 0;
        }
        let _ = hostile(addr, &frame);
    }
    garbage.truncate(20);
    let _ = hostile(addr, &garbage);
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let produced = good.join().expect("the well-behaved client saw no error");
    assert!(produced > 0);
    let (_, parts) = c.describe_topic("good").unwrap();
    assert_eq!(parts[0].written_end.0, produced, "nothing lost");
    assert_eq!(parts[1].written_end.0, 0, "nothing half-applied");
}

#[test]
fn sigterm_finishes_in_flight_appends_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let mut server = Server::start(&data);
    let mut c = Client::connect(server.addr).unwrap();
    c.create_topic(&spec("s", 2)).unwrap();
    let addr = server.addr;
    let producers: Vec<_> = (0..2u32)
        .map(|p| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr).unwrap();
                let mut acked = 0u64;
                while c.produce("s", p, &batch(acked, 20, 40, 0)).is_ok() {
                    acked += 20;
                }
                acked
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let status = server.terminate(Duration::from_secs(20)).expect("exits after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    let acked: Vec<u64> = producers.into_iter().map(|h| h.join().unwrap()).collect();
    let server = Server::start(&data);
    let mut c = Client::connect(server.addr).unwrap();
    let (_, parts) = c.describe_topic("s").unwrap();
    for p in 0..2 {
        assert!(parts[p].written_end.0 >= acked[p], "partition {p}: {} < acked {}", parts[p].written_end.0, acked[p]);
        assert!(acked[p] > 0);
    }
}

#[test]
fn cli_topic_produce_consume_and_inspect() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let mut server = Server::start(&data);
    let addr = server.addr.to_string();
    let a = ["--addr", addr.as_str()];
    let (st, out, err) = sluice_cli(
        &[&["topic", "create", "events", "--partitions", "2", "--durability", "interval:5"][..], &a].concat(),
        None,
    );
    assert!(st.success(), "{out}{err}");
    assert!(out.contains("created topic events"), "{out}");
    let (st, _, err) = sluice_cli(&[&["topic", "create", "events"][..], &a].concat(), None);
    assert!(!st.success() && err.contains("already exists"), "{err}");
    let (st, _, err) = sluice_cli(&[&["topic", "create", "x", "--durability", "fast"][..], &a].concat(), None);
    assert!(!st.success() && err.contains("unknown durability"), "{err}");
    let (st, out, _) = sluice_cli(&[&["topic", "list"][..], &a].concat(), None);
    assert!(st.success() && out.contains("events\tpartitions=2\tdurability=interval:5"), "{out}");
    // 100 lines on one partition, in order; then keyed lines spread by key.
    let lines: String = (0..100).map(|i| format!("line {i}\n")).collect();
    let (st, _, err) =
        sluice_cli(&[&["produce", "events", "--partition", "1"][..], &a].concat(), Some(lines.as_bytes()));
    assert!(st.success() && err.contains("produced 100 records"), "{err}");
    let (st, out, _) =
        sluice_cli(&[&["consume", "events", "--partition", "1", "--from", "earliest"][..], &a].concat(), None);
    assert!(st.success());
    assert_eq!(out, lines);
    let (_, out, _) =
        sluice_cli(&[&["consume", "events", "--partition", "1", "--from", "offset:95"][..], &a].concat(), None);
    assert_eq!(out, "line 95\nline 96\nline 97\nline 98\nline 99\n");
    let (_, out, _) = sluice_cli(
        &[&["consume", "events", "--partition", "1", "--from", "earliest", "--max", "3"][..], &a].concat(),
        None,
    );
    assert_eq!(out, "line 0\nline 1\nline 2\n");
    let (_, out, _) =
        sluice_cli(&[&["consume", "events", "--from", "time:2000-01-01T00:00:00Z"][..], &a].concat(), None);
    assert_eq!(out.lines().count(), 100, "every record is after 2000");
    let (_, out, _) =
        sluice_cli(&[&["consume", "events", "--from", "time:2100-01-01T00:00:00Z"][..], &a].concat(), None);
    assert!(out.is_empty());
    let (st, _, err) = sluice_cli(&[&["consume", "events", "--from", "yesterday"][..], &a].concat(), None);
    assert!(!st.success() && err.contains("bad start"), "{err}");
    let keyed: String = (0..50).map(|i| format!("k{}:v{i}\n", i % 5)).collect();
    let (st, _, _) =
        sluice_cli(&[&["produce", "events", "--key-separator", ":"][..], &a].concat(), Some(keyed.as_bytes()));
    assert!(st.success());
    let (_, out, _) = sluice_cli(&[&["consume", "events", "--verbose"][..], &a].concat(), None);
    assert_eq!(out.lines().count(), 150);
    assert!(out.lines().filter(|l| l.contains("\tk3\t")).count() == 10);
    let (st, out, _) = sluice_cli(&[&["topic", "describe", "events"][..], &a].concat(), None);
    assert!(st.success() && out.contains("partition 1:"), "{out}");
    assert!(server.terminate(Duration::from_secs(20)).is_some_and(|s| s.success()));
    // Offline inspection of what the server left.
    let part = std::fs::read_dir(data.join("topics/events"))
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| e.path().is_dir())
        .unwrap()
        .path();
    let untouched = std::fs::metadata(&part).unwrap().modified().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let (st, out, _) = sluice_cli(&["inspect", part.to_str().unwrap()], None);
    assert!(st.success(), "{out}");
    assert!(out.contains("verified:"), "{out}");
    // Reading writes nothing there (not even a device probe): read-only copies inspect too.
    assert_eq!(std::fs::metadata(&part).unwrap().modified().unwrap(), untouched, "inspect wrote into the directory");
    let seg = part.join(sluice::log::log_file_name(0));
    let mut bytes = std::fs::read(&seg).unwrap();
    if bytes.len() > 4096 + 100 {
        bytes[4096 + 100] ^= 0xff;
        std::fs::write(&seg, bytes).unwrap();
        let (st, out, _) = sluice_cli(&["inspect", seg.to_str().unwrap()], None);
        assert_eq!(st.code(), Some(2), "{out}");
        assert!(out.contains("PROBLEM at byte 4096"), "{out}");
    }
}

#[test]
fn second_server_on_the_same_directory_and_bad_config_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let _server = Server::start(&data);
    let (st, _, err) = sluice_cli(
        &[
            "serve",
            "--native-addr",
            "127.0.0.1:0",
            "--kafka-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        None,
    );
    assert!(!st.success() && err.contains("in use by another process"), "{err}");
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "shards = \"many\"\n").unwrap();
    let (st, _, err) = sluice_cli(&["serve", "--config", cfg.to_str().unwrap()], None);
    assert!(!st.success() && err.contains("bad config"), "{err}");
    std::fs::write(&cfg, "native_port = 1\n").unwrap();
    let (st, _, err) = sluice_cli(&["serve", "--config", cfg.to_str().unwrap()], None);
    assert!(!st.success() && err.contains("unknown field"), "{err}");
    for zero in ["idle_ms = 0\n", "[kafka]\nidle_ms = 0\n"] {
        std::fs::write(&cfg, zero).unwrap();
        let (st, _, err) = sluice_cli(&["serve", "--config", cfg.to_str().unwrap()], None);
        assert!(!st.success() && err.contains("idle_ms must be at least"), "{zero}: {err}");
    }
    for (bad, says) in [
        ("connections_max = 0\n", "connections_max must be at least 1"),
        ("http_body_bytes_max = 0\n", "http_body_bytes_max must be between"),
        ("frame_bytes_max = 4294967296\n", "frame_bytes_max must be between"),
        ("[kafka]\ndecompressed_bytes_max = 0\n", "kafka.decompressed_bytes_max must be between"),
    ] {
        std::fs::write(&cfg, bad).unwrap();
        let (st, _, err) = sluice_cli(&["serve", "--config", cfg.to_str().unwrap()], None);
        assert!(!st.success() && err.contains(says), "{bad}: {err}");
    }
    let (st, _, err) = sluice_cli(&["topic", "list", "--addr", "127.0.0.1:1"], None);
    assert!(!st.success() && err.contains("cannot reach the server"), "{err}");
}

#[test]
fn config_file_sets_address_and_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("from-config");
    let cfg = dir.path().join("sluice.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = {:?}\nnative_addr = \"127.0.0.1:0\"\nkafka_addr = \"127.0.0.1:0\"\nhttp_addr = \"127.0.0.1:0\"\nshards = 1\n",
            data.to_str().unwrap()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(sluice_tests::sluice_bin())
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    assert!(line.starts_with("sluice ready native=127.0.0.1:"), "{line}");
    assert!(data.join("topics").is_dir());
    let _ = child.kill();
    let _ = child.wait();
}

/// Regression: glommio's accept first tries accept(2) on the listening socket; if that
/// socket were blocking, an idle shard would block in it and never serve its peers, so a
/// request needing two shards hung until another connection arrived.
#[test]
fn a_single_connection_is_served_by_every_shard() {
    for round in 0..6 {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(&dir.path().join("d"));
        let mut c = Client::connect(server.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.create_topic(&spec("both", 4)).unwrap_or_else(|e| panic!("round {round}: {e}"));
        for p in 0..4 {
            c.produce("both", p, &batch(0, 1, 10, 0)).unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
        let (_, parts) = c.describe_topic("both").unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(parts.len(), 4);
        // The race is narrow; check its precondition directly: the listening socket
        // every shard accepts on must be non-blocking.
        assert!(listening_sockets_nonblocking(server.pid()), "round {round}: a listening socket is blocking");
    }
}

/// True when every listening TCP socket of process `pid` has O_NONBLOCK (and there is one).
fn listening_sockets_nonblocking(pid: u32) -> bool {
    let tcp = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap();
    let listening: Vec<String> = tcp
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(3) == Some(&"0A")).then(|| f[9].to_string())
        })
        .collect();
    let mut found = 0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
        let target = std::fs::read_link(entry.path()).map(|t| t.to_string_lossy().into_owned()).unwrap_or_default();
        let Some(inode) = target.strip_prefix("socket:[").and_then(|t| t.strip_suffix(']')) else { continue };
        if !listening.iter().any(|l| l == inode) {
            continue;
        }
        let info =
            std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", entry.file_name().to_string_lossy())).unwrap();
        let flags = info.lines().find_map(|l| l.strip_prefix("flags:")).map(str::trim).unwrap_or("0");
        let flags = u32::from_str_radix(flags, 8).unwrap();
        if flags & libc::O_NONBLOCK as u32 == 0 {
            return false;
        }
        found += 1;
    }
    found > 0
}

/// Idle connections are closed after `idle_ms`; past `connections_max`, new connections
/// are refused while existing ones keep being served.
#[test]
fn idle_deadline_and_connection_limit_from_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("limits.toml");
    // One shard so the connection limit is exact.
    std::fs::write(&cfg, "idle_ms = 300\nconnections_max = 2\nshards = 1\n").unwrap();
    let server = Server::start_with(&dir.path().join("d"), &["--config", cfg.to_str().unwrap(), "--shards", "1"]);
    let mut a = Client::connect(server.addr).unwrap();
    let mut b = Client::connect(server.addr).unwrap();
    assert_eq!(a.api_versions().unwrap().len(), sluice::server::native::protocol::ApiKey::ALL.len());
    assert_eq!(b.api_versions().unwrap().len(), sluice::server::native::protocol::ApiKey::ALL.len());
    // A third connection is accepted by the kernel, then closed by the server unanswered.
    let mut c = TcpStream::connect(server.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = c.write_all(&encode::api_versions(1));
    let mut buf = [0u8; 16];
    assert!(matches!(c.read(&mut buf), Ok(0) | Err(_)), "over the limit: closed without a reply");
    // The first two still work; then, left idle, they are closed.
    assert_eq!(a.api_versions().unwrap().len(), sluice::server::native::protocol::ApiKey::ALL.len());
    std::thread::sleep(Duration::from_millis(800));
    assert!(a.api_versions().is_err(), "an idle connection is closed");
    // Room again: a new connection is served.
    let mut d = Client::connect(server.addr).unwrap();
    assert_eq!(d.api_versions().unwrap().len(), sluice::server::native::protocol::ApiKey::ALL.len());
}

/// A damaged topic metadata file stops the server with an error naming the file, rather
/// than serving without the topic (re-creating it would destroy recoverable data).
#[test]
fn corrupt_topic_metadata_is_reported_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    {
        let mut server = Server::start(&data);
        Client::connect(server.addr).unwrap().create_topic(&spec("meta", 1)).unwrap();
        assert!(server.terminate(Duration::from_secs(20)).is_some_and(|s| s.success()));
    }
    let meta = data.join("topics/meta/topic.meta");
    let mut bytes = std::fs::read(&meta).unwrap();
    bytes[20] ^= 0x40;
    std::fs::write(&meta, bytes).unwrap();
    let (st, out, err) = sluice_cli(
        &[
            "serve",
            "--native-addr",
            "127.0.0.1:0",
            "--kafka-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        None,
    );
    assert!(!st.success(), "{out}");
    assert!(err.contains("topics/meta/topic.meta") && err.contains("checksum"), "{err}");
}

/// A typed topic declares its schema at creation; bad declarations get clear errors; the
/// schema is durable.
#[test]
fn typed_topics_declare_a_schema() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let mut server = Server::start(&data);
    let addr = server.addr.to_string();
    let a = ["--addr", addr.as_str()];
    let decl = "ts TIMESTAMP NOT NULL, symbol TEXT NOT NULL, price DOUBLE PRECISION, qty INT DEFAULT 1";
    let (st, out, err) =
        sluice_cli(&[&["topic", "create", "ticks", "--schema", decl, "--event-time", "ts"][..], &a].concat(), None);
    assert!(st.success(), "{out}{err}");
    let (_, out, _) = sluice_cli(&[&["topic", "describe", "ticks"][..], &a].concat(), None);
    assert!(
        out.contains(
            "schema v1: ts TIMESTAMP NOT NULL, symbol TEXT NOT NULL, price DOUBLE PRECISION, qty INT DEFAULT 1 event_time=ts"
        ),
        "{out}"
    );
    let (st, _, err) = sluice_cli(&[&["topic", "create", "bad", "--schema", "id UUID"][..], &a].concat(), None);
    assert!(!st.success() && err.contains("invalid schema: unknown column type 'UUID'"), "{err}");
    let (st, _, err) =
        sluice_cli(&[&["topic", "create", "bad", "--schema", "id INT", "--event-time", "id"][..], &a].concat(), None);
    assert!(!st.success() && err.contains("must be TIMESTAMP or BIGINT"), "{err}");
    let (st, _, err) = sluice_cli(&[&["topic", "create", "bad", "--event-time", "ts"][..], &a].concat(), None);
    assert!(!st.success() && err.contains("needs a schema"), "{err}");
    // Rows through the CLI: JSON lines in, checked; JSON lines out.
    let lines = "{\"ts\": \"2026-02-03T04:05:06Z\", \"symbol\": \"AB\", \"price\": 2.5}\n{\"ts\": 7, \"symbol\": \"CD\", \"qty\": 9}\n";
    let (st, _, err) = sluice_cli(&[&["produce", "ticks", "--key", "symbol"][..], &a].concat(), Some(lines.as_bytes()));
    assert!(st.success(), "{err}");
    let (_, out, _) = sluice_cli(&[&["consume", "ticks"][..], &a].concat(), None);
    let rows: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(
        rows.contains(&serde_json::json!({"ts": "2026-02-03T04:05:06.000Z", "symbol": "AB", "price": 2.5, "qty": 1}))
    );
    assert!(
        rows.contains(&serde_json::json!({"ts": "1970-01-01T00:00:00.007Z", "symbol": "CD", "price": null, "qty": 9}))
    );
    let (st, _, err) = sluice_cli(&[&["produce", "ticks"][..], &a].concat(), Some(b"{\"ts\": 1}\n"));
    assert!(!st.success() && err.contains("field 'symbol'"), "{err}");
    // Raw records are refused by a typed topic.
    let raw = Client::connect(server.addr).unwrap().produce("ticks", 0, &batch(0, 1, 10, 0)).unwrap_err();
    assert_eq!(api_code(raw), ErrorCode::InvalidBatch);
    assert!(server.terminate(Duration::from_secs(20)).is_some_and(|s| s.success()));
    let server = Server::start(&data);
    let (config, _) = Client::connect(server.addr).unwrap().describe_topic("ticks").unwrap();
    let schema = config.schema().expect("schema survives a restart");
    assert_eq!(
        schema.declaration(),
        "ts TIMESTAMP NOT NULL, symbol TEXT NOT NULL, price DOUBLE PRECISION, qty INT DEFAULT 1"
    );
    assert_eq!(schema.event_time, Some(0));
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).expect("VmRSS");
    kb.trim().trim_end_matches("kB").trim().parse::<u64>().unwrap() * 1024
}

/// A peer that announces a huge frame and then sends nothing holds no more than the first
/// chunk of a buffer (native and Kafka listeners), and everyone else is still served.
#[test]
fn announced_frames_cost_memory_only_as_their_bytes_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("d"));
    let mut c = Client::connect(server.addr).unwrap();
    c.create_topic(&spec("m", 1)).unwrap();
    let before = rss_bytes(server.pid());
    let mut silent = Vec::new();
    for i in 0..40 {
        let (addr, len) = if i % 2 == 0 {
            (server.addr, (99u32 << 20).to_le_bytes())
        } else {
            (server.kafka, (99i32 << 20).to_be_bytes())
        };
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(&len).unwrap();
        s.write_all(&[1u8; 100]).unwrap();
        silent.push(s);
    }
    // Still served, and the silent peers were all read by now.
    c.produce("m", 0, &batch(0, 3, 10, 0)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let grown = rss_bytes(server.pid()).saturating_sub(before);
    // Zero-filling the announced lengths up front held 40 x 99 MiB.
    assert!(grown < 200 << 20, "RSS grew by {} MiB", grown >> 20);
    drop(silent);
}

/// Deleting: the internal offsets topic is refused on the native door too; a topic with a
/// name of the longest allowed length is deleted for good (its trash name fits NAME_MAX).
#[test]
fn internal_topics_stay_and_long_named_topics_go_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let mut server = Server::start(&data);
    let mut c = Client::connect(server.addr).unwrap();
    let err = c.delete_topic("__consumer_offsets").unwrap_err();
    assert!(err.to_string().contains("internal topic"), "{err}");
    let long = "t".repeat(249);
    c.create_topic(&spec(&long, 1)).unwrap();
    c.produce(&long, 0, &batch(0, 3, 10, 0)).unwrap();
    c.delete_topic(&long).unwrap();
    drop(c);
    assert!(server.terminate(Duration::from_secs(20)).is_some_and(|s| s.success()));
    let server = Server::start(&data);
    let mut c = Client::connect(server.addr).unwrap();
    let names: Vec<String> = c.list_topics().unwrap().into_iter().map(|t| t.name).collect();
    assert!(!names.contains(&long), "the deleted topic came back: {names:?}");
    assert!(names.iter().any(|n| n == "__consumer_offsets"), "{names:?}");
}

/// Runs `sluice serve` over `data` and returns its exit status and stderr, or `None` if
/// it came up instead (then it is stopped).
fn serve_until_exit(data: &std::path::Path) -> Option<(std::process::ExitStatus, String)> {
    let mut child = std::process::Command::new(sluice_tests::sluice_bin())
        .args(["serve", "--native-addr", "127.0.0.1:0", "--kafka-addr", "127.0.0.1:0"])
        .args(["--http-addr", "127.0.0.1:0", "--pg-addr", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line);
    if line.starts_with("sluice ready") {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    }
    let out = child.wait_with_output().unwrap();
    Some((out.status, String::from_utf8_lossy(&out.stderr).into_owned()))
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A topic or view directory copied or renamed by hand (a backup left beside it) holds
/// metadata naming another directory: the server refuses to start and says which,
/// instead of opening one topic twice or leaving the real data unseen.
#[test]
fn a_copied_topic_or_view_directory_is_refused_at_start_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    {
        let server = Server::start(&data);
        let (ok, body) =
            sluice_tests::sql(server.http, "CREATE TOPIC orders (k BIGINT, v BIGINT) WITH (partitions = 1)");
        assert!(ok, "{body}");
        let (ok, body) = sluice_tests::sql(
            server.http,
            "CREATE MATERIALIZED VIEW totals AS SELECT k, sum(v) AS s FROM orders GROUP BY k",
        );
        assert!(ok, "{body}");
    }
    for (kind, from, to, says) in [
        ("topics", "orders", "orders.bak", "holds the metadata of topic `orders`"),
        ("views", "totals", "totals-old", "holds the definition of view `totals`"),
    ] {
        let copy = data.join(kind).join(to);
        copy_dir(&data.join(kind).join(from), &copy);
        let (status, stderr) = serve_until_exit(&data).expect("the server refuses to start");
        assert!(!status.success() && stderr.contains(to) && stderr.contains(says), "{status}: {stderr}");
        std::fs::remove_dir_all(&copy).unwrap();
    }
    assert!(serve_until_exit(&data).is_none(), "with the copies gone it starts");
}

/// A log put back from an older copy under views whose checkpoints count more: each view
/// is built again from the log (the truth) instead of going on from a position the log
/// has not reached, which would skip whatever is appended there next.
#[test]
fn a_view_whose_checkpoint_is_ahead_of_the_log_is_built_again_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let saved = dir.path().join("orders-then");
    let totals = |server: &Server| sluice_tests::sql_rows(server.http, "SELECT k, n, s FROM totals ORDER BY k");
    let mut server = Server::start(&data);
    sluice_tests::sql_rows(
        server.http,
        "CREATE TOPIC orders (k BIGINT, v BIGINT) WITH (partitions = 1);
         CREATE MATERIALIZED VIEW totals AS SELECT k, count(*) AS n, sum(v) AS s FROM orders GROUP BY k;
         INSERT INTO orders VALUES (1, 10), (2, 20), (1, 5);",
    );
    assert!(server.terminate(Duration::from_secs(20)).is_some_and(|s| s.success()));
    copy_dir(&data.join("topics").join("orders"), &saved);
    let mut server = Server::start(&data);
    sluice_tests::sql_rows(server.http, "INSERT INTO orders VALUES (1, 100), (3, 30), (3, 300)");
    let after_six = || {
        vec![
            vec![json!(1), json!(3), json!(115)],
            vec![json!(2), json!(1), json!(20)],
            vec![json!(3), json!(2), json!(330)],
        ]
    };
    assert!(eventually(Duration::from_secs(10), || totals(&server) == after_six()), "{:?}", totals(&server));
    // Stopping takes a last checkpoint (covering all six rows); then the old log goes back.
    assert!(server.terminate(Duration::from_secs(20)).is_some_and(|s| s.success()));
    std::fs::remove_dir_all(data.join("topics").join("orders")).unwrap();
    copy_dir(&saved, &data.join("topics").join("orders"));
    let server = Server::start(&data);
    let from_log = || vec![vec![json!(1), json!(2), json!(15)], vec![json!(2), json!(1), json!(20)]];
    assert!(eventually(Duration::from_secs(10), || totals(&server) == from_log()), "{:?}", totals(&server));
    // What is appended now (at offsets the stale checkpoint claimed) counts.
    sluice_tests::sql_rows(server.http, "INSERT INTO orders VALUES (2, 2)");
    let expected = vec![vec![json!(1), json!(2), json!(15)], vec![json!(2), json!(2), json!(22)]];
    assert!(eventually(Duration::from_secs(10), || totals(&server) == expected), "{:?}", totals(&server));
    let log = std::fs::read_to_string(data.with_extension("stderr.log")).unwrap();
    assert!(log.contains("the checkpoint is ahead of the log"), "{log}");
}
