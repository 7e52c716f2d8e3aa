"""DuckDB's side of `cargo xtask bench-report`, and the comparison of the results.

  query RUN OUT_CSV      per-step GPU energy and per-GPU totals from RUN's Parquet files,
                         the way a DuckDB user would write it: trapezoidal integral of
                         the instant power per GPU, interpolated at each step's edges
                         (ASOF joins); totals also from the energy counter. Prints JSON.
  compare OURS DUCK TRUTH
                         per-step relative error of each against the generator's truth.
"""
import json
import sys
import time

import duckdb


def query(run, out_csv):
    t0 = time.perf_counter()
    con = duckdb.connect()
    con.execute(f"""
        CREATE TEMP TABLE cum AS
        WITH p AS (
            SELECT gpu, ts_ns, power_instant_mw / 1000.0 AS w
            FROM read_parquet('{run}/gpu/*.parquet')
            WHERE power_instant_mw IS NOT NULL
        ), d AS (
            SELECT gpu, ts_ns, w,
                   coalesce((w + lag(w) OVER g) / 2 * (ts_ns - lag(ts_ns) OVER g) / 1e9, 0) AS e
            FROM p WINDOW g AS (PARTITION BY gpu ORDER BY ts_ns)
        ), c AS (
            SELECT gpu, ts_ns, sum(e) OVER (PARTITION BY gpu ORDER BY ts_ns ROWS UNBOUNDED PRECEDING) AS e_j
            FROM d
        )
        SELECT gpu, ts_ns, e_j,
               lead(ts_ns) OVER g AS next_ns, lead(e_j) OVER g AS next_j
        FROM c WINDOW g AS (PARTITION BY gpu ORDER BY ts_ns)
    """)
    # E(t) between two polls: linear in time (the trapezoid's power varies little
    # over 20 ms).
    at = "({x}.e_j + coalesce(({t} - {x}.ts_ns) / nullif({x}.next_ns - {x}.ts_ns, 0) * ({x}.next_j - {x}.e_j), 0))"
    con.execute(f"""
        COPY (
            SELECT s.step, sum({at.format(x='e', t='s.end_ns')} - {at.format(x='b', t='s.begin_ns')}) AS gpu_j
            FROM (SELECT step, begin_ns, end_ns FROM read_parquet('{run}/steps/*.parquet')) s
            CROSS JOIN (SELECT DISTINCT gpu FROM cum) g
            ASOF JOIN cum b ON b.gpu = g.gpu AND b.ts_ns <= s.begin_ns
            ASOF JOIN cum e ON e.gpu = g.gpu AND e.ts_ns <= s.end_ns
            GROUP BY s.step ORDER BY s.step
        ) TO '{out_csv}' (HEADER)
    """)
    integral = con.execute("SELECT sum(e_j) FROM (SELECT gpu, max(e_j) AS e_j FROM cum GROUP BY gpu)").fetchone()[0]
    counter = con.execute(f"""
        SELECT sum(j) FROM (SELECT gpu, max(energy_mj) / 1000.0 AS j
        FROM read_parquet('{run}/gpu/*.parquet') GROUP BY gpu)
    """).fetchone()[0]
    steps = con.execute(f"SELECT count(*) FROM read_csv('{out_csv}')").fetchone()[0]
    print(json.dumps({"steps": steps, "gpu_energy_j_power_integral": integral,
                      "gpu_energy_j_counter": counter, "query_s": time.perf_counter() - t0}))


def compare(ours, duck, truth, ours_col="gpu_j", truth_col="gpu_j", duck_col="gpu_j"):
    """Per-step relative error of OURS and DUCK against TRUTH (CSVs keyed by step);
    bench_job_duckdb.py calls it with its own column names."""
    con = duckdb.connect()
    rows = con.execute(f"""
        WITH t AS (SELECT step, {truth_col} AS want FROM read_csv('{truth}')),
             o AS (SELECT step, {ours_col} AS got FROM read_csv('{ours}')),
             d AS (SELECT step, {duck_col} AS got FROM read_csv('{duck}')),
             e AS (SELECT abs(o.got - t.want) / t.want AS ours, abs(d.got - t.want) / t.want AS duck
                   FROM t JOIN o USING (step) JOIN d USING (step))
        SELECT count(*), quantile_cont(ours, 0.5), quantile_cont(ours, 0.99), max(ours),
               quantile_cont(duck, 0.5), quantile_cont(duck, 0.99), max(duck)
        FROM e
    """).fetchone()
    keys = ["steps", "ours_p50", "ours_p99", "ours_max", "duckdb_p50", "duckdb_p99", "duckdb_max"]
    print(json.dumps(dict(zip(keys, rows))))


if __name__ == "__main__":
    if sys.argv[1:2] == ["query"] and len(sys.argv) == 4:
        query(sys.argv[2], sys.argv[3])
    elif sys.argv[1:2] == ["compare"] and len(sys.argv) == 5:
        compare(*sys.argv[2:5])
    else:
        sys.exit(__doc__)
