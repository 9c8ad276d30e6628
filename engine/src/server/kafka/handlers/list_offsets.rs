//! ListOffsets: earliest (-2), latest (-1), or the first offset at or after a timestamp.

use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::{code, code_of};
use crate::log::StartPosition;
use crate::server::node::Node;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

pub async fn handle(node: &Node, _version: i16, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let mut r =
                ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index).with_timestamp(-1);
            let start = match p.timestamp {
                LATEST | MAX_TIMESTAMP => StartPosition::Latest,
                EARLIEST => StartPosition::Earliest,
                ts if ts >= 0 => StartPosition::Time(ts),
                _ => {
                    r.error_code = code::INVALID_REQUEST;
                    r.offset = -1;
                    partitions.push(r);
                    continue;
                }
            };
            if p.partition_index < 0 {
                r.error_code = code::UNKNOWN_TOPIC_OR_PARTITION;
                r.offset = -1;
                partitions.push(r);
                continue;
            }
            match node.list_offsets(t.name.as_str(), p.partition_index as u32, start).await {
                Ok(o) => match (start, o.timestamp) {
                    // No record that late: Kafka answers offset -1.
                    (StartPosition::Time(_), None) => r.offset = -1,
                    (StartPosition::Time(_), Some(ts)) => {
                        r.offset = o.offset.0 as i64;
                        r.timestamp = ts;
                    }
                    _ => r.offset = o.offset.0 as i64,
                },
                Err(e) => {
                    r.error_code = code_of(&e);
                    r.offset = -1;
                }
            }
            partitions.push(r);
        }
        topics.push(ListOffsetsTopicResponse::default().with_name(t.name).with_partitions(partitions));
    }
    ListOffsetsResponse::default().with_topics(topics)
}
