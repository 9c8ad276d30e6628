//! Sluice as a library: open a data directory, create a topic, append typed records
//! (archived with rkyv), and read them back in place from the DMA buffers, zero-copy.
//!
//! Run: `cargo run --release -p sluice --example embedded [DATA_DIR]`

use rkyv::{Archive, Deserialize, Serialize};
use sluice::io::Storage;
use sluice::log::{Durability, LogManager, Offset, PartitionReader, Placement, TopicConfig};
use sluice::record::{BatchBuilder, Record};

/// A typed event: stored as its rkyv archive, read back without deserializing.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Trade {
    symbol: String,
    price_cents: i64,
    quantity: u32,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("sluice-embedded-{}", std::process::id())));
    // The log runs on a glommio executor (io_uring); embed it in one, or in a shard of yours.
    let report = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .spawn(move || async move { run(&dir).await.map_err(|e| e.to_string()) })?
        .join()?;
    report.map_err(Into::into)
}

async fn run(dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let log = LogManager::open(Storage::real(), dir, Placement::single()).await?;
    if log.topic("trades").is_none() {
        let mut config = TopicConfig::new("trades", 1);
        config.durability = Durability::Sync; // acknowledged = on disk
        log.create_topic(config).await?;
    }
    let partition = log.partition("trades", 0)?;
    let start = partition.offsets().written_end();

    // Append 10 batches of 1,000 typed records each.
    for b in 0..10i64 {
        let mut batch = BatchBuilder::<Trade>::new();
        for i in 0..1000i64 {
            let n = b * 1000 + i;
            batch.push(Record {
                timestamp_ms: 1_700_000_000_000 + n,
                key: Some(b"NVDA".to_vec()),
                value: Trade { symbol: "NVDA".into(), price_cents: 12_000 + n % 100, quantity: (n % 7) as u32 + 1 },
                headers: Vec::new(),
            });
        }
        let ack = partition.append(batch.finish()?).await?;
        println!("appended 1000 trades at offset {}", ack.base_offset);
    }

    // Read them back: each batch's records are accessed in place, fields and all.
    let mut reader = PartitionReader::new(partition.clone(), start);
    let (mut count, mut notional) = (0u64, 0i128);
    while let Some(batch) = reader.next_batch().await? {
        for record in batch.records_as::<Trade>()?.iter() {
            let trade = &record.value; // &ArchivedTrade, pointing into the read buffer
            notional += trade.price_cents.to_native() as i128 * trade.quantity.to_native() as i128;
            count += 1;
        }
    }
    println!("read back {count} trades in place; notional = {:.2}", notional as f64 / 100.0);
    assert_eq!(count, 10_000);
    let from_time = LogManager::resolve(&partition, sluice::log::StartPosition::Time(1_700_000_005_000)).await?;
    println!("first trade at or after t=1_700_000_005_000 is offset {from_time}");
    assert_eq!(from_time, Offset(start.0 + 5000));
    log.close().await?;
    println!("data directory: {}", dir.display());
    Ok(())
}
