//! `GET /health`: the server is up and serving; how it is laid out.

use http::StatusCode;

use super::{json, HttpResponse};
use crate::server::node::Node;

pub fn handle(node: &Node) -> HttpResponse {
    let read_only: Vec<String> = node
        .log
        .partitions()
        .iter()
        .filter_map(|p| p.status().read_only.map(|why| format!("{}/{}: {why}", p.topic().name, p.id())))
        .collect();
    let status = if node.is_stopping() { "stopping" } else { "ok" };
    json(
        if node.is_stopping() { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK },
        &serde_json::json!({
            "status": status,
            "shards": node.shard.count,
            "topics": node.log.topics().len(),
            // Partitions of this shard that went read-only (a failed write or sync).
            "read_only_partitions": read_only,
        }),
    )
}
