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
    /// Where rows that fail the schema go instead of failing their request (typed topics).
    pub dead_letter_topic: Option<String>,
    /// The primary key columns of a table (a changelog keyed by them); empty for a stream.
    pub primary_key: Vec<String>,
    /// How late an event may arrive (event time behind the partition's newest) and still
    /// count: the watermark is the newest event time minus this.
    pub lateness_ms: u64,
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
            dead_letter_topic: None,
            primary_key: Vec::new(),
            lateness_ms: 0,
        }
    }

    /// Whether this topic is a table (a changelog keyed by its primary key).
    pub fn is_table(&self) -> bool {
        !self.primary_key.is_empty()
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
        if let Some(dlq) = &self.dead_letter_topic {
            validate_topic_name(dlq)?;
            if *dlq == self.name {
                return Err("a topic cannot be its own dead-letter topic".into());
            }
            if self.schemas.is_empty() {
                return Err("only a typed topic (with a schema) can have a dead-letter topic".into());
            }
        }
        if !self.primary_key.is_empty() {
            let Some(schema) = self.schema() else {
                return Err("a table needs a schema".into());
            };
            for k in &self.primary_key {
                if !schema.columns.iter().any(|c| c.name.eq_ignore_ascii_case(k)) {
                    return Err(format!("primary key column '{k}' is not a column of the table"));
                }
            }
        }
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
        // Version 2 fields.
        e.str(self.dead_letter_topic.as_deref().unwrap_or(""));
        e.u32(self.primary_key.len() as u32);
        for k in &self.primary_key {
            e.str(k);
        }
        e.u64(self.lateness_ms);
    }

    /// The current schema, for a typed topic.
    pub fn schema(&self) -> Option<&Schema> {
        self.schemas.last()
    }

    /// Decodes the current encoding (metadata file version 2).
    pub fn decode(d: &mut Decoder<'_>) -> Result<Self, WireError> {
        Self::decode_version(d, 2)
    }

    /// Decodes the encoding of metadata file `version` (1: no dead-letter topic, key or lateness).
    pub fn decode_version(d: &mut Decoder<'_>, version: u16) -> Result<Self, WireError> {
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
        let (mut dead_letter_topic, mut primary_key, mut lateness_ms) = (None, Vec::new(), 0);
        if version >= 2 {
            dead_letter_topic = Some(d.str()?.to_string()).filter(|s| !s.is_empty());
            let n = d.u32()? as usize;
            if n > crate::record::schema::SCHEMA_COLUMNS_MAX {
                return Err(WireError::Invalid("primary key"));
            }
            primary_key = (0..n).map(|_| d.str().map(str::to_string)).collect::<Result<_, _>>()?;
            lateness_ms = d.u64()?;
        }
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
            dead_letter_topic,
            primary_key,
            lateness_ms,
        })
    }
}

/// The settings a topic can be created with, by name (Kafka's names where Kafka has one;
/// `sluice.*` for the rest), for the Kafka and HTTP admin APIs.
pub const TOPIC_SETTINGS: &[&str] = &[
    "retention.ms",
    "retention.bytes",
    "segment.bytes",
    "max.message.bytes",
    "cleanup.policy",
    "sluice.durability",
    "sluice.schema",
    "sluice.event.time",
    "sluice.dead.letter.topic",
    "sluice.lateness.ms",
];

impl TopicConfig {
    /// Applies named settings (see [`TOPIC_SETTINGS`]); the schema and its event time are
    /// applied together. The error names the setting.
    pub fn apply_settings<'a>(&mut self, settings: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<(), String> {
        let mut schema = None;
        let mut event_time = None;
        for (name, value) in settings {
            let num =
                |v: &str| v.trim().parse::<u64>().map_err(|_| format!("{name}: '{v}' is not a non-negative integer"));
            // Kafka uses -1 for "no limit".
            let limit = |v: &str| if v.trim() == "-1" { Ok(None) } else { num(v).map(Some) };
            match name {
                "retention.ms" => self.retention_ms = limit(value)?,
                "retention.bytes" => self.retention_bytes = limit(value)?,
                "segment.bytes" => self.segment_bytes = num(value)?,
                "max.message.bytes" => {
                    self.batch_bytes_max =
                        u32::try_from(num(value)?).map_err(|_| format!("{name}: '{value}' is too large"))?
                }
                "cleanup.policy" if value == "delete" => {}
                "cleanup.policy" => {
                    return Err(format!(
                        "cleanup.policy '{value}' is not supported: topics keep everything until retention; \
                         a compacted changelog is a table (SQL CREATE TABLE)"
                    ))
                }
                "sluice.durability" => self.durability = value.parse()?,
                "sluice.schema" => schema = Some(value),
                "sluice.event.time" => event_time = Some(value),
                "sluice.dead.letter.topic" => {
                    self.dead_letter_topic = Some(value.to_string()).filter(|v| !v.is_empty())
                }
                "sluice.lateness.ms" => self.lateness_ms = num(value)?,
                other => return Err(format!("unknown topic setting '{other}' (known: {})", TOPIC_SETTINGS.join(", "))),
            }
        }
        match (schema, event_time) {
            (Some(decl), et) => {
                let s = Schema::parse(decl, et).map_err(|e| format!("sluice.schema: {e}"))?;
                self.schemas = vec![s];
            }
            (None, Some(_)) => return Err("sluice.event.time needs sluice.schema".into()),
            (None, None) => {}
        }
        Ok(())
    }

    /// Every setting with its value and whether it is the default: (name, value, default).
    pub fn settings(&self) -> Vec<(&'static str, String, bool)> {
        let d = TopicConfig::new(&self.name, 1);
        let opt = |v: Option<u64>| v.map_or("-1".to_string(), |v| v.to_string());
        let schema = self.schema();
        vec![
            ("retention.ms", opt(self.retention_ms), self.retention_ms.is_none()),
            ("retention.bytes", opt(self.retention_bytes), self.retention_bytes.is_none()),
            ("segment.bytes", self.segment_bytes.to_string(), self.segment_bytes == d.segment_bytes),
            ("max.message.bytes", self.batch_bytes_max.to_string(), self.batch_bytes_max == d.batch_bytes_max),
            ("cleanup.policy", "delete".to_string(), true),
            ("sluice.durability", self.durability.to_string(), self.durability == d.durability),
            ("sluice.schema", schema.map(Schema::declaration).unwrap_or_default(), schema.is_none()),
            (
                "sluice.event.time",
                schema.and_then(|s| s.event_time.map(|i| s.columns[i].name.clone())).unwrap_or_default(),
                schema.is_none_or(|s| s.event_time.is_none()),
            ),
            (
                "sluice.dead.letter.topic",
                self.dead_letter_topic.clone().unwrap_or_default(),
                self.dead_letter_topic.is_none(),
            ),
            ("sluice.lateness.ms", self.lateness_ms.to_string(), self.lateness_ms == 0),
        ]
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

/// Topics the server keeps for itself (`__consumer_offsets`): not deleted from outside,
/// marked internal to Kafka clients, hidden from listings unless asked for.
pub fn is_internal_topic(name: &str) -> bool {
    name.starts_with("__")
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
