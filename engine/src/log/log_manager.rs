//! The log manager of one shard: the catalog of every topic, and the partitions this
//! shard owns.
//!
//! Layout: `<data>/topics/<topic>/topic.meta` and `<data>/topics/<topic>/<partition>/`.
//! A topic is created by writing its directory and then its metadata file atomically;
//! a topic directory without metadata is an unfinished creation and is ignored. A topic
//! is deleted by renaming its directory into `<data>/trash/` (atomic), then removing it;
//! leftovers in the trash are removed on open.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::error::LogError;
use super::offset::Offset;
use super::partition::Partition;
use super::topic::TopicConfig;
use crate::io::Storage;
use crate::wire::{decode_meta_file_versions, encode_meta_file, Decoder, Encoder};

const TOPIC_META_FILE: &str = "topic.meta";
const TOPIC_META_MAGIC: [u8; 4] = *b"SLTP";
/// Version 2 added the dead-letter topic, primary key and lateness; version 1 is still read.
const TOPIC_META_VERSION: u16 = 2;

/// Which shard this log manager is, of how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub shard: usize,
    pub shards: usize,
}

impl Placement {
    /// One shard owning everything: for embedding and tools.
    pub fn single() -> Self {
        Placement { shard: 0, shards: 1 }
    }
}

/// The shard that owns partition `partition` of the topic with id `topic_id`. Spreads
/// the partitions of every topic over the shards, starting at a topic-specific shard.
pub fn owner_shard(topic_id: u32, partition: u32, shards: usize) -> usize {
    debug_assert!(shards > 0);
    (topic_id as usize + partition as usize) % shards
}

/// Where a reader starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPosition {
    Earliest,
    Latest,
    Offset(u64),
    /// The first record with timestamp at or after this (ms since the epoch).
    Time(i64),
}

impl std::str::FromStr for StartPosition {
    type Err = String;

    /// `earliest`, `latest`, `offset:N`, or `time:RFC3339` / `time:MILLIS`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "earliest" => Ok(StartPosition::Earliest),
            "latest" => Ok(StartPosition::Latest),
            _ => {
                if let Some(n) = s.strip_prefix("offset:") {
                    return n.parse().map(StartPosition::Offset).map_err(|_| format!("bad offset in '{s}'"));
                }
                if let Some(t) = s.strip_prefix("time:") {
                    if let Ok(ms) = t.parse::<i64>() {
                        return Ok(StartPosition::Time(ms));
                    }
                    let ts = humantime::parse_rfc3339_weak(t).map_err(|e| format!("bad time in '{s}': {e}"))?;
                    let ms = ts
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_millis() as i64)
                        .map_err(|_| format!("time before 1970 in '{s}'"))?;
                    return Ok(StartPosition::Time(ms));
                }
                Err(format!("bad start '{s}': want earliest, latest, offset:N or time:RFC3339"))
            }
        }
    }
}

/// Borrows of the catalog and the partition map are never held across an `.await`, so
/// a shard's tasks can share one `LogManager` freely.
pub struct LogManager {
    storage: Storage,
    data_dir: PathBuf,
    placement: Placement,
    topics: RefCell<BTreeMap<String, Rc<TopicConfig>>>,
    partitions: RefCell<HashMap<(String, u32), Partition>>,
}

impl LogManager {
    /// Opens the data directory (creating it if needed) and the partitions this shard owns.
    pub async fn open(storage: Storage, data_dir: &Path, placement: Placement) -> Result<LogManager, LogError> {
        let absolute = match storage {
            Storage::Dma => std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_path_buf()),
            Storage::Sim(_) => data_dir.to_path_buf(),
        };
        let data_dir = absolute.as_path();
        let topics_dir = data_dir.join("topics");
        storage.create_dir_all(&topics_dir).await?;
        let trash = data_dir.join("trash");
        if placement.shard == 0 && storage.exists(&trash) {
            for e in storage.list_dir(&trash)? {
                storage.remove_dir_all(&trash.join(&e.name)).await?;
            }
        }
        let lm = LogManager {
            storage,
            data_dir: data_dir.to_path_buf(),
            placement,
            topics: RefCell::new(BTreeMap::new()),
            partitions: RefCell::new(HashMap::new()),
        };
        for entry in lm.storage.list_dir(&topics_dir)? {
            if !entry.is_dir {
                continue;
            }
            let meta = topics_dir.join(&entry.name).join(TOPIC_META_FILE);
            if !lm.storage.exists(&meta) {
                tracing::warn!(topic = %entry.name, "ignoring topic directory without metadata (unfinished creation)");
                continue;
            }
            let config = read_topic_meta(&lm.storage, &meta).await?;
            // A renamed or copied directory would open as a second topic of the same name,
            // or leave the real one's data unseen: refuse to guess.
            if config.name != entry.name {
                return Err(LogError::BadMetadata {
                    path: meta,
                    detail: format!(
                        "directory `{}` holds the metadata of topic `{}`: rename it back or move it out of the data directory",
                        entry.name, config.name
                    ),
                });
            }
            lm.add_topic_local(config).await?;
        }
        Ok(lm)
    }

    pub fn placement(&self) -> Placement {
        self.placement
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    fn topic_dir(&self, name: &str) -> PathBuf {
        self.data_dir.join("topics").join(name)
    }

    /// Every topic, by name.
    pub fn topics(&self) -> Vec<Rc<TopicConfig>> {
        self.topics.borrow().values().cloned().collect()
    }

    pub fn topic(&self, name: &str) -> Option<Rc<TopicConfig>> {
        self.topics.borrow().get(name).cloned()
    }

    pub fn owns(&self, topic: &TopicConfig, partition: u32) -> bool {
        owner_shard(topic.topic_id, partition, self.placement.shards) == self.placement.shard
    }

    /// Writes a new topic's metadata: the durable act of creation. Assigns its id.
    /// Called on one shard (the coordinator); every shard then calls [`Self::add_topic_local`].
    pub async fn create_topic_meta(&self, mut config: TopicConfig) -> Result<TopicConfig, LogError> {
        config.validate().map_err(LogError::InvalidConfig)?;
        if self.topics.borrow().contains_key(&config.name) {
            return Err(LogError::TopicExists(config.name));
        }
        while config.topic_id == 0 || self.topics.borrow().values().any(|t| t.topic_id == config.topic_id) {
            config.topic_id = rand::random();
        }
        let dir = self.topic_dir(&config.name);
        if self.storage.exists(&dir) {
            // Left by an unfinished creation: nothing in it was ever acknowledged.
            self.storage.remove_dir_all(&dir).await?;
        }
        self.storage.create_dir_all(&dir).await?;
        self.storage.sync_dir(&self.data_dir.join("topics")).await?;
        let mut e = Encoder::new();
        config.encode(&mut e);
        let bytes = encode_meta_file(TOPIC_META_MAGIC, TOPIC_META_VERSION, &e.finish());
        self.storage.write_file_atomic(&dir.join(TOPIC_META_FILE), &bytes).await?;
        Ok(config)
    }

    /// Rewrites an existing topic's metadata (a schema evolution): the durable act of the
    /// change. Called on the coordinator; every shard then calls [`Self::update_topic_local`].
    pub async fn alter_topic_meta(&self, config: TopicConfig) -> Result<TopicConfig, LogError> {
        config.validate().map_err(LogError::InvalidConfig)?;
        let Some(current) = self.topic(&config.name) else {
            return Err(LogError::UnknownTopic(config.name));
        };
        if current.topic_id != config.topic_id || current.partitions != config.partitions {
            return Err(LogError::InvalidConfig("a topic's identity and partition count cannot change".into()));
        }
        let mut e = Encoder::new();
        config.encode(&mut e);
        let bytes = encode_meta_file(TOPIC_META_MAGIC, TOPIC_META_VERSION, &e.finish());
        self.storage.write_file_atomic(&self.topic_dir(&config.name).join(TOPIC_META_FILE), &bytes).await?;
        Ok(config)
    }

    /// Replaces a topic's entry in this shard's catalog (its partitions keep their
    /// settings, which cannot change; readers take schemas from the catalog).
    pub fn update_topic_local(&self, config: TopicConfig) -> Result<(), LogError> {
        let mut topics = self.topics.borrow_mut();
        match topics.get_mut(&config.name) {
            Some(entry) => {
                *entry = Rc::new(config);
                Ok(())
            }
            None => Err(LogError::UnknownTopic(config.name)),
        }
    }

    /// Adds a topic to this shard's catalog and opens the partitions it owns.
    pub async fn add_topic_local(&self, config: TopicConfig) -> Result<(), LogError> {
        let config = Rc::new(config);
        let dir = self.topic_dir(&config.name);
        let mut opened = Vec::new();
        for p in 0..config.partitions {
            if self.owns(&config, p) {
                match Partition::open(&self.storage, &dir.join(p.to_string()), config.clone(), p).await {
                    Ok(partition) => opened.push(partition),
                    Err(e) => {
                        for partition in opened {
                            let _ = partition.close().await;
                        }
                        return Err(e);
                    }
                }
            }
        }
        let mut partitions = self.partitions.borrow_mut();
        for partition in opened {
            partitions.insert((config.name.clone(), partition.id()), partition);
        }
        self.topics.borrow_mut().insert(config.name.clone(), config);
        Ok(())
    }

    /// Creates a topic on a single-shard log (embedding): metadata, then partitions.
    pub async fn create_topic(&self, config: TopicConfig) -> Result<TopicConfig, LogError> {
        let config = self.create_topic_meta(config).await?;
        self.add_topic_local(config.clone()).await?;
        Ok(config)
    }

    /// Closes this shard's partitions of a topic and forgets it.
    pub async fn remove_topic_local(&self, name: &str) -> Result<(), LogError> {
        let Some(config) = self.topics.borrow_mut().remove(name) else {
            return Err(LogError::UnknownTopic(name.to_string()));
        };
        let closing: Vec<Partition> = (0..config.partitions)
            .filter_map(|p| self.partitions.borrow_mut().remove(&(name.to_string(), p)))
            .collect();
        for partition in closing {
            partition.close().await?;
        }
        Ok(())
    }

    /// Removes a topic's files once every shard has closed its partitions.
    pub async fn delete_topic_files(&self, name: &str) -> Result<(), LogError> {
        let dir = self.topic_dir(name);
        if !self.storage.exists(&dir) {
            return Ok(());
        }
        let trash = self.data_dir.join("trash");
        self.storage.create_dir_all(&trash).await?;
        // Names are ASCII and up to 249 bytes: the full name plus a suffix could pass the
        // file-name limit (255), and the rename would fail after every shard let go.
        let target = trash.join(format!(
            "{}-{}-{:x}",
            &name[..name.len().min(200)],
            crate::clock::now_ms(),
            rand::random::<u32>()
        ));
        self.storage.rename(&dir, &target).await?;
        self.storage.sync_dir(&self.data_dir.join("topics")).await?;
        self.storage.remove_dir_all(&target).await?;
        Ok(())
    }

    /// Deletes a topic on a single-shard log (embedding).
    pub async fn delete_topic(&self, name: &str) -> Result<(), LogError> {
        self.remove_topic_local(name).await?;
        self.delete_topic_files(name).await
    }

    /// A partition this shard owns.
    pub fn partition(&self, topic: &str, partition: u32) -> Result<Partition, LogError> {
        let Some(config) = self.topic(topic) else {
            return Err(LogError::UnknownTopic(topic.to_string()));
        };
        if partition >= config.partitions {
            return Err(LogError::UnknownPartition { topic: topic.to_string(), partition });
        }
        self.partitions
            .borrow()
            .get(&(topic.to_string(), partition))
            .cloned()
            .ok_or(LogError::UnknownPartition { topic: topic.to_string(), partition })
    }

    /// The partitions this shard owns.
    pub fn partitions(&self) -> Vec<Partition> {
        self.partitions.borrow().values().cloned().collect()
    }

    /// Resolves a start position to an offset in `partition`.
    pub async fn resolve(partition: &Partition, start: StartPosition) -> Result<Offset, LogError> {
        let o = partition.offsets();
        Ok(match start {
            StartPosition::Earliest => o.log_start(),
            StartPosition::Latest => o.visible_end(),
            StartPosition::Offset(n) => Offset(n),
            StartPosition::Time(ts) => partition.offset_for_time(ts).await?,
        })
    }

    /// Applies retention to every partition this shard owns.
    pub async fn enforce_retention(&self, now_ms: i64) -> Result<usize, LogError> {
        let mut deleted = 0;
        for p in self.partitions() {
            deleted += p.enforce_retention(now_ms).await?;
        }
        Ok(deleted)
    }

    /// Closes every partition: finishes queued appends and syncs.
    pub async fn close(&self) -> Result<(), LogError> {
        let mut first_err = None;
        let all: Vec<Partition> = self.partitions.borrow_mut().drain().map(|(_, p)| p).collect();
        // Concurrently: each close waits for its own sync.
        for result in futures::future::join_all(all.iter().map(|p| p.close())).await {
            if let Err(e) = result {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

async fn read_topic_meta(storage: &Storage, path: &Path) -> Result<TopicConfig, LogError> {
    let bad = |detail: String| LogError::BadMetadata { path: path.to_path_buf(), detail };
    let buf = storage.read_file(path).await?;
    let (version, body) =
        decode_meta_file_versions(TOPIC_META_MAGIC, 1..=TOPIC_META_VERSION, &buf).map_err(|e| bad(e.to_string()))?;
    let config = TopicConfig::decode_version(&mut Decoder::new(body), version).map_err(|e| bad(e.to_string()))?;
    config.validate().map_err(bad)?;
    Ok(config)
}
