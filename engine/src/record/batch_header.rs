//! The batch header: 64 bytes, little-endian, in front of every batch payload.
//!
//! ```text
//! 0  u32 magic "SLCB"           32 i64 first_timestamp_ms
//! 4  u16 version (3)            40 i64 max_timestamp_ms
//! 6  u16 flags                  48 u32 record_count
//! 8  u32 header_crc32c          52 u32 payload_len
//! 12 u32 payload_crc32c         56 u32 topic_id
//! 16 u64 base_offset            60 u16 partition
//! 24 u64 durable_hint           62 u16 schema_version
//! ```
//! `header_crc32c` covers bytes 0..8 and 12..64 (everything but itself), which include
//! `payload_crc32c`: one check of the header and one of the payload cover the whole batch.
//! See docs/format.md.

use crate::limits::BATCH_HEADER_BYTES;

/// "SLCB" read as a little-endian u32.
pub const BATCH_MAGIC: u32 = u32::from_le_bytes(*b"SLCB");
/// 4: a columnar batch may leave its record timestamps out when they are the values of its
/// first TIMESTAMP column (see `ColumnBatch::timestamps`). 3 (still read): typed batches
/// may be columnar ([`FLAG_COLUMNAR`]). 2 (still read): the payload's rkyv archive is
/// unaligned (primitives of alignment 1: a row of three 8-byte columns takes 60 bytes a
/// record instead of 88). Version 1 (aligned) is refused.
pub const BATCH_VERSION: u16 = 4;
/// The oldest batch version this build reads.
pub const BATCH_VERSION_MIN: u16 = 2;

/// Flag: the payload holds typed rows rather than raw byte values.
pub const FLAG_TYPED: u16 = 1;
/// Flag: the payload ends with a producer trailer (see `record::producer`).
pub const FLAG_PRODUCER: u16 = 2;
/// Flag (version 3, with [`FLAG_TYPED`]): the typed rows are stored column by column (see
/// `record::columns`).
pub const FLAG_COLUMNAR: u16 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchHeader {
    pub flags: u16,
    pub payload_crc32c: u32,
    pub base_offset: u64,
    /// The partition's durable watermark when this batch was written: every offset below it
    /// had been synced and acknowledged. Recovery uses it to tell corruption from a torn tail.
    pub durable_hint: u64,
    pub first_timestamp_ms: i64,
    pub max_timestamp_ms: i64,
    pub record_count: u32,
    pub payload_len: u32,
    pub topic_id: u32,
    pub partition: u16,
    pub schema_version: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("no batch here (zero magic)")]
    Empty,
    #[error("bad batch magic {0:#010x}")]
    BadMagic(u32),
    #[error("unsupported batch version {0} (this build reads versions 2 and 3; version 1, the aligned archive layout, was written by builds before 2026-12-02)")]
    BadVersion(u16),
    #[error("batch header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    BadHeaderCrc { stored: u32, computed: u32 },
    #[error("batch payload checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    BadPayloadCrc { stored: u32, computed: u32 },
    #[error("truncated batch header: {0} bytes")]
    Truncated(usize),
    #[error("batch offsets past the end of the offset space (base {base}, {count} records)")]
    OffsetOverflow { base: u64, count: u32 },
}

/// CRC32C of the header without its own CRC field: bytes 0..8 then 12..64.
fn header_crc(b: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&b[0..8]), &b[12..BATCH_HEADER_BYTES])
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

impl BatchHeader {
    /// Bytes on disk of a batch with this header: header + payload, padded to the block.
    pub fn disk_len(&self) -> u64 {
        crate::limits::align_up((BATCH_HEADER_BYTES + self.payload_len as usize) as u64)
    }

    /// One past the last offset of the batch.
    pub fn end_offset(&self) -> u64 {
        self.base_offset + self.record_count as u64
    }

    /// Writes the header, computing its CRC, into the first 64 bytes of `out`.
    pub fn encode(&self, out: &mut [u8]) {
        let out = &mut out[..BATCH_HEADER_BYTES];
        out[0..4].copy_from_slice(&BATCH_MAGIC.to_le_bytes());
        out[4..6].copy_from_slice(&BATCH_VERSION.to_le_bytes());
        out[6..8].copy_from_slice(&self.flags.to_le_bytes());
        out[12..16].copy_from_slice(&self.payload_crc32c.to_le_bytes());
        out[16..24].copy_from_slice(&self.base_offset.to_le_bytes());
        out[24..32].copy_from_slice(&self.durable_hint.to_le_bytes());
        out[32..40].copy_from_slice(&self.first_timestamp_ms.to_le_bytes());
        out[40..48].copy_from_slice(&self.max_timestamp_ms.to_le_bytes());
        out[48..52].copy_from_slice(&self.record_count.to_le_bytes());
        out[52..56].copy_from_slice(&self.payload_len.to_le_bytes());
        out[56..60].copy_from_slice(&self.topic_id.to_le_bytes());
        out[60..62].copy_from_slice(&self.partition.to_le_bytes());
        out[62..64].copy_from_slice(&self.schema_version.to_le_bytes());
        let crc = header_crc(out);
        out[8..12].copy_from_slice(&crc.to_le_bytes());
    }

    /// Parses and checks a header (magic, version, header CRC). The payload is checked
    /// separately with [`BatchHeader::check_payload`].
    pub fn decode(b: &[u8]) -> Result<BatchHeader, HeaderError> {
        if b.len() < BATCH_HEADER_BYTES {
            return Err(HeaderError::Truncated(b.len()));
        }
        let magic = u32_at(b, 0);
        if magic != BATCH_MAGIC {
            return Err(if magic == 0 { HeaderError::Empty } else { HeaderError::BadMagic(magic) });
        }
        let version = u16_at(b, 4);
        let flags = u16_at(b, 6);
        // Version 2 had no columnar batches: that flag there is not ours to read.
        if !(BATCH_VERSION_MIN..=BATCH_VERSION).contains(&version) || (version < 3 && flags & FLAG_COLUMNAR != 0) {
            return Err(HeaderError::BadVersion(version));
        }
        let stored = u32_at(b, 8);
        let computed = header_crc(b);
        if stored != computed {
            return Err(HeaderError::BadHeaderCrc { stored, computed });
        }
        let (base, count) = (u64_at(b, 16), u32_at(b, 48));
        // A crafted file with valid checksums must not overflow `end_offset` downstream.
        if base.checked_add(count as u64).is_none() {
            return Err(HeaderError::OffsetOverflow { base, count });
        }
        Ok(BatchHeader {
            flags,
            payload_crc32c: u32_at(b, 12),
            base_offset: u64_at(b, 16),
            durable_hint: u64_at(b, 24),
            first_timestamp_ms: u64_at(b, 32) as i64,
            max_timestamp_ms: u64_at(b, 40) as i64,
            record_count: u32_at(b, 48),
            payload_len: u32_at(b, 52),
            topic_id: u32_at(b, 56),
            partition: u16_at(b, 60),
            schema_version: u16_at(b, 62),
        })
    }

    /// Checks the payload against the header's CRC.
    pub fn check_payload(&self, payload: &[u8]) -> Result<(), HeaderError> {
        let computed = crc32c::crc32c(payload);
        if computed != self.payload_crc32c {
            return Err(HeaderError::BadPayloadCrc { stored: self.payload_crc32c, computed });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_detects_any_flipped_bit() {
        let h = BatchHeader {
            flags: 0,
            payload_crc32c: 0xdead_beef,
            base_offset: 42,
            durable_hint: 40,
            first_timestamp_ms: -5,
            max_timestamp_ms: 1_700_000_000_000,
            record_count: 7,
            payload_len: 1000,
            topic_id: 9,
            partition: 3,
            schema_version: 2,
        };
        let mut buf = [0u8; BATCH_HEADER_BYTES];
        h.encode(&mut buf);
        assert_eq!(BatchHeader::decode(&buf), Ok(h));
        for bit in 0..BATCH_HEADER_BYTES * 8 {
            let mut b = buf;
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(BatchHeader::decode(&b).is_err(), "flip of bit {bit} went unnoticed");
        }
        // Valid checksums, offsets past u64::MAX: refused, not overflowed later.
        BatchHeader { base_offset: u64::MAX - 3, ..h }.encode(&mut buf);
        assert_eq!(BatchHeader::decode(&buf), Err(HeaderError::OffsetOverflow { base: u64::MAX - 3, count: 7 }));
    }
}
