//! DescribeGroups: state, protocol and members of each group, from its coordinator.

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};

use super::{code, str_bytes};
use crate::server::kafka::groups::{GroupCall, GroupReply};
use crate::server::node::Node;

pub async fn handle(node: &Node, req: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let mut groups = Vec::with_capacity(req.groups.len());
    for g in req.groups {
        let mut d = DescribedGroup::default().with_group_id(g.clone());
        match node.group_call(g.as_str(), GroupCall::Describe).await {
            Ok(GroupReply::Describe(Some(desc))) => {
                d.group_state = str_bytes(desc.state);
                d.protocol_type = str_bytes(&desc.protocol_type);
                d.protocol_data = str_bytes(&desc.protocol);
                d.members = desc
                    .members
                    .into_iter()
                    .map(|m| {
                        DescribedGroupMember::default()
                            .with_member_id(str_bytes(&m.member_id))
                            .with_client_id(str_bytes(&m.client_id))
                            .with_client_host(str_bytes(&m.client_host))
                            .with_member_metadata(m.metadata)
                            .with_member_assignment(m.assignment)
                    })
                    .collect();
            }
            // Kafka describes an unknown group as Dead with no members.
            Ok(GroupReply::Describe(None)) => d.group_state = str_bytes("Dead"),
            _ => d.error_code = code::COORDINATOR_NOT_AVAILABLE,
        }
        groups.push(d);
    }
    DescribeGroupsResponse::default().with_groups(groups)
}
