"""The batch-layer yardstick for the rebuild benchmark: DuckDB computing the same
tumbling count+sum per key from a Parquet export of the same events.

Usage: duckdb_tumble.py N PARQUET [--threads T]
Writes PARQUET first if it is missing (the events generated with the benchmark's formula:
ts = T0 + i // 100 ms, k = i * 7919 % 1000, v = i % 100), then times the aggregate alone
and prints one JSON line: {"events": N, "seconds": s, "rows": r, "count_sum": c}.
"""
import argparse
import json
import os
import time

import duckdb

T0 = 1_767_225_600_000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("events", type=int)
    ap.add_argument("parquet")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    con = duckdb.connect()
    con.execute(f"SET threads = {a.threads}")
    if not os.path.exists(a.parquet):
        tmp = a.parquet + ".tmp"
        con.execute(
            f"COPY (SELECT {T0} + i // 100 AS ts, (i * 7919) % 1000 AS k, i % 100 AS v FROM range({a.events}) t(i)) "
            f"TO '{tmp}' (FORMAT parquet)"
        )
        os.replace(tmp, a.parquet)
    # The same aggregate the view computes: per key and 1-second window of event time.
    # Materialized, so no column of the result can be optimized away.
    started = time.perf_counter()
    con.execute(
        f"CREATE TEMP TABLE result AS SELECT k, ts - (ts % 1000) AS window_start, count(*) AS n, sum(v) AS s "
        f"FROM read_parquet('{a.parquet}') GROUP BY k, window_start"
    )
    seconds = time.perf_counter() - started
    rows, count_sum = con.execute("SELECT count(*), sum(n) FROM result").fetchone()
    print(json.dumps({"events": a.events, "seconds": seconds, "rows": rows, "count_sum": int(count_sum)}))


if __name__ == "__main__":
    main()
