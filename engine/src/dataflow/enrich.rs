//! Stream–table join: a replica of a table (a topic keyed by its primary key) on every
//! shard, and lookups "as of" an event's time.
//!
//! The table's owner shards read its partitions and send every row to every shard; each
//! replica keeps, per key, the versions by event time, and a stream row meets the newest
//! version at or before its own time (so a rebuild by replay gives the rows the live run
//! gave, provided the table rows were there before the events that meet them). Versions
//! older than the one the watermark has passed are pruned.

use hashbrown::HashMap;

use crate::sql::types::OwnedDatum;

#[derive(Debug, Default)]
pub struct TableReplica {
    /// Primary key → versions (event time, row), oldest first.
    versions: HashMap<Box<[u8]>, Vec<(i64, Vec<OwnedDatum>)>>,
    pub rows: usize,
}

impl TableReplica {
    /// Adds a version of a key's row valid from `ts`. `first_from_start`: a key's first
    /// version is valid from the beginning of time (a table without an event-time column,
    /// whose rows only have the time they were written: an event is enriched with the
    /// row its key had first, or later versions as of their write time).
    pub fn upsert(&mut self, key: &[u8], ts: i64, row: Vec<OwnedDatum>, first_from_start: bool) {
        let v = match self.versions.get_mut(key) {
            Some(v) => v,
            None => self.versions.entry(key.into()).or_default(),
        };
        let ts = if first_from_start && v.is_empty() { i64::MIN } else { ts };
        let at = v.partition_point(|(t, _)| *t <= ts);
        v.insert(at, (ts, row));
        self.rows += 1;
    }

    /// The table's row for `key` as of `ts` (a deletion, an empty row, is no row).
    pub fn lookup(&self, key: &[u8], ts: i64) -> Option<&[OwnedDatum]> {
        let v = self.versions.get(key)?;
        let at = v.partition_point(|(t, _)| *t <= ts);
        at.checked_sub(1).map(|i| v[i].1.as_slice()).filter(|r| !r.is_empty())
    }

    /// Keeps, per key, the newest version at or before `wm` and everything after it.
    pub fn prune(&mut self, wm: i64) {
        let mut removed = 0;
        for v in self.versions.values_mut() {
            let at = v.partition_point(|(t, _)| *t <= wm);
            if at > 1 {
                v.drain(..at - 1);
                removed += at - 1;
            }
        }
        self.rows -= removed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::types::Datum;

    #[test]
    fn lookups_are_as_of_the_event() {
        let mut t = TableReplica::default();
        t.upsert(b"k", 10, vec![Datum::Int(1)], false);
        t.upsert(b"k", 30, vec![Datum::Int(3)], false);
        t.upsert(b"k", 20, vec![Datum::Int(2)], false);
        assert_eq!(t.lookup(b"k", 5), None);
        assert_eq!(t.lookup(b"k", 25), Some(&[Datum::Int(2)][..]));
        assert_eq!(t.lookup(b"k", 99), Some(&[Datum::Int(3)][..]));
        t.prune(25);
        assert_eq!(t.lookup(b"k", 25), Some(&[Datum::Int(2)][..]), "the version in force at the watermark stays");
        assert_eq!(t.rows, 2);
        t.upsert(b"j", 50, vec![Datum::Int(5)], true);
        t.upsert(b"j", 60, Vec::new(), true);
        assert_eq!(t.lookup(b"j", 1), Some(&[Datum::Int(5)][..]), "a first version counts from the start");
        assert_eq!(t.lookup(b"j", 70), None, "a deletion hides the key");
    }
}
