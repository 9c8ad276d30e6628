//! The `sluice` binary: the server, a demo, and a command-line client.

use std::process::ExitCode;

use clap::Parser;

mod cli;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG").unwrap_or_else(|_| "warn,glommio=error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    // A panic is a bug. A task that panicked inside a shard leaves the shard without it
    // (an appender, a connection's reply writer) and could hang it; stop the whole process
    // instead: restart and recovery from the log is the tested path (kill -9 tests).
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // A third-party decoder failing on hostile bytes: the caller replies with an error.
        if sluice::contained::is_catching() {
            tracing::debug!(%info, "decoder panic on untrusted input, contained");
            return;
        }
        default_hook(info);
        eprintln!("sluice: internal error (a bug): stopping the process; data acknowledged so far is safe on disk");
        std::process::abort();
    }));
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sluice: {e}");
            ExitCode::FAILURE
        }
    }
}
