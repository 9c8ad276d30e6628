//! OffsetCommit: durable in `__consumer_offsets` before it is acknowledged.

use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use super::code;
use crate::server::kafka::groups::{CommittedOffset, GroupCall, GroupReply, OffsetCommit};
use crate::server::node::Node;

pub async fn handle(node: &Node, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let now = crate::clock::now_ms();
    let commits: Vec<OffsetCommit> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| OffsetCommit {
                topic: t.name.to_string(),
                partition: p.partition_index,
                offset: CommittedOffset {
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: p.committed_metadata.as_ref().map(|m| m.to_string()).unwrap_or_default(),
                    commit_time_ms: now,
                },
            })
        })
        .collect();
    let n = commits.len();
    let call = GroupCall::Commit {
        member_id: req.member_id.to_string(),
        generation: req.generation_id_or_member_epoch,
        commits,
    };
    let codes = match node.group_call(req.group_id.as_str(), call).await {
        Ok(GroupReply::Commit(c)) => c,
        _ => vec![code::COORDINATOR_NOT_AVAILABLE; n],
    };
    let mut codes = codes.into_iter();
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(codes.next().unwrap_or(code::UNKNOWN_SERVER_ERROR))
                })
                .collect();
            OffsetCommitResponseTopic::default().with_name(t.name).with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
