//! JoinGroup: routed to the group's coordinator shard; held there until the rebalance completes.

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};

use super::{code, str_bytes};
use crate::server::kafka::connection::Peer;
use crate::server::kafka::groups::{GroupCall, GroupReply, JoinRequest};
use crate::server::node::Node;

const INVALID_GROUP_ID: i16 = 24;

pub async fn handle(
    node: &Node,
    peer: &Peer,
    client_id: &str,
    version: i16,
    req: JoinGroupRequest,
) -> JoinGroupResponse {
    let error = |e: i16| {
        JoinGroupResponse::default()
            .with_error_code(e)
            .with_generation_id(-1)
            .with_member_id(req.member_id.clone())
            .with_protocol_name(if version >= 7 { None } else { Some(str_bytes("")) })
    };
    if req.group_id.is_empty() {
        return error(INVALID_GROUP_ID);
    }
    let call = GroupCall::Join(JoinRequest {
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        client_id: client_id.to_string(),
        client_host: peer.host(),
        session_timeout_ms: req.session_timeout_ms,
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        rebalance_timeout_ms: if version >= 1 { req.rebalance_timeout_ms } else { req.session_timeout_ms },
        protocol_type: req.protocol_type.to_string(),
        protocols: req.protocols.iter().map(|p| (p.name.to_string(), p.metadata.clone())).collect(),
        require_known_member: version >= 4,
    });
    let outcome = match node.group_call(req.group_id.as_str(), call).await {
        Ok(GroupReply::Join(o)) => o,
        _ => return error(code::COORDINATOR_NOT_AVAILABLE),
    };
    let mut r = JoinGroupResponse::default()
        .with_error_code(outcome.error)
        .with_generation_id(outcome.generation)
        .with_leader(str_bytes(&outcome.leader))
        .with_member_id(str_bytes(&outcome.member_id))
        .with_members(
            outcome
                .members
                .into_iter()
                .map(|(id, instance, metadata)| {
                    let m = JoinGroupResponseMember::default().with_member_id(str_bytes(&id)).with_metadata(metadata);
                    if version >= 5 {
                        m.with_group_instance_id(instance.as_deref().map(str_bytes))
                    } else {
                        m
                    }
                })
                .collect(),
        );
    r.protocol_name = match (version >= 7, outcome.protocol_name) {
        (true, name) => name.as_deref().map(str_bytes),
        (false, name) => Some(str_bytes(name.as_deref().unwrap_or(""))),
    };
    if version >= 7 {
        r.protocol_type = outcome.protocol_type.as_deref().map(str_bytes);
    }
    r
}
