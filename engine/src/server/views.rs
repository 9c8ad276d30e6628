//! Materialized views across shards: creating and dropping them (serialised on the
//! coordinator, like topics), starting them on every shard, reading them (a lookup asks
//! the shard owning the key; a scan asks every shard), and the host the dataflow runs on.
//!
//! A view is registered on every shard before it starts on any, so no shard receives
//! exchange messages for a view it does not know. Nothing is half-created: a failure on
//! any shard removes the view everywhere, and its definition.

use std::rc::Rc;

use futures::channel::oneshot;
use glommio::channels::shared_channel::ConnectedReceiver;

use super::native::protocol::{ApiError, ErrorCode};
use super::node::{gone, Node, Reply, ShardRequest, COORDINATOR};
use crate::dataflow::exchange::DataMsg;
use crate::dataflow::plan::ViewPlan;
use crate::dataflow::runtime::{on_message, DataflowHost, LocalFuture, ViewRuntime, SECOND_MESH_BIT};
use crate::log::{Offset, Partition, TopicConfig};
use crate::record::BatchPayload;
use crate::runtime::{ShardId, ShardSender};
use crate::sql::error::{sqlstate, SqlError};
use crate::sql::parse::Stmt;
use crate::sql::plan_view::{plan_view, view_options, Catalog, PlannedView};
use crate::sql::types::{DataType, OwnedDatum};
use crate::view::catalog::{self, ViewDef};
use crate::view::checkpoint::{self, CheckpointMeta, ShardState};
use crate::view::manager::CheckpointStep;
use crate::view::read::{read_rows, state_size, ReadRequest};

/// The two exchanges between shards (see `dataflow::exchange`).
pub struct DataMeshes {
    pub first: ShardSender<DataMsg>,
    pub second: ShardSender<DataMsg>,
}

/// How big a view is on one shard, and what it counted.
#[derive(Debug, Clone, Default)]
pub struct ViewShardStats {
    pub rows: u64,
    pub keys: u64,
    pub bytes: u64,
    pub events: u64,
    pub late_dropped: u64,
    pub watermark_ms: i64,
}

/// Requests between shards about views.
pub enum ViewRequest {
    /// To the coordinator.
    Create {
        name: String,
        sql: String,
        if_not_exists: bool,
        reply: oneshot::Sender<Result<bool, SqlError>>,
    },
    /// To the coordinator.
    Drop {
        name: String,
        if_exists: bool,
        reply: oneshot::Sender<Result<bool, SqlError>>,
    },
    /// From the coordinator: plan the view and register it (not started); `building`: as
    /// the version a rebuild makes, reading at most `rate_limit_bytes_per_s` on this shard.
    Add {
        def: ViewDef,
        building: bool,
        rate_limit_bytes_per_s: u64,
        reply: Reply<()>,
    },
    /// From the coordinator: start its driver.
    Start {
        name: String,
        building: bool,
        reply: Reply<()>,
    },
    /// From the coordinator: stop and forget it.
    Remove {
        name: String,
        reply: Reply<()>,
    },
    /// Rows of the given version of the view (the one the query began with).
    Read {
        name: String,
        version: u32,
        request: ReadRequest,
        /// `None`: the shard no longer has that version (the read starts again).
        reply: Reply<Option<Vec<Vec<OwnedDatum>>>>,
    },
    /// From the coordinator, about a rebuild.
    Rebuild {
        name: String,
        op: super::rebuild::RebuildOp,
        reply: oneshot::Sender<Result<super::rebuild::RebuildReply, SqlError>>,
    },
    Stats {
        name: String,
        reply: Reply<ViewShardStats>,
    },
    /// From the coordinator: send barriers for checkpoint `id`.
    BeginCheckpoint {
        name: String,
        id: u64,
        reply: Reply<()>,
    },
    /// To the coordinator: this shard's part of checkpoint `id` is taken, or durable (or
    /// failed).
    CheckpointStep {
        name: String,
        id: u64,
        step: CheckpointStep,
        reply: Reply<()>,
    },
    /// From the coordinator: go on after checkpoint `id`.
    Resume {
        name: String,
        id: u64,
        reply: Reply<()>,
    },
}

/// The catalog as the SQL planner sees it from this shard.
pub struct NodeCatalog<'a>(pub &'a Node);

impl Catalog for NodeCatalog<'_> {
    fn topic(&self, name: &str) -> Option<Rc<TopicConfig>> {
        self.0.log.topic(name)
    }

    fn view(&self, name: &str) -> Option<(Vec<(String, DataType)>, Rc<ViewPlan>)> {
        self.0.views.get(name).map(|(_, rt, columns)| (columns, rt.plan.clone()))
    }
}

/// What a view's dataflow uses of its shard.
pub struct ShardHost {
    pub node: Rc<Node>,
}

impl DataflowHost for ShardHost {
    fn shard(&self) -> ShardId {
        self.node.shard
    }

    fn topic(&self, name: &str) -> Option<Rc<TopicConfig>> {
        self.node.log.topic(name)
    }

    fn local_partition(&self, topic: &str, partition: u32) -> Option<Partition> {
        self.node.log.partition(topic, partition).ok()
    }

    fn append(&self, topic: String, partition: u32, payload: BatchPayload) -> LocalFuture<'_, Result<(), String>> {
        Box::pin(
            async move { self.node.produce(&topic, partition, payload).await.map(|_| ()).map_err(|e| e.to_string()) },
        )
    }

    fn send(&self, to: usize, msg: DataMsg) -> LocalFuture<'_, Result<(), ()>> {
        Box::pin(async move {
            let sender = {
                let data = self.node.data.borrow();
                let Some(d) = data.as_ref() else { return Err(()) };
                if msg.view & SECOND_MESH_BIT != 0 {
                    d.second.clone()
                } else {
                    d.first.clone()
                }
            };
            sender.send_to(to, msg).await
        })
    }

    fn stopped(&self) -> LocalFuture<'_, ()> {
        Box::pin(self.node.stopped())
    }

    fn checkpoint<'a>(&'a self, rt: &'a Rc<ViewRuntime>, state: ShardState) -> LocalFuture<'a, ()> {
        Box::pin(async move {
            let node = self.node.clone();
            let (name, id) = (rt.name.clone(), state.id);
            // The state is in memory now: once every shard has taken its own, the sources
            // go on, and the disk work below no longer holds up the live view.
            node.report_checkpoint_step(name.clone(), id, CheckpointStep::Captured).await;
            glommio::spawn_local(async move {
                let mut ok = true;
                // The records the state counts must survive a crash as surely as the state.
                for s in &state.sources {
                    if let Ok(p) = node.log.partition(&s.topic, s.partition) {
                        if let Err(e) = p.sync_to(s.next).await {
                            tracing::warn!(view = %name, error = %e, "syncing a source for a checkpoint failed");
                            ok = false;
                        }
                    }
                }
                if ok {
                    if let Err(e) =
                        checkpoint::write_shard_state(node.log.storage(), node.log.data_dir(), &name, state).await
                    {
                        tracing::warn!(view = %name, error = %e, "writing a checkpoint failed");
                        ok = false;
                    }
                }
                node.report_checkpoint_step(name, id, CheckpointStep::Written { ok }).await;
            })
            .detach();
        })
    }
}

impl Node {
    /// Tells the coordinator how this shard's part of checkpoint `id` stands.
    async fn report_checkpoint_step(self: &Rc<Self>, name: String, id: u64, step: CheckpointStep) {
        if self.shard.index == COORDINATOR {
            self.views.checkpoint_step(&name, id, step);
        } else {
            let _ = self
                .ask(COORDINATOR, |reply| ShardRequest::View(ViewRequest::CheckpointStep { name, id, step, reply }))
                .await;
        }
    }
}

/// Serves the exchange messages one peer shard sends on one mesh, in order.
pub async fn serve_data_queue(node: Rc<Node>, from: ConnectedReceiver<DataMsg>) {
    let host = ShardHost { node: node.clone() };
    while let Some(msg) = from.recv().await {
        let key = msg.view & !SECOND_MESH_BIT;
        // A view dropped meanwhile: its messages go nowhere.
        if let Some(rt) = node.views.runtime(key) {
            on_message(&host, &rt, msg.from, msg.body).await;
        }
    }
}

fn sql_error(e: ApiError) -> SqlError {
    SqlError::from(e)
}

/// Parses and plans a view's definition against this shard's catalog.
fn plan_def(node: &Node, sql: &str) -> Result<PlannedView, SqlError> {
    let stmts = crate::sql::parse::parse(sql)?;
    let [(_, Stmt::Std(stmt))] = stmts.as_slice() else {
        return Err(SqlError::syntax("a view's definition is one CREATE MATERIALIZED VIEW statement"));
    };
    let sqlparser::ast::Statement::CreateView(cv) = stmt.as_ref() else {
        return Err(SqlError::syntax("a view's definition is one CREATE MATERIALIZED VIEW statement"));
    };
    plan_view(&NodeCatalog(node), &cv.query, view_options(&cv.options)?)
}

impl Node {
    /// Creates a materialized view (on the coordinator): checks it, makes its changelog
    /// topic if it names one that does not exist, writes its definition, registers it on
    /// every shard, then starts it everywhere. `Ok(false)`: it existed (IF NOT EXISTS).
    pub async fn create_view(self: &Rc<Self>, name: &str, sql: &str, if_not_exists: bool) -> Result<bool, SqlError> {
        if self.shard.index != COORDINATOR {
            let (tx, rx) = oneshot::channel();
            let request =
                ViewRequest::Create { name: name.to_string(), sql: sql.to_string(), if_not_exists, reply: tx };
            self.peers.send_to(COORDINATOR, ShardRequest::View(request)).await.map_err(|_| sql_error(gone()))?;
            return rx.await.unwrap_or_else(|_| Err(sql_error(gone())));
        }
        let _permit = self.catalog_lock.acquire_permit(1).await.map_err(|_| sql_error(gone()))?;
        if self.views.get(name).is_some() || self.log.topic(name).is_some() {
            if if_not_exists && self.views.get(name).is_some() {
                return Ok(false);
            }
            return Err(SqlError::new(sqlstate::DUPLICATE_TABLE, format!("relation \"{name}\" already exists")));
        }
        let planned = plan_def(self, sql)?;
        if let Some(topic) = &planned.plan.options.changelog {
            match self.log.topic(topic) {
                Some(existing) => crate::view::changelog::compatible(&existing, &planned.columns)
                    .map_err(|e| SqlError::new(sqlstate::DATATYPE_MISMATCH, e))?,
                None => {
                    let partitions = self.log.topic(&planned.plan.source.topic).map_or(1, |t| t.partitions);
                    let config = crate::view::changelog::changelog_config(
                        topic,
                        &planned.columns,
                        &planned.plan.key,
                        partitions,
                    );
                    self.create_topic_locked(config).await.map_err(sql_error)?;
                }
            }
        }
        if let crate::dataflow::plan::LatePolicy::Side(topic) = &planned.plan.options.late {
            if self.log.topic(topic).is_none() {
                let config = TopicConfig::new(topic, 1);
                self.create_topic_locked(config).await.map_err(sql_error)?;
            }
        }
        // Never an id used before, across restarts too (dropped views leave no trace, and a
        // crash during a DROP can leave its checkpoint behind): at least the clock in ms,
        // which keeps `ViewDef::key` (id << 16 | version) within 64 bits until year 6429.
        let id = self.views.defs().iter().map(|d| d.id).max().unwrap_or(0).max(self.views.last_id()) + 1;
        let id = id.max(crate::clock::now_ms().max(0) as u64);
        self.views.set_last_id(id);
        let def = ViewDef {
            name: name.to_string(),
            id,
            version: 1,
            sql: sql.to_string(),
            created_ms: crate::clock::now_ms(),
            from: None,
        };
        catalog::write_def(self.log.storage(), self.log.data_dir(), &def)
            .await
            .map_err(|e| SqlError::new(sqlstate::IO_ERROR, e.to_string()))?;
        if let Err(e) = self.install_view(&def, false, 0).await {
            let _ = self.remove_view_everywhere(name).await;
            let _ = catalog::remove(self.log.storage(), self.log.data_dir(), name).await;
            return Err(sql_error(e));
        }
        tracing::info!(view = name, id, "materialized view created");
        Ok(true)
    }

    /// Registers a view (or, `building`, the version a rebuild makes) on every shard,
    /// then starts it on every shard. `rate_limit_bytes_per_s` is the whole rebuild's.
    pub(super) async fn install_view(
        self: &Rc<Self>,
        def: &ViewDef,
        building: bool,
        rate_limit_bytes_per_s: u64,
    ) -> Result<(), ApiError> {
        let rate = rate_limit_bytes_per_s.div_ceil(self.shard.count as u64);
        for shard in 0..self.shard.count {
            if shard == self.shard.index {
                self.add_view_local(def.clone(), building, rate).await?;
            } else {
                let def = def.clone();
                self.ask(shard, |reply| {
                    ShardRequest::View(ViewRequest::Add { def, building, rate_limit_bytes_per_s: rate, reply })
                })
                .await?;
            }
        }
        for shard in 0..self.shard.count {
            if shard == self.shard.index {
                self.start_view_local(&def.name, building);
            } else {
                let name = def.name.clone();
                self.ask(shard, |reply| ShardRequest::View(ViewRequest::Start { name, building, reply })).await?;
            }
        }
        Ok(())
    }

    async fn remove_view_everywhere(self: &Rc<Self>, name: &str) -> Result<(), ApiError> {
        for shard in 0..self.shard.count {
            if shard == self.shard.index {
                self.views.remove(name).await;
            } else {
                let name = name.to_string();
                self.ask(shard, |reply| ShardRequest::View(ViewRequest::Remove { name, reply })).await?;
            }
        }
        Ok(())
    }

    /// Drops a view (on the coordinator): stops it everywhere, then removes its
    /// definition and state. The topics it read and wrote stay.
    pub async fn drop_view(self: &Rc<Self>, name: &str, if_exists: bool) -> Result<bool, SqlError> {
        if self.shard.index != COORDINATOR {
            let (tx, rx) = oneshot::channel();
            let request = ViewRequest::Drop { name: name.to_string(), if_exists, reply: tx };
            self.peers.send_to(COORDINATOR, ShardRequest::View(request)).await.map_err(|_| sql_error(gone()))?;
            return rx.await.unwrap_or_else(|_| Err(sql_error(gone())));
        }
        let _permit = self.catalog_lock.acquire_permit(1).await.map_err(|_| sql_error(gone()))?;
        if self.views.get(name).is_none() {
            if if_exists {
                return Ok(false);
            }
            return Err(SqlError::new(
                sqlstate::UNDEFINED_TABLE,
                format!("materialized view \"{name}\" does not exist"),
            ));
        }
        self.remove_view_everywhere(name).await.map_err(sql_error)?;
        self.views.rebuilds.borrow_mut().remove(name);
        catalog::remove(self.log.storage(), self.log.data_dir(), name)
            .await
            .map_err(|e| SqlError::new(sqlstate::IO_ERROR, e.to_string()))?;
        tracing::info!(view = name, "materialized view dropped");
        Ok(true)
    }

    /// Restores every view in the data directory (the coordinator, at startup).
    pub async fn restore_views(self: &Rc<Self>) -> Result<(), String> {
        if self.shard.index != COORDINATOR {
            return Ok(());
        }
        let defs = catalog::read_defs(self.log.storage(), self.log.data_dir()).await.map_err(|e| e.to_string())?;
        for def in defs {
            self.views.set_last_id(self.views.last_id().max(def.id));
            let mut installed = self.install_view(&def, false, 0).await;
            let ahead = installed.as_ref().err().filter(|e| e.code == ErrorCode::OffsetOutOfRange);
            if let Some(message) = ahead.map(|e| e.message.clone()) {
                // The view's state counts records the log no longer holds: the log is the
                // truth, so the view is built again from it rather than going on from a
                // position the log has not reached (it would skip what is appended there).
                tracing::warn!(view = %def.name, error = %message, "the checkpoint is ahead of the log; rebuilding the view from its sources");
                let _ = self.remove_view_everywhere(&def.name).await;
                installed = match checkpoint::discard(self.log.storage(), self.log.data_dir(), &def.name).await {
                    Ok(()) => self.install_view(&def, false, 0).await,
                    Err(e) => Err(ApiError::new(ErrorCode::Io, e.to_string())),
                };
            }
            if let Err(e) = installed {
                // One broken view does not keep the others (or the log) from serving.
                tracing::error!(view = %def.name, error = %e, "the view could not be restored");
                let _ = self.remove_view_everywhere(&def.name).await;
                continue;
            }
            self.resume_rebuild(&def).await;
        }
        Ok(())
    }

    /// Plans a view from its definition and registers it on this shard: from its last
    /// complete checkpoint if there is one (state, and source offsets to go on from),
    /// else reading every source partition this shard owns from its start.
    pub async fn add_view_local(
        self: &Rc<Self>,
        def: ViewDef,
        building: bool,
        rate_limit_bytes_per_s: u64,
    ) -> Result<(), ApiError> {
        let planned = plan_def(self, &def.sql).map_err(|e| ApiError::new(ErrorCode::InvalidConfig, e.message))?;
        let host = ShardHost { node: self.clone() };
        let from = def.from.unwrap_or(planned.plan.options.start);
        let starts = self.start_offsets(&planned.plan, from).await;
        let start = |topic: &str, p: u32| -> Offset {
            starts.iter().find(|(t, q, _)| t == topic && *q == p).map_or(Offset(0), |(_, _, o)| *o)
        };
        let runtime = ViewRuntime::new(def.key(), &def.name, Rc::new(planned.plan), &host, &start)
            .map_err(|e| ApiError::new(ErrorCode::InvalidConfig, e))?;
        if building {
            runtime.rate_limit_bytes_per_s.set(rate_limit_bytes_per_s);
            runtime.replaying.set(true);
            self.views.add_building(def, Rc::new(runtime), planned.columns);
            return Ok(());
        }
        let (storage, dir) = (self.log.storage(), self.log.data_dir());
        let meta = checkpoint::read_meta(storage, dir, &def.name).await.unwrap_or_else(|e| {
            tracing::warn!(view = %def.name, error = %e, "the checkpoint manifest is unreadable; rebuilding from the sources");
            None
        });
        if let Some(meta) = meta.filter(|m| m.view_key == def.key() && m.shards as usize == self.shard.count) {
            self.views.set_checkpoint_id(&def.name, meta.id);
            match checkpoint::read_shard_state(storage, dir, &def.name, &meta, self.shard.index as u32).await {
                Ok(Some(state)) => {
                    if let Some(ahead) = self.checkpoint_ahead_of_log(&state) {
                        return Err(ApiError::new(
                            ErrorCode::OffsetOutOfRange,
                            format!("checkpoint {} of view '{}' {ahead}", meta.id, def.name),
                        ));
                    }
                    if let Err(e) = runtime.restore(&state) {
                        return Err(ApiError::new(ErrorCode::Corrupt, e));
                    }
                    tracing::info!(view = %def.name, checkpoint = meta.id, shard = self.shard.index, "view restored from its checkpoint");
                }
                Ok(None) => {
                    return Err(ApiError::new(
                        ErrorCode::Corrupt,
                        format!(
                            "checkpoint {} of view '{}' has no state for shard {}",
                            meta.id, def.name, self.shard.index
                        ),
                    ))
                }
                Err(e) => return Err(ApiError::new(ErrorCode::Corrupt, e.to_string())),
            }
        }
        self.views.add(def, Rc::new(runtime), planned.columns);
        Ok(())
    }

    /// Where a checkpoint counts records this shard's log does not have (the log was
    /// restored from an older copy, or cut by hand): says which partition and by how much.
    /// Checkpoints sync their sources first, so a crash alone never leads here.
    fn checkpoint_ahead_of_log(&self, state: &checkpoint::ShardState) -> Option<String> {
        state.sources.iter().find_map(|s| {
            let end = self.log.partition(&s.topic, s.partition).ok()?.offsets().visible_end();
            (s.next > end).then(|| {
                format!(
                    "covers {}/{} up to offset {}, but the log ends at offset {}",
                    s.topic, s.partition, s.next.0, end.0
                )
            })
        })
    }

    /// Takes a checkpoint of every view, one after another (the coordinator, forever).
    pub async fn checkpoint_loop(self: Rc<Self>, interval_ms: u64) {
        if self.shard.index != COORDINATOR || interval_ms == 0 {
            return;
        }
        loop {
            if self.sleep_unless_stopped(interval_ms).await {
                return;
            }
            for def in self.views.defs() {
                self.checkpoint_view(&def).await;
            }
        }
    }

    /// Sleeps `ms`; true if the shard began stopping meanwhile (then at once).
    pub(super) async fn sleep_unless_stopped(&self, ms: u64) -> bool {
        futures_lite::future::or(
            async {
                glommio::timer::sleep(std::time::Duration::from_millis(ms)).await;
                false
            },
            async {
                self.stopped().await;
                true
            },
        )
        .await
    }

    /// One checkpoint of one view: barriers from every shard's sources, every shard's
    /// state durable, then the manifest; the view's drivers go on in any case.
    pub async fn checkpoint_view(self: &Rc<Self>, def: &ViewDef) {
        let Ok(_permit) = self.catalog_lock.acquire_permit(1).await else { return };
        if self.views.get(&def.name).is_none_or(|(d, _, _)| d.key() != def.key()) {
            return;
        }
        let id = self.views.next_checkpoint_id(&def.name);
        self.views.begin_checkpoint(&def.name, id);
        let started = std::time::Instant::now();
        let mut asked = true;
        for shard in 0..self.shard.count {
            if shard == self.shard.index {
                if let Some((_, rt, _)) = self.views.get(&def.name) {
                    rt.request_checkpoint(id);
                }
            } else {
                let name = def.name.clone();
                let r =
                    self.ask(shard, |reply| ShardRequest::View(ViewRequest::BeginCheckpoint { name, id, reply })).await;
                asked &= r.is_ok();
            }
        }
        let timeout = std::time::Duration::from_millis(crate::limits::CHECKPOINT_TIMEOUT_MS);
        let shards = self.shard.count;
        let captured = asked && self.views.wait_captured(&def.name, id, shards, timeout).await;
        // Every shard's state is taken: the sources go on while the states are written.
        for shard in 0..shards {
            if shard == self.shard.index {
                if let Some((_, rt, _)) = self.views.get(&def.name) {
                    rt.resume(id);
                }
            } else {
                let name = def.name.clone();
                let _ = self.ask(shard, |reply| ShardRequest::View(ViewRequest::Resume { name, id, reply })).await;
            }
        }
        let complete = captured && self.views.wait_written(&def.name, id, shards, timeout).await;
        if complete {
            let meta = CheckpointMeta { id, view_key: def.key(), shards: shards as u32 };
            match checkpoint::write_meta(self.log.storage(), self.log.data_dir(), &def.name, &meta).await {
                Ok(()) => {
                    self.views.record_checkpoint(&def.name, started.elapsed());
                    tracing::debug!(view = %def.name, id, elapsed_ms = started.elapsed().as_millis() as u64, "checkpoint complete");
                }
                Err(e) => tracing::warn!(view = %def.name, id, error = %e, "writing the checkpoint manifest failed"),
            }
        } else {
            tracing::warn!(view = %def.name, id, "checkpoint abandoned (a shard did not complete it in time)");
        }
    }

    pub fn start_view_local(self: &Rc<Self>, name: &str, building: bool) {
        let host: Rc<dyn DataflowHost> = Rc::new(ShardHost { node: self.clone() });
        if building {
            self.views.start_building(name, host);
        } else {
            self.views.start(name, host);
        }
    }

    /// Where each source partition this shard owns starts for `from`.
    pub(super) async fn start_offsets(
        &self,
        plan: &ViewPlan,
        from: crate::dataflow::plan::StartFrom,
    ) -> Vec<(String, u32, Offset)> {
        use crate::dataflow::plan::StartFrom;
        let mut out = Vec::new();
        for topic in plan.topics() {
            let Some(config) = self.log.topic(topic) else { continue };
            for p in 0..config.partitions {
                let Ok(part) = self.log.partition(topic, p) else { continue };
                let o = part.offsets();
                let at = match from {
                    StartFrom::Earliest => o.log_start(),
                    StartFrom::Offset(n) => Offset(n.clamp(o.log_start().0, o.visible_end().0)),
                    StartFrom::Timestamp(ms) => part.offset_for_time(ms).await.unwrap_or(o.visible_end()),
                };
                out.push((topic.to_string(), p, at));
            }
        }
        out
    }

    /// A view's rows (as the view shows them) that pass the request's filter: from the
    /// shard owning the key for a lookup, else from every shard.
    pub async fn read_view(&self, name: &str, request: ReadRequest) -> Result<Vec<Vec<OwnedDatum>>, SqlError> {
        // A rebuild may switch versions while the read is under way: a shard that no
        // longer has the version the read began with makes it start again.
        let mut tries = 0;
        loop {
            let version = self.views.get(name).map(|(d, _, _)| d.version).ok_or_else(|| {
                SqlError::new(sqlstate::UNDEFINED_TABLE, format!("materialized view \"{name}\" does not exist"))
            })?;
            match self.read_version(name, version, &request).await? {
                Some(rows) => return Ok(rows),
                None if tries < 3 => tries += 1,
                None => {
                    return Err(SqlError::new(
                        sqlstate::OBJECT_IN_USE,
                        format!("materialized view \"{name}\" kept switching versions during the read; try again"),
                    ))
                }
            }
        }
    }

    /// `None`: a shard no longer has `version`.
    async fn read_version(
        &self,
        name: &str,
        version: u32,
        request: &ReadRequest,
    ) -> Result<Option<Vec<Vec<OwnedDatum>>>, SqlError> {
        let shards: Vec<usize> = match &request.group_key {
            Some(k) => vec![crate::dataflow::row::owner_of(k, self.shard.count)],
            None => (0..self.shard.count).collect(),
        };
        let mut rows = Vec::new();
        for shard in shards {
            let part = if shard == self.shard.index {
                self.read_view_local(name, version, request)
            } else {
                let (name, request) = (name.to_string(), request.clone());
                self.ask(shard, |reply| ShardRequest::View(ViewRequest::Read { name, version, request, reply }))
                    .await
                    .map_err(sql_error)?
            };
            let Some(part) = part else { return Ok(None) };
            rows.extend(part);
            if rows.len() > crate::limits::SQL_RESULT_ROWS_MAX {
                return Err(SqlError::new(
                    sqlstate::PROGRAM_LIMIT_EXCEEDED,
                    format!(
                        "the result has more than {} rows: add a WHERE or a LIMIT",
                        crate::limits::SQL_RESULT_ROWS_MAX
                    ),
                ));
            }
            if request.limit.is_some_and(|l| rows.len() >= l) {
                break;
            }
        }
        Ok(Some(rows))
    }

    fn read_view_local(&self, name: &str, version: u32, request: &ReadRequest) -> Option<Vec<Vec<OwnedDatum>>> {
        self.views.get_version(name, version).map(|rt| read_rows(&rt, request))
    }

    fn view_stats_local(&self, name: &str) -> Result<ViewShardStats, ApiError> {
        let (_, rt, _) = self.views.get(name).ok_or_else(|| {
            ApiError::new(ErrorCode::UnknownTopic, format!("materialized view '{name}' does not exist"))
        })?;
        let (rows, keys, bytes) = state_size(&rt);
        let agg_late = rt.state.borrow().agg.counters.late_dropped;
        Ok(ViewShardStats {
            rows: rows as u64,
            keys: keys as u64,
            bytes: bytes as u64,
            events: rt.metrics.events.get(),
            late_dropped: rt.metrics.late_dropped.get() + agg_late,
            watermark_ms: rt.watermark(),
        })
    }

    /// A view's statistics summed over every shard (the watermark: the lowest).
    pub async fn view_stats(&self, name: &str) -> Result<ViewShardStats, SqlError> {
        let mut total = ViewShardStats { watermark_ms: i64::MAX, ..Default::default() };
        for shard in 0..self.shard.count {
            let s = if shard == self.shard.index {
                self.view_stats_local(name).map_err(sql_error)?
            } else {
                let name = name.to_string();
                self.ask(shard, |reply| ShardRequest::View(ViewRequest::Stats { name, reply }))
                    .await
                    .map_err(sql_error)?
            };
            total.rows += s.rows;
            total.keys += s.keys;
            total.bytes += s.bytes;
            total.events += s.events;
            total.late_dropped += s.late_dropped;
            total.watermark_ms = total.watermark_ms.min(s.watermark_ms);
        }
        Ok(total)
    }

    pub(super) async fn serve_view_request(self: &Rc<Self>, request: ViewRequest) {
        match request {
            ViewRequest::Create { name, sql, if_not_exists, reply } => {
                let _ = reply.send(self.create_view(&name, &sql, if_not_exists).await);
            }
            ViewRequest::Drop { name, if_exists, reply } => {
                let _ = reply.send(self.drop_view(&name, if_exists).await);
            }
            ViewRequest::Add { def, building, rate_limit_bytes_per_s, reply } => {
                let _ = reply.send(self.add_view_local(def, building, rate_limit_bytes_per_s).await);
            }
            ViewRequest::Start { name, building, reply } => {
                self.start_view_local(&name, building);
                let _ = reply.send(Ok(()));
            }
            ViewRequest::Rebuild { name, op, reply } => {
                let _ = reply.send(self.rebuild_local(&name, op).await);
            }
            ViewRequest::Remove { name, reply } => {
                self.views.remove(&name).await;
                let _ = reply.send(Ok(()));
            }
            ViewRequest::Read { name, version, request, reply } => {
                let _ = reply.send(Ok(self.read_view_local(&name, version, &request)));
            }
            ViewRequest::Stats { name, reply } => {
                let _ = reply.send(self.view_stats_local(&name));
            }
            ViewRequest::BeginCheckpoint { name, id, reply } => {
                if let Some((_, rt, _)) = self.views.get(&name) {
                    rt.request_checkpoint(id);
                }
                let _ = reply.send(Ok(()));
            }
            ViewRequest::CheckpointStep { name, id, step, reply } => {
                self.views.checkpoint_step(&name, id, step);
                let _ = reply.send(Ok(()));
            }
            ViewRequest::Resume { name, id, reply } => {
                if let Some((_, rt, _)) = self.views.get(&name) {
                    rt.resume(id);
                }
                let _ = reply.send(Ok(()));
            }
        }
    }
}
