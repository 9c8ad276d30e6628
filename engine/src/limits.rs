//! Every limit and default of the engine, named once, units last.
//!
//! Relations between limits are compile-time asserts, so a change that breaks
//! one (a batch larger than a segment, a frame smaller than a batch) fails the build.

/// The DMA block: every write and read of a log file is aligned to it.
pub const BLOCK_BYTES: usize = 4096;

/// Bytes of the fixed batch header that precedes every batch payload.
pub const BATCH_HEADER_BYTES: usize = 64;
/// Default largest payload a single produced batch may carry (Kafka's and Redpanda's 1 MiB).
pub const BATCH_BYTES_MAX_DEFAULT: usize = 1 << 20;
/// Hard ceiling for a configured batch size: a batch must fit in one segment write.
pub const BATCH_BYTES_MAX_CEILING: usize = 64 << 20;
/// Steps one LIKE match may take (~0.1 s) before it evaluates to NULL.
pub const LIKE_STEPS_MAX: usize = 1 << 26;
/// Largest text a SQL function may build (no batch could hold a bigger one).
pub const TEXT_VALUE_BYTES_MAX: usize = BATCH_BYTES_MAX_CEILING;
/// Records in one batch at most (keeps record counts inside u32 and bounds validation work).
pub const BATCH_RECORDS_MAX: usize = 1 << 20;

/// Default segment size before rolling to a new segment file.
pub const SEGMENT_BYTES_DEFAULT: u64 = 256 << 20;
/// Smallest configurable segment (tests use small segments to exercise rolling).
pub const SEGMENT_BYTES_MIN: u64 = 64 << 10;
/// Largest segment: index entries store 32-bit file positions.
pub const SEGMENT_BYTES_MAX: u64 = 1 << 32;
/// Below `sync`, the active segment's file is reserved (fallocate) this far ahead of its
/// writes, in steps of this size: an O_DIRECT write that grows a file cannot run inline on
/// ext4, so io_uring hands it to a kernel worker on the shard's own core (measured: 4 KiB
/// appends took ~29 us of worker CPU each, a third of a core at 10,000 writes/s; writes
/// into reserved blocks took none). Under `sync` the fdatasync that follows each write
/// then converts the reserved extents, which measured slower than growing the file.
pub const SEGMENT_ALLOCATE_STEP_BYTES: u64 = 8 << 20;
/// Under `sync`, the active segment is instead zeroed (written and synced) this far ahead
/// of its writes: an append into written blocks is issued inline and its fdatasync has no
/// file size or extent to commit (measured: 4 KiB write+fdatasync p50 ~175 us into zeroed
/// blocks, ~250 us appending). Small refills, often: an acknowledgement that waits behind
/// a refill's write and sync waits less (2 MiB refills: open-loop ack p99 ~1.4x, stop 18).
pub const SYNC_RUNWAY_BYTES: u64 = 256 << 10;
/// The zeroing of that runway may use at most this much of the device's write bandwidth: at
/// low rates (where an acknowledgement's latency matters most) the runway keeps ahead of
/// the appends; at high rates appends overtake it and grow the file, as without one.
pub const SYNC_RUNWAY_ZEROING_BYTES_PER_S: u64 = 16 << 20;
/// With no runway left, the zeros start this far past the next write: the appends
/// meanwhile land in a hole (as plain appends do) instead of waiting for the zeros.
pub const SYNC_RUNWAY_GAP_BYTES: u64 = 64 << 10;
/// A sparse index entry is added after at least this many log bytes.
pub const INDEX_INTERVAL_BYTES: u64 = 32 << 10;
/// Sealed segments' indexes a partition keeps loaded (the rest stay in their files): a
/// reader's segment and the next, a seek elsewhere, a little slack. ~200 KiB each at the
/// default segment size.
pub const SEALED_INDEXES_CACHED: usize = 4;

/// Bytes the appender coalesces into one write (a group of queued batches).
pub const APPEND_WRITE_BYTES_MAX: usize = 4 << 20;
/// The same under `sync`, smaller: the fdatasync of one write overlaps the next writes
/// and acknowledges its appends sooner, so producers refill the queue while the device
/// writes (measured: sync appends at 0.62-0.70 of the raw write rate with one 4 MiB write
/// per group, 0.80-1.1 with 1 MiB writes, alternated; the raw yardstick writes 1 MiB too).
pub const SYNC_WRITE_BYTES_MAX: usize = 1 << 20;
/// Group writes a partition keeps in flight, and their bytes: building and starting the
/// next overlaps writing these, and a write held up in the device (behind a replay's
/// large reads, say) does not hold back the appends behind it.
pub const APPEND_WRITES_INFLIGHT_MAX: usize = 64;
pub const APPEND_INFLIGHT_BYTES_MAX: usize = 16 << 20;
/// Writes in flight beyond which the appender starts another only when the oldest has
/// landed or been in the device for APPEND_WRITE_HELD_UP, or an append has waited
/// APPEND_GATHER_MAX (below `sync`; under `sync` it is the cap):
/// waiting lets the queue build one large write (measured: eager small writes cost sync
/// appends ~20% of the raw disk's bandwidth).
pub const APPEND_WRITES_BUSY: usize = 4;
pub const APPEND_WRITE_HELD_UP: std::time::Duration = std::time::Duration::from_millis(2);
/// The longest the appender holds a queued append back to gather a larger write (below
/// `sync`, where an append becomes visible when its write starts): while a replay's reads
/// fill the device, writes take 0.5-1 ms and the gate above would hold visibility that long.
pub const APPEND_GATHER_MAX: std::time::Duration = std::time::Duration::from_micros(100);
/// Writes in flight up to which APPEND_GATHER_MAX applies (past them, APPEND_WRITE_HELD_UP).
pub const APPEND_WRITES_GATHERING: usize = 16;
/// Bytes in flight below which nothing is held back to gather (a trickle of small appends
/// gains nothing from larger writes, and waits for them).
pub const APPEND_GATHER_BYTES_MIN: usize = 1 << 20;
/// Append requests queued per partition before producers are suspended (backpressure).
pub const APPEND_QUEUE_DEPTH: usize = 1024;
/// How often a partition under `interval` durability without an explicit interval syncs.
pub const SYNC_INTERVAL_MS_DEFAULT: u64 = 10;
/// How often the durable watermark file is refreshed while data keeps arriving.
pub const WATERMARK_PERSIST_INTERVAL_MS: u64 = 1000;

/// Idempotent producers remembered per partition; the least recent is forgotten first.
pub const PRODUCERS_PER_PARTITION_MAX: usize = 10_000;
/// Batches remembered per producer for de-duplication (Kafka's max.in.flight limit of 5).
pub const PRODUCER_BATCHES_REMEMBERED: usize = 5;

/// One read-ahead DMA read.
pub const READ_AHEAD_CHUNK_BYTES: usize = 1 << 20;
/// Read-ahead reads kept in flight by a sequential reader.
pub const READ_AHEAD_DEPTH: usize = 4;
/// Memory one sequential reader may hold in read-ahead buffers.
pub const READ_AHEAD_BUDGET_BYTES: usize = READ_AHEAD_CHUNK_BYTES * READ_AHEAD_DEPTH;
/// DMA memory each shard registers with io_uring up front. Reads and writes whose buffers
/// come from it skip pinning their pages per I/O (a read-ahead that found the pool full got
/// a heap buffer: `gup_fast_fallback` was 5% of a view's shard, perf); four partitions'
/// read-ahead fit. Registration past the memlock limit only warns, and I/O goes unregistered.
pub const SHARD_IO_MEMORY_BYTES: usize = 32 << 20;
/// How long an idle shard polls for I/O and timers before it sleeps in the kernel. A
/// replay steps aside with a 1 us timer; parked, that sleep lasted up to the kernel's
/// 50 us of timer slack.
pub const SHARD_SPIN_BEFORE_PARK_US: u64 = 10;
/// Buffer bytes (headers, payloads, block padding) of its newest batches a partition keeps
/// in memory for live readers, plus whatever is appended but not yet written.
pub const TAIL_CACHE_BYTES_MAX: usize = 2 << 20;

/// Largest native-protocol frame accepted (Kafka's socket.request.max.bytes).
pub const FRAME_BYTES_MAX_DEFAULT: usize = 100 << 20;
/// A frame body is read into a buffer that starts at this size and doubles as bytes
/// arrive, so an announced length costs nothing until the bytes come. Common batches
/// (up to 256 KiB) arrive in one step, with no copy.
pub const FRAME_READ_CHUNK_BYTES: usize = 256 << 10;
/// Bounds of the configurable request and body limits (`frame_bytes_max`,
/// `http_body_bytes_max`, `kafka.request_bytes_max`, `kafka.decompressed_bytes_max`).
pub const CONFIG_BYTES_LIMIT_MIN: usize = 1024;
pub const CONFIG_BYTES_LIMIT_MAX: usize = 1 << 30;
/// Requests one connection may have in flight before the server stops reading it.
pub const CONNECTION_INFLIGHT_MAX: usize = 64;
/// Open connections per server before new ones are refused.
pub const CONNECTIONS_MAX_DEFAULT: usize = 10_000;
/// A connection that sends nothing for this long is closed.
pub const CONNECTION_IDLE_MS_DEFAULT: u64 = 10 * 60 * 1000;
/// The shortest idle deadline a config may set (0 would close every connection at once
/// and give replies no time to be written).
pub const CONNECTION_IDLE_MS_MIN: u64 = 10;
/// Longest a reply may take to be written to a client before the connection is dropped.
pub const REPLY_WRITE_MS_MAX: u64 = 30_000;
/// Longest long-poll a fetch may ask for.
pub const FETCH_WAIT_MS_MAX: u32 = 30_000;
/// Largest byte budget of one fetch reply.
pub const FETCH_BYTES_MAX: u32 = 64 << 20;

/// Largest Kafka request frame accepted by default (Kafka's socket.request.max.bytes).
pub const KAFKA_REQUEST_BYTES_MAX_DEFAULT: usize = 100 << 20;
/// Largest decompressed records section of one produced Kafka batch, by default.
pub const KAFKA_DECOMPRESSED_BYTES_MAX_DEFAULT: usize = 64 << 20;
/// Partitions of the internal `__consumer_offsets` topic (fixed: a group's partition is a
/// hash of its name, so it must not change between runs).
pub const OFFSETS_TOPIC_PARTITIONS: u32 = 16;
/// Assignment protocols one consumer may offer when joining a group (clients offer 1–3).
pub const GROUP_PROTOCOLS_MAX: usize = 64;
/// How often a coordinator checks its groups' session and rebalance deadlines.
pub const GROUP_TICK_MS: u64 = 100;
/// Longest a fetch may wait for `min_bytes`.
pub const KAFKA_FETCH_WAIT_MS_MAX: i32 = 30_000;

/// Largest Postgres protocol message accepted by default (a query or its parameters).
pub const PG_MESSAGE_BYTES_MAX_DEFAULT: usize = 64 << 20;
/// Most named prepared statements one pg connection keeps (each holds its SQL and plan).
pub const PG_STATEMENTS_PER_CONNECTION_MAX: usize = 10_000;
/// Most open portals one pg connection keeps within a transaction (a suspended one holds
/// its result); portals close when the transaction ends, as in Postgres.
pub const PG_PORTALS_PER_CONNECTION_MAX: usize = 1_000;
/// Largest HTTP request body accepted by default.
pub const HTTP_BODY_BYTES_MAX_DEFAULT: usize = 64 << 20;
/// Most records one HTTP fetch returns.
pub const HTTP_FETCH_RECORDS_MAX: u32 = 100_000;

/// Rows (groups and windows) a view keeps per shard by default; past it, new ones are
/// refused and counted (`state_rows_max` in the view's WITH options).
pub const VIEW_STATE_ROWS_MAX_DEFAULT: usize = 10_000_000;
/// A source partition caught up and silent this long stops holding a view's watermark back.
pub const VIEW_IDLE_TIMEOUT_MS_DEFAULT: i64 = 5_000;
/// How far, in event time, a view's source partition may read ahead of the slowest one
/// with a backlog, on any shard (watermark alignment): bounds the windows a catch-up holds.
pub const WATERMARK_DRIFT_MAX_MS: i64 = 5_000;

/// Most windows of a hopping window one event falls in (size / slide).
pub const HOP_WINDOWS_PER_EVENT_MAX: usize = 1_000;
/// Most parameters ($1, $2, ...) of one SQL statement (the protocol's limit).
pub const SQL_PARAMS_MAX: usize = 65_535;
/// Partitions of a topic created by SQL without `partitions = N`.
pub const SQL_PARTITIONS_DEFAULT: u32 = 4;
/// Most rows one SELECT returns before it is refused (use LIMIT).
pub const SQL_RESULT_ROWS_MAX: usize = 10_000_000;

/// How often each view is checkpointed by default.
pub const CHECKPOINT_INTERVAL_MS_DEFAULT: u64 = 10_000;
/// A checkpoint not complete on every shard by then is abandoned (the view goes on).
pub const CHECKPOINT_TIMEOUT_MS: u64 = 30_000;

/// Cross-shard queue slots per pair of shards; a full queue suspends the sender.
pub const SHARD_QUEUE_DEPTH: usize = 256;
/// Exchange queue slots per pair of shards, per mesh (messages of up to a round of
/// batches each); a full queue pauses the sending view's log readers.
pub const EXCHANGE_QUEUE_DEPTH: usize = 64;
/// Requests from one peer shard served at once before its queue backs up.
pub const SHARD_INFLIGHT_MAX: usize = 512;

/// Longest topic name (Kafka's limit).
pub const TOPIC_NAME_BYTES_MAX: usize = 249;
/// Most partitions per topic.
pub const PARTITIONS_MAX: u32 = 4096;
/// How often retention is enforced.
pub const RETENTION_CHECK_INTERVAL_MS: u64 = 5_000;
/// How often each shard's stall probe wakes: the probe measures how late a timer of
/// this period fires, which is how long the shard's loop went without looking at I/O.
/// A stall shows if it covers a wake-up; 1 ms cost an idle server 6% of a core.
pub const STALL_PROBE_INTERVAL_MS: u64 = 10;
/// A stall probe late by more than this is logged as a stall of the shard.
pub const STALL_WARN_MS: u64 = 5;
/// How often a shard looks for a shutdown request (cold path).
pub const SHUTDOWN_POLL_MS: u64 = 10;

const _: () = assert!(BATCH_HEADER_BYTES < BLOCK_BYTES);
const _: () = assert!(BATCH_BYTES_MAX_DEFAULT <= BATCH_BYTES_MAX_CEILING);
// A topic's batch limit must fit one segment: checked by `TopicConfig::validate`.
const _: () = assert!((BATCH_BYTES_MAX_CEILING as u64) < SEGMENT_BYTES_MAX);
const _: () = assert!(SEGMENT_BYTES_MIN.is_multiple_of(BLOCK_BYTES as u64));
const _: () = assert!(SEGMENT_ALLOCATE_STEP_BYTES.is_multiple_of(BLOCK_BYTES as u64));
const _: () = assert!(SYNC_RUNWAY_BYTES.is_multiple_of(BLOCK_BYTES as u64));
const _: () = assert!(SYNC_RUNWAY_GAP_BYTES.is_multiple_of(BLOCK_BYTES as u64));
const _: () = assert!(SYNC_RUNWAY_GAP_BYTES < SYNC_RUNWAY_BYTES / 2);
const _: () = assert!(READ_AHEAD_CHUNK_BYTES.is_multiple_of(BLOCK_BYTES));
const _: () = assert!(APPEND_WRITE_BYTES_MAX >= BATCH_BYTES_MAX_DEFAULT + BLOCK_BYTES);
const _: () = assert!(APPEND_INFLIGHT_BYTES_MAX >= APPEND_WRITE_BYTES_MAX);
const _: () = assert!(SYNC_WRITE_BYTES_MAX <= APPEND_WRITE_BYTES_MAX);
const _: () = assert!(APPEND_WRITES_BUSY < APPEND_WRITES_INFLIGHT_MAX);
const _: () =
    assert!(APPEND_WRITES_BUSY < APPEND_WRITES_GATHERING && APPEND_WRITES_GATHERING < APPEND_WRITES_INFLIGHT_MAX);
const _: () = assert!(FRAME_BYTES_MAX_DEFAULT > BATCH_BYTES_MAX_CEILING);
const _: () = assert!(SEGMENT_BYTES_MAX <= u32::MAX as u64 + 1);

/// Shares of the shard's live task queue (glommio's default queue: ingest, live view
/// processing, queries) and of the replay queue (rebuilds): a busy replay gets ~1/11.
pub const LIVE_QUEUE_SHARES: usize = 1_000;
pub const REPLAY_QUEUE_SHARES: usize = 100;
const _: () = assert!(REPLAY_QUEUE_SHARES < LIVE_QUEUE_SHARES, "a replay must have the smaller share");
/// Records a replaying driver folds between two looks at the clock (~40 us of work).
pub const REPLAY_SLICE_ROWS: usize = 256;
/// Partial groups a replay drains, merges into its state, or windows it closes, per slice
/// (merging measured 0.3-0.9 us a group, closing 0.15-0.35 us a window): a live request
/// that arrives waits for the slice (`runtime::live_input`), so slices stay a few us.
pub const REPLAY_SLICE_GROUPS: usize = 16;
/// How long a replaying driver runs before it steps aside through the reactor: about the
/// longest a live request waits on a replay (a live event waits on it twice: its produce
/// and the lookup that sees it). 50 against 100: no rebuild rate lost that a run showed.
pub const REPLAY_RUN_US: u64 = 50;
/// The shortest run after which a replay steps aside for live input that has arrived
/// (`runtime::live_input`): bounds the cost of stepping aside when a request stays unread.
pub const REPLAY_RUN_MIN_US: u64 = 10;
/// Keys of a view's aggregate written (for a checkpoint) or freed (for a retired version)
/// per slice, between which the work checks whether it has run REPLAY_RUN_US and steps
/// aside.
pub const SNAPSHOT_SLICE_KEYS: usize = 64;
/// How long a live log write may sit in the device before a replay on its shard stops
/// issuing reads until it lands (`log::oldest_write_age`), and the longest it stops for
/// at a time (a write stuck for good must not stop a rebuild).
pub const REPLAY_YIELDS_TO_WRITE_AFTER: std::time::Duration = std::time::Duration::from_millis(5);
pub const REPLAY_YIELDS_TO_WRITES_MAX: std::time::Duration = std::time::Duration::from_millis(100);
/// Reads in flight per partition for a replay (live readers: READ_AHEAD_DEPTH).
pub const REPLAY_READ_AHEAD_DEPTH: usize = 2;
/// How often the coordinator looks at a rebuild's progress (and whether it can switch).
pub const REBUILD_POLL_MS: u64 = 50;
/// How long a sequential-read probe for `EXPLAIN REBUILD` may read.
pub const READ_RATE_PROBE_MS: u64 = 200;

/// Rounds `n` up to the next multiple of [`BLOCK_BYTES`].
pub const fn align_up(n: u64) -> u64 {
    (n + BLOCK_BYTES as u64 - 1) & !(BLOCK_BYTES as u64 - 1)
}

/// Rounds `n` down to a multiple of [`BLOCK_BYTES`].
pub const fn align_down(n: u64) -> u64 {
    n & !(BLOCK_BYTES as u64 - 1)
}
