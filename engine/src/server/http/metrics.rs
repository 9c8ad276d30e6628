//! `GET /metrics`: Prometheus text format. Each shard renders the metrics of what it owns
//! (its partitions, its queues); the shard serving the scrape gathers them.
//!
//! Per partition: records and bytes appended, end offset, durable offset, log start.
//! Per shard: append queue depth, peer requests in flight, open connections, and the
//! fdatasync latency histogram of its partitions. Per view and shard: keys, state bytes,
//! events, late events, watermark lag, version, and a running rebuild's progress and state; on the
//! shard coordinating a view's checkpoints, how many completed and how long the last took.

use std::collections::BTreeMap;
use std::fmt::Write;

use http::StatusCode;

use super::{api_error, respond, HttpResponse};
use crate::metrics::{describe, label, LatencyHistogram};
use crate::server::node::Node;

/// (name, type, help) of every metric, in the order they are written.
const METRICS: &[(&str, &str, &str)] = &[
    (
        "sluice_partition_records_appended_total",
        "counter",
        "Records appended to the partition since the server started.",
    ),
    (
        "sluice_partition_bytes_appended_total",
        "counter",
        "Bytes of log written for appended batches since the server started.",
    ),
    (
        "sluice_partition_batches_read_from_tail_total",
        "counter",
        "Batches handed to readers from the partition's in-memory tail (no disk read).",
    ),
    ("sluice_partition_batches_read_from_disk_total", "counter", "Batches handed to readers from the segment files."),
    ("sluice_partition_end_offset", "gauge", "One past the last offset visible to readers."),
    ("sluice_partition_durable_offset", "gauge", "One past the last offset covered by an fdatasync."),
    ("sluice_partition_log_start_offset", "gauge", "The first offset still retained."),
    ("sluice_partition_read_only", "gauge", "1 if the partition went read-only after a failed write or sync."),
    ("sluice_shard_append_queue_depth", "gauge", "Appends waiting in the shard's partition queues."),
    ("sluice_shard_peer_requests_inflight", "gauge", "Requests from other shards being served."),
    ("sluice_shard_connections", "gauge", "Open client connections on the shard."),
    ("sluice_shard_sync_latency_seconds", "histogram", "Duration of the shard's partition fdatasyncs."),
    (
        "sluice_shard_loop_lag_seconds",
        "histogram",
        "How late a 10 ms timer fired on the shard: time its loop went without polling I/O.",
    ),
    ("sluice_view_keys", "gauge", "Groups (or rows) the view keeps on the shard."),
    ("sluice_view_state_bytes", "gauge", "Approximate bytes of the view's state on the shard."),
    ("sluice_view_events_total", "counter", "Source records the view processed on the shard."),
    ("sluice_view_late_events_total", "counter", "Late events dropped (or sent to the side topic) on the shard."),
    (
        "sluice_view_events_lost_to_retention_total",
        "counter",
        "Source records retention deleted before the view read them (it went on from the oldest kept).",
    ),
    (
        "sluice_view_reads_held_total",
        "counter",
        "Rounds a source partition was not read because it was too far ahead in event time (watermark alignment).",
    ),
    ("sluice_view_watermark_lag_seconds", "gauge", "Wall clock minus the view's watermark on the shard."),
    ("sluice_view_version", "gauge", "The serving version of the view."),
    (
        "sluice_view_checkpoints_total",
        "counter",
        "Checkpoints of the view completed (on the shard that coordinates them).",
    ),
    ("sluice_view_checkpoint_last_seconds", "gauge", "How long the view's last completed checkpoint took."),
    ("sluice_view_rebuild_events_read", "gauge", "Records the version being rebuilt has read on the shard."),
    (
        "sluice_view_rebuild_lag_events",
        "gauge",
        "Records between the rebuild's position and the log's end on the shard.",
    ),
    ("sluice_view_rebuild_state_bytes", "gauge", "Approximate bytes of the state the rebuild holds on the shard."),
];

/// This shard's lines, grouped by metric name (`name\tline`), for [`merge`].
pub fn render_shard(node: &Node) -> String {
    let shard = node.shard.index;
    let mut out = String::new();
    let mut queue = 0usize;
    let sync = LatencyHistogram::default();
    let mut partitions = node.log.partitions();
    partitions.sort_by(|a, b| (&a.topic().name, a.id()).cmp(&(&b.topic().name, b.id())));
    for p in &partitions {
        let l = format!("shard=\"{shard}\",topic=\"{}\",partition=\"{}\"", label(&p.topic().name), p.id());
        let o = p.offsets();
        let m = p.metrics();
        let rows: [(&str, u64); 8] = [
            ("sluice_partition_records_appended_total", m.records_appended.get()),
            ("sluice_partition_bytes_appended_total", m.bytes_appended.get()),
            ("sluice_partition_batches_read_from_tail_total", m.batches_read_from_tail.get()),
            ("sluice_partition_batches_read_from_disk_total", m.batches_read_from_disk.get()),
            ("sluice_partition_end_offset", o.visible_end().0),
            ("sluice_partition_durable_offset", o.durable_end().0),
            ("sluice_partition_log_start_offset", o.log_start().0),
            ("sluice_partition_read_only", p.status().read_only.is_some() as u64),
        ];
        for (name, v) in rows {
            let _ = writeln!(out, "{name}\t{name}{{{l}}} {v}");
        }
        queue += p.queue_depth();
        sync.merge(&m.sync_latency);
    }
    let l = format!("shard=\"{shard}\"");
    let _ = writeln!(out, "sluice_shard_append_queue_depth\tsluice_shard_append_queue_depth{{{l}}} {queue}");
    let _ = writeln!(
        out,
        "sluice_shard_peer_requests_inflight\tsluice_shard_peer_requests_inflight{{{l}}} {}",
        node.peer_inflight.get()
    );
    let _ = writeln!(out, "sluice_shard_connections\tsluice_shard_connections{{{l}}} {}", node.connections.get());
    let mut h = String::new();
    sync.render(&mut h, "sluice_shard_sync_latency_seconds", &l);
    for line in h.lines() {
        let _ = writeln!(out, "sluice_shard_sync_latency_seconds\t{line}");
    }
    let mut h = String::new();
    node.loop_lag.render(&mut h, "sluice_shard_loop_lag_seconds", &l);
    for line in h.lines() {
        let _ = writeln!(out, "sluice_shard_loop_lag_seconds\t{line}");
    }
    render_views(node, &mut out);
    out
}

/// The views' lines of this shard: state size, events, late events, watermark lag, and
/// the progress of rebuilds.
fn render_views(node: &Node, out: &mut String) {
    let shard = node.shard.index;
    let now_ms = crate::clock::now_ms();
    for def in node.views.defs() {
        let Some((_, rt, _)) = node.views.get(&def.name) else { continue };
        let l = format!("shard=\"{shard}\",view=\"{}\"", label(&def.name));
        let (_, keys, bytes) = crate::view::read::state_size(&rt);
        let late = rt.metrics.late_dropped.get() + rt.state.borrow().agg.counters.late_dropped;
        let wm = rt.watermark();
        let lag = if wm == i64::MIN || wm == i64::MAX { 0.0 } else { (now_ms - wm).max(0) as f64 / 1e3 };
        let _ = writeln!(out, "sluice_view_keys\tsluice_view_keys{{{l}}} {keys}");
        let _ = writeln!(out, "sluice_view_state_bytes\tsluice_view_state_bytes{{{l}}} {bytes}");
        let _ = writeln!(out, "sluice_view_events_total\tsluice_view_events_total{{{l}}} {}", rt.metrics.events.get());
        let _ = writeln!(out, "sluice_view_late_events_total\tsluice_view_late_events_total{{{l}}} {late}");
        let lost = rt.metrics.lost_to_retention.get();
        let name = "sluice_view_events_lost_to_retention_total";
        let _ = writeln!(out, "{name}\t{name}{{{l}}} {lost}");
        let held = rt.metrics.reads_held.get();
        let _ = writeln!(out, "sluice_view_reads_held_total\tsluice_view_reads_held_total{{{l}}} {held}");
        let _ = writeln!(out, "sluice_view_watermark_lag_seconds\tsluice_view_watermark_lag_seconds{{{l}}} {lag}");
        let _ = writeln!(out, "sluice_view_version\tsluice_view_version{{{l}}} {}", def.version);
        if let Some(c) = node.views.checkpoint_progress(&def.name).filter(|c| c.completed > 0) {
            let _ =
                writeln!(out, "sluice_view_checkpoints_total\tsluice_view_checkpoints_total{{{l}}} {}", c.completed);
            let secs = c.last_duration.map_or(0.0, |d| d.as_secs_f64());
            let name = "sluice_view_checkpoint_last_seconds";
            let _ = writeln!(out, "{name}\t{name}{{{l}}} {secs}");
        }
        if let Some((b, new)) = node.views.get_building(&def.name) {
            let (mut read, mut behind) = (0u64, 0u64);
            for (topic, p, at) in new.positions() {
                let start = new.started_at.iter().find(|(t, q, _)| *t == topic && *q == p).map_or(at, |s| s.2);
                read += at.0.saturating_sub(start.0);
                let end = node.log.partition(&topic, p).map_or(at, |part| part.offsets().visible_end());
                behind += end.0.saturating_sub(at.0);
            }
            let l = format!("{l},version=\"{}\"", b.version);
            let _ = writeln!(out, "sluice_view_rebuild_events_read\tsluice_view_rebuild_events_read{{{l}}} {read}");
            let _ = writeln!(out, "sluice_view_rebuild_lag_events\tsluice_view_rebuild_lag_events{{{l}}} {behind}");
            let (_, _, state_bytes) = crate::view::read::state_size(&new);
            let name = "sluice_view_rebuild_state_bytes";
            let _ = writeln!(out, "{name}\t{name}{{{l}}} {state_bytes}");
        }
    }
}

/// Joins every shard's lines into one exposition, each metric's lines together under
/// its HELP and TYPE.
pub fn merge(parts: Vec<String>) -> String {
    let mut by_name: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for part in &parts {
        for line in part.lines() {
            if let Some((name, sample)) = line.split_once('\t') {
                by_name.entry(name).or_default().push(sample);
            }
        }
    }
    let mut out = String::new();
    for (name, kind, help) in METRICS {
        describe(&mut out, name, kind, help);
        for sample in by_name.get(name).map(Vec::as_slice).unwrap_or_default() {
            out.push_str(sample);
            out.push('\n');
        }
    }
    out
}

pub async fn handle(node: &Node) -> HttpResponse {
    match node.metrics_all().await {
        Ok(text) => respond(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", text),
        Err(e) => api_error(&e),
    }
}
