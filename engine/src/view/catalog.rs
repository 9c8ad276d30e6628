//! The view catalog: every materialized view's definition, durable in the data directory.
//!
//! `<data>/views/<name>/view.meta` (metadata envelope, magic `SLVW`) holds the view's id,
//! version and the SQL that defines it; the plan is made again from the SQL on every
//! start (against the topics' current schemas, which only grow at the end).

use std::path::{Path, PathBuf};

use crate::io::Storage;
use crate::log::LogError;
use crate::wire::{decode_meta_file, encode_meta_file, Decoder, Encoder, WireError};

const VIEW_META_FILE: &str = "view.meta";
const VIEW_META_MAGIC: [u8; 4] = *b"SLVW";
const VIEW_META_VERSION: u16 = 1;

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
}

impl ViewDef {
    pub fn key(&self) -> crate::dataflow::exchange::ViewKey {
        (self.id << 16) | (self.version as u64 & 0xffff)
    }

    pub fn encode(&self, e: &mut Encoder) {
        e.str(&self.name).u64(self.id).u32(self.version).str(&self.sql).i64(self.created_ms);
    }

    pub fn decode(d: &mut Decoder<'_>) -> Result<ViewDef, WireError> {
        Ok(ViewDef {
            name: d.str()?.to_string(),
            id: d.u64()?,
            version: d.u32()?,
            sql: d.str()?.to_string(),
            created_ms: d.i64()?,
        })
    }
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
        let body = decode_meta_file(VIEW_META_MAGIC, VIEW_META_VERSION, &buf).map_err(|e| bad(e.to_string()))?;
        out.push(ViewDef::decode(&mut Decoder::new(body)).map_err(|e| bad(e.to_string()))?);
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
