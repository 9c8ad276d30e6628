//! `sluice produce`: one record per stdin line. For a typed topic each line is a JSON
//! object, checked against the schema before anything is sent.

use std::io::BufRead;
use std::process::ExitCode;

use sluice::log::TopicConfig;
use sluice::record::schema::{Row, Schema, Value};
use sluice::record::{partition_for_key, BatchPayload, Record};
use sluice::record::{BatchBuilder, RawRecord};
use sluice::server::native::client::Client;

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
    /// A typed topic's key column(s), comma-separated (default: a table's primary key).
    #[arg(long)]
    key: Option<String>,
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
    if let Some(schema) = topic.schema() {
        return produce_rows(&mut client, &args, &topic, schema, batch_bytes);
    }
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
            (None, Some(k)) => partition_for_key(k, partitions),
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

fn key_text(v: &Value) -> String {
    match sluice::record::schema::value_to_json(v) {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

/// Typed topics: JSON lines become rows (checked here, and again by the server).
fn produce_rows(
    client: &mut Client,
    args: &ProduceArgs,
    topic: &TopicConfig,
    schema: &Schema,
    batch_bytes: usize,
) -> CliResult {
    let key_names: Vec<String> = match &args.key {
        Some(k) => k.split(',').map(|s| s.trim().to_string()).collect(),
        None => topic.primary_key.clone(),
    };
    let keys: Vec<usize> = key_names
        .iter()
        .map(|n| {
            schema
                .columns
                .iter()
                .position(|c| c.name.eq_ignore_ascii_case(n))
                .ok_or(format!("no column '{n}' to key by"))
        })
        .collect::<Result<_, _>>()?;
    let partitions = topic.partitions;
    let mut pending: Vec<(Vec<Record<Row>>, usize)> = (0..partitions).map(|_| (Vec::new(), 0)).collect();
    let mut produced = 0u64;
    let mut round_robin = 0u32;
    let flush = |client: &mut Client, p: u32, b: &mut (Vec<Record<Row>>, usize)| -> Result<u64, String> {
        if b.0.is_empty() {
            return Ok(0);
        }
        let payload = BatchPayload::rows_to_send(&b.0, schema).map_err(|e| e.to_string())?;
        client.produce(&args.topic, p, &payload).map_err(|e| e.to_string())?;
        let n = b.0.len() as u64;
        b.0.clear();
        b.1 = 0;
        Ok(n)
    };
    for (i, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line.map_err(|e| format!("reading stdin: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let json: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| format!("line {}: not JSON: {e}", i + 1))?;
        let row = schema.row_from_json(&json).map_err(|e| format!("line {}: {e}", i + 1))?;
        let key: Option<Vec<u8>> = match keys.as_slice() {
            [] => None,
            [one] => Some(key_text(&row[*one]).into_bytes()),
            many => Some(
                serde_json::Value::Array(
                    many.iter().map(|&k| sluice::record::schema::value_to_json(&row[k])).collect(),
                )
                .to_string()
                .into_bytes(),
            ),
        };
        let p = match (args.partition, &key) {
            (Some(p), _) => p,
            (None, Some(k)) => partition_for_key(k, partitions),
            (None, None) => round_robin % partitions,
        };
        let ts = schema.event_time_ms(&row).unwrap_or_else(sluice::clock::now_ms);
        let b = &mut pending[p as usize];
        b.1 += line.len() + 64;
        b.0.push(Record { timestamp_ms: ts, key, value: row, headers: Vec::new() });
        if b.0.len() >= args.batch_records || b.1 >= batch_bytes {
            produced += flush(client, p, b)?;
            round_robin += 1;
        }
    }
    for (p, b) in pending.iter_mut().enumerate() {
        produced += flush(client, p as u32, b)?;
    }
    eprintln!("produced {produced} rows to {}", args.topic);
    Ok(ExitCode::SUCCESS)
}
