//! Shutdown: SIGINT/SIGTERM set a process-wide flag; each shard watches it on its cold
//! path and runs its own orderly stop (stop accepting, drain, sync, close).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::limits::SHUTDOWN_POLL_MS;

/// Shared by all shards of one server.
#[derive(Clone, Default)]
pub struct ShutdownSignal {
    requested: Arc<AtomicBool>,
    /// Shards done with a phase, for the barriers between phases.
    phase_done: Arc<[AtomicUsize; 4]>,
}

impl ShutdownSignal {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes SIGINT and SIGTERM request shutdown.
    pub fn install_signal_handlers(&self) -> std::io::Result<()> {
        signal_hook::flag::register(signal_hook::consts::SIGINT, self.requested.clone())?;
        signal_hook::flag::register(signal_hook::consts::SIGTERM, self.requested.clone())?;
        Ok(())
    }

    pub fn request(&self) {
        self.requested.store(true, Ordering::SeqCst);
    }

    pub fn is_requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// Resolves once shutdown is requested (polls; this is not a hot path).
    pub async fn requested(&self) {
        while !self.is_requested() {
            glommio::timer::sleep(Duration::from_millis(SHUTDOWN_POLL_MS)).await;
        }
    }

    /// For a shard that stops without the orderly phases (its startup failed): it counts
    /// as done with every phase, so the shards that did start are not held at a barrier.
    pub fn leave(&self) {
        for done in self.phase_done.iter() {
            done.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A barrier across shards: this shard has finished `phase`; waits for all `shards`.
    /// Waiting yields to the executor, so this shard keeps serving its peers meanwhile.
    pub async fn phase_barrier(&self, phase: usize, shards: usize) {
        self.phase_done[phase].fetch_add(1, Ordering::SeqCst);
        while self.phase_done[phase].load(Ordering::SeqCst) < shards {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
    }
}
