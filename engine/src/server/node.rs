//! A shard's node: its log manager, and the routing of every operation to the shard that
//! owns the partition. Shard 0 coordinates catalog changes (topic create and delete) so
//! they are serialised and reach every shard before they are acknowledged.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use event_listener::Event;
use futures::channel::oneshot;
use glommio::channels::shared_channel::ConnectedReceiver;

use super::native::protocol::{ApiError, ErrorCode};
use crate::limits::{BATCH_HEADER_BYTES, FETCH_BYTES_MAX, FETCH_WAIT_MS_MAX, SHARD_INFLIGHT_MAX};
use crate::log::{owner_shard, AppendAck, LogManager, Offset, PartitionStatus, StartPosition, TopicConfig};
use crate::record::BatchPayload;
use crate::runtime::{ShardId, ShardSender};
use crate::wire::Encoder;

/// Fetched batches, encoded for the wire (each batch 16-aligned): `Send`, so it can cross shards.
#[derive(Debug, Default)]
pub struct FetchReply {
    pub start: Offset,
    pub log_start: Offset,
    pub visible_end: Offset,
    pub batch_count: u32,
    pub batches: Vec<u8>,
}

/// Offsets of a partition, answering ListOffsets.
#[derive(Debug, Clone, Copy)]
pub struct OffsetsReply {
    pub offset: Offset,
    pub log_start: Offset,
    pub visible_end: Offset,
}

type Reply<T> = oneshot::Sender<Result<T, ApiError>>;

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
        reply: Reply<FetchReply>,
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
}

const COORDINATOR: usize = 0;

fn gone() -> ApiError {
    ApiError::new(ErrorCode::ShuttingDown, "the owning shard is shutting down")
}

pub struct Node {
    pub shard: ShardId,
    pub log: LogManager,
    peers: ShardSender<ShardRequest>,
    /// Serialises catalog changes on the coordinator.
    catalog_lock: glommio::sync::Semaphore,
    stopping: Cell<bool>,
    stop_event: Event,
}

impl Node {
    pub fn new(shard: ShardId, log: LogManager, peers: ShardSender<ShardRequest>) -> Self {
        Node {
            shard,
            log,
            peers,
            catalog_lock: glommio::sync::Semaphore::new(1),
            stopping: Cell::new(false),
            stop_event: Event::new(),
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

    fn topic(&self, name: &str) -> Result<Rc<TopicConfig>, ApiError> {
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

    async fn ask<T>(&self, shard: usize, make: impl FnOnce(Reply<T>) -> ShardRequest) -> Result<T, ApiError> {
        let (tx, rx) = oneshot::channel();
        self.peers.send_to(shard, make(tx)).await.map_err(|_| gone())?;
        rx.await.unwrap_or_else(|_| Err(gone()))
    }

    /// The topic's batch limit, for validating a payload before routing it.
    pub fn batch_bytes_max(&self, topic: &str) -> Result<usize, ApiError> {
        Ok(self.topic(topic)?.batch_bytes_max as usize)
    }

    pub async fn produce(&self, topic: &str, partition: u32, payload: BatchPayload) -> Result<AppendAck, ApiError> {
        let (_, owner) = self.owner(topic, partition)?;
        if owner == self.shard.index {
            return Ok(self.log.partition(topic, partition)?.append(payload).await?);
        }
        let topic = topic.to_string();
        self.ask(owner, |reply| ShardRequest::Produce { topic, partition, payload, reply }).await
    }

    pub async fn fetch(
        &self,
        topic: &str,
        partition: u32,
        start: StartPosition,
        max_bytes: u32,
        max_wait_ms: u32,
    ) -> Result<FetchReply, ApiError> {
        let (_, owner) = self.owner(topic, partition)?;
        if owner == self.shard.index {
            return self.fetch_local(topic, partition, start, max_bytes, max_wait_ms).await;
        }
        let topic = topic.to_string();
        self.ask(owner, |reply| ShardRequest::Fetch { topic, partition, start, max_bytes, max_wait_ms, reply }).await
    }

    async fn fetch_local(
        &self,
        topic: &str,
        partition: u32,
        start: StartPosition,
        max_bytes: u32,
        max_wait_ms: u32,
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
        let batches = p.read(from, max_bytes.clamp(1, FETCH_BYTES_MAX) as usize).await?;
        let offsets = p.offsets();
        let mut e = Encoder::with_buf(Vec::with_capacity(batches.iter().map(|b| b.payload().len() + 80).sum()));
        for b in &batches {
            let mut header = [0u8; BATCH_HEADER_BYTES];
            b.header.encode(&mut header);
            e.raw(&header).raw(b.payload()).pad_to(16);
        }
        Ok(FetchReply {
            start: from,
            log_start: offsets.log_start(),
            visible_end: offsets.visible_end(),
            batch_count: batches.len() as u32,
            batches: e.finish(),
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
            let offset = LogManager::resolve(&p, start).await?;
            let o = p.offsets();
            return Ok(OffsetsReply { offset, log_start: o.log_start(), visible_end: o.visible_end() });
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

    pub async fn delete_topic(&self, name: &str) -> Result<(), ApiError> {
        if self.shard.index != COORDINATOR {
            let name = name.to_string();
            return self.ask(COORDINATOR, |reply| ShardRequest::DeleteTopic { name, reply }).await;
        }
        let _permit = self.catalog_lock.acquire_permit(1).await.map_err(|_| gone())?;
        self.topic(name)?;
        self.on_every_shard(
            || self.log.remove_topic_local(name),
            |reply| ShardRequest::RemoveTopic { name: name.to_string(), reply },
        )
        .await?;
        self.log.delete_topic_files(name).await?;
        tracing::info!(topic = %name, "topic deleted");
        Ok(())
    }

    /// Applies a catalog change on every shard, in shard order: this one directly, the
    /// others by message, each waited for before the next.
    async fn on_every_shard<Fut>(
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
    async fn serve_peer(&self, request: ShardRequest) {
        match request {
            ShardRequest::Produce { topic, partition, payload, reply } => {
                let _ = reply.send(self.produce(&topic, partition, payload).await);
            }
            ShardRequest::Fetch { topic, partition, start, max_bytes, max_wait_ms, reply } => {
                let _ = reply.send(self.fetch_local(&topic, partition, start, max_bytes, max_wait_ms).await);
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
            ShardRequest::AddTopic { config, reply } => {
                let _ = reply.send(self.log.add_topic_local(config).await.map_err(Into::into));
            }
            ShardRequest::RemoveTopic { name, reply } => {
                let _ = reply.send(self.log.remove_topic_local(&name).await.map_err(Into::into));
            }
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
        glommio::spawn_local(async move {
            node.serve_peer(request).await;
            drop(permit);
        })
        .detach();
    }
}
