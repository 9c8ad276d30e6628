//! Rebuilding a view: `ALTER MATERIALIZED VIEW v REBUILD [FROM ...]` builds version n+1
//! with the same plan and the same operators (`dataflow::runtime::drive`), reading the
//! log from the given start in the replay task queue, while version n serves. The
//! coordinator watches its progress; once the new version has read, on every shard, at
//! least as far as the serving one, it makes the new definition durable, promotes the
//! new version on every shard and drops the old. Reads pick a version when they begin,
//! so a switch never mixes versions in one result.
//!
//! A rebuild survives a restart: `rebuild.meta` names it, and the restored view starts
//! it again from its start. Cancelling removes the new version and the file.

use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::channel::oneshot;

use super::node::{Node, ShardRequest, COORDINATOR};
use super::views::{ShardHost, ViewRequest};
use crate::dataflow::plan::StartFrom;
use crate::dataflow::runtime::DataflowHost;
use crate::log::{Offset, PartitionReader};
use crate::sql::error::{sqlstate, SqlError};
use crate::view::catalog::{self, RebuildRecord, ViewDef};
use crate::view::rebuild::{RebuildPhase, RebuildProgress};

/// What one shard is asked about a rebuild (or, on the coordinator, to do).
#[derive(Debug, Clone)]
pub enum RebuildOp {
    /// To the coordinator.
    Start { from: StartFrom, rate_limit_bytes_per_s: u64 },
    /// To the coordinator.
    Cancel,
    /// To the coordinator: the progress of the running (or last) rebuild.
    Progress,
    /// This shard's part of the progress.
    Status,
    /// The building version serves from now on.
    Promote,
    /// The old version goes.
    DropRetired,
    /// The building version goes.
    RemoveBuilding,
    /// What rebuilding from `from` would read on this shard.
    Explain { from: StartFrom },
}

/// A shard's answer.
#[derive(Debug, Clone, Default)]
pub struct RebuildReply {
    /// Start: the version being built.
    pub version: u32,
    /// Status: whether this shard has a building version, and how far it is.
    pub building: bool,
    pub events_done: u64,
    pub events_total: u64,
    pub bytes_read: u64,
    /// Every partition of the building version is at least where the serving one is.
    pub ready: bool,
    /// Explain.
    pub partitions: u32,
    pub bytes_to_read: u64,
    pub read_rate_bytes_per_s: f64,
    pub progress: Option<RebuildProgress>,
}

/// `EXPLAIN REBUILD`: what a rebuild would cost, before anything runs.
#[derive(Debug, Clone)]
pub struct RebuildEstimate {
    pub version: u32,
    pub from: StartFrom,
    pub partitions: u32,
    pub events: u64,
    pub bytes: u64,
    pub read_rate_bytes_per_s: f64,
    pub seconds: f64,
    pub state_rows: u64,
    pub state_bytes: u64,
}

fn no_view(name: &str) -> SqlError {
    SqlError::new(sqlstate::UNDEFINED_TABLE, format!("materialized view \"{name}\" does not exist"))
}

impl Node {
    /// Sends a rebuild request to the coordinator (or runs it here on the coordinator).
    async fn to_coordinator(self: &Rc<Self>, name: &str, op: RebuildOp) -> Result<RebuildReply, SqlError> {
        self.on_shard(COORDINATOR, name, op).await
    }

    async fn on_shard(self: &Rc<Self>, shard: usize, name: &str, op: RebuildOp) -> Result<RebuildReply, SqlError> {
        if shard == self.shard.index {
            // Boxed: a local request may start others (a start removes what it installed).
            return Box::pin(self.rebuild_local(name, op)).await;
        }
        let (tx, rx) = oneshot::channel();
        let request = ViewRequest::Rebuild { name: name.to_string(), op, reply: tx };
        self.peers
            .send_to(shard, ShardRequest::View(request))
            .await
            .map_err(|_| SqlError::from(super::node::gone()))?;
        rx.await.unwrap_or_else(|_| Err(SqlError::from(super::node::gone())))
    }

    /// Starts rebuilding a view; returns the version being built.
    pub async fn rebuild_view(
        self: &Rc<Self>,
        name: &str,
        from: StartFrom,
        rate_limit_bytes_per_s: u64,
    ) -> Result<u32, SqlError> {
        Ok(self.to_coordinator(name, RebuildOp::Start { from, rate_limit_bytes_per_s }).await?.version)
    }

    pub async fn cancel_rebuild(self: &Rc<Self>, name: &str) -> Result<(), SqlError> {
        self.to_coordinator(name, RebuildOp::Cancel).await.map(|_| ())
    }

    /// The running (or last) rebuild of a view.
    pub async fn rebuild_progress(self: &Rc<Self>, name: &str) -> Result<Option<RebuildProgress>, SqlError> {
        Ok(self.to_coordinator(name, RebuildOp::Progress).await?.progress)
    }

    /// Every view's running or last rebuild (from the coordinator).
    pub async fn rebuilds(self: &Rc<Self>) -> Vec<RebuildProgress> {
        let names: Vec<String> = self.views.defs().into_iter().map(|d| d.name).collect();
        let mut out = Vec::new();
        for n in names {
            if let Ok(Some(p)) = self.rebuild_progress(&n).await {
                out.push(p);
            }
        }
        out
    }

    /// What rebuilding `name` from `from` would read and take, from every shard's
    /// partitions and a short sequential-read probe of the log.
    pub async fn explain_rebuild(self: &Rc<Self>, name: &str, from: StartFrom) -> Result<RebuildEstimate, SqlError> {
        let (def, _, _) = self.views.get(name).ok_or_else(|| no_view(name))?;
        let mut e = RebuildEstimate {
            version: def.version.saturating_add(1),
            from,
            partitions: 0,
            events: 0,
            bytes: 0,
            read_rate_bytes_per_s: 0.0,
            seconds: 0.0,
            state_rows: 0,
            state_bytes: 0,
        };
        for shard in 0..self.shard.count {
            let r = self.on_shard(shard, name, RebuildOp::Explain { from }).await?;
            e.partitions += r.partitions;
            e.events += r.events_total;
            e.bytes += r.bytes_to_read;
            // Shards read their partitions side by side.
            e.read_rate_bytes_per_s += r.read_rate_bytes_per_s;
        }
        if e.read_rate_bytes_per_s > 0.0 {
            e.seconds = e.bytes as f64 / e.read_rate_bytes_per_s;
        }
        // The state grows with the history read: the serving version's, scaled by the
        // share of the events it holds that the rebuild reads again.
        let stats = self.view_stats(name).await?;
        let share = if stats.events == 0 { 1.0 } else { (e.events as f64 / stats.events as f64).min(1.0) };
        e.state_rows = (stats.rows as f64 * share) as u64;
        e.state_bytes = (stats.bytes as f64 * share) as u64;
        Ok(e)
    }

    /// Starts a rebuild found in `rebuild.meta` again (the coordinator, at startup).
    pub(super) async fn resume_rebuild(self: &Rc<Self>, def: &ViewDef) {
        let (storage, dir) = (self.log.storage(), self.log.data_dir());
        let record = match catalog::read_rebuild(storage, dir, &def.name).await {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(view = %def.name, error = %e, "the rebuild record is unreadable; the rebuild is abandoned");
                let _ = catalog::remove_rebuild(storage, dir, &def.name).await;
                return;
            }
        };
        if record.version <= def.version || record.version - def.version > catalog::REBUILD_VERSION_AHEAD_MAX {
            // It finished (the definition moved on) or belongs to another life of the view.
            let _ = catalog::remove_rebuild(storage, dir, &def.name).await;
            return;
        }
        tracing::info!(view = %def.name, version = record.version, from = %record.from, "the rebuild resumes from its start");
        if let Err(e) = self.begin_rebuild(def, record).await {
            tracing::warn!(view = %def.name, error = %e.message, "the rebuild could not resume; the serving version stays");
            let _ = catalog::remove_rebuild(storage, dir, &def.name).await;
        }
    }

    /// Installs the building version everywhere and starts watching it (coordinator).
    async fn begin_rebuild(self: &Rc<Self>, def: &ViewDef, record: RebuildRecord) -> Result<u32, SqlError> {
        let next = ViewDef { version: record.version, from: Some(record.from), ..def.clone() };
        if let Err(e) = self.install_view(&next, true, record.rate_limit_bytes_per_s).await {
            self.remove_building_everywhere(&def.name).await;
            return Err(SqlError::from(e));
        }
        self.views.rebuilds.borrow_mut().insert(
            def.name.clone(),
            RebuildProgress {
                view: def.name.clone(),
                version: next.version,
                from: record.from.to_string(),
                phase: RebuildPhase::Building,
                events_done: 0,
                events_total: 0,
                bytes_read: 0,
                elapsed_ms: 0,
                events_per_s: 0.0,
                bytes_per_s: 0.0,
                eta_s: None,
                rate_limit_bytes_per_s: record.rate_limit_bytes_per_s,
            },
        );
        tracing::info!(view = %def.name, version = next.version, from = %record.from, "rebuild started");
        glommio::spawn_local(self.clone().watch_rebuild(next.clone())).detach();
        Ok(next.version)
    }

    async fn remove_building_everywhere(self: &Rc<Self>, name: &str) {
        for shard in 0..self.shard.count {
            let _ = self.on_shard(shard, name, RebuildOp::RemoveBuilding).await;
        }
    }

    fn set_phase(&self, name: &str, phase: RebuildPhase) {
        if let Some(p) = self.views.rebuilds.borrow_mut().get_mut(name) {
            p.phase = phase;
        }
    }

    /// Follows a rebuild until it can switch (then switches), is cancelled, or the
    /// view goes (coordinator).
    async fn watch_rebuild(self: Rc<Self>, def: ViewDef) {
        let started = Instant::now();
        loop {
            if self.sleep_unless_stopped(crate::limits::REBUILD_POLL_MS).await {
                // rebuild.meta stays: the next start resumes the rebuild.
                return;
            }
            let (mut done, mut total, mut bytes, mut ready, mut building) = (0, 0, 0, true, true);
            for shard in 0..self.shard.count {
                match self.on_shard(shard, &def.name, RebuildOp::Status).await {
                    Ok(r) => {
                        building &= r.building && r.version == def.version;
                        ready &= r.ready;
                        done += r.events_done;
                        total += r.events_total;
                        bytes += r.bytes_read;
                    }
                    Err(_) => building = false,
                }
            }
            // The same view (a dropped and re-created one has a new id, and its rebuild
            // may reuse this version number), not yet switched.
            let still_this =
                self.views.get(&def.name).is_some_and(|(d, _, _)| d.id == def.id && d.version < def.version);
            if !building || !still_this {
                // Cancelled or dropped meanwhile (they set the phase themselves); a newer
                // rebuild's entry is not this watcher's to mark.
                let mut rebuilds = self.views.rebuilds.borrow_mut();
                if let Some(p) = rebuilds
                    .get_mut(&def.name)
                    .filter(|p| p.phase == RebuildPhase::Building && p.version == def.version)
                {
                    p.phase = RebuildPhase::Failed;
                }
                return;
            }
            {
                let secs = started.elapsed().as_secs_f64().max(1e-3);
                let mut rebuilds = self.views.rebuilds.borrow_mut();
                if let Some(p) = rebuilds.get_mut(&def.name) {
                    p.events_done = done;
                    p.events_total = total;
                    p.bytes_read = bytes;
                    p.elapsed_ms = started.elapsed().as_millis() as u64;
                    p.events_per_s = done as f64 / secs;
                    p.bytes_per_s = bytes as f64 / secs;
                    p.eta_s = (done > 0).then(|| total.saturating_sub(done) as f64 / (done as f64 / secs));
                }
            }
            if ready {
                match self.switch_version(&def).await {
                    Ok(true) => {
                        tracing::info!(view = %def.name, version = def.version, elapsed_ms = started.elapsed().as_millis() as u64, "rebuild complete: the new version serves");
                        self.checkpoint_view(&def).await;
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!(view = %def.name, error = %e.message, "switching to the rebuilt version failed; the old version serves");
                        self.remove_building_everywhere(&def.name).await;
                        let _ = catalog::remove_rebuild(self.log.storage(), self.log.data_dir(), &def.name).await;
                        self.set_phase(&def.name, RebuildPhase::Failed);
                    }
                }
                return;
            }
        }
    }

    /// Makes the new definition durable, then promotes the new version on every shard
    /// and drops the old. `Ok(false)`: the rebuild went meanwhile.
    async fn switch_version(self: &Rc<Self>, def: &ViewDef) -> Result<bool, SqlError> {
        let _permit = self.catalog_lock.acquire_permit(1).await.map_err(|_| SqlError::from(super::node::gone()))?;
        if self.views.get_building(&def.name).is_none_or(|(d, _)| d.version != def.version || d.id != def.id) {
            return Ok(false);
        }
        let (storage, dir) = (self.log.storage(), self.log.data_dir());
        // The switch point: from here a restart serves the new version.
        catalog::write_def(storage, dir, def).await.map_err(|e| SqlError::new(sqlstate::IO_ERROR, e.to_string()))?;
        for shard in 0..self.shard.count {
            self.on_shard(shard, &def.name, RebuildOp::Promote).await?;
        }
        if let Err(e) = catalog::remove_rebuild(storage, dir, &def.name).await {
            tracing::warn!(view = %def.name, error = %e, "removing the rebuild record failed");
        }
        for shard in 0..self.shard.count {
            self.on_shard(shard, &def.name, RebuildOp::DropRetired).await?;
        }
        if let Some(p) = self.views.rebuilds.borrow_mut().get_mut(&def.name) {
            p.phase = RebuildPhase::Done;
            p.events_done = p.events_done.max(p.events_total);
            p.eta_s = Some(0.0);
        }
        Ok(true)
    }

    /// One shard's part of a rebuild request (`Start`, `Cancel`, `Progress`: the
    /// coordinator's).
    pub(super) async fn rebuild_local(self: &Rc<Self>, name: &str, op: RebuildOp) -> Result<RebuildReply, SqlError> {
        let mut reply = RebuildReply::default();
        match op {
            RebuildOp::Start { from, rate_limit_bytes_per_s } => {
                let _permit =
                    self.catalog_lock.acquire_permit(1).await.map_err(|_| SqlError::from(super::node::gone()))?;
                let (def, _, _) = self.views.get(name).ok_or_else(|| no_view(name))?;
                if let Some((b, _)) = self.views.get_building(name) {
                    return Err(SqlError::new(
                        sqlstate::OBJECT_IN_USE,
                        format!(
                            "materialized view \"{name}\" is already being rebuilt (version {}); \
                             ALTER MATERIALIZED VIEW {name} CANCEL REBUILD first",
                            b.version
                        ),
                    ));
                }
                // A cancelled attempt's number is not used again: its messages and its
                // watcher may still be about, and they go by version.
                let last_try = self.views.rebuilds.borrow().get(name).map_or(0, |p| p.version);
                let record = RebuildRecord {
                    version: def.version.saturating_add(1).max(last_try.saturating_add(1)),
                    from,
                    rate_limit_bytes_per_s,
                    started_ms: crate::clock::now_ms(),
                };
                let (storage, dir) = (self.log.storage(), self.log.data_dir());
                catalog::write_rebuild(storage, dir, name, &record)
                    .await
                    .map_err(|e| SqlError::new(sqlstate::IO_ERROR, e.to_string()))?;
                match self.begin_rebuild(&def, record).await {
                    Ok(v) => reply.version = v,
                    Err(e) => {
                        let _ = catalog::remove_rebuild(storage, dir, name).await;
                        return Err(e);
                    }
                }
            }
            RebuildOp::Cancel => {
                let _permit =
                    self.catalog_lock.acquire_permit(1).await.map_err(|_| SqlError::from(super::node::gone()))?;
                if self.views.get(name).is_none() {
                    return Err(no_view(name));
                }
                if self.views.get_building(name).is_none() {
                    return Err(SqlError::new(
                        sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
                        format!("materialized view \"{name}\" is not being rebuilt"),
                    ));
                }
                self.remove_building_everywhere(name).await;
                let _ = catalog::remove_rebuild(self.log.storage(), self.log.data_dir(), name).await;
                self.set_phase(name, RebuildPhase::Cancelled);
                tracing::info!(view = name, "rebuild cancelled; the serving version stays");
            }
            RebuildOp::Progress => {
                if self.views.get(name).is_none() {
                    return Err(no_view(name));
                }
                reply.progress = self.views.rebuilds.borrow().get(name).cloned();
            }
            RebuildOp::Status => {
                let Some((b, new)) = self.views.get_building(name) else { return Ok(reply) };
                reply.building = true;
                reply.version = b.version;
                reply.bytes_read = new.metrics.bytes_read.get();
                let serving = self.views.get(name).map(|(_, rt, _)| rt.positions()).unwrap_or_default();
                reply.ready = new.plan.table_join.is_none() || new.table_ready();
                for (topic, p, at) in new.positions() {
                    let start = new.started_at.iter().find(|(t, q, _)| *t == topic && *q == p).map_or(at, |s| s.2);
                    let end = self.log.partition(&topic, p).map_or(at, |part| part.offsets().visible_end());
                    reply.events_done += at.0.saturating_sub(start.0);
                    reply.events_total += end.0.max(at.0).saturating_sub(start.0);
                    let old = serving.iter().find(|(t, q, _)| *t == topic && *q == p).map_or(Offset(0), |s| s.2);
                    reply.ready &= at >= old;
                }
            }
            RebuildOp::Promote => {
                let host: Rc<dyn DataflowHost> = Rc::new(ShardHost { node: self.clone() });
                self.views.promote(name, host).await;
            }
            RebuildOp::DropRetired => self.views.remove_retired(name).await,
            RebuildOp::RemoveBuilding => self.views.remove_building(name).await,
            RebuildOp::Explain { from } => {
                let (_, rt, _) = self.views.get(name).ok_or_else(|| no_view(name))?;
                let starts = self.start_offsets(&rt.plan, from).await;
                let mut probe_from = None;
                for (topic, p, start) in &starts {
                    let Ok(part) = self.log.partition(topic, *p) else { continue };
                    let status = part.status();
                    let events = status.visible_end.0.saturating_sub(start.0);
                    let retained = status.visible_end.0.saturating_sub(status.log_start.0).max(1);
                    reply.partitions += 1;
                    reply.events_total += events;
                    reply.bytes_to_read += (status.bytes as u128 * events as u128 / retained as u128) as u64;
                    if events > 0 && probe_from.is_none() {
                        probe_from = Some((part, *start));
                    }
                }
                if let Some((part, start)) = probe_from {
                    reply.read_rate_bytes_per_s = read_rate_probe(part, start).await;
                }
            }
        }
        Ok(reply)
    }
}

/// Reads a partition sequentially from `start` for a moment, as a replay would (large
/// direct reads, CRC checked): bytes per second.
async fn read_rate_probe(part: crate::log::Partition, start: Offset) -> f64 {
    let mut reader = PartitionReader::new(part, start);
    let began = Instant::now();
    let limit = Duration::from_millis(crate::limits::READ_RATE_PROBE_MS);
    let mut bytes = 0u64;
    while began.elapsed() < limit {
        match reader.next_batch().await {
            Ok(Some(batch)) => bytes += batch.payload().len() as u64,
            _ => break,
        }
    }
    bytes as f64 / began.elapsed().as_secs_f64().max(1e-6)
}
