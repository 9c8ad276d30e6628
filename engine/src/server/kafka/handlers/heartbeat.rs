//! Heartbeat: keeps a member alive and tells it when the group rebalances.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::code;
use crate::server::kafka::groups::{GroupCall, GroupReply};
use crate::server::node::Node;

pub async fn handle(node: &Node, req: HeartbeatRequest) -> HeartbeatResponse {
    let call = GroupCall::Heartbeat { member_id: req.member_id.to_string(), generation: req.generation_id };
    let error = match node.group_call(req.group_id.as_str(), call).await {
        Ok(GroupReply::Heartbeat(e)) => e,
        _ => code::COORDINATOR_NOT_AVAILABLE,
    };
    HeartbeatResponse::default().with_error_code(error)
}
