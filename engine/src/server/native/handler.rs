//! One function per request: decode, route through the node, encode the reply.

use rkyv::util::AlignedVec;

use super::protocol::{
    decode_request, encode::frame, encode_partition_status, response_start, ApiError, ApiKey, CreateTopic, Request,
    PROTOCOL_VERSION,
};
use crate::record::BatchPayload;
use crate::server::node::{FetchFormat, Node};
use crate::wire::Encoder;

/// Handles one request frame body; always returns a reply frame.
pub async fn handle_frame(node: &Node, body: AlignedVec) -> Vec<u8> {
    match decode_request(body) {
        Err((header, err)) => error_reply(header.map_or(0, |h| h.correlation_id), &err),
        Ok((header, request)) => {
            let corr = header.correlation_id;
            match execute(node, corr, request).await {
                Ok(reply) => reply,
                Err(err) => error_reply(corr, &err),
            }
        }
    }
}

pub fn error_reply(correlation_id: u32, err: &ApiError) -> Vec<u8> {
    frame(response_start(correlation_id, Some(err)))
}

async fn execute(node: &Node, corr: u32, request: Request) -> Result<Vec<u8>, ApiError> {
    let mut e = response_start(corr, None);
    match request {
        Request::ApiVersions => api_versions(&mut e),
        Request::CreateTopic(spec) => create_topic(node, spec, &mut e).await?,
        Request::ListTopics => list_topics(node, &mut e),
        Request::DescribeTopic { name } => describe_topic(node, &name, &mut e).await?,
        Request::DeleteTopic { name } => node.delete_topic(&name).await?,
        Request::Produce { topic, partition, body, payload_start } => {
            produce(node, &topic, partition, body, payload_start, &mut e).await?
        }
        Request::Fetch { topic, partition, start, max_bytes, max_wait_ms } => {
            // A native fetch always gets at least the first batch (0 reads as 1).
            let max_bytes = max_bytes.max(1);
            let reply = node.fetch(&topic, partition, start, max_bytes, max_wait_ms, FetchFormat::Native).await?;
            e.u64(reply.start.0).u64(reply.log_start.0).u64(reply.visible_end.0).u32(reply.batch_count);
            // Batches start 16-aligned in the frame body (which starts after the length).
            while !(e.len() - 4).is_multiple_of(16) {
                e.u8(0);
            }
            e.raw(&reply.batches);
        }
        Request::AlterSchema { name, schema, event_time } => {
            node.evolve_schema(&name, &schema, event_time.as_deref()).await?.encode(&mut e);
        }
        Request::ListOffsets { topic, partition, start } => {
            let r = node.list_offsets(&topic, partition, start).await?;
            e.u64(r.offset.0).u64(r.log_start.0).u64(r.visible_end.0);
        }
    }
    Ok(frame(e))
}

fn api_versions(e: &mut Encoder) {
    e.u32(ApiKey::ALL.len() as u32);
    for k in ApiKey::ALL {
        e.u16(k as u16).u16(PROTOCOL_VERSION).u16(PROTOCOL_VERSION);
    }
}

async fn create_topic(node: &Node, spec: CreateTopic, e: &mut Encoder) -> Result<(), ApiError> {
    let config = node.create_topic(spec.to_config()?).await?;
    config.encode(e);
    Ok(())
}

fn list_topics(node: &Node, e: &mut Encoder) {
    let topics = node.log.topics();
    e.u32(topics.len() as u32);
    for t in topics {
        t.encode(e);
    }
}

async fn describe_topic(node: &Node, name: &str, e: &mut Encoder) -> Result<(), ApiError> {
    let (config, statuses) = node.describe(name).await?;
    config.encode(e);
    e.u32(statuses.len() as u32);
    for s in &statuses {
        encode_partition_status(e, s);
    }
    Ok(())
}

async fn produce(
    node: &Node,
    topic: &str,
    partition: u32,
    body: AlignedVec,
    payload_start: usize,
    e: &mut Encoder,
) -> Result<(), ApiError> {
    // Validated here, at the door, on the shard that read it: the owner only appends.
    let config = node.topic(topic)?;
    let max = config.batch_bytes_max as usize;
    let payload = match config.schema() {
        Some(schema) => BatchPayload::from_untrusted_typed(body, payload_start, max, schema),
        None => BatchPayload::from_untrusted(body, payload_start, max),
    }
    .map_err(|err| ApiError::new(super::protocol::ErrorCode::InvalidBatch, err.to_string()))?;
    let ack = node.produce(topic, partition, payload).await?;
    e.u64(ack.base_offset.0).u32(ack.record_count);
    Ok(())
}
