//! `sluice topic ...`.

use std::process::ExitCode;

use clap::Subcommand;
use sluice::log::Durability;
use sluice::server::native::protocol::CreateTopic;

use super::{connect, Addr, CliResult};

#[derive(clap::Args)]
pub struct CreateArgs {
    name: String,
    #[arg(long, default_value_t = 1)]
    partitions: u32,
    /// sync | interval:MS | none
    #[arg(long, default_value = "sync")]
    durability: Durability,
    #[arg(long)]
    retention_bytes: Option<u64>,
    #[arg(long)]
    retention_ms: Option<u64>,
    #[arg(long)]
    segment_bytes: Option<u64>,
    #[arg(long)]
    batch_bytes_max: Option<u32>,
    /// A typed topic's columns: 'col TYPE [NOT NULL] [DEFAULT v], ...'
    /// (BOOLEAN, INT, BIGINT, DOUBLE PRECISION, TEXT, BYTEA, TIMESTAMP).
    #[arg(long)]
    schema: Option<String>,
    /// The column holding a typed topic's event time (TIMESTAMP or BIGINT ms).
    #[arg(long)]
    event_time: Option<String>,
    #[command(flatten)]
    addr: Addr,
}

impl CreateArgs {
    fn spec(self) -> (CreateTopic, Addr) {
        let spec = CreateTopic {
            durability: self.durability,
            retention_bytes: self.retention_bytes,
            retention_ms: self.retention_ms,
            segment_bytes: self.segment_bytes,
            batch_bytes_max: self.batch_bytes_max,
            schema: self.schema,
            event_time: self.event_time,
            ..CreateTopic::new(&self.name, self.partitions)
        };
        (spec, self.addr)
    }
}

#[derive(Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create(CreateArgs),
    /// List topics.
    List {
        /// Also list internal topics (`__consumer_offsets`, ...).
        #[arg(long)]
        internal: bool,
        #[command(flatten)]
        addr: Addr,
    },
    /// Show a topic's settings and partitions.
    Describe {
        name: String,
        #[command(flatten)]
        addr: Addr,
    },
    /// Add a version to a typed topic's schema (only nullable or defaulted columns may be
    /// added at the end; old records read with the defaults).
    AlterSchema {
        name: String,
        /// Every column of the new version: 'col TYPE [NOT NULL] [DEFAULT v], ...'.
        #[arg(long)]
        schema: String,
        #[command(flatten)]
        addr: Addr,
    },
    /// Delete a topic and its data.
    Delete {
        name: String,
        #[command(flatten)]
        addr: Addr,
    },
}

fn opt(v: Option<u64>) -> String {
    v.map_or("-".to_string(), |v| v.to_string())
}

pub fn run(cmd: TopicCommand) -> CliResult {
    match cmd {
        TopicCommand::Create(args) => {
            let (spec, addr) = args.spec();
            let c = connect(&addr)?.create_topic(&spec).map_err(|e| e.to_string())?;
            println!("created topic {} (partitions={}, durability={})", c.name, c.partitions, c.durability);
        }
        TopicCommand::AlterSchema { name, schema, addr } => {
            let c = connect(&addr)?.alter_schema(&name, &schema, None).map_err(|e| e.to_string())?;
            let version = c.schema().map_or(0, |s| s.version);
            println!(
                "topic {} now has schema version {version}: {}",
                c.name,
                c.schema().map(|s| s.declaration()).unwrap_or_default()
            );
        }
        TopicCommand::List { internal, addr } => {
            let topics = connect(&addr)?.list_topics().map_err(|e| e.to_string())?;
            for t in topics.into_iter().filter(|t| internal || !sluice::log::is_internal_topic(&t.name)) {
                println!("{}\tpartitions={}\tdurability={}", t.name, t.partitions, t.durability);
            }
        }
        TopicCommand::Describe { name, addr } => {
            let (c, parts) = connect(&addr)?.describe_topic(&name).map_err(|e| e.to_string())?;
            println!(
                "topic {} id={} partitions={} durability={} retention_bytes={} retention_ms={} segment_bytes={} batch_bytes_max={}",
                c.name,
                c.topic_id,
                c.partitions,
                c.durability,
                opt(c.retention_bytes),
                opt(c.retention_ms),
                c.segment_bytes,
                c.batch_bytes_max
            );
            for schema in &c.schemas {
                let et =
                    schema.event_time.map(|i| format!(" event_time={}", schema.columns[i].name)).unwrap_or_default();
                println!("  schema v{}: {}{et}", schema.version, schema.declaration());
            }
            for p in parts {
                println!(
                    "  partition {}: log_start={} durable_end={} written_end={} segments={} bytes={}{}",
                    p.partition,
                    p.log_start,
                    p.durable_end,
                    p.written_end,
                    p.segments,
                    p.bytes,
                    p.read_only.map(|r| format!(" READ-ONLY: {r}")).unwrap_or_default()
                );
            }
        }
        TopicCommand::Delete { name, addr } => {
            connect(&addr)?.delete_topic(&name).map_err(|e| e.to_string())?;
            println!("deleted topic {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
