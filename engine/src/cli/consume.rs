//! `sluice consume`: one record value per stdout line (a typed topic's rows as JSON).

use std::io::Write;
use std::process::ExitCode;

use sluice::log::StartPosition;
use sluice::record::schema::row_to_json;

use super::{connect, Addr, CliResult};

#[derive(clap::Args)]
pub struct ConsumeArgs {
    topic: String,
    /// earliest | latest | offset:N | time:RFC3339 (or time:MILLIS)
    #[arg(long, default_value = "earliest")]
    from: StartPosition,
    /// Stop after this many records.
    #[arg(long)]
    max: Option<u64>,
    /// Read only this partition.
    #[arg(long)]
    partition: Option<u32>,
    /// Keep waiting for new records instead of stopping at the end.
    #[arg(long)]
    follow: bool,
    /// Print `partition offset key value` instead of the value alone.
    #[arg(long)]
    verbose: bool,
    #[command(flatten)]
    addr: Addr,
}

pub fn run(args: ConsumeArgs) -> CliResult {
    let mut client = connect(&args.addr)?;
    let (topic, _) = client.describe_topic(&args.topic).map_err(|e| e.to_string())?;
    let partitions: Vec<u32> = match args.partition {
        Some(p) if p >= topic.partitions => return Err(format!("topic {} has no partition {p}", args.topic)),
        Some(p) => vec![p],
        None => (0..topic.partitions).collect(),
    };
    let mut next: Vec<StartPosition> = vec![args.from; partitions.len()];
    let mut done = vec![false; partitions.len()];
    let max = args.max.unwrap_or(u64::MAX);
    let mut printed = 0u64;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    while printed < max && (args.follow || done.iter().any(|d| !d)) {
        let mut any = false;
        for (i, &p) in partitions.iter().enumerate() {
            if done[i] && !args.follow {
                continue;
            }
            let wait = if args.follow && partitions.len() == 1 { 500 } else { 0 };
            let f = client.fetch(&args.topic, p, next[i], 1 << 20, wait).map_err(|e| e.to_string())?;
            if let Some(schema) = topic.schema() {
                for (offset, rec) in f.rows() {
                    if printed >= max {
                        break;
                    }
                    let json = row_to_json(schema, &schema.upcast(rec.row));
                    if args.verbose {
                        let key = rec.key.map(|k| String::from_utf8_lossy(k).into_owned());
                        write!(out, "{p}\t{offset}\t{}\t", key.unwrap_or_default()).map_err(|e| e.to_string())?;
                    }
                    writeln!(out, "{json}").map_err(|e| e.to_string())?;
                    printed += 1;
                }
            }
            for (offset, rec) in f.records() {
                if printed >= max {
                    break;
                }
                if args.verbose {
                    let key = rec
                        .key
                        .as_ref()
                        .map(|k| String::from_utf8_lossy(k.as_slice()).into_owned())
                        .unwrap_or_default();
                    write!(out, "{p}\t{offset}\t{key}\t").map_err(|e| e.to_string())?;
                }
                out.write_all(rec.value.as_slice()).and_then(|_| out.write_all(b"\n")).map_err(|e| e.to_string())?;
                printed += 1;
            }
            any |= !f.is_empty();
            next[i] = StartPosition::Offset(f.next_offset().0);
            if f.next_offset() >= f.visible_end {
                done[i] = true;
            }
        }
        if !any && args.follow {
            out.flush().map_err(|e| e.to_string())?;
            if partitions.len() > 1 {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }
    out.flush().map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}
