//! One consumer group's membership: Kafka's classic group protocol as a state machine.
//!
//! ```text
//! Empty ──join──▶ PreparingRebalance ──all joined / deadline──▶ CompletingRebalance
//!   ▲                  ▲        ▲                                    │ leader's SyncGroup
//!   └── last leaves ───┘        └──── join, leave, expiry ────── Stable ◀┘
//! ```
//! Joins are held until every known member has rejoined (or the rebalance deadline
//! passes and the stragglers are dropped); then the generation advances, the leader gets
//! every member's subscription, and followers wait in SyncGroup for the leader's
//! assignment. Members that stop heartbeating past their session timeout are dropped.
//!
//! Pure logic over `now`: no I/O, no timers of its own (the coordinator ticks it), so it
//! is tested directly. Replies go out through oneshot channels held by the members.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::channel::oneshot;

/// Kafka error codes used by the group protocol.
pub mod code {
    pub const NONE: i16 = 0;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
    pub const INVALID_GROUP_ID: i16 = 24;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const INVALID_SESSION_TIMEOUT: i16 = 26;
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
    pub const MEMBER_ID_REQUIRED: i16 = 79;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    /// The name Kafka's DescribeGroups and ListGroups use.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// What a JoinGroup asks for.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// (assignor name, subscription metadata), in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// Join protocol v4 and later: an unknown member first gets an id to rejoin with.
    pub require_known_member: bool,
}

/// The answer to a JoinGroup.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JoinOutcome {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// For the leader only: (member id, group instance id, subscription).
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinOutcome {
    fn error(error: i16, member_id: &str) -> Self {
        JoinOutcome { error, generation: -1, member_id: member_id.to_string(), ..Default::default() }
    }
}

/// The answer to a SyncGroup: the member's assignment or an error code.
pub type SyncOutcome = Result<(Option<String>, Option<String>, Bytes), i16>;

/// A member as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

struct Member {
    group_instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    last_seen: Instant,
    join_waiter: Option<oneshot::Sender<JoinOutcome>>,
    sync_waiter: Option<oneshot::Sender<SyncOutcome>>,
}

/// Timing settings of the group protocol.
#[derive(Debug, Clone, Copy)]
pub struct GroupTimeouts {
    /// How long a new group waits for more members before its first rebalance.
    pub initial_rebalance_delay: Duration,
    pub session_timeout_min_ms: i32,
    pub session_timeout_max_ms: i32,
}

pub struct Group {
    pub id: String,
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Ids handed out with MEMBER_ID_REQUIRED, with when they expire unused.
    pending_ids: BTreeMap<String, Instant>,
    rebalance_deadline: Option<Instant>,
    /// Until when a new group holds its first rebalance open for more members.
    initial_delay_until: Option<Instant>,
    timeouts: GroupTimeouts,
    next_member: u64,
}

impl Group {
    pub fn new(id: &str, timeouts: GroupTimeouts) -> Self {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending_ids: BTreeMap::new(),
            rebalance_deadline: None,
            initial_delay_until: None,
            timeouts,
            next_member: 0,
        }
    }

    pub fn state(&self) -> GroupState {
        self.state
    }

    /// No member, no member id handed out, nothing pending: the coordinator forgets the
    /// group (its committed offsets live in the offsets table, not here).
    pub fn is_vacant(&self) -> bool {
        self.state == GroupState::Empty && self.members.is_empty() && self.pending_ids.is_empty()
    }

    pub fn generation(&self) -> i32 {
        self.generation
    }

    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    pub fn is_member(&self, member_id: &str) -> bool {
        self.members.contains_key(member_id)
    }

    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// Handles a JoinGroup; the outcome arrives on the returned channel (at once, or when
    /// the rebalance completes).
    pub fn join(&mut self, req: JoinRequest, now: Instant) -> oneshot::Receiver<JoinOutcome> {
        let (tx, rx) = oneshot::channel();
        let t = self.timeouts;
        if req.session_timeout_ms < t.session_timeout_min_ms || req.session_timeout_ms > t.session_timeout_max_ms {
            let _ = tx.send(JoinOutcome::error(code::INVALID_SESSION_TIMEOUT, &req.member_id));
            return rx;
        }
        if req.protocols.is_empty()
            || req.protocols.len() > crate::limits::GROUP_PROTOCOLS_MAX
            || req.protocol_type.is_empty()
            || (!self.members.is_empty() && self.protocol_type.as_deref() != Some(req.protocol_type.as_str()))
            || (!self.members.is_empty() && !self.supports_any(&req.protocols))
        {
            let _ = tx.send(JoinOutcome::error(code::INCONSISTENT_GROUP_PROTOCOL, &req.member_id));
            return rx;
        }
        let member_id = if req.member_id.is_empty() {
            // A static member (group.instance.id) keeps its identity across restarts.
            let existing = req.group_instance_id.as_ref().and_then(|inst| {
                self.members.iter().find(|(_, m)| m.group_instance_id.as_ref() == Some(inst)).map(|(id, _)| id.clone())
            });
            match existing {
                Some(id) => id,
                None => {
                    self.next_member += 1;
                    let id = format!("{}-{:016x}-{}", req.client_id, rand::random::<u64>(), self.next_member);
                    if req.require_known_member {
                        // KIP-394: the member rejoins with this id, so a lost reply leaves no ghost.
                        self.pending_ids.insert(id.clone(), now + Duration::from_millis(req.session_timeout_ms as u64));
                        let _ = tx.send(JoinOutcome::error(code::MEMBER_ID_REQUIRED, &id));
                        return rx;
                    }
                    id
                }
            }
        } else {
            if !self.members.contains_key(&req.member_id) && self.pending_ids.remove(&req.member_id).is_none() {
                let _ = tx.send(JoinOutcome::error(code::UNKNOWN_MEMBER_ID, &req.member_id));
                return rx;
            }
            req.member_id.clone()
        };

        // A known follower rejoining a stable group with nothing changed gets the current
        // generation back without a rebalance (as Kafka does).
        if self.state == GroupState::Stable {
            if let Some(m) = self.members.get(&member_id) {
                if m.protocols == req.protocols && self.leader.as_deref() != Some(member_id.as_str()) {
                    let outcome = self.outcome_for(&member_id, false);
                    let _ = tx.send(outcome);
                    return rx;
                }
            }
        }

        let member = self.members.entry(member_id.clone()).or_insert_with(|| Member {
            group_instance_id: req.group_instance_id.clone(),
            client_id: req.client_id.clone(),
            client_host: req.client_host.clone(),
            session_timeout: Duration::ZERO,
            rebalance_timeout: Duration::ZERO,
            protocols: Vec::new(),
            assignment: Bytes::new(),
            last_seen: now,
            join_waiter: None,
            sync_waiter: None,
        });
        member.session_timeout = Duration::from_millis(req.session_timeout_ms as u64);
        member.rebalance_timeout = Duration::from_millis(req.rebalance_timeout_ms.max(req.session_timeout_ms) as u64);
        member.protocols = req.protocols;
        member.last_seen = now;
        if let Some(old) = member.join_waiter.replace(tx) {
            let _ = old.send(JoinOutcome::error(code::UNKNOWN_MEMBER_ID, &member_id));
        }
        if self.protocol_type.is_none() {
            self.protocol_type = Some(req.protocol_type);
        }
        match self.state {
            GroupState::PreparingRebalance => {}
            GroupState::Empty => {
                self.initial_delay_until = Some(now + self.timeouts.initial_rebalance_delay);
                self.prepare_rebalance(now);
            }
            GroupState::CompletingRebalance | GroupState::Stable => self.prepare_rebalance(now),
        }
        self.try_complete_join(now);
        rx
    }

    fn supports_any(&self, protocols: &[(String, Bytes)]) -> bool {
        let candidates = self.candidate_protocols();
        protocols.iter().any(|(name, _)| candidates.contains(name))
    }

    /// Protocols every current member supports.
    fn candidate_protocols(&self) -> Vec<String> {
        let mut it = self.members.values();
        let Some(first) = it.next() else { return Vec::new() };
        let mut names: Vec<String> = first.protocols.iter().map(|(n, _)| n.clone()).collect();
        for m in it {
            names.retain(|n| m.protocols.iter().any(|(p, _)| p == n));
        }
        names
    }

    fn prepare_rebalance(&mut self, now: Instant) {
        // Followers waiting for an assignment of the old generation must rejoin.
        for m in self.members.values_mut() {
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(Err(code::REBALANCE_IN_PROGRESS));
            }
        }
        let longest = self.members.values().map(|m| m.rebalance_timeout).max().unwrap_or(Duration::ZERO);
        self.rebalance_deadline = Some(now + longest);
        self.state = GroupState::PreparingRebalance;
    }

    fn try_complete_join(&mut self, now: Instant) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        if self.initial_delay_until.is_some_and(|t| now < t) {
            return;
        }
        let all_joined = self.members.values().all(|m| m.join_waiter.is_some());
        let deadline_passed = self.rebalance_deadline.is_some_and(|d| now >= d);
        if !(all_joined || deadline_passed) {
            return;
        }
        // Members that did not rejoin in time are out.
        self.members.retain(|_, m| m.join_waiter.is_some());
        self.initial_delay_until = None;
        self.rebalance_deadline = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.protocol_type = None;
            self.leader = None;
            return;
        }
        self.protocol = self.select_protocol();
        if !self.leader.as_ref().is_some_and(|l| self.members.contains_key(l)) {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = GroupState::CompletingRebalance;
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let is_leader = self.leader.as_deref() == Some(id.as_str());
            let outcome = self.outcome_for(&id, is_leader);
            if let Some(m) = self.members.get_mut(&id) {
                m.last_seen = now;
                m.assignment = Bytes::new();
                if let Some(w) = m.join_waiter.take() {
                    let _ = w.send(outcome);
                }
            }
        }
    }

    /// Each member votes for its most preferred protocol that everyone supports.
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some((name, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(n)) {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        // Most votes; ties go to the leader's (or first member's) preference order.
        let pref: Vec<&str> = self
            .members
            .values()
            .next()
            .map(|m| m.protocols.iter().map(|(n, _)| n.as_str()).collect())
            .unwrap_or_default();
        let best = votes.values().copied().max()?;
        pref.into_iter().find(|p| votes.get(p) == Some(&best)).map(str::to_string)
    }

    fn outcome_for(&self, member_id: &str, with_members: bool) -> JoinOutcome {
        let protocol = self.protocol.clone();
        let members = if with_members {
            self.members
                .iter()
                .map(|(id, m)| {
                    let meta = m
                        .protocols
                        .iter()
                        .find(|(n, _)| Some(n) == protocol.as_ref())
                        .map(|(_, md)| md.clone())
                        .unwrap_or_default();
                    (id.clone(), m.group_instance_id.clone(), meta)
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinOutcome {
            error: code::NONE,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: protocol,
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members,
        }
    }

    /// Handles a SyncGroup. The leader's assignments complete the rebalance.
    pub fn sync(
        &mut self,
        member_id: &str,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
    ) -> oneshot::Receiver<SyncOutcome> {
        let (tx, rx) = oneshot::channel();
        let Some(member) = self.members.get_mut(member_id) else {
            let _ = tx.send(Err(code::UNKNOWN_MEMBER_ID));
            return rx;
        };
        if generation != self.generation {
            let _ = tx.send(Err(code::ILLEGAL_GENERATION));
            return rx;
        }
        member.last_seen = now;
        match self.state {
            GroupState::Empty => {
                let _ = tx.send(Err(code::UNKNOWN_MEMBER_ID));
            }
            GroupState::PreparingRebalance => {
                let _ = tx.send(Err(code::REBALANCE_IN_PROGRESS));
            }
            GroupState::Stable => {
                let a = member.assignment.clone();
                let _ = tx.send(Ok((self.protocol_type.clone(), self.protocol.clone(), a)));
            }
            GroupState::CompletingRebalance => {
                member.sync_waiter = Some(tx);
                if self.leader.as_deref() == Some(member_id) {
                    let mut given: BTreeMap<String, Bytes> = assignments.into_iter().collect();
                    for (id, m) in self.members.iter_mut() {
                        m.assignment = given.remove(id).unwrap_or_default();
                    }
                    self.state = GroupState::Stable;
                    let (pt, pn) = (self.protocol_type.clone(), self.protocol.clone());
                    for m in self.members.values_mut() {
                        if let Some(w) = m.sync_waiter.take() {
                            let _ = w.send(Ok((pt.clone(), pn.clone(), m.assignment.clone())));
                        }
                    }
                }
            }
        }
        rx
    }

    /// Handles a Heartbeat; returns the error code.
    pub fn heartbeat(&mut self, member_id: &str, generation: i32, now: Instant) -> i16 {
        let Some(member) = self.members.get_mut(member_id) else {
            return code::UNKNOWN_MEMBER_ID;
        };
        member.last_seen = now;
        if generation != self.generation {
            return code::ILLEGAL_GENERATION;
        }
        match self.state {
            GroupState::Empty => code::UNKNOWN_MEMBER_ID,
            GroupState::PreparingRebalance => code::REBALANCE_IN_PROGRESS,
            GroupState::CompletingRebalance | GroupState::Stable => code::NONE,
        }
    }

    /// Removes members (LeaveGroup); returns each one's error code.
    pub fn leave(&mut self, member_ids: &[String], now: Instant) -> Vec<i16> {
        let mut codes = Vec::with_capacity(member_ids.len());
        let mut removed = false;
        for id in member_ids {
            match self.members.remove(id) {
                Some(m) => {
                    if let Some(w) = m.join_waiter {
                        let _ = w.send(JoinOutcome::error(code::UNKNOWN_MEMBER_ID, id));
                    }
                    if let Some(w) = m.sync_waiter {
                        let _ = w.send(Err(code::UNKNOWN_MEMBER_ID));
                    }
                    removed = true;
                    codes.push(code::NONE);
                }
                None => codes.push(code::UNKNOWN_MEMBER_ID),
            }
        }
        if removed {
            self.on_membership_change(now);
        }
        codes
    }

    fn on_membership_change(&mut self, now: Instant) {
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.generation += 1;
            self.protocol = None;
            self.protocol_type = None;
            self.leader = None;
            self.rebalance_deadline = None;
            self.initial_delay_until = None;
            return;
        }
        if self.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(now);
        }
        self.try_complete_join(now);
    }

    /// Expires silent members and pending ids, and completes a rebalance whose deadline
    /// passed. Called periodically by the coordinator.
    pub fn tick(&mut self, now: Instant) {
        self.pending_ids.retain(|_, until| *until > now);
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| m.join_waiter.is_none() && now.duration_since(m.last_seen) > m.session_timeout)
            .map(|(id, _)| id.clone())
            .collect();
        if !expired.is_empty() {
            tracing::info!(group = %self.id, members = ?expired, "members expired (no heartbeat within the session timeout)");
            self.leave(&expired, now);
        }
        self.try_complete_join(now);
    }

    /// Whether a commit from this member and generation is accepted now (0) or why not.
    pub fn check_commit(&self, member_id: &str, generation: i32) -> i16 {
        if generation < 0 && member_id.is_empty() {
            // A simple (unmanaged) consumer commits outside any generation.
            return if self.members.is_empty() { code::NONE } else { code::ILLEGAL_GENERATION };
        }
        if !self.members.contains_key(member_id) {
            return code::UNKNOWN_MEMBER_ID;
        }
        if generation != self.generation {
            return code::ILLEGAL_GENERATION;
        }
        if self.state == GroupState::CompletingRebalance {
            return code::REBALANCE_IN_PROGRESS;
        }
        code::NONE
    }

    pub fn describe(&self) -> Vec<MemberDescription> {
        self.members
            .iter()
            .map(|(id, m)| MemberDescription {
                member_id: id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: m
                    .protocols
                    .iter()
                    .find(|(n, _)| Some(n) == self.protocol.as_ref())
                    .map(|(_, md)| md.clone())
                    .unwrap_or_default(),
                assignment: m.assignment.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeouts() -> GroupTimeouts {
        GroupTimeouts {
            initial_rebalance_delay: Duration::ZERO,
            session_timeout_min_ms: 100,
            session_timeout_max_ms: 600_000,
        }
    }

    fn join_req(member: &str) -> JoinRequest {
        JoinRequest {
            member_id: member.to_string(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 1000,
            rebalance_timeout_ms: 2000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"sub")), ("roundrobin".into(), Bytes::new())],
            require_known_member: true,
        }
    }

    fn now_value<T>(mut rx: oneshot::Receiver<T>) -> Option<T> {
        rx.try_recv().ok().flatten()
    }

    #[test]
    fn two_members_join_sync_and_a_third_triggers_a_rebalance() {
        let mut g = Group::new("g", timeouts());
        let t0 = Instant::now();
        let first = now_value(g.join(join_req(""), t0)).expect("member id required");
        assert_eq!(first.error, code::MEMBER_ID_REQUIRED);
        let a = first.member_id;
        let ja = now_value(g.join(join_req(&a), t0)).expect("alone: completes at once");
        assert_eq!((ja.error, ja.generation, ja.leader.as_str()), (0, 1, a.as_str()));
        assert_eq!(ja.members.len(), 1);
        let sa = now_value(g.sync(&a, 1, vec![(a.clone(), Bytes::from_static(b"p0-3"))], t0)).unwrap();
        assert_eq!(sa.unwrap().2, Bytes::from_static(b"p0-3"));
        assert_eq!(g.state(), GroupState::Stable);

        // B joins: the group rebalances; A learns it from its heartbeat and rejoins.
        let b = now_value(g.join(join_req(""), t0)).unwrap().member_id;
        let mut jb = g.join(join_req(&b), t0);
        assert!(jb.try_recv().unwrap().is_none(), "held until A rejoins");
        assert_eq!(g.heartbeat(&a, 1, t0), code::REBALANCE_IN_PROGRESS);
        let ja2 = now_value(g.join(join_req(&a), t0)).expect("both joined");
        let jb2 = jb.try_recv().unwrap().expect("B's join completes too");
        assert_eq!((ja2.generation, jb2.generation), (2, 2));
        assert_eq!(ja2.leader, a, "the leader stays");
        assert_eq!(ja2.members.len(), 2);
        assert!(jb2.members.is_empty(), "only the leader gets the member list");
        let mut sb = g.sync(&b, 2, vec![], t0);
        assert!(sb.try_recv().unwrap().is_none(), "follower waits for the leader");
        let assign = vec![(a.clone(), Bytes::from_static(b"A")), (b.clone(), Bytes::from_static(b"B"))];
        assert_eq!(now_value(g.sync(&a, 2, assign, t0)).unwrap().unwrap().2, Bytes::from_static(b"A"));
        assert_eq!(sb.try_recv().unwrap().unwrap().unwrap().2, Bytes::from_static(b"B"));
        assert_eq!(g.check_commit(&a, 1), code::ILLEGAL_GENERATION);
        assert_eq!(g.check_commit(&a, 2), code::NONE);

        // B stops heartbeating: it expires, and A is asked to rejoin alone.
        let later = t0 + Duration::from_millis(1500);
        assert_eq!(g.heartbeat(&a, 2, later), code::NONE);
        g.tick(later);
        assert!(!g.is_member(&b));
        assert_eq!(g.state(), GroupState::PreparingRebalance);
        let ja3 = now_value(g.join(join_req(&a), later)).unwrap();
        assert_eq!((ja3.generation, ja3.members.len()), (3, 1));
        assert_eq!(g.leave(std::slice::from_ref(&a), later), vec![code::NONE]);
        assert_eq!(g.state(), GroupState::Empty);
    }

    #[test]
    fn stragglers_are_dropped_at_the_rebalance_deadline() {
        let mut g = Group::new("g", timeouts());
        let t0 = Instant::now();
        let a = now_value(g.join(join_req(""), t0)).unwrap().member_id;
        now_value(g.join(join_req(&a), t0)).unwrap();
        now_value(g.sync(&a, 1, vec![], t0)).unwrap().unwrap();
        let b = now_value(g.join(join_req(""), t0)).unwrap().member_id;
        let mut jb = g.join(join_req(&b), t0);
        // A never rejoins: at the deadline (its rebalance timeout) B goes on alone.
        g.tick(t0 + Duration::from_millis(1000));
        assert!(jb.try_recv().unwrap().is_none());
        let t1 = t0 + Duration::from_millis(2100);
        g.tick(t1);
        let out = jb.try_recv().unwrap().expect("completed at the deadline");
        assert_eq!((out.generation, out.leader.as_str(), out.members.len()), (2, b.as_str(), 1));
        assert!(!g.is_member(&a));
    }

    #[test]
    fn bad_joins_are_refused() {
        let mut g = Group::new("g", timeouts());
        let t0 = Instant::now();
        let mut r = join_req("nobody");
        assert_eq!(now_value(g.join(r.clone(), t0)).unwrap().error, code::UNKNOWN_MEMBER_ID);
        r.member_id.clear();
        r.session_timeout_ms = 1;
        assert_eq!(now_value(g.join(r, t0)).unwrap().error, code::INVALID_SESSION_TIMEOUT);
        let a = now_value(g.join(join_req(""), t0)).unwrap().member_id;
        now_value(g.join(join_req(&a), t0)).unwrap();
        let mut other = join_req("");
        other.protocols = vec![("sticky".into(), Bytes::new())];
        assert_eq!(now_value(g.join(other, t0)).unwrap().error, code::INCONSISTENT_GROUP_PROTOCOL);
        let mut many = join_req("");
        many.protocols = (0..=crate::limits::GROUP_PROTOCOLS_MAX).map(|i| (format!("p{i}"), Bytes::new())).collect();
        assert_eq!(now_value(g.join(many, t0)).unwrap().error, code::INCONSISTENT_GROUP_PROTOCOL);
    }

    #[test]
    fn a_group_is_vacant_only_with_nobody_in_or_on_the_way() {
        let mut g = Group::new("g", timeouts());
        let t0 = Instant::now();
        assert!(g.is_vacant());
        // Refused joins leave it vacant (the coordinator then forgets it).
        let mut r = join_req("");
        r.session_timeout_ms = 1;
        now_value(g.join(r, t0)).unwrap();
        assert!(g.is_vacant());
        let a = now_value(g.join(join_req(""), t0)).unwrap().member_id;
        assert!(!g.is_vacant(), "a member id handed out");
        now_value(g.join(join_req(&a), t0)).unwrap();
        assert!(!g.is_vacant());
        g.leave(std::slice::from_ref(&a), t0);
        assert!(g.is_vacant());
    }
}
