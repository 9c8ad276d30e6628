//! `sluice inspect PATH`: dump and verify a segment file or a partition directory.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use sluice::io::Storage;
use sluice::log::inspect::inspect_segment;

use super::CliResult;

pub fn run(path: &Path) -> CliResult {
    let path = path.to_path_buf();
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        v.sort();
        v
    } else {
        vec![path.clone()]
    };
    if files.is_empty() {
        return Err(format!("no segment files in {}", path.display()));
    }
    let ok = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .spawn(move || async move {
            let storage = Storage::real();
            let mut all_ok = true;
            for f in files {
                match inspect_segment(&storage, &f).await {
                    Err(e) => {
                        println!("{}: cannot read: {e}", f.display());
                        all_ok = false;
                    }
                    Ok(r) => {
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
                            println!(
                                "  batch pos={} offsets={}..{} records={} payload={}B ts={}..{} crc=ok",
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
                            Some(Ok((ix, _))) => {
                                println!("  index: {} entries, matches the segment", ix.entries().len())
                            }
                            Some(Err(e)) => println!("  index: {e} (it will be rebuilt on open)"),
                            None => println!("  index: none (active segment, or rebuilt on open)"),
                        }
                        match &r.problem {
                            None => println!("  verified: {} batches, {} records", r.batches.len(), r.records()),
                            Some((pos, what)) => {
                                all_ok = false;
                                println!("  PROBLEM at byte {pos}: {what}");
                            }
                        }
                    }
                }
            }
            all_ok
        })
        .map_err(|e| format!("cannot start an executor: {e}"))?
        .join()
        .map_err(|e| format!("inspect failed: {e}"))?;
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(2) })
}
