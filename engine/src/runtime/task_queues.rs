//! The shard's task queues: live work (ingest, live view processing, queries) runs in the
//! executor's default queue; replays (view rebuilds) run in a queue with a small share,
//! so a rebuild takes what the live work leaves and live latency holds during it.

use std::future::Future;

use glommio::{Latency, Shares, Task, TaskQueueHandle};

use crate::limits::REPLAY_QUEUE_SHARES;

thread_local! {
    static REPLAY_QUEUE: std::cell::Cell<Option<TaskQueueHandle>> = const { std::cell::Cell::new(None) };
}

fn replay_queue() -> Option<TaskQueueHandle> {
    REPLAY_QUEUE.with(|q| {
        if q.get().is_none() {
            let handle = glommio::executor().create_task_queue(
                Shares::Static(REPLAY_QUEUE_SHARES),
                Latency::NotImportant,
                "replay",
            );
            q.set(Some(handle));
        }
        q.get()
    })
}

thread_local! {
    /// When the replay task being polled on this shard was polled: work it does in slices
    /// measures its run from there, whichever part of it is running.
    static REPLAY_POLLED_AT: std::cell::Cell<Option<std::time::Instant>> = const { std::cell::Cell::new(None) };
}

/// When the replay task running now was polled (None outside a replay's poll).
pub fn replay_polled_at() -> Option<std::time::Instant> {
    REPLAY_POLLED_AT.with(|p| p.get())
}

/// A replay's future, noting when each poll of it starts.
struct ReplayPolls<F> {
    future: std::pin::Pin<Box<F>>,
}

impl<F: Future> Future for ReplayPolls<F> {
    type Output = F::Output;
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<F::Output> {
        REPLAY_POLLED_AT.with(|p| p.set(Some(std::time::Instant::now())));
        let _polled = PollEnds;
        self.future.as_mut().poll(cx)
    }
}

/// Clears the poll's start when the poll ends, however it ends.
struct PollEnds;

impl Drop for PollEnds {
    fn drop(&mut self) {
        REPLAY_POLLED_AT.with(|p| p.set(None));
    }
}

/// Spawns a replay on this shard's replay queue (the default queue if it can't be had).
pub fn spawn_replay<T: 'static>(future: impl Future<Output = T> + 'static) -> Task<T> {
    let future = ReplayPolls { future: Box::pin(future) };
    match replay_queue() {
        // The handle came from this executor, which is all spawn_local_into checks.
        Some(q) => glommio::spawn_local_into(future, q).expect("the replay queue belongs to this executor"),
        None => glommio::spawn_local(future),
    }
}
