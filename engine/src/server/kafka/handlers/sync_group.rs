//! SyncGroup: the leader hands out assignments; followers wait for theirs.

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use super::{code, str_bytes};
use crate::server::kafka::groups::{GroupCall, GroupReply};
use crate::server::node::Node;

pub async fn handle(node: &Node, version: i16, req: SyncGroupRequest) -> SyncGroupResponse {
    let call = GroupCall::Sync {
        member_id: req.member_id.to_string(),
        generation: req.generation_id,
        assignments: req.assignments.iter().map(|a| (a.member_id.to_string(), a.assignment.clone())).collect(),
    };
    match node.group_call(req.group_id.as_str(), call).await {
        Ok(GroupReply::Sync(Ok((protocol_type, protocol_name, assignment)))) => {
            let mut r = SyncGroupResponse::default().with_assignment(assignment);
            if version >= 5 {
                r.protocol_type = protocol_type.as_deref().map(str_bytes);
                r.protocol_name = protocol_name.as_deref().map(str_bytes);
            }
            r
        }
        Ok(GroupReply::Sync(Err(e))) => SyncGroupResponse::default().with_error_code(e),
        _ => SyncGroupResponse::default().with_error_code(code::COORDINATOR_NOT_AVAILABLE),
    }
}
