//! HTTP against a real `sluice serve`: topic admin, NDJSON produce and fetch (typed and
//! raw), invalid events, dead-letter topics, schema evolution, `/health`, `/metrics`.

use serde_json::{json, Value};
use sluice_tests::{eventually, http, kcat, Server};
use std::time::Duration;

fn ndjson(body: &str) -> Vec<Value> {
    body.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

fn post(server: &Server, path: &str, body: &str) -> (u16, Value) {
    let (status, body) = http(server.http, "POST", path, body.as_bytes());
    (status, serde_json::from_str(&body).unwrap_or(Value::String(body)))
}

#[test]
fn typed_topic_over_http_validates_partitions_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("d"));
    let spec = json!({"name": "orders", "partitions": 3, "schema": "ts TIMESTAMP NOT NULL, id BIGINT NOT NULL, sym TEXT NOT NULL, qty INT", "event_time": "ts", "durability": "sync"});
    let (st, created) = post(&server, "/topics", &spec.to_string());
    assert_eq!(st, 201, "{created}");
    assert_eq!(created["schema"]["columns"][2]["type"], "TEXT");
    let lines: String = (0..30)
        .map(|i| {
            json!({"ts": 1_767_225_600_000i64 + i * 1000, "id": i, "sym": format!("S{}", i % 4), "qty": i}).to_string()
                + "\n"
        })
        .collect();
    let (st, r) = post(&server, "/topics/orders/records?key=sym", &lines);
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["records"], 30);
    // A key always lands on the same partition; every record comes back once, as written.
    let mut seen = Vec::new();
    for p in 0..3 {
        let (st, body) = http(server.http, "GET", &format!("/topics/orders/records?partition={p}&max=100"), b"");
        assert_eq!(st, 200);
        for rec in ndjson(&body) {
            let v = &rec["value"];
            assert_eq!(rec["key"], v["sym"], "keyed by sym");
            assert_eq!(rec["timestamp"], v["ts"], "the event time is the record's timestamp");
            seen.push((v["sym"].as_str().unwrap().to_string(), p, v["id"].as_i64().unwrap()));
        }
    }
    assert_eq!(seen.len(), 30);
    for sym in ["S0", "S1", "S2", "S3"] {
        let parts: std::collections::BTreeSet<_> =
            seen.iter().filter(|(s, _, _)| s == sym).map(|(_, p, _)| *p).collect();
        assert_eq!(parts.len(), 1, "{sym} on one partition: {parts:?}");
    }
    let mut ids: Vec<i64> = seen.iter().map(|(_, _, id)| *id).collect();
    ids.sort();
    assert_eq!(ids, (0..30).collect::<Vec<_>>());

    // An invalid line fails the whole request, naming the line, the field and the reason;
    // nothing of the request is written.
    let before: usize = (0..3)
        .map(|p| {
            ndjson(&http(server.http, "GET", &format!("/topics/orders/records?partition={p}&max=1000"), b"").1).len()
        })
        .sum();
    let bad = format!("{}\n{}\n", json!({"ts": 1, "id": 1, "sym": "A"}), json!({"ts": 2, "id": "two", "sym": "B"}));
    let (st, r) = post(&server, "/topics/orders/records", &bad);
    assert_eq!(st, 400, "{r}");
    assert_eq!((r["line"].as_i64(), r["field"].as_str()), (Some(2), Some("id")), "{r}");
    assert!(r["reason"].as_str().unwrap().contains("integer"), "{r}");
    let after: usize = (0..3)
        .map(|p| {
            ndjson(&http(server.http, "GET", &format!("/topics/orders/records?partition={p}&max=1000"), b"").1).len()
        })
        .sum();
    assert_eq!(before, after, "not half-applied");
    let (st, r) = post(&server, "/topics/orders/records", "{\"ts\": 1, \"sym\": \"A\"}\n");
    assert_eq!((st, r["field"].as_str()), (400, Some("id")), "NOT NULL: {r}");
}

#[test]
fn a_dead_letter_topic_takes_invalid_events_instead() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("d"));
    assert_eq!(post(&server, "/topics", &json!({"name": "bad-ticks", "partitions": 1}).to_string()).0, 201);
    let spec =
        json!({"name": "ticks", "schema": "sym TEXT NOT NULL, px DOUBLE PRECISION", "dead_letter_topic": "bad-ticks"});
    assert_eq!(post(&server, "/topics", &spec.to_string()).0, 201);
    let lines = "{\"sym\": \"A\", \"px\": 1.5}\n{\"sym\": 5}\nnot json\n{\"sym\": \"B\"}\n";
    let (st, r) = post(&server, "/topics/ticks/records", lines);
    assert_eq!(st, 200, "{r}");
    assert_eq!((r["records"].as_i64(), r["dead_lettered"].as_i64()), (Some(2), Some(2)), "{r}");
    let good = ndjson(&http(server.http, "GET", "/topics/ticks/records", b"").1);
    assert_eq!(good.iter().map(|g| g["value"]["sym"].clone()).collect::<Vec<_>>(), vec![json!("A"), json!("B")]);
    let dead = ndjson(&http(server.http, "GET", "/topics/bad-ticks/records", b"").1);
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0]["value"], "{\"sym\": 5}", "the original bytes");
    assert!(dead[0]["headers"]["sluice.error"].as_str().unwrap().contains("field 'sym'"), "{}", dead[0]);
    assert_eq!(dead[1]["value"], "not json");
    // Kafka producers are dead-lettered too.
    let (st, _, err) =
        kcat(&["-b", &server.kafka.to_string(), "-P", "-t", "ticks"], Some(b"{\"sym\": \"C\"}\n{\"px\": 2}\n"));
    assert!(st.success(), "{err}");
    let good = ndjson(&http(server.http, "GET", "/topics/ticks/records", b"").1);
    assert_eq!(good.len(), 3, "{good:?}");
    assert_eq!(ndjson(&http(server.http, "GET", "/topics/bad-ticks/records", b"").1).len(), 3);
}

#[test]
fn schema_evolution_adds_optional_columns_and_refuses_incompatible_changes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("d"));
    let spec = json!({"name": "ev", "schema": "id BIGINT NOT NULL, name TEXT"});
    assert_eq!(post(&server, "/topics", &spec.to_string()).0, 201);
    assert_eq!(post(&server, "/topics/ev/records", "{\"id\": 1, \"name\": \"old\"}\n").0, 200);
    let (st, body) = http(
        server.http,
        "PUT",
        "/topics/ev/schema",
        json!({"schema": "id BIGINT NOT NULL, name TEXT, venue TEXT DEFAULT 'XNYS', score DOUBLE PRECISION"})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(st, 200, "{body}");
    let t: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(t["schema"]["version"], 2);
    assert_eq!(post(&server, "/topics/ev/records", "{\"id\": 2, \"venue\": \"XLON\", \"score\": 0.5}\n").0, 200);
    let rows = ndjson(&http(server.http, "GET", "/topics/ev/records", b"").1);
    assert_eq!(
        rows[0]["value"],
        json!({"id": 1, "name": "old", "venue": "XNYS", "score": null}),
        "old rows read with defaults"
    );
    assert_eq!(rows[1]["value"], json!({"id": 2, "name": null, "venue": "XLON", "score": 0.5}));
    let (_, out, _) = kcat(&["-b", &server.kafka.to_string(), "-C", "-t", "ev", "-e", "-f", "%s\\n"], None);
    assert_eq!(serde_json::from_str::<Value>(out.lines().next().unwrap()).unwrap()["venue"], "XNYS");
    for (decl, why) in [
        ("id BIGINT NOT NULL", "removed"),
        ("id INT NOT NULL, name TEXT, venue TEXT, score DOUBLE PRECISION", "change type"),
        ("id BIGINT NOT NULL, name TEXT, venue TEXT, score DOUBLE PRECISION, must INT NOT NULL", "DEFAULT"),
    ] {
        let (st, body) = http(server.http, "PUT", "/topics/ev/schema", json!({"schema": decl}).to_string().as_bytes());
        assert_eq!(st, 400, "{decl}: {body}");
        assert!(body.contains(why), "{decl}: {body}");
    }
    // The evolved schema survives a restart.
    drop(server);
    let server = Server::start(&dir.path().join("d"));
    let (_, body) = http(server.http, "GET", "/topics/ev", b"");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["schema"]["version"], 2);
}

#[test]
fn raw_topics_health_metrics_and_limits() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("d"));
    assert_eq!(post(&server, "/topics", &json!({"name": "raw", "partitions": 2}).to_string()).0, 201);
    let (st, r) = post(&server, "/topics/raw/records?partition=1", "line one\n{\"not\": \"parsed\"}\n");
    assert_eq!(st, 200, "{r}");
    let rows = ndjson(&http(server.http, "GET", "/topics/raw/records?partition=1&from=offset:1", b"").1);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["value"], "{\"not\": \"parsed\"}", "raw bytes pass through untouched");
    let (st, body) = http(server.http, "GET", "/health", b"");
    assert_eq!(st, 200);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["status"], "ok");
    let (st, metrics) = http(server.http, "GET", "/metrics", b"");
    assert_eq!(st, 200);
    assert!(metrics.contains("sluice_partition_records_appended_total{shard=\""), "{metrics}");
    let line = metrics
        .lines()
        .find(|l| l.starts_with("sluice_partition_end_offset{") && l.contains("topic=\"raw\",partition=\"1\""))
        .expect("end offset of raw/1");
    assert!(line.ends_with(" 2"), "{line}");
    assert!(metrics.contains("# TYPE sluice_shard_sync_latency_seconds histogram"));
    assert!(
        metrics.lines().any(|l| l.starts_with("sluice_shard_sync_latency_seconds_count{shard=") && !l.ends_with(" 0")),
        "syncs are timed"
    );
    // The stall probe runs from startup; on a fast machine the requests above can all
    // fit before its first 10 ms tick, so wait for one.
    assert!(metrics.contains("# TYPE sluice_shard_loop_lag_seconds histogram"));
    assert!(
        eventually(Duration::from_secs(5), || {
            http(server.http, "GET", "/metrics", b"")
                .1
                .lines()
                .any(|l| l.starts_with("sluice_shard_loop_lag_seconds_count{shard=") && !l.ends_with(" 0"))
        }),
        "the shard loop's lag is measured"
    );
    // Errors are JSON with a status that says what happened.
    assert_eq!(http(server.http, "GET", "/topics/missing", b"").0, 404);
    assert_eq!(http(server.http, "GET", "/nowhere", b"").0, 404);
    assert_eq!(http(server.http, "DELETE", "/topics", b"").0, 405);
    assert_eq!(post(&server, "/topics", "{not json").0, 400);
    assert_eq!(post(&server, "/topics", &json!({"name": "raw"}).to_string()).0, 409);
    let huge = vec![b'x'; 65 << 20];
    assert_eq!(http(server.http, "POST", "/topics/raw/records", &huge).0, 413);
    assert_eq!(http(server.http, "DELETE", "/topics/raw", b"").0, 200);
    assert_eq!(http(server.http, "GET", "/topics/raw", b"").0, 404);
}
