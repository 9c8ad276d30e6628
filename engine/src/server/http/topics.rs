//! Topic admin over HTTP: list, create (JSON body), describe, delete.

use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Value};

use super::{api_error, body, error, json, HttpConfig, HttpResponse};
use crate::log::{PartitionStatus, TopicConfig};
use crate::server::node::Node;

pub fn topic_json(t: &TopicConfig) -> Value {
    let settings: serde_json::Map<String, Value> =
        t.settings().into_iter().map(|(k, v, _)| (k.to_string(), Value::String(v))).collect();
    let schema = t.schema().map(|s| {
        json!({
            "version": s.version,
            "columns": s.columns.iter().map(|c| json!({
                "name": c.name, "type": c.ty.to_string(), "nullable": c.nullable,
                "default": c.default.as_ref().map(crate::record::schema::value_to_json),
            })).collect::<Vec<_>>(),
            "event_time": s.event_time.map(|i| s.columns[i].name.clone()),
        })
    });
    json!({
        "name": t.name,
        "partitions": t.partitions,
        "durability": t.durability.to_string(),
        "schema": schema,
        "primary_key": t.primary_key,
        "settings": settings,
    })
}

fn status_json(s: &PartitionStatus) -> Value {
    json!({
        "partition": s.partition,
        "log_start": s.log_start.0,
        "durable_end": s.durable_end.0,
        "written_end": s.written_end.0,
        "end": s.visible_end.0,
        "segments": s.segments,
        "bytes": s.bytes,
        "read_only": s.read_only,
    })
}

pub fn list(node: &Node) -> HttpResponse {
    let topics: Vec<Value> = node.log.topics().iter().map(|t| topic_json(t)).collect();
    json(StatusCode::OK, &json!({ "topics": topics }))
}

pub async fn describe(node: &Node, name: &str) -> HttpResponse {
    match node.describe(name).await {
        Ok((config, statuses)) => {
            let mut v = topic_json(&config);
            v["partition_status"] = Value::Array(statuses.iter().map(status_json).collect());
            json(StatusCode::OK, &v)
        }
        Err(e) => api_error(&e),
    }
}

pub async fn delete(node: &Node, name: &str) -> HttpResponse {
    if crate::log::is_internal_topic(name) {
        return error(StatusCode::BAD_REQUEST, format!("'{name}' is an internal topic"));
    }
    match node.delete_topic(name).await {
        Ok(()) => json(StatusCode::OK, &json!({ "deleted": name })),
        Err(e) => api_error(&e),
    }
}

/// `POST /topics` with `{"name": .., "partitions": .., "durability": .., "schema": "col TYPE, ..",
/// "event_time": .., "dead_letter_topic": .., "retention_ms": .., "retention_bytes": .., "settings": {..}}`.
pub async fn create(node: &Node, req: Request<Incoming>, config: &HttpConfig) -> HttpResponse {
    let bytes = match body(req, config.body_bytes_max).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let spec: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("the body is not JSON: {e}")),
    };
    let Some(obj) = spec.as_object() else {
        return error(StatusCode::BAD_REQUEST, "the body must be a JSON object");
    };
    let Some(name) = obj.get("name").and_then(Value::as_str) else {
        return error(StatusCode::BAD_REQUEST, "field 'name' (a string) is required");
    };
    let partitions = match obj.get("partitions") {
        None => 1,
        Some(p) => match p.as_u64().and_then(|p| u32::try_from(p).ok()) {
            Some(p) => p,
            None => return error(StatusCode::BAD_REQUEST, "field 'partitions' must be a positive integer"),
        },
    };
    let mut settings: Vec<(String, String)> = Vec::new();
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let known = ["name", "partitions", "settings"];
    for (field, setting) in [
        ("durability", "sluice.durability"),
        ("schema", "sluice.schema"),
        ("event_time", "sluice.event.time"),
        ("dead_letter_topic", "sluice.dead.letter.topic"),
        ("retention_ms", "retention.ms"),
        ("retention_bytes", "retention.bytes"),
        ("segment_bytes", "segment.bytes"),
        ("lateness_ms", "sluice.lateness.ms"),
    ] {
        if let Some(v) = obj.get(field) {
            settings.push((setting.to_string(), text(v)));
        }
    }
    if let Some(unknown) = obj.keys().find(|k| {
        !known.contains(&k.as_str())
            && ![
                "durability",
                "schema",
                "event_time",
                "dead_letter_topic",
                "retention_ms",
                "retention_bytes",
                "segment_bytes",
                "lateness_ms",
            ]
            .contains(&k.as_str())
    }) {
        return error(StatusCode::BAD_REQUEST, format!("unknown field '{unknown}'"));
    }
    if let Some(extra) = obj.get("settings").and_then(Value::as_object) {
        settings.extend(extra.iter().map(|(k, v)| (k.clone(), text(v))));
    }
    let mut config = TopicConfig::new(name, partitions);
    if let Err(e) = config.apply_settings(settings.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
        return error(StatusCode::BAD_REQUEST, e);
    }
    match node.create_topic(config).await {
        Ok(created) => json(StatusCode::CREATED, &topic_json(&created)),
        Err(e) => api_error(&e),
    }
}

/// `PUT /topics/{t}/schema` with `{"schema": "col TYPE, ..."}`: the next schema version.
pub async fn evolve_schema(node: &Node, name: &str, req: Request<Incoming>, config: &HttpConfig) -> HttpResponse {
    let bytes = match body(req, config.body_bytes_max).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let spec: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("the body is not JSON: {e}")),
    };
    let Some(decl) = spec.get("schema").and_then(Value::as_str) else {
        return error(StatusCode::BAD_REQUEST, "field 'schema' (a string) is required");
    };
    let event_time = spec.get("event_time").and_then(Value::as_str);
    match node.evolve_schema(name, decl, event_time).await {
        Ok(c) => json(StatusCode::OK, &topic_json(&c)),
        Err(e) => api_error(&e),
    }
}
