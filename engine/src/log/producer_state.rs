//! Idempotent producers: the sequence state of every producer that wrote to a partition.
//!
//! Owned by the partition's appender, which checks each batch of an idempotent producer
//! before assigning its offsets: a retry of one of the producer's last
//! [`PRODUCER_BATCHES_REMEMBERED`] batches is a duplicate (answered with the original
//! offsets, never written twice), a gap in the sequence is an error, and an older epoch is
//! fenced. Kafka's rules (`ProducerStateManager`), so its clients behave as they do there.
//!
//! The state is derived from the log: batches carry a producer trailer, recovery replays
//! the trailers of the active segment over the snapshot written when it was created
//! (`<base_offset:020>.producers`, see docs/format.md).

use std::collections::{HashMap, VecDeque};

use crate::limits::{PRODUCERS_PER_PARTITION_MAX, PRODUCER_BATCHES_REMEMBERED};
use crate::record::ProducerInfo;
use crate::wire::{Decoder, Encoder, WireError};

/// One remembered batch of a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RecentBatch {
    first_sequence: i32,
    last_sequence: i32,
    base_offset: u64,
    record_count: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Producer {
    epoch: i16,
    recent: VecDeque<RecentBatch>,
    /// Offset of the producer's last batch: the least recent producer is forgotten first.
    last_offset: u64,
}

/// What to do with a batch of an idempotent producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// New and in order: write it.
    Append,
    /// Already written at these offsets: acknowledge the original.
    Duplicate { base_offset: u64, record_count: u32 },
    /// The sequence skips ahead of (or behind) the next expected one.
    OutOfOrder { expected: i32, got: i32 },
    /// The producer has a newer epoch: this writer was fenced.
    Fenced { current: i16, got: i16 },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerTable {
    producers: HashMap<i64, Producer>,
}

fn next_sequence(s: i32) -> i32 {
    if s == i32::MAX {
        0
    } else {
        s + 1
    }
}

impl ProducerTable {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Checks a batch that used `sequences` sequence numbers against the producer's state,
    /// without changing it.
    pub fn check(&self, p: &ProducerInfo, sequences: u32) -> SequenceCheck {
        let Some(state) = self.producers.get(&p.producer_id) else {
            // A producer we have no state for (new, or forgotten): accept where it starts.
            return SequenceCheck::Append;
        };
        if p.epoch < state.epoch {
            return SequenceCheck::Fenced { current: state.epoch, got: p.epoch };
        }
        if p.epoch > state.epoch {
            // A new epoch restarts the sequence at 0.
            return if p.base_sequence == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::OutOfOrder { expected: 0, got: p.base_sequence }
            };
        }
        let last = p.last_sequence(sequences);
        if let Some(b) = state.recent.iter().find(|b| b.first_sequence == p.base_sequence && b.last_sequence == last) {
            return SequenceCheck::Duplicate { base_offset: b.base_offset, record_count: b.record_count };
        }
        let expected = state.recent.back().map_or(0, |b| next_sequence(b.last_sequence));
        if p.base_sequence != expected {
            return SequenceCheck::OutOfOrder { expected, got: p.base_sequence };
        }
        SequenceCheck::Append
    }

    /// Records an appended batch of `record_count` records that used `sequences` sequence
    /// numbers (after [`Self::check`] said `Append`, or during recovery).
    pub fn record(&mut self, p: &ProducerInfo, base_offset: u64, record_count: u32, sequences: u32) {
        if !self.producers.contains_key(&p.producer_id) && self.producers.len() >= PRODUCERS_PER_PARTITION_MAX {
            self.forget_least_recent();
        }
        let state = self.producers.entry(p.producer_id).or_insert_with(|| Producer {
            epoch: p.epoch,
            recent: VecDeque::new(),
            last_offset: base_offset,
        });
        if p.epoch != state.epoch {
            state.epoch = p.epoch;
            state.recent.clear();
        }
        if state.recent.len() == PRODUCER_BATCHES_REMEMBERED {
            state.recent.pop_front();
        }
        state.recent.push_back(RecentBatch {
            first_sequence: p.base_sequence,
            last_sequence: p.last_sequence(sequences),
            base_offset,
            record_count,
        });
        state.last_offset = base_offset;
    }

    fn forget_least_recent(&mut self) {
        if let Some(id) = self.producers.iter().min_by_key(|(_, s)| s.last_offset).map(|(id, _)| *id) {
            self.producers.remove(&id);
        }
    }

    /// The snapshot written when a segment is created.
    pub fn encode(&self, e: &mut Encoder) {
        let mut ids: Vec<&i64> = self.producers.keys().collect();
        ids.sort_unstable();
        e.u32(ids.len() as u32);
        for id in ids {
            let s = &self.producers[id];
            e.i64(*id).u16(s.epoch as u16).u64(s.last_offset).u32(s.recent.len() as u32);
            for b in &s.recent {
                e.u32(b.first_sequence as u32).u32(b.last_sequence as u32).u64(b.base_offset).u32(b.record_count);
            }
        }
    }

    /// Whether every remembered batch ends by `end` (a snapshot's own offset): one past it
    /// would answer a retry with offsets that do not hold it.
    pub fn remembers_only_before(&self, end: u64) -> bool {
        self.producers.values().all(|p| {
            p.last_offset < end
                && p.recent
                    .iter()
                    .all(|b| b.base_offset.checked_add(u64::from(b.record_count)).is_some_and(|e| e <= end))
        })
    }

    pub fn decode(d: &mut Decoder<'_>) -> Result<ProducerTable, WireError> {
        let n = d.u32()? as usize;
        if n > PRODUCERS_PER_PARTITION_MAX {
            return Err(WireError::Invalid("producer count"));
        }
        let mut producers = HashMap::with_capacity(n);
        for _ in 0..n {
            let id = d.u64()? as i64;
            let epoch = d.u16()? as i16;
            let last_offset = d.u64()?;
            let k = d.u32()? as usize;
            if k > PRODUCER_BATCHES_REMEMBERED {
                return Err(WireError::Invalid("remembered batches"));
            }
            let mut recent = VecDeque::with_capacity(k);
            for _ in 0..k {
                recent.push_back(RecentBatch {
                    first_sequence: d.u32()? as i32,
                    last_sequence: d.u32()? as i32,
                    base_offset: d.u64()?,
                    record_count: d.u32()?,
                });
            }
            producers.insert(id, Producer { epoch, recent, last_offset });
        }
        Ok(ProducerTable { producers })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(id: i64, epoch: i16, seq: i32) -> ProducerInfo {
        ProducerInfo { producer_id: id, epoch, base_sequence: seq }
    }

    #[test]
    fn duplicates_gaps_and_fencing_follow_kafka() {
        let mut t = ProducerTable::new();
        assert_eq!(t.check(&p(1, 0, 0), 5), SequenceCheck::Append);
        t.record(&p(1, 0, 0), 100, 5, 5);
        assert_eq!(t.check(&p(1, 0, 0), 5), SequenceCheck::Duplicate { base_offset: 100, record_count: 5 });
        assert_eq!(t.check(&p(1, 0, 6), 1), SequenceCheck::OutOfOrder { expected: 5, got: 6 });
        assert_eq!(t.check(&p(1, 0, 5), 2), SequenceCheck::Append);
        t.record(&p(1, 0, 5), 105, 2, 2);
        for i in 0..PRODUCER_BATCHES_REMEMBERED as i32 {
            t.record(&p(1, 0, 7 + i), 107 + i as u64, 1, 1);
        }
        assert!(matches!(t.check(&p(1, 0, 0), 5), SequenceCheck::OutOfOrder { .. }), "only the last 5 are kept");
        assert_eq!(t.check(&p(1, 1, 0), 1), SequenceCheck::Append, "a new epoch starts at 0");
        t.record(&p(1, 1, 0), 200, 1, 1);
        assert_eq!(t.check(&p(1, 0, 12), 1), SequenceCheck::Fenced { current: 1, got: 0 });
        let mut e = Encoder::new();
        t.encode(&mut e);
        let bytes = e.finish();
        assert_eq!(ProducerTable::decode(&mut Decoder::new(&bytes)), Ok(t));
    }
}
