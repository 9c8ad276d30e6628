#!/usr/bin/env python3
"""Flink peer for the tumbling-window benchmark: the same query Sluice runs, in Flink SQL.

Per key k and 1-second tumbling event-time window on ts: COUNT(*) and SUM(v), over a CSV
of `ts_ms,k,v` lines (epoch ms, no header). Streaming mode, event time, watermark with zero
lateness (the generator emits in ts order), parallelism 1, results into a blackhole sink.

Usage (the python that tools/install-flink.sh prints):
  target/peers/flink-venv/bin/python bench/peers/flink_tumble.py EVENTS.csv [--events N]
      [--check] [--dump OUT.csv] [--conf KEY=VALUE]...
Prints one JSON line at the end:
  {"events": N, "job_s": .., "submit_s": .., "net_s": .., "total_s": .., "events_per_s": ..,
   "rows": r, "count_sum": c, "v_sum": s}            (the last three only with --check)
  total_s:  from this script's start (before the JVM is launched) to the end of the job.
  job_s:    execute_sql() to wait() returning: planning, code generation, the local
            MiniCluster's start, and the job. events_per_s = events / job_s.
  submit_s: the part of job_s until execute_sql() returned (the job is submitted by then).
  net_s:    Flink's own net runtime of the job (JobExecutionResult.getNetRuntime), i.e.
            without planning and MiniCluster start: the fairest figure for throughput.
--check writes the results to a CSV filesystem sink in a temporary directory instead of the
blackhole (20k rows for 2M events: no measurable cost) and reads them back after the job.
"""
import time

T0 = time.perf_counter()  # before the pyflink import: total_s includes the JVM start

import argparse
import glob
import json
import os
import shutil
import sys
import tempfile
from datetime import datetime, timezone


def count_lines(path):
    # Counting newlines in 8 MiB binary chunks takes ~0.05 s for 2M events; no CSV parsing.
    n = 0
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            n += chunk.count(b"\n")
    return n


def read_results(out_dir, dump_path):
    """Sums the sink's part files; optionally writes k,window_start_ms,cnt,sum_v lines."""
    rows = count_sum = v_sum = 0
    dump = open(dump_path, "w") if dump_path else None
    # Finished part files only; in-progress ones are hidden files starting with '.'.
    for part in sorted(glob.glob(os.path.join(out_dir, "**", "part-*"), recursive=True)):
        with open(part) as f:
            for line in f:
                k, window_start, cnt, sum_v = line.rstrip("\n").split(",")
                rows += 1
                count_sum += int(cnt)
                v_sum += int(sum_v)
                if dump:
                    # The csv format writes TIMESTAMP(3) as "YYYY-MM-DD HH:MM:SS[.fff]", here UTC.
                    ws = datetime.fromisoformat(window_start.strip('"')).replace(tzinfo=timezone.utc)
                    dump.write(f"{k},{int(ws.timestamp() * 1000)},{cnt},{sum_v}\n")
    if dump:
        dump.close()
    return rows, count_sum, v_sum


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("events_csv")
    ap.add_argument("--events", type=int, help="number of events (default: count the lines)")
    ap.add_argument("--check", action="store_true",
                    help="write results to a CSV sink and report rows, count_sum and v_sum")
    ap.add_argument("--dump", metavar="OUT.csv",
                    help="with --check: also write k,window_start_ms,cnt,sum_v lines here")
    ap.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                    help="extra Flink/table option for experiments, may repeat")
    args = ap.parse_args()

    path = os.path.abspath(args.events_csv)
    if not os.path.isfile(path):
        sys.exit(f"flink_tumble: no such file: {path}")
    events = args.events if args.events is not None else count_lines(path)

    # Heap of the gateway JVM, which also hosts the local MiniCluster that runs the job;
    # fixed so GC sizing is the same on every run. A JVM_ARGS set by the caller wins.
    os.environ.setdefault("JVM_ARGS", "-Xms4g -Xmx4g")

    from pyflink.table import EnvironmentSettings, TableEnvironment

    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    conf = t_env.get_config()
    # Otherwise Flink's defaults, as measured on 2M events (2 cores): the window TVF
    # aggregate buffers per slice by itself, so table.exec.mini-batch.* changed nothing; and
    # the default two-phase plan (local window agg before the hash exchange) beat ONE_PHASE,
    # which ships every event through the exchange even at parallelism 1.
    settings = {
        # One task per operator, like Sluice's single pipeline; no checkpoints are configured.
        "parallelism.default": "1",
        # Chained operators hand records over without copying them.
        "pipeline.object-reuse": "true",
        # UTC so that 1 s windows start on epoch-second boundaries, as the reference computes.
        "table.local-time-zone": "UTC",
    }
    for kv in args.conf:
        key, _, value = kv.partition("=")
        settings[key] = value
    for key, value in settings.items():
        conf.set(key, value)

    # TIMESTAMP_LTZ(3) computed from epoch ms; watermark with zero lateness (input is in order).
    t_env.execute_sql(f"""
        CREATE TABLE events (
            ts_ms BIGINT,
            k BIGINT,
            v BIGINT,
            ts AS TO_TIMESTAMP_LTZ(ts_ms, 3),
            WATERMARK FOR ts AS ts - INTERVAL '0' SECOND
        ) WITH (
            'connector' = 'filesystem',
            'path' = 'file://{path}',
            'format' = 'csv'
        )""")

    out_dir = tempfile.mkdtemp(prefix="flink-tumble-") if args.check else None
    sink_with = (f"'connector' = 'filesystem', 'path' = 'file://{out_dir}', 'format' = 'csv'"
                 if args.check else "'connector' = 'blackhole'")
    t_env.execute_sql(f"""
        CREATE TABLE sink (
            k BIGINT,
            window_start TIMESTAMP(3),
            cnt BIGINT,
            sum_v BIGINT
        ) WITH ({sink_with})""")

    t_job = time.perf_counter()
    result = t_env.execute_sql("""
        INSERT INTO sink
        SELECT k, window_start, COUNT(*) AS cnt, SUM(v) AS sum_v
        FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '1' SECOND))
        GROUP BY k, window_start, window_end""")
    t_submitted = time.perf_counter()
    result.wait()
    t_end = time.perf_counter()
    job_result = result.get_job_client().get_job_execution_result().result()

    out = {
        "events": events,
        "job_s": round(t_end - t_job, 3),
        "submit_s": round(t_submitted - t_job, 3),
        "net_s": round(job_result.get_net_runtime() / 1000.0, 3),
        "total_s": round(t_end - T0, 3),
    }
    out["events_per_s"] = round(events / out["job_s"]) if out["job_s"] > 0 else None
    if args.check:
        rows, count_sum, v_sum = read_results(out_dir, args.dump)
        shutil.rmtree(out_dir, ignore_errors=True)
        out.update(rows=rows, count_sum=count_sum, v_sum=v_sum)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
