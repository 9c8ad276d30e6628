//! The native protocol's messages and their encoding (version 1). See docs/format.md.
//!
//! Frame: `u32 length` (little-endian, of what follows) then the body.
//! Request body: `u16 api_key, u16 api_version, u32 correlation_id`, then the request.
//! Response body: `u32 correlation_id, u16 error_code, str error_message`, then the reply
//! (present only when `error_code` is 0). Strings and byte strings are `u32 length` + bytes.
//! Produce payloads and fetched batches start at 16-aligned positions of the frame body,
//! so records are read in place from the receive buffer.

use rkyv::util::AlignedVec;

use crate::log::Offset;
use crate::log::{Durability, PartitionStatus, StartPosition, TopicConfig};
use crate::wire::{Decoder, Encoder, WireError};

/// 4: a fetch may return batches of version 4 (columnar batches without their record
/// timestamps), which a version-3 client would refuse. 3: a typed topic's fetch may return
/// columnar batches (batch version 3). 2: batch payloads are unaligned rkyv archives. An
/// older client gets `UnsupportedVersion`.
pub const PROTOCOL_VERSION: u16 = 4;
/// Bytes of the request header: api key, api version, correlation id.
pub const REQUEST_HEADER_BYTES: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum ApiKey {
    ApiVersions = 0,
    CreateTopic = 1,
    ListTopics = 2,
    DescribeTopic = 3,
    DeleteTopic = 4,
    Produce = 5,
    Fetch = 6,
    ListOffsets = 7,
    AlterSchema = 8,
}

impl ApiKey {
    pub const ALL: [ApiKey; 9] = [
        ApiKey::ApiVersions,
        ApiKey::CreateTopic,
        ApiKey::ListTopics,
        ApiKey::DescribeTopic,
        ApiKey::DeleteTopic,
        ApiKey::Produce,
        ApiKey::Fetch,
        ApiKey::ListOffsets,
        ApiKey::AlterSchema,
    ];

    pub fn from_u16(v: u16) -> Option<ApiKey> {
        ApiKey::ALL.into_iter().find(|k| *k as u16 == v)
    }
}

/// Error codes on the wire. 0 is success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum ErrorCode {
    None = 0,
    UnknownTopic = 1,
    UnknownPartition = 2,
    TopicExists = 3,
    InvalidConfig = 4,
    ReadOnly = 5,
    Corrupt = 6,
    OffsetOutOfRange = 7,
    InvalidBatch = 8,
    ShuttingDown = 9,
    UnsupportedVersion = 10,
    MalformedRequest = 11,
    Io = 12,
    FrameTooLarge = 13,
    Internal = 14,
    OutOfOrderSequence = 15,
    ProducerFenced = 16,
    InvalidRecord = 17,
}

impl ErrorCode {
    pub fn from_u16(v: u16) -> ErrorCode {
        use ErrorCode::*;
        [
            None,
            UnknownTopic,
            UnknownPartition,
            TopicExists,
            InvalidConfig,
            ReadOnly,
            Corrupt,
            OffsetOutOfRange,
            InvalidBatch,
            ShuttingDown,
            UnsupportedVersion,
            MalformedRequest,
            Io,
            FrameTooLarge,
            Internal,
            OutOfOrderSequence,
            ProducerFenced,
            InvalidRecord,
        ]
        .into_iter()
        .find(|c| *c as u16 == v)
        .unwrap_or(Internal)
    }
}

/// An error as it crosses shards and the wire: a code and a message. `Send`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError { code, message: message.into() }
    }
}

impl From<crate::log::LogError> for ApiError {
    fn from(e: crate::log::LogError) -> Self {
        use crate::log::LogError as L;
        let code = match &e {
            L::UnknownTopic(_) => ErrorCode::UnknownTopic,
            L::UnknownPartition { .. } => ErrorCode::UnknownPartition,
            L::TopicExists(_) => ErrorCode::TopicExists,
            L::InvalidConfig(_) => ErrorCode::InvalidConfig,
            L::ReadOnly { .. } => ErrorCode::ReadOnly,
            L::Corrupt { .. } | L::BadMetadata { .. } => ErrorCode::Corrupt,
            L::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
            L::Payload(_) => ErrorCode::InvalidBatch,
            L::Closed { .. } => ErrorCode::ShuttingDown,
            L::OutOfOrderSequence { .. } => ErrorCode::OutOfOrderSequence,
            L::ProducerFenced { .. } => ErrorCode::ProducerFenced,
            L::Io(_) => ErrorCode::Io,
        };
        ApiError::new(code, e.to_string())
    }
}

impl From<WireError> for ApiError {
    fn from(e: WireError) -> Self {
        ApiError::new(ErrorCode::MalformedRequest, e.to_string())
    }
}

/// The settings of a topic to create; zero / `None` fields take the server's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTopic {
    pub name: String,
    pub partitions: u32,
    pub durability: Durability,
    pub retention_bytes: Option<u64>,
    pub retention_ms: Option<u64>,
    pub segment_bytes: Option<u64>,
    pub batch_bytes_max: Option<u32>,
    /// `col TYPE [NOT NULL] [DEFAULT v], ...` for a typed topic; `None` for a raw one.
    pub schema: Option<String>,
    /// The event-time column of a typed topic.
    pub event_time: Option<String>,
}

impl CreateTopic {
    /// A raw topic with the server's defaults (durability `sync`).
    pub fn new(name: &str, partitions: u32) -> Self {
        CreateTopic {
            name: name.to_string(),
            partitions,
            durability: Durability::Sync,
            retention_bytes: None,
            retention_ms: None,
            segment_bytes: None,
            batch_bytes_max: None,
            schema: None,
            event_time: None,
        }
    }

    /// The topic configuration this asks for; a bad schema is an error naming the problem.
    pub fn to_config(&self) -> Result<TopicConfig, ApiError> {
        let mut c = self.base_config();
        match (&self.schema, &self.event_time) {
            (Some(decl), et) => {
                let schema = crate::record::schema::Schema::parse(decl, et.as_deref())
                    .map_err(|e| ApiError::new(ErrorCode::InvalidConfig, format!("invalid schema: {e}")))?;
                c.schemas = vec![schema];
            }
            (None, Some(_)) => {
                return Err(ApiError::new(ErrorCode::InvalidConfig, "an event time column needs a schema"));
            }
            (None, None) => {}
        }
        Ok(c)
    }

    fn base_config(&self) -> TopicConfig {
        let mut c = TopicConfig::new(&self.name, self.partitions);
        c.durability = self.durability;
        c.retention_bytes = self.retention_bytes;
        c.retention_ms = self.retention_ms;
        if let Some(s) = self.segment_bytes {
            c.segment_bytes = s;
        }
        if let Some(b) = self.batch_bytes_max {
            c.batch_bytes_max = b;
        }
        c
    }
}

/// A decoded request. Produce keeps the frame buffer so its payload is validated and
/// appended without a copy.
#[derive(Debug)]
pub enum Request {
    ApiVersions,
    CreateTopic(CreateTopic),
    ListTopics,
    DescribeTopic {
        name: String,
    },
    DeleteTopic {
        name: String,
    },
    Produce {
        topic: String,
        partition: u32,
        body: AlignedVec,
        payload_start: usize,
    },
    Fetch {
        topic: String,
        partition: u32,
        start: StartPosition,
        max_bytes: u32,
        max_wait_ms: u32,
    },
    ListOffsets {
        topic: String,
        partition: u32,
        start: StartPosition,
    },
    /// Adds a schema version to a typed topic: `schema` declares every column.
    AlterSchema {
        name: String,
        schema: String,
        event_time: Option<String>,
    },
}

/// The request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader {
    pub api_key: u16,
    pub api_version: u16,
    pub correlation_id: u32,
}

pub fn decode_header(body: &[u8]) -> Result<RequestHeader, WireError> {
    let mut d = Decoder::new(body);
    Ok(RequestHeader { api_key: d.u16()?, api_version: d.u16()?, correlation_id: d.u32()? })
}

fn opt_u64(v: u64) -> Option<u64> {
    (v != u64::MAX).then_some(v)
}

pub fn encode_start(e: &mut Encoder, s: StartPosition) {
    match s {
        StartPosition::Earliest => e.u8(0).u64(0),
        StartPosition::Latest => e.u8(1).u64(0),
        StartPosition::Offset(o) => e.u8(2).u64(o),
        StartPosition::Time(t) => e.u8(3).i64(t),
    };
}

fn decode_start(d: &mut Decoder<'_>) -> Result<StartPosition, WireError> {
    let kind = d.u8()?;
    let v = d.u64()?;
    Ok(match kind {
        0 => StartPosition::Earliest,
        1 => StartPosition::Latest,
        2 => StartPosition::Offset(v),
        3 => StartPosition::Time(v as i64),
        _ => return Err(WireError::Invalid("start position")),
    })
}

/// Decodes a request body (header included). Never panics; every length is checked.
pub fn decode_request(body: AlignedVec) -> Result<(RequestHeader, Request), (Option<RequestHeader>, ApiError)> {
    let header = decode_header(&body).map_err(|e| (None, e.into()))?;
    let fail = |e: WireError| (Some(header), ApiError::from(e));
    let Some(key) = ApiKey::from_u16(header.api_key) else {
        return Err((
            Some(header),
            ApiError::new(ErrorCode::UnsupportedVersion, format!("unknown api key {}", header.api_key)),
        ));
    };
    if header.api_version != PROTOCOL_VERSION {
        return Err((
            Some(header),
            ApiError::new(
                ErrorCode::UnsupportedVersion,
                format!("api {key:?} version {} is not supported (supported: {PROTOCOL_VERSION})", header.api_version),
            ),
        ));
    }
    let mut d = Decoder::new(&body);
    d.u64().map_err(fail)?; // header, decoded above
    let request = (|| -> Result<Request, WireError> {
        Ok(match key {
            ApiKey::ApiVersions => Request::ApiVersions,
            ApiKey::ListTopics => Request::ListTopics,
            ApiKey::CreateTopic => {
                let name = d.str()?.to_string();
                let partitions = d.u32()?;
                let durability = crate::log::decode_durability(&mut d)?;
                let retention_bytes = opt_u64(d.u64()?);
                let retention_ms = opt_u64(d.u64()?);
                let segment_bytes = opt_u64(d.u64()?);
                let batch = d.u32()?;
                let schema = Some(d.str()?.to_string()).filter(|s| !s.is_empty());
                let event_time = Some(d.str()?.to_string()).filter(|s| !s.is_empty());
                Request::CreateTopic(CreateTopic {
                    name,
                    partitions,
                    durability,
                    retention_bytes,
                    retention_ms,
                    segment_bytes,
                    batch_bytes_max: (batch != 0).then_some(batch),
                    schema,
                    event_time,
                })
            }
            ApiKey::DescribeTopic => Request::DescribeTopic { name: d.str()?.to_string() },
            ApiKey::DeleteTopic => Request::DeleteTopic { name: d.str()?.to_string() },
            ApiKey::Produce => {
                let topic = d.str()?.to_string();
                let partition = d.u32()?;
                d.pad_to(16)?;
                let payload_start = d.position();
                return Ok(Request::Produce { topic, partition, body: AlignedVec::new(), payload_start });
            }
            ApiKey::Fetch => Request::Fetch {
                topic: d.str()?.to_string(),
                partition: d.u32()?,
                start: decode_start(&mut d)?,
                max_bytes: d.u32()?,
                max_wait_ms: d.u32()?,
            },
            ApiKey::ListOffsets => {
                Request::ListOffsets { topic: d.str()?.to_string(), partition: d.u32()?, start: decode_start(&mut d)? }
            }
            ApiKey::AlterSchema => Request::AlterSchema {
                name: d.str()?.to_string(),
                schema: d.str()?.to_string(),
                event_time: Some(d.str()?.to_string()).filter(|s| !s.is_empty()),
            },
        })
    })()
    .map_err(fail)?;
    if let Request::Produce { topic, partition, payload_start, .. } = request {
        return Ok((header, Request::Produce { topic, partition, body, payload_start }));
    }
    d.end().map_err(fail)?;
    Ok((header, request))
}

/// Encoders for requests: what clients send.
pub mod encode {
    use super::*;

    fn header(key: ApiKey, correlation_id: u32) -> Encoder {
        let mut e = Encoder::new();
        e.u32(0); // frame length, patched by `frame`
        e.u16(key as u16).u16(PROTOCOL_VERSION).u32(correlation_id);
        e
    }

    /// Patches the frame length in.
    pub fn frame(e: Encoder) -> Vec<u8> {
        let mut v = e.finish();
        let len = (v.len() - 4) as u32;
        v[..4].copy_from_slice(&len.to_le_bytes());
        v
    }

    pub fn api_versions(corr: u32) -> Vec<u8> {
        frame(header(ApiKey::ApiVersions, corr))
    }

    pub fn create_topic(corr: u32, t: &CreateTopic) -> Vec<u8> {
        let mut e = header(ApiKey::CreateTopic, corr);
        e.str(&t.name).u32(t.partitions);
        crate::log::encode_durability(&mut e, t.durability);
        e.u64(t.retention_bytes.unwrap_or(u64::MAX))
            .u64(t.retention_ms.unwrap_or(u64::MAX))
            .u64(t.segment_bytes.unwrap_or(u64::MAX))
            .u32(t.batch_bytes_max.unwrap_or(0))
            .str(t.schema.as_deref().unwrap_or(""))
            .str(t.event_time.as_deref().unwrap_or(""));
        frame(e)
    }

    pub fn list_topics(corr: u32) -> Vec<u8> {
        frame(header(ApiKey::ListTopics, corr))
    }

    pub fn describe_topic(corr: u32, name: &str) -> Vec<u8> {
        let mut e = header(ApiKey::DescribeTopic, corr);
        e.str(name);
        frame(e)
    }

    pub fn delete_topic(corr: u32, name: &str) -> Vec<u8> {
        let mut e = header(ApiKey::DeleteTopic, corr);
        e.str(name);
        frame(e)
    }

    /// The payload lands 16-aligned in the frame body (the body starts after the length).
    pub fn produce(corr: u32, topic: &str, partition: u32, payload: &[u8]) -> Vec<u8> {
        let mut e = header(ApiKey::Produce, corr);
        e.str(topic).u32(partition);
        while !(e.len() - 4).is_multiple_of(16) {
            e.u8(0);
        }
        e.raw(payload);
        frame(e)
    }

    pub fn fetch(
        corr: u32,
        topic: &str,
        partition: u32,
        start: StartPosition,
        max_bytes: u32,
        max_wait_ms: u32,
    ) -> Vec<u8> {
        let mut e = header(ApiKey::Fetch, corr);
        e.str(topic).u32(partition);
        encode_start(&mut e, start);
        e.u32(max_bytes).u32(max_wait_ms);
        frame(e)
    }

    pub fn alter_schema(corr: u32, name: &str, schema: &str, event_time: Option<&str>) -> Vec<u8> {
        let mut e = header(ApiKey::AlterSchema, corr);
        e.str(name).str(schema).str(event_time.unwrap_or(""));
        frame(e)
    }

    pub fn list_offsets(corr: u32, topic: &str, partition: u32, start: StartPosition) -> Vec<u8> {
        let mut e = header(ApiKey::ListOffsets, corr);
        e.str(topic).u32(partition);
        encode_start(&mut e, start);
        frame(e)
    }
}

/// Starts a response frame: length placeholder, correlation id, error.
pub fn response_start(correlation_id: u32, error: Option<&ApiError>) -> Encoder {
    let mut e = Encoder::new();
    e.u32(0).u32(correlation_id);
    match error {
        None => e.u16(0).str(""),
        Some(err) => e.u16(err.code as u16).str(&err.message),
    };
    e
}

pub fn encode_partition_status(e: &mut Encoder, s: &PartitionStatus) {
    e.u32(s.partition)
        .u64(s.log_start.0)
        .u64(s.durable_end.0)
        .u64(s.written_end.0)
        .u64(s.visible_end.0)
        .u32(s.segments as u32)
        .u64(s.bytes)
        .str(s.read_only.as_deref().unwrap_or(""));
}

pub fn decode_partition_status(d: &mut Decoder<'_>) -> Result<PartitionStatus, WireError> {
    Ok(PartitionStatus {
        partition: d.u32()?,
        log_start: Offset(d.u64()?),
        durable_end: Offset(d.u64()?),
        written_end: Offset(d.u64()?),
        visible_end: Offset(d.u64()?),
        segments: d.u32()? as usize,
        bytes: d.u64()?,
        read_only: Some(d.str()?.to_string()).filter(|s| !s.is_empty()),
    })
}

/// A decoded response header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHeader {
    pub correlation_id: u32,
    pub error: Option<ApiError>,
}

pub fn decode_response_header(d: &mut Decoder<'_>) -> Result<ResponseHeader, WireError> {
    let correlation_id = d.u32()?;
    let code = d.u16()?;
    let message = d.str()?.to_string();
    let error = (code != 0).then(|| ApiError::new(ErrorCode::from_u16(code), message));
    Ok(ResponseHeader { correlation_id, error })
}
