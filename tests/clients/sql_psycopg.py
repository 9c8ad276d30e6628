"""psycopg 3 against sluice's pg listener: DDL, inserts with parameters (binary and text),
prepared statements (psycopg prepares after a few executions), executemany (pipeline),
transactions, errors with SQLSTATEs, and reads of views (scans and lookups).

usage: sql_psycopg.py HOST:PORT
"""
import datetime
import sys
import time

import psycopg

from common import expect, fail, ok

host, port = sys.argv[1].rsplit(":", 1)
conninfo = f"host={host} port={port} user=test dbname=sluice connect_timeout=10"


def wait_for(cur, sql, params, want, timeout=20):
    deadline = time.time() + timeout
    got = None
    while time.time() < deadline:
        cur.execute(sql, params)
        got = cur.fetchall()
        if got == want:
            return got
        time.sleep(0.05)
    fail(f"{sql} {params}: want {want}, got {got}")


with psycopg.connect(conninfo, autocommit=True) as conn:
    cur = conn.cursor()
    cur.execute(
        "CREATE TOPIC ticks (ts TIMESTAMP NOT NULL, sym TEXT NOT NULL, px DOUBLE PRECISION, qty BIGINT, venue INT, live BOOLEAN, tag BYTEA) "
        "WITH (partitions = 3, event_time = 'ts', durability = 'interval:5')"
    )
    cur.execute(
        "CREATE MATERIALIZED VIEW per_sym AS SELECT sym, count(*) AS n, sum(qty) AS q, max(px) AS hi, "
        "min(ts) AS first_ts FROM ticks GROUP BY sym"
    )
    cur.execute(
        "CREATE MATERIALIZED VIEW per_sec AS SELECT sym, window_start, count(*) AS n FROM "
        "TUMBLE(ticks, ts, INTERVAL '1' SECOND) GROUP BY sym, window_start"
    )
    base = datetime.datetime(2026, 3, 1, 9, 30, 0)
    # One row at a time with binary parameters (int, float, bool, bytes, datetime)...
    for i in range(12):
        cur.execute(
            "INSERT INTO ticks VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (base + datetime.timedelta(milliseconds=250 * i), "AAA" if i % 2 else "BBB", 10.0 + i, i, 7, i % 3 == 0, b"\x00\xff"),
        )
    # ...many at once (pipeline mode)...
    cur.executemany(
        "INSERT INTO ticks (ts, sym, px, qty) VALUES (%s, %s, %s, %s)",
        [(base + datetime.timedelta(seconds=5, milliseconds=i), "CCC", 1.5, 1) for i in range(50)],
    )
    # ...and text-format parameters.
    cur.execute("INSERT INTO ticks (ts, sym, qty) VALUES (%t, %t, %t)", ("2026-03-01 09:30:09", "DDD", "42"))
    wait_for(cur, "SELECT sym, n, q FROM per_sym ORDER BY sym", None,
             [("AAA", 6, 36), ("BBB", 6, 30), ("CCC", 50, 50), ("DDD", 1, 42)])
    # Lookups with a parameter, enough times that psycopg prepares the statement.
    for _ in range(8):
        cur.execute("SELECT n, hi, first_ts FROM per_sym WHERE sym = %s", ("AAA",))
        row = cur.fetchone()
        expect(row == (6, 21.0, base + datetime.timedelta(milliseconds=250)), f"lookup: {row}")
    # Types come back as Python types.
    cur.execute("SELECT sym, window_start, n FROM per_sec WHERE sym = %s ORDER BY window_start", ("BBB",))
    rows = cur.fetchall()
    expect(rows == [("BBB", base, 2), ("BBB", base + datetime.timedelta(seconds=1), 2),
                    ("BBB", base + datetime.timedelta(seconds=2), 2)], f"per_sec: {rows}")
    expect(isinstance(rows[0][1], datetime.datetime), "TIMESTAMP comes back as datetime")
    # Binary results.
    with conn.cursor(binary=True) as bcur:
        bcur.execute("SELECT sym, n, hi, first_ts FROM per_sym WHERE sym = %s", ("BBB",))
        brow = bcur.fetchone()
        expect(brow == ("BBB", 6, 20.0, base), f"binary row: {brow}")
    # Binary parameters (%b) into an untyped placeholder: decoded as the described type.
    cur.execute("SELECT sym FROM per_sym WHERE n > %b ORDER BY n DESC, sym LIMIT 2", (5,))
    expect(cur.fetchall() == [("CCC",), ("AAA",)], "binary parameter")
    # Filters, order and limit over a scan.
    cur.execute("SELECT sym FROM per_sym WHERE n > %s ORDER BY n DESC, sym LIMIT 2", (5,))
    expect(cur.fetchall() == [("CCC",), ("AAA",)], "order/limit")
    cur.execute("SELECT count(*), sum(n) FROM per_sec")
    expect(cur.fetchone() == (8, 63), "aggregate over a view")
    # Errors carry SQLSTATEs and leave the session usable.
    for sql, state in [
        ("SELECT nope FROM per_sym", "42703"),
        ("SELECT * FROM missing", "42P01"),
        ("SELEC 1", "42601"),
        ("SELECT sym + 1 FROM per_sym", "42883"),
        ("INSERT INTO ticks (sym) VALUES ('x')", "23502"),
        ("CREATE MATERIALIZED VIEW per_sym AS SELECT sym FROM ticks", "42P07"),
        ("DROP TOPIC ticks", "2BP01"),
    ]:
        try:
            cur.execute(sql)
            fail(f"{sql} should fail")
        except psycopg.Error as e:
            expect(e.sqlstate == state, f"{sql}: sqlstate {e.sqlstate}, want {state} ({e})")
    cur.execute("SELECT 1")
    expect(cur.fetchone() == (1,), "session usable after errors")

# Transactions (psycopg's default: BEGIN before the first statement, COMMIT at the end).
with psycopg.connect(conninfo) as conn:
    cur = conn.cursor()
    cur.execute("INSERT INTO ticks (ts, sym, qty) VALUES (%s, %s, %s)", (base, "EEE", 1))
    expect(conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS, "in a transaction")
    conn.commit()
    try:
        cur.execute("SELECT broken FROM per_sym")
    except psycopg.Error:
        pass
    expect(conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR, "failed transaction")
    conn.rollback()
    cur.execute("SHOW MATERIALIZED VIEWS")
    names = sorted(r[0] for r in cur.fetchall())
    expect(names == ["per_sec", "per_sym"], f"views: {names}")
    wait_for(cur, "SELECT n FROM per_sym WHERE sym = 'EEE'", None, [(1,)])

ok(views=2)
