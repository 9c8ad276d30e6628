//! Fetch: whole batches from each partition's owning shard, written as Kafka batches;
//! long-polls until `min_bytes` are there or `max_wait_ms` passes. No fetch sessions
//! (session id 0: clients send full requests), as a broker may choose (KIP-227).

use bytes::Bytes;
use futures::future::{join_all, select_all};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};

use super::{code, code_of};
use crate::limits::KAFKA_FETCH_WAIT_MS_MAX;
use crate::log::StartPosition;
use crate::server::node::{FetchFormat, FetchReply, Node};

struct Wanted {
    topic: TopicName,
    partition: i32,
    offset: i64,
    max_bytes: i32,
}

async fn fetch_one(node: &Node, w: &Wanted) -> Result<FetchReply, i16> {
    if w.partition < 0 || w.offset < 0 {
        return Err(if w.partition < 0 { code::UNKNOWN_TOPIC_OR_PARTITION } else { code::OFFSET_OUT_OF_RANGE });
    }
    let max = w.max_bytes.max(1) as u32;
    node.fetch(w.topic.as_str(), w.partition as u32, StartPosition::Offset(w.offset as u64), max, 0, FetchFormat::Kafka)
        .await
        .map_err(|e| code_of(&e))
}

async fn fetch_all(node: &Node, wanted: &[Wanted]) -> Vec<Result<FetchReply, i16>> {
    join_all(wanted.iter().map(|w| fetch_one(node, w))).await
}

pub async fn handle(node: &Node, version: i16, req: FetchRequest) -> FetchResponse {
    let wanted: Vec<Wanted> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| Wanted {
                topic: t.topic.clone(),
                partition: p.partition,
                offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes,
            })
        })
        .collect();
    let max_wait = req.max_wait_ms.clamp(0, KAFKA_FETCH_WAIT_MS_MAX) as u32;
    let response_max = if version >= 3 { req.max_bytes.max(1) as usize } else { i32::MAX as usize };
    let mut results = fetch_all(node, &wanted).await;
    let bytes: usize = results.iter().filter_map(|r| r.as_ref().ok()).map(|r| r.batches.len()).sum();
    if bytes < req.min_bytes.max(1) as usize && max_wait > 0 && !wanted.is_empty() {
        // Wait until any partition without an error has something past its offset.
        let waits: Vec<_> = wanted
            .iter()
            .zip(&results)
            .filter(|(_, r)| r.is_ok())
            .map(|(w, _)| Box::pin(node.wait_for_data(w.topic.as_str(), w.partition as u32, w.offset as u64, max_wait)))
            .collect();
        if !waits.is_empty() {
            let _ = select_all(waits).await;
            results = fetch_all(node, &wanted).await;
        }
    }
    // Fill the response in request order within its byte budget; the first partition with
    // data always gets its first batch, however large (KIP-74).
    let mut used = 0usize;
    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    for (w, r) in wanted.iter().zip(results) {
        let mut pd = PartitionData::default().with_partition_index(w.partition);
        match r {
            Ok(reply) => {
                pd.high_watermark = reply.visible_end.0 as i64;
                pd.last_stable_offset = reply.visible_end.0 as i64;
                pd.log_start_offset = reply.log_start.0 as i64;
                let records = if used > 0 && used + reply.batches.len() > response_max {
                    Bytes::new()
                } else {
                    used += reply.batches.len();
                    Bytes::from(reply.batches)
                };
                pd.records = Some(records);
            }
            Err(e) => {
                pd.error_code = e;
                pd.high_watermark = -1;
                pd.records = Some(Bytes::new());
            }
        }
        match topics.last_mut() {
            Some(t) if t.topic == w.topic => t.partitions.push(pd),
            _ => topics.push(FetchableTopicResponse::default().with_topic(w.topic.clone()).with_partitions(vec![pd])),
        }
    }
    FetchResponse::default().with_responses(topics)
}
