"""DuckDB's side of `cargo xtask bench-job`, and the comparison of the results.

  query JOB_DIR OUT_CSV  per-step job energy from the job's hive-partitioned Parquet files
                         (JOB_DIR/node=<node>/<run>/gpu|steps/*.parquet), the way a DuckDB
                         user would write it: per node and GPU, the trapezoidal integral
                         of the instant power; each node's span of a step (its ranks'
                         first begin to last end) interpolated through two ASOF joins;
                         summed over nodes and GPUs per step. Prints JSON.
  compare OURS DUCK TRUTH
                         per-step relative error of each against the generator's truth.
"""
import json
import sys
import time

import duckdb


def query(job, out_csv):
    t0 = time.perf_counter()
    con = duckdb.connect()
    con.execute(f"""
        CREATE TEMP TABLE cum AS
        WITH p AS (
            SELECT node, gpu, ts_ns, power_instant_mw / 1000.0 AS w
            FROM read_parquet('{job}/node=*/*/gpu/*.parquet', hive_partitioning = true)
            WHERE power_instant_mw IS NOT NULL
        ), d AS (
            SELECT node, gpu, ts_ns, w,
                   coalesce((w + lag(w) OVER g) / 2 * (ts_ns - lag(ts_ns) OVER g) / 1e9, 0) AS e
            FROM p WINDOW g AS (PARTITION BY node, gpu ORDER BY ts_ns)
        ), c AS (
            SELECT node, gpu, ts_ns,
                   sum(e) OVER (PARTITION BY node, gpu ORDER BY ts_ns ROWS UNBOUNDED PRECEDING) AS e_j
            FROM d
        )
        SELECT node, gpu, ts_ns, e_j,
               lead(ts_ns) OVER g AS next_ns, lead(e_j) OVER g AS next_j
        FROM c WINDOW g AS (PARTITION BY node, gpu ORDER BY ts_ns)
    """)
    at = "({x}.e_j + coalesce(({t} - {x}.ts_ns) / nullif({x}.next_ns - {x}.ts_ns, 0) * ({x}.next_j - {x}.e_j), 0))"
    con.execute(f"""
        COPY (
            WITH s AS (
                SELECT node, step, min(begin_ns) AS begin_ns, max(end_ns) AS end_ns
                FROM read_parquet('{job}/node=*/*/steps/*.parquet', hive_partitioning = true)
                GROUP BY node, step
            )
            SELECT s.step, sum({at.format(x='e', t='s.end_ns')} - {at.format(x='b', t='s.begin_ns')}) AS job_j
            FROM s
            JOIN (SELECT DISTINCT node, gpu FROM cum) g ON g.node = s.node
            ASOF JOIN cum b ON b.node = g.node AND b.gpu = g.gpu AND b.ts_ns <= s.begin_ns
            ASOF JOIN cum e ON e.node = g.node AND e.gpu = g.gpu AND e.ts_ns <= s.end_ns
            GROUP BY s.step ORDER BY s.step
        ) TO '{out_csv}' (HEADER)
    """)
    total = con.execute("SELECT sum(e_j) FROM (SELECT max(e_j) AS e_j FROM cum GROUP BY node, gpu)").fetchone()[0]
    steps = con.execute(f"SELECT count(*) FROM read_csv('{out_csv}')").fetchone()[0]
    print(json.dumps({"steps": steps, "gpu_energy_j_power_integral": total,
                      "query_s": time.perf_counter() - t0}))


def compare(ours, duck, truth):
    # The script's own directory is on sys.path when it runs: one comparison for both benches.
    from bench_report_duckdb import compare as compare_steps
    compare_steps(ours, duck, truth, ours_col="energy_j", truth_col="job_j", duck_col="job_j")


if __name__ == "__main__":
    if sys.argv[1:2] == ["query"] and len(sys.argv) == 4:
        query(sys.argv[2], sys.argv[3])
    elif sys.argv[1:2] == ["compare"] and len(sys.argv) == 5:
        compare(*sys.argv[2:5])
    else:
        sys.exit(__doc__)
