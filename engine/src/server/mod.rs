//! The server: one node per shard, and the listeners that feed them.
//!
//! Owns: startup (lock the data directory, bind every listener, open every shard's log,
//! create the internal topics, print the ready line), the accept loops, and the orderly
//! stop: stop accepting, let every connection finish what it has in flight, then (once
//! all shards are there) sync and close the log. `server/` never reaches into a
//! partition's internals: it goes through `log`'s API.

mod frame;
pub mod http;
pub mod kafka;
pub mod native;
pub mod node;
pub mod pg;
pub mod rebuild;
pub mod sql;
pub mod views;

use std::net::{SocketAddr, TcpListener};
use std::os::fd::{FromRawFd, IntoRawFd, RawFd};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::Duration;

use glommio::sync::Gate;

use crate::dataflow::exchange::DataMsg;
use crate::io::{DirLock, Storage};
use crate::limits::{
    CONNECTIONS_MAX_DEFAULT, CONNECTION_IDLE_MS_DEFAULT, EXCHANGE_QUEUE_DEPTH, FRAME_BYTES_MAX_DEFAULT,
    RETENTION_CHECK_INTERVAL_MS, SHARD_QUEUE_DEPTH, STALL_PROBE_INTERVAL_MS, STALL_WARN_MS,
};
use crate::log::{LogManager, Placement};
use crate::runtime::{start_shards, MeshSetup, ShardId, ShutdownSignal};
use kafka::groups::GroupCoordinator;
use kafka::{KafkaConfig, KafkaContext};
use native::ConnectionLimits;
use node::{serve_peer_queue, Node, ShardRequest};

/// Everything `sluice serve` can be told.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub native_addr: SocketAddr,
    /// The Kafka listener; `None` turns it off.
    pub kafka_addr: Option<SocketAddr>,
    pub kafka: KafkaConfig,
    /// The HTTP listener; `None` turns it off.
    pub http_addr: Option<SocketAddr>,
    pub http: http::HttpConfig,
    /// The Postgres wire protocol listener; `None` turns it off.
    pub pg_addr: Option<SocketAddr>,
    pub pg: pg::PgConfig,
    pub shards: usize,
    /// Pin each shard to its own CPU.
    pub pin: bool,
    pub frame_bytes_max: usize,
    pub connections_max: usize,
    pub idle_ms: u64,
    /// How often views are checkpointed (0: never; a restart then rebuilds them).
    pub checkpoint_interval_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            data_dir: PathBuf::from("sluice-data"),
            native_addr: SocketAddr::from(([127, 0, 0, 1], 9700)),
            kafka_addr: Some(SocketAddr::from(([127, 0, 0, 1], 9092))),
            kafka: KafkaConfig::default(),
            http_addr: Some(SocketAddr::from(([127, 0, 0, 1], 9600))),
            http: http::HttpConfig::default(),
            pg_addr: Some(SocketAddr::from(([127, 0, 0, 1], 6875))),
            pg: pg::PgConfig::default(),
            shards: crate::runtime::default_shard_count(),
            pin: true,
            frame_bytes_max: FRAME_BYTES_MAX_DEFAULT,
            connections_max: CONNECTIONS_MAX_DEFAULT,
            idle_ms: CONNECTION_IDLE_MS_DEFAULT,
            checkpoint_interval_ms: crate::limits::CHECKPOINT_INTERVAL_MS_DEFAULT,
        }
    }
}

/// Where a started server listens.
#[derive(Debug, Clone, Copy)]
pub struct ReadyInfo {
    pub native: SocketAddr,
    pub kafka: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub pg: Option<SocketAddr>,
}

impl ReadyInfo {
    /// The line `sluice serve` prints on stdout once it serves.
    pub fn line(&self) -> String {
        let mut line = format!("sluice ready native={}", self.native);
        if let Some(k) = self.kafka {
            line.push_str(&format!(" kafka={k}"));
        }
        if let Some(p) = self.pg {
            line.push_str(&format!(" pg={p}"));
        }
        if let Some(h) = self.http {
            line.push_str(&format!(" http={h}"));
        }
        line
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    Io(#[from] crate::io::IoError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("{0}")]
    Startup(String),
}

/// The protocols a listener can speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Native,
    Kafka,
    Http,
    Pg,
}

/// A bound listening socket, duplicated once per shard.
#[derive(Clone)]
struct Listener {
    protocol: Protocol,
    addr: SocketAddr,
    fds: Vec<RawFd>,
}

/// Binds one exclusive listening socket (no SO_REUSEPORT: a second server cannot share
/// the port) and gives each shard a duplicate to accept on.
fn bind(protocol: Protocol, addr: SocketAddr, shards: usize) -> Result<Listener, ServerError> {
    let listener = TcpListener::bind(addr).map_err(|source| ServerError::Bind { addr, source })?;
    let bound = listener.local_addr().map_err(|source| ServerError::Bind { addr, source })?;
    // Non-blocking is essential: glommio's accept first tries a plain accept(2), which on a
    // blocking socket would block the whole shard (and every peer waiting on it). The flag
    // lives on the open file description, so every duplicate below shares it.
    listener.set_nonblocking(true).map_err(|source| ServerError::Bind { addr: bound, source })?;
    let mut fds = Vec::with_capacity(shards);
    for _ in 0..shards {
        let dup = listener.try_clone().map_err(|source| ServerError::Bind { addr: bound, source })?;
        fds.push(dup.into_raw_fd());
    }
    Ok(Listener { protocol, addr: bound, fds })
}

/// Runs a server until `shutdown` is requested; calls `ready` once every shard serves.
pub fn run(config: ServerConfig, shutdown: ShutdownSignal, ready: impl FnOnce(ReadyInfo)) -> Result<(), ServerError> {
    if config.shards == 0 {
        return Err(ServerError::Startup("--shards must be at least 1".into()));
    }
    let _lock = DirLock::acquire(&config.data_dir)?;
    let mut listeners = vec![bind(Protocol::Native, config.native_addr, config.shards)?];
    if let Some(addr) = config.kafka_addr {
        listeners.push(bind(Protocol::Kafka, addr, config.shards)?);
    }
    if let Some(addr) = config.http_addr {
        listeners.push(bind(Protocol::Http, addr, config.shards)?);
    }
    if let Some(addr) = config.pg_addr {
        listeners.push(bind(Protocol::Pg, addr, config.shards)?);
    }
    let find = |p: Protocol| listeners.iter().find(|l| l.protocol == p).map(|l| l.addr);
    let info = ReadyInfo {
        native: listeners[0].addr,
        kafka: find(Protocol::Kafka),
        http: find(Protocol::Http),
        pg: find(Protocol::Pg),
    };
    let mesh = MeshSetup::<ShardRequest>::new(config.shards, SHARD_QUEUE_DEPTH);
    let data_meshes = (
        MeshSetup::<DataMsg>::new(config.shards, EXCHANGE_QUEUE_DEPTH),
        MeshSetup::<DataMsg>::new(config.shards, EXCHANGE_QUEUE_DEPTH),
    );
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    let shard_config = config.clone();
    let shard_shutdown = shutdown.clone();
    let handles = start_shards(config.shards, config.pin, move |id| {
        let mine: Vec<(Protocol, SocketAddr, RawFd)> =
            listeners.iter().map(|l| (l.protocol, l.addr, l.fds[id.index])).collect();
        shard_main(
            id,
            shard_config.clone(),
            mine,
            (mesh.clone(), data_meshes.0.clone(), data_meshes.1.clone()),
            shard_shutdown.clone(),
            ready_tx.clone(),
        )
    })
    .map_err(ServerError::Startup)?;
    let mut startup_error = None;
    for _ in 0..config.shards {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                startup_error.get_or_insert(e);
            }
            Err(_) => {
                startup_error.get_or_insert("a shard stopped during startup".to_string());
                break;
            }
        }
    }
    match &startup_error {
        None => ready(info),
        // Bring the shards that did start down again.
        Some(_) => shutdown.request(),
    }
    let mut first_error = startup_error.map(ServerError::Startup);
    for h in handles {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) | Err(e) => {
                first_error.get_or_insert(ServerError::Startup(e));
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// `work`'s result, or `None` once a shutdown is requested first.
async fn unless_shutdown<T>(shutdown: &ShutdownSignal, work: impl std::future::Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(work.await) }, async {
        shutdown.requested().await;
        None
    })
    .await
}

async fn shard_main(
    id: ShardId,
    config: ServerConfig,
    listeners: Vec<(Protocol, SocketAddr, RawFd)>,
    meshes: (MeshSetup<ShardRequest>, MeshSetup<DataMsg>, MeshSetup<DataMsg>),
    shutdown: ShutdownSignal,
    ready: mpsc::Sender<Result<(), String>>,
) -> Result<(), String> {
    let listeners: Vec<(Protocol, SocketAddr, glommio::net::TcpListener)> = listeners
        .into_iter()
        // SAFETY: each fd is a listening socket duplicated for this shard alone.
        .map(|(p, addr, fd)| (p, addr, unsafe { glommio::net::TcpListener::from_raw_fd(fd) }))
        .collect();
    let (mesh, first, second) = meshes;
    let joined = async { Ok::<_, String>((mesh.join().await?, first.join().await?, second.join().await?)) };
    let ((peers, receivers), first, second) = match joined.await {
        Ok(m) => m,
        Err(e) => {
            let _ = ready.send(Err(e.clone()));
            shutdown.request();
            shutdown.leave();
            return Err(e);
        }
    };
    let placement = Placement { shard: id.index, shards: id.count };
    let fail = |msg: String| {
        let _ = ready.send(Err(msg.clone()));
        shutdown.request();
        shutdown.leave();
        Err(msg)
    };
    let log = match LogManager::open(Storage::real(), &config.data_dir, placement).await {
        Ok(log) => log,
        Err(e) => return fail(format!("shard {}: opening the log failed: {e}", id.index)),
    };
    let groups = GroupCoordinator::new(config.kafka.group_timeouts());
    let node = Rc::new(Node::new(id, log, peers, groups));
    for (_, rx) in receivers {
        glommio::spawn_local(serve_peer_queue(node.clone(), rx)).detach();
    }
    *node.data.borrow_mut() = Some(views::DataMeshes { first: first.0, second: second.0 });
    for (_, rx) in first.1.into_iter().chain(second.1) {
        glommio::spawn_local(views::serve_data_queue(node.clone(), rx)).detach();
    }
    // Starting up asks other shards; one that failed will never answer, so a shard gives
    // up once a shutdown is requested (every failing shard requests one).
    let stopped = || format!("shard {}: stopped during startup (another shard failed)", id.index);
    match unless_shutdown(&shutdown, node.start_internal()).await {
        Some(Ok(())) => {}
        Some(Err(e)) => return fail(format!("shard {}: starting the internal topics failed: {e}", id.index)),
        None => return fail(stopped()),
    }
    match unless_shutdown(&shutdown, node.restore_views()).await {
        Some(Ok(())) => {}
        Some(Err(e)) => return fail(format!("shard {}: restoring the views failed: {e}", id.index)),
        None => return fail(stopped()),
    }
    let retention = glommio::spawn_local(retention_loop(node.clone()));
    let probe = glommio::spawn_local(stall_probe(node.clone()));
    let checkpoints = glommio::spawn_local(node.clone().checkpoint_loop(config.checkpoint_interval_ms));
    let group_timers = {
        let node2 = node.clone();
        glommio::spawn_local(node.groups.clone().tick_loop(async move { node2.stopped().await }))
    };
    let watcher = {
        let (node, shutdown) = (node.clone(), shutdown.clone());
        glommio::spawn_local(async move {
            shutdown.requested().await;
            node.stop();
        })
    };
    let _ = ready.send(Ok(()));

    let connections = Rc::new(Gate::new());
    let accepting: Vec<_> = listeners
        .into_iter()
        .map(|(protocol, addr, listener)| {
            let (node, config, connections) = (node.clone(), config.clone(), connections.clone());
            glommio::spawn_local(accept_loop(node, config, protocol, addr, listener, connections))
        })
        .collect();
    for a in accepting {
        a.await;
    }
    let _ = connections.close().await;
    // Phase 0: every shard has stopped accepting and drained its connections, so no
    // request can reach a partition any more. Peers keep being served while we wait.
    shutdown.phase_barrier(0, id.count).await;
    // A last checkpoint of every view (restarts then replay nothing), while every
    // shard's views still run; then the views stop, before any log closes (they append
    // to changelog topics).
    checkpoints.cancel().await;
    if id.index == 0 && config.checkpoint_interval_ms > 0 {
        for def in node.views.defs() {
            node.checkpoint_view(&def).await;
        }
    }
    shutdown.phase_barrier(1, id.count).await;
    node.views.stop_all().await;
    shutdown.phase_barrier(2, id.count).await;
    retention.cancel().await;
    probe.cancel().await;
    group_timers.await;
    watcher.cancel().await;
    let result = node.log.close().await.map_err(|e| format!("shard {}: closing the log: {e}", id.index));
    shutdown.phase_barrier(3, id.count).await;
    result
}

/// Accepts connections of one protocol until the shard stops.
async fn accept_loop(
    node: Rc<Node>,
    config: ServerConfig,
    protocol: Protocol,
    addr: SocketAddr,
    listener: glommio::net::TcpListener,
    connections: Rc<Gate>,
) {
    let id = node.shard;
    let per_shard_max = config.connections_max.div_ceil(id.count);
    let limits = ConnectionLimits { frame_bytes_max: config.frame_bytes_max, idle_ms: config.idle_ms };
    let advertised = config.kafka.advertised_addr.unwrap_or(addr);
    let kafka = Rc::new(KafkaContext { advertised, config: config.kafka.clone() });
    let http = Rc::new(config.http.clone());
    let pg = Rc::new(config.pg.clone());
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            node.stopped().await;
            None
        })
        .await;
        match accepted {
            None => break,
            Some(Err(e)) => {
                tracing::warn!(shard = id.index, error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
            Some(Ok(stream)) => {
                if node.connections.get() >= per_shard_max {
                    tracing::warn!(shard = id.index, limit = per_shard_max, "connection refused: too many connections");
                    drop(stream);
                    continue;
                }
                // A replay on this shard steps aside as soon as this client sends.
                crate::runtime::live_input::watch(std::os::fd::AsRawFd::as_raw_fd(&stream));
                let (node, kafka, http, pg) = (node.clone(), kafka.clone(), http.clone(), pg.clone());
                node.connections.set(node.connections.get() + 1);
                let served = connections.spawn(async move {
                    match protocol {
                        Protocol::Native => native::serve_connection(node.clone(), stream, limits).await,
                        Protocol::Kafka => kafka::connection::serve_connection(node.clone(), kafka, stream).await,
                        Protocol::Http => http::serve_connection(node.clone(), http, stream).await,
                        Protocol::Pg => pg::serve_connection(node.clone(), pg, stream).await,
                    }
                    node.connections.set(node.connections.get() - 1);
                });
                match served {
                    Ok(task) => {
                        task.detach();
                    }
                    Err(_) => break,
                }
            }
        }
    }
}

/// Measures how late a short timer fires on this shard: the time its loop spent without
/// polling I/O (a long task, a page fault, the CPU taken away). Seastar calls these
/// reactor stalls; here they go to `sluice_shard_loop_lag_seconds` and the log.
async fn stall_probe(node: Rc<Node>) {
    let period = Duration::from_millis(STALL_PROBE_INTERVAL_MS);
    let warn = Duration::from_millis(STALL_WARN_MS);
    while !node.is_stopping() {
        let asleep = std::time::Instant::now();
        glommio::timer::sleep(period).await;
        let lag = asleep.elapsed().saturating_sub(period);
        node.loop_lag.record(lag);
        if lag > warn {
            tracing::warn!(
                shard = node.shard.index,
                lag_us = lag.as_micros() as u64,
                at_ms = crate::clock::now_ms(),
                "shard loop stalled"
            );
        }
    }
}

async fn retention_loop(node: Rc<Node>) {
    loop {
        glommio::timer::sleep(Duration::from_millis(RETENTION_CHECK_INTERVAL_MS)).await;
        if node.is_stopping() {
            return;
        }
        if let Err(e) = node.log.enforce_retention(crate::clock::now_ms()).await {
            tracing::warn!(shard = node.shard.index, error = %e, "retention failed");
        }
    }
}
