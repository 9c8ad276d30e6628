//! SQL against a real `sluice serve`: psql and psycopg on the Postgres listener, the same
//! statements over HTTP, errors with SQLSTATEs (and nothing half-created), views across a
//! restart, a view's changelog read by Kafka consumers and by another view.

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use sluice_tests::{ensure_clients, eventually, http, kcat, run_client, sql, sql_error, sql_rows, Server};

fn psql(server: &Server, args: &[&str]) -> (bool, String, String) {
    ensure_clients();
    let out = Command::new("psql")
        .args(["-h", &server.pg.ip().to_string(), "-p", &server.pg.port().to_string(), "-U", "test", "-d", "sluice"])
        .args(["-X", "-v", "ON_ERROR_STOP=1", "--no-psqlrc"])
        .args(args)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("run psql");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn psql_runs_a_script_and_reads_views() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("d"));
    let script = dir.path().join("setup.sql");
    std::fs::write(
        &script,
        "CREATE TOPIC trades (ts TIMESTAMP NOT NULL, sym TEXT NOT NULL, px DOUBLE PRECISION, qty BIGINT)
           WITH (partitions = 4, event_time = 'ts', durability = 'sync');
         CREATE TABLE symbols (sym TEXT, sector TEXT, PRIMARY KEY (sym));
         INSERT INTO symbols VALUES ('AAPL', 'tech'), ('XOM', 'energy');
         CREATE MATERIALIZED VIEW by_sector AS
           SELECT s.sector, count(*) AS trades, sum(t.qty) AS volume
           FROM trades t JOIN symbols s ON t.sym = s.sym GROUP BY s.sector;
         INSERT INTO trades VALUES ('2026-01-05 10:00:00', 'AAPL', 180.5, 10), ('2026-01-05 10:00:01', 'XOM', 101.0, 7),
           ('2026-01-05 10:00:02', 'AAPL', 181.0, 5), ('2026-01-05 10:00:03', 'IBM', 1.0, 1);
         SHOW TOPICS;
         SHOW TABLES;",
    )
    .unwrap();
    let (ok, out, err) = psql(&server, &["-f", script.to_str().unwrap()]);
    assert!(ok, "psql failed:\n{out}\n{err}");
    assert!(out.contains("CREATE TOPIC") && out.contains("CREATE TABLE") && out.contains("INSERT 0 4"), "{out}");
    assert!(out.contains("CREATE MATERIALIZED VIEW"), "{out}");
    assert!(out.contains("ts TIMESTAMP NOT NULL, sym TEXT NOT NULL, px DOUBLE PRECISION, qty BIGINT"), "{out}");
    // The unmatched IBM trade is dropped by the inner join.
    let want = " energy |      1 |      7\n tech   |      2 |     15\n(2 rows)";
    let seen = eventually(Duration::from_secs(20), || {
        let (_, out, _) = psql(&server, &["-c", "SELECT sector, trades, volume FROM by_sector ORDER BY sector"]);
        out.contains(want)
    });
    let (_, out, _) = psql(&server, &["-c", "SELECT sector, trades, volume FROM by_sector ORDER BY sector"]);
    assert!(seen, "by_sector:\n{out}");
    assert!(out.contains(" sector | trades | volume"), "{out}");
    // An error: psql prints the server's message and SQLSTATE-driven text.
    let (ok, _, err) = psql(&server, &["-c", "SELECT price FROM by_sector"]);
    assert!(!ok && err.contains("column \"price\" does not exist"), "{err}");
}

#[test]
fn psycopg_with_parameters_prepared_statements_transactions_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("d"));
    run_client("sql_psycopg.py", &[&server.pg.to_string()]);
}

#[test]
fn sql_errors_name_the_problem_and_nothing_is_half_created() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("d"));
    let h = server.http;
    sql_rows(
        h,
        "CREATE TOPIC ev (ts TIMESTAMP NOT NULL, k TEXT, v BIGINT) WITH (partitions = 2, event_time = 'ts');
         CREATE TOPIC raw_bytes (a TEXT) WITH (partitions = 1)",
    );
    let cases: &[(&str, &str, &str)] = &[
        ("SELEC * FROM ev", "42601", "SELEC"),
        ("CREATE MATERIALIZED VIEW v AS SELECT nope FROM ev", "42703", "nope"),
        ("CREATE MATERIALIZED VIEW v AS SELECT k, count(*) FROM ev", "42803", "GROUP BY"),
        ("CREATE MATERIALIZED VIEW v AS SELECT k || 1, v + 'x' FROM ev", "22P02", "bigint"),
        ("CREATE MATERIALIZED VIEW v AS SELECT k + 1 FROM ev", "42883", "TEXT + INT"),
        ("CREATE MATERIALIZED VIEW v AS SELECT count(*) FROM missing GROUP BY 1", "42P01", "missing"),
        ("CREATE MATERIALIZED VIEW v AS SELECT k, now() FROM ev", "0A000", "replayed"),
        ("CREATE MATERIALIZED VIEW v AS SELECT k FROM TUMBLE(ev, ts, INTERVAL '1' SECOND)", "0A000", "GROUP BY window_start"),
        ("CREATE MATERIALIZED VIEW v AS SELECT window_start, count(*) FROM TUMBLE(ev, k, INTERVAL '1' SECOND) GROUP BY window_start", "42804", "TIMESTAMP"),
        ("CREATE MATERIALIZED VIEW v WITH (late = 'maybe') AS SELECT k FROM ev", "22023", "late"),
        ("CREATE MATERIALIZED VIEW v AS SELECT a.k FROM ev a JOIN ev b ON a.k = b.k", "0A000", "BETWEEN"),
        ("CREATE TOPIC bad (x INTERVAL)", "0A000", "INTERVAL"),
        ("CREATE TOPIC bad2 (x INT) WITH (partitions = 0)", "22023", "partitions"),
        ("CREATE TOPIC bad3 (x INT) WITH (colour = 'red')", "22023", "colour"),
        ("CREATE TOPIC bad4 (x INT) WITH (retention = '-1 day')", "22023", "non-negative"),
        ("CREATE TABLE nokey (x INT)", "42601", "PRIMARY KEY"),
        ("INSERT INTO ev VALUES ('not a time', 'a', 1)", "22P02", "timestamp"),
        ("INSERT INTO ev (ts, nope) VALUES ('2026-01-01', 1)", "42703", "nope"),
        ("INSERT INTO ev (k) VALUES ('a')", "23502", "ts"),
        ("SELECT * FROM ev", "42809", "topic"),
        ("DROP MATERIALIZED VIEW nothing", "42P01", "nothing"),
        ("DROP TABLE ev", "42809", "not a table"),
    ];
    for (stmt, code, needle) in cases {
        let (c, m) = sql_error(h, stmt);
        assert_eq!(&c, code, "{stmt}: {m}");
        assert!(m.to_lowercase().contains(&needle.to_lowercase()), "{stmt}: message {m:?} should mention {needle:?}");
    }
    // A failing statement in a script stops it: what ran before stays, nothing after runs.
    let (ok, v) = sql(h, "INSERT INTO ev VALUES ('2026-01-01 00:00:00', 'a', 1); SELECT bogus FROM ev2; INSERT INTO ev VALUES ('2026-01-01 00:00:01', 'b', 2)");
    assert!(!ok);
    assert_eq!(v["results"].as_array().map(Vec::len), Some(1), "{v}");
    // Nothing half-created: no view, no changelog topic from the failed statements.
    let views = sql_rows(h, "SHOW MATERIALIZED VIEWS");
    assert!(views.is_empty(), "{views:?}");
    let topics: Vec<String> =
        sql_rows(h, "SHOW TOPICS").iter().map(|r| r[0].as_str().unwrap_or_default().to_string()).collect();
    assert_eq!(topics, vec!["ev", "raw_bytes"]);
    // A view's dependants are protected; IF EXISTS / IF NOT EXISTS are quiet.
    sql_rows(h, "CREATE MATERIALIZED VIEW counts AS SELECT k, count(*) AS n FROM ev GROUP BY k");
    let (c, m) = sql_error(h, "DROP TOPIC ev");
    assert_eq!(c, "2BP01", "{m}");
    let (c, _) = sql_error(h, "CREATE TOPIC counts (x INT)");
    assert_eq!(c, "42P07");
    sql_rows(h, "CREATE MATERIALIZED VIEW IF NOT EXISTS counts AS SELECT k FROM ev; DROP MATERIALIZED VIEW IF EXISTS nope; DROP TOPIC IF EXISTS nope");
    sql_rows(h, "DROP MATERIALIZED VIEW counts; DROP TOPIC ev");
    assert!(sql_rows(h, "SHOW MATERIALIZED VIEWS").is_empty());
}

#[test]
fn views_survive_a_restart_and_serve_lookups_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let mut server = Server::start(&data);
    sql_rows(
        server.http,
        "CREATE TOPIC m (ts TIMESTAMP NOT NULL, host TEXT NOT NULL, cpu DOUBLE PRECISION) WITH (partitions = 4, event_time = 'ts');
         CREATE MATERIALIZED VIEW per_host AS SELECT host, count(*) AS n, avg(cpu) AS cpu FROM m GROUP BY host;
         CREATE MATERIALIZED VIEW hot AS SELECT ts, host, cpu FROM m WHERE cpu > 0.9",
    );
    let mut lines = String::new();
    for i in 0..400i64 {
        let cpu = (i % 10) as f64 / 10.0 + 0.05;
        lines.push_str(&json!({"ts": 1_767_225_600_000i64 + i, "host": format!("h{}", i % 8), "cpu": cpu}).to_string());
        lines.push('\n');
    }
    let (st, body) = http(server.http, "POST", "/topics/m/records", lines.as_bytes());
    assert_eq!(st, 200, "{body}");
    let expect_hosts = || {
        let rows = sql_rows(server.http, "SELECT host, n FROM per_host ORDER BY host");
        rows.len() == 8 && rows.iter().all(|r| r[1] == json!(50))
    };
    assert!(eventually(Duration::from_secs(20), expect_hosts), "per_host never had 8 hosts x 50");
    let hot_before = sql_rows(server.http, "SELECT ts, host, cpu FROM hot ORDER BY ts");
    assert_eq!(hot_before.len(), 40);
    server.terminate(Duration::from_secs(30)).expect("clean stop");
    let server = Server::start(&data);
    assert!(eventually(Duration::from_secs(20), || {
        let rows = sql_rows(server.http, "SELECT host, n FROM per_host ORDER BY host");
        rows.len() == 8 && rows.iter().all(|r| r[1] == json!(50))
    }));
    assert!(eventually(Duration::from_secs(20), || sql_rows(server.http, "SELECT ts, host, cpu FROM hot ORDER BY ts")
        == hot_before));
    // Lookups over HTTP: a filter on the group key reads one shard.
    let (st, body) = http(server.http, "GET", "/views/per_host?host=h3", b"");
    assert_eq!(st, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["rows"][0]["n"], 50, "{v}");
    let (st, body) = http(server.http, "GET", "/views/hot?order=ts%20desc&limit=3", b"");
    assert_eq!(st, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["rows"].as_array().map(Vec::len), Some(3), "{v}");
    assert_eq!(v["rows"][0]["ts"], json!("2026-01-01T00:00:00.399Z"), "{v}");
    let (st, _) = http(server.http, "GET", "/views/nope", b"");
    assert_eq!(st, 404);
}

#[test]
fn a_views_changelog_is_a_table_for_kafka_consumers_and_other_views() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("d"));
    let h = server.http;
    sql_rows(
        h,
        "CREATE TOPIC orders (ts TIMESTAMP NOT NULL, customer TEXT NOT NULL, amount DOUBLE PRECISION) WITH (partitions = 2, event_time = 'ts');
         CREATE MATERIALIZED VIEW spend WITH (changelog = 'spend_changes') AS
           SELECT customer, sum(amount) AS total, count(*) AS orders FROM orders GROUP BY customer;
         INSERT INTO orders VALUES ('2026-02-01 00:00:00', 'ann', 10), ('2026-02-01 00:00:01', 'bob', 5), ('2026-02-01 00:00:02', 'ann', 2.5)",
    );
    // The changelog is a table keyed by the view's key.
    assert!(eventually(Duration::from_secs(20), || {
        sql_rows(h, "SHOW TABLES").iter().any(|r| r[0] == json!("spend_changes") && r[2] == json!("customer"))
    }));
    // Kafka consumers read the changes as JSON, keyed by the key columns.
    let mut last: std::collections::BTreeMap<String, Value> = Default::default();
    let found = eventually(Duration::from_secs(30), || {
        let (_, out, _) =
            kcat(&["-b", &server.kafka.to_string(), "-C", "-t", "spend_changes", "-e", "-q", "-f", "%k\t%s\n"], None);
        for line in out.lines() {
            if let Some((k, v)) = line.split_once('\t') {
                last.insert(k.to_string(), serde_json::from_str(v).unwrap_or(Value::Null));
            }
        }
        last.get("[\"ann\"]").is_some_and(|v| v["total"] == json!(12.5))
            && last.get("[\"bob\"]").is_some_and(|v| v["orders"] == json!(1))
    });
    assert!(found, "changelog as read by kcat: {last:?}");
    assert_eq!(last["[\"ann\"]"]["_op"], "upsert");
    // Another view enriches from it, as a table.
    sql_rows(
        h,
        "CREATE TOPIC visits (ts TIMESTAMP NOT NULL, customer TEXT NOT NULL) WITH (partitions = 2, event_time = 'ts');
         CREATE MATERIALIZED VIEW visits_by_spender AS
           SELECT v.customer, s.total, count(*) AS visits FROM visits v JOIN spend_changes s ON v.customer = s.customer
           GROUP BY v.customer, s.total;
         INSERT INTO visits VALUES ('2026-02-02 00:00:00', 'ann'), ('2026-02-02 00:00:01', 'bob'), ('2026-02-02 00:00:02', 'cat')",
    );
    assert!(
        eventually(Duration::from_secs(20), || {
            let rows = sql_rows(h, "SELECT customer, visits FROM visits_by_spender ORDER BY customer");
            rows == vec![vec![json!("ann"), json!(1)], vec![json!("bob"), json!(1)]]
        }),
        "{:?}",
        sql_rows(h, "SELECT * FROM visits_by_spender")
    );
}

/// A Postgres frontend connection spoken by hand: startup done, ready for messages.
fn pg_raw(server: &Server) -> std::net::TcpStream {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(server.pg).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut body = 196_608i32.to_be_bytes().to_vec();
    body.extend_from_slice(b"user\0test\0database\0sluice\0\0");
    let mut startup = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    startup.extend_from_slice(&body);
    s.write_all(&startup).unwrap();
    // Up to ReadyForQuery: 'Z', length 5, status.
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(6).any(|w| w == b"Z\0\0\0\x05I") {
        let n = s.read(&mut buf).expect("startup reply");
        assert!(n > 0, "closed during startup: {seen:?}");
        seen.extend_from_slice(&buf[..n]);
    }
    s
}

/// Hostile frontend messages that the protocol crate's decoders would index past their end
/// (a Parse or a Bind cut short) get a FATAL protocol-violation error on that connection;
/// the server keeps serving everyone else.
#[test]
fn truncated_pg_messages_get_an_error_and_the_server_keeps_serving() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("d"));
    for message in [&b"P\0\0\0\x06\0\0"[..], b"B\0\0\0\x06\0\0", b"P\0\0\0\x04", b"B\0\0\0\x08a\0b\0"] {
        let mut s = pg_raw(&server);
        s.write_all(message).unwrap();
        let mut reply = Vec::new();
        let _ = s.read_to_end(&mut reply);
        let text = String::from_utf8_lossy(&reply);
        assert!(reply.first() == Some(&b'E') && text.contains("08P01"), "{message:?}: {text:?}");
        let (ok, out, err) = psql(&server, &["-At", "-c", "SHOW TOPICS"]);
        assert!(ok, "the server still answers after {message:?}: {out} {err}");
    }
}

/// One frontend message: tag, length, body.
fn pg_message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn pg_parse(name: &str, sql: &str) -> Vec<u8> {
    pg_message(b'P', format!("{name}\0{sql}\0\0\0").as_bytes())
}

fn pg_bind(portal: &str, statement: &str) -> Vec<u8> {
    pg_message(b'B', format!("{portal}\0{statement}\0\0\0\0\0\0\0").as_bytes())
}

fn pg_execute(portal: &str) -> Vec<u8> {
    pg_message(b'E', format!("{portal}\0\0\0\0\0").as_bytes())
}

/// Sends `messages` and a Sync, and returns the backend messages up to ReadyForQuery as
/// (tag, body) pairs.
fn pg_exchange(s: &mut std::net::TcpStream, messages: &[Vec<u8>]) -> Vec<(u8, Vec<u8>)> {
    use std::io::{Read, Write};
    let mut out: Vec<u8> = messages.concat();
    out.extend_from_slice(&pg_message(b'S', b""));
    s.write_all(&out).unwrap();
    let mut replies = Vec::new();
    loop {
        let mut head = [0u8; 5];
        s.read_exact(&mut head).expect("a backend message");
        let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len - 4];
        s.read_exact(&mut body).unwrap();
        let ready = head[0] == b'Z';
        replies.push((head[0], body));
        if ready {
            return replies;
        }
    }
}

fn pg_errors(replies: &[(u8, Vec<u8>)]) -> Vec<String> {
    replies.iter().filter(|(t, _)| *t == b'E').map(|(_, b)| String::from_utf8_lossy(b).into_owned()).collect()
}

/// A client cannot make one connection hold unbounded prepared statements or portals:
/// past the cap it gets a 54000 error and the connection keeps working; portals close when
/// their transaction ends (at Sync outside BEGIN, at COMMIT), as in Postgres.
#[test]
fn a_pg_connection_holds_bounded_statements_and_portals() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("d"));
    let mut s = pg_raw(&server);

    let cap = 10_000;
    let parses: Vec<Vec<u8>> = (0..=cap).map(|i| pg_parse(&format!("s{i}"), "SELECT 1")).collect();
    let replies = pg_exchange(&mut s, &parses);
    assert_eq!(replies.iter().filter(|(t, _)| *t == b'1').count(), cap, "statements up to the cap are prepared");
    let errors = pg_errors(&replies);
    assert!(
        errors.len() == 1 && errors[0].contains("54000") && errors[0].contains("prepared statements"),
        "{errors:?}"
    );
    // The unnamed statement is not counted, and closing one makes room.
    let close = pg_message(b'C', b"Ss0\0");
    let replies = pg_exchange(&mut s, &[pg_parse("", "SELECT 2"), close, pg_parse("again", "SELECT 3")]);
    assert!(pg_errors(&replies).is_empty(), "{:?}", pg_errors(&replies));

    // Outside BEGIN, Sync ends the implicit transaction and closes its portals.
    let replies = pg_exchange(&mut s, &[pg_bind("kept", "again")]);
    assert!(pg_errors(&replies).is_empty(), "{:?}", pg_errors(&replies));
    let replies = pg_exchange(&mut s, &[pg_execute("kept")]);
    let errors = pg_errors(&replies);
    assert!(errors.len() == 1 && errors[0].contains("34000"), "the portal closed at Sync: {errors:?}");

    // Inside BEGIN portals persist across Syncs, up to the cap.
    let begin = pg_message(b'Q', b"BEGIN\0");
    {
        use std::io::{Read, Write};
        s.write_all(&begin).unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        while !seen.windows(6).any(|w| w == b"Z\0\0\0\x05T") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0);
            seen.extend_from_slice(&buf[..n]);
        }
    }
    let portals_cap = 1_000;
    let binds: Vec<Vec<u8>> = (0..=portals_cap).map(|i| pg_bind(&format!("p{i}"), "again")).collect();
    let replies = pg_exchange(&mut s, &binds);
    assert_eq!(replies.iter().filter(|(t, _)| *t == b'2').count(), portals_cap);
    let errors = pg_errors(&replies);
    assert!(errors.len() == 1 && errors[0].contains("54000") && errors[0].contains("portals"), "{errors:?}");
    // The failed Bind aborted the transaction; ROLLBACK ends it and closes the portals.
    let replies = pg_exchange(&mut s, &[pg_parse("", "ROLLBACK"), pg_bind("", ""), pg_execute("")]);
    assert!(pg_errors(&replies).is_empty(), "{:?}", pg_errors(&replies));
    let replies = pg_exchange(&mut s, &[pg_execute("p1")]);
    let errors = pg_errors(&replies);
    assert!(errors.len() == 1 && errors[0].contains("34000"), "portals closed at ROLLBACK: {errors:?}");
    // And the connection still answers queries.
    let replies = pg_exchange(&mut s, &[pg_bind("", "again"), pg_execute("")]);
    assert!(replies.iter().any(|(t, b)| *t == b'D' && b.ends_with(b"3")), "{replies:?}");
}
