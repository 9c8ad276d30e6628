//! The views running on one shard: their definitions, runtimes and driver tasks.
//!
//! A view has one serving version and, while it is rebuilt, a building one whose driver
//! runs in the replay task queue (a small share of the shard). Promotion makes the
//! building version serve and retires the old one; a retired version still answers reads
//! that began before the switch until the coordinator drops it on every shard.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use glommio::Task;
use hashbrown::HashMap;

use super::catalog::ViewDef;
use crate::dataflow::exchange::ViewKey;
use crate::dataflow::runtime::{drive, DataflowHost, ViewRuntime};
use crate::sql::types::DataType;

pub struct ViewEntry {
    pub def: ViewDef,
    pub runtime: Rc<ViewRuntime>,
    /// The view's columns (name, type), as SELECT shows them.
    pub columns: Vec<(String, DataType)>,
    task: Option<Task<()>>,
}

#[derive(Default)]
pub struct ViewManager {
    entries: RefCell<BTreeMap<String, ViewEntry>>,
    /// Versions being rebuilt, by view name.
    building: RefCell<BTreeMap<String, ViewEntry>>,
    /// Versions replaced by a rebuild, kept for reads already under way.
    retired: RefCell<BTreeMap<String, ViewEntry>>,
    /// The coordinator's rebuilds: the running ones and the last of each view.
    pub rebuilds: RefCell<BTreeMap<String, super::rebuild::RebuildProgress>>,
    by_key: RefCell<HashMap<ViewKey, Rc<ViewRuntime>>>,
    /// The highest view id handed out (ids are never reused in a data directory).
    last_id: std::cell::Cell<u64>,
    /// The coordinator's checkpoints: per view, the last id used, the one in progress
    /// (id, shards done, all ok), and how long the last one took.
    checkpoints: RefCell<HashMap<String, CheckpointProgress>>,
    checkpoint_event: event_listener::Event,
}

#[derive(Debug, Default, Clone)]
pub struct CheckpointProgress {
    pub last_id: u64,
    pub in_progress: Option<CheckpointRound>,
    pub completed: u64,
    pub last_duration: Option<std::time::Duration>,
}

/// The shards' reports on the checkpoint in progress.
#[derive(Debug, Clone, Copy)]
pub struct CheckpointRound {
    pub id: u64,
    /// Shards whose state is taken (in memory): once all are, the sources may go on.
    pub captured: usize,
    /// Shards whose state is durable, or failed to be (`ok` false).
    pub written: usize,
    pub ok: bool,
}

/// A shard's report on its part of a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointStep {
    Captured,
    Written { ok: bool },
}

impl ViewManager {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a view's runtime on this shard (not started: messages for it are
    /// accepted from now on).
    pub fn add(&self, def: ViewDef, runtime: Rc<ViewRuntime>, columns: Vec<(String, DataType)>) {
        self.by_key.borrow_mut().insert(def.key(), runtime.clone());
        let name = def.name.clone();
        self.entries.borrow_mut().insert(name, ViewEntry { def, runtime, columns, task: None });
    }

    /// Starts the view's driver on this shard.
    pub fn start(&self, name: &str, host: Rc<dyn DataflowHost>) -> bool {
        let mut entries = self.entries.borrow_mut();
        let Some(e) = entries.get_mut(name) else { return false };
        if e.task.is_none() {
            e.task = Some(glommio::spawn_local(drive(host, e.runtime.clone())));
        }
        true
    }

    /// Stops and forgets a view on this shard (every version of it).
    pub async fn remove(&self, name: &str) -> Option<ViewDef> {
        self.remove_building(name).await;
        self.remove_retired(name).await;
        let entry = self.entries.borrow_mut().remove(name)?;
        self.checkpoints.borrow_mut().remove(name);
        self.retire_entry(entry).await
    }

    async fn retire_entry(&self, entry: ViewEntry) -> Option<ViewDef> {
        self.by_key.borrow_mut().remove(&entry.def.key());
        entry.runtime.stop();
        if let Some(t) = entry.task {
            t.await;
        }
        entry.runtime.release_state().await;
        Some(entry.def)
    }

    /// Registers a version being rebuilt (not started).
    pub fn add_building(&self, def: ViewDef, runtime: Rc<ViewRuntime>, columns: Vec<(String, DataType)>) {
        self.by_key.borrow_mut().insert(def.key(), runtime.clone());
        let name = def.name.clone();
        self.building.borrow_mut().insert(name, ViewEntry { def, runtime, columns, task: None });
    }

    /// Starts the building version's driver in the replay task queue.
    pub fn start_building(&self, name: &str, host: Rc<dyn DataflowHost>) -> bool {
        let mut building = self.building.borrow_mut();
        let Some(e) = building.get_mut(name) else { return false };
        if e.task.is_none() {
            e.task = Some(crate::runtime::spawn_replay(drive(host, e.runtime.clone())));
        }
        true
    }

    /// Stops and forgets the building version (a cancelled or failed rebuild).
    pub async fn remove_building(&self, name: &str) {
        let entry = self.building.borrow_mut().remove(name);
        if let Some(entry) = entry {
            self.retire_entry(entry).await;
        }
    }

    /// The building version serves from now on; the old one is retired (stopped, its
    /// state kept for reads under way). Its driver moves to the live task queue.
    pub async fn promote(&self, name: &str, host: Rc<dyn DataflowHost>) -> bool {
        let Some(mut new) = self.building.borrow_mut().remove(name) else { return false };
        // The driver was in the replay queue: stop it and start it again (from where it
        // stands: its state and positions are in the runtime) in the live queue.
        new.runtime.pause_driver();
        if let Some(t) = new.task.take() {
            t.await;
        }
        new.runtime.unpause_driver();
        // Serving now: no rate limit, and its changes go to the changelog from here on.
        new.runtime.rate_limit_bytes_per_s.set(0);
        new.runtime.replaying.set(false);
        new.task = Some(glommio::spawn_local(drive(host, new.runtime.clone())));
        let old = self.entries.borrow_mut().insert(name.to_string(), new);
        if let Some(old) = old {
            old.runtime.stop();
            self.retired.borrow_mut().insert(name.to_string(), old);
        }
        // The new version numbers its checkpoints afresh; the count of completed ones
        // goes on (a counter in /metrics must not go back).
        if let Some(p) = self.checkpoints.borrow_mut().get_mut(name) {
            *p = CheckpointProgress { completed: p.completed, last_duration: p.last_duration, ..Default::default() };
        }
        true
    }

    /// Drops the retired version (every shard has switched).
    pub async fn remove_retired(&self, name: &str) {
        let entry = self.retired.borrow_mut().remove(name);
        if let Some(entry) = entry {
            self.retire_entry(entry).await;
        }
    }

    /// The building version of a view.
    pub fn get_building(&self, name: &str) -> Option<(ViewDef, Rc<ViewRuntime>)> {
        self.building.borrow().get(name).map(|e| (e.def.clone(), e.runtime.clone()))
    }

    /// A given version of a view (serving, retired or building).
    pub fn get_version(&self, name: &str, version: u32) -> Option<Rc<ViewRuntime>> {
        [&self.entries, &self.retired, &self.building]
            .iter()
            .find_map(|m| m.borrow().get(name).filter(|e| e.def.version == version).map(|e| e.runtime.clone()))
    }

    pub fn last_id(&self) -> u64 {
        self.last_id.get()
    }

    pub fn set_last_id(&self, id: u64) {
        self.last_id.set(self.last_id.get().max(id));
    }

    /// Continues checkpoint numbering after a restored checkpoint.
    pub fn set_checkpoint_id(&self, name: &str, id: u64) {
        let mut c = self.checkpoints.borrow_mut();
        let p = c.entry(name.to_string()).or_default();
        p.last_id = p.last_id.max(id);
    }

    pub fn next_checkpoint_id(&self, name: &str) -> u64 {
        let mut c = self.checkpoints.borrow_mut();
        let p = c.entry(name.to_string()).or_default();
        p.last_id += 1;
        p.last_id
    }

    pub fn begin_checkpoint(&self, name: &str, id: u64) {
        let round = CheckpointRound { id, captured: 0, written: 0, ok: true };
        self.checkpoints.borrow_mut().entry(name.to_string()).or_default().in_progress = Some(round);
    }

    /// A shard reports a step of its part of checkpoint `id`.
    pub fn checkpoint_step(&self, name: &str, id: u64, step: CheckpointStep) {
        if let Some(round) = self.checkpoints.borrow_mut().get_mut(name).and_then(|p| p.in_progress.as_mut()) {
            if round.id == id {
                match step {
                    CheckpointStep::Captured => round.captured += 1,
                    CheckpointStep::Written { ok } => {
                        round.written += 1;
                        round.ok &= ok;
                    }
                }
            }
        }
        self.checkpoint_event.notify(usize::MAX);
    }

    /// Waits until `shards` shards have taken their snapshot of checkpoint `id`.
    pub async fn wait_captured(&self, name: &str, id: u64, shards: usize, timeout: std::time::Duration) -> bool {
        self.wait_round(name, id, timeout, |r| (r.captured >= shards).then_some(true)).await
    }

    /// Waits until `shards` shards have written their state of checkpoint `id` (true if
    /// all succeeded).
    pub async fn wait_written(&self, name: &str, id: u64, shards: usize, timeout: std::time::Duration) -> bool {
        self.wait_round(name, id, timeout, |r| (r.written >= shards).then_some(r.ok)).await
    }

    /// Waits until `done` says how checkpoint `id` ended; false past `timeout` or when
    /// another checkpoint took its place.
    async fn wait_round(
        &self,
        name: &str,
        id: u64,
        timeout: std::time::Duration,
        done: impl Fn(&CheckpointRound) -> Option<bool>,
    ) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let status = self.checkpoints.borrow().get(name).and_then(|p| p.in_progress).filter(|r| r.id == id);
            let Some(round) = status else { return false };
            if let Some(ok) = done(&round) {
                return ok;
            }
            let l = self.checkpoint_event.listen();
            let now = std::time::Instant::now();
            if now >= deadline {
                return false;
            }
            let _ = glommio::timer::timeout(deadline - now, async {
                l.await;
                Ok(())
            })
            .await;
        }
    }

    pub fn record_checkpoint(&self, name: &str, took: std::time::Duration) {
        if let Some(p) = self.checkpoints.borrow_mut().get_mut(name) {
            p.in_progress = None;
            p.completed += 1;
            p.last_duration = Some(took);
        }
    }

    pub fn checkpoint_progress(&self, name: &str) -> Option<CheckpointProgress> {
        self.checkpoints.borrow().get(name).cloned()
    }

    /// Tells every view's driver to stop (without waiting for it).
    pub fn signal_stop_all(&self) {
        for m in [&self.entries, &self.building, &self.retired] {
            for e in m.borrow().values() {
                e.runtime.stop();
            }
        }
    }

    /// Stops every view (shutdown).
    pub async fn stop_all(&self) {
        let names: Vec<String> = self.entries.borrow().keys().cloned().collect();
        for n in names {
            self.remove(&n).await;
        }
    }

    pub fn get(&self, name: &str) -> Option<(ViewDef, Rc<ViewRuntime>, Vec<(String, DataType)>)> {
        self.entries.borrow().get(name).map(|e| (e.def.clone(), e.runtime.clone(), e.columns.clone()))
    }

    pub fn runtime(&self, key: ViewKey) -> Option<Rc<ViewRuntime>> {
        self.by_key.borrow().get(&key).cloned()
    }

    /// A view that reads `topic` or writes its changes to it.
    pub fn dependent_of(&self, topic: &str) -> Option<String> {
        self.entries
            .borrow()
            .values()
            .find(|e| {
                e.runtime.plan.topics().contains(&topic) || e.runtime.plan.options.changelog.as_deref() == Some(topic)
            })
            .map(|e| e.def.name.clone())
    }

    pub fn defs(&self) -> Vec<ViewDef> {
        self.entries.borrow().values().map(|e| e.def.clone()).collect()
    }

    pub fn runtimes(&self) -> Vec<Rc<ViewRuntime>> {
        self.entries.borrow().values().map(|e| e.runtime.clone()).collect()
    }
}
