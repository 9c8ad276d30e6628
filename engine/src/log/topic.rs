//! Topic configuration: durability, retention, segment size; and its metadata file.

use std::fmt;
use std::str::FromStr;

use crate::limits::{
    BATCH_BYTES_MAX_CEILING, BATCH_BYTES_MAX_DEFAULT, BLOCK_BYTES, PARTITIONS_MAX, SEGMENT_BYTES_DEFAULT,
    SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN, TOPIC_NAME_BYTES_MAX,
};
use crate::record::schema::Schema;
use crate::wire::{Decoder, Encoder, WireError};

/// When an append is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// After fdatasync; concurrent appends share one sync (group commit). The default.
    #[default]
    Sync,
    /// After the write; an fdatasync runs every `ms` milliseconds.
    Interval { ms: u64 },
    /// After the write; synced only when a segment rolls or the partition closes.
    None,
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Durability::Sync => f.write_str("sync"),
            Durability::Interval { ms } => write!(f, "interval:{ms}"),
            Durability::None => f.write_str("none"),
        }
    }
}

impl FromStr for Durability {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sync" => Ok(Durability::Sync),
            "none" => Ok(Durability::None),
            _ => match s.strip_prefix("interval:") {
                Some(ms) => match ms.parse::<u64>() {
                    Ok(ms) if ms > 0 => Ok(Durability::Interval { ms }),
                    _ => Err(format!("bad interval in durability '{s}': want interval:<ms> with ms > 0")),
                },
                None => Err(format!("unknown durability '{s}': want sync, interval:<ms> or none")),
            },
        }
    }
}

/// A topic's settings, fixed at creation.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicConfig {
    pub name: String,
    /// Identity written into every batch header, to catch misdirected reads and writes.
    pub topic_id: u32,
    pub partitions: u32,
    pub durability: Durability,
    pub retention_bytes: Option<u64>,
    pub retention_ms: Option<u64>,
    pub segment_bytes: u64,
    pub batch_bytes_max: u32,
    /// Every version of the topic's schema, oldest first; empty for a raw topic.
    pub schemas: Vec<Schema>,
}

impl TopicConfig {
    pub fn new(name: &str, partitions: u32) -> Self {
        TopicConfig {
            name: name.to_string(),
            topic_id: 0,
            partitions,
            durability: Durability::Sync,
            retention_bytes: None,
            retention_ms: None,
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            batch_bytes_max: BATCH_BYTES_MAX_DEFAULT as u32,
            schemas: Vec::new(),
        }
    }

    /// Checks the settings; the error names the offending one.
    pub fn validate(&self) -> Result<(), String> {
        validate_topic_name(&self.name)?;
        if self.partitions == 0 || self.partitions > PARTITIONS_MAX {
            return Err(format!("partitions must be between 1 and {PARTITIONS_MAX}, not {}", self.partitions));
        }
        if self.segment_bytes < SEGMENT_BYTES_MIN || self.segment_bytes > SEGMENT_BYTES_MAX {
            return Err(format!(
                "segment_bytes must be between {SEGMENT_BYTES_MIN} and {SEGMENT_BYTES_MAX}, not {}",
                self.segment_bytes
            ));
        }
        if self.batch_bytes_max == 0 || self.batch_bytes_max as usize > BATCH_BYTES_MAX_CEILING {
            return Err(format!("batch_bytes_max must be between 1 and {BATCH_BYTES_MAX_CEILING}"));
        }
        for (i, schema) in self.schemas.iter().enumerate() {
            if schema.version as usize != i + 1 {
                return Err(format!("schema versions must run 1, 2, ...; found {} at {}", schema.version, i + 1));
            }
        }
        // A batch must fit one segment after the segment's header block.
        if self.batch_bytes_max as u64 + 2 * BLOCK_BYTES as u64 > self.segment_bytes {
            return Err(format!(
                "batch_bytes_max {} does not fit in segment_bytes {}",
                self.batch_bytes_max, self.segment_bytes
            ));
        }
        Ok(())
    }

    pub fn encode(&self, e: &mut Encoder) {
        e.str(&self.name);
        e.u32(self.topic_id);
        e.u32(self.partitions);
        encode_durability(e, self.durability);
        e.u64(self.retention_bytes.unwrap_or(u64::MAX));
        e.u64(self.retention_ms.unwrap_or(u64::MAX));
        e.u64(self.segment_bytes);
        e.u32(self.batch_bytes_max);
        e.u32(self.schemas.len() as u32);
        for schema in &self.schemas {
            schema.encode(e);
        }
    }

    /// The current schema, for a typed topic.
    pub fn schema(&self) -> Option<&Schema> {
        self.schemas.last()
    }

    pub fn decode(d: &mut Decoder<'_>) -> Result<Self, WireError> {
        let name = d.str()?.to_string();
        let topic_id = d.u32()?;
        let partitions = d.u32()?;
        let durability = decode_durability(d)?;
        let opt = |v: u64| if v == u64::MAX { None } else { Some(v) };
        let retention_bytes = opt(d.u64()?);
        let retention_ms = opt(d.u64()?);
        let segment_bytes = d.u64()?;
        let batch_bytes_max = d.u32()?;
        let versions = d.u32()? as usize;
        if versions > u16::MAX as usize {
            return Err(WireError::Invalid("schema versions"));
        }
        let schemas = (0..versions).map(|_| Schema::decode(d)).collect::<Result<Vec<_>, _>>()?;
        Ok(TopicConfig {
            name,
            topic_id,
            partitions,
            durability,
            retention_bytes,
            retention_ms,
            segment_bytes,
            batch_bytes_max,
            schemas,
        })
    }
}

pub fn encode_durability(e: &mut Encoder, d: Durability) {
    let (kind, ms) = match d {
        Durability::Sync => (0, 0),
        Durability::Interval { ms } => (1, ms),
        Durability::None => (2, 0),
    };
    e.u8(kind).u64(ms);
}

pub fn decode_durability(d: &mut Decoder<'_>) -> Result<Durability, WireError> {
    let kind = d.u8()?;
    let ms = d.u64()?;
    match kind {
        0 => Ok(Durability::Sync),
        1 if ms > 0 => Ok(Durability::Interval { ms }),
        2 => Ok(Durability::None),
        _ => Err(WireError::Invalid("durability")),
    }
}

/// Topic names: 1 to 249 bytes of `[A-Za-z0-9._-]`, not `.` or `..` (Kafka's rule).
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > TOPIC_NAME_BYTES_MAX {
        return Err(format!("topic name must be 1 to {TOPIC_NAME_BYTES_MAX} bytes long"));
    }
    if name == "." || name == ".." {
        return Err("topic name cannot be '.' or '..'".to_string());
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(format!("topic name '{name}' has an invalid character {c:?}: use [A-Za-z0-9._-]"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durability_parses_and_prints() {
        for s in ["sync", "none", "interval:5"] {
            assert_eq!(s.parse::<Durability>().map(|d| d.to_string()), Ok(s.to_string()));
        }
        assert!("interval:0".parse::<Durability>().is_err());
        assert!("fast".parse::<Durability>().is_err());
    }

    #[test]
    fn config_round_trips_and_validates() {
        let mut c = TopicConfig::new("trades-1", 4);
        c.retention_ms = Some(1000);
        c.durability = Durability::Interval { ms: 7 };
        let mut e = Encoder::new();
        c.encode(&mut e);
        let bytes = e.finish();
        assert_eq!(TopicConfig::decode(&mut Decoder::new(&bytes)), Ok(c.clone()));
        assert!(c.validate().is_ok());
        assert!(TopicConfig::new("a/b", 1).validate().is_err());
        assert!(TopicConfig::new("ok", 0).validate().is_err());
    }
}
