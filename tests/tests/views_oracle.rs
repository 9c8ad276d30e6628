//! The correctness oracle: seeded random events (out of order, some late, many keys,
//! several partitions, two shards) through every window kind and aggregate, a
//! stream–table join and an interval join, compared with an independent reference
//! computation written here from the definitions, with zero mismatches allowed. Then the
//! same views built again by replay from offset 0 must equal the live ones row for row.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use sluice::sql::types::Datum;
use sluice_tests::{eventually, http, sql_rows, Server};

const T0: i64 = 1_767_225_600_000;
const LATENESS_MS: i64 = 2_000;
const EV_PARTITIONS: u32 = 4;
const EV2_PARTITIONS: u32 = 3;
const KEYS: usize = 40;
/// Keys k0..k(DIM_KEYS-1) are in the dimension table; the rest are not.
const DIM_KEYS: usize = 35;

#[derive(Debug, Clone)]
struct Ev {
    partition: u32,
    offset: u64,
    ts: i64,
    k: String,
    v: Option<i64>,
    x: f64,
    /// Behind its partition's watermark when it arrived.
    late: bool,
}

#[derive(Debug, Clone)]
struct Ev2 {
    ts: i64,
    k: String,
    w: i64,
    late: bool,
}

fn ts_json(ms: i64) -> Value {
    Datum::Timestamp(ms).to_json()
}

/// Marks lateness as each partition's clock sees it: behind (newest so far − lateness).
fn mark_late(events: &mut [(u32, i64, &mut bool)]) {
    let mut newest: BTreeMap<u32, i64> = BTreeMap::new();
    for (p, ts, late) in events.iter_mut() {
        let max = newest.entry(*p).or_insert(i64::MIN);
        **late = *max != i64::MIN && *ts < *max - LATENESS_MS;
        *max = (*max).max(*ts);
    }
}

fn generate(seed: u64, n: usize, n2: usize) -> (Vec<Ev>, Vec<(u32, Ev2)>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut offsets = [0u64; EV_PARTITIONS as usize];
    let mut evs = Vec::with_capacity(n);
    for i in 0..n {
        let clock = T0 + i as i64 * 20;
        let jitter = if rng.gen_bool(0.15) { -rng.gen_range(1_000..6_000) } else { rng.gen_range(-300..300) };
        let p = rng.gen_range(0..EV_PARTITIONS);
        // A skewed key distribution: a few hot keys, a long tail.
        let k = if rng.gen_bool(0.3) { rng.gen_range(0..4) } else { rng.gen_range(0..KEYS) };
        evs.push(Ev {
            partition: p,
            offset: offsets[p as usize],
            ts: clock + jitter,
            k: format!("k{k}"),
            v: if rng.gen_bool(0.1) { None } else { Some(rng.gen_range(0..100)) },
            x: rng.gen_range(1..1000) as f64 / 1000.0,
            late: false,
        });
        offsets[p as usize] += 1;
    }
    let mut lates: Vec<bool> = vec![false; n];
    {
        let mut view: Vec<(u32, i64, &mut bool)> =
            evs.iter().zip(lates.iter_mut()).map(|(e, l)| (e.partition, e.ts, l)).collect();
        mark_late(&mut view);
    }
    for (e, l) in evs.iter_mut().zip(lates) {
        e.late = l;
    }
    let mut ev2 = Vec::with_capacity(n2);
    for i in 0..n2 {
        let clock = T0 + i as i64 * (20 * n as i64 / n2 as i64);
        let jitter = if rng.gen_bool(0.1) { -rng.gen_range(1_000..6_000) } else { rng.gen_range(-300..300) };
        ev2.push((
            rng.gen_range(0..EV2_PARTITIONS),
            Ev2 { ts: clock + jitter, k: format!("k{}", rng.gen_range(0..KEYS)), w: rng.gen_range(1..10), late: false },
        ));
    }
    let mut lates: Vec<bool> = vec![false; n2];
    {
        let mut view: Vec<(u32, i64, &mut bool)> =
            ev2.iter().zip(lates.iter_mut()).map(|((p, e), l)| (*p, e.ts, l)).collect();
        mark_late(&mut view);
    }
    for ((_, e), l) in ev2.iter_mut().zip(lates) {
        e.late = l;
    }
    (evs, ev2)
}

fn grp_of(k: &str) -> Option<String> {
    let i: usize = k[1..].parse().ok()?;
    (i < DIM_KEYS).then(|| format!("g{}", i % 5))
}

fn window(ts: i64, size: i64) -> i64 {
    ts.div_euclid(size) * size
}

/// The reference: each view's rows, sorted, as JSON values.
fn reference(evs: &[Ev], ev2: &[(u32, Ev2)]) -> BTreeMap<&'static str, Vec<Vec<Value>>> {
    let mut out = BTreeMap::new();
    let on_time: Vec<&Ev> = evs.iter().filter(|e| !e.late).collect();
    // tumble_all
    {
        let mut g: BTreeMap<(String, i64), Vec<&Ev>> = BTreeMap::new();
        for e in &on_time {
            g.entry((e.k.clone(), window(e.ts, 5_000))).or_default().push(e);
        }
        let rows = g
            .into_iter()
            .map(|((k, ws), es)| {
                let vs: Vec<i64> = es.iter().filter_map(|e| e.v).collect();
                let by_pos = |e: &&&Ev| (e.ts, e.partition, e.offset);
                let with_v: Vec<&&Ev> = es.iter().filter(|e| e.v.is_some()).collect();
                let first = with_v.iter().min_by_key(|e| by_pos(e)).and_then(|e| e.v);
                let last = with_v.iter().max_by_key(|e| by_pos(e)).and_then(|e| e.v);
                let distinct: BTreeSet<i64> = vs.iter().copied().collect();
                vec![
                    json!(k),
                    ts_json(ws),
                    ts_json(ws + 5_000),
                    json!(es.len()),
                    if vs.is_empty() { Value::Null } else { json!(vs.iter().sum::<i64>()) },
                    vs.iter().min().map_or(Value::Null, |v| json!(v)),
                    vs.iter().max().map_or(Value::Null, |v| json!(v)),
                    json!(es.iter().map(|e| e.x).sum::<f64>() / es.len() as f64),
                    first.map_or(Value::Null, |v| json!(v)),
                    last.map_or(Value::Null, |v| json!(v)),
                    json!(distinct.len()),
                    json!(vs.len()),
                ]
            })
            .collect();
        out.insert("tumble_all", rows);
    }
    // hop: 2 s slide, 6 s size
    {
        let mut g: BTreeMap<(String, i64), (u64, i64)> = BTreeMap::new();
        for e in &on_time {
            let last = window(e.ts, 2_000);
            for start in [last - 4_000, last - 2_000, last] {
                let c = g.entry((e.k.clone(), start)).or_default();
                c.0 += 1;
                c.1 += e.v.unwrap_or(0);
            }
        }
        out.insert(
            "hop",
            g.into_iter()
                .map(|((k, ws), (n, s))| vec![json!(k), ts_json(ws), ts_json(ws + 6_000), json!(n), json!(s)])
                .collect(),
        );
    }
    // by_value: hop windows by the (nullable) integer v
    {
        let mut g: BTreeMap<(Option<i64>, i64), (u64, f64)> = BTreeMap::new();
        for e in &on_time {
            let last = window(e.ts, 2_000);
            for start in [last - 4_000, last - 2_000, last] {
                let c = g.entry((e.v, start)).or_default();
                c.0 += 1;
                c.1 += e.x;
            }
        }
        out.insert(
            "by_value",
            g.into_iter()
                .map(|((v, ws), (n, xs))| {
                    let (s, cv) = match v {
                        Some(v) => (json!(v * n as i64), json!(n)),
                        None => (Value::Null, json!(0)),
                    };
                    let v = v.map_or(Value::Null, |v| json!(v));
                    vec![
                        v.clone(),
                        ts_json(ws),
                        ts_json(ws + 6_000),
                        json!(n),
                        s,
                        v.clone(),
                        v,
                        json!(xs / n as f64),
                        cv,
                    ]
                })
                .collect(),
        );
    }
    // sess: 1.5 s gap
    {
        let mut by_key: BTreeMap<String, Vec<&Ev>> = BTreeMap::new();
        for e in &on_time {
            by_key.entry(e.k.clone()).or_default().push(e);
        }
        let mut rows = Vec::new();
        for (k, mut es) in by_key {
            es.sort_by_key(|e| e.ts);
            let mut i = 0;
            while i < es.len() {
                let start = es[i].ts;
                let mut end = es[i].ts + 1_500;
                let mut n = 0;
                let mut mx: Option<i64> = None;
                while i < es.len() && es[i].ts < end {
                    end = end.max(es[i].ts + 1_500);
                    n += 1;
                    mx = match (mx, es[i].v) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        (a, b) => a.or(b),
                    };
                    i += 1;
                }
                rows.push(vec![json!(k), ts_json(start), ts_json(end), json!(n), mx.map_or(Value::Null, |v| json!(v))]);
            }
        }
        out.insert("sess", rows);
    }
    // global_approx: every event (no window: lateness does not apply)
    {
        let mut g: BTreeMap<String, Vec<&Ev>> = BTreeMap::new();
        for e in evs {
            g.entry(e.k.clone()).or_default().push(e);
        }
        out.insert(
            "global_approx",
            g.into_iter()
                .map(|(k, es)| {
                    let distinct: BTreeSet<i64> = es.iter().filter_map(|e| e.v).collect();
                    let mut xs: Vec<f64> = es.iter().map(|e| e.x).collect();
                    xs.sort_by(f64::total_cmp);
                    let rank = 0.9 * (xs.len() - 1) as f64;
                    vec![
                        json!(k),
                        json!(es.len()),
                        json!(distinct.len()),
                        json!([xs[rank.floor() as usize], xs[rank.ceil() as usize]]),
                    ]
                })
                .collect(),
        );
    }
    // filtered: every event passing the filter
    {
        let mut rows: Vec<Vec<Value>> = evs
            .iter()
            .filter(|e| e.v.is_some_and(|v| v % 7 == 0) && e.x > 0.5)
            .map(|e| vec![ts_json(e.ts), json!(e.k), json!(e.v.unwrap_or(0) * 2), json!(e.k.to_uppercase())])
            .collect();
        rows.sort_by_key(|r| r.iter().map(Value::to_string).collect::<Vec<_>>());
        out.insert("filtered", rows);
    }
    // enriched: tumbling 10 s by the table's group
    {
        let mut g: BTreeMap<(String, i64), (u64, i64)> = BTreeMap::new();
        for e in &on_time {
            if let Some(grp) = grp_of(&e.k) {
                let c = g.entry((grp, window(e.ts, 10_000))).or_default();
                c.0 += 1;
                c.1 += e.v.unwrap_or(0);
            }
        }
        out.insert(
            "enriched",
            g.into_iter().map(|((grp, ws), (n, s))| vec![json!(grp), ts_json(ws), json!(n), json!(s)]).collect(),
        );
    }
    // joined: interval join (b.ts within [a.ts - 1 s, a.ts + 2 s]) of on-time rows
    {
        let mut g: BTreeMap<String, (u64, i64)> = BTreeMap::new();
        for a in &on_time {
            for (_, b) in ev2.iter().filter(|(_, b)| !b.late && b.k == a.k) {
                if b.ts >= a.ts - 1_000 && b.ts <= a.ts + 2_000 {
                    let c = g.entry(a.k.clone()).or_default();
                    c.0 += 1;
                    c.1 += b.w;
                }
            }
        }
        out.insert("joined", g.into_iter().map(|(k, (n, s))| vec![json!(k), json!(n), json!(s)]).collect());
    }
    // having_case: 5 s windows with more than 3 events
    {
        let mut g: BTreeMap<(String, i64), (u64, i64)> = BTreeMap::new();
        for e in &on_time {
            let c = g.entry((e.k.clone(), window(e.ts, 5_000))).or_default();
            c.0 += 1;
            c.1 += i64::from(e.v.is_some_and(|v| v > 50));
        }
        out.insert(
            "having_case",
            g.into_iter()
                .filter(|(_, (n, _))| *n > 3)
                .map(|((k, ws), (n, big))| vec![json!(k), ts_json(ws), json!(n), json!(big)])
                .collect(),
        );
    }
    // sided: on-time events (the late ones go to a side topic)
    {
        let mut g: BTreeMap<(String, i64), u64> = BTreeMap::new();
        for e in &on_time {
            *g.entry((e.k.clone(), window(e.ts, 5_000))).or_default() += 1;
        }
        out.insert("sided", g.into_iter().map(|((k, ws), n)| vec![json!(k), ts_json(ws), json!(n)]).collect());
    }
    // corrected: late = 'update' counts every event
    {
        let mut g: BTreeMap<(String, i64), u64> = BTreeMap::new();
        for e in evs {
            *g.entry((e.k.clone(), window(e.ts, 5_000))).or_default() += 1;
        }
        out.insert("corrected", g.into_iter().map(|((k, ws), n)| vec![json!(k), ts_json(ws), json!(n)]).collect());
    }
    out
}

/// (name, select list and the rest, ORDER BY for reading it back).
const VIEWS: &[(&str, &str, &str, &str)] = &[
    (
        "tumble_all",
        "",
        "SELECT k, window_start, window_end, count(*) AS n, sum(v) AS s, min(v) AS mn, max(v) AS mx, avg(x) AS a, \
         first_value(v) AS f, last_value(v) AS l, count(DISTINCT v) AS d, count(v) AS cv \
         FROM TUMBLE(ev, ts, INTERVAL '5' SECOND) GROUP BY k, window_start, window_end",
        "k, window_start",
    ),
    (
        "hop",
        "",
        "SELECT k, window_start, window_end, count(*) AS n, coalesce(sum(v), 0) AS s \
         FROM HOP(ev, ts, INTERVAL '2' SECOND, INTERVAL '6' SECOND) GROUP BY k, window_start, window_end",
        "k, window_start",
    ),
    (
        // Integer keys (NULL for a tenth of the events): groups found by the keys' values
        // in place, NULL keys by their bytes.
        "by_value",
        "",
        "SELECT v, window_start, window_end, count(*) AS n, sum(v) AS s, min(v) AS mn, max(v) AS mx, avg(x) AS a, \
         count(v) AS cv FROM HOP(ev, ts, INTERVAL '2' SECOND, INTERVAL '6' SECOND) GROUP BY v, window_start, window_end",
        "v NULLS FIRST, window_start",
    ),
    (
        "sess",
        "",
        "SELECT k, window_start, window_end, count(*) AS n, max(v) AS mx FROM SESSION(ev, ts, INTERVAL '1.5' SECOND) \
         GROUP BY k, window_start, window_end",
        "k, window_start",
    ),
    (
        "global_approx",
        "",
        "SELECT k, count(*) AS n, approx_count_distinct(v) AS acd, approx_percentile(x, 0.9) AS p90 FROM ev GROUP BY k",
        "k",
    ),
    ("filtered", "", "SELECT ts, k, v * 2 AS v2, upper(k) AS uk FROM ev WHERE v % 7 = 0 AND x > 0.5", "ts, k, v2"),
    (
        "enriched",
        "",
        "SELECT d.grp, window_start, count(*) AS n, coalesce(sum(e.v), 0) AS s FROM TUMBLE(ev, ts, INTERVAL '10' SECOND) AS e \
         JOIN dim d ON e.k = d.k GROUP BY d.grp, window_start",
        "grp, window_start",
    ),
    (
        "joined",
        "",
        "SELECT a.k, count(*) AS n, sum(b.w) AS sw FROM ev a JOIN ev2 b \
         ON a.k = b.k AND b.ts BETWEEN a.ts - INTERVAL '1' SECOND AND a.ts + INTERVAL '2' SECOND GROUP BY a.k",
        "k",
    ),
    (
        "having_case",
        "",
        "SELECT k, window_start, count(*) AS n, sum(CASE WHEN v > 50 THEN 1 ELSE 0 END) AS big \
         FROM TUMBLE(ev, ts, INTERVAL '5' SECOND) GROUP BY k, window_start HAVING count(*) > 3",
        "k, window_start",
    ),
    (
        "sided",
        "late = 'side:late_ev', ",
        "SELECT k, window_start, count(*) AS n FROM TUMBLE(ev, ts, INTERVAL '5' SECOND) GROUP BY k, window_start",
        "k, window_start",
    ),
    (
        "corrected",
        "late = 'update', ",
        "SELECT k, window_start, count(*) AS n FROM TUMBLE(ev, ts, INTERVAL '5' SECOND) GROUP BY k, window_start",
        "k, window_start",
    ),
];

fn create_views(h: std::net::SocketAddr, suffix: &str) {
    for (name, opts, body, _) in VIEWS {
        sql_rows(h, &format!("CREATE MATERIALIZED VIEW {name}{suffix} WITH ({opts}idle_timeout = '1 hour') AS {body}"));
    }
}

fn read(h: std::net::SocketAddr, name: &str, order: &str) -> Vec<Vec<Value>> {
    sql_rows(h, &format!("SELECT * FROM {name} ORDER BY {order}"))
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()).max(1e-9)
}

/// Mismatches between a view's rows and the reference (approximate aggregates within
/// their documented error; floats to rounding).
fn mismatches(name: &str, got: &[Vec<Value>], want: &[Vec<Value>]) -> Vec<String> {
    let mut out = Vec::new();
    if got.len() != want.len() {
        out.push(format!("{name}: {} rows, want {}", got.len(), want.len()));
    }
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let ok = g.len() == w.len()
            && g.iter().zip(w).enumerate().all(|(c, (a, b))| match (name, c, a, b) {
                ("global_approx", 2, a, b) => close(a.as_f64().unwrap_or(-1.0), b.as_f64().unwrap_or(-2.0), 0.05),
                ("global_approx", 3, a, Value::Array(range)) => {
                    let v = a.as_f64().unwrap_or(-1.0);
                    let (lo, hi) = (range[0].as_f64().unwrap_or(0.0), range[1].as_f64().unwrap_or(0.0));
                    v >= lo * 0.98 && v <= hi * 1.02
                }
                (_, _, Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
                    close(x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(1.0), 1e-9)
                }
                _ => a == b,
            });
        if !ok {
            out.push(format!("{name} row {i}: got {g:?}, want {w:?}"));
        }
    }
    out
}

fn post_ndjson(h: std::net::SocketAddr, topic: &str, partition: u32, lines: &str) {
    let (st, body) = http(h, "POST", &format!("/topics/{topic}/records?partition={partition}"), lines.as_bytes());
    assert_eq!(st, 200, "{body}");
}

#[test]
fn views_match_the_reference_live_and_by_replay() {
    // SLUICE_ORACLE_SEED=n runs one seed (to reproduce a failure); CI runs three.
    let seeds: Vec<u64> = match std::env::var("SLUICE_ORACLE_SEED").ok().and_then(|s| s.parse().ok()) {
        Some(s) => vec![s],
        None => vec![20261201, 7, 1_000_003],
    };
    for seed in seeds {
        run_seed(seed);
    }
}

fn run_seed(seed: u64) {
    let (evs, ev2) = generate(seed, 6_000, 2_000);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("d"));
    let h = server.http;
    sql_rows(
        h,
        &format!(
            "CREATE TOPIC ev (ts TIMESTAMP NOT NULL, k TEXT NOT NULL, v BIGINT, x DOUBLE PRECISION) \
               WITH (partitions = {EV_PARTITIONS}, event_time = 'ts', lateness = '2 seconds', durability = 'none');
             CREATE TOPIC ev2 (ts TIMESTAMP NOT NULL, k TEXT NOT NULL, w BIGINT) \
               WITH (partitions = {EV2_PARTITIONS}, event_time = 'ts', lateness = '2 seconds', durability = 'none');
             CREATE TABLE dim (k TEXT, grp TEXT, PRIMARY KEY (k)) WITH (partitions = 2);"
        ),
    );
    let setup = std::time::Instant::now();
    let dim: Vec<String> = (0..DIM_KEYS).map(|i| format!("('k{i}', 'g{}')", i % 5)).collect();
    sql_rows(h, &format!("INSERT INTO dim VALUES {}", dim.join(", ")));
    create_views(h, "");
    // Live: the events arrive in chunks while the views run; each partition in order.
    let chunks = 12;
    let per = evs.len().div_ceil(chunks);
    let per2 = ev2.len().div_ceil(chunks);
    for c in 0..chunks {
        for p in 0..EV_PARTITIONS {
            let lines: String = evs[c * per..((c + 1) * per).min(evs.len())]
                .iter()
                .filter(|e| e.partition == p)
                .map(|e| json!({"ts": e.ts, "k": e.k, "v": e.v, "x": e.x}).to_string() + "\n")
                .collect();
            if !lines.is_empty() {
                post_ndjson(h, "ev", p, &lines);
            }
        }
        for p in 0..EV2_PARTITIONS {
            let lines: String = ev2[c * per2..((c + 1) * per2).min(ev2.len())]
                .iter()
                .filter(|(q, _)| *q == p)
                .map(|(_, e)| json!({"ts": e.ts, "k": e.k, "w": e.w}).to_string() + "\n")
                .collect();
            if !lines.is_empty() {
                post_ndjson(h, "ev2", p, &lines);
            }
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    eprintln!("produced in {:?}", setup.elapsed());
    let want = reference(&evs, &ev2);
    let late = evs.iter().filter(|e| e.late).count();
    assert!(late > 100 && late < evs.len() / 4, "the data has some late events ({late})");
    let check = |suffix: &str| -> Vec<String> {
        VIEWS
            .iter()
            .flat_map(|(name, _, _, order)| mismatches(name, &read(h, &format!("{name}{suffix}"), order), &want[name]))
            .collect()
    };
    let started = std::time::Instant::now();
    let mut last = Vec::new();
    let live_ok = eventually(Duration::from_secs(90), || {
        last = check("");
        last.is_empty()
    });
    assert!(
        live_ok,
        "{} mismatches (seed {seed}), first ones:\n{}",
        last.len(),
        last.iter().take(12).cloned().collect::<Vec<_>>().join("\n")
    );
    eprintln!("live views matched the reference after {:?}", started.elapsed());
    // Every late event went to the side topic, once, as JSON.
    let mut side = Vec::new();
    let all_there = eventually(Duration::from_secs(30), || {
        let (st, body) = http(h, "GET", "/topics/late_ev/records?partition=0&max=100000", b"");
        side = body.lines().map(|l| serde_json::from_str::<Value>(l).unwrap_or_default()).collect();
        st == 200 && side.len() == late
    });
    assert!(all_there, "side topic has {} records, want {late}", side.len());
    let mut side_ts: Vec<i64> = side
        .iter()
        .filter_map(|r| serde_json::from_str::<Value>(r["value"].as_str().unwrap_or("{}")).ok())
        .filter_map(|v| v["ts"].as_str().and_then(sluice::sql::types::parse_timestamp))
        .collect();
    let mut late_ts: Vec<i64> = evs.iter().filter(|e| e.late).map(|e| e.ts).collect();
    side_ts.sort_unstable();
    late_ts.sort_unstable();
    assert_eq!(side_ts, late_ts, "the side topic holds exactly the late events");
    // Replay: the same views built from offset 0 equal the live ones, row for row.
    let started = std::time::Instant::now();
    create_views(h, "_replay");
    let mut diff = Vec::new();
    let replay_ok = eventually(Duration::from_secs(90), || {
        diff = VIEWS
            .iter()
            .flat_map(|(name, _, _, order)| {
                let live = read(h, name, order);
                let replay = read(h, &format!("{name}_replay"), order);
                mismatches(&format!("{name}_replay"), &replay, &live)
            })
            .collect();
        diff.is_empty()
    });
    eprintln!("replayed views matched after {:?}", started.elapsed());
    assert!(
        replay_ok,
        "replay differs from live (seed {seed}):\n{}",
        diff.iter().take(12).cloned().collect::<Vec<_>>().join("\n")
    );
}
