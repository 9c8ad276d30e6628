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

use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use std::hash::BuildHasher;

use crate::dataflow::accumulator::{decode_opt_datum, encode_opt_datum, Acc, AggFunc, Position};
use crate::dataflow::direct_group_index::DirectGroupIndex;
use crate::dataflow::group_key::GroupKey;
use crate::dataflow::int_group_index::{IntGroupIndex, INT_KEYS_MAX};
use crate::dataflow::plan::{AggPlan, AggregatePlan, ColumnInfo, LatePolicy, ViewOptions, WindowPlan};
use crate::dataflow::row::ColumnRow;
use crate::dataflow::window::{assign, tumble_window, SessionSet};
use crate::dataflow::window_map::WindowMap;
use crate::record::columns::{null_at, ArchivedVarColumn, ColumnRef};
use crate::sql::expr::{Expr, Row, Stored};
use crate::sql::types::{DataType, Datum, OwnedDatum};
use crate::wire::{Decoder, Encoder, WireError};
use hashbrown::{DefaultHashBuilder, HashMap, HashTable};

/// One group's partial aggregate (per window), on its way to the group's owner.
#[derive(Debug, Clone)]
pub struct PartialGroup {
    /// The encoded group key (without the window): what decides the owner shard.
    pub key: GroupKey,
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
        let key = GroupKey::from_slice(d.bytes()?);
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

/// Which datum an integer key column holds (its SQL type decides it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IntKind {
    Int,
    Timestamp,
}

/// The group keys of a plan whose every key is a plain INT, BIGINT or TIMESTAMP column.
#[derive(Debug, Clone, Copy)]
struct IntKeys {
    columns: [(usize, IntKind); INT_KEYS_MAX],
    len: usize,
}

impl IntKeys {
    fn of(plan: &AggregatePlan) -> Option<IntKeys> {
        if plan.keys.is_empty() || plan.keys.len() > INT_KEYS_MAX || plan.key_types.len() != plan.keys.len() {
            return None;
        }
        let mut columns = [(0, IntKind::Int); INT_KEYS_MAX];
        for (slot, (k, ty)) in columns.iter_mut().zip(plan.keys.iter().zip(&plan.key_types)) {
            let Expr::Column(c) = k else { return None };
            let kind = match ty {
                DataType::Int | DataType::BigInt => IntKind::Int,
                DataType::Timestamp => IntKind::Timestamp,
                _ => return None,
            };
            *slot = (*c, kind);
        }
        Some(IntKeys { columns, len: plan.keys.len() })
    }

    /// The row's key values; `None` when a key is NULL or not of its column's kind (the
    /// row's group is then found by its key bytes).
    #[inline]
    fn ident(&self, row: &(impl Row + ?Sized)) -> Option<[i64; INT_KEYS_MAX]> {
        let mut id = [i64::MIN; INT_KEYS_MAX];
        for (slot, &(c, kind)) in id.iter_mut().zip(&self.columns[..self.len]) {
            *slot = match (kind, row.get(c)) {
                (IntKind::Int, Datum::Int(v)) | (IntKind::Timestamp, Datum::Timestamp(v)) => v,
                _ => return None,
            };
        }
        Some(id)
    }
}

/// The column of a plan's group key when that is one TEXT column.
fn text_key_of(plan: &AggregatePlan) -> Option<usize> {
    match (plan.keys.as_slice(), plan.key_types.as_slice()) {
        ([Expr::Column(c)], [DataType::Text]) => Some(*c),
        _ => None,
    }
}

/// The group keys the archived fold reads in place.
#[derive(Debug, Clone, Copy)]
enum ArchivedKeys {
    Ints(IntKeys),
    /// One TEXT column: the string is hashed and compared where it lies.
    Text(usize),
}

/// A plan that stage 1 can fold straight from archived source rows: integer keys (or one
/// TEXT key), no
/// session window, and every aggregate argument a plain column (or none). Only for rows
/// of the source alone: a view with a table join evaluates its joined row.
#[derive(Debug, Clone)]
struct ArchivedFold {
    keys: ArchivedKeys,
    /// Per aggregate: the column it reads (`None`: count(*)).
    args: Vec<Option<usize>>,
    /// Rows narrower than this (written before a column existed) take the general path.
    width_min: usize,
}

impl ArchivedFold {
    fn of(plan: &AggregatePlan, int_keys: Option<IntKeys>) -> Option<ArchivedFold> {
        let keys = match (int_keys, text_key_of(plan)) {
            (Some(k), _) => ArchivedKeys::Ints(k),
            (None, Some(c)) => ArchivedKeys::Text(c),
            (None, None) => return None,
        };
        if matches!(plan.window, Some(WindowPlan::Session { .. })) {
            return None;
        }
        let args = plan
            .aggs
            .iter()
            .map(|a| match &a.arg {
                None => Some(None),
                Some(Expr::Column(c)) => Some(Some(*c)),
                Some(_) => None,
            })
            .collect::<Option<Vec<_>>>()?;
        let key_columns: Vec<usize> = match keys {
            ArchivedKeys::Ints(k) => k.columns[..k.len].iter().map(|&(c, _)| c).collect(),
            ArchivedKeys::Text(c) => vec![c],
        };
        let width_min = key_columns.into_iter().chain(args.iter().flatten().copied()).max()? + 1;
        Some(ArchivedFold { keys, args, width_min })
    }

    /// How the row's group is found; `None` when a key is NULL or not of its column's
    /// kind (the general fold takes the row).
    #[inline]
    fn lookup<'v, R: Row + ?Sized>(&self, row: &'v R) -> Option<GroupLookup<'v>> {
        let ints = match self.keys {
            ArchivedKeys::Ints(ints) => ints,
            ArchivedKeys::Text(c) => {
                return match row.stored(c) {
                    Stored::Text(t) => Some(GroupLookup::Text(t)),
                    _ => None,
                }
            }
        };
        let mut id = [i64::MIN; INT_KEYS_MAX];
        for (slot, &(c, kind)) in id.iter_mut().zip(&ints.columns[..ints.len]) {
            *slot = match (kind, row.stored(c)) {
                (IntKind::Int, Stored::Int(v)) | (IntKind::Timestamp, Stored::Timestamp(v)) => v,
                _ => return None,
            };
        }
        Some(GroupLookup::Ints(id))
    }
}

/// An integer column as the column fold reads it: `None` for a NULL.
#[derive(Clone, Copy)]
enum IntColumn<'a> {
    /// A BIGINT or TIMESTAMP column without NULLs in this batch (the common case, read
    /// without its bitmap).
    Dense64(&'a [rkyv::Archived<i64>]),
    I64 {
        nulls: &'a [u8],
        values: &'a [rkyv::Archived<i64>],
    },
    I32 {
        nulls: &'a [u8],
        values: &'a [rkyv::Archived<i32>],
    },
}

impl<'a> IntColumn<'a> {
    /// A 64-bit column: the bitmap is left out when it marks nothing.
    fn of_i64(nulls: &'a [u8], values: &'a [rkyv::Archived<i64>]) -> Self {
        if nulls.is_empty() {
            IntColumn::Dense64(values)
        } else {
            IntColumn::I64 { nulls, values }
        }
    }

    #[inline]
    fn get(&self, i: usize) -> Option<i64> {
        match *self {
            IntColumn::Dense64(values) => values.get(i).map(|v| v.to_native()),
            IntColumn::I64 { nulls, values } if !null_at(nulls, i) => values.get(i).map(|v| v.to_native()),
            IntColumn::I32 { nulls, values } if !null_at(nulls, i) => values.get(i).map(|v| v.to_native() as i64),
            _ => None,
        }
    }
}

/// The column fold's commonest shape: one integer key and integer arguments (or none:
/// `count(*)`), all without NULLs in the batch, in tumbling windows or none.
struct DenseFold<'a> {
    key: &'a [rkyv::Archived<i64>],
    /// Each aggregate's argument column (the first `arg_count`); `None` counts the row.
    args: [Option<&'a [rkyv::Archived<i64>]>; DENSE_ARGS_MAX],
    arg_count: usize,
    tumble_ms: Option<i64>,
}

/// Rows the dense column fold finds groups for before it updates their accumulators.
const DENSE_BLOCK_ROWS: usize = 64;

/// The most aggregates [`DenseFold`] takes (a fixed array: no allocation per batch); a
/// view with more goes through the general loop.
const DENSE_ARGS_MAX: usize = 8;

/// The dense fold's accumulators when every aggregate is a count or an integer sum: per
/// group its rows (lane 0), each sum wrapping in i64 (lanes `1..=sum_count`) and each
/// sum's carries, the times it wrapped (the next `sum_count` lanes, touched only then), in
/// one flat vector, merged into the group's `Acc`s when the table drains. The fold then
/// touches 16 bytes a group for count+sum where it touched two 64-byte `Acc`s, which
/// missed L1 (perf: the load of an `Acc`'s tag held a fifth of the fold; `bench --bin
/// fold`, `tumble_columns`: 11.6 -> 8.9 ns a row).
#[derive(Debug, Clone, Copy)]
struct LanePlan {
    /// Per aggregate: which lane it reads.
    kinds: [LaneKind; DENSE_ARGS_MAX],
    /// The aggregate of each sum lane, in lane order (the first `sum_count`).
    sum_aggs: [usize; DENSE_ARGS_MAX],
    sum_count: usize,
}

#[derive(Debug, Clone, Copy)]
enum LaneKind {
    /// count(*) or count(col): the dense fold takes no NULL, so both count rows.
    Rows,
    /// The k-th sum lane.
    Sum(usize),
}

impl LanePlan {
    /// Lanes for a plan of the dense fold's shape (one BIGINT or TIMESTAMP key, a tumbling
    /// window or none, plain columns: `archived`; BIGINT arguments), counts and sums only.
    /// Its batches with a NULL still take the `Acc`s.
    fn of(plan: &AggregatePlan, archived: Option<&ArchivedFold>) -> Option<LanePlan> {
        let ArchivedKeys::Ints(keys) = archived?.keys else { return None };
        let one_wide_key = keys.len == 1 && matches!(plan.key_types[..], [DataType::BigInt | DataType::Timestamp]);
        if !one_wide_key
            || !matches!(plan.window, None | Some(WindowPlan::Tumble { .. }))
            || plan.aggs.is_empty()
            || plan.aggs.len() > DENSE_ARGS_MAX
        {
            return None;
        }
        let mut lanes =
            LanePlan { kinds: [LaneKind::Rows; DENSE_ARGS_MAX], sum_aggs: [0; DENSE_ARGS_MAX], sum_count: 0 };
        for (i, a) in plan.aggs.iter().enumerate() {
            // The dense fold reads only BIGINT arguments (`ColumnArg::Int(Dense64)`).
            let bigint_arg = a.arg_type == DataType::BigInt;
            lanes.kinds[i] = match a.func {
                AggFunc::CountStar => LaneKind::Rows,
                AggFunc::Count if bigint_arg => LaneKind::Rows,
                AggFunc::Sum if bigint_arg => {
                    lanes.sum_aggs[lanes.sum_count] = i;
                    lanes.sum_count += 1;
                    LaneKind::Sum(lanes.sum_count - 1)
                }
                _ => return None,
            };
        }
        Some(lanes)
    }

    /// Lanes per group: the rows, the sums, their carries.
    fn width(&self) -> usize {
        1 + 2 * self.sum_count
    }

    /// Folds one group's lanes into its accumulators. A sum's total is its lane plus its
    /// carries times 2^64, exact in i128: an integer when it fits in i64, else one
    /// conversion to floating point (never less exact than adding row by row).
    fn merge_into(&self, accs: &mut [Acc], lanes: &[i64]) {
        debug_assert_eq!(lanes.len(), self.width());
        let rows = lanes[0];
        if rows == 0 {
            return;
        }
        for (acc, kind) in accs.iter_mut().zip(&self.kinds) {
            match *kind {
                LaneKind::Rows => acc.merge(&Acc::Count(rows)),
                LaneKind::Sum(k) => {
                    let total = lanes[1 + k] as i128 + ((lanes[1 + self.sum_count + k] as i128) << 64);
                    acc.merge(&match i64::try_from(total) {
                        Ok(int) => Acc::Sum { int, float: 0.0, is_float: false, any: true },
                        Err(_) => Acc::Sum { int: 0, float: total as f64, is_float: true, any: true },
                    });
                }
            }
        }
    }
}

impl<'a> DenseFold<'a> {
    fn of(keys: &[IntColumn<'a>], args: &[ColumnArg<'a>], window: Option<WindowPlan>) -> Option<Self> {
        let [IntColumn::Dense64(key)] = keys else { return None };
        let tumble_ms = match window {
            Some(WindowPlan::Tumble { size_ms }) => Some(size_ms),
            None => None,
            Some(_) => return None,
        };
        if args.len() > DENSE_ARGS_MAX {
            return None;
        }
        let mut dense = DenseFold { key, args: [None; DENSE_ARGS_MAX], arg_count: args.len(), tumble_ms };
        for (slot, arg) in dense.args.iter_mut().zip(args) {
            *slot = match arg {
                ColumnArg::One => None,
                ColumnArg::Int(IntColumn::Dense64(values)) => Some(*values),
                _ => return None,
            };
        }
        Some(dense)
    }
}

/// An aggregate's argument in the column fold.
enum ColumnArg<'a> {
    /// count(*): every row counts one.
    One,
    Int(IntColumn<'a>),
    /// Any other column, read as a datum.
    Row(usize),
}

/// Updates a group's accumulators with one row of the column fold.
#[inline(always)]
fn update_column_accs(accs: &mut [Acc], aggs: &[AggPlan], args: &[ColumnArg<'_>], row: &ColumnRow<'_>, pos: Position) {
    let index = row.index;
    for ((acc, a), arg) in accs.iter_mut().zip(aggs).zip(args) {
        match arg {
            ColumnArg::One => acc.update_int(a.func, 1, pos),
            ColumnArg::Int(values) => {
                if let Some(v) = values.get(index) {
                    acc.update_int(a.func, v, pos);
                }
            }
            ColumnArg::Row(c) => acc.update(a.func, &row.get(*c), pos),
        }
    }
}

/// Calls `f` with every window of `ts` (tumbling, hopping), or once with none.
#[inline(always)]
fn assign_or_none(window: Option<WindowPlan>, ts: i64, mut f: impl FnMut(Option<(i64, i64)>)) {
    match window {
        Some(w) => assign(w, ts, |s, e| f(Some((s, e)))),
        None => f(None),
    }
}

/// The group keys the column fold reads.
enum ColumnKeys<'a> {
    Ints([IntColumn<'a>; INT_KEYS_MAX], usize),
    Text(&'a ArchivedVarColumn),
}

/// A plan the column fold takes, with its columns in one batch: the archived fold's plans
/// (integer keys of their columns' kinds or one TEXT key; no session window).
struct ColumnFold<'a> {
    keys: ColumnKeys<'a>,
    args: Vec<ColumnArg<'a>>,
}

impl<'a> ColumnFold<'a> {
    fn of(fold: Option<&ArchivedFold>, batch: &[ColumnRef<'a>]) -> Option<ColumnFold<'a>> {
        let fold = fold?;
        if batch.len() < fold.width_min {
            return None;
        }
        let keys = match fold.keys {
            ArchivedKeys::Ints(ints) => {
                let empty = IntColumn::Dense64(&[]);
                let mut keys = [empty; INT_KEYS_MAX];
                for (slot, &(c, kind)) in keys.iter_mut().zip(&ints.columns[..ints.len]) {
                    *slot = match (kind, batch.get(c)?) {
                        (IntKind::Int, ColumnRef::BigInt { nulls, values })
                        | (IntKind::Timestamp, ColumnRef::Timestamp { nulls, values }) => {
                            IntColumn::of_i64(nulls, values)
                        }
                        (IntKind::Int, ColumnRef::Int { nulls, values }) => IntColumn::I32 { nulls, values },
                        _ => return None,
                    };
                }
                ColumnKeys::Ints(keys, ints.len)
            }
            ArchivedKeys::Text(c) => match batch.get(c)? {
                ColumnRef::Text(texts) => ColumnKeys::Text(texts),
                _ => return None,
            },
        };
        let args = fold
            .args
            .iter()
            .map(|arg| match arg.map(|c| (c, batch.get(c))) {
                None => ColumnArg::One,
                Some((_, Some(ColumnRef::BigInt { nulls, values }))) => {
                    ColumnArg::Int(IntColumn::of_i64(nulls, values))
                }
                Some((_, Some(ColumnRef::Int { nulls, values }))) => ColumnArg::Int(IntColumn::I32 { nulls, values }),
                Some((c, _)) => ColumnArg::Row(c),
            })
            .collect();
        Some(ColumnFold { keys, args })
    }
}

/// How a row's group is found.
#[derive(Clone, Copy)]
enum GroupLookup<'k> {
    /// By integer keys (and the window start).
    Ints([i64; INT_KEYS_MAX]),
    /// By one text key (and the window start).
    Text(&'k str),
    /// By the key bytes in `scratch[..len]` and the window start.
    Bytes(usize),
}

/// A group of the current round, without its accumulators (those are flat, beside).
struct GroupHead {
    owner: usize,
    key: GroupKey,
    key_values: Vec<OwnedDatum>,
    window: Option<(i64, i64)>,
}

impl GroupHead {
    /// The window start (`i64::MIN` unwindowed), the second half of the group's identity.
    fn start(&self) -> i64 {
        self.window.map_or(i64::MIN, |w| w.0)
    }

    /// The group's key when it is one text.
    fn text_key(&self) -> Option<&str> {
        match self.key_values.as_slice() {
            [Datum::Text(t)] => Some(t.as_ref()),
            _ => None,
        }
    }
}

/// Stage 1: one round's records folded per group and window.
///
/// The per-row work is a lookup and the accumulator updates, so the table is laid out
/// for it: groups whose keys are integer columns are found by an identity stored in the
/// hash table's own slots (no key bytes, no pointer to follow), and every group's
/// accumulators sit in one flat vector.
pub struct PartialTable {
    shards: usize,
    int_keys: Option<IntKeys>,
    /// The column of the plan's one TEXT key, if that is its key.
    text_key: Option<usize>,
    archived: Option<ArchivedFold>,
    /// Aggregates per group.
    aggs: usize,
    /// Groups whose keys are integer columns: by keys and window start, in place.
    by_ints: IntGroupIndex,
    /// The dense fold's groups keyed by one integer from a small range, before `by_ints`.
    direct: DirectGroupIndex,
    /// (window start, position in `heads`) by text key and window start.
    by_text: HashTable<(i64, u32)>,
    /// Positions in `heads` by (key bytes, window start), hashed once, compared in place.
    by_bytes: HashTable<u32>,
    hasher: DefaultHashBuilder,
    heads: Vec<GroupHead>,
    /// Accumulators of every group: group i's are `accs[i * aggs..(i + 1) * aggs]`.
    accs: Vec<Acc>,
    /// The latest event time of every group, apart from its head: the fold touches it per
    /// row, the head only when the group is made.
    max_ts: Vec<i64>,
    /// Whether the dense fold keeps this plan's aggregates in `lanes`.
    lane_plan: Option<LanePlan>,
    /// Lanes of every group (see [`LanePlan`]): group i's are `lanes[i * w..(i + 1) * w]`,
    /// `w` the plan's lane width (none without a lane plan).
    lanes: Vec<i64>,
    /// Scratch for the group key being looked up.
    scratch: Vec<u8>,
    sessions: HashMap<GroupKey, (usize, Vec<OwnedDatum>, SessionSet, i64)>,
    /// A drain in slices is under way: the indexes are cleared, nothing may be added.
    draining: bool,
}

impl PartialTable {
    /// A table for the aggregate `plan` (if the view has one).
    pub fn new(shards: usize, plan: Option<&AggregatePlan>) -> Self {
        let archived = plan.and_then(|p| ArchivedFold::of(p, IntKeys::of(p)));
        PartialTable {
            shards,
            int_keys: plan.and_then(IntKeys::of),
            text_key: plan.and_then(text_key_of),
            archived: archived.clone(),
            aggs: plan.map_or(0, |p| p.aggs.len()),
            by_ints: IntGroupIndex::new(),
            direct: DirectGroupIndex::new(),
            by_text: HashTable::new(),
            by_bytes: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
            heads: Vec::new(),
            accs: Vec::new(),
            max_ts: Vec::new(),
            lane_plan: plan.and_then(|p| LanePlan::of(p, archived.as_ref())),
            lanes: Vec::new(),
            scratch: Vec::with_capacity(64),
            sessions: HashMap::new(),
            draining: false,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.heads.is_empty() && self.sessions.is_empty()
    }

    /// Folds one input row in: finds its group in every window the event falls in, then
    /// updates the group's accumulators.
    #[inline]
    pub fn add(&mut self, plan: &AggregatePlan, row: &(impl Row + ?Sized), ts: i64, pos: Position) {
        if let Some(WindowPlan::Session { gap_ms }) = plan.window {
            self.add_to_session(plan, row, ts, pos, gap_ms);
            return;
        }
        if row.stored_width().is_some_and(|width| self.add_archived(plan, row, width, ts, pos)) {
            return;
        }
        let text_key = self.text_key.map(|c| row.get(c));
        let lookup = match (self.int_keys.and_then(|k| k.ident(row)), &text_key) {
            (Some(id), _) => GroupLookup::Ints(id),
            (None, Some(Datum::Text(t))) => GroupLookup::Text(t),
            (None, _) => {
                self.scratch.clear();
                for k in &plan.keys {
                    k.eval(row).encode_key(&mut self.scratch);
                }
                GroupLookup::Bytes(self.scratch.len())
            }
        };
        match plan.window {
            Some(window) => assign(window, ts, |s, e| {
                let i = self.find_or_insert(plan, row, lookup, Some((s, e)), ts);
                self.update(plan, row, i, ts, pos);
            }),
            None => {
                let i = self.find_or_insert(plan, row, lookup, None, ts);
                self.update(plan, row, i, ts, pos);
            }
        }
    }

    /// `add` for a source row read in place (row or columnar batch): keys and arguments
    /// come straight from the stored values, with no expression or datum in between.
    /// Returns false, having changed nothing, when the plan or the row needs the general
    /// path. `width` is the row's stored width.
    #[inline]
    fn add_archived(
        &mut self,
        plan: &AggregatePlan,
        row: &(impl Row + ?Sized),
        width: usize,
        ts: i64,
        pos: Position,
    ) -> bool {
        let Some(fold) = &self.archived else { return false };
        if width < fold.width_min {
            return false;
        }
        let Some(lookup) = fold.lookup(row) else { return false };
        // The same window walk as `add`'s, on purpose: behind a shared helper taking the
        // closure, the closure stayed out of line (`bench --bin fold`: 27 -> 44 ns/row).
        match plan.window {
            Some(window) => assign(window, ts, |s, e| {
                let i = self.find_or_insert(plan, row, lookup, Some((s, e)), ts);
                self.update_archived(plan, row, i, ts, pos);
            }),
            None => {
                let i = self.find_or_insert(plan, row, lookup, None, ts);
                self.update_archived(plan, row, i, ts, pos);
            }
        }
        true
    }

    #[inline]
    fn update_archived(&mut self, plan: &AggregatePlan, row: &(impl Row + ?Sized), i: usize, ts: i64, pos: Position) {
        self.max_ts[i] = self.max_ts[i].max(ts);
        let n = self.aggs;
        let Some(fold) = &self.archived else { return };
        for ((acc, a), arg) in self.accs[i * n..(i + 1) * n].iter_mut().zip(&plan.aggs).zip(&fold.args) {
            match arg.map(|c| (c, row.stored(c))) {
                None => acc.update_int(a.func, 1, pos),
                Some((_, Stored::Int(v))) => acc.update_int(a.func, v, pos),
                Some((_, Stored::Null)) => {}
                Some((c, _)) => acc.update(a.func, &row.get(c), pos),
            }
        }
    }

    /// Folds rows of a columnar batch, `rows` giving each one's index in the batch and
    /// event time: the keys' and arguments' columns are found once, then every row is read
    /// straight from them (the per-row work is the group lookup and the accumulators).
    /// Rows this cannot take (a NULL key, a plan of another shape) go through [`Self::add`],
    /// so the result is the same as adding every row there (but for sums past i64 in the
    /// lanes: exact there, see [`LanePlan`]).
    pub fn add_columns(
        &mut self,
        plan: &AggregatePlan,
        batch: &[ColumnRef<'_>],
        columns: &[ColumnInfo],
        rows: impl Iterator<Item = (u32, i64)>,
        partition: u32,
        base_offset: u64,
    ) {
        let position = |i: u32, ts: i64| Position { ts, partition, offset: base_offset + i as u64 };
        let Some(spec) = ColumnFold::of(self.archived.as_ref(), batch) else {
            for (i, ts) in rows {
                self.add(plan, &ColumnRow { batch, index: i as usize, columns }, ts, position(i, ts));
            }
            return;
        };
        let n = self.aggs;
        let keys = match &spec.keys {
            ColumnKeys::Ints(keys, count) => &keys[..*count],
            ColumnKeys::Text(texts) => {
                for (i, ts) in rows {
                    let index = i as usize;
                    let row = ColumnRow { batch, index, columns };
                    // SAFETY: columnar batches read from the log were built from validated strings.
                    let Some(text) = (unsafe { texts.get_str(index) }) else {
                        self.add(plan, &row, ts, position(i, ts));
                        continue;
                    };
                    let pos = position(i, ts);
                    assign_or_none(plan.window, ts, |window| {
                        let g = self.find_or_insert_text(plan, &row, text, window, ts);
                        self.max_ts[g] = self.max_ts[g].max(ts);
                        update_column_accs(&mut self.accs[g * n..(g + 1) * n], &plan.aggs, &spec.args, &row, pos);
                    });
                }
                return;
            }
        };
        if let Some(dense) = DenseFold::of(keys, &spec.args, plan.window) {
            self.add_columns_dense(plan, &dense, batch, columns, rows, partition, base_offset);
            return;
        }
        // Integer keys: the index itself, in line, not `find_or_insert` nor a helper taking
        // the window as an option (either cost this loop half again: 17 -> 26 ns a row,
        // `bench --bin fold`).
        'rows: for (i, ts) in rows {
            let index = i as usize;
            let mut id = [i64::MIN; INT_KEYS_MAX];
            for (slot, key) in id.iter_mut().zip(keys) {
                match key.get(index) {
                    Some(v) => *slot = v,
                    None => {
                        self.add(plan, &ColumnRow { batch, index, columns }, ts, position(i, ts));
                        continue 'rows;
                    }
                }
            }
            let pos = position(i, ts);
            let fold_into = |table: &mut Self, start: i64, end: i64, window: bool| {
                let row = ColumnRow { batch, index, columns };
                let g = match table.by_ints.find(&id, start) {
                    Ok(g) => g as usize,
                    Err(at) => {
                        let g = table.insert_group_keyed_by_row(plan, &row, window.then_some((start, end)), ts);
                        table.by_ints.insert(at, id, start, g as u32);
                        g
                    }
                };
                table.max_ts[g] = table.max_ts[g].max(ts);
                update_column_accs(&mut table.accs[g * n..(g + 1) * n], &plan.aggs, &spec.args, &row, pos);
            };
            match plan.window {
                Some(WindowPlan::Tumble { size_ms }) => {
                    let (start, end) = tumble_window(ts, size_ms);
                    fold_into(self, start, end, true);
                }
                Some(window) => assign(window, ts, |s, e| fold_into(self, s, e, true)),
                None => fold_into(self, i64::MIN, i64::MIN, false),
            }
        }
    }

    /// The column fold's commonest shape (see [`DenseFold`]): every value read straight
    /// from its column, no NULL to look for, the window found without a closure.
    #[allow(clippy::too_many_arguments)]
    fn add_columns_dense(
        &mut self,
        plan: &AggregatePlan,
        dense: &DenseFold<'_>,
        batch: &[ColumnRef<'_>],
        columns: &[ColumnInfo],
        mut rows: impl Iterator<Item = (u32, i64)>,
        partition: u32,
        base_offset: u64,
    ) {
        let n = self.aggs;
        // The last window found: event time mostly stays in one, sparing a division a row.
        let mut window = (i64::MAX, i64::MIN);
        let args = &dense.args[..dense.arg_count];
        // A block of rows at a time: first every row's group, then the accumulators. The
        // index probes of a block do not wait on each other, so the CPU overlaps their
        // cache misses; interleaved with the accumulator updates it held few at once.
        let mut block = [(0u32, 0i64, 0u32); DENSE_BLOCK_ROWS];
        if self.direct.needs_range() {
            let keys = dense.key.iter().map(|k| k.to_native());
            if let Some((min, max)) = keys.fold(None, |r, k| match r {
                None => Some((k, k)),
                Some((lo, hi)) => Some((k.min(lo), k.max(hi))),
            }) {
                self.direct.set_range(min, max);
            }
        }
        // Rows whose group the arrays lack (place in the block, key, window): their index
        // slots are prefetched and looked up after the block's other rows (they are cold).
        let mut missed = [(0usize, 0i64, (0i64, 0i64)); DENSE_BLOCK_ROWS];
        // Counts and integer sums go to the lanes: each sum lane's column.
        let lane_columns = self.lane_plan.and_then(|lanes| {
            let mut sums: [&[rkyv::Archived<i64>]; DENSE_ARGS_MAX] = [&[]; DENSE_ARGS_MAX];
            for (column, &agg) in sums.iter_mut().zip(&lanes.sum_aggs[..lanes.sum_count]) {
                *column = (*args.get(agg)?)?;
            }
            Some((lanes, sums))
        });
        loop {
            let mut len = 0;
            let mut misses = 0;
            for (i, ts) in rows.by_ref().take(DENSE_BLOCK_ROWS) {
                let index = i as usize;
                let key = dense.key[index].to_native();
                let (start, end) = match dense.tumble_ms {
                    Some(_) if window.0 <= ts && ts < window.1 => window,
                    Some(size_ms) => {
                        let found = tumble_window(ts, size_ms);
                        // A window cut short at i64::MIN is not kept: the next one starts inside it.
                        if found.0 != i64::MIN {
                            window = found;
                        }
                        found
                    }
                    None => (i64::MIN, i64::MIN),
                };
                let g = match self.direct.get(key, start) {
                    Some(g) => g,
                    None => {
                        self.by_ints.prefetch(&[key, i64::MIN], start);
                        missed[misses] = (len, key, (start, end));
                        misses += 1;
                        0
                    }
                };
                block[len] = (i, ts, g);
                len += 1;
            }
            for &(at, key, (start, end)) in &missed[..misses] {
                let (i, ts, _) = block[at];
                // An earlier row of the block may have made the group since.
                block[at].2 = match self.direct.get(key, start) {
                    Some(g) => g,
                    None => self.dense_group_slow(plan, dense, batch, columns, i as usize, key, (start, end), ts),
                };
            }
            if len == 0 {
                return;
            }
            if let Some((lane_plan, sums)) = &lane_columns {
                let (w, sum_count) = (lane_plan.width(), lane_plan.sum_count);
                for &(i, ts, g) in &block[..len] {
                    let (index, g) = (i as usize, g as usize);
                    self.max_ts[g] = self.max_ts[g].max(ts);
                    let lanes = &mut self.lanes[g * w..(g + 1) * w];
                    lanes[0] += 1;
                    for (k, values) in sums[..sum_count].iter().enumerate() {
                        let v = values[index].to_native();
                        let (sum, wrapped) = lanes[1 + k].overflowing_add(v);
                        lanes[1 + k] = sum;
                        if wrapped {
                            // Wrapped up past i64::MAX (a positive value) or down past MIN.
                            lanes[1 + sum_count + k] += if v < 0 { -1 } else { 1 };
                        }
                    }
                }
                continue;
            }
            for &(i, ts, g) in &block[..len] {
                let (index, g) = (i as usize, g as usize);
                self.max_ts[g] = self.max_ts[g].max(ts);
                let pos = Position { ts, partition, offset: base_offset + i as u64 };
                for ((acc, a), arg) in self.accs[g * n..(g + 1) * n].iter_mut().zip(&plan.aggs).zip(args) {
                    let v = match arg {
                        Some(values) => values[index].to_native(),
                        None => 1,
                    };
                    acc.update_int(a.func, v, pos);
                }
            }
        }
    }

    /// The dense fold's group of (key, window) when the arrays do not have it: found in
    /// (or added to) the index, and put in the arrays.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn dense_group_slow(
        &mut self,
        plan: &AggregatePlan,
        dense: &DenseFold<'_>,
        batch: &[ColumnRef<'_>],
        columns: &[ColumnInfo],
        index: usize,
        key: i64,
        (start, end): (i64, i64),
        ts: i64,
    ) -> u32 {
        let id = [key, i64::MIN];
        let g = match self.by_ints.find(&id, start) {
            Ok(g) => g,
            Err(at) => {
                let row = ColumnRow { batch, index, columns };
                let window = dense.tumble_ms.map(|_| (start, end));
                let g = self.insert_group_keyed_by_row(plan, &row, window, ts) as u32;
                self.by_ints.insert(at, id, start, g);
                g
            }
        };
        self.direct.put(key, start, g);
        g
    }

    fn add_to_session(&mut self, plan: &AggregatePlan, row: &(impl Row + ?Sized), ts: i64, pos: Position, gap_ms: i64) {
        self.scratch.clear();
        for k in &plan.keys {
            k.eval(row).encode_key(&mut self.scratch);
        }
        let shards = self.shards;
        let key = &self.scratch[..];
        let entry = self.sessions.entry_ref(key).or_insert_with(|| {
            let owner = super::row::owner_of(key, shards);
            let values = plan.keys.iter().map(|k| k.eval(row).into_owned()).collect();
            (owner, values, SessionSet::default(), ts)
        });
        let mut accs: Vec<Acc> = plan.aggs.iter().map(|a| a.func.new_acc()).collect();
        for (acc, a) in accs.iter_mut().zip(&plan.aggs) {
            acc.update(a.func, &arg_value(a, row), pos);
        }
        entry.2.insert(ts, ts.saturating_add(gap_ms), &accs, &plan.aggs);
        entry.3 = entry.3.max(ts);
    }

    /// The index in `heads` of the row's group in `window`, made if new.
    #[inline]
    fn find_or_insert(
        &mut self,
        plan: &AggregatePlan,
        row: &(impl Row + ?Sized),
        lookup: GroupLookup<'_>,
        window: Option<(i64, i64)>,
        ts: i64,
    ) -> usize {
        let start = window.map_or(i64::MIN, |w| w.0);
        match lookup {
            GroupLookup::Ints(keys) => match self.by_ints.find(&keys, start) {
                Ok(i) => i as usize,
                Err(at) => {
                    let i = self.insert_group_keyed_by_row(plan, row, window, ts);
                    self.by_ints.insert(at, keys, start, i as u32);
                    i
                }
            },
            GroupLookup::Text(text) => self.find_or_insert_text(plan, row, text, window, ts),
            GroupLookup::Bytes(len) => {
                let Self { by_bytes, hasher, heads, scratch, .. } = self;
                let key = &scratch[..len];
                let hash = hasher.hash_one((key, start));
                let same = |&i: &u32| {
                    let g = &heads[i as usize];
                    g.start() == start && *g.key == *key
                };
                if let Some(&i) = by_bytes.find(hash, same) {
                    return i as usize;
                }
                let i = self.insert_group(plan, row, len, window, ts);
                let Self { by_bytes, hasher, heads, .. } = self;
                by_bytes.insert_unique(hash, i as u32, |&j| {
                    let g = &heads[j as usize];
                    hasher.hash_one((&*g.key, g.start()))
                });
                i
            }
        }
    }

    /// `find_or_insert` for a group keyed by one text.
    #[inline(always)]
    fn find_or_insert_text(
        &mut self,
        plan: &AggregatePlan,
        row: &(impl Row + ?Sized),
        text: &str,
        window: Option<(i64, i64)>,
        ts: i64,
    ) -> usize {
        let start = window.map_or(i64::MIN, |w| w.0);
        let hash = self.hasher.hash_one((text, start));
        let heads = &self.heads;
        let same = |&(other, i): &(i64, u32)| other == start && heads[i as usize].text_key() == Some(text);
        if let Some(&(_, i)) = self.by_text.find(hash, same) {
            return i as usize;
        }
        let i = self.insert_group_keyed_by_row(plan, row, window, ts);
        let Self { by_text, hasher, heads, .. } = self;
        by_text.insert_unique(hash, (start, i as u32), |&(start, j)| {
            hasher.hash_one((heads[j as usize].text_key().unwrap_or_default(), start))
        });
        i
    }

    /// A new group, keyed by `scratch[..key_len]`: its key bytes decide its owner and
    /// travel with the partial.
    /// A new group, keyed by the row's key bytes (encoded into `scratch` here). Out of line:
    /// it runs once a group, and in line it slowed the column fold's loop.
    #[inline(never)]
    fn insert_group_keyed_by_row(
        &mut self,
        plan: &AggregatePlan,
        row: &(impl Row + ?Sized),
        window: Option<(i64, i64)>,
        ts: i64,
    ) -> usize {
        self.scratch.clear();
        for k in &plan.keys {
            k.eval(row).encode_key(&mut self.scratch);
        }
        self.insert_group(plan, row, self.scratch.len(), window, ts)
    }

    fn insert_group(
        &mut self,
        plan: &AggregatePlan,
        row: &(impl Row + ?Sized),
        key_len: usize,
        window: Option<(i64, i64)>,
        ts: i64,
    ) -> usize {
        debug_assert!(!self.draining, "a group added while the table drains");
        let key = GroupKey::from_slice(&self.scratch[..key_len]);
        let i = self.heads.len();
        debug_assert!(i < u32::MAX as usize);
        self.heads.push(GroupHead {
            owner: super::row::owner_of(&key, self.shards),
            key,
            key_values: plan.keys.iter().map(|k| k.eval(row).into_owned()).collect(),
            window,
        });
        self.max_ts.push(ts);
        self.accs.extend(plan.aggs.iter().map(|a| a.func.new_acc()));
        if let Some(lanes) = &self.lane_plan {
            self.lanes.resize(self.lanes.len() + lanes.width(), 0);
        }
        i
    }

    #[inline]
    fn update(&mut self, plan: &AggregatePlan, row: &(impl Row + ?Sized), i: usize, ts: i64, pos: Position) {
        self.max_ts[i] = self.max_ts[i].max(ts);
        let n = self.aggs;
        debug_assert_eq!(n, plan.aggs.len());
        for (acc, a) in self.accs[i * n..(i + 1) * n].iter_mut().zip(&plan.aggs) {
            acc.update(a.func, &arg_value(a, row), pos);
        }
    }

    /// Takes the partials out, by owner shard.
    pub fn drain(&mut self, each: impl FnMut(usize, PartialGroup)) {
        let done = self.drain_some(usize::MAX, each);
        debug_assert!(done);
    }

    /// Takes at most `groups_max` partials out (the last made first), by owner shard; true
    /// once none is left. Between calls nothing may be added: the indexes are cleared on
    /// the first call, and the groups left are found by position only.
    pub fn drain_some(&mut self, groups_max: usize, mut each: impl FnMut(usize, PartialGroup)) -> bool {
        let aggs = self.aggs;
        if !self.draining {
            self.by_ints.clear();
            self.direct.clear();
            self.by_text.clear();
            self.by_bytes.clear();
            self.draining = true;
        }
        debug_assert_eq!(self.accs.len(), self.heads.len() * aggs);
        debug_assert_eq!(self.max_ts.len(), self.heads.len());
        // From the back, so what is left does not move; drained, not taken: the next
        // round reuses the capacity.
        let from = self.heads.len().saturating_sub(groups_max);
        // The lanes of the groups going out, merged into their accumulators in place.
        if let Some(lane_plan) = &self.lane_plan {
            let w = lane_plan.width();
            debug_assert_eq!(self.lanes.len(), self.heads.len() * w);
            for (accs, lanes) in self.accs[from * aggs..].chunks_mut(aggs).zip(self.lanes[from * w..].chunks(w)) {
                lane_plan.merge_into(accs, lanes);
            }
            self.lanes.truncate(from * w);
        }
        let mut accs = self.accs.drain(from * aggs..);
        for (h, max_ts) in self.heads.drain(from..).zip(self.max_ts.drain(from..)) {
            let group_accs = accs.by_ref().take(aggs).collect();
            each(
                h.owner,
                PartialGroup { key: h.key, key_values: h.key_values, window: h.window, accs: group_accs, max_ts },
            );
        }
        drop(accs);
        if !self.heads.is_empty() {
            return false;
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
        self.draining = false;
        true
    }
}

/// An aggregate's argument over a row (NULL for count(*)); a plain column is read
/// directly, without the expression interpreter.
#[inline]
fn arg_value<'r>(a: &'r AggPlan, row: &'r (impl Row + ?Sized)) -> Datum<'r> {
    match &a.arg {
        None => Datum::Null,
        Some(Expr::Column(c)) => row.get(*c),
        Some(e) => e.eval(row),
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
    pub windows: WindowMap<GroupEntry>,
}

/// A row of the view changed: for changelogs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Upsert { key: GroupKey, window_start: i64, final_result: bool },
    Delete { key: GroupKey, window_start: i64 },
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
    pub keys: HashMap<GroupKey, KeyGroups>,
    pub rows: usize,
    pub counters: AggregateCounters,
    /// Record changes (for a changelog topic); off, nothing is allocated for them.
    pub record_changes: bool,
    /// Windows not yet final, by end: the watermark finalizes them in order without
    /// looking at any other group. Entries for windows merged away are skipped.
    pending: BTreeMap<i64, Vec<(GroupKey, i64)>>,
    /// A due end of `pending` being finalized a slice at a time: its windows not yet
    /// finalized, in order.
    closing: Option<(i64, VecDeque<(GroupKey, i64)>)>,
    /// Windows by end, for eviction past the state TTL (only with a TTL).
    expiring: BTreeMap<i64, Vec<(GroupKey, i64)>>,
    /// Unwindowed groups past the TTL are found by a scan, at most this often (watermark).
    last_ttl_scan: i64,
    /// The last size estimate and when it was made: stats readers polling it must not
    /// cost the operator its throughput.
    size_cache: std::cell::Cell<Option<(std::time::Instant, usize)>>,
}

/// How stale a view's reported state size may be.
const SIZE_ESTIMATE_MAX_AGE_MS: u64 = 500;
/// Keys, and windows per key (the oldest half and the newest half), the size estimate
/// looks at; it scales what it saw up to every key and window. Walking every group held
/// the shard ~20 ms per estimate for a tumbling view over 60 M events (perf: 3.9% of the
/// shard's time at one estimate per 500 ms). Exact while the state is no larger.
const SIZE_SAMPLE_KEYS: usize = 64;
const SIZE_SAMPLE_WINDOWS: usize = 16;

impl AggregateState {
    pub fn new() -> Self {
        AggregateState {
            keys: HashMap::new(),
            rows: 0,
            counters: AggregateCounters::default(),
            record_changes: false,
            pending: BTreeMap::new(),
            closing: None,
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
        self.pending.entry(end).or_default().push((GroupKey::from_slice(key), start));
        if ttl {
            self.expiring.entry(end).or_default().push((GroupKey::from_slice(key), start));
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
        if sessions {
            if !self.keys.contains_key(&p.key) {
                if at_limit {
                    self.counters.refused_at_limit += 1;
                    return;
                }
                self.keys.insert(
                    p.key.clone(),
                    KeyGroups { values: p.key_values.clone().into(), windows: WindowMap::new() },
                );
            }
            // Merge every session the new one overlaps.
            let Some(kg) = self.keys.get_mut(&p.key) else { return };
            let mut merged_start = start;
            let mut merged_end = end;
            let mut accs: Vec<Acc> = plan.aggs.iter().map(|a| a.func.new_acc()).collect();
            for (m, a) in accs.iter_mut().zip(&p.accs) {
                m.merge(a);
            }
            let mut max_ts = p.max_ts;
            let mut removed = Vec::new();
            for (s, g) in kg.windows.take_overlapping(start, end, |g| g.end) {
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
        // One lookup of the key and one of its window (a partial per group and round).
        let kg = match self.keys.entry_ref(&*p.key) {
            hashbrown::hash_map::EntryRef::Occupied(o) => o.into_mut(),
            hashbrown::hash_map::EntryRef::Vacant(v) => {
                if at_limit {
                    self.counters.refused_at_limit += 1;
                    return;
                }
                v.insert(KeyGroups { values: p.key_values.clone().into(), windows: WindowMap::new() })
            }
        };
        let (entry, is_new) = match kg.windows.find(start) {
            Ok(i) => (kg.windows.at_mut(i), false),
            Err(i) => {
                if at_limit {
                    self.counters.refused_at_limit += 1;
                    return;
                }
                let accs = GroupAccs::Live(plan.aggs.iter().map(|a| a.func.new_acc()).collect());
                (kg.windows.insert_at(i, start, GroupEntry { end, accs, max_ts: p.max_ts, finalized: false }), true)
            }
        };
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
        self.keys.get(key).is_some_and(|k| k.windows.get(start).is_some_and(|g| matches!(g.accs, GroupAccs::Live(_))))
    }

    /// The watermark moved to `wm`: windows that ended are final (their accumulators
    /// become results, unless late rows may still correct them), and rows past the state
    /// TTL are evicted. Only the windows due are touched (timer queues by end).
    pub fn advance(&mut self, plan: &AggregatePlan, options: &ViewOptions, wm: i64, changes: &mut Vec<Change>) {
        self.advance_some(plan, options, wm, changes, usize::MAX);
    }

    /// `advance`, finalizing at most `groups_max` windows: false when some that are due
    /// are left for the next call (a replay closes a round's windows a slice at a time).
    pub fn advance_some(
        &mut self,
        plan: &AggregatePlan,
        options: &ViewOptions,
        wm: i64,
        changes: &mut Vec<Change>,
        groups_max: usize,
    ) -> bool {
        let keep_accs = options.late == LatePolicy::Update;
        let mut budget = groups_max;
        loop {
            let (end, mut left) = match self.closing.take() {
                Some(closing) => closing,
                None => match self.pending.first_entry() {
                    Some(entry) if *entry.key() <= wm => {
                        let (end, due) = entry.remove_entry();
                        // (A Vec becomes a VecDeque in place.)
                        (end, VecDeque::from(due))
                    }
                    _ => break,
                },
            };
            while let Some((key, start)) = left.pop_front() {
                if budget == 0 {
                    left.push_front((key, start));
                    self.closing = Some((end, left));
                    return false;
                }
                budget -= 1;
                let Some(kg) = self.keys.get_mut(&key) else { continue };
                let Some(g) = kg.windows.get_mut(start) else { continue };
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
        self.expire(plan, options, wm, changes);
        true
    }

    /// Rows past the state TTL as of watermark `wm` are evicted.
    fn expire(&mut self, plan: &AggregatePlan, options: &ViewOptions, wm: i64, changes: &mut Vec<Change>) {
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
                    let Ok(i) = kg.windows.find(start) else { continue };
                    if kg.windows.at(i).end != end {
                        continue;
                    }
                    kg.windows.remove_at(i);
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
            let expired: Vec<GroupKey> = self
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
        let group_bytes = |g: &GroupEntry| {
            48 + match &g.accs {
                GroupAccs::Live(a) => a.iter().map(Acc::size_bytes).sum(),
                GroupAccs::Final(r) => r.len() * 24,
            }
        };
        let key_bytes = |k: &[u8], kg: &KeyGroups| {
            let n = kg.windows.len();
            let windows = if n <= SIZE_SAMPLE_WINDOWS {
                kg.windows.values().map(group_bytes).sum::<usize>()
            } else {
                let half = SIZE_SAMPLE_WINDOWS / 2;
                let seen: usize =
                    kg.windows.values().take(half).chain(kg.windows.values().rev().take(half)).map(group_bytes).sum();
                seen * n / SIZE_SAMPLE_WINDOWS
            };
            k.len() + 64 + windows
        };
        let (keys_seen, bytes_seen) = self
            .keys
            .iter()
            .take(SIZE_SAMPLE_KEYS)
            .fold((0usize, 0usize), |(n, bytes), (k, kg)| (n + 1, bytes + key_bytes(k, kg)));
        if keys_seen == 0 {
            return 0;
        }
        bytes_seen * self.keys.len() / keys_seen
    }

    /// For checkpoints: the key count, then every key's groups in key order.
    pub fn encode(&self, e: &mut Encoder) {
        let keys = self.encode_begin(e);
        self.encode_keys(e, &keys);
    }

    /// The first part of [`AggregateState::encode`], for an encoding done in slices:
    /// writes the key count and returns the keys in the order their groups must follow
    /// (copies: a sliced snapshot lets go of the state between slices).
    pub fn encode_begin(&self, e: &mut Encoder) -> Vec<GroupKey> {
        let mut keys: Vec<GroupKey> = self.keys.keys().cloned().collect();
        keys.sort_unstable();
        e.u64(keys.len() as u64);
        keys
    }

    /// The groups of `keys` (each one this state holds), in the order given, as
    /// [`AggregateState::encode`] writes them after the key count.
    pub fn encode_keys(&self, e: &mut Encoder, keys: &[GroupKey]) {
        for k in keys {
            e.bytes(k);
            let Some(kg) = self.keys.get(k) else {
                // A snapshot's state does not change between its slices (every source is
                // paused at the barrier); should it, the key is written empty.
                debug_assert!(false, "a key left the state during its snapshot");
                e.u32(0).u32(0);
                continue;
            };
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
            let key: GroupKey = GroupKey::from_slice(d.bytes()?);
            let nv = d.u32()? as usize;
            if nv > d.remaining() {
                return Err(WireError::Invalid("key width"));
            }
            let values: Vec<OwnedDatum> =
                (0..nv).map(|_| decode_opt_datum(d).map(Option::unwrap_or_default)).collect::<Result<_, _>>()?;
            let nw = d.u32()? as usize;
            let mut windows = WindowMap::new();
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
                if windows.insert(start, GroupEntry { end, accs, max_ts, finalized }).is_some() {
                    return Err(WireError::Invalid("a window twice in one group"));
                }
                s.rows += 1;
            }
            if s.keys.insert(key, KeyGroups { values: values.into(), windows }).is_some() {
                return Err(WireError::Invalid("a group twice"));
            }
        }
        Ok(s)
    }

    /// Whether restored state fits the view's plan: key width, windows where (and only
    /// where) the plan has them, and one accumulator of each aggregate's kind per group.
    pub fn fits(&self, plan: Option<&AggregatePlan>) -> Result<(), &'static str> {
        let Some(plan) = plan else {
            return if self.keys.is_empty() { Ok(()) } else { Err("groups in a view without GROUP BY") };
        };
        let kinds: Vec<_> = plan.aggs.iter().map(|a| std::mem::discriminant(&a.func.new_acc())).collect();
        for groups in self.keys.values() {
            if groups.values.len() != plan.keys.len() {
                return Err("group key width");
            }
            for (start, entry) in &groups.windows {
                let bounds_fit = match plan.window {
                    Some(_) => *start < entry.end && entry.end != i64::MAX,
                    None => *start == i64::MIN && entry.end == i64::MAX,
                };
                if !bounds_fit {
                    return Err("window bounds");
                }
                let fits = match &entry.accs {
                    GroupAccs::Live(accs) => {
                        accs.len() == kinds.len()
                            && accs.iter().zip(&kinds).all(|(a, k)| std::mem::discriminant(a) == *k)
                    }
                    GroupAccs::Final(results) => results.len() == kinds.len(),
                };
                if !fits {
                    return Err("aggregates of a group");
                }
            }
        }
        Ok(())
    }
}

impl Default for AggregateState {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataflow::accumulator::AggFunc;
    use crate::record::schema::{ArchivedValue, Value};
    use rand::{Rng, SeedableRng};
    use rkyv::vec::ArchivedVec;

    fn agg(func: AggFunc, arg: Option<usize>) -> AggPlan {
        AggPlan {
            func,
            arg: arg.map(Expr::Column),
            arg_type: DataType::BigInt,
            result_type: func.result_type(DataType::BigInt),
        }
    }

    /// What a drained table holds, comparable: (key, window) → (key values, max ts, results).
    fn drained(t: &mut PartialTable, plan: &AggregatePlan) -> Vec<String> {
        drained_in_slices(t, plan, usize::MAX)
    }

    /// `drained`, taking at most `slice` groups a call.
    fn drained_in_slices(t: &mut PartialTable, plan: &AggregatePlan, slice: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut each = |owner: usize, g: PartialGroup| {
            let results: Vec<OwnedDatum> =
                g.accs.iter().zip(&plan.aggs).map(|(a, p)| a.result(p.func, p.result_type)).collect();
            out.push(format!("{owner} {:?} {:?} {:?} {} {results:?}", g.key, g.window, g.key_values, g.max_ts));
        };
        let mut calls = 1;
        while !t.drain_some(slice, &mut each) {
            calls += 1;
        }
        assert!(calls > 1 || out.len() <= slice, "{} groups in one slice of {slice}", out.len());
        out.sort();
        out
    }

    /// Folds `rows`, read in place from their archived form, with the table as views use
    /// it (the archived fold where it takes a row) and with the general fold by key bytes
    /// only; asserts both make the same partials. Returns how many rows the archived fold
    /// took.
    fn fold_both(plan: &AggregatePlan, rows: &[Vec<Value>]) -> usize {
        use crate::dataflow::plan::ColumnInfo;
        use crate::dataflow::row::SourceRow;
        let columns: Vec<ColumnInfo> =
            (0..4).map(|i| ColumnInfo { name: format!("c{i}"), ty: DataType::BigInt, default: Value::Null }).collect();
        let mut general = PartialTable::new(2, Some(plan));
        // The general fold: every group by its key bytes.
        general.int_keys = None;
        general.text_key = None;
        general.archived = None;
        let mut archived = PartialTable::new(2, Some(plan));
        assert!(archived.archived.is_some());
        // Each row read in place from its archived form, with its time and position.
        let each_archived = |f: &mut dyn FnMut(&SourceRow<'_>, i64, Position)| {
            for (offset, row) in rows.iter().enumerate() {
                let Value::Timestamp(ts) = row[0] else { panic!("rows start with their time") };
                let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(row).expect("archive");
                let values = rkyv::access::<ArchivedVec<ArchivedValue>, rkyv::rancor::Error>(&bytes).expect("access");
                f(&SourceRow { values, columns: &columns }, ts, Position { ts, partition: 0, offset: offset as u64 });
            }
        };
        let mut folded_in_place = 0;
        each_archived(&mut |source, ts, pos| {
            general.add(plan, source, ts, pos);
            let fold = archived.archived.as_ref().expect("an archived fold");
            if source.values.len() >= fold.width_min && fold.lookup(source).is_some() {
                folded_in_place += 1;
            }
            archived.add(plan, source, ts, pos);
        });
        // The same rows stored column by column, in batches of rows of one width, through
        // the column fold.
        let mut columnar = PartialTable::new(2, Some(plan));
        let mut at = 0;
        while at < rows.len() {
            let width = rows[at].len();
            // Batches of up to 100 rows: the dense fold's blocks of 64 end inside them.
            let n = rows[at..].iter().take(100).take_while(|r| r.len() == width).count();
            let batch = column_batch(&rows[at..at + n]);
            let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&batch).expect("archive columns");
            let archived_batch =
                rkyv::access::<crate::record::columns::ArchivedColumnBatch, rkyv::rancor::Error>(&bytes)
                    .expect("access");
            let resolved: Vec<ColumnRef> = archived_batch.columns.iter().map(|c| c.resolve()).collect();
            let times: Vec<(u32, i64)> = rows[at..at + n]
                .iter()
                .enumerate()
                .map(|(i, r)| match r[0] {
                    Value::Timestamp(ts) => (i as u32, ts),
                    _ => panic!("rows start with their time"),
                })
                .collect();
            columnar.add_columns(plan, &resolved, &columns, times.iter().copied(), 0, at as u64);
            at += n;
        }
        if let Some(lanes) = columnar.lane_plan {
            let rows: i64 = columnar.lanes.chunks(lanes.width()).map(|group| group[0]).sum();
            assert!(rows > 0, "the lanes took rows");
        }
        let expected = drained(&mut general, plan);
        // A replay drains in slices: the same partials, and the table is whole afterwards.
        assert_eq!(drained_in_slices(&mut columnar, plan, 7), expected, "the column fold, drained in slices");
        assert!(columnar.is_empty());
        each_archived(&mut |source, ts, pos| columnar.add(plan, source, ts, pos));
        assert_eq!(drained(&mut columnar, plan), expected, "folded again after a drain in slices");
        assert_eq!(drained(&mut archived, plan), expected, "the archived fold");
        assert!(archived.is_empty());
        folded_in_place
    }

    /// Rows of one width as a columnar batch; a column's type is that of its first
    /// non-NULL value in `rows` (BIGINT if none), as the test data keeps to one per column.
    fn column_batch(rows: &[Vec<Value>]) -> crate::record::columns::ColumnBatch {
        use crate::record::columns::{ColumnBatch, ColumnData, VarColumn};
        let width = rows[0].len();
        let columns = (0..width)
            .map(|c| {
                let mut nulls = vec![0u8; rows.len().div_ceil(8)];
                for (i, r) in rows.iter().enumerate() {
                    if r[c] == Value::Null {
                        nulls[i / 8] |= 1 << (i % 8);
                    }
                }
                let nulls = if nulls.iter().any(|b| *b != 0) { nulls } else { Vec::new() };
                let ints =
                    |f: fn(&Value) -> Option<i64>| rows.iter().map(|r| f(&r[c]).unwrap_or(0)).collect::<Vec<i64>>();
                match rows.iter().map(|r| &r[c]).find(|v| **v != Value::Null) {
                    Some(Value::Timestamp(_)) => ColumnData::Timestamp {
                        nulls,
                        values: ints(|v| if let Value::Timestamp(t) = v { Some(*t) } else { None }),
                    },
                    Some(Value::Int(_)) => ColumnData::Int {
                        nulls,
                        values: rows.iter().map(|r| if let Value::Int(v) = r[c] { v } else { 0 }).collect(),
                    },
                    Some(Value::Text(_)) => {
                        let mut col = VarColumn { nulls, ..Default::default() };
                        for r in rows {
                            if let Value::Text(t) = &r[c] {
                                col.bytes.extend_from_slice(t.as_bytes());
                            }
                            col.ends.push(col.bytes.len() as u32);
                        }
                        ColumnData::Text(col)
                    }
                    _ => ColumnData::BigInt {
                        nulls,
                        values: ints(|v| if let Value::BigInt(x) = v { Some(*x) } else { None }),
                    },
                }
            })
            .collect();
        let timestamps = rows.iter().map(|r| if let Value::Timestamp(t) = r[0] { t } else { 0 }).collect();
        ColumnBatch { timestamps, keys: None, columns }
    }

    fn aggs() -> Vec<AggPlan> {
        vec![
            agg(AggFunc::CountStar, None),
            agg(AggFunc::Count, Some(2)),
            agg(AggFunc::Sum, Some(2)),
            agg(AggFunc::Min, Some(2)),
            agg(AggFunc::Max, Some(3)),
            agg(AggFunc::Avg, Some(2)),
            agg(AggFunc::FirstValue, Some(2)),
        ]
    }

    /// Restored state must fit the plan it is restored into, and name each group and
    /// window once: a checkpoint of another shape is refused, not served.
    #[test]
    fn restored_state_is_checked_against_the_plan() {
        let tumble = AggregatePlan {
            keys: vec![Expr::Column(1)],
            key_types: vec![DataType::BigInt],
            aggs: aggs(),
            window: Some(WindowPlan::Tumble { size_ms: 30 }),
        };
        let state_of = |keys: std::ops::Range<i64>| {
            let mut state = AggregateState::new();
            for k in keys {
                let p = PartialGroup {
                    key: k.to_le_bytes().to_vec().into(),
                    key_values: vec![Datum::Int(k)],
                    window: Some((0, 30)),
                    accs: tumble.aggs.iter().map(|a| a.func.new_acc()).collect(),
                    max_ts: 5,
                };
                state.apply(&tumble, &ViewOptions::default(), i64::MIN, p, &mut Vec::new());
            }
            let mut e = Encoder::new();
            state.encode(&mut e);
            e.finish()
        };
        let bytes = state_of(0..3);
        let back = AggregateState::decode(&mut Decoder::new(&bytes)).expect("decodes");
        assert_eq!(back.fits(Some(&tumble)), Ok(()));
        let unwindowed = AggregatePlan { window: None, ..tumble.clone() };
        assert!(back.fits(Some(&unwindowed)).is_err(), "windows in a view without them");
        assert!(back.fits(None).is_err(), "groups in a view without GROUP BY");
        let two_keys = AggregatePlan {
            keys: vec![Expr::Column(1), Expr::Column(2)],
            key_types: vec![DataType::BigInt; 2],
            ..tumble.clone()
        };
        assert!(back.fits(Some(&two_keys)).is_err(), "key width");
        let other_aggs = AggregatePlan { aggs: vec![agg(AggFunc::Sum, Some(2))], ..tumble.clone() };
        assert!(back.fits(Some(&other_aggs)).is_err(), "aggregate count");
        let mut kinds = aggs();
        kinds.swap(0, 2);
        assert!(back.fits(Some(&AggregatePlan { aggs: kinds, ..tumble.clone() })).is_err(), "aggregate kinds");

        // The same group twice: the count says 2 groups, the body repeats one.
        let single = state_of(1..2);
        let body = &single[8..];
        let mut twice = 2u64.to_le_bytes().to_vec();
        twice.extend_from_slice(body);
        twice.extend_from_slice(body);
        assert!(AggregateState::decode(&mut Decoder::new(&twice)).is_err(), "a group twice");
    }

    /// The archived fold (keys and arguments read in place) makes exactly the partials
    /// the general fold makes, NULL keys, narrow rows, INT and BIGINT and sum overflow
    /// included.
    #[test]
    fn the_archived_fold_equals_the_general_fold() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for (keys, key_types, window) in [
            (vec![Expr::Column(1)], vec![DataType::BigInt], Some(WindowPlan::Hop { slide_ms: 20, size_ms: 50 })),
            (vec![Expr::Column(1), Expr::Column(3)], vec![DataType::BigInt, DataType::Int], None),
            (vec![Expr::Column(0)], vec![DataType::Timestamp], Some(WindowPlan::Tumble { size_ms: 30 })),
        ] {
            let plan = AggregatePlan { keys, key_types, aggs: aggs(), window };
            let rows: Vec<Vec<Value>> = (0..5_000)
                .map(|_| {
                    let big = |rng: &mut rand::rngs::StdRng| match rng.gen_range(0..20) {
                        0 => Value::Null,
                        1 => Value::BigInt(i64::MAX - rng.gen_range(0..3)),
                        _ => Value::BigInt(rng.gen_range(-5..5)),
                    };
                    let mut row = vec![Value::Timestamp(rng.gen_range(0..1_000)), big(&mut rng), big(&mut rng)];
                    if rng.gen_range(0..10) > 0 {
                        row.push(if rng.gen_range(0..10) == 0 { Value::Null } else { Value::Int(rng.gen_range(0..3)) });
                    }
                    row
                })
                .collect();
            let folded_in_place = fold_both(&plan, &rows);
            assert!(folded_in_place > 2_500, "{folded_in_place}");
        }
    }

    /// Batches without NULLs, one BIGINT key, integer arguments and a tumbling window take
    /// the column fold's dense path: the same partials as the general fold, with event
    /// times out of order, at both ends of the i64 range, and (through the `Acc`s) sums
    /// that overflow; with times in order over a few windows (the direct group index's
    /// hits), keys outside the range the first batch set among them; and (counts and sums
    /// in lanes) with batches holding a NULL beside batches without.
    #[test]
    fn the_dense_column_fold_equals_the_general_fold() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        // Through the accumulators, and (counts and sums only) through the lanes.
        let with_min = vec![
            agg(AggFunc::CountStar, None),
            agg(AggFunc::Sum, Some(2)),
            agg(AggFunc::Count, Some(2)),
            agg(AggFunc::Min, Some(2)),
        ];
        let lanes_only = vec![
            agg(AggFunc::Sum, Some(2)),
            agg(AggFunc::CountStar, None),
            agg(AggFunc::Count, Some(2)),
            agg(AggFunc::Sum, Some(1)),
        ];
        for (aggs, lanes, window) in [
            (&with_min, false, Some(WindowPlan::Tumble { size_ms: 30 })),
            (&with_min, false, None),
            (&lanes_only, true, Some(WindowPlan::Tumble { size_ms: 30 })),
            (&lanes_only, true, None),
        ] {
            let plan = AggregatePlan {
                keys: vec![Expr::Column(1)],
                key_types: vec![DataType::BigInt],
                aggs: aggs.clone(),
                window,
            };
            assert_eq!(PartialTable::new(2, Some(&plan)).lane_plan.is_some(), lanes);
            // In a row at each end: a window cut at i64::MIN (the true one starts below it,
            // the next at MIN + 8 for 30 ms windows) and windows reaching i64::MAX.
            let edges =
                [i64::MIN + 3, i64::MIN + 10, i64::MIN + 29, i64::MIN + 31, i64::MAX - 40, i64::MAX - 1, i64::MAX];
            let edge_rows = edges.iter().map(|&ts| vec![Value::Timestamp(ts), Value::BigInt(1), Value::BigInt(1)]);
            let rows: Vec<Vec<Value>> = edge_rows
                .chain((0..5_000).map(|_| {
                    let ts = match rng.gen_range(0..50) {
                        0 => i64::MIN + rng.gen_range(0..100),
                        1 => i64::MAX - rng.gen_range(0..100),
                        _ => rng.gen_range(0..1_000),
                    };
                    // Sums past i64 only through the accumulators: the lanes sum exactly,
                    // where row by row the sum goes on in floating point (their own test,
                    // `a_lane_sum_is_exact_when_its_total_fits`).
                    let big = !lanes && rng.gen_range(0..50) == 0;
                    let v = if big { i64::MAX - rng.gen_range(0..3) } else { rng.gen_range(-5..5) };
                    vec![Value::Timestamp(ts), Value::BigInt(rng.gen_range(0..20)), Value::BigInt(v)]
                }))
                .collect();
            fold_both(&plan, &rows);
            let in_order: Vec<Vec<Value>> = (0..5_000i64)
                .map(|i| {
                    let k = match rng.gen_range(0..20) {
                        // After the first batches: outside the range they set.
                        0 if i > 500 => [-7, 64, 1_000, 5_000, i64::MAX][rng.gen_range(0..5)],
                        _ => rng.gen_range(0..20),
                    };
                    vec![Value::Timestamp(i / 50), Value::BigInt(k), Value::BigInt(rng.gen_range(-5..5))]
                })
                .collect();
            fold_both(&plan, &in_order);
            // A NULL now and then: its batch goes to the accumulators, the others to the
            // lanes, and groups get rows both ways.
            let with_nulls: Vec<Vec<Value>> = (0..5_000i64)
                .map(|i| {
                    let v = if rng.gen_range(0..300) == 0 { Value::Null } else { Value::BigInt(rng.gen_range(-5..5)) };
                    vec![Value::Timestamp(i / 200), Value::BigInt(rng.gen_range(0..20)), v]
                })
                .collect();
            fold_both(&plan, &with_nulls);
        }
    }

    /// A sum in the lanes is its exact total (i128) as an integer when that fits in i64, and
    /// that total converted once to floating point when not, however its running total
    /// wrapped on the way; the count beside it is the rows.
    #[test]
    fn a_lane_sum_is_exact_when_its_total_fits() {
        let plan = AggregatePlan {
            keys: vec![Expr::Column(1)],
            key_types: vec![DataType::BigInt],
            aggs: vec![agg(AggFunc::CountStar, None), agg(AggFunc::Sum, Some(2))],
            window: Some(WindowPlan::Tumble { size_ms: 1_000 }),
        };
        let sums = |values: &[i64]| {
            let rows: Vec<Vec<Value>> =
                values.iter().map(|&v| vec![Value::Timestamp(5), Value::BigInt(1), Value::BigInt(v)]).collect();
            let batch = column_batch(&rows);
            let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&batch).expect("archive columns");
            let archived = rkyv::access::<crate::record::columns::ArchivedColumnBatch, rkyv::rancor::Error>(&bytes)
                .expect("access");
            let resolved: Vec<ColumnRef> = archived.columns.iter().map(|c| c.resolve()).collect();
            let columns: Vec<crate::dataflow::plan::ColumnInfo> = (0..3)
                .map(|i| crate::dataflow::plan::ColumnInfo {
                    name: format!("c{i}"),
                    ty: DataType::BigInt,
                    default: Value::Null,
                })
                .collect();
            let mut table = PartialTable::new(1, Some(&plan));
            assert!(table.lane_plan.is_some());
            table.add_columns(&plan, &resolved, &columns, (0..rows.len() as u32).map(|i| (i, 5)), 0, 0);
            let mut out = Vec::new();
            table.drain(|_, g| out.push(g.accs));
            assert_eq!(out.len(), 1, "one group");
            out.remove(0)
        };
        let check = |values: &[i64]| {
            let total: i128 = values.iter().map(|&v| v as i128).sum();
            match (&sums(values)[..], i64::try_from(total)) {
                ([Acc::Count(n), Acc::Sum { int, is_float: false, any: true, .. }], Ok(exact)) => {
                    assert_eq!((*n, *int), (values.len() as i64, exact), "{values:?}")
                }
                ([Acc::Count(n), Acc::Sum { float, is_float: true, any: true, .. }], Err(_)) => {
                    assert_eq!((*n, *float), (values.len() as i64, total as f64), "{values:?}")
                }
                (other, _) => panic!("{values:?}: {other:?} for a total of {total}"),
            }
        };
        check(&[i64::MAX - 2, 5, -10]);
        check(&[-5, i64::MIN + 2, -1, 9]);
        // Carries up to 3 and back to 0 (a total of -7), and on down to -4 (a float).
        check(&[[i64::MAX; 7], [i64::MIN; 7]].concat());
        check(&[&[i64::MAX; 7][..], &[i64::MIN; 14][..]].concat());
        check(&[i64::MAX, i64::MAX, 1]);
        check(&[i64::MIN, -1]);
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for _ in 0..300 {
            let values: Vec<i64> = (0..rng.gen_range(1..40))
                .map(|_| match rng.gen_range(0..4) {
                    0 => i64::MAX - rng.gen_range(0..1_000),
                    1 => i64::MIN + rng.gen_range(0..1_000),
                    _ => rng.gen_range(-1_000..1_000),
                })
                .collect();
            check(&values);
        }
    }

    /// Windows closed a slice at a time end as windows closed in one go: the same final
    /// results, the same changes in the same order.
    #[test]
    fn advancing_in_slices_equals_advancing_at_once() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let plan = AggregatePlan {
            keys: vec![Expr::Column(1)],
            key_types: vec![DataType::BigInt],
            aggs: aggs(),
            window: Some(WindowPlan::Tumble { size_ms: 30 }),
        };
        let rows: Vec<Vec<Value>> = (0..3_000)
            .map(|_| {
                let ts = rng.gen_range(0..1_000);
                vec![Value::Timestamp(ts), Value::BigInt(rng.gen_range(0..50)), Value::BigInt(ts), Value::Int(1)]
            })
            .collect();
        let mut table = PartialTable::new(1, Some(&plan));
        for (offset, row) in rows.iter().enumerate() {
            let Value::Timestamp(ts) = row[0] else { unreachable!() };
            let datums: Vec<OwnedDatum> = row.iter().map(|v| Datum::from_value(v).into_owned()).collect();
            table.add(&plan, datums.as_slice(), ts, Position { ts, partition: 0, offset: offset as u64 });
        }
        let options = ViewOptions { changelog: Some("c".into()), ..ViewOptions::default() };
        let (mut at_once, mut sliced) = (AggregateState::new(), AggregateState::new());
        at_once.configure(&options);
        sliced.configure(&options);
        let (mut changes_at_once, mut changes_sliced) = (Vec::new(), Vec::new());
        table.drain(|_, g| {
            at_once.apply(&plan, &options, i64::MIN, g.clone(), &mut changes_at_once);
            sliced.apply(&plan, &options, i64::MIN, g, &mut changes_sliced);
        });
        for wm in [100, 500, 2_000] {
            at_once.advance(&plan, &options, wm, &mut changes_at_once);
            let mut calls = 1;
            while !sliced.advance_some(&plan, &options, wm, &mut changes_sliced, 7) {
                calls += 1;
            }
            assert!(calls > 1, "windows up to {wm} took more than one slice");
            assert_eq!(changes_sliced, changes_at_once, "up to {wm}");
        }
        assert!(
            changes_at_once.iter().filter(|c| matches!(c, Change::Upsert { final_result: true, .. })).count() > 100
        );
        for (key, kg) in &at_once.keys {
            for (start, g) in &kg.windows {
                let other = sliced.keys[key].windows.get(*start).expect("the same windows");
                assert!(g.finalized && other.finalized);
                assert_eq!(format!("{:?}", g.accs), format!("{:?}", other.accs));
            }
        }
    }

    /// The same for one TEXT key, read and compared where it lies.
    #[test]
    fn the_archived_fold_equals_the_general_fold_for_a_text_key() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(6);
        for window in [Some(WindowPlan::Hop { slide_ms: 20, size_ms: 50 }), None] {
            let plan =
                AggregatePlan { keys: vec![Expr::Column(1)], key_types: vec![DataType::Text], aggs: aggs(), window };
            let rows: Vec<Vec<Value>> = (0..5_000)
                .map(|_| {
                    let key = match rng.gen_range(0..20) {
                        0 => Value::Null,
                        1 => Value::Text(String::new()),
                        _ => Value::Text(format!("sym{}", rng.gen_range(0..30))),
                    };
                    let mut row =
                        vec![Value::Timestamp(rng.gen_range(0..1_000)), key, Value::BigInt(rng.gen_range(-5..5))];
                    if rng.gen_range(0..10) > 0 {
                        row.push(Value::Int(rng.gen_range(0..3)));
                    }
                    row
                })
                .collect();
            let folded_in_place = fold_both(&plan, &rows);
            assert!(folded_in_place > 2_500, "{folded_in_place}");
        }
    }
}
