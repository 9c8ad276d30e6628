//! ApiVersions: the APIs and versions Sluice speaks.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, ResponseKind};

/// (API, lowest, highest version). Within what the `kafka-protocol` crate decodes, and
/// capped where a later version needs something Sluice does not have (Produce and Fetch
/// 13 address topics by id). Covers what librdkafka, kafka-python and the Java client
/// negotiate today.
const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 12),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::DescribeConfigs, 1, 4),
];

/// The versions of `key` Sluice speaks, if any.
pub fn supported_versions(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED.iter().find(|(k, _, _)| *k == key).map(|&(_, min, max)| (min, max))
}

fn response(error_code: i16) -> ApiVersionsResponse {
    let mut keys: Vec<ApiVersion> = SUPPORTED
        .iter()
        .map(|&(k, min, max)| ApiVersion::default().with_api_key(k as i16).with_min_version(min).with_max_version(max))
        .collect();
    keys.sort_by_key(|k| k.api_key);
    ApiVersionsResponse::default().with_error_code(error_code).with_api_keys(keys)
}

pub fn handle() -> ApiVersionsResponse {
    response(super::code::NONE)
}

/// The reply to an ApiVersions request of a version Sluice does not speak: version 0,
/// UNSUPPORTED_VERSION, and the full list, so the client retries with a version it finds there.
pub fn unsupported_version_reply(correlation_id: i32) -> Vec<u8> {
    let r = ResponseKind::ApiVersions(response(super::code::UNSUPPORTED_VERSION));
    super::encode(ApiKey::ApiVersions, 0, correlation_id, &r).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::Message;

    #[test]
    fn every_advertised_version_is_one_the_crate_decodes() {
        use kafka_protocol::messages::*;
        fn within<Req: Message, Resp: Message>(min: i16, max: i16) -> bool {
            Req::VERSIONS.min <= min
                && max <= Req::VERSIONS.max
                && Resp::VERSIONS.min <= min
                && max <= Resp::VERSIONS.max
        }
        for &(k, min, max) in SUPPORTED {
            let ok = match k {
                ApiKey::Produce => within::<ProduceRequest, ProduceResponse>(min, max),
                ApiKey::Fetch => within::<FetchRequest, FetchResponse>(min, max),
                ApiKey::ListOffsets => within::<ListOffsetsRequest, ListOffsetsResponse>(min, max),
                ApiKey::Metadata => within::<MetadataRequest, MetadataResponse>(min, max),
                ApiKey::OffsetCommit => within::<OffsetCommitRequest, OffsetCommitResponse>(min, max),
                ApiKey::OffsetFetch => within::<OffsetFetchRequest, OffsetFetchResponse>(min, max),
                ApiKey::FindCoordinator => within::<FindCoordinatorRequest, FindCoordinatorResponse>(min, max),
                ApiKey::JoinGroup => within::<JoinGroupRequest, JoinGroupResponse>(min, max),
                ApiKey::Heartbeat => within::<HeartbeatRequest, HeartbeatResponse>(min, max),
                ApiKey::LeaveGroup => within::<LeaveGroupRequest, LeaveGroupResponse>(min, max),
                ApiKey::SyncGroup => within::<SyncGroupRequest, SyncGroupResponse>(min, max),
                ApiKey::DescribeGroups => within::<DescribeGroupsRequest, DescribeGroupsResponse>(min, max),
                ApiKey::ListGroups => within::<ListGroupsRequest, ListGroupsResponse>(min, max),
                ApiKey::ApiVersions => within::<ApiVersionsRequest, ApiVersionsResponse>(min, max),
                ApiKey::CreateTopics => within::<CreateTopicsRequest, CreateTopicsResponse>(min, max),
                ApiKey::DeleteTopics => within::<DeleteTopicsRequest, DeleteTopicsResponse>(min, max),
                ApiKey::InitProducerId => within::<InitProducerIdRequest, InitProducerIdResponse>(min, max),
                ApiKey::DescribeConfigs => within::<DescribeConfigsRequest, DescribeConfigsResponse>(min, max),
                _ => false,
            };
            assert!(ok, "{k:?} {min}..{max}");
        }
    }
}
