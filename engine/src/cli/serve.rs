//! `sluice serve`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use sluice::limits::FRAME_BYTES_MAX_DEFAULT;
use sluice::runtime::ShutdownSignal;
use sluice::server::{run as run_server, ServerConfig};

use super::config::ConfigFile;
use super::CliResult;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Data directory [default: ./sluice-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Native protocol listen address; port 0 picks a free port [default: 127.0.0.1:9700].
    #[arg(long)]
    native_addr: Option<SocketAddr>,
    /// Kafka protocol listen address; port 0 picks a free port [default: 127.0.0.1:9092].
    #[arg(long)]
    kafka_addr: Option<SocketAddr>,
    /// HTTP listen address; port 0 picks a free port [default: 127.0.0.1:9600].
    #[arg(long)]
    http_addr: Option<SocketAddr>,
    /// Postgres wire protocol (SQL) listen address; port 0 picks a free port [default: 127.0.0.1:6875].
    #[arg(long)]
    pg_addr: Option<SocketAddr>,
    /// Number of shards (one per core by default).
    #[arg(long)]
    shards: Option<usize>,
    /// Configuration file (TOML).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Do not pin shards to cores.
    #[arg(long)]
    no_pin: bool,
}

pub fn config_from(args: &ServeArgs) -> Result<ServerConfig, String> {
    let file = match &args.config {
        Some(p) => ConfigFile::load(p)?,
        None => ConfigFile::default(),
    };
    let mut c = ServerConfig::default();
    c.data_dir = args.data_dir.clone().or(file.data_dir).unwrap_or(c.data_dir);
    c.native_addr = args.native_addr.or(file.native_addr).unwrap_or(c.native_addr);
    c.kafka_addr = match (args.kafka_addr, file.kafka_addr, file.kafka_enabled) {
        (Some(a), _, _) => Some(a),
        (None, _, Some(false)) => None,
        (None, Some(a), _) => Some(a),
        (None, None, _) => c.kafka_addr,
    };
    // The Kafka listener's idle deadline defaults to the server's; [kafka] may override it.
    c.kafka.idle_ms = file.idle_ms.unwrap_or(c.kafka.idle_ms);
    file.kafka.apply(&mut c.kafka)?;
    c.http_addr = match (args.http_addr, file.http_addr, file.http_enabled) {
        (Some(a), _, _) => Some(a),
        (None, _, Some(false)) => None,
        (None, Some(a), _) => Some(a),
        (None, None, _) => c.http_addr,
    };
    c.http.idle_ms = file.idle_ms.unwrap_or(c.http.idle_ms);
    if let Some(max) = file.http_body_bytes_max {
        c.http.body_bytes_max = max;
    }
    c.pg_addr = match (args.pg_addr, file.pg_addr, file.pg_enabled) {
        (Some(a), _, _) => Some(a),
        (None, _, Some(false)) => None,
        (None, Some(a), _) => Some(a),
        (None, None, _) => c.pg_addr,
    };
    c.pg.idle_ms = file.idle_ms.unwrap_or(c.pg.idle_ms);
    c.shards = args.shards.or(file.shards).unwrap_or(c.shards);
    c.pin = !args.no_pin && file.pin.unwrap_or(true);
    c.frame_bytes_max = file.frame_bytes_max.unwrap_or(FRAME_BYTES_MAX_DEFAULT);
    c.connections_max = file.connections_max.unwrap_or(c.connections_max);
    c.idle_ms = file.idle_ms.unwrap_or(c.idle_ms);
    c.checkpoint_interval_ms = file.checkpoint_interval_ms.unwrap_or(c.checkpoint_interval_ms);
    if c.shards == 0 || c.shards > 1024 {
        return Err(format!("shards must be between 1 and 1024, not {}", c.shards));
    }
    if c.idle_ms < sluice::limits::CONNECTION_IDLE_MS_MIN || c.kafka.idle_ms < sluice::limits::CONNECTION_IDLE_MS_MIN {
        return Err(format!("idle_ms must be at least {} ms", sluice::limits::CONNECTION_IDLE_MS_MIN));
    }
    use sluice::limits::{CONFIG_BYTES_LIMIT_MAX, CONFIG_BYTES_LIMIT_MIN};
    for (name, v) in [("frame_bytes_max", c.frame_bytes_max), ("http_body_bytes_max", c.http.body_bytes_max)] {
        if !(CONFIG_BYTES_LIMIT_MIN..=CONFIG_BYTES_LIMIT_MAX).contains(&v) {
            return Err(format!(
                "{name} must be between {CONFIG_BYTES_LIMIT_MIN} and {CONFIG_BYTES_LIMIT_MAX}, not {v}"
            ));
        }
    }
    if c.connections_max == 0 {
        return Err("connections_max must be at least 1".into());
    }
    Ok(c)
}

pub fn run(args: ServeArgs) -> CliResult {
    let config = config_from(&args)?;
    let shutdown = ShutdownSignal::new();
    shutdown.install_signal_handlers().map_err(|e| format!("cannot install signal handlers: {e}"))?;
    run_server(config, shutdown, |ready| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", ready.line());
        let _ = out.flush();
    })
    .map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}
