//! LeaveGroup: one member (v0-2) or several (v3+) leave; the rest rebalance.

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use super::code;
use crate::server::kafka::groups::{GroupCall, GroupReply};
use crate::server::node::Node;

pub async fn handle(node: &Node, version: i16, req: LeaveGroupRequest) -> LeaveGroupResponse {
    let members: Vec<String> = if version >= 3 {
        req.members.iter().map(|m| m.member_id.to_string()).collect()
    } else {
        vec![req.member_id.to_string()]
    };
    let call = GroupCall::Leave { member_ids: members.clone() };
    let codes = match node.group_call(req.group_id.as_str(), call).await {
        Ok(GroupReply::Leave(c)) => c,
        _ => Err(code::COORDINATOR_NOT_AVAILABLE),
    };
    match codes {
        Err(e) => LeaveGroupResponse::default().with_error_code(e),
        Ok(codes) if version >= 3 => LeaveGroupResponse::default().with_members(
            req.members
                .into_iter()
                .zip(codes)
                .map(|(m, e)| {
                    MemberResponse::default()
                        .with_member_id(m.member_id)
                        .with_group_instance_id(m.group_instance_id)
                        .with_error_code(e)
                })
                .collect(),
        ),
        Ok(codes) => LeaveGroupResponse::default().with_error_code(codes.first().copied().unwrap_or(code::NONE)),
    }
}
