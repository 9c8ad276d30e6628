//! Benchmarks of Sluice, each as ratios against a yardstick measured in the same run on
//! the same disk. Binaries (`src/bin/`): `log`, `kafka`, `views`, `rebuild`, `fold`.

pub mod events;
pub mod raw_disk;
pub mod raw_net;

use std::path::Path;

use hdrhistogram::Histogram;

/// Every benchmark binary links this library, so this one declaration gives them all the
/// server's allocator (built without transparent huge pages, like the server).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A latency histogram in microseconds: 1 us .. 60 s, 3 significant figures.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

/// p50 / p99 / p99.9 / max of a histogram, as a JSON object.
pub fn percentiles_json(h: &Histogram<u64>) -> serde_json::Value {
    serde_json::json!({
        "p50": h.value_at_quantile(0.50),
        "p99": h.value_at_quantile(0.99),
        "p999": h.value_at_quantile(0.999),
        "max": h.max(),
        "count": h.len(),
    })
}

pub fn describe(h: &Histogram<u64>) -> String {
    format!(
        "p50={}us p99={}us p99.9={}us max={}us (n={})",
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max(),
        h.len()
    )
}

/// Returns at `due`: sleeps until just before it, then spins. An open-loop client must
/// not oversleep: latency counts from when a request was due, so a late send would be
/// charged to the server.
pub fn wait_until(due: std::time::Instant) {
    let early = std::time::Duration::from_micros(200);
    let now = std::time::Instant::now();
    if due > now + early {
        std::thread::sleep(due - now - early);
    }
    while std::time::Instant::now() < due {
        std::hint::spin_loop();
    }
}

/// Peak resident set size of this process (VmHWM), in MiB.
pub fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Total bytes of log in the `.log` files below `dir`, and their paths (sorted). An active
/// segment's file may end in zeros reserved ahead of its writes: those are not log.
pub fn segment_files(dir: &Path) -> (u64, Vec<std::path::PathBuf>) {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "log") {
                files.push(p);
            }
        }
    }
    files.sort();
    // The engine's own inspection says where each file's log ends (it checks every batch
    // on the way; not timed).
    let paths = files.clone();
    let bytes = sluice::runtime::run_single(move || async move {
        let storage = sluice::io::Storage::real();
        let mut bytes = 0;
        for p in &paths {
            let r = sluice::log::inspect::inspect_segment(&storage, p).await.expect("inspect a segment");
            assert!(r.problem.is_none(), "{}: {:?}", p.display(), r.problem);
            bytes += r.file_len - r.reserved_bytes;
        }
        bytes
    })
    .expect("an executor");
    (bytes, files)
}

/// One HTTP/1.1 request (`Connection: close`) to a local server: (status, body). For
/// benchmark set-up, not for anything measured.
pub fn http_request(addr: std::net::SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect http");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).and_then(|_| s.write_all(body)).expect("send http");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (_, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (status, body.to_string())
}

/// Runs SQL over HTTP; panics unless it succeeds. Returns the last statement's rows.
pub fn sql(addr: std::net::SocketAddr, script: &str) -> Vec<Vec<serde_json::Value>> {
    let (status, body) = http_request(addr, "POST", "/sql", script.as_bytes());
    assert_eq!(status, 200, "{script}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let last = v["results"].as_array().and_then(|r| r.last()).cloned().unwrap_or_default();
    last["rows"]
        .as_array()
        .map(|rows| rows.iter().map(|r| r.as_array().cloned().unwrap_or_default()).collect())
        .unwrap_or_default()
}
