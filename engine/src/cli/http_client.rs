//! A small blocking HTTP/1.1 client for the CLI's calls to the server's HTTP endpoint
//! (one request per connection; bodies by length, chunks, or to the end).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long the CLI waits for the server.
const HTTP_TIMEOUT_MS: u64 = 30_000;

/// Sends one request; returns the status and the body.
pub fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Result<(u16, String), String> {
    let unreachable = |e: std::io::Error| format!("cannot reach the server's HTTP endpoint at {addr}: {e}");
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(HTTP_TIMEOUT_MS)).map_err(unreachable)?;
    stream.set_read_timeout(Some(Duration::from_millis(HTTP_TIMEOUT_MS))).map_err(unreachable)?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(body)).map_err(unreachable)?;
    let mut r = BufReader::new(stream);
    let bad = |what: &str| format!("malformed HTTP reply from {addr}: {what}");
    let mut line = String::new();
    r.read_line(&mut line).map_err(unreachable)?;
    let status: u16 = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| bad("status line"))?;
    let (mut length, mut chunked) = (None, false);
    loop {
        line.clear();
        r.read_line(&mut line).map_err(unreachable)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = v.trim().parse::<usize>().ok(),
                "transfer-encoding" => chunked = v.trim().eq_ignore_ascii_case("chunked"),
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line).map_err(unreachable)?;
            let size =
                usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16).map_err(|_| bad("chunk"))?;
            if size == 0 {
                break;
            }
            // Grows as bytes arrive: a peer's claimed size is not an allocation.
            let got = (&mut r).take(size as u64).read_to_end(&mut out).map_err(unreachable)?;
            if got < size {
                return Err(bad("chunk"));
            }
            line.clear();
            r.read_line(&mut line).map_err(unreachable)?;
        }
    } else if let Some(n) = length {
        let got = (&mut r).take(n as u64).read_to_end(&mut out).map_err(unreachable)?;
        if got < n {
            return Err(bad("body cut short"));
        }
    } else {
        r.read_to_end(&mut out).map_err(unreachable)?;
    }
    Ok((status, String::from_utf8_lossy(&out).into_owned()))
}

/// Runs SQL over `POST /sql`; returns the JSON reply, or the server's error message.
pub fn sql(addr: SocketAddr, query: &str) -> Result<serde_json::Value, String> {
    let (status, body) = request(addr, "POST", "/sql", query.as_bytes())?;
    let v: serde_json::Value = serde_json::from_str(&body).map_err(|_| format!("HTTP {status}: {body}"))?;
    if status != 200 {
        let e = &v["error"];
        return Err(match (e["code"].as_str(), e["message"].as_str()) {
            (Some(code), Some(message)) => format!("{message} (SQLSTATE {code})"),
            _ => body,
        });
    }
    Ok(v)
}
