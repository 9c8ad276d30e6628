//! Committed offsets: kept in memory by the coordinator shard, made durable as records of
//! the internal topic `__consumer_offsets` (the log is the source of truth, as in Kafka).
//!
//! A group's offsets live in partition `crc32c(group) % OFFSETS_TOPIC_PARTITIONS`, and the
//! shard owning that partition coordinates the group, so a commit is a local append. On
//! start each shard replays its partitions of the topic; the last record per (group,
//! topic, partition) wins. Record formats (little-endian, see docs/format.md):
//!
//! ```text
//! key   = u16 version (1) | str group | str topic | u32 partition
//! value = u16 version (1) | i64 offset | i32 leader_epoch | str metadata | i64 commit_time_ms
//! ```

use std::collections::{BTreeMap, HashMap};

use crate::log::{LogError, LogManager, PartitionReader, TopicConfig};
use crate::record::{BatchBuilder, BatchPayload, PayloadError, RawRecord};
use crate::wire::{Decoder, Encoder, WireError};

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
const RECORD_VERSION: u16 = 1;

/// The partition of the offsets topic that holds a group's offsets.
pub fn group_partition(group: &str) -> u32 {
    crc32c::crc32c(group.as_bytes()) % crate::limits::OFFSETS_TOPIC_PARTITIONS
}

/// The configuration of the offsets topic.
pub fn offsets_topic_config() -> TopicConfig {
    TopicConfig::new(OFFSETS_TOPIC, crate::limits::OFFSETS_TOPIC_PARTITIONS)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_time_ms: i64,
}

/// One partition's commit within a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommit {
    pub topic: String,
    pub partition: i32,
    pub offset: CommittedOffset,
}

fn encode_key(group: &str, topic: &str, partition: i32) -> Vec<u8> {
    let mut e = Encoder::new();
    e.u16(RECORD_VERSION).str(group).str(topic).u32(partition as u32);
    e.finish()
}

fn encode_value(o: &CommittedOffset) -> Vec<u8> {
    let mut e = Encoder::new();
    e.u16(RECORD_VERSION).i64(o.offset).u32(o.leader_epoch as u32).str(&o.metadata).i64(o.commit_time_ms);
    e.finish()
}

/// A decoded record: a commit, or a tombstone (empty value) that forgets one.
enum Decoded {
    Commit(String, OffsetCommit),
    Tombstone { group: String, topic: String, partition: i32 },
}

fn decode_record(key: &[u8], value: &[u8]) -> Result<Decoded, WireError> {
    if value.is_empty() {
        let mut k = Decoder::new(key);
        if k.u16()? != RECORD_VERSION {
            return Err(WireError::Invalid("offset record version"));
        }
        let group = k.str()?.to_string();
        let topic = k.str()?.to_string();
        let partition = k.u32()? as i32;
        return Ok(Decoded::Tombstone { group, topic, partition });
    }
    let (g, c) = decode(key, value)?;
    Ok(Decoded::Commit(g, c))
}

fn decode(key: &[u8], value: &[u8]) -> Result<(String, OffsetCommit), WireError> {
    let mut k = Decoder::new(key);
    if k.u16()? != RECORD_VERSION {
        return Err(WireError::Invalid("offset record version"));
    }
    let group = k.str()?.to_string();
    let topic = k.str()?.to_string();
    let partition = k.u32()? as i32;
    let mut v = Decoder::new(value);
    if v.u16()? != RECORD_VERSION {
        return Err(WireError::Invalid("offset record version"));
    }
    let offset = CommittedOffset {
        offset: v.i64()?,
        leader_epoch: v.u32()? as i32,
        metadata: v.str()?.to_string(),
        commit_time_ms: v.i64()?,
    };
    Ok((group, OffsetCommit { topic, partition, offset }))
}

/// The records of one commit, as one batch (appended atomically).
pub fn commit_payload(group: &str, commits: &[OffsetCommit], now_ms: i64) -> Result<BatchPayload, PayloadError> {
    let mut b: BatchBuilder = BatchBuilder::new();
    for c in commits {
        b.push(RawRecord::new(now_ms, Some(&encode_key(group, &c.topic, c.partition)), &encode_value(&c.offset)));
    }
    b.finish()
}

/// Tombstones forgetting a group's offsets of the given partitions.
pub fn tombstone_payload(group: &str, partitions: &[(String, i32)], now_ms: i64) -> Result<BatchPayload, PayloadError> {
    let mut b: BatchBuilder = BatchBuilder::new();
    for (topic, p) in partitions {
        b.push(RawRecord::new(now_ms, Some(&encode_key(group, topic, *p)), &[]));
    }
    b.finish()
}

/// Every group's committed offsets, as this shard knows them.
#[derive(Default)]
pub struct OffsetTable {
    groups: HashMap<String, BTreeMap<(String, i32), CommittedOffset>>,
}

impl OffsetTable {
    pub fn apply(&mut self, group: &str, commits: &[OffsetCommit]) {
        let g = self.groups.entry(group.to_string()).or_default();
        for c in commits {
            g.insert((c.topic.clone(), c.partition), c.offset.clone());
        }
    }

    pub fn get(&self, group: &str, topic: &str, partition: i32) -> Option<&CommittedOffset> {
        self.groups.get(group)?.get(&(topic.to_string(), partition))
    }

    /// Every committed offset of a group: (topic, partition) → offset.
    pub fn group(&self, group: &str) -> Vec<(String, i32, CommittedOffset)> {
        self.groups
            .get(group)
            .map(|g| g.iter().map(|((t, p), o)| (t.clone(), *p, o.clone())).collect())
            .unwrap_or_default()
    }

    /// Forgets every offset of `topic`; returns what was forgotten, per group.
    pub fn forget_topic(&mut self, topic: &str) -> Vec<(String, Vec<(String, i32)>)> {
        let mut out = Vec::new();
        for (group, offsets) in self.groups.iter_mut() {
            let gone: Vec<(String, i32)> = offsets.keys().filter(|(t, _)| t == topic).cloned().collect();
            for k in &gone {
                offsets.remove(k);
            }
            if !gone.is_empty() {
                out.push((group.clone(), gone));
            }
        }
        self.groups.retain(|_, o| !o.is_empty());
        out
    }

    pub fn group_names(&self) -> Vec<String> {
        self.groups.keys().cloned().collect()
    }

    /// Replays the partitions of the offsets topic this shard owns.
    pub async fn load(&mut self, log: &LogManager) -> Result<usize, LogError> {
        let Some(topic) = log.topic(OFFSETS_TOPIC) else { return Ok(0) };
        let mut loaded = 0;
        for p in 0..topic.partitions {
            if !log.owns(&topic, p) {
                continue;
            }
            let partition = log.partition(OFFSETS_TOPIC, p)?;
            let start = partition.offsets().log_start();
            let mut reader = PartitionReader::new(partition, start);
            while let Some(batch) = reader.next_batch().await? {
                for r in batch.records().iter() {
                    let key = r.key.as_ref().map(|k| k.as_slice()).unwrap_or_default();
                    match decode_record(key, r.value.as_slice()) {
                        Ok(Decoded::Commit(group, commit)) => {
                            self.apply(&group, std::slice::from_ref(&commit));
                            loaded += 1;
                        }
                        Ok(Decoded::Tombstone { group, topic, partition }) => {
                            if let Some(g) = self.groups.get_mut(&group) {
                                g.remove(&(topic, partition));
                                if g.is_empty() {
                                    self.groups.remove(&group);
                                }
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "skipping an unreadable committed-offset record"),
                    }
                }
            }
        }
        Ok(loaded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let c = OffsetCommit {
            topic: "t".into(),
            partition: 3,
            offset: CommittedOffset { offset: 42, leader_epoch: -1, metadata: "m".into(), commit_time_ms: 7 },
        };
        let (g, back) = decode(&encode_key("g", "t", 3), &encode_value(&c.offset)).unwrap();
        assert_eq!((g.as_str(), back), ("g", c));
        assert!(decode(b"\x09\x00", b"").is_err());
        assert!(group_partition("some-group") < crate::limits::OFFSETS_TOPIC_PARTITIONS);
    }
}
