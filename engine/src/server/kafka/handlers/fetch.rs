//! Fetch: whole batches from each partition's owning shard, written as Kafka batches;
//! long-polls until `min_bytes` are there or `max_wait_ms` passes. No fetch sessions
//! (session id 0: clients send full requests), as a broker may choose (KIP-227).

use bytes::Bytes;
use futures::future::{join_all, select_all};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};

use super::{code, code_of};
use crate::limits::{FETCH_BYTES_MAX, KAFKA_FETCH_WAIT_MS_MAX};
use crate::log::StartPosition;
use crate::server::node::{FetchFormat, FetchReply, Node};

struct Wanted {
    topic: TopicName,
    partition: i32,
    offset: i64,
    max_bytes: i32,
}

/// `max_bytes` 0: only the partition's offsets, no records.
async fn fetch_one(node: &Node, w: &Wanted, max_bytes: u32) -> Result<FetchReply, i16> {
    if w.partition < 0 || w.offset < 0 {
        return Err(if w.partition < 0 { code::UNKNOWN_TOPIC_OR_PARTITION } else { code::OFFSET_OUT_OF_RANGE });
    }
    node.fetch(
        w.topic.as_str(),
        w.partition as u32,
        StartPosition::Offset(w.offset as u64),
        max_bytes,
        0,
        FetchFormat::Kafka,
    )
    .await
    .map_err(|e| code_of(&e))
}

/// Fetches every wanted partition, in request order, within `budget` bytes: concurrently
/// in groups whose byte limits add up to what is left of it, so a request's replies hold
/// about the budget however many partitions it names (the same partition 1,000 times
/// with `partition_max_bytes` = 2 GiB held 64 MiB per entry). The first partition with
/// data still gets its first batch whatever its size (KIP-74).
async fn fetch_all(node: &Node, wanted: &[Wanted], budget: usize) -> Vec<Result<FetchReply, i16>> {
    let mut out = Vec::with_capacity(wanted.len());
    let mut used = 0usize;
    let mut next = 0;
    while next < wanted.len() {
        let left = budget.saturating_sub(used);
        let first = next;
        let mut limits = Vec::new();
        let mut sum = 0usize;
        while next < wanted.len() {
            let limit = (wanted[next].max_bytes.max(1) as usize).min(left);
            // Nothing fetched yet: the group's first partition may return a whole batch.
            let limit = if used == 0 && next == first { limit.max(1) } else { limit };
            if next > first && sum + limit > left {
                break;
            }
            sum += limit;
            limits.push(limit as u32);
            next += 1;
        }
        let replies = join_all(wanted[first..next].iter().zip(&limits).map(|(w, max)| fetch_one(node, w, *max))).await;
        used += replies.iter().filter_map(|r| r.as_ref().ok()).map(|r| r.batches.len()).sum::<usize>();
        out.extend(replies);
    }
    out
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
    // The broker's own cap on a response, as Kafka's `fetch.max.bytes`.
    let response_max = if version >= 3 { req.max_bytes.max(1) as usize } else { usize::MAX };
    let response_max = response_max.min(FETCH_BYTES_MAX as usize);
    let mut results = fetch_all(node, &wanted, response_max).await;
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
            results = fetch_all(node, &wanted, response_max).await;
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
