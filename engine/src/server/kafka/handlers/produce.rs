//! Produce: every batch of the request is checked first (framing, CRC, size, and for a
//! typed topic every row against the schema); only a request that passes whole is
//! appended, so an invalid event never leaves a request half applied. Rows a typed topic
//! refuses go to its dead-letter topic instead, when it names one. Then each batch is
//! queued on its partition in request order, and the response waits for the topic's
//! durability (acks 1 and all alike: acknowledged means durable as the topic defines it).

use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};

use super::{code, code_of, str_bytes};
use crate::record::schema::Row;
use crate::record::{
    BatchBuilder, BatchPayload, Record, RecordHeader, DEAD_LETTER_ERROR_HEADER, DEAD_LETTER_SOURCE_HEADER,
};
use crate::server::kafka::record_batch::{self, BatchError};
use crate::server::kafka::KafkaContext;
use crate::server::node::{Node, PendingProduce};

const INVALID_REQUIRED_ACKS: i16 = 21;

struct PartitionFailure {
    error: i16,
    message: String,
    /// (batch-relative record index, reason) for INVALID_RECORD.
    record_errors: Vec<(i32, String)>,
}

enum PartitionState {
    /// (whether the append is to the partition itself rather than a dead-letter topic, append).
    Pending(Vec<(bool, PendingProduce)>),
    Failed(PartitionFailure),
}

/// A produce request whose appends are queued.
pub struct Submitted {
    acks: i16,
    topics: Vec<(TopicName, Vec<(i32, PartitionState)>)>,
}

impl Submitted {
    pub fn acks(&self) -> i16 {
        self.acks
    }
}

/// What a partition's records become: batches for the partition, and dead letters.
struct Converted {
    batches: Vec<BatchPayload>,
    dead_letters: Vec<(String, u32, BatchPayload)>,
}

fn fail(error: i16, message: impl Into<String>) -> PartitionFailure {
    PartitionFailure { error, message: message.into(), record_errors: Vec::new() }
}

fn from_batch_error(e: BatchError) -> PartitionFailure {
    match &e {
        BatchError::InvalidRecord { index, reason } => PartitionFailure {
            error: code::INVALID_RECORD,
            message: e.to_string(),
            record_errors: vec![(*index as i32, reason.clone())],
        },
        BatchError::UnsupportedCompression(_) => fail(code::UNSUPPORTED_COMPRESSION_TYPE, e.to_string()),
        BatchError::UnsupportedMagic(_) => fail(code::UNSUPPORTED_FOR_MESSAGE_FORMAT, e.to_string()),
        BatchError::TooLarge(_) => fail(code::MESSAGE_TOO_LARGE, e.to_string()),
        BatchError::Transactional => fail(code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED, e.to_string()),
        BatchError::Payload(crate::record::PayloadError::TooLarge { .. }) => {
            fail(code::MESSAGE_TOO_LARGE, e.to_string())
        }
        BatchError::Corrupt(_) | BatchError::BadCrc { .. } | BatchError::Payload(_) => {
            fail(code::CORRUPT_MESSAGE, e.to_string())
        }
    }
}

/// Checks and converts one partition's record set. `budget` is what the request may
/// still convert (decompressed and archived), shared by all its partitions.
fn convert(
    node: &Node,
    ctx: &KafkaContext,
    topic: &str,
    partition: i32,
    records: Option<&[u8]>,
    budget: &mut usize,
) -> Result<Converted, PartitionFailure> {
    let config = node
        .log
        .topic(topic)
        .ok_or_else(|| fail(code::UNKNOWN_TOPIC_OR_PARTITION, format!("topic '{topic}' does not exist")))?;
    if partition < 0 || partition as u32 >= config.partitions {
        return Err(fail(code::UNKNOWN_TOPIC_OR_PARTITION, format!("topic '{topic}' has no partition {partition}")));
    }
    let records = records.ok_or_else(|| fail(code::CORRUPT_MESSAGE, "no records"))?;
    let batches = record_batch::split_batches(records).map_err(from_batch_error)?;
    let now_ms = crate::clock::now_ms();
    let mut out = Converted { batches: Vec::with_capacity(batches.len()), dead_letters: Vec::new() };
    for b in batches {
        if b.len() > config.batch_bytes_max as usize + record_batch::BATCH_OVERHEAD_BYTES {
            return Err(fail(
                code::MESSAGE_TOO_LARGE,
                format!("batch of {} bytes exceeds the topic's limit of {} bytes", b.len(), config.batch_bytes_max),
            ));
        }
        let max = ctx.config.decompressed_bytes_max.min(*budget);
        let (before, dead_before) = (out.batches.len(), out.dead_letters.len());
        match (config.schema(), &config.dead_letter_topic) {
            (None, _) => out.batches.push(record_batch::to_raw_payload(b, max, now_ms).map_err(from_batch_error)?),
            (Some(schema), None) => {
                out.batches.push(record_batch::to_typed_payload(b, max, now_ms, schema).map_err(from_batch_error)?)
            }
            (Some(schema), Some(dlq)) => {
                let (good, bad) = split_invalid(b, max, now_ms, schema, topic, partition).map_err(from_batch_error)?;
                out.batches.extend(good);
                if let Some(bad) = bad {
                    let dlq_config = node.log.topic(dlq).ok_or_else(|| {
                        fail(code::INVALID_RECORD, format!("the dead-letter topic '{dlq}' does not exist"))
                    })?;
                    let p = partition as u32 % dlq_config.partitions;
                    out.dead_letters.push((dlq.clone(), p, bad));
                }
            }
        }
        let made: usize = out.batches[before..].iter().map(BatchPayload::stored_len).sum::<usize>()
            + out.dead_letters[dead_before..].iter().map(|(_, _, p)| p.stored_len()).sum::<usize>();
        *budget = budget.saturating_sub(made);
    }
    Ok(out)
}

/// Splits a batch into the rows the schema accepts (one payload, keeping the producer's
/// sequence range) and raw dead letters naming why each was refused.
fn split_invalid(
    batch: &[u8],
    max: usize,
    now_ms: i64,
    schema: &crate::record::schema::Schema,
    topic: &str,
    partition: i32,
) -> Result<(Option<BatchPayload>, Option<BatchPayload>), BatchError> {
    // Fast path: the whole batch is valid.
    match record_batch::to_typed_payload(batch, max, now_ms, schema) {
        Ok(p) => return Ok((Some(p), None)),
        Err(BatchError::InvalidRecord { .. }) => {}
        Err(e) => return Err(e),
    }
    let raw = record_batch::to_raw_payload(batch, max, now_ms)?;
    let records = rkyv::access::<rkyv::Archived<Vec<crate::record::RawRecord>>, rkyv::rancor::Error>(raw.bytes())
        .map_err(|e| BatchError::Corrupt(e.to_string()))?;
    let mut good: BatchBuilder<Row> = BatchBuilder::new();
    let mut bad: BatchBuilder = BatchBuilder::new();
    for r in records.iter() {
        let null = r.headers.iter().any(|h| h.key.as_str() == record_batch::NULL_VALUE_HEADER);
        let value = (!null).then_some(r.value.as_slice());
        let key = r.key.as_ref().map(|k| k.as_slice().to_vec());
        let headers: Vec<RecordHeader> = r
            .headers
            .iter()
            .map(|h| RecordHeader { key: h.key.to_string(), value: h.value.as_slice().to_vec() })
            .collect();
        match record_batch::typed_row(schema, value) {
            Ok(row) => {
                let headers = headers.into_iter().filter(|h| h.key != record_batch::NULL_VALUE_HEADER).collect();
                good.push(Record { timestamp_ms: r.timestamp_ms.to_native(), key, value: row, headers });
            }
            Err(reason) => {
                let mut headers = headers;
                headers.push(RecordHeader { key: DEAD_LETTER_ERROR_HEADER.into(), value: reason.into_bytes() });
                headers.push(RecordHeader {
                    key: DEAD_LETTER_SOURCE_HEADER.into(),
                    value: format!("{topic}/{partition}").into_bytes(),
                });
                bad.push(Record {
                    timestamp_ms: r.timestamp_ms.to_native(),
                    key,
                    value: r.value.as_slice().to_vec(),
                    headers,
                });
            }
        }
    }
    let sequences = raw.summary().record_count;
    let good = if good.is_empty() {
        None
    } else {
        let mut p = good.finish()?.with_schema_version(schema.version);
        if let Some(prod) = raw.producer() {
            p = p.with_producer_sequences(prod, sequences);
        }
        Some(p)
    };
    let bad = if bad.is_empty() { None } else { Some(bad.finish()?) };
    Ok((good, bad))
}

/// Checks the whole request, then queues its appends in order.
pub async fn submit(node: &Node, ctx: &KafkaContext, _version: i16, req: ProduceRequest) -> Submitted {
    let acks = req.acks;
    let refuse_all = |error: i16, message: &str| -> Vec<(TopicName, Vec<(i32, PartitionState)>)> {
        req.topic_data
            .iter()
            .map(|t| {
                let parts =
                    t.partition_data.iter().map(|p| (p.index, PartitionState::Failed(fail(error, message)))).collect();
                (t.name.clone(), parts)
            })
            .collect()
    };
    if req.transactional_id.is_some() {
        let topics = refuse_all(code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED, "transactions are not supported");
        return Submitted { acks, topics };
    }
    if !matches!(acks, -1..=1) {
        let topics = refuse_all(INVALID_REQUIRED_ACKS, "acks must be -1, 0 or 1");
        return Submitted { acks, topics };
    }
    // Phase 1: check and convert everything, holding at most this much converted: many
    // small compressed batches, each under the per-batch cap, must not add up to gigabytes.
    let mut budget = ctx.config.decompressed_bytes_max.max(ctx.config.request_bytes_max);
    let mut converted = Vec::with_capacity(req.topic_data.len());
    let mut failed = None;
    for t in &req.topic_data {
        let mut parts = Vec::with_capacity(t.partition_data.len());
        for p in &t.partition_data {
            let c = convert(node, ctx, t.name.as_str(), p.index, p.records.as_deref(), &mut budget);
            if let Err(f) = &c {
                failed.get_or_insert(format!("{}/{}: {}", t.name.as_str(), p.index, f.message));
            }
            parts.push((p.index, c));
        }
        converted.push((t.name.clone(), parts));
    }
    // Phase 2: append, only if every partition's records passed.
    let mut topics = Vec::with_capacity(converted.len());
    for (name, parts) in converted {
        let mut out = Vec::with_capacity(parts.len());
        for (index, c) in parts {
            let state = match (c, &failed) {
                (Err(f), _) => PartitionState::Failed(f),
                (Ok(_), Some(why)) => PartitionState::Failed(fail(
                    code::INVALID_RECORD,
                    format!("not written: another part of this request was refused ({why})"),
                )),
                (Ok(c), None) => {
                    let mut pending = Vec::with_capacity(c.batches.len() + c.dead_letters.len());
                    let mut failure = None;
                    for (dlq, p, payload) in c.dead_letters {
                        match node.submit_produce(&dlq, p, payload).await {
                            Ok(a) => pending.push((false, a)),
                            Err(e) => failure = Some(fail(code_of(&e), e.message)),
                        }
                    }
                    for payload in c.batches {
                        match node.submit_produce(name.as_str(), index as u32, payload).await {
                            Ok(a) => pending.push((true, a)),
                            Err(e) => {
                                failure = Some(fail(code_of(&e), e.message));
                                break;
                            }
                        }
                    }
                    match failure {
                        Some(f) => PartitionState::Failed(f),
                        None => PartitionState::Pending(pending),
                    }
                }
            };
            out.push((index, state));
        }
        topics.push((name, out));
    }
    Submitted { acks, topics }
}

/// Waits for the appends and builds the response.
pub async fn finish(version: i16, s: Submitted) -> ProduceResponse {
    let mut responses = Vec::with_capacity(s.topics.len());
    for (name, parts) in s.topics {
        let mut partition_responses = Vec::with_capacity(parts.len());
        for (index, state) in parts {
            let mut r = PartitionProduceResponse::default().with_index(index).with_log_start_offset(-1);
            let failure = match state {
                PartitionState::Failed(f) => Some(f),
                PartitionState::Pending(appends) => {
                    let mut base = None;
                    let mut failure = None;
                    for (own, a) in appends {
                        match a.await {
                            Ok(ack) if own => {
                                base.get_or_insert(ack.base_offset.0 as i64);
                            }
                            Ok(_) => {}
                            Err(e) => {
                                failure.get_or_insert(fail(code_of(&e), e.message));
                            }
                        }
                    }
                    r.base_offset = base.unwrap_or(-1);
                    failure
                }
            };
            if let Some(f) = failure {
                r.error_code = f.error;
                r.base_offset = -1;
                if version >= 8 {
                    r.error_message = Some(str_bytes(&f.message));
                    r.record_errors = f
                        .record_errors
                        .into_iter()
                        .map(|(i, m)| {
                            BatchIndexAndErrorMessage::default()
                                .with_batch_index(i)
                                .with_batch_index_error_message(Some(str_bytes(&m)))
                        })
                        .collect();
                }
            }
            partition_responses.push(r);
        }
        responses.push(TopicProduceResponse::default().with_name(name).with_partition_responses(partition_responses));
    }
    ProduceResponse::default().with_responses(responses)
}
