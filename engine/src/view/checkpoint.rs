//! View checkpoints on disk: each shard's state of a view, with the source offsets it
//! covers, and the manifest naming the last checkpoint every shard completed.
//!
//! `<data>/views/<name>/ckpt-<id>-<shard>.state` (envelope magic `SLCS`) and
//! `<data>/views/<name>/checkpoint.meta` (`SLCM`: the id, the view key, the shard count).
//! Each file is written whole (temporary file, fsync, rename, directory fsync); the
//! manifest is written only after every shard's file, so a crash at any point leaves the
//! previous complete checkpoint in force. A checkpoint taken with another shard count or
//! another version of the view is ignored (the view is rebuilt from its sources).

use std::path::{Path, PathBuf};

use super::catalog::view_dir;
use crate::io::Storage;
use crate::limits::align_up;
use crate::log::{LogError, Offset};
use crate::wire::{
    decode_meta_file, encode_meta_file, encode_meta_file_parts_into, Decoder, Encoder, WireError,
    META_FILE_HEADER_BYTES,
};

const STATE_MAGIC: [u8; 4] = *b"SLCS";
const STATE_VERSION: u16 = 1;
const META_MAGIC: [u8; 4] = *b"SLCM";
const META_VERSION: u16 = 1;
const META_FILE: &str = "checkpoint.meta";

/// The last complete checkpoint of a view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointMeta {
    pub id: u64,
    pub view_key: u64,
    pub shards: u32,
}

/// One source partition's place in a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePosition {
    pub topic: String,
    pub partition: u32,
    /// The next offset to read.
    pub next: Offset,
    /// The newest event time seen (the partition clock).
    pub max_ts: i64,
}

/// One shard's part of a checkpoint: where its sources stand and its operators' state.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardState {
    pub view_key: u64,
    pub id: u64,
    pub shards: u32,
    pub shard: u32,
    pub sources: Vec<SourcePosition>,
    /// The operators' state, encoded by the runtime.
    pub operators: Vec<u8>,
}

impl ShardState {
    /// The file's bytes in one buffer (checkpoints are written by [`write_shard_state`],
    /// straight into the write buffer).
    #[cfg(test)]
    pub fn encode(&self) -> Vec<u8> {
        let fields = self.fields();
        let mut out = vec![0; self.encoded_len(&fields)];
        self.encode_into(&fields, &mut out);
        out
    }

    /// The file's length, given [`Self::fields`].
    fn encoded_len(&self, fields: &[u8]) -> usize {
        META_FILE_HEADER_BYTES + fields.len() + self.operators.len()
    }

    /// Writes the file into `out` (at least [`Self::encoded_len`] long); returns its length.
    fn encode_into(&self, fields: &[u8], out: &mut [u8]) -> usize {
        encode_meta_file_parts_into(STATE_MAGIC, STATE_VERSION, &[fields, &self.operators], out)
    }

    /// The body up to the operators' state: the fields, the source positions, and the
    /// state's length.
    fn fields(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        e.u64(self.view_key).u64(self.id).u32(self.shards).u32(self.shard).u32(self.sources.len() as u32);
        for s in &self.sources {
            e.str(&s.topic).u32(s.partition).u64(s.next.0).i64(s.max_ts);
        }
        e.u32(self.operators.len() as u32);
        e.finish()
    }

    pub fn decode(bytes: &[u8]) -> Result<ShardState, WireError> {
        let body = decode_meta_file(STATE_MAGIC, STATE_VERSION, bytes)?;
        let mut d = Decoder::new(body);
        let (view_key, id, shards, shard) = (d.u64()?, d.u64()?, d.u32()?, d.u32()?);
        let n = d.u32()? as usize;
        // Each position takes at least 24 bytes (an empty topic name, then 4 + 8 + 8).
        if n > d.remaining() / 24 {
            return Err(WireError::Invalid("source count"));
        }
        let mut sources = Vec::with_capacity(n);
        for _ in 0..n {
            sources.push(SourcePosition {
                topic: d.str()?.to_string(),
                partition: d.u32()?,
                next: Offset(d.u64()?),
                max_ts: d.i64()?,
            });
        }
        let operators = d.bytes()?.to_vec();
        d.end()?;
        Ok(ShardState { view_key, id, shards, shard, sources, operators })
    }
}

fn state_path(data_dir: &Path, view: &str, id: u64, shard: u32) -> PathBuf {
    view_dir(data_dir, view).join(format!("ckpt-{id:020}-{shard:04}.state"))
}

/// Writes one shard's state durably. The state is encoded straight into the write buffer
/// and let go before the disk work: a checkpoint holds one copy of the state while it is
/// written, not three (the state, its encoding, the write buffer).
pub async fn write_shard_state(
    storage: &Storage,
    data_dir: &Path,
    view: &str,
    state: ShardState,
) -> Result<(), LogError> {
    let path = state_path(data_dir, view, state.id, state.shard);
    let fields = state.fields();
    let mut buf = storage.alloc_buffer(align_up(state.encoded_len(&fields) as u64) as usize);
    let written = state.encode_into(&fields, buf.as_mut_slice());
    buf.as_mut_slice()[written..].fill(0);
    drop(state);
    storage.write_file_atomic_buf(&path, buf).await?;
    Ok(())
}

/// Reads one shard's state of checkpoint `meta`, if it is there and belongs to it.
pub async fn read_shard_state(
    storage: &Storage,
    data_dir: &Path,
    view: &str,
    meta: &CheckpointMeta,
    shard: u32,
) -> Result<Option<ShardState>, LogError> {
    let path = state_path(data_dir, view, meta.id, shard);
    if !storage.exists(&path) {
        return Ok(None);
    }
    let bytes = storage.read_file(&path).await?;
    let state =
        ShardState::decode(&bytes).map_err(|e| LogError::BadMetadata { path: path.clone(), detail: e.to_string() })?;
    if state.id != meta.id || state.view_key != meta.view_key || state.shard != shard || state.shards != meta.shards {
        return Err(LogError::BadMetadata { path, detail: "the state does not belong to the checkpoint".into() });
    }
    Ok(Some(state))
}

/// Records checkpoint `meta` as the view's last complete one, then removes older states.
pub async fn write_meta(storage: &Storage, data_dir: &Path, view: &str, meta: &CheckpointMeta) -> Result<(), LogError> {
    let dir = view_dir(data_dir, view);
    let mut e = Encoder::new();
    e.u64(meta.id).u64(meta.view_key).u32(meta.shards);
    storage.write_file_atomic(&dir.join(META_FILE), &encode_meta_file(META_MAGIC, META_VERSION, &e.finish())).await?;
    // Older checkpoints are no longer needed (a crash here leaves files the next pass removes).
    remove_states(storage, &dir, Some(meta.id)).await
}

/// Removes the view's state files, but those of checkpoint `keep`.
async fn remove_states(storage: &Storage, dir: &Path, keep: Option<u64>) -> Result<(), LogError> {
    let keep = keep.map(|id| format!("ckpt-{id:020}-"));
    for entry in storage.list_dir(dir)? {
        if entry.name.starts_with("ckpt-") && keep.as_ref().is_none_or(|k| !entry.name.starts_with(k.as_str())) {
            storage.remove_file(&dir.join(&entry.name)).await?;
        }
    }
    Ok(())
}

/// Forgets the view's checkpoints (manifest first, so a crash midway leaves none in
/// force): the view is then built again from its sources.
pub async fn discard(storage: &Storage, data_dir: &Path, view: &str) -> Result<(), LogError> {
    let dir = view_dir(data_dir, view);
    let meta = dir.join(META_FILE);
    if storage.exists(&meta) {
        storage.remove_file(&meta).await?;
        storage.sync_dir(&dir).await?;
    }
    remove_states(storage, &dir, None).await
}

/// The view's last complete checkpoint, if any.
pub async fn read_meta(storage: &Storage, data_dir: &Path, view: &str) -> Result<Option<CheckpointMeta>, LogError> {
    let path = view_dir(data_dir, view).join(META_FILE);
    if !storage.exists(&path) {
        return Ok(None);
    }
    let bytes = storage.read_file(&path).await?;
    let bad = |e: WireError| LogError::BadMetadata { path: path.clone(), detail: e.to_string() };
    let body = decode_meta_file(META_MAGIC, META_VERSION, &bytes).map_err(bad)?;
    let mut d = Decoder::new(body);
    let meta =
        CheckpointMeta { id: d.u64().map_err(bad)?, view_key: d.u64().map_err(bad)?, shards: d.u32().map_err(bad)? };
    Ok(Some(meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_state_round_trips_and_rejects_damage() {
        let s = ShardState {
            view_key: 7 << 16 | 1,
            id: 42,
            shards: 2,
            shard: 1,
            sources: vec![SourcePosition { topic: "t".into(), partition: 3, next: Offset(99), max_ts: -5 }],
            operators: vec![1, 2, 3],
        };
        let bytes = s.encode();
        assert_eq!(ShardState::decode(&bytes).unwrap(), s);
        for cut in [0, 4, bytes.len() / 2, bytes.len() - 1] {
            assert!(ShardState::decode(&bytes[..cut]).is_err(), "truncated at {cut}");
        }
        let mut flipped = bytes.clone();
        let last = flipped.len() - 2;
        flipped[last] ^= 0x40;
        assert!(ShardState::decode(&flipped).is_err(), "a flipped bit is caught by the envelope's checksum");
    }
}
