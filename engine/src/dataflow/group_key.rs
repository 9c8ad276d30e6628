//! `GroupKey`: the encoded key of an aggregate's group (`Datum::encode_key` of its GROUP BY
//! values), as partials, stage 2's state and its timer queues hold it.
//!
//! Stored inline up to `GROUP_KEY_INLINE_BYTES` (a BIGINT key is 9 bytes, two are 18, a
//! BIGINT and a short TEXT ~22), on the heap past that. Inline, a group made costs no
//! allocation, each window's timer entries copy the key without one, and a hash-table
//! probe compares the key where the slot lies instead of behind a pointer: boxed keys
//! were ~10% of a replayed tumbling aggregate (allocations, and a cache miss per compare).
//! It hashes, compares and borrows as the `[u8]` it holds.

use smallvec::SmallVec;

/// Key bytes held in place; longer keys go to the heap.
pub const GROUP_KEY_INLINE_BYTES: usize = 24;

pub type GroupKey = SmallVec<[u8; GROUP_KEY_INLINE_BYTES]>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn hashes_and_compares_as_its_bytes() {
        // Lookups by `&[u8]` (a view's point lookup) must find keys stored as GroupKey.
        let hasher = hashbrown::DefaultHashBuilder::default();
        for len in [0, 9, GROUP_KEY_INLINE_BYTES, GROUP_KEY_INLINE_BYTES + 1, 100] {
            let bytes: Vec<u8> = (0..len as u8).collect();
            let key = GroupKey::from_slice(&bytes);
            assert_eq!(key.spilled(), len > GROUP_KEY_INLINE_BYTES);
            assert_eq!(hasher.hash_one(&key), hasher.hash_one(bytes.as_slice()));
            let mut map = hashbrown::HashMap::new();
            map.insert(key, len);
            assert_eq!(map.get(bytes.as_slice()), Some(&len));
        }
    }
}
