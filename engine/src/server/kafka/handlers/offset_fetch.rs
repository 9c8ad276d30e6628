//! OffsetFetch: a group's committed offsets (v8+: several groups per request).

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse};

use super::{code, str_bytes, topic_name};
use crate::server::kafka::groups::{CommittedOffset, GroupCall, GroupReply};
use crate::server::node::Node;

type Fetched = Result<Vec<(String, i32, Option<CommittedOffset>)>, i16>;
/// A topic's (partition, committed offset) rows.
type TopicOffsets = (String, Vec<(i32, Option<CommittedOffset>)>);

async fn fetch(node: &Node, group: &str, topics: Option<Vec<(String, Vec<i32>)>>) -> Fetched {
    match node.group_call(group, GroupCall::FetchOffsets { topics }).await {
        Ok(GroupReply::Offsets(o)) => Ok(o),
        _ => Err(code::COORDINATOR_NOT_AVAILABLE),
    }
}

/// Groups (topic, partition, offset) rows by topic, in first-seen order (indexed: a
/// request may name a million topics).
fn by_topic(rows: Vec<(String, i32, Option<CommittedOffset>)>) -> Vec<TopicOffsets> {
    let mut out: Vec<TopicOffsets> = Vec::new();
    let mut at: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (t, p, o) in rows {
        match at.get(&t) {
            Some(&i) => out[i].1.push((p, o)),
            None => {
                at.insert(t.clone(), out.len());
                out.push((t, vec![(p, o)]));
            }
        }
    }
    out
}

pub async fn handle(node: &Node, version: i16, req: OffsetFetchRequest) -> OffsetFetchResponse {
    if version >= 8 {
        let mut groups = Vec::with_capacity(req.groups.len());
        for g in req.groups {
            let topics = g.topics.map(|ts| ts.into_iter().map(|t| (t.name.to_string(), t.partition_indexes)).collect());
            let mut rg = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
            match fetch(node, g.group_id.as_str(), topics).await {
                Err(e) => rg.error_code = e,
                Ok(rows) => {
                    rg.topics = by_topic(rows)
                        .into_iter()
                        .map(|(t, parts)| {
                            let partitions = parts
                                .into_iter()
                                .map(|(p, o)| {
                                    let (offset, epoch, meta) =
                                        o.map_or((-1, -1, String::new()), |o| (o.offset, o.leader_epoch, o.metadata));
                                    OffsetFetchResponsePartitions::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(offset)
                                        .with_committed_leader_epoch(epoch)
                                        .with_metadata(Some(str_bytes(&meta)))
                                })
                                .collect();
                            OffsetFetchResponseTopics::default().with_name(topic_name(&t)).with_partitions(partitions)
                        })
                        .collect();
                }
            }
            groups.push(rg);
        }
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let topics = req.topics.map(|ts| ts.into_iter().map(|t| (t.name.to_string(), t.partition_indexes)).collect());
    let mut r = OffsetFetchResponse::default();
    match fetch(node, req.group_id.as_str(), topics).await {
        Err(e) if version >= 2 => r.error_code = e,
        Err(_) => {}
        Ok(rows) => {
            r.topics = by_topic(rows)
                .into_iter()
                .map(|(t, parts)| {
                    let partitions = parts
                        .into_iter()
                        .map(|(p, o)| {
                            let (offset, epoch, meta) =
                                o.map_or((-1, -1, String::new()), |o| (o.offset, o.leader_epoch, o.metadata));
                            let mut part = OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(offset)
                                .with_metadata(Some(str_bytes(&meta)));
                            if version >= 5 {
                                part.committed_leader_epoch = epoch;
                            }
                            part
                        })
                        .collect();
                    OffsetFetchResponseTopic::default().with_name(topic_name(&t)).with_partitions(partitions)
                })
                .collect();
        }
    }
    r
}
