//! Helpers shared by the integration tests: running code on a glommio executor, making
//! records, and starting real `sluice` processes.

use std::future::Future;

use sluice::record::{BatchBuilder, BatchPayload, RawRecord};

/// Runs an async test body on a fresh glommio executor (real io_uring) and returns its result.
pub fn run_local<F, Fut, T>(f: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .spawn(f)
        .expect("spawn executor")
        .join()
        .expect("executor panicked")
}

/// The value of record `i` in test streams: recognisable and checkable.
pub fn value_of(i: u64, len: usize) -> Vec<u8> {
    let mut v = format!("record-{i:012}-").into_bytes();
    while v.len() < len {
        v.push(b'a' + (i % 26) as u8);
    }
    v.truncate(len.max(20));
    v
}

/// A batch of `count` records numbered from `first`, timestamps `ts0 + i`.
pub fn batch(first: u64, count: u64, value_len: usize, ts0: i64) -> BatchPayload {
    let mut b = BatchBuilder::new();
    for i in first..first + count {
        let key = format!("key-{}", i % 17);
        b.push(RawRecord::new(ts0 + i as i64, Some(key.as_bytes()), &value_of(i, value_len)));
    }
    b.finish().expect("batch")
}

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

/// The `sluice` binary of this build profile, built on first use (cargo is a no-op when
/// it is up to date), so `cargo test` alone runs the process tests.
pub fn sluice_bin() -> PathBuf {
    static BUILD: Once = Once::new();
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>").to_path_buf();
    BUILD.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "sluice", "--bin", "sluice"]);
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "building the sluice binary failed");
    });
    let bin = profile_dir.join("sluice");
    assert!(bin.exists(), "no sluice binary at {}", bin.display());
    bin
}

/// A real `sluice serve` process on ports picked by the OS.
pub struct Server {
    child: Option<Child>,
    /// The native protocol's address.
    pub addr: SocketAddr,
    /// The Kafka listener's address.
    pub kafka: SocketAddr,
    /// The HTTP listener's address.
    pub http: SocketAddr,
    /// The Postgres listener's address.
    pub pg: SocketAddr,
    pub data_dir: PathBuf,
}

/// The `name=ADDR` fields of a ready line.
fn ready_field(line: &str, name: &str) -> Option<SocketAddr> {
    line.trim().strip_prefix("sluice ready ")?.split_whitespace().find_map(|f| {
        let (k, v) = f.split_once('=')?;
        (k == name).then(|| v.parse().ok()).flatten()
    })
}

impl Server {
    pub fn start(data_dir: &Path) -> Server {
        Self::start_with(data_dir, &[])
    }

    pub fn start_with(data_dir: &Path, extra: &[&str]) -> Server {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.with_extension("stderr.log"))
            .expect("server log file");
        // Two shards unless the caller says otherwise, so cross-shard paths are exercised.
        let shards: &[&str] = if extra.contains(&"--shards") { &[] } else { &["--shards", "2"] };
        let mut child = Command::new(sluice_bin())
            .args([
                "serve",
                "--native-addr",
                "127.0.0.1:0",
                "--kafka-addr",
                "127.0.0.1:0",
                "--http-addr",
                "127.0.0.1:0",
                "--pg-addr",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(data_dir)
            .args(shards)
            .args(extra)
            .env(
                "SLUICE_LOG",
                std::env::var("SLUICE_LOG").unwrap_or_else(|_| {
                    "warn,glommio=error,sluice::server::views=info,sluice::server::rebuild=info".into()
                }),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start sluice serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("sluice serve did not become ready within 60 s")
        });
        let fields = (
            ready_field(&line, "native"),
            ready_field(&line, "kafka"),
            ready_field(&line, "http"),
            ready_field(&line, "pg"),
        );
        let (Some(addr), Some(kafka), Some(http), Some(pg)) = fields else {
            let _ = child.kill();
            panic!("unexpected ready line {line:?}; see {}", data_dir.with_extension("stderr.log").display())
        };
        Server { child: Some(child), addr, kafka, http, pg, data_dir: data_dir.to_path_buf() }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGKILL: no chance to sync or clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits (up to `timeout`) for the exit status.
    /// An exit that is not clean prints the server's stderr, so a failing test shows why.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut c = self.child.take()?;
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Ok(Some(status)) = c.try_wait() {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        if !status.is_some_and(|s| s.success()) {
            let log = std::fs::read_to_string(self.data_dir.with_extension("stderr.log")).unwrap_or_default();
            let tail: String = log.chars().rev().take(8000).collect::<Vec<_>>().into_iter().rev().collect();
            eprintln!("sluice serve ended with {status:?} after SIGTERM; its stderr ends with:\n{tail}");
        }
        status
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs the `sluice` CLI with `args` (and `stdin`), returning (status, stdout, stderr).
pub fn sluice_cli(args: &[&str], stdin: Option<&[u8]>) -> (ExitStatus, String, String) {
    let mut child = Command::new(sluice_bin())
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sluice");
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        std::io::Write::write_all(&mut pipe, input).expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait sluice");
    (out.status, String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repository root").to_path_buf()
}

/// Installs the real third-party clients (kcat, confluent-kafka, kafka-python, psycopg,
/// duckdb) with the project's own idempotent script, once per test process.
pub fn ensure_clients() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let script = repo_root().join("tools/install-clients.sh");
        let status = Command::new("bash").arg(&script).status().expect("run tools/install-clients.sh");
        assert!(status.success(), "tools/install-clients.sh failed");
    });
}

/// Runs `tests/clients/<script>` with python3; panics unless it prints `OK ...` and exits 0.
/// Returns the OK line.
pub fn run_client(script: &str, args: &[&str]) -> String {
    ensure_clients();
    let dir = repo_root().join("tests/clients");
    let out = Command::new("python3").arg(dir.join(script)).args(args).current_dir(&dir).output().expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let ok = stdout.lines().find(|l| l.starts_with("OK "));
    match (out.status.success(), ok) {
        (true, Some(line)) => line.to_string(),
        _ => panic!("{script} {args:?} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status),
    }
}

/// Runs kcat (librdkafka 2.0.2 on Debian 12) with `args` and `stdin`: (status, stdout, stderr).
pub fn kcat(args: &[&str], stdin: Option<&[u8]>) -> (ExitStatus, String, String) {
    ensure_clients();
    let mut child = Command::new("kcat")
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kcat");
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        std::io::Write::write_all(&mut pipe, input).expect("write kcat stdin");
    }
    let out = child.wait_with_output().expect("wait kcat");
    (out.status, String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Writes a server config file next to `data_dir` and returns its path.
pub fn config_file(data_dir: &Path, toml: &str) -> PathBuf {
    let path = data_dir.with_extension("toml");
    std::fs::write(&path, toml).expect("write config");
    path
}

/// One HTTP/1.1 request (`Connection: close`): (status, body).
pub fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect http");
    s.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    // The server may answer (and close) before the body is all sent: a refused upload.
    let _ = s.write_all(head.as_bytes()).and_then(|_| s.write_all(body));
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (headers, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if headers.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Runs a SQL script over HTTP (`POST /sql`): the JSON answer, and whether it succeeded.
pub fn sql(http_addr: SocketAddr, script: &str) -> (bool, serde_json::Value) {
    let (status, body) = http(http_addr, "POST", "/sql", script.as_bytes());
    let v: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|_| panic!("bad /sql answer {status}: {body}"));
    (status == 200, v)
}

/// Runs a SQL script that must succeed; returns the rows of its last statement.
pub fn sql_rows(http_addr: SocketAddr, script: &str) -> Vec<Vec<serde_json::Value>> {
    let (ok, v) = sql(http_addr, script);
    assert!(ok, "SQL failed: {script}\n{v}");
    let last = v["results"].as_array().and_then(|r| r.last()).cloned().unwrap_or_default();
    last["rows"]
        .as_array()
        .map(|rows| rows.iter().map(|r| r.as_array().cloned().unwrap_or_default()).collect())
        .unwrap_or_default()
}

/// Runs a SQL script that must fail; returns the SQLSTATE and the message.
pub fn sql_error(http_addr: SocketAddr, script: &str) -> (String, String) {
    let (ok, v) = sql(http_addr, script);
    assert!(!ok, "SQL should have failed: {script}\n{v}");
    (
        v["error"]["code"].as_str().unwrap_or_default().to_string(),
        v["error"]["message"].as_str().unwrap_or_default().to_string(),
    )
}

/// Waits (up to `timeout`) until `check` holds, polling.
pub fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
