//! The view catalog: every materialized view's definition, durable in the data directory.
//!
//! `<data>/views/<name>/view.meta` (metadata envelope, magic `SLVW`) holds the view's id,
//! version and the SQL that defines it; the plan is made again from the SQL on every
//! start (against the topics' current schemas, which only grow at the end).
//!
//! `<data>/views/<name>/rebuild.meta` (magic `SLRB`) exists while a rebuild of the view
//! runs: the version being built, where it starts and its rate limit. A restart finds it
//! and starts that rebuild again from its start (the serving version serves meanwhile).

use std::path::{Path, PathBuf};

use crate::dataflow::plan::StartFrom;
use crate::io::Storage;
use crate::log::LogError;
use crate::wire::{decode_meta_file, decode_meta_file_versions, encode_meta_file, Decoder, Encoder, WireError};

const VIEW_META_FILE: &str = "view.meta";
const VIEW_META_MAGIC: [u8; 4] = *b"SLVW";
/// Version 2 added the version's start (`from`).
const VIEW_META_VERSION: u16 = 2;
const REBUILD_META_FILE: &str = "rebuild.meta";
const REBUILD_META_MAGIC: [u8; 4] = *b"SLRB";
const REBUILD_META_VERSION: u16 = 1;

/// A view as the catalog keeps it. `Send`: it crosses shards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewDef {
    pub name: String,
    /// Unique for the life of the data directory.
    pub id: u64,
    /// Bumped by every rebuild.
    pub version: u32,
    /// The `CREATE MATERIALIZED VIEW` statement.
    pub sql: String,
    pub created_ms: i64,
    /// Where this version started reading (a rebuild's FROM); `None`: as the definition's
    /// `start` option says.
    pub from: Option<StartFrom>,
}

/// View ids are below this: [`ViewDef::key`] shifts them left by 16 bits.
pub const VIEW_ID_LIMIT: u64 = 1 << 48;

/// Versions a rebuild record may be ahead of its view's serving version: the key keeps 16
/// bits of the version, so a farther one could share the serving version's key.
pub const REBUILD_VERSION_AHEAD_MAX: u32 = 0xffff;

impl ViewDef {
    pub fn key(&self) -> crate::dataflow::exchange::ViewKey {
        (self.id << 16) | (self.version as u64 & 0xffff)
    }

    pub fn encode(&self, e: &mut Encoder) {
        e.str(&self.name).u64(self.id).u32(self.version).str(&self.sql).i64(self.created_ms);
        encode_start(e, self.from);
    }

    /// `format`: the file's version (1 has no `from`).
    pub fn decode(d: &mut Decoder<'_>, format: u16) -> Result<ViewDef, WireError> {
        let def = ViewDef {
            name: d.str()?.to_string(),
            id: d.u64()?,
            version: d.u32()?,
            sql: d.str()?.to_string(),
            created_ms: d.i64()?,
            from: if format >= 2 { decode_start(d)? } else { None },
        };
        // `key` keeps 48 bits of the id; a version must leave room for the next rebuild.
        if def.id >= VIEW_ID_LIMIT {
            return Err(WireError::Invalid("view id"));
        }
        if def.version == 0 || def.version == u32::MAX {
            return Err(WireError::Invalid("view version"));
        }
        Ok(def)
    }
}

fn encode_start(e: &mut Encoder, from: Option<StartFrom>) {
    match from {
        None => e.u8(0),
        Some(StartFrom::Earliest) => e.u8(1),
        Some(StartFrom::Offset(n)) => e.u8(2).u64(n),
        Some(StartFrom::Timestamp(ms)) => e.u8(3).i64(ms),
    };
}

fn decode_start(d: &mut Decoder<'_>) -> Result<Option<StartFrom>, WireError> {
    Ok(match d.u8()? {
        0 => None,
        1 => Some(StartFrom::Earliest),
        2 => Some(StartFrom::Offset(d.u64()?)),
        3 => Some(StartFrom::Timestamp(d.i64()?)),
        _ => return Err(WireError::Invalid("start")),
    })
}

/// A rebuild in progress, as `rebuild.meta` keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct RebuildRecord {
    /// The version being built.
    pub version: u32,
    pub from: StartFrom,
    /// Bytes per second over all shards; 0: unlimited.
    pub rate_limit_bytes_per_s: u64,
    pub started_ms: i64,
}

pub async fn write_rebuild(storage: &Storage, data_dir: &Path, name: &str, r: &RebuildRecord) -> Result<(), LogError> {
    let mut e = Encoder::new();
    e.u32(r.version);
    encode_start(&mut e, Some(r.from));
    e.u64(r.rate_limit_bytes_per_s).i64(r.started_ms);
    let bytes = encode_meta_file(REBUILD_META_MAGIC, REBUILD_META_VERSION, &e.finish());
    storage.write_file_atomic(&view_dir(data_dir, name).join(REBUILD_META_FILE), &bytes).await?;
    Ok(())
}

pub async fn read_rebuild(storage: &Storage, data_dir: &Path, name: &str) -> Result<Option<RebuildRecord>, LogError> {
    let path = view_dir(data_dir, name).join(REBUILD_META_FILE);
    if !storage.exists(&path) {
        return Ok(None);
    }
    let bad = |detail: String| LogError::BadMetadata { path: path.clone(), detail };
    let buf = storage.read_file(&path).await?;
    let body = decode_meta_file(REBUILD_META_MAGIC, REBUILD_META_VERSION, &buf).map_err(|e| bad(e.to_string()))?;
    let mut d = Decoder::new(body);
    let version = d.u32().map_err(|e| bad(e.to_string()))?;
    if version == 0 || version == u32::MAX {
        return Err(bad(format!("rebuild version {version}")));
    }
    let from = decode_start(&mut d).map_err(|e| bad(e.to_string()))?.unwrap_or_default();
    let rate_limit_bytes_per_s = d.u64().map_err(|e| bad(e.to_string()))?;
    let started_ms = d.i64().map_err(|e| bad(e.to_string()))?;
    Ok(Some(RebuildRecord { version, from, rate_limit_bytes_per_s, started_ms }))
}

pub async fn remove_rebuild(storage: &Storage, data_dir: &Path, name: &str) -> Result<(), LogError> {
    let path = view_dir(data_dir, name).join(REBUILD_META_FILE);
    if storage.exists(&path) {
        storage.remove_file(&path).await?;
        storage.sync_dir(&view_dir(data_dir, name)).await?;
    }
    Ok(())
}

pub fn views_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("views")
}

pub fn view_dir(data_dir: &Path, name: &str) -> PathBuf {
    views_dir(data_dir).join(name)
}

/// Writes a view's definition durably (temporary file, sync, rename, directory sync).
pub async fn write_def(storage: &Storage, data_dir: &Path, def: &ViewDef) -> Result<(), LogError> {
    let dir = view_dir(data_dir, &def.name);
    storage.create_dir_all(&dir).await?;
    storage.sync_dir(&views_dir(data_dir)).await?;
    let mut e = Encoder::new();
    def.encode(&mut e);
    let bytes = encode_meta_file(VIEW_META_MAGIC, VIEW_META_VERSION, &e.finish());
    storage.write_file_atomic(&dir.join(VIEW_META_FILE), &bytes).await?;
    Ok(())
}

/// Every view definition in the data directory.
pub async fn read_defs(storage: &Storage, data_dir: &Path) -> Result<Vec<ViewDef>, LogError> {
    let dir = views_dir(data_dir);
    if !storage.exists(&dir) {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in storage.list_dir(&dir)? {
        if !entry.is_dir {
            continue;
        }
        let path = dir.join(&entry.name).join(VIEW_META_FILE);
        if !storage.exists(&path) {
            continue;
        }
        let bad = |detail: String| LogError::BadMetadata { path: path.clone(), detail };
        let buf = storage.read_file(&path).await?;
        let (format, body) =
            decode_meta_file_versions(VIEW_META_MAGIC, 1..=VIEW_META_VERSION, &buf).map_err(|e| bad(e.to_string()))?;
        let def = ViewDef::decode(&mut Decoder::new(body), format).map_err(|e| bad(e.to_string()))?;
        // The name joins paths (checkpoints, DROP's removal): it must be this directory's.
        if def.name != entry.name {
            return Err(bad(format!(
                "directory `{}` holds the definition of view `{}`: rename it back or move it out of the data directory",
                entry.name, def.name
            )));
        }
        out.push(def);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Removes a view's directory (definition and checkpoints).
pub async fn remove(storage: &Storage, data_dir: &Path, name: &str) -> Result<(), LogError> {
    let dir = view_dir(data_dir, name);
    if storage.exists(&dir) {
        storage.remove_dir_all(&dir).await?;
        storage.sync_dir(&views_dir(data_dir)).await?;
    }
    Ok(())
}
