//! Starting shards: one glommio `LocalExecutor` per shard, each pinned to its own core.

use std::future::Future;

use glommio::{LocalExecutorBuilder, Placement};

/// Which shard this is, of how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardId {
    pub index: usize,
    pub count: usize,
}

/// The number of shards to run by default: one per core this process may use.
pub fn default_shard_count() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// A started shard thread.
pub struct ShardHandle<T: Send + 'static> {
    handle: glommio::ExecutorJoinHandle<T>,
}

impl<T: Send + 'static> ShardHandle<T> {
    pub fn join(self) -> Result<T, String> {
        self.handle.join().map_err(|e| format!("shard thread failed: {e}"))
    }
}

/// Starts `count` shards. Shard `i` is pinned to the i-th CPU this process may run on
/// (wrapping around when there are more shards than CPUs), or left unpinned if `pin` is
/// false, and runs the future `main(id)` builds.
pub fn start_shards<F, Fut, T>(count: usize, pin: bool, main: F) -> Result<Vec<ShardHandle<T>>, String>
where
    F: Fn(ShardId) -> Fut + Send + Clone + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let cpus = allowed_cpus();
    let mut handles = Vec::with_capacity(count);
    for index in 0..count {
        let placement = match (pin, cpus.is_empty()) {
            (true, false) => Placement::Fixed(cpus[index % cpus.len()]),
            _ => Placement::Unbound,
        };
        let main = main.clone();
        let id = ShardId { index, count };
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("shard-{index}"))
            .io_memory(crate::limits::SHARD_IO_MEMORY_BYTES)
            .spin_before_park(std::time::Duration::from_micros(crate::limits::SHARD_SPIN_BEFORE_PARK_US))
            .spawn(move || main(id))
            .map_err(|e| format!("cannot start shard {index}: {e}"))?;
        handles.push(ShardHandle { handle });
    }
    Ok(handles)
}

/// The CPUs in this process's affinity mask.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &set)).collect()
    }
}

/// Runs one future on a single unpinned executor and waits for it: for tools and
/// commands that need the engine's I/O outside a server.
pub fn run_single<F, Fut, T>(main: F) -> Result<T, String>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    LocalExecutorBuilder::new(Placement::Unbound)
        .name("sluice-tool")
        .spawn(main)
        .map_err(|e| format!("cannot start an executor: {e}"))?
        .join()
        .map_err(|e| format!("executor failed: {e}"))
}
