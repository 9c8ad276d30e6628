//! One handler per Kafka API: decode, route through the node, encode. This file holds the
//! versions Sluice speaks, the decoding of a frame, and the dispatch.

mod api_versions;
mod create_topics;
mod delete_topics;
mod describe_configs;
mod describe_groups;
mod fetch;
mod find_coordinator;
mod heartbeat;
mod init_producer_id;
mod join_group;
mod leave_group;
mod list_groups;
mod list_offsets;
mod metadata;
mod offset_commit;
mod offset_fetch;
mod produce;
mod sync_group;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::connection::Peer;
use super::KafkaContext;
use crate::server::node::Node;

pub use api_versions::supported_versions;

/// Kafka error codes used by the handlers (see `kafka_protocol::ResponseError`).
pub mod code {
    pub const NONE: i16 = 0;
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const CORRUPT_MESSAGE: i16 = 2;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const MESSAGE_TOO_LARGE: i16 = 10;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
    pub const RECORD_LIST_TOO_LARGE: i16 = 18;
    pub const NOT_ENOUGH_REPLICAS: i16 = 19;
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    pub const INVALID_PARTITIONS: i16 = 37;
    pub const INVALID_REPLICATION_FACTOR: i16 = 38;
    pub const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
    pub const INVALID_CONFIG: i16 = 40;
    pub const INVALID_REQUEST: i16 = 42;
    pub const UNSUPPORTED_FOR_MESSAGE_FORMAT: i16 = 43;
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
    pub const INVALID_PRODUCER_EPOCH: i16 = 47;
    pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
    pub const UNSUPPORTED_COMPRESSION_TYPE: i16 = 76;
    pub const INVALID_RECORD: i16 = 87;
}

/// A decoded request.
pub struct RequestFrame {
    pub header: RequestHeader,
    pub api_key: ApiKey,
    pub version: i16,
    pub request: RequestKind,
}

pub enum Decoded {
    /// A reply that needs no work (ApiVersions at a version we do not speak).
    Immediate(Vec<u8>),
    Request(Box<RequestFrame>),
}

/// Decodes a frame body. An error closes the connection (an unknown API, an unsupported
/// version of any API but ApiVersions, or bytes that do not decode).
pub fn decode(mut body: Bytes) -> Result<Decoded, String> {
    if body.len() < 8 {
        return Err("frame shorter than a request header".into());
    }
    let raw_key = i16::from_be_bytes([body[0], body[1]]);
    let version = i16::from_be_bytes([body[2], body[3]]);
    let correlation_id = i32::from_be_bytes([body[4], body[5], body[6], body[7]]);
    let api_key = ApiKey::try_from(raw_key).map_err(|_| format!("unknown api key {raw_key}"))?;
    let Some((min, max)) = supported_versions(api_key) else {
        return Err(format!("api {api_key:?} is not supported"));
    };
    if version < min || version > max {
        if api_key == ApiKey::ApiVersions {
            // Answered at v0 with the full list, so the client can pick a version (KIP-511).
            return Ok(Decoded::Immediate(api_versions::unsupported_version_reply(correlation_id)));
        }
        return Err(format!("api {api_key:?} version {version} is not supported (supported: {min} to {max})"));
    }
    let header = RequestHeader::decode(&mut body, api_key.request_header_version(version))
        .map_err(|e| format!("bad request header: {e}"))?;
    let request =
        RequestKind::decode(api_key, &mut body, version).map_err(|e| format!("{api_key:?} v{version}: {e}"))?;
    Ok(Decoded::Request(Box::new(RequestFrame { header, api_key, version, request })))
}

/// Encodes a response frame (length, header, body).
pub fn encode(api_key: ApiKey, version: i16, correlation_id: i32, response: &ResponseKind) -> Result<Vec<u8>, String> {
    let mut out = BytesMut::with_capacity(64);
    out.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut out, api_key.response_header_version(version))
        .map_err(|e| e.to_string())?;
    response.encode(&mut out, version).map_err(|e| format!("{api_key:?} v{version}: {e}"))?;
    let len = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    Ok(out.to_vec())
}

/// A request after its ordered part ran.
pub enum Prepared {
    Produce { frame: FrameInfo, submitted: produce::Submitted },
    Other(Box<RequestFrame>),
}

/// What a response needs of its request.
pub struct FrameInfo {
    pub api_key: ApiKey,
    pub version: i16,
    pub correlation_id: i32,
}

/// Runs the part of a request that must happen in arrival order (queueing appends).
pub async fn prepare(node: &Node, ctx: &KafkaContext, _peer: &Peer, req: Box<RequestFrame>) -> Prepared {
    let req = *req;
    match req.request {
        RequestKind::Produce(p) => {
            let frame =
                FrameInfo { api_key: req.api_key, version: req.version, correlation_id: req.header.correlation_id };
            let submitted = produce::submit(node, ctx, req.version, p).await;
            Prepared::Produce { frame, submitted }
        }
        other => Prepared::Other(Box::new(RequestFrame { request: other, ..req })),
    }
}

/// Runs the rest of a request and encodes its response; `None` when the client wants no
/// response (Produce with acks=0) or the response could not be encoded (logged).
pub async fn finish(node: &Node, ctx: &KafkaContext, peer: &Peer, prepared: Prepared) -> Option<Vec<u8>> {
    let (info, response) = match prepared {
        Prepared::Produce { frame, submitted } => {
            let acks = submitted.acks();
            let response = produce::finish(frame.version, submitted).await;
            if acks == 0 {
                return None;
            }
            (frame, ResponseKind::Produce(response))
        }
        Prepared::Other(req) => {
            let req = *req;
            let info =
                FrameInfo { api_key: req.api_key, version: req.version, correlation_id: req.header.correlation_id };
            let client_id = req.header.client_id.as_ref().map(|c| c.to_string()).unwrap_or_default();
            (info, dispatch(node, ctx, peer, &client_id, req.version, req.request).await)
        }
    };
    match encode(info.api_key, info.version, info.correlation_id, &response) {
        Ok(frame) => Some(frame),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode a Kafka response");
            None
        }
    }
}

async fn dispatch(
    node: &Node,
    ctx: &KafkaContext,
    peer: &Peer,
    client_id: &str,
    version: i16,
    request: RequestKind,
) -> ResponseKind {
    use RequestKind as Q;
    use ResponseKind as R;
    match request {
        Q::ApiVersions(_) => R::ApiVersions(api_versions::handle()),
        Q::Metadata(r) => R::Metadata(metadata::handle(node, ctx, version, r).await),
        Q::Fetch(r) => R::Fetch(fetch::handle(node, version, r).await),
        Q::ListOffsets(r) => R::ListOffsets(list_offsets::handle(node, version, r).await),
        Q::CreateTopics(r) => R::CreateTopics(create_topics::handle(node, version, r).await),
        Q::DeleteTopics(r) => R::DeleteTopics(delete_topics::handle(node, version, r).await),
        Q::DescribeConfigs(r) => R::DescribeConfigs(describe_configs::handle(node, version, r).await),
        Q::InitProducerId(r) => R::InitProducerId(init_producer_id::handle(node, r)),
        Q::FindCoordinator(r) => R::FindCoordinator(find_coordinator::handle(ctx, version, r)),
        Q::JoinGroup(r) => R::JoinGroup(join_group::handle(node, peer, client_id, version, r).await),
        Q::SyncGroup(r) => R::SyncGroup(sync_group::handle(node, version, r).await),
        Q::Heartbeat(r) => R::Heartbeat(heartbeat::handle(node, r).await),
        Q::LeaveGroup(r) => R::LeaveGroup(leave_group::handle(node, version, r).await),
        Q::OffsetCommit(r) => R::OffsetCommit(offset_commit::handle(node, r).await),
        Q::OffsetFetch(r) => R::OffsetFetch(offset_fetch::handle(node, version, r).await),
        Q::ListGroups(r) => R::ListGroups(list_groups::handle(node, version, r).await),
        Q::DescribeGroups(r) => R::DescribeGroups(describe_groups::handle(node, r).await),
        // `decode` only lets supported APIs through, and Produce went through `prepare`.
        other => {
            tracing::error!(request = ?std::mem::discriminant(&other), "unrouted Kafka request");
            R::ApiVersions(api_versions::handle())
        }
    }
}

pub fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

pub fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// A Kafka error code for an error from the node.
pub fn code_of(e: &crate::server::native::protocol::ApiError) -> i16 {
    use crate::server::native::protocol::ErrorCode as E;
    match e.code {
        E::UnknownTopic | E::UnknownPartition => code::UNKNOWN_TOPIC_OR_PARTITION,
        E::TopicExists => code::TOPIC_ALREADY_EXISTS,
        E::InvalidConfig => code::INVALID_CONFIG,
        E::ReadOnly | E::Corrupt | E::Io => code::KAFKA_STORAGE_ERROR,
        E::OffsetOutOfRange => code::OFFSET_OUT_OF_RANGE,
        E::InvalidBatch | E::InvalidRecord => code::INVALID_RECORD,
        E::FrameTooLarge => code::MESSAGE_TOO_LARGE,
        E::OutOfOrderSequence => code::OUT_OF_ORDER_SEQUENCE_NUMBER,
        E::ProducerFenced => code::INVALID_PRODUCER_EPOCH,
        E::ShuttingDown => code::NOT_ENOUGH_REPLICAS,
        E::UnsupportedVersion => code::UNSUPPORTED_VERSION,
        E::MalformedRequest => code::INVALID_REQUEST,
        E::None | E::Internal => code::UNKNOWN_SERVER_ERROR,
    }
}
