//! The group coordinator of one shard: the groups whose offsets partition this shard owns.
//!
//! Calls arrive already routed (see `Node::group_call`), as protocol-neutral [`GroupCall`]s
//! the Kafka handlers build from any request version. A tick drives the groups' timers
//! (session expiry, rebalance deadlines). Commits are appended to the offsets topic and
//! applied in memory once durable; membership is not persisted: after a restart members
//! find themselves unknown and rejoin, as with a Kafka coordinator fail-over.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::group::{code, Group, GroupState, GroupTimeouts, JoinOutcome, JoinRequest, MemberDescription, SyncOutcome};
use super::offset_store::{
    commit_payload, group_partition, tombstone_payload, CommittedOffset, OffsetCommit, OffsetTable, OFFSETS_TOPIC,
};
use crate::limits::GROUP_TICK_MS;
use crate::log::LogManager;

/// A request to a group's coordinator. `Send`: it crosses shards.
#[derive(Debug)]
pub enum GroupCall {
    Join(JoinRequest),
    Sync {
        member_id: String,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
    },
    Heartbeat {
        member_id: String,
        generation: i32,
    },
    Leave {
        member_ids: Vec<String>,
    },
    Commit {
        member_id: String,
        generation: i32,
        commits: Vec<OffsetCommit>,
    },
    /// `None`: every committed partition of the group.
    FetchOffsets {
        topics: Option<Vec<(String, Vec<i32>)>>,
    },
    Describe,
}

/// A group as DescribeGroups and ListGroups show it.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    pub group: String,
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberDescription>,
}

/// The coordinator's answer.
#[derive(Debug)]
pub enum GroupReply {
    Join(JoinOutcome),
    Sync(SyncOutcome),
    Heartbeat(i16),
    /// One code per member asked to leave, or a group-level error.
    Leave(Result<Vec<i16>, i16>),
    /// One code per commit, in order.
    Commit(Vec<i16>),
    /// (topic, partition, committed offset or None).
    Offsets(Vec<(String, i32, Option<CommittedOffset>)>),
    Describe(Option<GroupDescription>),
}

pub struct GroupCoordinator {
    groups: RefCell<HashMap<String, Group>>,
    offsets: RefCell<OffsetTable>,
    timeouts: GroupTimeouts,
}

impl GroupCoordinator {
    pub fn new(timeouts: GroupTimeouts) -> Self {
        GroupCoordinator {
            groups: RefCell::new(HashMap::new()),
            offsets: RefCell::new(OffsetTable::default()),
            timeouts,
        }
    }

    /// Loads the committed offsets of the groups this shard coordinates.
    pub async fn load(&self, log: &LogManager) -> Result<usize, crate::log::LogError> {
        let mut table = OffsetTable::default();
        let n = table.load(log).await?;
        *self.offsets.borrow_mut() = table;
        Ok(n)
    }

    /// Drives the groups' timers until `stopped` resolves.
    pub async fn tick_loop(self: Rc<Self>, stopped: impl std::future::Future<Output = ()>) {
        let ticking = async {
            loop {
                glommio::timer::sleep(Duration::from_millis(GROUP_TICK_MS)).await;
                let now = Instant::now();
                let mut groups = self.groups.borrow_mut();
                for g in groups.values_mut() {
                    g.tick(now);
                }
                // Join and Sync make a group for any id: vacant ones must not pile up.
                groups.retain(|_, g| !g.is_vacant());
            }
        };
        futures_lite::future::or(ticking, stopped).await;
    }

    /// Every group this shard coordinates: (group, protocol type, state).
    pub fn list(&self) -> Vec<(String, String, &'static str)> {
        let mut out: Vec<(String, String, &'static str)> = self
            .groups
            .borrow()
            .values()
            .map(|g| (g.id.clone(), g.protocol_type().unwrap_or("consumer").to_string(), g.state().name()))
            .collect();
        // Groups known only by their committed offsets are listed as Empty, as Kafka does.
        let live: std::collections::HashSet<String> = out.iter().map(|(g, _, _)| g.clone()).collect();
        for name in self.offsets.borrow().group_names() {
            if !live.contains(&name) {
                out.push((name, "consumer".to_string(), GroupState::Empty.name()));
            }
        }
        out.sort();
        out
    }

    /// Serves one call for `group`. `log` appends commits.
    pub async fn call(&self, log: &LogManager, group: &str, call: GroupCall) -> GroupReply {
        let now = Instant::now();
        match call {
            GroupCall::Join(req) => {
                let rx = self.with_group(group, |g| g.join(req, now));
                GroupReply::Join(rx.await.unwrap_or_else(|_| JoinOutcome {
                    error: code::COORDINATOR_NOT_AVAILABLE,
                    generation: -1,
                    ..Default::default()
                }))
            }
            GroupCall::Sync { member_id, generation, assignments } => {
                let rx = self.with_group(group, |g| g.sync(&member_id, generation, assignments, now));
                GroupReply::Sync(rx.await.unwrap_or(Err(code::COORDINATOR_NOT_AVAILABLE)))
            }
            GroupCall::Heartbeat { member_id, generation } => {
                let code = match self.groups.borrow_mut().get_mut(group) {
                    Some(g) => g.heartbeat(&member_id, generation, now),
                    None => code::UNKNOWN_MEMBER_ID,
                };
                GroupReply::Heartbeat(code)
            }
            GroupCall::Leave { member_ids } => {
                let codes = match self.groups.borrow_mut().get_mut(group) {
                    Some(g) => Ok(g.leave(&member_ids, now)),
                    None => Err(code::UNKNOWN_MEMBER_ID),
                };
                GroupReply::Leave(codes)
            }
            GroupCall::Commit { member_id, generation, commits } => {
                GroupReply::Commit(self.commit(log, group, &member_id, generation, commits).await)
            }
            GroupCall::FetchOffsets { topics } => {
                let table = self.offsets.borrow();
                let out = match topics {
                    None => table.group(group).into_iter().map(|(t, p, o)| (t, p, Some(o))).collect(),
                    Some(topics) => topics
                        .into_iter()
                        .flat_map(|(t, parts)| parts.into_iter().map(move |p| (t.clone(), p)).collect::<Vec<_>>())
                        .map(|(t, p)| {
                            let o = table.get(group, &t, p).cloned();
                            (t, p, o)
                        })
                        .collect(),
                };
                GroupReply::Offsets(out)
            }
            GroupCall::Describe => {
                let groups = self.groups.borrow();
                let d = match groups.get(group) {
                    Some(g) => Some(GroupDescription {
                        group: group.to_string(),
                        state: g.state().name(),
                        protocol_type: g.protocol_type().unwrap_or_default().to_string(),
                        protocol: g.protocol().unwrap_or_default().to_string(),
                        members: g.describe(),
                    }),
                    None if !self.offsets.borrow().group(group).is_empty() => Some(GroupDescription {
                        group: group.to_string(),
                        state: GroupState::Empty.name(),
                        protocol_type: "consumer".into(),
                        protocol: String::new(),
                        members: Vec::new(),
                    }),
                    None => None,
                };
                GroupReply::Describe(d)
            }
        }
    }

    /// Forgets (durably, with tombstones) every committed offset of a deleted topic.
    pub async fn forget_topic(&self, log: &LogManager, topic: &str) -> Result<(), String> {
        let gone = self.offsets.borrow_mut().forget_topic(topic);
        let now_ms = crate::clock::now_ms();
        for (group, partitions) in gone {
            let payload = tombstone_payload(&group, &partitions, now_ms).map_err(|e| e.to_string())?;
            let partition = log.partition(OFFSETS_TOPIC, group_partition(&group)).map_err(|e| e.to_string())?;
            partition.append(payload).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn with_group<T>(&self, group: &str, f: impl FnOnce(&mut Group) -> T) -> T {
        let mut groups = self.groups.borrow_mut();
        let g = groups.entry(group.to_string()).or_insert_with(|| Group::new(group, self.timeouts));
        f(g)
    }

    async fn commit(
        &self,
        log: &LogManager,
        group: &str,
        member_id: &str,
        generation: i32,
        commits: Vec<OffsetCommit>,
    ) -> Vec<i16> {
        let check = match self.groups.borrow().get(group) {
            Some(g) => g.check_commit(member_id, generation),
            // No live group: only a simple consumer (no member, no generation) may commit.
            None if generation < 0 => code::NONE,
            None => code::UNKNOWN_MEMBER_ID,
        };
        if check != code::NONE || commits.is_empty() {
            return vec![check; commits.len()];
        }
        let now_ms = crate::clock::now_ms();
        let appended = async {
            let payload = commit_payload(group, &commits, now_ms).map_err(|e| e.to_string())?;
            let partition = log.partition(OFFSETS_TOPIC, group_partition(group)).map_err(|e| e.to_string())?;
            partition.append(payload).await.map_err(|e| e.to_string())
        }
        .await;
        match appended {
            Ok(_) => {
                self.offsets.borrow_mut().apply(group, &commits);
                vec![code::NONE; commits.len()]
            }
            Err(e) => {
                tracing::warn!(group, error = %e, "committing offsets failed");
                vec![code::COORDINATOR_NOT_AVAILABLE; commits.len()]
            }
        }
    }
}
