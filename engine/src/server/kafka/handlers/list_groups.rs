//! ListGroups: every group any shard coordinates.

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use super::{code, str_bytes};
use crate::server::node::Node;

pub async fn handle(node: &Node, version: i16, req: ListGroupsRequest) -> ListGroupsResponse {
    let groups = match node.list_groups().await {
        Ok(g) => g,
        Err(_) => return ListGroupsResponse::default().with_error_code(code::COORDINATOR_NOT_AVAILABLE),
    };
    let listed = groups
        .into_iter()
        .filter(|(_, _, state)| {
            version < 4
                || req.states_filter.is_empty()
                || req.states_filter.iter().any(|s| s.eq_ignore_ascii_case(state))
        })
        .map(|(g, protocol_type, state)| {
            let l = ListedGroup::default()
                .with_group_id(GroupId(str_bytes(&g)))
                .with_protocol_type(str_bytes(&protocol_type));
            if version >= 4 {
                l.with_group_state(str_bytes(state))
            } else {
                l
            }
        })
        .collect();
    ListGroupsResponse::default().with_groups(listed)
}
