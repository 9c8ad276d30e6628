//! The server: one node per shard, and the listeners that feed them.
//!
//! Owns: startup (lock the data directory, bind, open every shard's log, print the ready
//! line), the accept loops, and the orderly stop: stop accepting, let every connection
//! finish what it has in flight, then (once all shards are there) sync and close the log.
//! `server/` never reaches into a partition's internals: it goes through `log`'s API.

pub mod native;
pub mod node;

use std::net::{SocketAddr, TcpListener};
use std::os::fd::{FromRawFd, IntoRawFd, RawFd};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::Duration;

use glommio::sync::Gate;

use crate::io::{DirLock, Storage};
use crate::limits::{
    CONNECTIONS_MAX_DEFAULT, CONNECTION_IDLE_MS_DEFAULT, FRAME_BYTES_MAX_DEFAULT, RETENTION_CHECK_INTERVAL_MS,
    SHARD_QUEUE_DEPTH,
};
use crate::log::{LogManager, Placement};
use crate::runtime::{start_shards, MeshSetup, ShardId, ShutdownSignal};
use native::ConnectionLimits;
use node::{serve_peer_queue, Node, ShardRequest};

/// Everything `sluice serve` can be told.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub native_addr: SocketAddr,
    pub shards: usize,
    /// Pin each shard to its own CPU.
    pub pin: bool,
    pub frame_bytes_max: usize,
    pub connections_max: usize,
    pub idle_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            data_dir: PathBuf::from("sluice-data"),
            native_addr: SocketAddr::from(([127, 0, 0, 1], 9700)),
            shards: crate::runtime::default_shard_count(),
            pin: true,
            frame_bytes_max: FRAME_BYTES_MAX_DEFAULT,
            connections_max: CONNECTIONS_MAX_DEFAULT,
            idle_ms: CONNECTION_IDLE_MS_DEFAULT,
        }
    }
}

/// Where a started server listens.
#[derive(Debug, Clone, Copy)]
pub struct ReadyInfo {
    pub native: SocketAddr,
}

impl ReadyInfo {
    /// The line `sluice serve` prints on stdout once it serves.
    pub fn line(&self) -> String {
        format!("sluice ready native={}", self.native)
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

/// Runs a server until `shutdown` is requested; calls `ready` once every shard serves.
pub fn run(config: ServerConfig, shutdown: ShutdownSignal, ready: impl FnOnce(ReadyInfo)) -> Result<(), ServerError> {
    if config.shards == 0 {
        return Err(ServerError::Startup("--shards must be at least 1".into()));
    }
    let _lock = DirLock::acquire(&config.data_dir)?;
    // One exclusive listening socket (no SO_REUSEPORT: a second server cannot share the
    // port); each shard accepts on its own duplicate of it.
    let listener = TcpListener::bind(config.native_addr)
        .map_err(|source| ServerError::Bind { addr: config.native_addr, source })?;
    let native = listener.local_addr().map_err(|source| ServerError::Bind { addr: config.native_addr, source })?;
    // Non-blocking is essential: glommio's accept first tries a plain accept(2), which on a
    // blocking socket would block the whole shard (and every peer waiting on it). The flag
    // lives on the open file description, so every duplicate below shares it.
    listener.set_nonblocking(true).map_err(|source| ServerError::Bind { addr: native, source })?;
    let mut fds = Vec::new();
    for _ in 0..config.shards {
        let dup = listener.try_clone().map_err(|source| ServerError::Bind { addr: native, source })?;
        fds.push(dup.into_raw_fd());
    }
    drop(listener);
    let mesh = MeshSetup::<ShardRequest>::new(config.shards, SHARD_QUEUE_DEPTH);
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    let shard_config = config.clone();
    let fd_list: Vec<RawFd> = fds;
    let shard_shutdown = shutdown.clone();
    let handles = start_shards(config.shards, config.pin, move |id| {
        let fd = fd_list[id.index];
        shard_main(id, shard_config.clone(), fd, mesh.clone(), shard_shutdown.clone(), ready_tx.clone())
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
        None => ready(ReadyInfo { native }),
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

async fn shard_main(
    id: ShardId,
    config: ServerConfig,
    listener_fd: RawFd,
    mesh: MeshSetup<ShardRequest>,
    shutdown: ShutdownSignal,
    ready: mpsc::Sender<Result<(), String>>,
) -> Result<(), String> {
    // SAFETY: the fd is a listening socket duplicated for this shard alone.
    let listener = unsafe { glommio::net::TcpListener::from_raw_fd(listener_fd) };
    let (peers, receivers) = match mesh.join().await {
        Ok(m) => m,
        Err(e) => {
            let _ = ready.send(Err(e.clone()));
            return Err(e);
        }
    };
    let placement = Placement { shard: id.index, shards: id.count };
    let log = match LogManager::open(Storage::real(), &config.data_dir, placement).await {
        Ok(log) => log,
        Err(e) => {
            let msg = format!("shard {}: opening the log failed: {e}", id.index);
            let _ = ready.send(Err(msg.clone()));
            shutdown.request();
            return Err(msg);
        }
    };
    let node = Rc::new(Node::new(id, log, peers));
    for (_, rx) in receivers {
        glommio::spawn_local(serve_peer_queue(node.clone(), rx)).detach();
    }
    let retention = glommio::spawn_local(retention_loop(node.clone()));
    let watcher = {
        let (node, shutdown) = (node.clone(), shutdown.clone());
        glommio::spawn_local(async move {
            shutdown.requested().await;
            node.stop();
        })
    };
    let _ = ready.send(Ok(()));

    let limits = ConnectionLimits { frame_bytes_max: config.frame_bytes_max, idle_ms: config.idle_ms };
    let connections = Gate::new();
    let open = Rc::new(std::cell::Cell::new(0usize));
    let per_shard_max = config.connections_max.div_ceil(id.count);
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
                if open.get() >= per_shard_max {
                    tracing::warn!(shard = id.index, limit = per_shard_max, "connection refused: too many connections");
                    drop(stream);
                    continue;
                }
                let (node, open) = (node.clone(), open.clone());
                open.set(open.get() + 1);
                let served = connections.spawn(async move {
                    native::serve_connection(node, stream, limits).await;
                    open.set(open.get() - 1);
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
    drop(listener);
    let _ = connections.close().await;
    // Phase 0: every shard has stopped accepting and drained its connections, so no
    // request can reach a partition any more. Peers keep being served while we wait.
    shutdown.phase_barrier(0, id.count).await;
    retention.cancel().await;
    watcher.cancel().await;
    let result = node.log.close().await.map_err(|e| format!("shard {}: closing the log: {e}", id.index));
    shutdown.phase_barrier(1, id.count).await;
    result
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
