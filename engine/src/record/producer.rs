//! The producer trailer: who wrote a batch, for idempotent producers.
//!
//! A batch appended by an idempotent producer (Kafka's `enable.idempotence`) carries its
//! producer id, epoch and first sequence number in a 16-byte trailer after the records
//! (header flag [`FLAG_PRODUCER`](super::FLAG_PRODUCER)), inside the payload and so under
//! its CRC. The log is then the only place producer state lives: recovery rebuilds it
//! from the trailers, and a retry after a restart is still recognised as a duplicate.
//!
//! ```text
//! 0 i64 producer_id   8 i16 producer_epoch   10 u16 reserved (0)   12 i32 base_sequence
//! 16 u32 sequence_count (0: the batch's record count)   20 u32 reserved (0)
//! ```
//! `sequence_count` differs from the record count only when the producer's batch lost
//! records on the way in (invalid rows sent to a dead-letter topic): the producer's
//! sequence still advances by what it sent.

/// Bytes of the trailer.
pub const PRODUCER_TRAILER_BYTES: usize = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProducerInfo {
    pub producer_id: i64,
    pub epoch: i16,
    /// Sequence number of the batch's first record; the records follow consecutively.
    pub base_sequence: i32,
}

/// A trailer: the producer and the number of sequence numbers its batch used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProducerTrailer {
    pub producer: ProducerInfo,
    /// 0 when the batch used exactly its record count.
    pub sequence_count: u32,
}

impl ProducerTrailer {
    pub fn encode(&self) -> [u8; PRODUCER_TRAILER_BYTES] {
        let p = &self.producer;
        let mut out = [0u8; PRODUCER_TRAILER_BYTES];
        out[0..8].copy_from_slice(&p.producer_id.to_le_bytes());
        out[8..10].copy_from_slice(&p.epoch.to_le_bytes());
        out[12..16].copy_from_slice(&p.base_sequence.to_le_bytes());
        out[16..20].copy_from_slice(&self.sequence_count.to_le_bytes());
        out
    }

    /// Reads a trailer; `None` if `b` is not exactly a trailer or its reserved bytes are set.
    pub fn decode(b: &[u8]) -> Option<ProducerTrailer> {
        if b.len() != PRODUCER_TRAILER_BYTES || b[10] != 0 || b[11] != 0 || b[20..24] != [0; 4] {
            return None;
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&b[0..8]);
        Some(ProducerTrailer {
            producer: ProducerInfo {
                producer_id: i64::from_le_bytes(id),
                epoch: i16::from_le_bytes([b[8], b[9]]),
                base_sequence: i32::from_le_bytes([b[12], b[13], b[14], b[15]]),
            },
            sequence_count: u32::from_le_bytes([b[16], b[17], b[18], b[19]]),
        })
    }

    /// Sequence numbers the batch used.
    pub fn sequences(&self, record_count: u32) -> u32 {
        if self.sequence_count == 0 {
            record_count
        } else {
            self.sequence_count
        }
    }
}

impl ProducerInfo {
    /// The sequence number of the batch's last record (sequences wrap at i32::MAX, as Kafka's do).
    pub fn last_sequence(&self, record_count: u32) -> i32 {
        let span = (record_count.max(1) - 1) as i64;
        ((self.base_sequence as i64 + span) % (i32::MAX as i64 + 1)) as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailer_round_trips_and_sequences_wrap() {
        let p = ProducerInfo { producer_id: 1 << 40, epoch: -3, base_sequence: 77 };
        let t = ProducerTrailer { producer: p, sequence_count: 12 };
        assert_eq!(ProducerTrailer::decode(&t.encode()), Some(t));
        assert_eq!(t.sequences(10), 12);
        assert_eq!(p.last_sequence(10), 86);
        let w = ProducerInfo { producer_id: 1, epoch: 0, base_sequence: i32::MAX - 1 };
        assert_eq!(w.last_sequence(3), 0);
        let mut bad = t.encode();
        bad[10] = 1;
        assert_eq!(ProducerTrailer::decode(&bad), None);
    }
}
