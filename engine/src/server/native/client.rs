//! A blocking client of the native protocol, for the CLI, tests, tools and benchmarks.
//! Requests can be pipelined: [`Client::send`] several, then [`Client::recv`] the replies.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use rkyv::util::AlignedVec;

use super::protocol::{decode_partition_status, decode_response_header, encode, ApiError, CreateTopic, ResponseHeader};
use crate::limits::{BATCH_HEADER_BYTES, FRAME_BYTES_MAX_DEFAULT};
use crate::log::{Offset, PartitionStatus, StartPosition, TopicConfig};
use crate::record::{ArchivedRecord, BatchHeader, BatchPayload, TypedRows};
use crate::wire::{Decoder, WireError};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("server error {0}")]
    Api(#[from] ApiError),
    #[error("malformed reply: {0}")]
    Protocol(String),
}

impl From<WireError> for ClientError {
    fn from(e: WireError) -> Self {
        ClientError::Protocol(e.to_string())
    }
}

/// A reply: its header and its body, 16-aligned, positioned after the header.
#[derive(Debug)]
pub struct Reply {
    pub header: ResponseHeader,
    body: AlignedVec,
    pos: usize,
}

impl Reply {
    /// A decoder positioned after the header.
    pub fn decoder(&self) -> Decoder<'_> {
        Decoder::new_at(&self.body, self.pos)
    }
}

/// The result of a produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Produced {
    pub base_offset: u64,
    pub record_count: u32,
}

/// Fetched batches, checked: CRC of header and payload, and the archive's structure.
#[derive(Debug)]
pub struct Fetched {
    pub start: Offset,
    pub log_start: Offset,
    pub visible_end: Offset,
    body: AlignedVec,
    batches: Vec<(BatchHeader, usize)>,
}

/// The records' archive of a stored payload: without the producer trailer, if any.
fn records_len(h: &BatchHeader) -> usize {
    let trailer = if h.flags & crate::record::FLAG_PRODUCER != 0 { crate::record::PRODUCER_TRAILER_BYTES } else { 0 };
    (h.payload_len as usize).saturating_sub(trailer)
}

/// A typed record of a fetch: its values as written (their schema version's columns).
#[derive(Debug, Clone, PartialEq)]
pub struct FetchedRow<'a> {
    pub timestamp_ms: i64,
    pub key: Option<&'a [u8]>,
    pub row: crate::record::schema::Row,
}

impl Fetched {
    /// Every batch: its header and its records' archive.
    pub fn batches(&self) -> impl Iterator<Item = (&BatchHeader, &[u8])> {
        self.batches.iter().map(|(h, at)| (h, &self.body[*at..*at + records_len(h)]))
    }

    /// Every raw record from `start` on, with its offset. Typed batches (written by an
    /// embedder with its own value type) are skipped.
    pub fn records(&self) -> impl Iterator<Item = (u64, &ArchivedRecord<Vec<u8>>)> {
        let start = self.start.0;
        self.batches.iter().filter(|(h, _)| h.flags & crate::record::FLAG_TYPED == 0).flat_map(move |(h, at)| {
            let payload = &self.body[*at..*at + records_len(h)];
            // Checked access: the bytes came over the network.
            let records = rkyv::access::<rkyv::Archived<Vec<crate::record::RawRecord>>, rkyv::rancor::Error>(payload)
                .map(|r| r.as_slice())
                .unwrap_or(&[]);
            records
                .iter()
                .enumerate()
                .map(move |(i, r)| (h.base_offset + i as u64, r))
                .filter(move |(o, _)| *o >= start)
        })
    }

    /// Every typed row from `start` on (a typed topic's records, stored as rows or as
    /// columns), checked as it is read: the bytes came over the network.
    pub fn rows(&self) -> impl Iterator<Item = (u64, FetchedRow<'_>)> {
        let start = self.start.0;
        self.batches.iter().filter(|(h, _)| h.flags & crate::record::FLAG_TYPED != 0 && h.schema_version > 0).flat_map(
            move |(h, at)| {
                let payload = &self.body[*at..*at + records_len(h)];
                let rows = if h.flags & crate::record::FLAG_COLUMNAR != 0 {
                    rkyv::access::<crate::record::columns::ArchivedColumnBatch, rkyv::rancor::Error>(payload)
                        .ok()
                        .filter(|c| crate::record::columns::check_column_batch(c).is_ok())
                        .map(TypedRows::Columns)
                } else {
                    rkyv::access::<
                        rkyv::vec::ArchivedVec<ArchivedRecord<crate::record::schema::Row>>,
                        rkyv::rancor::Error,
                    >(payload)
                    .ok()
                    .map(TypedRows::Rows)
                };
                let n = rows.map_or(0, |r| r.len());
                (0..n).map(move |i| (h.base_offset + i as u64, i)).filter(move |(o, _)| *o >= start).filter_map(
                    move |(o, i)| {
                        let rows = rows?;
                        Some((
                            o,
                            FetchedRow { timestamp_ms: rows.timestamp_ms(i), key: rows.key(i), row: rows.to_row(i) },
                        ))
                    },
                )
            },
        )
    }

    pub fn next_offset(&self) -> Offset {
        self.batches.last().map_or(self.start, |(h, _)| Offset(h.end_offset().max(self.start.0)))
    }

    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }
}

pub struct Client {
    stream: TcpStream,
    next_correlation: u32,
    frame_bytes_max: usize,
}

impl Client {
    pub fn connect(addr: impl ToSocketAddrs) -> Result<Client, ClientError> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(Client { stream, next_correlation: 1, frame_bytes_max: FRAME_BYTES_MAX_DEFAULT })
    }

    pub fn connect_timeout(addr: &SocketAddr, timeout: Duration) -> Result<Client, ClientError> {
        let stream = TcpStream::connect_timeout(addr, timeout)?;
        stream.set_nodelay(true)?;
        Ok(Client { stream, next_correlation: 1, frame_bytes_max: FRAME_BYTES_MAX_DEFAULT })
    }

    /// A second handle on the same connection: one thread sends while another receives.
    /// Correlation ids are the caller's to keep apart.
    pub fn try_clone(&self) -> Result<Client, ClientError> {
        Ok(Client { stream: self.stream.try_clone()?, next_correlation: 1, frame_bytes_max: self.frame_bytes_max })
    }

    pub fn set_read_timeout(&self, t: Option<Duration>) -> Result<(), ClientError> {
        Ok(self.stream.set_read_timeout(t)?)
    }

    /// The next correlation id.
    pub fn correlation(&mut self) -> u32 {
        let c = self.next_correlation;
        self.next_correlation = self.next_correlation.wrapping_add(1);
        c
    }

    /// Sends an encoded request frame (see [`encode`]).
    pub fn send(&mut self, frame: &[u8]) -> Result<(), ClientError> {
        Ok(self.stream.write_all(frame)?)
    }

    /// Receives the next reply, whatever its correlation id.
    pub fn recv(&mut self) -> Result<Reply, ClientError> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len)?;
        let len = u32::from_le_bytes(len) as usize;
        if len > self.frame_bytes_max {
            return Err(ClientError::Protocol(format!("reply of {len} bytes is over the limit")));
        }
        let mut body = AlignedVec::with_capacity(len);
        body.resize(len, 0);
        self.stream.read_exact(&mut body)?;
        let mut d = Decoder::new(&body);
        let header = decode_response_header(&mut d)?;
        let pos = d.position();
        Ok(Reply { header, body, pos })
    }

    /// Sends a request and waits for its reply; a server error becomes `Err`.
    pub fn call(&mut self, build: impl FnOnce(u32) -> Vec<u8>) -> Result<Reply, ClientError> {
        let corr = self.correlation();
        self.send(&build(corr))?;
        let reply = self.recv()?;
        if let Some(e) = reply.header.error.clone() {
            return Err(e.into());
        }
        if reply.header.correlation_id != corr {
            return Err(ClientError::Protocol(format!(
                "reply for correlation id {} while waiting for {corr}",
                reply.header.correlation_id
            )));
        }
        Ok(reply)
    }

    /// (api key, min version, max version) for every API the server speaks.
    pub fn api_versions(&mut self) -> Result<Vec<(u16, u16, u16)>, ClientError> {
        let reply = self.call(encode::api_versions)?;
        let mut d = reply.decoder();
        let n = d.u32()?;
        (0..n).map(|_| Ok((d.u16()?, d.u16()?, d.u16()?))).collect()
    }

    pub fn create_topic(&mut self, spec: &CreateTopic) -> Result<TopicConfig, ClientError> {
        let reply = self.call(|c| encode::create_topic(c, spec))?;
        Ok(TopicConfig::decode(&mut reply.decoder())?)
    }

    pub fn list_topics(&mut self) -> Result<Vec<TopicConfig>, ClientError> {
        let reply = self.call(encode::list_topics)?;
        let mut d = reply.decoder();
        let n = d.u32()?;
        (0..n).map(|_| Ok(TopicConfig::decode(&mut d)?)).collect()
    }

    pub fn describe_topic(&mut self, name: &str) -> Result<(TopicConfig, Vec<PartitionStatus>), ClientError> {
        let reply = self.call(|c| encode::describe_topic(c, name))?;
        let mut d = reply.decoder();
        let config = TopicConfig::decode(&mut d)?;
        let n = d.u32()?;
        let statuses = (0..n).map(|_| decode_partition_status(&mut d)).collect::<Result<_, _>>()?;
        Ok((config, statuses))
    }

    /// Adds a version to a typed topic's schema; returns the topic with every version.
    pub fn alter_schema(
        &mut self,
        name: &str,
        schema: &str,
        event_time: Option<&str>,
    ) -> Result<TopicConfig, ClientError> {
        let reply = self.call(|c| encode::alter_schema(c, name, schema, event_time))?;
        Ok(TopicConfig::decode(&mut reply.decoder())?)
    }

    pub fn delete_topic(&mut self, name: &str) -> Result<(), ClientError> {
        self.call(|c| encode::delete_topic(c, name)).map(|_| ())
    }

    /// Appends a batch; returns once the topic's durability holds for it.
    pub fn produce(&mut self, topic: &str, partition: u32, payload: &BatchPayload) -> Result<Produced, ClientError> {
        let reply = self.call(|c| encode::produce(c, topic, partition, payload.bytes()))?;
        decode_produced(&reply)
    }

    pub fn fetch(
        &mut self,
        topic: &str,
        partition: u32,
        start: StartPosition,
        max_bytes: u32,
        max_wait_ms: u32,
    ) -> Result<Fetched, ClientError> {
        let reply = self.call(|c| encode::fetch(c, topic, partition, start, max_bytes, max_wait_ms))?;
        decode_fetched(reply)
    }

    /// (resolved offset, log start, visible end).
    pub fn list_offsets(
        &mut self,
        topic: &str,
        partition: u32,
        start: StartPosition,
    ) -> Result<(u64, u64, u64), ClientError> {
        let reply = self.call(|c| encode::list_offsets(c, topic, partition, start))?;
        let mut d = reply.decoder();
        Ok((d.u64()?, d.u64()?, d.u64()?))
    }
}

pub fn decode_produced(reply: &Reply) -> Result<Produced, ClientError> {
    let mut d = reply.decoder();
    Ok(Produced { base_offset: d.u64()?, record_count: d.u32()? })
}

fn decode_fetched(reply: Reply) -> Result<Fetched, ClientError> {
    let mut d = reply.decoder();
    let start = Offset(d.u64()?);
    let log_start = Offset(d.u64()?);
    let visible_end = Offset(d.u64()?);
    let count = d.u32()?;
    d.pad_to(16)?;
    let mut batches = Vec::with_capacity(count.min(1 << 16) as usize);
    for _ in 0..count {
        let at = d.position();
        let header_bytes = d.raw_bytes(BATCH_HEADER_BYTES)?;
        let header = BatchHeader::decode(header_bytes).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let payload_at = d.position();
        let payload = d.raw_bytes(header.payload_len as usize)?;
        header.check_payload(payload).map_err(|e| ClientError::Protocol(e.to_string()))?;
        d.pad_to(16)?;
        let _ = at;
        batches.push((header, payload_at));
    }
    Ok(Fetched { start, log_start, visible_end, body: reply.body, batches })
}
