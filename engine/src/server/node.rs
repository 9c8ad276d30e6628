//! A shard's node: its log manager, and the routing of every operation to the shard that
//! owns the partition. Shard 0 coordinates catalog changes (topic create and delete) so
//! they are serialised and reach every shard before they are acknowledged.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use event_listener::Event;
use futures::channel::oneshot;
use glommio::channels::shared_channel::ConnectedReceiver;

use super::kafka::groups::{
    group_partition, offsets_topic_config, GroupCall, GroupCoordinator, GroupReply, OFFSETS_TOPIC,
};
use super::native::protocol::{ApiError, ErrorCode};
use crate::limits::{BATCH_HEADER_BYTES, FETCH_BYTES_MAX, FETCH_WAIT_MS_MAX, SHARD_INFLIGHT_MAX};
use crate::log::PendingAppend;
use crate::log::{owner_shard, AppendAck, LogManager, Offset, PartitionStatus, StartPosition, TopicConfig};
use crate::record::BatchPayload;
use crate::runtime::{ShardId, ShardSender};
use crate::server::kafka::record_batch::write_kafka_batch;
use crate::wire::Encoder;

/// How fetched batches are encoded for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchFormat {
    /// Sluice batches (header and payload, each 16-aligned): the native protocol.
    Native,
    /// Kafka record batches (v2, uncompressed; typed rows as JSON).
    Kafka,
}

/// Fetched batches, encoded for the wire: `Send`, so it can cross shards.
#[derive(Debug, Default)]
pub struct FetchReply {
    pub start: Offset,
    pub log_start: Offset,
    pub visible_end: Offset,
    pub batch_count: u32,
    pub batches: Vec<u8>,
}

/// Records rendered as NDJSON lines, with where to read next.
#[derive(Debug, Default)]
pub struct JsonFetch {
    pub lines: Vec<u8>,
    pub records: u32,
    pub next_offset: u64,
    pub log_start: u64,
    pub visible_end: u64,
}

/// Offsets of a partition, answering ListOffsets.
#[derive(Debug, Clone, Copy)]
pub struct OffsetsReply {
    pub offset: Offset,
    /// For a lookup by time: the timestamp of the record found (`None`: no record that late).
    pub timestamp: Option<i64>,
    pub log_start: Offset,
    pub visible_end: Offset,
}

pub(super) type Reply<T> = oneshot::Sender<Result<T, ApiError>>;

/// A request from one shard to another.
pub enum ShardRequest {
    Produce {
        topic: String,
        partition: u32,
        payload: BatchPayload,
        reply: Reply<AppendAck>,
    },
    Fetch {
        topic: String,
        partition: u32,
        start: StartPosition,
        max_bytes: u32,
        max_wait_ms: u32,
        format: FetchFormat,
        reply: Reply<FetchReply>,
    },
    /// Waits until data past `offset` is visible (or the wait ends); answers whether it is.
    WaitForData {
        topic: String,
        partition: u32,
        offset: u64,
        max_wait_ms: u32,
        reply: Reply<bool>,
    },
    /// To a group's coordinator shard.
    Group {
        group: String,
        call: GroupCall,
        reply: Reply<GroupReply>,
    },
    /// Forget the committed offsets of a deleted topic.
    ForgetTopicOffsets {
        topic: String,
        reply: Reply<()>,
    },
    /// Records as NDJSON, for HTTP readers.
    FetchJson {
        topic: String,
        partition: u32,
        start: StartPosition,
        max_records: u32,
        max_wait_ms: u32,
        reply: Reply<JsonFetch>,
    },
    /// This shard's lines of `/metrics`.
    Metrics {
        reply: Reply<String>,
    },
    /// The groups a shard coordinates.
    ListGroups {
        reply: Reply<Vec<(String, String, &'static str)>>,
    },
    ListOffsets {
        topic: String,
        partition: u32,
        start: StartPosition,
        reply: Reply<OffsetsReply>,
    },
    Status {
        topic: String,
        reply: Reply<Vec<PartitionStatus>>,
    },
    /// To the coordinator.
    CreateTopic {
        config: TopicConfig,
        reply: Reply<TopicConfig>,
    },
    /// To the coordinator.
    DeleteTopic {
        name: String,
        reply: Reply<()>,
    },
    /// To the coordinator: add a version to a typed topic's schema.
    EvolveSchema {
        topic: String,
        declaration: String,
        event_time: Option<String>,
        reply: Reply<TopicConfig>,
    },
    /// From the coordinator: a topic's metadata changed (a new schema version).
    UpdateTopic {
        config: TopicConfig,
        reply: Reply<()>,
    },
    /// From the coordinator: open your partitions of this new topic.
    AddTopic {
        config: TopicConfig,
        reply: Reply<()>,
    },
    /// From the coordinator: close your partitions of this topic.
    RemoveTopic {
        name: String,
        reply: Reply<()>,
    },
    /// Views (see `views.rs`).
    View(super::views::ViewRequest),
}

pub(super) const COORDINATOR: usize = 0;

pub(super) fn gone() -> ApiError {
    ApiError::new(ErrorCode::ShuttingDown, "the owning shard is shutting down")
}

pub struct Node {
    pub shard: ShardId,
    pub log: LogManager,
    /// The consumer groups this shard coordinates.
    pub groups: Rc<GroupCoordinator>,
    pub(super) peers: ShardSender<ShardRequest>,
    /// The last producer id handed out by this shard (see `allocate_producer_id`).
    last_producer_id: Cell<i64>,
    /// Serialises catalog changes on the coordinator.
    pub(super) catalog_lock: glommio::sync::Semaphore,
    stopping: Cell<bool>,
    stop_event: Event,
    /// Requests from peer shards being served now (a queue depth for `/metrics`).
    pub peer_inflight: Cell<usize>,
    /// Open client connections on this shard, all protocols.
    pub connections: Cell<usize>,
    /// The materialized views, each running on every shard.
    pub views: crate::view::manager::ViewManager,
    /// The dataflow exchanges (set once the shard has joined them).
    pub(super) data: std::cell::RefCell<Option<super::views::DataMeshes>>,
    /// Spreads unkeyed SQL inserts over partitions.
    pub(super) insert_round_robin: Cell<u32>,
    /// How late the shard's stall probe woke (see `server::stall_probe`).
    pub loop_lag: crate::metrics::LatencyHistogram,
}

impl Node {
    pub fn new(shard: ShardId, log: LogManager, peers: ShardSender<ShardRequest>, groups: GroupCoordinator) -> Self {
        Node {
            shard,
            log,
            groups: Rc::new(groups),
            peers,
            last_producer_id: Cell::new(0),
            catalog_lock: glommio::sync::Semaphore::new(1),
            stopping: Cell::new(false),
            stop_event: Event::new(),
            peer_inflight: Cell::new(0),
            connections: Cell::new(0),
            views: crate::view::manager::ViewManager::new(),
            data: std::cell::RefCell::new(None),
            insert_round_robin: Cell::new(0),
            loop_lag: Default::default(),
        }
    }

    pub fn stop(&self) {
        self.stopping.set(true);
        self.stop_event.notify(usize::MAX);
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.get()
    }

    /// Resolves when this shard starts stopping.
    pub async fn stopped(&self) {
        loop {
            if self.stopping.get() {
                return;
            }
            let l = self.stop_event.listen();
            if self.stopping.get() {
                return;
            }
            l.await;
        }
    }

    pub fn topic(&self, name: &str) -> Result<Rc<TopicConfig>, ApiError> {
        self.log
            .topic(name)
            .ok_or_else(|| ApiError::new(ErrorCode::UnknownTopic, format!("topic '{name}' does not exist")))
    }

    /// The shard owning a partition, after checking it exists.
    fn owner(&self, topic: &str, partition: u32) -> Result<(Rc<TopicConfig>, usize), ApiError> {
        let config = self.topic(topic)?;
        if partition >= config.partitions {
            return Err(ApiError::new(
                ErrorCode::UnknownPartition,
                format!("topic '{topic}' has {} partitions; there is no partition {partition}", config.partitions),
            ));
        }
        let owner = owner_shard(config.topic_id, partition, self.shard.count);
        Ok((config, owner))
    }

    pub(super) async fn ask<T>(
        &self,
        shard: usize,
        make: impl FnOnce(Reply<T>) -> ShardRequest,
    ) -> Result<T, ApiError> {
        let (tx, rx) = oneshot::channel();
        self.peers.send_to(shard, make(tx)).await.map_err(|_| gone())?;
        rx.await.unwrap_or_else(|_| Err(gone()))
    }

    /// The topic's batch limit, for validating a payload before routing it.
    pub fn batch_bytes_max(&self, topic: &str) -> Result<usize, ApiError> {
        Ok(self.topic(topic)?.batch_bytes_max as usize)
    }

    pub async fn produce(&self, topic: &str, partition: u32, payload: BatchPayload) -> Result<AppendAck, ApiError> {
        self.submit_produce(topic, partition, payload).await?.await
    }

    /// Queues an append on the owning shard and returns what resolves to its
    /// acknowledgement. Appends submitted in order from one task reach the partition in
    /// that order (local queue and cross-shard channel are both first in, first out).
    pub async fn submit_produce(
        &self,
        topic: &str,
        partition: u32,
        payload: BatchPayload,
    ) -> Result<PendingProduce, ApiError> {
        let (_, owner) = self.owner(topic, partition)?;
        if owner == self.shard.index {
            let pending = self.log.partition(topic, partition)?.submit(payload).await?;
            return Ok(PendingProduce::Local(pending));
        }
        let (tx, rx) = oneshot::channel();
        let request = ShardRequest::Produce { topic: topic.to_string(), partition, payload, reply: tx };
        self.peers.send_to(owner, request).await.map_err(|_| gone())?;
        Ok(PendingProduce::Remote(rx))
    }

    /// A new producer id: unique across shards and restarts (milliseconds since the epoch
    /// in the high bits, the shard in the low ones, strictly increasing per shard).
    pub fn allocate_producer_id(&self) -> i64 {
        let shards = self.shard.count.next_power_of_two().max(1) as i64;
        let floor = (crate::clock::now_ms() << 16) / shards * shards + self.shard.index as i64;
        let next = (self.last_producer_id.get() + shards).max(floor);
        self.last_producer_id.set(next);
        next
    }

    /// The shard coordinating a group: the owner of its partition of the offsets topic.
    fn coordinator_of(&self, group: &str) -> Result<usize, ApiError> {
        let config = self.topic(OFFSETS_TOPIC)?;
        Ok(owner_shard(config.topic_id, group_partition(group), self.shard.count))
    }

    /// Sends a call to a group's coordinator.
    pub async fn group_call(&self, group: &str, call: GroupCall) -> Result<GroupReply, ApiError> {
        let shard = self.coordinator_of(group)?;
        if shard == self.shard.index {
            return Ok(self.groups.call(&self.log, group, call).await);
        }
        let group = group.to_string();
        self.ask(shard, |reply| ShardRequest::Group { group, call, reply }).await
    }

    /// Every group any shard coordinates: (group, protocol type, state).
    pub async fn list_groups(&self) -> Result<Vec<(String, String, &'static str)>, ApiError> {
        let mut all = self.groups.list();
        for shard in (0..self.shard.count).filter(|&s| s != self.shard.index) {
            all.extend(self.ask(shard, |reply| ShardRequest::ListGroups { reply }).await?);
        }
        all.sort();
        Ok(all)
    }

    /// Creates the internal topics if they are missing (every shard calls this at start;
    /// the coordinator serialises the creations) and loads this shard's group offsets.
    pub async fn start_internal(&self) -> Result<(), ApiError> {
        if self.log.topic(OFFSETS_TOPIC).is_none() {
            match self.create_topic(offsets_topic_config()).await {
                Ok(_) => {}
                Err(e) if e.code == ErrorCode::TopicExists => {}
                Err(e) => return Err(e),
            }
        }
        let n = self.groups.load(&self.log).await?;
        tracing::debug!(shard = self.shard.index, committed_offsets = n, "loaded committed offsets");
        Ok(())
    }

    /// Records of a partition as NDJSON lines (at most `max_records`), from its owner.
    pub async fn fetch_json(
        &self,
        topic: &str,
        partition: u32,
        start: StartPosition,
        max_records: u32,
        max_wait_ms: u32,
    ) -> Result<JsonFetch, ApiError> {
        let (_, owner) = self.owner(topic, partition)?;
        if owner == self.shard.index {
            return self.fetch_json_local(topic, partition, start, max_records, max_wait_ms).await;
        }
        let topic = topic.to_string();
        self.ask(owner, |reply| ShardRequest::FetchJson { topic, partition, start, max_records, max_wait_ms, reply })
            .await
    }

    async fn fetch_json_local(
        &self,
        topic: &str,
        partition: u32,
        start: StartPosition,
        max_records: u32,
        max_wait_ms: u32,
    ) -> Result<JsonFetch, ApiError> {
        let p = self.log.partition(topic, partition)?;
        let from = LogManager::resolve(&p, start).await?;
        if max_wait_ms > 0 && from >= p.offsets().visible_end() {
            self.wait_local(topic, partition, from.0, max_wait_ms).await?;
        }
        let config = self.topic(topic)?;
        let mut out = JsonFetch { next_offset: from.0, ..Default::default() };
        let mut next = from;
        'read: while out.records < max_records {
            let batches = p.read(next, crate::limits::READ_AHEAD_CHUNK_BYTES).await?;
            if batches.is_empty() {
                break;
            }
            for b in &batches {
                for (i, line) in crate::server::http::records::batch_to_json(b, &config.schemas, partition) {
                    let offset = b.base_offset() + i as u64;
                    if offset < from.0 {
                        continue;
                    }
                    out.lines.extend_from_slice(line.as_bytes());
                    out.lines.push(b'\n');
                    out.records += 1;
                    out.next_offset = offset + 1;
                    if out.records >= max_records {
                        break 'read;
                    }
                }
                next = Offset(b.end_offset());
            }
        }
        let o = p.offsets();
        out.log_start = o.log_start().0;
        out.visible_end = o.visible_end().0;
        Ok(out)
    }

    /// This shard's lines of `/metrics` (every line carries `shard="i"`).
    pub fn render_metrics(&self) -> String {
        crate::server::http::metrics::render_shard(self)
    }

    /// Every shard's metrics.
    pub async fn metrics_all(&self) -> Result<String, ApiError> {
        let mut parts = vec![self.render_metrics()];
        for shard in (0..self.shard.count).filter(|&s| s != self.shard.index) {
            parts.push(self.ask(shard, |reply| ShardRequest::Metrics { reply }).await?);
        }
        Ok(crate::server::http::metrics::merge(parts))
    }

    /// Waits for data past `offset` of a partition, on its owning shard.
    pub async fn wait_for_data(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        max_wait_ms: u32,
    ) -> Result<bool, ApiError> {
        let (_, owner) = self.owner(topic, partition)?;
        if owner == self.shard.index {
            return self.wait_local(topic, partition, offset, max_wait_ms).await;
        }
        let topic = topic.to_string();
        self.ask(owner, |reply| ShardRequest::WaitForData { topic, partition, offset, max_wait_ms, reply }).await
    }

    async fn wait_local(&self, topic: &str, partition: u32, offset: u64, max_wait_ms: u32) -> Result<bool, ApiError> {
        let p = self.log.partition(topic, partition)?;
        let wait = Duration::from_millis(max_wait_ms.min(FETCH_WAIT_MS_MAX) as u64);
        let stopped = async {
            self.stopped().await;
            false
        };
        Ok(futures_lite::future::or(p.wait_for(Offset(offset), wait), stopped).await)
    }

    pub async fn fetch(
        &self,
        topic: &str,
        partition: u32,
        start: StartPosition,
        max_bytes: u32,
        max_wait_ms: u32,
        format: FetchFormat,
    ) -> Result<FetchReply, ApiError> {
        let (_, owner) = self.owner(topic, partition)?;
        if owner == self.shard.index {
            return self.fetch_local(topic, partition, start, max_bytes, max_wait_ms, format).await;
        }
        let topic = topic.to_string();
        self.ask(owner, |reply| ShardRequest::Fetch { topic, partition, start, max_bytes, max_wait_ms, format, reply })
            .await
    }

    async fn fetch_local(
        &self,
        topic: &str,
        partition: u32,
        start: StartPosition,
        max_bytes: u32,
        max_wait_ms: u32,
        format: FetchFormat,
    ) -> Result<FetchReply, ApiError> {
        let p = self.log.partition(topic, partition)?;
        let from = LogManager::resolve(&p, start).await?;
        let wait = max_wait_ms.min(FETCH_WAIT_MS_MAX);
        if wait > 0 && from >= p.offsets().visible_end() && !self.is_stopping() {
            let stopped = async {
                self.stopped().await;
                false
            };
            futures_lite::future::or(p.wait_for(from, Duration::from_millis(wait as u64)), stopped).await;
        }
        // 0 bytes: the offsets only (a Kafka fetch whose response budget is spent).
        let batches = match max_bytes {
            0 => Vec::new(),
            max => p.read(from, max.min(FETCH_BYTES_MAX) as usize).await?,
        };
        let offsets = p.offsets();
        let capacity = batches.iter().map(|b| b.payload().len() + 80).sum();
        let encoded = match format {
            FetchFormat::Native => {
                let mut e = Encoder::with_buf(Vec::with_capacity(capacity));
                for b in &batches {
                    let mut header = [0u8; BATCH_HEADER_BYTES];
                    b.header.encode(&mut header);
                    e.raw(&header).raw(b.stored_payload()).pad_to(16);
                }
                e.finish()
            }
            FetchFormat::Kafka => {
                // Schemas from the catalog: it has every version, the partition's copy may not.
                let config = self.topic(topic)?;
                let mut out = Vec::with_capacity(capacity);
                for b in &batches {
                    write_kafka_batch(&mut out, b, &config.schemas);
                }
                out
            }
        };
        Ok(FetchReply {
            start: from,
            log_start: offsets.log_start(),
            visible_end: offsets.visible_end(),
            batch_count: batches.len() as u32,
            batches: encoded,
        })
    }

    pub async fn list_offsets(
        &self,
        topic: &str,
        partition: u32,
        start: StartPosition,
    ) -> Result<OffsetsReply, ApiError> {
        let (_, owner) = self.owner(topic, partition)?;
        if owner == self.shard.index {
            let p = self.log.partition(topic, partition)?;
            let (offset, timestamp) = match start {
                StartPosition::Time(ts) => match p.record_at_time(ts).await? {
                    Some((o, t)) => (o, Some(t)),
                    None => (p.offsets().visible_end(), None),
                },
                other => (LogManager::resolve(&p, other).await?, None),
            };
            let o = p.offsets();
            return Ok(OffsetsReply { offset, timestamp, log_start: o.log_start(), visible_end: o.visible_end() });
        }
        let topic = topic.to_string();
        self.ask(owner, |reply| ShardRequest::ListOffsets { topic, partition, start, reply }).await
    }

    /// The topic's configuration and the status of every partition, from every shard.
    pub async fn describe(&self, topic: &str) -> Result<(Rc<TopicConfig>, Vec<PartitionStatus>), ApiError> {
        let config = self.topic(topic)?;
        let mut all = self.local_status(topic);
        for shard in (0..self.shard.count).filter(|&s| s != self.shard.index) {
            let name = topic.to_string();
            all.extend(self.ask(shard, |reply| ShardRequest::Status { topic: name, reply }).await?);
        }
        all.sort_by_key(|s| s.partition);
        Ok((config, all))
    }

    fn local_status(&self, topic: &str) -> Vec<PartitionStatus> {
        self.log.partitions().iter().filter(|p| p.topic().name == topic).map(|p| p.status()).collect()
    }

    pub async fn create_topic(&self, config: TopicConfig) -> Result<TopicConfig, ApiError> {
        if self.shard.index != COORDINATOR {
            return self.ask(COORDINATOR, |reply| ShardRequest::CreateTopic { config, reply }).await;
        }
        let _permit = self.catalog_lock.acquire_permit(1).await.map_err(|_| gone())?;
        self.create_topic_locked(config).await
    }

    /// Creates a topic on every shard; the caller holds the catalog lock (coordinator).
    pub(super) async fn create_topic_locked(&self, config: TopicConfig) -> Result<TopicConfig, ApiError> {
        debug_assert_eq!(self.shard.index, COORDINATOR);
        if self.views.get(&config.name).is_some() {
            return Err(ApiError::new(
                ErrorCode::TopicExists,
                format!("a materialized view named '{}' exists; topics and views share one namespace", config.name),
            ));
        }
        let config = self.log.create_topic_meta(config).await?;
        let added = self
            .on_every_shard(
                || self.log.add_topic_local(config.clone()),
                |reply| ShardRequest::AddTopic { config: config.clone(), reply },
            )
            .await;
        if let Err(e) = added {
            // Nothing is half-created: undo on every shard (those that never added it
            // answer UnknownTopic, which is fine), then remove the files.
            let _ = self
                .on_every_shard(
                    || async { self.log.remove_topic_local(&config.name).await.or(Ok(())) },
                    |reply| ShardRequest::RemoveTopic { name: config.name.clone(), reply },
                )
                .await;
            let _ = self.log.delete_topic_files(&config.name).await;
            return Err(e);
        }
        tracing::info!(topic = %config.name, partitions = config.partitions, durability = %config.durability, "topic created");
        Ok(config)
    }

    /// Adds the next version of a typed topic's schema: only nullable or defaulted columns
    /// may be added; anything else is refused, naming the incompatibility.
    pub async fn evolve_schema(
        &self,
        topic: &str,
        declaration: &str,
        event_time: Option<&str>,
    ) -> Result<TopicConfig, ApiError> {
        if self.shard.index != COORDINATOR {
            let (topic, declaration, event_time) =
                (topic.to_string(), declaration.to_string(), event_time.map(str::to_string));
            return self
                .ask(COORDINATOR, |reply| ShardRequest::EvolveSchema { topic, declaration, event_time, reply })
                .await;
        }
        let _permit = self.catalog_lock.acquire_permit(1).await.map_err(|_| gone())?;
        let current = self.topic(topic)?;
        let invalid = |m: String| ApiError::new(ErrorCode::InvalidConfig, m);
        let Some(schema) = current.schema() else {
            return Err(invalid(format!("topic '{topic}' is raw: it has no schema to evolve")));
        };
        // The event time stays what it was unless the declaration names it again.
        let et_name =
            event_time.map(str::to_string).or_else(|| schema.event_time.map(|i| schema.columns[i].name.clone()));
        let next = crate::record::schema::Schema::parse(declaration, et_name.as_deref())
            .map_err(|e| invalid(format!("invalid schema: {e}")))?;
        let evolved = schema.evolve(&next).map_err(|e| invalid(e.to_string()))?;
        let mut config = (*current).clone();
        config.schemas.push(evolved);
        let config = self.log.alter_topic_meta(config).await?;
        self.on_every_shard(
            || async { self.log.update_topic_local(config.clone()) },
            |reply| ShardRequest::UpdateTopic { config: config.clone(), reply },
        )
        .await?;
        tracing::info!(topic, version = config.schemas.len(), "schema evolved");
        Ok(config)
    }

    pub async fn delete_topic(&self, name: &str) -> Result<(), ApiError> {
        if self.shard.index != COORDINATOR {
            let name = name.to_string();
            return self.ask(COORDINATOR, |reply| ShardRequest::DeleteTopic { name, reply }).await;
        }
        let _permit = self.catalog_lock.acquire_permit(1).await.map_err(|_| gone())?;
        self.topic(name)?;
        // Every door goes through here: the native protocol too must not drop the offsets.
        if crate::log::is_internal_topic(name) {
            return Err(ApiError::new(ErrorCode::InvalidConfig, format!("'{name}' is an internal topic")));
        }
        if let Some(view) = self.views.dependent_of(name) {
            return Err(ApiError::new(
                ErrorCode::InvalidConfig,
                format!("cannot drop topic '{name}': materialized view '{view}' depends on it; drop the view first"),
            ));
        }
        self.on_every_shard(
            || self.log.remove_topic_local(name),
            |reply| ShardRequest::RemoveTopic { name: name.to_string(), reply },
        )
        .await?;
        self.log.delete_topic_files(name).await?;
        // Consumers of a new topic of the same name start afresh, as in Kafka.
        let forget = self
            .on_every_shard(
                || async {
                    self.groups.forget_topic(&self.log, name).await.map_err(|e| {
                        crate::log::LogError::Io(crate::io::IoError::new(
                            crate::io::IoOp::Write,
                            std::path::Path::new(OFFSETS_TOPIC),
                            std::io::Error::other(e),
                        ))
                    })
                },
                |reply| ShardRequest::ForgetTopicOffsets { topic: name.to_string(), reply },
            )
            .await;
        if let Err(e) = forget {
            tracing::warn!(topic = %name, error = %e, "forgetting the committed offsets of a deleted topic failed");
        }
        tracing::info!(topic = %name, "topic deleted");
        Ok(())
    }

    /// Applies a catalog change on every shard, in shard order: this one directly, the
    /// others by message, each waited for before the next.
    pub(super) async fn on_every_shard<Fut>(
        &self,
        local: impl FnOnce() -> Fut,
        remote: impl Fn(Reply<()>) -> ShardRequest,
    ) -> Result<(), ApiError>
    where
        Fut: std::future::Future<Output = Result<(), crate::log::LogError>>,
    {
        let mut local = Some(local);
        for shard in 0..self.shard.count {
            if shard == self.shard.index {
                if let Some(f) = local.take() {
                    f().await?;
                }
            } else {
                self.ask(shard, &remote).await?;
            }
        }
        Ok(())
    }

    /// Serves one request from a peer shard.
    async fn serve_peer(self: &Rc<Self>, request: ShardRequest) {
        match request {
            ShardRequest::Produce { topic, partition, payload, reply } => {
                let _ = reply.send(self.produce(&topic, partition, payload).await);
            }
            ShardRequest::Fetch { topic, partition, start, max_bytes, max_wait_ms, format, reply } => {
                let _ = reply.send(self.fetch_local(&topic, partition, start, max_bytes, max_wait_ms, format).await);
            }
            ShardRequest::WaitForData { topic, partition, offset, max_wait_ms, reply } => {
                let _ = reply.send(self.wait_local(&topic, partition, offset, max_wait_ms).await);
            }
            ShardRequest::Group { group, call, reply } => {
                let _ = reply.send(Ok(self.groups.call(&self.log, &group, call).await));
            }
            ShardRequest::ForgetTopicOffsets { topic, reply } => {
                let r = self.groups.forget_topic(&self.log, &topic).await;
                let _ = reply.send(r.map_err(|e| ApiError::new(ErrorCode::Io, e)));
            }
            ShardRequest::FetchJson { topic, partition, start, max_records, max_wait_ms, reply } => {
                let _ = reply.send(self.fetch_json_local(&topic, partition, start, max_records, max_wait_ms).await);
            }
            ShardRequest::Metrics { reply } => {
                let _ = reply.send(Ok(self.render_metrics()));
            }
            ShardRequest::ListGroups { reply } => {
                let _ = reply.send(Ok(self.groups.list()));
            }
            ShardRequest::ListOffsets { topic, partition, start, reply } => {
                let _ = reply.send(self.list_offsets(&topic, partition, start).await);
            }
            ShardRequest::Status { topic, reply } => {
                let _ = reply.send(Ok(self.local_status(&topic)));
            }
            ShardRequest::CreateTopic { config, reply } => {
                let _ = reply.send(self.create_topic(config).await);
            }
            ShardRequest::DeleteTopic { name, reply } => {
                let _ = reply.send(self.delete_topic(&name).await);
            }
            ShardRequest::EvolveSchema { topic, declaration, event_time, reply } => {
                let _ = reply.send(self.evolve_schema(&topic, &declaration, event_time.as_deref()).await);
            }
            ShardRequest::UpdateTopic { config, reply } => {
                let _ = reply.send(self.log.update_topic_local(config).map_err(Into::into));
            }
            ShardRequest::AddTopic { config, reply } => {
                let _ = reply.send(self.log.add_topic_local(config).await.map_err(Into::into));
            }
            ShardRequest::RemoveTopic { name, reply } => {
                let _ = reply.send(self.log.remove_topic_local(&name).await.map_err(Into::into));
            }
            ShardRequest::View(request) => self.serve_view_request(request).await,
        }
    }
}

/// Serves the requests one peer shard sends, at most [`SHARD_INFLIGHT_MAX`] at once: past
/// that the queue from that peer fills and its senders wait (backpressure).
pub async fn serve_peer_queue(node: Rc<Node>, from: ConnectedReceiver<ShardRequest>) {
    let slots = Rc::new(glommio::sync::Semaphore::new(SHARD_INFLIGHT_MAX as u64));
    while let Some(request) = from.recv().await {
        let Ok(permit) = slots.clone().acquire_static_permit(1).await else { return };
        let node = node.clone();
        node.peer_inflight.set(node.peer_inflight.get() + 1);
        glommio::spawn_local(async move {
            node.serve_peer(request).await;
            node.peer_inflight.set(node.peer_inflight.get() - 1);
            drop(permit);
        })
        .detach();
    }
}

/// An append queued on its partition, local or on another shard.
pub enum PendingProduce {
    Local(PendingAppend),
    Remote(oneshot::Receiver<Result<AppendAck, ApiError>>),
}

impl std::future::Future for PendingProduce {
    type Output = Result<AppendAck, ApiError>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        match self.get_mut() {
            PendingProduce::Local(p) => std::pin::Pin::new(p).poll(cx).map(|r| r.map_err(ApiError::from)),
            PendingProduce::Remote(rx) => std::pin::Pin::new(rx).poll(cx).map(|r| r.unwrap_or_else(|_| Err(gone()))),
        }
    }
}
