//! `sluice inspect PATH`: dump and verify a segment file or a partition directory.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use sluice::io::Storage;
use sluice::log::inspect::inspect_segment;
use sluice::record::{FLAG_COLUMNAR, FLAG_TYPED};

use super::CliResult;

pub fn run(path: &Path) -> CliResult {
    let path = path.to_path_buf();
    let ok = sluice::runtime::run_single(move || async move {
        let storage = Storage::real();
        let files: Vec<PathBuf> = if path.is_dir() {
            match storage.list_dir(&path) {
                Ok(entries) => {
                    entries.into_iter().filter(|e| e.name.ends_with(".log")).map(|e| path.join(e.name)).collect()
                }
                Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
            }
        } else {
            vec![path.clone()]
        };
        if files.is_empty() {
            return Err(format!("no segment files in {}", path.display()));
        }
        let mut all_ok = true;
        for f in files {
            all_ok &= report(&storage, &f).await;
        }
        Ok(all_ok)
    })??;
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

/// Prints what `inspect` found in one segment file; false when it found a problem.
async fn report(storage: &Storage, f: &Path) -> bool {
    let r = match inspect_segment(storage, f).await {
        Ok(r) => r,
        Err(e) => {
            println!("{}: cannot read: {e}", f.display());
            return false;
        }
    };
    match r.header {
        Some(h) => println!(
            "segment {} base_offset={} topic_id={} partition={} bytes={}",
            f.display(),
            h.base_offset,
            h.identity.topic_id,
            h.identity.partition,
            r.file_len
        ),
        None => println!("segment {} bytes={}", f.display(), r.file_len),
    }
    for b in &r.batches {
        let h = &b.header;
        let layout = match (h.flags & FLAG_TYPED != 0, h.flags & FLAG_COLUMNAR != 0) {
            (false, _) => "raw",
            (true, false) => "rows",
            (true, true) => "columns",
        };
        println!(
            "  batch pos={} offsets={}..{} records={} payload={}B layout={layout} ts={}..{} crc=ok",
            b.pos,
            h.base_offset,
            h.end_offset(),
            h.record_count,
            h.payload_len,
            h.first_timestamp_ms,
            h.max_timestamp_ms
        );
    }
    match &r.index {
        Some(Ok((ix, _))) => println!("  index: {} entries, matches the segment", ix.entries().len()),
        Some(Err(e)) => println!("  index: {e} (it will be rebuilt on open)"),
        None => println!("  index: none (active segment, or rebuilt on open)"),
    }
    if r.reserved_bytes > 0 {
        println!(
            "  reserved: {} bytes of zeros after the last batch (space the active segment holds ahead of its writes)",
            r.reserved_bytes
        );
    }
    match &r.problem {
        None => {
            println!("  verified: {} batches, {} records", r.batches.len(), r.records());
            true
        }
        Some((pos, what)) => {
            println!("  PROBLEM at byte {pos}: {what}");
            false
        }
    }
}
