//! Records over HTTP as NDJSON.
//!
//! `POST /topics/{t}/records`: one record per line. A typed topic's line is a JSON object
//! checked against the schema (its event-time column is the record's timestamp); a raw
//! topic's line is the value, byte for byte. Every line is checked before anything is
//! appended: an invalid line fails the whole request with 400 naming the line, the field
//! and the reason (or goes to the topic's dead-letter topic, when it names one).
//! Partition: `?partition=N`, else by key (`?key=column`, or a table's primary key) with
//! Kafka's partitioner, else round-robin.
//!
//! `GET /topics/{t}/records?partition=N&from=earliest|latest|offset:N|time:T&max=N&wait_ms=N`:
//! one JSON object per record (`partition`, `offset`, `timestamp`, `key`, `value`, `headers`).

use std::collections::BTreeMap;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Value};

use super::{api_error, body, error, json, query, respond, HttpConfig, HttpResponse};
use crate::limits::{HTTP_FETCH_RECORDS_MAX, KAFKA_FETCH_WAIT_MS_MAX};
use crate::log::{StartPosition, TopicConfig};
use crate::record::schema::{row_to_json, value_to_json, Row, Schema, Value as Cell};
use crate::record::{
    partition_for_key, Batch, BatchBuilder, BatchPayload, RawRecord, Record, RecordHeader, DEAD_LETTER_ERROR_HEADER,
    DEAD_LETTER_SOURCE_HEADER, NULL_VALUE_HEADER,
};
use crate::server::node::Node;

/// The text form of a key cell (what a typed record's key bytes are).
fn key_text(v: &Cell) -> String {
    match v {
        Cell::Text(s) => s.clone(),
        Cell::Null => String::new(),
        other => match value_to_json(other) {
            Value::String(s) => s,
            j => j.to_string(),
        },
    }
}

/// The key of a typed row: one column's text, or a JSON array of several.
fn row_key(row: &Row, key_columns: &[usize]) -> Option<Vec<u8>> {
    match key_columns {
        [] => None,
        [one] => Some(key_text(&row[*one]).into_bytes()),
        many => {
            let parts: Vec<Value> = many.iter().map(|&i| value_to_json(&row[i])).collect();
            Some(Value::Array(parts).to_string().into_bytes())
        }
    }
}

enum Line {
    Typed { row: Row, key: Option<Vec<u8>>, ts: i64 },
    Raw { value: Vec<u8> },
    Dead { value: Vec<u8>, reason: String },
}

fn bad_line(line: usize, field: &str, reason: &str) -> HttpResponse {
    json(
        StatusCode::BAD_REQUEST,
        &json!({
            "error": format!("line {line}: field '{field}': {reason}"),
            "line": line, "field": field, "reason": reason,
        }),
    )
}

fn key_columns(config: &TopicConfig, schema: &Schema, key_param: Option<&str>) -> Result<Vec<usize>, String> {
    let names: Vec<&str> = match key_param {
        Some(k) => k.split(',').map(str::trim).filter(|s| !s.is_empty()).collect(),
        None => config.primary_key.iter().map(String::as_str).collect(),
    };
    names
        .iter()
        .map(|n| {
            schema
                .columns
                .iter()
                .position(|c| c.name.eq_ignore_ascii_case(n))
                .ok_or_else(|| format!("key column '{n}' is not a column of the topic"))
        })
        .collect()
}

pub async fn produce(node: &Node, name: &str, req: Request<Incoming>, config: &HttpConfig) -> HttpResponse {
    let topic = match node.topic(name) {
        Ok(t) => t,
        Err(e) => return api_error(&e),
    };
    let params: BTreeMap<String, String> = query(&req).into_iter().collect();
    let explicit = match params.get("partition").map(|p| p.parse::<u32>()) {
        None => None,
        Some(Ok(p)) if p < topic.partitions => Some(p),
        Some(_) => return error(StatusCode::BAD_REQUEST, format!("partition must be below {}", topic.partitions)),
    };
    let bytes = match body(req, config.body_bytes_max).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let now = crate::clock::now_ms();
    // Check every line before appending anything.
    let keys = match topic.schema() {
        Some(s) => match key_columns(&topic, s, params.get("key").map(String::as_str)) {
            Ok(k) => k,
            Err(e) => return error(StatusCode::BAD_REQUEST, e),
        },
        None => Vec::new(),
    };
    let mut lines = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let line_no = i + 1;
        match topic.schema() {
            None => lines.push(Line::Raw { value: raw.to_vec() }),
            Some(schema) => {
                let parsed = serde_json::from_slice::<Value>(raw)
                    .map_err(|e| ("(line)".to_string(), format!("not JSON: {e}")))
                    .and_then(|j| schema.row_from_json(&j).map_err(|e| (e.field, e.reason)));
                match parsed {
                    Ok(row) => {
                        let ts = schema.event_time_ms(&row).unwrap_or(now);
                        let key = row_key(&row, &keys);
                        lines.push(Line::Typed { row, key, ts });
                    }
                    Err((field, reason)) if topic.dead_letter_topic.is_some() => lines.push(Line::Dead {
                        value: raw.to_vec(),
                        reason: format!("line {line_no}: field '{field}': {reason}"),
                    }),
                    Err((field, reason)) => return bad_line(line_no, &field, &reason),
                }
            }
        }
    }
    if lines.is_empty() {
        return error(StatusCode::BAD_REQUEST, "the body holds no records (one JSON object or value per line)");
    }
    // Partition, batch (within the topic's batch limit) and append.
    let parts = topic.partitions;
    let mut next_rr = (now as u32).wrapping_mul(2_654_435_761) % parts;
    let mut round_robin = || {
        let p = next_rr;
        next_rr = (next_rr + 1) % parts;
        p
    };
    let mut typed: BTreeMap<u32, Vec<Record<Row>>> = BTreeMap::new();
    let mut raw: BTreeMap<u32, Vec<RawRecord>> = BTreeMap::new();
    let mut dead: Vec<RawRecord> = Vec::new();
    for line in lines {
        match line {
            Line::Typed { row, key, ts } => {
                let p = explicit
                    .unwrap_or_else(|| key.as_deref().map_or_else(&mut round_robin, |k| partition_for_key(k, parts)));
                typed.entry(p).or_default().push(Record { timestamp_ms: ts, key, value: row, headers: Vec::new() });
            }
            Line::Raw { value } => {
                let p = explicit.unwrap_or_else(&mut round_robin);
                raw.entry(p).or_default().push(RawRecord::new(now, None, &value));
            }
            Line::Dead { value, reason } => {
                let mut r = RawRecord::new(now, None, &value);
                r.headers.push(RecordHeader { key: DEAD_LETTER_ERROR_HEADER.into(), value: reason.into_bytes() });
                r.headers.push(RecordHeader { key: DEAD_LETTER_SOURCE_HEADER.into(), value: name.as_bytes().to_vec() });
                dead.push(r);
            }
        }
    }
    let batch_max = topic.batch_bytes_max as usize;
    let mut payloads: Vec<(String, u32, BatchPayload, usize)> = Vec::new();
    let build = |records: &[Record<Row>]| match topic.schema() {
        Some(s) => BatchPayload::from_rows(records, s),
        None => Err(crate::record::PayloadError::Invalid("no schema".into())),
    };
    for (p, records) in typed {
        // Halve until each piece fits the topic's batch limit.
        let mut pending = vec![records];
        while let Some(chunk) = pending.pop() {
            match build(&chunk) {
                Ok(payload) if payload.bytes().len() <= batch_max => {
                    let n = chunk.len();
                    payloads.push((name.to_string(), p, payload, n));
                }
                Ok(_) | Err(_) if chunk.len() > 1 => {
                    let mut a = chunk;
                    let b = a.split_off(a.len() / 2);
                    pending.push(b);
                    pending.push(a);
                }
                Ok(_) => {
                    return error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("a record exceeds the topic's batch limit of {batch_max} bytes"),
                    )
                }
                Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
            }
        }
    }
    for (p, records) in raw {
        for chunk in chunk_raw(records, batch_max) {
            let n = chunk.len();
            let mut b: BatchBuilder = BatchBuilder::new();
            for r in chunk {
                b.push(r);
            }
            match b.finish() {
                Ok(payload) if payload.bytes().len() <= batch_max => payloads.push((name.to_string(), p, payload, n)),
                Ok(_) => {
                    return error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("a record exceeds the topic's batch limit of {batch_max} bytes"),
                    )
                }
                Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
            }
        }
    }
    let dead_count = dead.len();
    if let (Some(dlq), false) = (&topic.dead_letter_topic, dead.is_empty()) {
        let Ok(dlq_config) = node.topic(dlq) else {
            return error(StatusCode::BAD_REQUEST, format!("the dead-letter topic '{dlq}' does not exist"));
        };
        for chunk in chunk_raw(dead, batch_max) {
            let n = chunk.len();
            let mut b: BatchBuilder = BatchBuilder::new();
            for r in chunk {
                b.push(r);
            }
            if let Ok(payload) = b.finish() {
                let p = round_robin() % dlq_config.partitions;
                payloads.push((dlq.clone(), p, payload, n));
            }
        }
    }
    let mut pending = Vec::with_capacity(payloads.len());
    for (t, p, payload, n) in payloads {
        match node.submit_produce(&t, p, payload).await {
            Ok(a) => pending.push((t, p, n, a)),
            Err(e) => return api_error(&e),
        }
    }
    let mut written = Vec::new();
    let mut total = 0usize;
    for (t, p, n, a) in pending {
        match a.await {
            Ok(ack) if t == name => {
                total += n;
                written.push(json!({ "partition": p, "base_offset": ack.base_offset.0, "records": n }));
            }
            Ok(_) => {}
            Err(e) => return api_error(&e),
        }
    }
    json(StatusCode::OK, &json!({ "records": total, "dead_lettered": dead_count, "batches": written }))
}

/// Splits raw records into groups whose values together stay under `max` bytes.
fn chunk_raw(records: Vec<RawRecord>, max: usize) -> Vec<Vec<RawRecord>> {
    let mut out = vec![Vec::new()];
    let mut size = 0usize;
    for r in records {
        let len = r.value.len() + r.key.as_ref().map_or(0, Vec::len) + 64;
        if size + len > max * 3 / 4 && !out.last().is_some_and(Vec::is_empty) {
            out.push(Vec::new());
            size = 0;
        }
        size += len;
        if let Some(last) = out.last_mut() {
            last.push(r);
        }
    }
    out.retain(|c| !c.is_empty());
    out
}

pub async fn fetch(node: &Node, name: &str, req: &Request<Incoming>) -> HttpResponse {
    let params: BTreeMap<String, String> = query(req).into_iter().collect();
    let partition = match params.get("partition").map(|p| p.parse::<u32>()) {
        None => 0,
        Some(Ok(p)) => p,
        Some(Err(_)) => return error(StatusCode::BAD_REQUEST, "partition must be a number"),
    };
    let start: StartPosition = match params.get("from").map(|f| f.parse()) {
        None => StartPosition::Earliest,
        Some(Ok(s)) => s,
        Some(Err(e)) => return error(StatusCode::BAD_REQUEST, e),
    };
    let num = |k: &str, default: u32, max: u32| -> Result<u32, String> {
        match params.get(k).map(|v| v.parse::<u32>()) {
            None => Ok(default),
            Some(Ok(v)) => Ok(v.min(max)),
            Some(Err(_)) => Err(format!("{k} must be a non-negative number")),
        }
    };
    let max = match num("max", 1000, HTTP_FETCH_RECORDS_MAX) {
        Ok(v) => v.max(1),
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let wait = match num("wait_ms", 0, KAFKA_FETCH_WAIT_MS_MAX as u32) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match node.fetch_json(name, partition, start, max, wait).await {
        Ok(f) => {
            let mut r = respond(StatusCode::OK, "application/x-ndjson", f.lines);
            let h = r.headers_mut();
            for (k, v) in [
                ("x-sluice-next-offset", f.next_offset),
                ("x-sluice-end-offset", f.visible_end),
                ("x-sluice-log-start-offset", f.log_start),
            ] {
                if let Ok(v) = http::HeaderValue::from_str(&v.to_string()) {
                    h.insert(k, v);
                }
            }
            r
        }
        Err(e) => api_error(&e),
    }
}

fn bytes_json(b: &[u8]) -> Value {
    match std::str::from_utf8(b) {
        Ok(s) => Value::String(s.to_string()),
        Err(_) => Value::String(format!("\\x{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>())),
    }
}

fn timestamp_json(ms: i64) -> Value {
    value_to_json(&Cell::Timestamp(ms))
}

/// Every record of a batch as one JSON line, with its index in the batch. Typed rows are
/// read as the topic's current schema version (upcast).
pub fn batch_to_json(b: &Batch, schemas: &[Schema], partition: u32) -> Vec<(usize, String)> {
    let headers_json = |hs: &[crate::record::ArchivedRecordHeader]| -> Value {
        let map: serde_json::Map<String, Value> = hs
            .iter()
            .filter(|h| h.key.as_str() != NULL_VALUE_HEADER)
            .map(|h| (h.key.to_string(), bytes_json(h.value.as_slice())))
            .collect();
        Value::Object(map)
    };
    let base = b.base_offset();
    if let Some(rows) = b.typed_rows() {
        let Some(current) = schemas.last() else { return Vec::new() };
        return (0..rows.len())
            .map(|i| {
                let v = json!({
                    "partition": partition,
                    "offset": base + i as u64,
                    "timestamp": timestamp_json(rows.timestamp_ms(i)),
                    "key": rows.key(i).map(bytes_json),
                    "value": row_to_json(current, &current.upcast(rows.to_row(i))),
                    "headers": headers_json(rows.headers(i)),
                });
                (i, v.to_string())
            })
            .collect();
    }
    if b.is_typed() {
        return Vec::new();
    }
    b.records()
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let null = r.headers.iter().any(|h| h.key.as_str() == NULL_VALUE_HEADER);
            let v = json!({
                "partition": partition,
                "offset": base + i as u64,
                "timestamp": timestamp_json(r.timestamp_ms.to_native()),
                "key": r.key.as_ref().map(|k| bytes_json(k.as_slice())),
                "value": if null { Value::Null } else { bytes_json(r.value.as_slice()) },
                "headers": headers_json(r.headers.as_slice()),
            });
            (i, v.to_string())
        })
        .collect()
}
