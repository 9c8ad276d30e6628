//! `sluice view ...`: rebuild a materialized view with a progress bar, cancel a rebuild,
//! explain what a rebuild would cost, list views. Over the server's HTTP endpoint.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use super::http_client::{request, sql};
use super::CliResult;

#[derive(clap::Args)]
pub struct HttpAddr {
    /// The server's HTTP address.
    #[arg(long, default_value = "127.0.0.1:9600")]
    http_addr: SocketAddr,
}

#[derive(Subcommand)]
pub enum ViewCommand {
    /// Rebuild a view from history while it keeps serving; shows progress until the new
    /// version serves.
    Rebuild {
        name: String,
        /// earliest | offset:N | time:RFC3339
        #[arg(long, default_value = "earliest")]
        from: String,
        /// Read at most this many MB per second (all shards together).
        #[arg(long)]
        rate_limit_mb_per_s: Option<f64>,
        /// Start the rebuild and return without waiting.
        #[arg(long)]
        detach: bool,
        #[command(flatten)]
        addr: HttpAddr,
    },
    /// Cancel a running rebuild (the serving version stays).
    Cancel {
        name: String,
        #[command(flatten)]
        addr: HttpAddr,
    },
    /// What a rebuild would read and take, before anything runs.
    Explain {
        name: String,
        #[arg(long, default_value = "earliest")]
        from: String,
        #[command(flatten)]
        addr: HttpAddr,
    },
    /// The views, their versions and states.
    List {
        #[command(flatten)]
        addr: HttpAddr,
    },
}

/// `--from` in SQL.
fn from_clause(from: &str) -> Result<String, String> {
    if from.eq_ignore_ascii_case("earliest") {
        return Ok("FROM EARLIEST".into());
    }
    if let Some(n) = from.strip_prefix("offset:") {
        let n: u64 = n.parse().map_err(|_| format!("--from {from}: not an offset"))?;
        return Ok(format!("FROM OFFSET {n}"));
    }
    if let Some(t) = from.strip_prefix("time:") {
        return Ok(format!("FROM TIMESTAMP '{}'", t.replace('\'', "''")));
    }
    Err(format!("--from {from}: use earliest, offset:N or time:RFC3339"))
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

pub fn run(c: ViewCommand) -> CliResult {
    match c {
        ViewCommand::Rebuild { name, from, rate_limit_mb_per_s, detach, addr } => {
            let mut q = format!("ALTER MATERIALIZED VIEW {} REBUILD {}", quote_ident(&name), from_clause(&from)?);
            if let Some(r) = rate_limit_mb_per_s {
                q.push_str(&format!(" WITH (rate_limit_mb_per_s = {r})"));
            }
            sql(addr.http_addr, &q)?;
            if detach {
                println!("rebuild of {name} started");
                return Ok(ExitCode::SUCCESS);
            }
            follow(addr.http_addr, &name)
        }
        ViewCommand::Cancel { name, addr } => {
            sql(addr.http_addr, &format!("ALTER MATERIALIZED VIEW {} CANCEL REBUILD", quote_ident(&name)))?;
            println!("rebuild of {name} cancelled");
            Ok(ExitCode::SUCCESS)
        }
        ViewCommand::Explain { name, from, addr } => {
            let v = sql(addr.http_addr, &format!("EXPLAIN REBUILD {} {}", quote_ident(&name), from_clause(&from)?))?;
            for row in v["results"][0]["rows"].as_array().into_iter().flatten() {
                println!("{:<22} {}", row[0].as_str().unwrap_or_default(), row[1].as_str().unwrap_or_default());
            }
            Ok(ExitCode::SUCCESS)
        }
        ViewCommand::List { addr } => {
            let v = sql(addr.http_addr, "SHOW MATERIALIZED VIEWS")?;
            println!("{:<24} {:>7}  {:<32} {:>12} {:>14}", "name", "version", "state", "rows", "events");
            for r in v["results"][0]["rows"].as_array().into_iter().flatten() {
                let num = |x: &Value| x.as_i64().map(|n| n.to_string()).unwrap_or_default();
                println!(
                    "{:<24} {:>7}  {:<32} {:>12} {:>14}",
                    r[0].as_str().unwrap_or_default(),
                    num(&r[1]),
                    r[2].as_str().unwrap_or_default(),
                    num(&r[3]),
                    num(&r[4])
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Shows a rebuild's progress (events, bytes, rate, ETA) until it ends.
pub(super) fn follow(http: SocketAddr, name: &str) -> CliResult {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} rebuild {prefix} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} events {msg} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    loop {
        let (status, body) = request(http, "GET", &format!("/views/{name}/rebuild"), b"")?;
        if status != 200 {
            bar.abandon();
            return Err(format!("HTTP {status}: {body}"));
        }
        let p: Value = serde_json::from_str(&body).map_err(|e| format!("malformed progress {body:?}: {e}"))?;
        let n = |k: &str| p[k].as_u64().unwrap_or(0);
        bar.set_prefix(format!("{name} v{}", n("version")));
        bar.set_length(n("events_total").max(n("events_done")));
        bar.set_position(n("events_done"));
        bar.set_message(format!(
            "· {:.1} MB read · {:.1} MB/s · {:.0} events/s",
            n("bytes_read") as f64 / 1e6,
            p["bytes_per_s"].as_f64().unwrap_or(0.0) / 1e6,
            p["events_per_s"].as_f64().unwrap_or(0.0)
        ));
        match p["phase"].as_str() {
            Some("building") => {}
            Some("done") => {
                bar.finish();
                println!(
                    "{name}: version {} serves ({} events in {:.1}s)",
                    n("version"),
                    n("events_done"),
                    n("elapsed_ms") as f64 / 1e3
                );
                return Ok(ExitCode::SUCCESS);
            }
            Some(other) => {
                bar.abandon();
                println!("{name}: rebuild {other}");
                return Ok(ExitCode::FAILURE);
            }
            None => {
                bar.abandon();
                return Err(format!("no rebuild of {name} is known"));
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
