//! Grouped aggregation in event time: the operator behind every GROUP BY view.
//!
//! Two halves, on two shards in general:
//! - [`PartialTable`], on the shard that read the records: folds them into one partial
//!   aggregate per group (and window) per batch, so what crosses shards is one entry per
//!   group, not one per record;
//! - [`AggregateState`], on the shard that owns the group (`owner_of(key)`): merges the
//!   partials, finalizes a window when the watermark passes its end (its accumulators
//!   are then replaced by their results: the state is freed), and evicts rows past the
//!   state TTL. It is also the view's table: readers see its rows.

use std::collections::BTreeMap;
use std::rc::Rc;

use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashMap, HashTable};

use crate::dataflow::accumulator::{decode_opt_datum, encode_opt_datum, Acc, Position};
use crate::dataflow::plan::{AggregatePlan, LatePolicy, ViewOptions, WindowPlan};
use crate::dataflow::window::{assign, SessionSet};
use crate::sql::expr::Row;
use crate::sql::types::{Datum, OwnedDatum};
use crate::wire::{Decoder, Encoder, WireError};

/// One group's partial aggregate (per window), on its way to the group's owner.
#[derive(Debug, Clone)]
pub struct PartialGroup {
    /// The encoded group key (without the window): what decides the owner shard.
    pub key: Box<[u8]>,
    pub key_values: Vec<OwnedDatum>,
    pub window: Option<(i64, i64)>,
    pub accs: Vec<Acc>,
    /// Newest event time folded in (for the TTL of unwindowed groups).
    pub max_ts: i64,
}

impl PartialGroup {
    pub fn encode(&self, e: &mut Encoder) {
        e.bytes(&self.key);
        e.u32(self.key_values.len() as u32);
        for v in &self.key_values {
            encode_opt_datum(e, Some(v));
        }
        match self.window {
            None => e.u8(0),
            Some((s, w)) => e.u8(1).i64(s).i64(w),
        };
        e.i64(self.max_ts);
        e.u32(self.accs.len() as u32);
        for a in &self.accs {
            a.encode(e);
        }
    }

    pub fn decode(d: &mut Decoder<'_>) -> Result<PartialGroup, WireError> {
        let key = d.bytes()?.to_vec().into_boxed_slice();
        let n = d.u32()? as usize;
        if n > d.remaining() {
            return Err(WireError::Invalid("key width"));
        }
        let key_values =
            (0..n).map(|_| decode_opt_datum(d).map(Option::unwrap_or_default)).collect::<Result<_, _>>()?;
        let window = match d.u8()? {
            0 => None,
            _ => Some((d.i64()?, d.i64()?)),
        };
        let max_ts = d.i64()?;
        let k = d.u32()? as usize;
        if k > d.remaining() {
            return Err(WireError::Invalid("aggregate count"));
        }
        let accs = (0..k).map(|_| Acc::decode(d)).collect::<Result<_, _>>()?;
        Ok(PartialGroup { key, key_values, window, accs, max_ts })
    }
}

/// Stage 1: one batch's records folded per group and window.
pub struct PartialTable {
    shards: usize,
    /// Positions in `groups` by (group key, window start): a row's key is hashed once and
    /// compared in place against its group, never copied for the lookup.
    index: HashTable<usize>,
    hasher: DefaultHashBuilder,
    groups: Vec<(usize, PartialGroup)>,
    /// Scratch for the group key being looked up.
    scratch: Vec<u8>,
    sessions: HashMap<Box<[u8]>, (usize, Vec<OwnedDatum>, SessionSet, i64)>,
}

impl PartialTable {
    pub fn new(shards: usize) -> Self {
        PartialTable {
            shards,
            index: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
            groups: Vec::new(),
            scratch: Vec::with_capacity(64),
            sessions: HashMap::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.sessions.is_empty()
    }

    /// Folds one input row in: evaluates the keys and arguments, then updates the
    /// partial of every window the event falls in.
    pub fn add(&mut self, plan: &AggregatePlan, row: &(impl Row + ?Sized), ts: i64, pos: Position) {
        self.scratch.clear();
        for k in &plan.keys {
            k.eval(row).encode_key(&mut self.scratch);
        }
        let key_len = self.scratch.len();
        match plan.window {
            Some(WindowPlan::Session { gap_ms }) => {
                let shards = self.shards;
                let entry = self.sessions.entry_ref(&self.scratch[..key_len]).or_insert_with(|| {
                    let owner = super::row::owner_of(&self.scratch[..key_len], shards);
                    let values = plan.keys.iter().map(|k| k.eval(row).into_owned()).collect();
                    (owner, values, SessionSet::default(), ts)
                });
                let mut accs: Vec<Acc> = plan.aggs.iter().map(|a| a.func.new_acc()).collect();
                for (acc, a) in accs.iter_mut().zip(&plan.aggs) {
                    let v = a.arg.as_ref().map_or(Datum::Null, |e| e.eval(row));
                    acc.update(a.func, &v, pos);
                }
                entry.2.insert(ts, ts + gap_ms, &accs, &plan.aggs);
                entry.3 = entry.3.max(ts);
            }
            Some(window) => {
                let mut windows: [(i64, i64); 4] = [(0, 0); 4];
                let mut n = 0;
                let mut overflow = Vec::new();
                assign(window, ts, |s, e| {
                    if n < windows.len() {
                        windows[n] = (s, e);
                        n += 1;
                    } else {
                        overflow.push((s, e));
                    }
                });
                for &(s, e) in windows[..n].iter().chain(overflow.iter()) {
                    self.fold(plan, row, key_len, Some((s, e)), ts, pos);
                }
            }
            None => self.fold(plan, row, key_len, None, ts, pos),
        }
    }

    fn fold(
        &mut self,
        plan: &AggregatePlan,
        row: &(impl Row + ?Sized),
        key_len: usize,
        window: Option<(i64, i64)>,
        ts: i64,
        pos: Position,
    ) {
        let Self { index, hasher, groups, scratch, shards, .. } = self;
        let key = &scratch[..key_len];
        let start = window.map(|w| w.0);
        let hash = hasher.hash_one((key, start));
        let found = index.find(hash, |&i| {
            let g = &groups[i].1;
            g.window.map(|w| w.0) == start && *g.key == *key
        });
        let i = match found {
            Some(&i) => i,
            None => {
                let owner = super::row::owner_of(key, *shards);
                let key_values = plan.keys.iter().map(|k| k.eval(row).into_owned()).collect();
                let accs = plan.aggs.iter().map(|a| a.func.new_acc()).collect();
                groups.push((owner, PartialGroup { key: key.into(), key_values, window, accs, max_ts: ts }));
                let i = groups.len() - 1;
                index.insert_unique(hash, i, |&j| {
                    let g = &groups[j].1;
                    hasher.hash_one((&*g.key, g.window.map(|w| w.0)))
                });
                i
            }
        };
        let g = &mut self.groups[i].1;
        g.max_ts = g.max_ts.max(ts);
        for (acc, a) in g.accs.iter_mut().zip(&plan.aggs) {
            match &a.arg {
                None => acc.update(a.func, &Datum::Null, pos),
                Some(e) => acc.update(a.func, &e.eval(row), pos),
            }
        }
    }

    /// Takes the partials out, by owner shard.
    pub fn drain(&mut self, mut each: impl FnMut(usize, PartialGroup)) {
        self.index.clear();
        for (owner, g) in self.groups.drain(..) {
            each(owner, g);
        }
        for (key, (owner, values, set, max_ts)) in self.sessions.drain() {
            for s in set.sessions {
                each(
                    owner,
                    PartialGroup {
                        key: key.clone(),
                        key_values: values.clone(),
                        window: Some((s.start, s.end)),
                        accs: s.accs,
                        max_ts,
                    },
                );
            }
        }
    }
}

/// A group's aggregates: live accumulators, or (a finalized window) just the results.
#[derive(Debug, Clone)]
pub enum GroupAccs {
    Live(Vec<Acc>),
    Final(Vec<OwnedDatum>),
}

#[derive(Debug, Clone)]
pub struct GroupEntry {
    pub end: i64,
    pub accs: GroupAccs,
    pub max_ts: i64,
    /// The final result has been emitted (the watermark passed the window's end).
    pub finalized: bool,
}

/// Every group of one key.
#[derive(Debug, Clone)]
pub struct KeyGroups {
    pub values: Rc<[OwnedDatum]>,
    /// By window start; the unwindowed group sits at `i64::MIN`.
    pub windows: BTreeMap<i64, GroupEntry>,
}

/// A row of the view changed: for changelogs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Upsert { key: Box<[u8]>, window_start: i64, final_result: bool },
    Delete { key: Box<[u8]>, window_start: i64 },
}

/// Counters of what the operator refused or dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AggregateCounters {
    /// Partials for windows already final (under `drop` and `side`).
    pub late_dropped: u64,
    /// New groups refused at the state limit.
    pub refused_at_limit: u64,
    pub evicted_by_ttl: u64,
}

/// Stage 2: the groups this shard owns.
pub struct AggregateState {
    pub keys: HashMap<Box<[u8]>, KeyGroups>,
    pub rows: usize,
    pub counters: AggregateCounters,
    /// Record changes (for a changelog topic); off, nothing is allocated for them.
    pub record_changes: bool,
    /// Windows not yet final, by end: the watermark finalizes them in order without
    /// looking at any other group. Entries for windows merged away are skipped.
    pending: BTreeMap<i64, Vec<(Box<[u8]>, i64)>>,
    /// Windows by end, for eviction past the state TTL (only with a TTL).
    expiring: BTreeMap<i64, Vec<(Box<[u8]>, i64)>>,
    /// Unwindowed groups past the TTL are found by a scan, at most this often (watermark).
    last_ttl_scan: i64,
    /// The last size estimate and when it was made: the estimate walks every group, so
    /// stats readers polling it must not cost the operator its throughput.
    size_cache: std::cell::Cell<Option<(std::time::Instant, usize)>>,
}

/// How stale a view's reported state size may be.
const SIZE_ESTIMATE_MAX_AGE_MS: u64 = 500;

impl AggregateState {
    pub fn new() -> Self {
        AggregateState {
            keys: HashMap::new(),
            rows: 0,
            counters: AggregateCounters::default(),
            record_changes: false,
            pending: BTreeMap::new(),
            expiring: BTreeMap::new(),
            last_ttl_scan: i64::MIN,
            size_cache: std::cell::Cell::new(None),
        }
    }

    /// Sets what the view's options decide: whether changes are recorded, whether
    /// windows expire.
    pub fn configure(&mut self, options: &ViewOptions) {
        self.record_changes = options.changelog.is_some();
        if options.state_ttl_ms.is_none() {
            self.expiring.clear();
        }
    }

    fn note(&self, changes: &mut Vec<Change>, change: impl FnOnce() -> Change) {
        if self.record_changes {
            changes.push(change());
        }
    }

    /// A new window (or a session that grew): its end goes into the timer queues.
    fn schedule(&mut self, key: &[u8], start: i64, end: i64, ttl: bool) {
        self.pending.entry(end).or_default().push((key.into(), start));
        if ttl {
            self.expiring.entry(end).or_default().push((key.into(), start));
        }
    }

    /// Merges a partial. Windows already final take no more (counted as late) unless the
    /// view corrects late rows (`update`).
    pub fn apply(
        &mut self,
        plan: &AggregatePlan,
        options: &ViewOptions,
        watermark: i64,
        p: PartialGroup,
        changes: &mut Vec<Change>,
    ) {
        let update_late = options.late == LatePolicy::Update;
        let windowed = p.window.is_some();
        let ttl = windowed && options.state_ttl_ms.is_some();
        let (start, end) = p.window.unwrap_or((i64::MIN, i64::MAX));
        if windowed && end <= watermark && !update_late && !self.has_window(&p.key, start) {
            // The window closed before this arrived.
            self.counters.late_dropped += 1;
            return;
        }
        let at_limit = self.rows >= options.state_rows_max;
        let sessions = matches!(plan.window, Some(WindowPlan::Session { .. }));
        if !self.keys.contains_key(&p.key) {
            if at_limit {
                self.counters.refused_at_limit += 1;
                return;
            }
            self.keys
                .insert(p.key.clone(), KeyGroups { values: p.key_values.clone().into(), windows: BTreeMap::new() });
        }
        if sessions {
            // Merge every session the new one overlaps.
            let Some(kg) = self.keys.get_mut(&p.key) else { return };
            let mut merged_start = start;
            let mut merged_end = end;
            let mut accs: Vec<Acc> = plan.aggs.iter().map(|a| a.func.new_acc()).collect();
            for (m, a) in accs.iter_mut().zip(&p.accs) {
                m.merge(a);
            }
            let mut max_ts = p.max_ts;
            let overlapping: Vec<i64> =
                kg.windows.range(..end).filter(|(s, g)| **s < end && start < g.end).map(|(s, _)| *s).collect();
            let mut removed = Vec::new();
            for s in overlapping {
                if let Some(g) = kg.windows.remove(&s) {
                    self.rows -= 1;
                    merged_start = merged_start.min(s);
                    merged_end = merged_end.max(g.end);
                    max_ts = max_ts.max(g.max_ts);
                    if let GroupAccs::Live(old) = &g.accs {
                        for (m, a) in accs.iter_mut().zip(old) {
                            m.merge(a);
                        }
                    }
                    removed.push(s);
                }
            }
            kg.windows.insert(
                merged_start,
                GroupEntry { end: merged_end, accs: GroupAccs::Live(accs), max_ts, finalized: false },
            );
            self.rows += 1;
            for s in removed.into_iter().filter(|s| *s != merged_start) {
                self.note(changes, || Change::Delete { key: p.key.clone(), window_start: s });
            }
            self.schedule(&p.key, merged_start, merged_end, ttl);
            self.note(changes, || Change::Upsert {
                key: p.key.clone(),
                window_start: merged_start,
                final_result: false,
            });
            return;
        }
        let Some(kg) = self.keys.get_mut(&p.key) else { return };
        let is_new = !kg.windows.contains_key(&start);
        if is_new && at_limit {
            self.counters.refused_at_limit += 1;
            return;
        }
        let entry = kg.windows.entry(start).or_insert_with(|| GroupEntry {
            end,
            accs: GroupAccs::Live(plan.aggs.iter().map(|a| a.func.new_acc()).collect()),
            max_ts: p.max_ts,
            finalized: false,
        });
        entry.max_ts = entry.max_ts.max(p.max_ts);
        match &mut entry.accs {
            GroupAccs::Live(accs) => {
                for (m, a) in accs.iter_mut().zip(&p.accs) {
                    m.merge(a);
                }
            }
            GroupAccs::Final(_) => {
                self.counters.late_dropped += 1;
                return;
            }
        }
        let final_result = entry.finalized;
        if is_new {
            self.rows += 1;
            if windowed {
                self.schedule(&p.key, start, end, ttl);
            }
        }
        self.note(changes, || Change::Upsert { key: p.key, window_start: start, final_result });
    }

    fn has_window(&self, key: &[u8], start: i64) -> bool {
        self.keys.get(key).is_some_and(|k| k.windows.get(&start).is_some_and(|g| matches!(g.accs, GroupAccs::Live(_))))
    }

    /// The watermark moved to `wm`: windows that ended are final (their accumulators
    /// become results, unless late rows may still correct them), and rows past the state
    /// TTL are evicted. Only the windows due are touched (timer queues by end).
    pub fn advance(&mut self, plan: &AggregatePlan, options: &ViewOptions, wm: i64, changes: &mut Vec<Change>) {
        let keep_accs = options.late == LatePolicy::Update;
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() > wm {
                break;
            }
            let (end, due) = entry.remove_entry();
            for (key, start) in due {
                let Some(kg) = self.keys.get_mut(&key) else { continue };
                let Some(g) = kg.windows.get_mut(&start) else { continue };
                if g.finalized || g.end != end {
                    continue;
                }
                g.finalized = true;
                if !keep_accs {
                    if let GroupAccs::Live(accs) = &g.accs {
                        let results =
                            accs.iter().zip(&plan.aggs).map(|(a, p)| a.result(p.func, p.result_type)).collect();
                        g.accs = GroupAccs::Final(results);
                    }
                }
                self.note(changes, || Change::Upsert { key, window_start: start, final_result: true });
            }
        }
        let Some(ttl) = options.state_ttl_ms else { return };
        let cut = wm.saturating_sub(ttl);
        if plan.window.is_some() {
            while let Some(entry) = self.expiring.first_entry() {
                if *entry.key() >= cut {
                    break;
                }
                let (end, due) = entry.remove_entry();
                for (key, start) in due {
                    let Some(kg) = self.keys.get_mut(&key) else { continue };
                    if kg.windows.get(&start).is_none_or(|g| g.end != end) {
                        continue;
                    }
                    kg.windows.remove(&start);
                    let empty = kg.windows.is_empty();
                    self.rows -= 1;
                    self.counters.evicted_by_ttl += 1;
                    if empty {
                        self.keys.remove(&key);
                    }
                    self.note(changes, || Change::Delete { key, window_start: start });
                }
            }
        } else if cut.saturating_sub(self.last_ttl_scan) >= (ttl / 4).max(1) {
            // Unwindowed groups: their time moves with every update, so a scan finds them.
            self.last_ttl_scan = cut;
            let expired: Vec<Box<[u8]>> = self
                .keys
                .iter()
                .filter(|(_, kg)| kg.windows.values().all(|g| g.max_ts < cut))
                .map(|(k, _)| k.clone())
                .collect();
            for key in expired {
                if let Some(kg) = self.keys.remove(&key) {
                    self.rows -= kg.windows.len();
                    self.counters.evicted_by_ttl += kg.windows.len() as u64;
                    for start in kg.windows.keys() {
                        self.note(changes, || Change::Delete { key: key.clone(), window_start: *start });
                    }
                }
            }
        }
    }

    /// The group row of one group: keys, window bounds, results.
    pub fn group_row(plan: &AggregatePlan, values: &[OwnedDatum], start: i64, g: &GroupEntry) -> Vec<OwnedDatum> {
        let mut row: Vec<OwnedDatum> = Vec::with_capacity(plan.key_width() + plan.aggs.len());
        row.extend(values.iter().cloned());
        if plan.window.is_some() {
            row.push(Datum::Timestamp(start));
            row.push(Datum::Timestamp(g.end));
        }
        match &g.accs {
            GroupAccs::Live(accs) => {
                row.extend(accs.iter().zip(&plan.aggs).map(|(a, p)| a.result(p.func, p.result_type)))
            }
            GroupAccs::Final(results) => row.extend(results.iter().cloned()),
        }
        row
    }

    /// Approximate bytes held, at most SIZE_ESTIMATE_MAX_AGE_MS old.
    pub fn size_bytes(&self) -> usize {
        if let Some((at, bytes)) = self.size_cache.get() {
            if at.elapsed() < std::time::Duration::from_millis(SIZE_ESTIMATE_MAX_AGE_MS) {
                return bytes;
            }
        }
        let bytes = self.size_bytes_now();
        self.size_cache.set(Some((std::time::Instant::now(), bytes)));
        bytes
    }

    fn size_bytes_now(&self) -> usize {
        self.keys
            .iter()
            .map(|(k, kg)| {
                k.len()
                    + 64
                    + kg.windows
                        .values()
                        .map(|g| {
                            48 + match &g.accs {
                                GroupAccs::Live(a) => a.iter().map(Acc::size_bytes).sum(),
                                GroupAccs::Final(r) => r.len() * 24,
                            }
                        })
                        .sum::<usize>()
            })
            .sum()
    }

    /// For checkpoints.
    pub fn encode(&self, e: &mut Encoder) {
        let mut keys: Vec<(&Box<[u8]>, &KeyGroups)> = self.keys.iter().collect();
        keys.sort_by(|a, b| a.0.cmp(b.0));
        e.u64(keys.len() as u64);
        for (k, kg) in keys {
            e.bytes(k);
            e.u32(kg.values.len() as u32);
            for v in kg.values.iter() {
                encode_opt_datum(e, Some(v));
            }
            e.u32(kg.windows.len() as u32);
            for (start, g) in &kg.windows {
                e.i64(*start).i64(g.end).i64(g.max_ts).u8(g.finalized as u8);
                match &g.accs {
                    GroupAccs::Live(accs) => {
                        e.u8(0).u32(accs.len() as u32);
                        for a in accs {
                            a.encode(e);
                        }
                    }
                    GroupAccs::Final(results) => {
                        e.u8(1).u32(results.len() as u32);
                        for r in results {
                            encode_opt_datum(e, Some(r));
                        }
                    }
                }
            }
        }
    }

    pub fn decode(d: &mut Decoder<'_>) -> Result<AggregateState, WireError> {
        let mut s = AggregateState::new();
        let n = d.u64()?;
        for _ in 0..n {
            let key: Box<[u8]> = d.bytes()?.into();
            let nv = d.u32()? as usize;
            if nv > d.remaining() {
                return Err(WireError::Invalid("key width"));
            }
            let values: Vec<OwnedDatum> =
                (0..nv).map(|_| decode_opt_datum(d).map(Option::unwrap_or_default)).collect::<Result<_, _>>()?;
            let nw = d.u32()? as usize;
            let mut windows = BTreeMap::new();
            for _ in 0..nw {
                let (start, end, max_ts, finalized) = (d.i64()?, d.i64()?, d.i64()?, d.u8()? != 0);
                let kind = d.u8()?;
                let k = d.u32()? as usize;
                if k > d.remaining() {
                    return Err(WireError::Invalid("aggregate count"));
                }
                let accs = if kind == 0 {
                    GroupAccs::Live((0..k).map(|_| Acc::decode(d)).collect::<Result<_, _>>()?)
                } else {
                    GroupAccs::Final(
                        (0..k).map(|_| decode_opt_datum(d).map(Option::unwrap_or_default)).collect::<Result<_, _>>()?,
                    )
                };
                if !finalized && end != i64::MAX {
                    s.pending.entry(end).or_default().push((key.clone(), start));
                }
                if end != i64::MAX {
                    // Eviction entries for every window (harmless without a TTL: never due).
                    s.expiring.entry(end).or_default().push((key.clone(), start));
                }
                windows.insert(start, GroupEntry { end, accs, max_ts, finalized });
                s.rows += 1;
            }
            s.keys.insert(key, KeyGroups { values: values.into(), windows });
        }
        Ok(s)
    }
}

impl Default for AggregateState {
    fn default() -> Self {
        Self::new()
    }
}
