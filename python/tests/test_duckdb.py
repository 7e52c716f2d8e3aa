"""A fleet's traces stay queryable by other engines: DuckDB SQL over a directory of runs
(hive-style `node=...` folders) gives the totals eco2ai-analyze gives."""

import json
import os
import shutil
import subprocess

import pytest

duckdb = pytest.importorskip("duckdb")

ANALYZE = os.environ.get("ECO2AI_ANALYZE") or shutil.which("eco2ai-analyze")


def _analyze(*args):
    out = subprocess.run([ANALYZE, *args], check=True, capture_output=True, text=True)
    return out.stdout


@pytest.mark.skipif(not ANALYZE, reason="eco2ai-analyze not built")
def test_duckdb_over_a_fleet_gives_the_same_totals(tmp_path):
    fleet = tmp_path / "fleet"
    ours = {}
    for node in range(3):
        run = fleet / f"node={node}" / f"run-{node}"
        _analyze("synth", str(run), "--seed", str(node + 1), "--duration-s", "20", "--gpus", "2")
        s = json.loads(_analyze("summary", "--json", str(run)))
        gpu_j = sum(d["energy_j"] for d in s["devices"] if d["device"].startswith("gpu"))
        r = json.loads(_analyze("report", "--format", "json", str(run)))
        ours[node] = (gpu_j, r["steps"]["count"])

    con = duckdb.connect()
    glob = f"{fleet}/*/*"
    energy = con.execute(
        f"""
        SELECT node, sum(j) FROM (
            SELECT node, gpu, (max(energy_mj) - min(energy_mj)) / 1e3 AS j
            FROM read_parquet('{glob}/gpu/*.parquet', hive_partitioning = true)
            WHERE energy_mj IS NOT NULL
            GROUP BY node, gpu)
        GROUP BY node ORDER BY node
        """
    ).fetchall()
    steps = dict(
        con.execute(
            f"SELECT node, count(*) FROM read_parquet('{glob}/steps/*.parquet', hive_partitioning = true) GROUP BY node"
        ).fetchall()
    )
    assert len(energy) == 3
    for node, joules in energy:
        node = int(node)
        assert joules == pytest.approx(ours[node][0], rel=1e-9)
        assert steps[node] == ours[node][1]
    total = con.execute(
        f"SELECT sum(j) FROM (SELECT node, gpu, (max(energy_mj) - min(energy_mj)) / 1e3 AS j "
        f"FROM read_parquet('{glob}/gpu/*.parquet', hive_partitioning = true) GROUP BY node, gpu)"
    ).fetchone()[0]
    assert total == pytest.approx(sum(v[0] for v in ours.values()), rel=1e-9)
