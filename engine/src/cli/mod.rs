//! Command-line interface: one file per command.

mod config;
mod consume;
mod demo;
mod demo_views;
mod http_client;
mod inspect;
mod produce;
mod serve;
mod topic;
mod view;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub type CliResult = Result<ExitCode, String>;

#[derive(Parser)]
#[command(name = "sluice", version, about = "A thread-per-core streaming engine built around a durable log")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the server is.
#[derive(clap::Args, Clone)]
pub struct Addr {
    /// Native protocol address of the server.
    #[arg(long, default_value = "127.0.0.1:9700", global = true)]
    addr: SocketAddr,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(serve::ServeArgs),
    /// Start a server in a temporary directory, stream records through it and read them back.
    Demo(demo::DemoArgs),
    /// Create, list, describe and delete topics.
    #[command(subcommand)]
    Topic(topic::TopicCommand),
    /// Produce one record per line of standard input.
    Produce(produce::ProduceArgs),
    /// Print one record value per line.
    Consume(consume::ConsumeArgs),
    /// Rebuild, cancel or explain materialized views (over HTTP).
    #[command(subcommand)]
    View(view::ViewCommand),
    /// Dump and verify a segment file or a partition directory (offline).
    Inspect {
        /// A `.log` segment file or a partition directory.
        path: PathBuf,
    },
}

pub fn run(cli: Cli) -> CliResult {
    match cli.command {
        Command::Serve(a) => serve::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Topic(c) => topic::run(c),
        Command::Produce(a) => produce::run(a),
        Command::Consume(a) => consume::run(a),
        Command::View(c) => view::run(c),
        Command::Inspect { path } => inspect::run(&path),
    }
}

pub fn connect(addr: &Addr) -> Result<sluice::server::native::client::Client, String> {
    sluice::server::native::client::Client::connect(addr.addr)
        .map_err(|e| format!("cannot reach the server at {}: {e}", addr.addr))
}
