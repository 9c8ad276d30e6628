//! A partition: the segments of one topic partition, its appender and its durability.
//!
//! Owned by exactly one shard; nothing here is `Send` and nothing takes a lock.
//!
//! Appends queue in a bounded queue (a full queue suspends producers). One appender task
//! drains the queue in groups, assigns offsets, and writes each group with one DMA write.
//! Under `sync` a flusher task runs beside it: it fdatasyncs whatever has landed since
//! the last sync and then acknowledges every append that sync covered, so concurrent
//! producers share one sync (group commit) while the next groups are already being
//! written. Under `interval` a timer does the syncing and appends are acknowledged
//! after their write; under `none` syncs happen only when a segment rolls and on close.
//!
//! A failed write or sync makes the partition read-only until it is reopened: nothing is
//! retried and nothing more is acknowledged (after a failed fsync the kernel may have
//! dropped the dirty pages, so a retry that succeeds proves nothing).
//!
//! Recovery on open trusts the log, never the index: the last segment is verified batch
//! by batch; a bad batch above the durable watermark is a torn write and is truncated; a
//! bad batch below it is corruption, and the partition opens read-only naming file and
//! offset.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use event_listener::Event;
use futures::channel::oneshot;
use glommio::Task;

use super::error::LogError;
use super::offset::{Offset, PartitionOffsets};
use super::producer_state::{ProducerTable, SequenceCheck};
use super::sealed_index_cache::SealedIndexCache;
use super::segment::{
    index_file_name, log_file_name, parse_log_file_name, read_batch, scan_segment, ChunkReader, PartitionIdentity,
    Segment, SegmentHeader, SegmentIndexHome, SEGMENT_DATA_START,
};
use super::segment_index::SegmentIndex;
use super::tail_cache::TailCache;
use super::topic::{Durability, TopicConfig};
use crate::io::{IoError, OpenMode, Storage};
use crate::limits::{
    APPEND_GATHER_BYTES_MIN, APPEND_GATHER_MAX, APPEND_INFLIGHT_BYTES_MAX, APPEND_QUEUE_DEPTH, APPEND_WRITES_BUSY,
    APPEND_WRITES_GATHERING, APPEND_WRITES_INFLIGHT_MAX, APPEND_WRITE_BYTES_MAX, APPEND_WRITE_HELD_UP,
    BATCH_BYTES_MAX_CEILING, BATCH_HEADER_BYTES, BLOCK_BYTES, SEGMENT_ALLOCATE_STEP_BYTES, SYNC_RUNWAY_BYTES,
    SYNC_RUNWAY_GAP_BYTES, SYNC_RUNWAY_ZEROING_BYTES_PER_S, SYNC_WRITE_BYTES_MAX, WATERMARK_PERSIST_INTERVAL_MS,
};
use crate::metrics::{Counter, LatencyHistogram};
use crate::record::{Batch, BatchHeader, BatchPayload, ProducerInfo};
use crate::runtime::BoundedQueue;
use crate::wire::{decode_meta_file, encode_meta_file, Decoder, Encoder};

const WATERMARK_FILE: &str = "durable.wm";
const WATERMARK_MAGIC: [u8; 4] = *b"SLWM";
const WATERMARK_VERSION: u16 = 1;
const PRODUCERS_MAGIC: [u8; 4] = *b"SLPS";
const PRODUCERS_VERSION: u16 = 1;

/// The reply to a successful append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendAck {
    pub base_offset: Offset,
    pub record_count: u32,
}

type AppendReply = oneshot::Sender<Result<AppendAck, LogError>>;

/// An append queued by [`Partition::submit`]: resolves to its acknowledgement.
pub struct PendingAppend {
    rx: oneshot::Receiver<Result<AppendAck, LogError>>,
    topic: Rc<TopicConfig>,
    partition: u32,
}

impl std::future::Future for PendingAppend {
    type Output = Result<AppendAck, LogError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.rx).poll(cx).map(|r| {
            r.unwrap_or_else(|_| Err(LogError::Closed { topic: self.topic.name.clone(), partition: self.partition }))
        })
    }
}

struct AppendRequest {
    payload: BatchPayload,
    reply: AppendReply,
    /// When it was queued: the appender holds it back at most APPEND_GATHER_MAX.
    queued_at: std::time::Instant,
}

impl AppendRequest {
    fn disk_len(&self) -> usize {
        crate::limits::align_up((BATCH_HEADER_BYTES + self.payload.stored_len()) as u64) as usize
    }
}

/// An append written but waiting for its sync.
struct PendingAck {
    ack: AppendAck,
    end_offset: Offset,
    segment_base: u64,
    end_pos: u64,
    reply: AppendReply,
}

/// What a partition reports about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionStatus {
    pub partition: u32,
    pub log_start: Offset,
    pub durable_end: Offset,
    pub written_end: Offset,
    pub visible_end: Offset,
    pub segments: usize,
    pub bytes: u64,
    pub read_only: Option<String>,
}

struct State {
    offsets: PartitionOffsets,
    segments: VecDeque<Segment>,
    /// Why the partition is read-only, if it is.
    failure: Option<String>,
    pending_acks: VecDeque<PendingAck>,
    watermark_persisted: Offset,
    /// Sequence state of idempotent producers, as of `appended_end`.
    producers: ProducerTable,
    /// The newest batches, for live readers (and the only copy of those not yet written).
    tail: TailCache,
    /// Retries of batches not yet acknowledged: acknowledged once the original is.
    deferred_acks: Vec<DeferredAck>,
}

/// A duplicate append waiting for its original to be acknowledged.
struct DeferredAck {
    ack: AppendAck,
    end_offset: Offset,
    reply: AppendReply,
}

struct Inner {
    topic: Rc<TopicConfig>,
    partition: u32,
    identity: PartitionIdentity,
    dir: PathBuf,
    storage: Storage,
    state: RefCell<State>,
    queue: BoundedQueue<AppendRequest>,
    /// Notified when `visible_end` advances (long-polling readers wait on it).
    new_data: Event,
    /// Notified when `written_end` advances or the partition closes (the flusher waits on it).
    sync_wanted: Event,
    closing: Cell<bool>,
    /// Notified once, when the partition starts closing (periodic loops wait on it).
    close_event: Event,
    tasks: RefCell<Vec<Task<()>>>,
    /// The reservation of file space running for the active segment, if any.
    allocation: RefCell<Option<Task<()>>>,
    /// The range of the active segment that reservation covers, while it runs (glommio's
    /// `Task` cannot say whether it has finished).
    reserving: Cell<Option<(u64, u64)>>,
    /// When the last zeroing ahead started (it is rate-limited).
    runway_zeroed_at: Cell<Option<std::time::Instant>>,
    /// Serialises watermark file updates (roll, timer and close may race for it).
    watermark_writer: glommio::sync::Semaphore,
    /// The sealed segments' indexes used last (the others are only in their files).
    sealed_indexes: RefCell<SealedIndexCache>,
    metrics: PartitionMetrics,
}

/// What a partition counts about itself (shard-local; rendered by `/metrics`).
#[derive(Debug, Default)]
pub struct PartitionMetrics {
    pub records_appended: Counter,
    /// Bytes of log written for appended batches (headers and padding included).
    pub bytes_appended: Counter,
    /// Batches readers got from the tail cache, and from the segment files.
    pub batches_read_from_tail: Counter,
    pub batches_read_from_disk: Counter,
    /// Duration of each fdatasync of the partition.
    pub sync_latency: LatencyHistogram,
}

/// Handle to a partition; clones share it (within its shard).
#[derive(Clone)]
pub struct Partition {
    inner: Rc<Inner>,
}

impl Partition {
    /// Opens (recovering) or creates the partition in `dir`.
    pub async fn open(
        storage: &Storage,
        dir: &Path,
        topic: Rc<TopicConfig>,
        partition: u32,
    ) -> Result<Partition, LogError> {
        storage.create_dir_all(dir).await?;
        let identity = PartitionIdentity { topic_id: topic.topic_id, partition };
        let recovered = recover(storage, dir, &topic, identity).await?;
        let inner = Rc::new(Inner {
            topic,
            partition,
            identity,
            dir: dir.to_path_buf(),
            storage: storage.clone(),
            state: RefCell::new(State {
                tail: TailCache::default(),
                offsets: recovered.offsets,
                segments: recovered.segments,
                failure: recovered.failure,
                pending_acks: VecDeque::new(),
                watermark_persisted: Offset(0),
                producers: recovered.producers,
                deferred_acks: Vec::new(),
            }),
            queue: BoundedQueue::new(APPEND_QUEUE_DEPTH),
            new_data: Event::new(),
            sync_wanted: Event::new(),
            closing: Cell::new(false),
            close_event: Event::new(),
            tasks: RefCell::new(Vec::new()),
            allocation: RefCell::new(None),
            reserving: Cell::new(None),
            runway_zeroed_at: Cell::new(None),
            watermark_writer: glommio::sync::Semaphore::new(1),
            sealed_indexes: RefCell::new(SealedIndexCache::default()),
            metrics: PartitionMetrics::default(),
        });
        if inner.state.borrow().failure.is_none() {
            // Recovery without a fresh watermark is still correct (it is conservative), so
            // failing to write one, on a full disk say, does not keep the data from being read.
            if let Err(e) = inner.persist_watermark().await {
                tracing::warn!(dir = %dir.display(), error = %e, "could not refresh the durable watermark");
            }
        }
        let mut tasks = vec![glommio::spawn_local(append_loop(inner.clone()))];
        match inner.topic.durability {
            Durability::Sync => tasks.push(glommio::spawn_local(flush_loop(inner.clone(), None))),
            Durability::Interval { ms } => tasks.push(glommio::spawn_local(flush_loop(inner.clone(), Some(ms)))),
            Durability::None => {}
        }
        tasks.push(glommio::spawn_local(watermark_loop(inner.clone())));
        *inner.tasks.borrow_mut() = tasks;
        Ok(Partition { inner })
    }

    pub fn topic(&self) -> &TopicConfig {
        &self.inner.topic
    }

    pub fn id(&self) -> u32 {
        self.inner.partition
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    pub fn offsets(&self) -> PartitionOffsets {
        self.inner.state.borrow().offsets
    }

    pub fn metrics(&self) -> &PartitionMetrics {
        &self.inner.metrics
    }

    /// Appends waiting in the partition's queue.
    pub fn queue_depth(&self) -> usize {
        self.inner.queue.len()
    }

    pub fn status(&self) -> PartitionStatus {
        let st = self.inner.state.borrow();
        PartitionStatus {
            partition: self.inner.partition,
            log_start: st.offsets.log_start(),
            durable_end: st.offsets.durable_end(),
            written_end: st.offsets.written_end(),
            visible_end: st.offsets.visible_end(),
            segments: st.segments.len(),
            bytes: st.segments.iter().map(Segment::data_bytes).sum(),
            read_only: st.failure.clone(),
        }
    }

    /// How many sealed segments' indexes are loaded (the others are only in their files).
    pub fn sealed_indexes_loaded(&self) -> usize {
        self.inner.sealed_indexes.borrow().len()
    }

    /// Appends one batch; resolves once the topic's durability holds for it.
    pub async fn append(&self, payload: BatchPayload) -> Result<AppendAck, LogError> {
        self.submit(payload).await?.await
    }

    /// Queues one batch for appending and returns what resolves once the topic's
    /// durability holds for it. Batches submitted in order are appended in order (the
    /// queue is first come, first served), so a client's pipelined appends keep their order.
    ///
    /// The topic's `batch_bytes_max` is checked at the door, against what the client sent
    /// (a Kafka batch may grow when it is decompressed and archived); here only the hard
    /// ceiling applies.
    pub async fn submit(&self, payload: BatchPayload) -> Result<PendingAppend, LogError> {
        let max = BATCH_BYTES_MAX_CEILING;
        if payload.stored_len() > max {
            return Err(crate::record::PayloadError::TooLarge { len: payload.stored_len(), max }.into());
        }
        if let Some(reason) = &self.inner.state.borrow().failure {
            return Err(self.inner.read_only(reason));
        }
        let (reply, rx) = oneshot::channel();
        if self.inner.queue.push(AppendRequest { payload, reply, queued_at: std::time::Instant::now() }).await.is_err()
        {
            return Err(self.inner.closed());
        }
        Ok(PendingAppend { rx, topic: self.inner.topic.clone(), partition: self.inner.partition })
    }

    /// Waits until an offset at or past `offset` is visible, or the timeout passes.
    /// Returns whether data is there.
    pub async fn wait_for(&self, offset: Offset, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if self.inner.state.borrow().offsets.visible_end() > offset || self.inner.closing.get() {
                return self.inner.state.borrow().offsets.visible_end() > offset;
            }
            let listener = self.inner.new_data.listen();
            if self.inner.state.borrow().offsets.visible_end() > offset {
                return true;
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return false;
            }
            let _ = glommio::timer::timeout(deadline - now, async {
                listener.await;
                Ok(())
            })
            .await;
        }
    }

    /// Reads whole batches starting with the one that holds `from`, up to about
    /// `bytes_max` (at least one batch when any is visible). Every batch is CRC-checked.
    pub async fn read(&self, from: Offset, bytes_max: usize) -> Result<Vec<Batch>, LogError> {
        {
            let st = self.inner.state.borrow();
            let (start, end) = (st.offsets.log_start(), st.offsets.visible_end());
            if from < start || from > end {
                return Err(LogError::OffsetOutOfRange { requested: from.0, start: start.0, end: end.0 });
            }
            // A reader that reached the end of a failed partition learns why it ends there.
            if let (true, Some(reason)) = (from == end, &st.failure) {
                return Err(self.inner.read_only(reason));
            }
        }
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut next = from;
        // The newest batches come from memory; a reader that is behind reads the disk.
        while let Some(batch) = self.tail_batch(next) {
            next = Offset(batch.end_offset());
            bytes += batch.payload().len() + BATCH_HEADER_BYTES;
            out.push(batch);
            if bytes >= bytes_max {
                return Ok(out);
            }
        }
        if !out.is_empty() {
            return Ok(out);
        }
        while let Some(view) = self.segment_view(next).await {
            let before = next;
            let mut reader = ChunkReader::new(&view.file, view.visible_len);
            let mut pos = view.start_pos;
            while pos < view.visible_len {
                let batch = match read_batch(&mut reader, pos, &view.path, view.identity).await {
                    Ok(b) => b,
                    Err(e) => {
                        self.inner.fail(e.to_string());
                        return Err(e);
                    }
                };
                pos += batch.header.disk_len();
                if batch.end_offset() <= next.0 {
                    continue;
                }
                next = Offset(batch.end_offset());
                bytes += batch.payload().len() + BATCH_HEADER_BYTES;
                out.push(batch);
                self.inner.metrics.batches_read_from_disk.add(1);
                if bytes >= bytes_max {
                    return Ok(out);
                }
            }
            if next == before {
                break;
            }
        }
        Ok(out)
    }

    /// The first offset whose record has a timestamp at or after `ts`; the visible end
    /// when there is none.
    pub async fn offset_for_time(&self, ts: i64) -> Result<Offset, LogError> {
        Ok(match self.record_at_time(ts).await? {
            Some((offset, _)) => offset,
            None => self.offsets().visible_end(),
        })
    }

    /// The first visible record with a timestamp at or after `ts`: its offset and timestamp.
    pub async fn record_at_time(&self, ts: i64) -> Result<Option<(Offset, i64)>, LogError> {
        // The first segment holding a timestamp at or after `ts`, and where in it.
        let (segment_base, active_entry) = {
            let st = self.inner.state.borrow();
            let Some(seg) = st.segments.iter().find(|s| s.max_timestamp_ms() >= ts) else {
                return Ok(None);
            };
            (seg.base_offset, seg.active_index().and_then(|ix| ix.entry_for_time(ts)).map(|e| e.offset))
        };
        let entry = match active_entry {
            Some(offset) => offset,
            // A sealed segment without a usable index is read from its start.
            None => match self.inner.sealed_index(segment_base).await {
                Some(ix) => ix.entry_for_time(ts).map_or(segment_base, |e| e.offset),
                None => segment_base,
            },
        };
        let start = {
            let st = self.inner.state.borrow();
            // Index entries are added on write, before a sync makes them visible.
            if entry >= st.offsets.visible_end().0 {
                return Ok(None);
            }
            Offset(entry.max(st.offsets.log_start().0))
        };
        let mut next = start;
        loop {
            let batches = self.read(next, crate::limits::READ_AHEAD_CHUNK_BYTES).await?;
            let Some(last) = batches.last() else {
                return Ok(None);
            };
            next = Offset(last.end_offset());
            for b in batches.iter().filter(|b| b.header.max_timestamp_ms >= ts) {
                match b.timestamps() {
                    Some(stamps) => {
                        if let Some((i, t)) = stamps.iter().enumerate().find(|(_, t)| **t >= ts) {
                            return Ok(Some((Offset(b.base_offset() + i as u64), *t)));
                        }
                    }
                    // An embedder's own value type: land on the batch whose newest record qualifies.
                    None => return Ok(Some((Offset(b.base_offset()), b.header.max_timestamp_ms))),
                }
            }
        }
    }

    /// Deletes whole sealed segments past the retention limits; never the active one.
    /// Returns the number of segments deleted.
    pub async fn enforce_retention(&self, now_ms: i64) -> Result<usize, LogError> {
        let topic = &self.inner.topic;
        if topic.retention_bytes.is_none() && topic.retention_ms.is_none() {
            return Ok(0);
        }
        let mut deleted = 0;
        loop {
            let victim = {
                let mut st = self.inner.state.borrow_mut();
                if st.segments.len() < 2 {
                    break;
                }
                let total: u64 = st.segments.iter().map(Segment::data_bytes).sum();
                let first = &st.segments[0];
                debug_assert!(first.is_sealed());
                let by_size = topic.retention_bytes.is_some_and(|max| total - first.data_bytes() >= max);
                // A retention past i64::MAX ms keeps everything (a wrapped cast deleted all).
                let by_age = topic.retention_ms.is_some_and(|ms| {
                    first.max_timestamp_ms() < i64::try_from(ms).map_or(i64::MIN, |ms| now_ms.saturating_sub(ms))
                });
                if !(by_size || by_age) {
                    break;
                }
                let seg = st.segments.pop_front().expect("two segments");
                let new_start = Offset(st.segments[0].base_offset);
                st.offsets.advance_log_start(new_start);
                seg
            };
            self.inner.sealed_indexes.borrow_mut().remove(victim.base_offset);
            self.inner.storage.remove_file(&victim.log_path).await?;
            if self.inner.storage.exists(&victim.index_path) {
                self.inner.storage.remove_file(&victim.index_path).await?;
            }
            let snapshot = self.inner.dir.join(producers_file_name(victim.base_offset));
            if self.inner.storage.exists(&snapshot) {
                self.inner.storage.remove_file(&snapshot).await?;
            }
            deleted += 1;
        }
        if deleted > 0 {
            self.inner.storage.sync_dir(&self.inner.dir).await?;
        }
        Ok(deleted)
    }

    /// Makes every record before `offset` durable now, whatever the topic's durability
    /// (a view's checkpoint must not count records a crash could still take back).
    pub async fn sync_to(&self, offset: Offset) -> Result<(), LogError> {
        let inner = &self.inner;
        if inner.state.borrow().offsets.durable_end() >= offset {
            return Ok(());
        }
        inner.wait_written(offset).await;
        let failure = inner.state.borrow().failure.clone();
        if let Some(f) = failure {
            return Err(inner.read_only(&f));
        }
        inner.sync_active().await
    }

    /// Stops taking appends, finishes the queued ones, syncs and persists the watermark.
    pub async fn close(&self) -> Result<(), LogError> {
        let inner = &self.inner;
        inner.queue.close();
        inner.closing.set(true);
        inner.close_event.notify(usize::MAX);
        inner.sync_wanted.notify(usize::MAX);
        let tasks = std::mem::take(&mut *inner.tasks.borrow_mut());
        for t in tasks {
            t.await;
        }
        inner.new_data.notify(usize::MAX);
        // Even a failed partition waits for its reservation: it must not grow the file
        // after a reopen in this process has recovered it.
        inner.wait_allocation().await;
        if inner.state.borrow().failure.is_some() {
            return Ok(());
        }
        inner.release_allocation().await?;
        inner.sync_active().await?;
        if let Err(e) = inner.persist_watermark().await {
            tracing::warn!(dir = %inner.dir.display(), error = %e, "could not refresh the durable watermark on close");
        }
        Ok(())
    }

    /// The visible batch holding `offset`, if the tail cache has it.
    pub(crate) fn tail_batch(&self, offset: Offset) -> Option<Batch> {
        let st = self.inner.state.borrow();
        let batch = st.tail.get(offset, st.offsets.visible_end()).cloned();
        if batch.is_some() {
            self.inner.metrics.batches_read_from_tail.add(1);
        }
        batch
    }

    /// Where a read of the segment starting at offset `segment_base` may end, in
    /// `(after, at_most]`, without cutting a batch, if the index knows such a place: from
    /// the active segment's index (a sealed segment's comes with its [`SegmentView`]).
    /// A reader that began on the active segment keeps asking after a roll sealed it: then
    /// the index is the cache's (a roll puts it there), if still cached.
    pub(crate) fn batch_start_in(&self, segment_base: u64, after: u64, at_most: u64) -> Option<u64> {
        let st = self.inner.state.borrow();
        let seg = st.segments.back().filter(|s| s.base_offset == segment_base);
        match seg.and_then(Segment::active_index) {
            Some(index) => index.batch_start_in(after, at_most),
            None => self.inner.sealed_indexes.borrow().peek(segment_base)?.batch_start_in(after, at_most),
        }
    }

    /// Segment files and positions, for readers that stream the log (see `reader`). A
    /// sealed segment's index is loaded (or taken from the cache) on the way.
    pub(crate) async fn segment_view(&self, from: Offset) -> Option<SegmentView> {
        let (mut view, sealed) = {
            let st = self.inner.state.borrow();
            if from < st.offsets.log_start() || from >= st.offsets.readable_on_disk_end() {
                return None;
            }
            let i = st.segments.partition_point(|s| s.base_offset <= from.0).saturating_sub(1);
            let seg = &st.segments[i];
            let view = SegmentView {
                base_offset: seg.base_offset,
                file: seg.file.clone(),
                path: seg.log_path.clone(),
                start_pos: seg
                    .active_index()
                    .and_then(|ix| ix.position_for_offset(from.0))
                    .unwrap_or(SEGMENT_DATA_START),
                visible_len: seg.visible_len,
                identity: self.inner.identity,
                sealed_index: None,
            };
            (view, seg.is_sealed())
        };
        if sealed {
            // Without its index a sealed segment is read from its start (same batches).
            if let Some(ix) = self.inner.sealed_index(view.base_offset).await {
                view.start_pos = ix.position_for_offset(from.0).unwrap_or(SEGMENT_DATA_START);
                view.sealed_index = Some(ix);
            }
        }
        Some(view)
    }

    pub(crate) fn mark_corrupt(&self, reason: String) {
        self.inner.fail(reason);
    }
}

/// A segment as a streaming reader sees it at one moment.
pub(crate) struct SegmentView {
    pub base_offset: u64,
    pub file: Rc<crate::io::File>,
    pub path: PathBuf,
    pub start_pos: u64,
    pub visible_len: u64,
    pub identity: PartitionIdentity,
    /// A sealed segment's index, where reads may end without cutting a batch.
    pub sealed_index: Option<Rc<SegmentIndex>>,
}

impl Inner {
    /// The index of sealed segment `base_offset`: from the cache, else from its index file
    /// (used only if it describes the segment as it is), else rebuilt by scanning the
    /// segment and written again. `None` if the segment is gone or cannot be read: the
    /// caller reads it from its start (the same batches, more reading).
    async fn sealed_index(&self, base_offset: u64) -> Option<Rc<SegmentIndex>> {
        if let Some(ix) = self.sealed_indexes.borrow_mut().get(base_offset) {
            return Some(ix);
        }
        let (path, file, summary) = {
            let st = self.state.borrow();
            let seg = st.segments.iter().find(|s| s.base_offset == base_offset && s.is_sealed())?;
            (seg.index_path.clone(), seg.file.clone(), seg.summary())
        };
        let from_file = match self.storage.read_file(&path).await {
            Ok(buf) => match SegmentIndex::decode_file(&buf) {
                Ok((ix, found)) if found == summary => Ok(ix),
                Ok((_, found)) => Err(format!("it describes {found:?}, the segment is {summary:?}")),
                Err(e) => Err(e.to_string()),
            },
            Err(e) => Err(e.to_string()),
        };
        let index = match from_file {
            Ok(ix) => ix,
            Err(reason) => {
                tracing::warn!(path = %path.display(), %reason, "rebuilding a sealed segment's index from the segment");
                let scan = scan_segment(&file, summary.len, base_offset, self.identity, BATCH_BYTES_MAX_CEILING as u64)
                    .await
                    .map_err(|e| tracing::warn!(path = %path.display(), error = %e, "cannot rebuild the index"))
                    .ok()?;
                // Written again only for a segment that is still there, scans whole, in a
                // partition that is not failed (recovery changes nothing on disk then
                // either); otherwise what the scan found serves unwritten, and reading the
                // segment reports any damage. (Two readers missing at once both scan.)
                let whole = scan.stop.is_none() && scan.end_offset == summary.end_offset;
                if whole && self.holds_sealed(base_offset) && self.state.borrow().failure.is_none() {
                    let _ = write_plain(&self.storage, &path, &scan.index.encode_file(&summary)).await;
                }
                scan.index
            }
        };
        let index = Rc::new(index);
        // Retention may have deleted the segment while its index loaded.
        if self.holds_sealed(base_offset) {
            self.sealed_indexes.borrow_mut().insert(base_offset, index.clone());
        }
        Some(index)
    }

    /// Whether sealed segment `base_offset` is (still) part of the partition.
    fn holds_sealed(&self, base_offset: u64) -> bool {
        self.state.borrow().segments.iter().any(|s| s.base_offset == base_offset && s.is_sealed())
    }

    fn read_only(&self, reason: &str) -> LogError {
        LogError::ReadOnly { topic: self.topic.name.clone(), partition: self.partition, reason: reason.to_string() }
    }

    /// Sleeps for `ms`, or less if the partition starts closing. Returns false if closing.
    async fn sleep_unless_closing(&self, ms: u64) -> bool {
        if self.closing.get() {
            return false;
        }
        let closing = self.close_event.listen();
        if self.closing.get() {
            return false;
        }
        futures_lite::future::or(
            async {
                glommio::timer::sleep(Duration::from_millis(ms)).await;
                true
            },
            async {
                closing.await;
                false
            },
        )
        .await
    }

    fn closed(&self) -> LogError {
        LogError::Closed { topic: self.topic.name.clone(), partition: self.partition }
    }

    /// Makes the partition read-only and fails every append not yet acknowledged.
    fn fail(&self, reason: String) {
        tracing::error!(topic = %self.topic.name, partition = self.partition, %reason, "partition is now read-only");
        let pending = {
            let mut st = self.state.borrow_mut();
            if st.failure.is_none() {
                st.failure = Some(reason.clone());
            }
            (std::mem::take(&mut st.pending_acks), std::mem::take(&mut st.deferred_acks))
        };
        let (pending, deferred) = pending;
        for p in pending {
            let _ = p.reply.send(Err(self.read_only(&reason)));
        }
        for d in deferred {
            let _ = d.reply.send(Err(self.read_only(&reason)));
        }
        self.sync_wanted.notify(usize::MAX);
    }

    /// Everything up to `target` is on disk: advance the durable and visible ends and
    /// acknowledge the appends that waited for it.
    fn on_durable(&self, target: Offset) {
        let mut acked = Vec::new();
        {
            let mut st = self.state.borrow_mut();
            if target > st.offsets.durable_end() {
                st.offsets.advance_durable(target);
            }
            while st.pending_acks.front().is_some_and(|p| p.end_offset <= target) {
                let Some(p) = st.pending_acks.pop_front() else {
                    break;
                };
                if let Some(seg) = st.segments.iter_mut().rev().find(|s| s.base_offset == p.segment_base) {
                    seg.visible_len = seg.visible_len.max(p.end_pos);
                }
                if p.end_offset > st.offsets.visible_end() {
                    st.offsets.advance_visible(p.end_offset);
                }
                acked.push(p);
            }
        }
        for p in acked {
            let _ = p.reply.send(Ok(p.ack));
        }
        self.release_deferred();
        self.new_data.notify(usize::MAX);
    }

    /// How far appends have been acknowledged: durable for `sync` topics, written for the
    /// others (their readers may see further, from the tail cache).
    fn acknowledged_end(&self, offsets: &PartitionOffsets) -> Offset {
        match self.topic.durability {
            Durability::Sync => offsets.durable_end(),
            _ => offsets.written_end(),
        }
    }

    /// Acknowledges the duplicates whose originals are now acknowledged.
    fn release_deferred(&self) {
        let ready: Vec<DeferredAck> = {
            let mut st = self.state.borrow_mut();
            if st.deferred_acks.is_empty() {
                return;
            }
            let acked = self.acknowledged_end(&st.offsets);
            let (ready, waiting) =
                std::mem::take(&mut st.deferred_acks).into_iter().partition(|d| d.end_offset <= acked);
            st.deferred_acks = waiting;
            ready
        };
        for d in ready {
            let _ = d.reply.send(Ok(d.ack));
        }
    }

    /// Checks the batches of idempotent producers in `requests` (in order, as if appended
    /// from `base_offset`) and takes out the ones not to write: duplicates (acknowledged
    /// with the original offsets, now or once visible) and sequence errors (refused).
    fn screen_producers(&self, requests: Vec<AppendRequest>, base_offset: Offset) -> Vec<AppendRequest> {
        if requests.iter().all(|r| r.payload.producer().is_none()) {
            return requests;
        }
        let mut kept = Vec::with_capacity(requests.len());
        let mut answers = Vec::new();
        {
            let mut st = self.state.borrow_mut();
            let mut next = base_offset;
            for r in requests {
                let count = r.payload.summary().record_count;
                if let Some(p) = r.payload.producer() {
                    let sequences = r.payload.producer_sequences();
                    match st.producers.check(&p, sequences) {
                        SequenceCheck::Append => st.producers.record(&p, next.0, count, sequences),
                        SequenceCheck::Duplicate { base_offset, record_count } => {
                            let ack = AppendAck { base_offset: Offset(base_offset), record_count };
                            let end_offset = Offset(base_offset + record_count as u64);
                            if end_offset <= self.acknowledged_end(&st.offsets) {
                                answers.push((r.reply, Ok(ack)));
                            } else {
                                st.deferred_acks.push(DeferredAck { ack, end_offset, reply: r.reply });
                            }
                            continue;
                        }
                        SequenceCheck::OutOfOrder { expected, got } => {
                            let e = LogError::OutOfOrderSequence { producer_id: p.producer_id, expected, got };
                            answers.push((r.reply, Err(e)));
                            continue;
                        }
                        SequenceCheck::Fenced { current, got } => {
                            let e = LogError::ProducerFenced { producer_id: p.producer_id, current, got };
                            answers.push((r.reply, Err(e)));
                            continue;
                        }
                    }
                }
                next = next.plus(count as u64);
                kept.push(r);
            }
        }
        for (reply, answer) in answers {
            let _ = reply.send(answer);
        }
        kept
    }

    /// Waits until every write issued up to `offset` has completed (or the partition failed).
    async fn wait_written(&self, offset: Offset) {
        loop {
            let listener = self.sync_wanted.listen();
            {
                let st = self.state.borrow();
                if st.offsets.written_end() >= offset || st.failure.is_some() || self.closing.get() {
                    return;
                }
            }
            listener.await;
        }
    }

    /// Cuts the active segment's file back to its written bytes (before a roll or a close,
    /// with no write in flight): sealed segments are exactly as long as their data, and a
    /// cleanly closed partition leaves no reserved space behind. The sync that follows
    /// makes the new length durable with the data.
    async fn release_allocation(&self) -> Result<(), LogError> {
        self.wait_allocation().await;
        let (file, len) = {
            let mut st = self.state.borrow_mut();
            let Some(active) = st.segments.back_mut() else {
                return Ok(());
            };
            if active.allocated <= active.len {
                return Ok(());
            }
            active.allocated = active.len;
            (active.file.clone(), active.len)
        };
        if let Err(e) = file.truncate(len).await {
            self.fail(format!("truncating reserved space failed: {e}"));
            return Err(e.into());
        }
        Ok(())
    }

    /// Waits for the reservation in flight, if any.
    async fn wait_allocation(&self) {
        let running = self.allocation.borrow_mut().take();
        if let Some(task) = running {
            task.await;
        }
    }

    /// fdatasyncs the active segment and marks what it covered durable.
    async fn sync_active(&self) -> Result<(), LogError> {
        let (target, file) = {
            let st = self.state.borrow();
            let Some(active) = st.segments.back() else {
                return Ok(());
            };
            (st.offsets.written_end(), active.file.clone())
        };
        let started = std::time::Instant::now();
        if let Err(e) = file.fdatasync().await {
            self.fail(format!("fdatasync failed: {e}"));
            return Err(e.into());
        }
        self.metrics.sync_latency.record(started.elapsed());
        self.on_durable(target);
        Ok(())
    }

    async fn persist_watermark(&self) -> Result<(), LogError> {
        let _permit = self.watermark_writer.acquire_permit(1).await.map_err(|e| {
            LogError::Io(IoError::new(crate::io::IoOp::Write, &self.dir, std::io::Error::other(e.to_string())))
        })?;
        let durable = self.state.borrow().offsets.durable_end();
        let mut e = Encoder::new();
        e.u64(durable.0);
        let bytes = encode_meta_file(WATERMARK_MAGIC, WATERMARK_VERSION, &e.finish());
        self.storage.write_file_atomic(&self.dir.join(WATERMARK_FILE), &bytes).await?;
        self.state.borrow_mut().watermark_persisted = durable;
        Ok(())
    }

    /// Seals the active segment (synced, index written) and starts a new one.
    async fn roll(&self) -> Result<(), LogError> {
        self.release_allocation().await?;
        self.sync_active().await?;
        let (summary, sealed_index, index_path, base) = {
            let mut st = self.state.borrow_mut();
            let written = st.offsets.written_end();
            let active = st.segments.back_mut().expect("a partition always has a segment");
            active.visible_len = active.len;
            let summary = active.summary();
            let index = Rc::new(active.seal());
            // Cached before its file is written: a reader entering the segment meanwhile
            // must not find the file half written and rebuild it. Readers near the tail
            // are likely to want it next anyway.
            self.sealed_indexes.borrow_mut().insert(summary.base_offset, index.clone());
            (summary, index, active.index_path.clone(), written.0)
        };
        debug_assert_eq!(summary.end_offset, base);
        // The index is derived data: written without a sync, rebuilt if it comes back torn.
        write_plain(&self.storage, &index_path, &sealed_index.encode_file(&summary)).await?;
        // Rolls happen only with no write in flight, so the producer table is exactly the
        // state at `base`. Only tables that exist are written (most topics have no
        // idempotent producers).
        let producers = self.state.borrow().producers.clone();
        if !producers.is_empty() {
            write_producer_snapshot(&self.storage, &self.dir, base, &producers).await?;
        }
        let segment = Segment::create(&self.storage, &self.dir, base, self.identity).await?;
        self.state.borrow_mut().segments.push_back(segment);
        self.persist_watermark().await
    }

    /// Turns the front of `group` (what fits the active segment) into one write: offsets
    /// and file space are reserved now, the write runs as its own task. The caller rolls
    /// the segment first when needed, and retires writes in order.
    fn start_write(&self, group: &mut Vec<AppendRequest>) -> Option<InflightWrite> {
        let (pos, base_offset, durable_hint, segment_base, file) = {
            let st = self.state.borrow();
            let active = st.segments.back().expect("a partition always has a segment");
            (active.len, st.offsets.appended_end(), st.offsets.durable_end(), active.base_offset, active.file.clone())
        };
        let mut total = 0usize;
        let mut take = 0usize;
        for r in group.iter() {
            let len = r.disk_len();
            if take > 0 && pos + (total + len) as u64 > self.topic.segment_bytes {
                break;
            }
            total += len;
            take += 1;
        }
        let requests = self.screen_producers(group.drain(..take).collect(), base_offset);
        if requests.is_empty() {
            return None;
        }
        let total: usize = requests.iter().map(AppendRequest::disk_len).sum();
        let mut buf = self.storage.alloc_buffer(total);
        let mut headers = Vec::with_capacity(requests.len());
        let mut at = 0usize;
        let mut next = base_offset;
        for r in &requests {
            let s = r.payload.summary();
            let stored_len = r.payload.stored_len();
            let header = BatchHeader {
                flags: r.payload.flags(),
                payload_crc32c: r.payload.stored_crc32c(),
                base_offset: next.0,
                durable_hint: durable_hint.0,
                first_timestamp_ms: s.first_timestamp_ms,
                max_timestamp_ms: s.max_timestamp_ms,
                record_count: s.record_count,
                payload_len: stored_len as u32,
                topic_id: self.identity.topic_id,
                partition: self.identity.partition as u16,
                schema_version: r.payload.schema_version(),
            };
            let out = buf.as_mut_slice();
            header.encode(&mut out[at..at + BATCH_HEADER_BYTES]);
            let payload_end = at + BATCH_HEADER_BYTES + stored_len;
            r.payload.write_stored(&mut out[at + BATCH_HEADER_BYTES..payload_end]);
            // The buffer is not pre-zeroed: only the padding to the block needs zeros.
            out[payload_end..at + r.disk_len()].fill(0);
            debug_assert!(at.is_multiple_of(BLOCK_BYTES));
            headers.push((header, pos + at as u64));
            at += r.disk_len();
            next = next.plus(s.record_count as u64);
        }
        debug_assert_eq!(at, total);
        let buf = buf.share();
        let visible_now = self.topic.durability != Durability::Sync;
        {
            let mut st = self.state.borrow_mut();
            let st = &mut *st;
            st.segments.back_mut().expect("active segment").len += total as u64;
            for (h, p) in &headers {
                let stored = buf.slice((p - pos) as usize + BATCH_HEADER_BYTES, h.payload_len as usize);
                st.tail.push(Batch::new(*h, stored.expect("a batch lies inside its write buffer")));
            }
            st.offsets.advance_appended(next);
            if visible_now {
                st.offsets.advance_visible(next);
            }
        }
        if visible_now {
            self.new_data.notify(usize::MAX);
        }
        let write = glommio::spawn_local(async move {
            let _in_device = super::device_writes::WriteInDevice::enter();
            file.write_at(buf, pos).await
        });
        Some(InflightWrite {
            requests,
            headers,
            segment_base,
            bytes: total,
            started: std::time::Instant::now(),
            write,
            landed: None,
        })
    }

    /// Waits for the oldest in-flight write and acknowledges (or fails) its appends.
    async fn retire(&self, w: InflightWrite) {
        let result = match w.landed {
            Some(result) => result,
            None => w.write.await,
        };
        if let Err(e) = &result {
            self.fail(format!("write failed: {e}"));
        }
        // After a failure nothing later is acknowledged, even a write that succeeded:
        // written_end cannot move past a hole.
        if let Some(reason) = self.state.borrow().failure.clone() {
            for r in w.requests {
                let _ = r.reply.send(Err(self.read_only(&reason)));
            }
            return;
        }
        self.on_written(w.requests, w.headers, w.segment_base);
    }

    /// A write completed (in order): index its batches, advance `written_end`, and
    /// acknowledge now (`interval`, `none`) or queue for the flusher (`sync`).
    fn on_written(&self, batch: Vec<AppendRequest>, headers: Vec<(BatchHeader, u64)>, segment_base: u64) {
        let sync = self.topic.durability == Durability::Sync;
        let mut immediate = Vec::new();
        {
            let mut st = self.state.borrow_mut();
            let st = &mut *st;
            let Some(active) = st.segments.iter_mut().rev().find(|s| s.base_offset == segment_base) else {
                return;
            };
            // A roll waits for the writes in flight, so the segment is still active; were it
            // not, the batches would go unindexed (found by scanning), never unacknowledged.
            debug_assert!(!active.is_sealed(), "a write landed in sealed segment {segment_base}");
            for (h, pos) in &headers {
                if let Some(index) = active.active_index_mut() {
                    index.on_batch(h.base_offset, *pos, h.max_timestamp_ms);
                }
                self.metrics.records_appended.add(h.record_count as u64);
                self.metrics.bytes_appended.add(h.disk_len());
            }
            let Some((last, last_pos)) = headers.last() else {
                return;
            };
            let written_pos = last_pos + last.disk_len();
            active.end_offset = last.end_offset();
            st.offsets.advance_written(Offset(last.end_offset()));
            for (r, (h, pos)) in batch.into_iter().zip(headers.iter()) {
                let ack = AppendAck { base_offset: Offset(h.base_offset), record_count: h.record_count };
                if sync {
                    st.pending_acks.push_back(PendingAck {
                        ack,
                        end_offset: Offset(h.end_offset()),
                        segment_base,
                        end_pos: pos + h.disk_len(),
                        reply: r.reply,
                    });
                } else {
                    immediate.push((ack, r.reply));
                }
            }
            if !sync {
                if let Some(active) = st.segments.iter_mut().rev().find(|s| s.base_offset == segment_base) {
                    active.visible_len = written_pos;
                }
            }
            let written = st.offsets.written_end();
            st.tail.trim(written);
        }
        // The flusher, and `sync_to` callers whose readers saw batches before their write
        // landed, wait for this.
        self.sync_wanted.notify(usize::MAX);
        if !sync {
            for (ack, reply) in immediate {
                let _ = reply.send(Ok(ack));
            }
            self.release_deferred();
        }
    }
}

/// A write in flight, with what to acknowledge when it completes.
struct InflightWrite {
    requests: Vec<AppendRequest>,
    headers: Vec<(BatchHeader, u64)>,
    segment_base: u64,
    bytes: usize,
    started: std::time::Instant,
    write: Task<Result<(), IoError>>,
    /// The write's result once it landed while the appender was also watching the queue
    /// (the task is done then and must not be awaited again).
    landed: Option<Result<(), IoError>>,
}

/// The appender: drains the queue in groups and keeps up to
/// [`APPEND_WRITES_INFLIGHT_MAX`] group writes ([`APPEND_INFLIGHT_BYTES_MAX`] bytes) in
/// flight, so building and starting the next group overlaps the disk writing the previous
/// ones. Writes are retired in order.
async fn append_loop(inner: Rc<Inner>) {
    let mut group = Vec::new();
    let mut inflight: VecDeque<InflightWrite> = VecDeque::new();
    loop {
        // Below `sync` an append is visible once its write starts, so starting writes early
        // is what keeps visibility independent of the device. Under `sync` nothing is
        // visible before the flush: waiting for the oldest write builds larger writes.
        let eager = inner.topic.durability != Durability::Sync;
        let writes_max = if eager { APPEND_WRITES_INFLIGHT_MAX } else { APPEND_WRITES_BUSY };
        let (writes_inflight, inflight_bytes) = (inflight.len(), inflight.iter().map(|w| w.bytes).sum::<usize>());
        let full = writes_inflight >= writes_max || inflight_bytes >= APPEND_INFLIGHT_BYTES_MAX;
        // Closed and drained: nothing will arrive, the loop below retires what is left.
        let idle = inner.queue.is_empty() && !inner.queue.is_closed();
        // Past APPEND_WRITES_BUSY writes, waiting for the oldest lets the queue grow into one
        // large write (for how long: below).
        let busy = eager && writes_inflight >= APPEND_WRITES_BUSY;
        if let Some(oldest) = inflight.front_mut() {
            // Held back until the oldest write lands or is held up in the device, or, with
            // few writes in flight, until the oldest queued append has waited
            // APPEND_GATHER_MAX (its visibility waits too), or not at all while the writes
            // in flight are small (gathering pays only for a stream that fills the device).
            // Past those few writes the device is stalled (writes behind a replay's reads
            // for 100 ms and more): a write per gather would fill the in-flight limit, and
            // then every append would wait for one.
            let held_up_in = APPEND_WRITE_HELD_UP.saturating_sub(oldest.started.elapsed());
            let hold_for = if writes_inflight >= APPEND_WRITES_GATHERING {
                held_up_in
            } else if inflight_bytes < APPEND_GATHER_BYTES_MIN {
                std::time::Duration::ZERO
            } else {
                let gathered_in = inner.queue.peek_front(|r| APPEND_GATHER_MAX.saturating_sub(r.queued_at.elapsed()));
                gathered_in.map_or(held_up_in, |g| g.min(held_up_in))
            };
            if full || idle || (busy && !hold_for.is_zero()) {
                if eager && !full && oldest.landed.is_none() {
                    // Whichever comes first: the oldest write lands, an append arrives (if
                    // none is queued), or the oldest counts as held up (if some are). A write
                    // stuck in the device must not keep later appends from starting (and,
                    // below `sync`, from becoming visible) for long.
                    let write = &mut oldest.write;
                    oldest.landed = futures_lite::future::or(async { Some(write.await) }, async {
                        // Idle: only an append gives the appender work. Busy: the timer.
                        if idle {
                            inner.queue.wait_not_empty().await;
                        } else {
                            glommio::timer::sleep(hold_for).await;
                        }
                        None
                    })
                    .await;
                }
                if full || !eager || oldest.landed.is_some() {
                    if let Some(w) = inflight.pop_front() {
                        inner.retire(w).await;
                    }
                }
                continue;
            }
        }
        let write_bytes_max = if eager { APPEND_WRITE_BYTES_MAX } else { SYNC_WRITE_BYTES_MAX };
        if !inner.queue.pop_group(&mut group, write_bytes_max, AppendRequest::disk_len).await {
            break;
        }
        while !group.is_empty() {
            if let Some(reason) = inner.state.borrow().failure.clone() {
                for r in group.drain(..) {
                    let _ = r.reply.send(Err(inner.read_only(&reason)));
                }
                break;
            }
            let needs_roll = {
                let st = inner.state.borrow();
                let active = st.segments.back().expect("active segment");
                active.len > SEGMENT_DATA_START && active.len + group[0].disk_len() as u64 > inner.topic.segment_bytes
            };
            if needs_roll {
                // A roll seals the segment: everything written to it must have landed first.
                while let Some(w) = inflight.pop_front() {
                    inner.retire(w).await;
                }
                if inner.state.borrow().failure.is_some() {
                    continue;
                }
                if let Err(e) = inner.roll().await {
                    inner.fail(format!("segment roll failed: {e}"));
                    continue;
                }
            }
            let group_bytes = group.iter().map(|r| r.disk_len() as u64).sum();
            allocate_ahead(&inner, group_bytes);
            wait_for_overlapping_zeros(&inner, group_bytes).await;
            if inner.state.borrow().failure.is_some() {
                // Failed while waiting (the zeros' sync, say): the loop's top refuses the group.
                continue;
            }
            if let Some(w) = inner.start_write(&mut group) {
                inflight.push_back(w);
            }
        }
    }
    while let Some(w) = inflight.pop_front() {
        inner.retire(w).await;
    }
}

/// Reserves the active segment's file ahead of its writes once less than half a step is
/// left, in a task of its own, so that appends land in blocks the file already has:
/// below `sync` by fallocate ([`SEGMENT_ALLOCATE_STEP_BYTES`]); under `sync` by writing
/// zeros and syncing them ([`SYNC_RUNWAY_BYTES`], at most
/// [`SYNC_RUNWAY_ZEROING_BYTES_PER_S`]), because an fdatasync after a write into reserved
/// (unwritten) blocks has their conversion to commit, and after a write into zeroed ones
/// nothing. Writes never wait for a reservation, except one that would overlap zeros
/// still being written. A failed reservation is no error of the log: that segment goes on
/// without (a failed sync of the zeros is: it may have lost the file's metadata).
fn allocate_ahead(inner: &Rc<Inner>, next_write_bytes: u64) {
    if inner.reserving.get().is_some() {
        return;
    }
    let zeroing = inner.topic.durability == Durability::Sync;
    let step = if zeroing { SYNC_RUNWAY_BYTES } else { SEGMENT_ALLOCATE_STEP_BYTES };
    let (file, base, from, target) = {
        let mut st = inner.state.borrow_mut();
        if st.failure.is_some() {
            return;
        }
        let Some(active) = st.segments.back_mut() else { return };
        let end = active.len + next_write_bytes;
        // (After a failed reservation `allocated` is unbounded: no more are tried.)
        if active.allocated >= end.saturating_add(step / 2) {
            return;
        }
        if zeroing {
            let spacing = Duration::from_millis(SYNC_RUNWAY_BYTES * 1000 / SYNC_RUNWAY_ZEROING_BYTES_PER_S);
            if inner.runway_zeroed_at.get().is_some_and(|at| at.elapsed() < spacing) {
                return;
            }
        }
        // No further than the segment can grow (a group larger than the rest rolls it).
        let target = crate::limits::align_up((end + step).min(inner.topic.segment_bytes.max(end)));
        // Zeros start past the next write, so that write never overlaps them, and with no
        // runway left a gap past it: the next few writes need not wait for the zeros.
        let from =
            if zeroing && active.allocated < end { end + SYNC_RUNWAY_GAP_BYTES } else { active.allocated.max(end) };
        if target <= from {
            return;
        }
        debug_assert!(from.is_multiple_of(BLOCK_BYTES as u64));
        // Counted as allocated from now: a reservation that fails halfway may still have
        // grown the file, which the roll or close then cuts back.
        active.allocated = target;
        (active.file.clone(), active.base_offset, from, target)
    };
    inner.reserving.set(Some((from, target)));
    if zeroing {
        inner.runway_zeroed_at.set(Some(std::time::Instant::now()));
    }
    let owner = inner.clone();
    let task = glommio::spawn_local(async move {
        // (the reservation, the sync of the zeros): only the second fails the partition.
        let (result, synced) = if zeroing {
            let zeros = owner.storage.alloc_zeroed((target - from) as usize);
            match file.write_at(zeros.share(), from).await {
                Ok(()) => (Ok(()), file.fdatasync().await),
                Err(e) => (Err(e), Ok(())),
            }
        } else {
            (file.allocate(target).await, Ok(()))
        };
        owner.reserving.set(None);
        if let Err(e) = synced {
            owner.fail(format!("fdatasync of reserved segment space failed: {e}"));
        }
        if let Err(e) = result {
            tracing::warn!(dir = %owner.dir.display(), error = %e, "cannot reserve segment space; writing without");
            // The file may have grown part way: its length is unknown until the roll or
            // close cuts it back, and this segment tries no more.
            let mut st = owner.state.borrow_mut();
            if let Some(seg) = st.segments.iter_mut().rev().find(|s| s.base_offset == base) {
                seg.allocated = u64::MAX;
            }
        }
    });
    *inner.allocation.borrow_mut() = Some(task);
}

/// Under `sync`: waits for the zeros being written ahead if the next write, `bytes` at the
/// end of the active segment, would overlap them (a zero landing after data would erase it).
async fn wait_for_overlapping_zeros(inner: &Inner, bytes: u64) {
    if inner.topic.durability != Durability::Sync {
        // A fallocate never overwrites data.
        return;
    }
    let Some((from, to)) = inner.reserving.get() else { return };
    let len = inner.state.borrow().segments.back().map_or(0, |s| s.len);
    if len < to && len + bytes > from {
        inner.wait_allocation().await;
    }
}

/// Group commit (`interval_ms == None`: sync as soon as something is written) or periodic sync.
async fn flush_loop(inner: Rc<Inner>, interval_ms: Option<u64>) {
    loop {
        match interval_ms {
            None => loop {
                let listener = inner.sync_wanted.listen();
                let (failed, unsynced) = {
                    let st = inner.state.borrow();
                    (st.failure.is_some(), st.offsets.written_end() > st.offsets.durable_end())
                };
                if failed || (!unsynced && inner.closing.get() && inner.queue.is_empty()) {
                    return;
                }
                if unsynced {
                    // Sync what has landed now, without waiting for the writes still in
                    // flight: they land during this sync and the next one covers them, so
                    // the device keeps writing while acknowledged producers send more.
                    break;
                }
                listener.await;
            },
            Some(ms) => {
                if !inner.sleep_unless_closing(ms).await {
                    return;
                }
                let st = inner.state.borrow();
                if st.failure.is_some() || inner.closing.get() {
                    return;
                }
                if st.offsets.written_end() == st.offsets.durable_end() {
                    continue;
                }
            }
        }
        if inner.sync_active().await.is_err() {
            return;
        }
    }
}

/// Refreshes the durable watermark file while data keeps arriving.
async fn watermark_loop(inner: Rc<Inner>) {
    while inner.sleep_unless_closing(WATERMARK_PERSIST_INTERVAL_MS.min(100)).await {
        let due = {
            let st = inner.state.borrow();
            st.failure.is_none() && st.offsets.durable_end() > st.watermark_persisted
        };
        if due && !inner.closing.get() {
            if let Err(e) = inner.persist_watermark().await {
                inner.fail(format!("persisting the durable watermark failed: {e}"));
                return;
            }
            inner.sleep_unless_closing(WATERMARK_PERSIST_INTERVAL_MS).await;
        }
    }
}

struct Recovered {
    offsets: PartitionOffsets,
    segments: VecDeque<Segment>,
    failure: Option<String>,
    producers: ProducerTable,
}

/// The producer snapshot file of the segment starting at `base_offset`.
pub(crate) fn producers_file_name(base_offset: u64) -> String {
    format!("{base_offset:020}.producers")
}

/// Writes the producer state as of `base_offset` (the start of a new segment), durably.
async fn write_producer_snapshot(
    storage: &Storage,
    dir: &Path,
    base_offset: u64,
    table: &ProducerTable,
) -> Result<(), LogError> {
    let mut e = Encoder::new();
    e.u64(base_offset);
    table.encode(&mut e);
    let bytes = encode_meta_file(PRODUCERS_MAGIC, PRODUCERS_VERSION, &e.finish());
    storage.write_file_atomic(&dir.join(producers_file_name(base_offset)), &bytes).await?;
    Ok(())
}

async fn read_producer_snapshot(storage: &Storage, dir: &Path, base_offset: u64) -> Option<ProducerTable> {
    let path = dir.join(producers_file_name(base_offset));
    if !storage.exists(&path) {
        return None;
    }
    let buf = storage.read_file(&path).await.ok()?;
    let body = decode_meta_file(PRODUCERS_MAGIC, PRODUCERS_VERSION, &buf).ok()?;
    let mut d = Decoder::new(body);
    if d.u64().ok()? != base_offset {
        return None;
    }
    match ProducerTable::decode(&mut d) {
        Ok(t) if t.remembers_only_before(base_offset) => Some(t),
        Ok(_) => {
            tracing::warn!(path = %path.display(), "ignoring a producer snapshot that remembers batches past its own offset");
            None
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable producer snapshot");
            None
        }
    }
}

/// Rebuilds producer state: the newest snapshot at or below the active segment, then the
/// trailers of every segment from there on (only the active one, normally).
async fn recover_producers(
    storage: &Storage,
    dir: &Path,
    segments: &VecDeque<Segment>,
    identity: PartitionIdentity,
    active_trailers: Vec<(ProducerInfo, u64, u32, u32)>,
) -> Result<ProducerTable, LogError> {
    let mut from = segments.len().saturating_sub(1);
    let mut table = None;
    loop {
        if let Some(t) = read_producer_snapshot(storage, dir, segments[from].base_offset).await {
            table = Some(t);
            break;
        }
        if from == 0 {
            break;
        }
        from -= 1;
    }
    let mut table = table.unwrap_or_default();
    let last = segments.len() - 1;
    for seg in segments.iter().take(last).skip(from) {
        // No snapshot for a later segment (a crash during a roll): read its trailers.
        let len = seg.file.len().await?;
        let scan = scan_segment(&seg.file, len, seg.base_offset, identity, BATCH_BYTES_MAX_CEILING as u64).await?;
        for (p, base, count, sequences) in scan.producers {
            table.record(&p, base, count, sequences);
        }
    }
    for (p, base, count, sequences) in active_trailers {
        table.record(&p, base, count, sequences);
    }
    Ok(table)
}

async fn read_watermark(storage: &Storage, dir: &Path) -> u64 {
    let path = dir.join(WATERMARK_FILE);
    if !storage.exists(&path) {
        return 0;
    }
    match storage.read_file(&path).await {
        Ok(buf) => match decode_meta_file(WATERMARK_MAGIC, WATERMARK_VERSION, &buf) {
            Ok(body) => Decoder::new(body).u64().unwrap_or(0),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable durable watermark");
                0
            }
        },
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable durable watermark");
            0
        }
    }
}

/// Opens every segment of a partition directory, verifying the last one batch by batch.
async fn recover(
    storage: &Storage,
    dir: &Path,
    topic: &TopicConfig,
    identity: PartitionIdentity,
) -> Result<Recovered, LogError> {
    let mut bases: Vec<u64> =
        storage.list_dir(dir)?.iter().filter(|e| !e.is_dir).filter_map(|e| parse_log_file_name(&e.name)).collect();
    bases.sort_unstable();
    let watermark = read_watermark(storage, dir).await;
    let payload_max = BATCH_BYTES_MAX_CEILING as u64;

    // A last segment whose header never made it to disk is a torn roll: drop it. Creation
    // syncs the header before any batch is written, so a file with a bad header but an
    // intact batch after it is corruption, never a torn roll.
    let mut recreate_at = 0;
    while let Some(&last) = bases.last() {
        let path = dir.join(log_file_name(last));
        let file = storage.open(&path, OpenMode::Read).await?;
        let file_len = file.len().await?;
        let header = file.read_at(0, BLOCK_BYTES).await?;
        if SegmentHeader::decode(&header).is_some_and(|h| h.base_offset == last && h.identity == identity) {
            file.close().await?;
            break;
        }
        // Only a bad header needs the whole file looked through.
        let holds_batches = has_intact_batch(&file, file_len, identity).await?;
        file.close().await?;
        if holds_batches || last < watermark {
            return Err(LogError::Corrupt {
                path,
                pos: 0,
                offset: last,
                detail: "bad segment header in a segment that holds data".into(),
            });
        }
        tracing::warn!(path = %path.display(), "removing segment torn during creation");
        storage.remove_file(&path).await?;
        storage.sync_dir(dir).await?;
        bases.pop();
        recreate_at = recreate_at.max(last);
    }
    if bases.is_empty() {
        // Never restart offsets below what existed: consumers may hold them.
        let start = recreate_at.max(watermark);
        let seg = Segment::create(storage, dir, start, identity).await?;
        let mut segments = VecDeque::new();
        segments.push_back(seg);
        let o = Offset(start);
        let producers = read_producer_snapshot(storage, dir, start).await.unwrap_or_default();
        return Ok(Recovered { offsets: PartitionOffsets::new(o, o, o), segments, failure: None, producers });
    }

    let mut segments = VecDeque::new();
    let mut failure = None;
    let mut expected_base = None;
    let mut active_trailers = Vec::new();
    let last_i = bases.len() - 1;
    for (i, &base) in bases.iter().enumerate() {
        let log_path = dir.join(log_file_name(base));
        let index_path = dir.join(index_file_name(base));
        let is_last = i == last_i;
        let file = storage.open(&log_path, if is_last { OpenMode::ReadWrite } else { OpenMode::Read }).await?;
        let file_len = file.len().await?;
        if let Some(exp) = expected_base {
            if exp != base && failure.is_none() {
                failure =
                    Some(format!("{}: segment starts at offset {base}, previous ended at {exp}", log_path.display()));
            }
        }
        // Sealed segments: trust a matching index, else rebuild it by a full scan.
        let mut index = None;
        if !is_last && storage.exists(&index_path) {
            if let Ok(buf) = storage.read_file(&index_path).await {
                if let Ok((ix, summary)) = SegmentIndex::decode_file(&buf) {
                    // Derived data, so trusted only where it agrees with the files: the
                    // next segment starts where this index says this one ends.
                    let next_base = bases.get(i + 1).copied();
                    if summary.base_offset == base && summary.len == file_len && Some(summary.end_offset) == next_base {
                        // Checked, then left in its file: loaded again when a reader needs it.
                        index = Some((
                            SegmentIndexHome::Sealed { max_timestamp_ms: ix.max_timestamp_ms() },
                            summary.end_offset,
                        ));
                    }
                }
            }
        }
        let (index, end_offset, len) = match index {
            Some((ix, end)) => (ix, end, file_len),
            None => {
                let scan = scan_segment(&file, file_len, base, identity, payload_max).await?;
                let durable = if is_last { watermark.max(scan.durable_hint_max).max(base) } else { u64::MAX };
                match &scan.stop {
                    // Corruption below the durable mark: reported, never truncated.
                    Some(stop) if stop.expected_offset < durable => {
                        failure.get_or_insert(format!(
                            "corruption in {} at byte {} (offset {}): {}",
                            log_path.display(),
                            stop.pos,
                            stop.expected_offset,
                            stop.detail
                        ));
                    }
                    _ if is_last && scan.end_offset < watermark => {
                        failure.get_or_insert(format!(
                            "{} ends at offset {} but offsets up to {watermark} were durable",
                            log_path.display(),
                            scan.end_offset
                        ));
                    }
                    // A torn tail above the durable mark is truncated, unless the partition
                    // is already known to be damaged: then nothing on disk is changed. So
                    // is space reserved ahead of the writes (zeros where the next batch
                    // would start), and anything a write landed past it: never acknowledged.
                    _ if is_last && file_len > scan.valid_len && failure.is_none() => {
                        if scan.stop.is_none() {
                            // Zeros to the end: space reserved ahead of the writes.
                            tracing::debug!(path = %log_path.display(), from = scan.valid_len, to = file_len,
                                "dropping reserved space after the last batch");
                        } else {
                            tracing::warn!(path = %log_path.display(), from = scan.valid_len, to = file_len,
                                "truncating torn tail above the durable watermark");
                        }
                        file.truncate(scan.valid_len).await?;
                    }
                    _ => {}
                }
                if is_last && failure.is_none() {
                    // What survived a crash may have been written but never synced: make it
                    // durable before calling it durable (and visible).
                    if let Err(e) = file.fdatasync().await {
                        failure = Some(format!("fdatasync during recovery failed: {e}"));
                    }
                }
                if !is_last && failure.is_none() {
                    // Rewrite the missing or stale index; derived data, no sync needed.
                    let summary = super::segment_index::SegmentSummary {
                        base_offset: base,
                        end_offset: scan.end_offset,
                        len: scan.valid_len,
                        max_timestamp_ms: scan.index.max_timestamp_ms(),
                    };
                    let _ = write_plain(storage, &index_path, &scan.index.encode_file(&summary)).await;
                }
                if is_last {
                    active_trailers = scan.producers;
                }
                let home = if is_last {
                    SegmentIndexHome::Active(scan.index)
                } else {
                    SegmentIndexHome::Sealed { max_timestamp_ms: scan.index.max_timestamp_ms() }
                };
                (home, scan.end_offset, scan.valid_len)
            }
        };
        expected_base = Some(end_offset);
        segments.push_back(Segment {
            base_offset: base,
            log_path,
            index_path,
            file: Rc::new(file),
            len,
            visible_len: len,
            // Cut back to the batches, unless damage left the file as it was.
            allocated: if failure.is_some() { file_len.max(len) } else { len },
            end_offset,
            index,
        });
    }
    let start = Offset(bases[0]);
    let end = Offset(expected_base.unwrap_or(0));
    let _ = topic;
    let producers = recover_producers(storage, dir, &segments, identity, active_trailers).await?;
    Ok(Recovered { offsets: PartitionOffsets::new(start, end, end), segments, failure, producers })
}

/// Whether any block of the file past the header starts an intact batch of this partition.
async fn has_intact_batch(file: &crate::io::File, file_len: u64, identity: PartitionIdentity) -> Result<bool, IoError> {
    let mut reader = ChunkReader::new(file, file_len);
    let mut pos = SEGMENT_DATA_START;
    while pos + BATCH_HEADER_BYTES as u64 <= file_len {
        if let Some(hb) = reader.bytes_at(pos, BATCH_HEADER_BYTES).await? {
            if let Ok(h) = BatchHeader::decode(&hb) {
                if h.topic_id == identity.topic_id && u32::from(h.partition) == identity.partition {
                    return Ok(true);
                }
            }
        }
        pos += BLOCK_BYTES as u64;
    }
    Ok(false)
}

async fn write_plain(storage: &Storage, path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    let file = storage.open(path, OpenMode::Create).await?;
    file.truncate(0).await?;
    let mut buf = storage.alloc_zeroed(crate::limits::align_up(bytes.len() as u64) as usize);
    buf.as_mut_slice()[..bytes.len()].copy_from_slice(bytes);
    file.write_at(buf, 0).await?;
    file.close().await
}
