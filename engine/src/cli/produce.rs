//! `sluice produce`: one record per stdin line.

use std::io::BufRead;
use std::process::ExitCode;

use sluice::record::{BatchBuilder, RawRecord};

use super::{connect, Addr, CliResult};

#[derive(clap::Args)]
pub struct ProduceArgs {
    topic: String,
    /// Split each line at the first occurrence of this character into key and value.
    #[arg(long)]
    key_separator: Option<char>,
    /// Produce to this partition only (default: by key hash, keyless lines round-robin per batch).
    #[arg(long)]
    partition: Option<u32>,
    /// Records per batch at most.
    #[arg(long, default_value_t = 1000)]
    batch_records: usize,
    #[command(flatten)]
    addr: Addr,
}

pub fn run(args: ProduceArgs) -> CliResult {
    let mut client = connect(&args.addr)?;
    let (topic, _) = client.describe_topic(&args.topic).map_err(|e| e.to_string())?;
    let partitions = topic.partitions;
    if let Some(p) = args.partition.filter(|&p| p >= partitions) {
        return Err(format!("topic {} has {partitions} partitions; there is no partition {p}", args.topic));
    }
    let batch_bytes = (topic.batch_bytes_max as usize).saturating_sub(4096).max(1024);
    let mut builders: Vec<(BatchBuilder, usize)> = (0..partitions).map(|_| (BatchBuilder::new(), 0)).collect();
    let mut round_robin = 0u32;
    let mut produced = 0u64;
    let flush = |client: &mut sluice::server::native::client::Client, p: u32, b: &mut (BatchBuilder, usize)| {
        if b.0.is_empty() {
            return Ok(0);
        }
        let payload = b.0.finish().map_err(|e| e.to_string())?;
        b.1 = 0;
        let n = payload.summary().record_count as u64;
        client.produce(&args.topic, p, &payload).map_err(|e| e.to_string())?;
        Ok::<u64, String>(n)
    };
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| format!("reading stdin: {e}"))?;
        let (key, value) = match args.key_separator.and_then(|c| line.split_once(c)) {
            Some((k, v)) => (Some(k.as_bytes()), v.as_bytes()),
            None => (None, line.as_bytes()),
        };
        let p = match (args.partition, key) {
            (Some(p), _) => p,
            (None, Some(k)) => crc32c::crc32c(k) % partitions,
            (None, None) => round_robin % partitions,
        };
        let b = &mut builders[p as usize];
        b.0.push(RawRecord::new(sluice::clock::now_ms(), key, value));
        b.1 += value.len() + key.map_or(0, <[u8]>::len) + 32;
        if b.0.len() >= args.batch_records || b.1 >= batch_bytes {
            produced += flush(&mut client, p, b)?;
            round_robin += 1;
        }
    }
    for (p, b) in builders.iter_mut().enumerate() {
        produced += flush(&mut client, p as u32, b)?;
    }
    eprintln!("produced {produced} records to {}", args.topic);
    Ok(ExitCode::SUCCESS)
}
